"""The training study: E2GAN's claims at this machine's scale, in one command.

    pocketgan study [--out docs/training-study.md]

On a concept the base never saw (``cartoon`` by default), trained on the frozen base of
the embedded bundle, it compares

* (a) a generator trained from scratch on the concept alone,
* (b) full fine-tuning of the base,
* (c) LoRA with uniform ranks (rank 1: the shipped setting; rank ``budget``),
* (d) LoRA with searched ranks at the parameter count of uniform rank ``budget``,

by held-out PSNR / SSIM against the teacher on the shipped photos (never trained on),
training wall time, trainable parameters and adapter bytes; then quality against the
number of pairs (k-means-selected, and random for comparison) and an ablation of the
losses. Every run's result is saved as soon as it ends (``<out dir>/training-study/
results.json``, atomically), so a killed study continues where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pocketgan.training.study_report import (
    RESULTS,
    claims,  # noqa: F401  (re-exported: its old home)
    write_report,
)


@dataclass
class StudyConfig:
    concept: str = field(default="cartoon", metadata={"help": "Procedural teacher held out of base training."})
    pairs: int = field(default=128, metadata={"help": "Training pairs (256² crops of the offline training photos)."})
    scratch_steps: int = field(default=1200, metadata={"help": "Steps of the from-scratch baseline (a)."})
    concept_steps: int = field(default=400, metadata={"help": "Steps of every fine-tuning / LoRA run."})
    eval_every: int = field(default=50, metadata={"help": "Steps between held-out evaluations (not timed)."})
    budget_rank: int = field(
        default=2, metadata={"help": "Searched ranks get the parameter count of this uniform rank."}
    )
    probe_rank: int = field(default=4, metadata={"help": "Rank of the search's probe run."})
    probe_steps: int = field(default=100, metadata={"help": "Steps of the search's probe run."})
    pair_counts: tuple[int, ...] = field(
        default=(2, 4, 8, 16, 32, 64), metadata={"help": "Subset sizes for quality vs pairs."}
    )
    random_counts: tuple[int, ...] = field(
        default=(4, 8, 16), metadata={"help": "Subset sizes also run with random selection."}
    )
    rank_seeds: tuple[int, ...] = field(
        default=(1, 2),
        metadata={"help": "Extra training seeds of the uniform-vs-searched comparison (seed-to-seed spread)."},
    )
    batch_size: int = field(default=8, metadata={"help": "Pairs per step."})
    crop: int = field(default=128, metadata={"help": "Training crop side."})
    seed: int = field(default=0, metadata={"help": "Seed of data, init and batches."})
    ablation: bool = field(default=True, metadata={"help": "Run the loss ablation."})

    def __post_init__(self) -> None:
        if self.pairs < max(self.pair_counts, default=1):
            raise ValueError("pairs must be at least the largest of pair_counts")
        if self.probe_rank <= self.budget_rank:
            raise ValueError("probe_rank must exceed budget_rank")
        self.pair_counts, self.random_counts = tuple(self.pair_counts), tuple(self.random_counts)
        self.rank_seeds = tuple(self.rank_seeds)


# Which runs to do (not how each run trains): changing these keeps the finished runs.
RUN_LIST_FIELDS = ("pair_counts", "random_counts", "rank_seeds", "ablation")


def _core(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RUN_LIST_FIELDS}


def ablation_losses():
    """The loss ablation's steps, each adding one part to the previous."""
    from pocketgan.training.trainer import LossConfig

    l1 = LossConfig()
    perc = replace(l1, perceptual=4.0)
    gan = replace(perc, gan=0.05)
    r1 = replace(gan, r1_gamma=1.0)
    mm = replace(r1, mix_and_match=True)
    return {"L1": l1, "+ ensembled perceptual": perc, "+ GAN": gan, "+ R1": r1, "+ mix-and-match": mm}


class Study:
    def __init__(self, config: StudyConfig, out: Path, bundle: Path | None = None, progress: bool = True):
        import torch

        from pocketgan.bundle import load_bundle
        from pocketgan.photos import training_photos
        from pocketgan.training.default_bundle import BASE_CONCEPTS, make_pairs
        from pocketgan.training.evaluate import HeldOutSet
        from pocketgan.training.teachers import procedural_teacher

        self.config, self.out, self.progress = config, Path(out), progress
        self.data_dir = self.out.parent / self.out.stem
        self.data_dir.mkdir(parents=True, exist_ok=True)
        source = load_bundle(bundle)
        if config.concept in BASE_CONCEPTS and bundle is None:
            raise ValueError(
                f"{config.concept!r} was in the default base's training; the study needs a held-out concept"
            )
        self.base = source.base_generator()
        self.size = source.size
        self.init_tokens = torch.stack([c.tokens for c in source.concepts]).mean(0)
        self.teacher = procedural_teacher(config.concept)
        self.pairs = make_pairs(config.concept, training_photos(), config.pairs, 256, seed=config.seed)
        self.held_out = HeldOutSet(self.teacher)
        self.results = self._load()

    # -- bookkeeping: every finished run is saved at once
    def _load(self) -> dict:
        path = self.data_dir / RESULTS
        if path.is_file():
            saved = json.loads(path.read_text())
            current = json.loads(json.dumps(asdict(self.config)))
            if _core(saved.get("config", {})) == _core(current):
                saved["config"] = current
                return saved
            print(f"{path}: results of a different study configuration; starting afresh")
        return {"config": asdict(self.config), "runs": {}}

    def _save(self) -> None:
        from pocketgan.atomic import atomic_write_json

        atomic_write_json(self.data_dir / RESULTS, self.results)

    def _run(self, key: str, fn) -> dict:
        if key in self.results["runs"]:
            print(f"study: {key}: done earlier ({self.results['runs'][key]['psnr_db']:.2f} dB)")
            return self.results["runs"][key]
        result = fn()
        self.results["runs"][key] = result
        self._save()
        print(
            f"study: {key}: {result['psnr_db']:.2f} dB, {result['seconds']:.0f} s, "
            f"{result['trainable_parameters']:,} trainable"
        )
        return result

    def _train(self, steps: int, seed: int | None = None):
        from pocketgan.training.trainer import TrainConfig

        c = self.config
        return TrainConfig(
            steps=steps,
            batch_size=c.batch_size,
            crop=c.crop,
            seed=c.seed if seed is None else seed,
            progress=self.progress,
            eval_every=c.eval_every,
            lr=5e-3,
        )

    def _evaluate(self, generator, tokens) -> dict:
        return self.held_out.score(lambda x: generator(x, tokens[0]))

    def _finish(self, record: dict, adapter_bytes: int, extra: dict | None = None) -> dict:
        final = record["evals"][-1]
        return {
            "psnr_db": final["psnr_db"],
            "ssim": final["ssim"],
            "seconds": record["seconds"],
            "trainable_parameters": record["trainable_parameters"],
            "adapter_bytes": adapter_bytes,
            "final_l1": record["final_l1"],
            "loss": record["loss"],
            "evals": record["evals"],
            **(extra or {}),
        }

    # -- the runs
    def scratch(self) -> dict:
        from pocketgan.training.trainer import LossConfig, train_base

        def run():
            train = replace(self._train(self.config.scratch_steps), lr=2e-3)
            generator, tokens, record = train_base(
                self.base.config, {self.config.concept: self.pairs}, train, LossConfig(), self._evaluate
            )
            params = sum(p.numel() for p in generator.parameters()) + tokens[self.config.concept].numel()
            return self._finish(record, 4 * params)

        return self._run("scratch", run)

    def full_finetune(self) -> dict:
        from pocketgan.training.trainer import LossConfig, train_full_finetune

        def run():
            train = replace(self._train(self.config.concept_steps), lr=5e-4)
            generator, tokens, record = train_full_finetune(
                self.base, self.config.concept, self.pairs, train, self.init_tokens, LossConfig(), self._evaluate
            )
            return self._finish(record, 4 * (sum(p.numel() for p in generator.parameters()) + tokens.numel()))

        return self._run("full_finetune", run)

    def lora(
        self, key: str, ranks: dict[str, int], pairs=None, loss=None, extra: dict | None = None, seed: int | None = None
    ) -> dict:
        from pocketgan.training.trainer import LossConfig, train_concept

        def run():
            concept = train_concept(
                self.base,
                self.config.concept,
                pairs or self.pairs,
                ranks,
                self._train(self.config.concept_steps, seed),
                init_tokens=self.init_tokens,
                loss=loss or LossConfig(),
                evaluate=self._evaluate,
            )
            record = concept.training
            record["trainable_parameters"] = concept.num_parameters()
            return self._finish(
                record,
                4 * concept.num_parameters(),
                {"ranks": ranks, "base_parameters": record["base_parameters"], **(extra or {})},
            )

        return self._run(key, run)

    def searched(self) -> dict:
        from pocketgan.training.commands import ConceptRecipe, search_ranks
        from pocketgan.training.trainer import LossConfig

        c = self.config
        if "lora_searched" in self.results["runs"]:
            return self._run("lora_searched", None)
        recipe = ConceptRecipe(
            rank="search", rank_budget=c.budget_rank, probe_rank=c.probe_rank, probe_steps=c.probe_steps
        )
        train = replace(self._train(c.probe_steps), eval_every=0)
        search = search_ranks(self.base, c.concept, self.pairs, recipe, train, LossConfig(), self.init_tokens, None)
        return self.lora("lora_searched", search["ranks"], extra={"search": search})

    def run_all(self) -> dict:
        from pocketgan.training.commands import concept_layers, select_pairs
        from pocketgan.training.rank_search import uniform_ranks

        c, layers = self.config, concept_layers()
        self.scratch()
        self.full_finetune()
        self.lora("lora_uniform_r1", uniform_ranks(layers, 1))
        self.lora(f"lora_uniform_r{c.budget_rank}", uniform_ranks(layers, c.budget_rank))
        searched = self.searched()
        for seed in c.rank_seeds:  # the same ranks, other training seeds: how large is the noise?
            self.lora(f"lora_uniform_r{c.budget_rank}_seed{seed}", uniform_ranks(layers, c.budget_rank), seed=seed)
            self.lora(f"lora_searched_seed{seed}", searched["ranks"], seed=seed)
        for n in c.pair_counts:
            subset, idx = select_pairs(self.pairs, n, "cluster", self.base, c.seed)
            self.lora(f"pairs_cluster_{n}", uniform_ranks(layers, 1), pairs=subset, extra={"indices": idx.tolist()})
        for n in c.random_counts:
            subset, idx = select_pairs(self.pairs, n, "random", self.base, c.seed)
            self.lora(f"pairs_random_{n}", uniform_ranks(layers, 1), pairs=subset, extra={"indices": idx.tolist()})
        if c.ablation:
            for i, (label, loss) in enumerate(ablation_losses().items()):
                if i:  # step 0 (L1) is lora_uniform_r1
                    self.lora(f"loss_{i}", uniform_ranks(layers, 1), loss=loss, extra={"label": label})
        return self.results


def run_study(config: StudyConfig, out: Path, bundle: Path | None = None, progress: bool = True) -> dict:
    study = Study(config, out, bundle, progress)
    started = time.perf_counter()
    results = study.run_all()
    write_report(results, Path(out))
    print(f"study: {time.perf_counter() - started:.0f} s this run -> {out}")
    return results
