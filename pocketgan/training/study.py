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

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

RESULTS = "results.json"


@dataclass
class StudyConfig:
    concept: str = field(default="cartoon", metadata={"help": "Procedural teacher held out of base training."})
    pairs: int = field(default=128, metadata={"help": "Training pairs (256² crops of the offline training photos)."})
    scratch_steps: int = field(default=1200, metadata={"help": "Steps of the from-scratch baseline (a)."})
    concept_steps: int = field(default=400, metadata={"help": "Steps of every fine-tuning / LoRA run."})
    eval_every: int = field(default=50, metadata={"help": "Steps between held-out evaluations (not timed)."})
    budget_rank: int = field(default=2, metadata={"help": "Searched ranks get the parameter count of this uniform rank."})
    probe_rank: int = field(default=4, metadata={"help": "Rank of the search's probe run."})
    probe_steps: int = field(default=100, metadata={"help": "Steps of the search's probe run."})
    pair_counts: tuple[int, ...] = field(default=(2, 4, 8, 16, 32, 64), metadata={"help": "Subset sizes for quality vs pairs."})
    random_counts: tuple[int, ...] = field(default=(4, 8, 16), metadata={"help": "Subset sizes also run with random selection."})
    rank_seeds: tuple[int, ...] = field(default=(1, 2), metadata={"help": "Extra training seeds of the uniform-vs-searched comparison (seed-to-seed spread)."})
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
        from pocketgan.training.default_bundle import BASE_CONCEPTS, make_pairs
        from pocketgan.training.evaluate import HeldOutSet
        from pocketgan.training.photos import training_photos
        from pocketgan.training.teachers import procedural_teacher

        self.config, self.out, self.progress = config, Path(out), progress
        self.data_dir = self.out.parent / self.out.stem
        self.data_dir.mkdir(parents=True, exist_ok=True)
        source = load_bundle(bundle)
        if config.concept in BASE_CONCEPTS and bundle is None:
            raise ValueError(f"{config.concept!r} was in the default base's training; the study needs a held-out concept")
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
        print(f"study: {key}: {result['psnr_db']:.2f} dB, {result['seconds']:.0f} s, {result['trainable_parameters']:,} trainable")
        return result

    def _train(self, steps: int, seed: int | None = None):
        from pocketgan.training.trainer import TrainConfig

        c = self.config
        return TrainConfig(steps=steps, batch_size=c.batch_size, crop=c.crop, seed=c.seed if seed is None else seed,
                           progress=self.progress, eval_every=c.eval_every, lr=5e-3)

    def _evaluate(self, generator, tokens) -> dict:
        return self.held_out.score(lambda x: generator(x, tokens[0]))

    def _finish(self, record: dict, adapter_bytes: int, extra: dict | None = None) -> dict:
        final = record["evals"][-1]
        return {"psnr_db": final["psnr_db"], "ssim": final["ssim"], "seconds": record["seconds"],
                "trainable_parameters": record["trainable_parameters"], "adapter_bytes": adapter_bytes,
                "final_l1": record["final_l1"], "loss": record["loss"], "evals": record["evals"], **(extra or {})}

    # -- the runs
    def scratch(self) -> dict:
        from pocketgan.training.trainer import LossConfig, train_base

        def run():
            train = replace(self._train(self.config.scratch_steps), lr=2e-3)
            generator, tokens, record = train_base(self.base.config, {self.config.concept: self.pairs}, train,
                                                   LossConfig(), self._evaluate)
            params = sum(p.numel() for p in generator.parameters()) + tokens[self.config.concept].numel()
            return self._finish(record, 4 * params)
        return self._run("scratch", run)

    def full_finetune(self) -> dict:
        from pocketgan.training.trainer import LossConfig, train_full_finetune

        def run():
            train = replace(self._train(self.config.concept_steps), lr=5e-4)
            generator, tokens, record = train_full_finetune(self.base, self.config.concept, self.pairs, train,
                                                            self.init_tokens, LossConfig(), self._evaluate)
            return self._finish(record, 4 * (sum(p.numel() for p in generator.parameters()) + tokens.numel()))
        return self._run("full_finetune", run)

    def lora(self, key: str, ranks: dict[str, int], pairs=None, loss=None, extra: dict | None = None,
             seed: int | None = None) -> dict:
        from pocketgan.training.trainer import LossConfig, train_concept

        def run():
            concept = train_concept(self.base, self.config.concept, pairs or self.pairs, ranks,
                                    self._train(self.config.concept_steps, seed), init_tokens=self.init_tokens,
                                    loss=loss or LossConfig(), evaluate=self._evaluate)
            record = concept.training
            record["trainable_parameters"] = concept.num_parameters()
            return self._finish(record, 4 * concept.num_parameters(),
                                {"ranks": ranks, "base_parameters": record["base_parameters"], **(extra or {})})
        return self._run(key, run)

    def searched(self) -> dict:
        from pocketgan.training.commands import ConceptRecipe, search_ranks
        from pocketgan.training.trainer import LossConfig

        c = self.config
        if "lora_searched" in self.results["runs"]:
            return self._run("lora_searched", None)
        recipe = ConceptRecipe(rank="search", rank_budget=c.budget_rank, probe_rank=c.probe_rank, probe_steps=c.probe_steps)
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


# ------------------------------------------------------------------ report


def seed_runs(runs: dict, key: str, cfg: dict) -> list[dict]:
    """A run and its repeats with the extra training seeds (those that finished)."""
    return [runs[key]] + [runs[f"{key}_seed{s}"] for s in cfg.get("rank_seeds", ()) if f"{key}_seed{s}" in runs]


def _mean_std(rs: list[dict]) -> tuple[float, float]:
    values = [r["psnr_db"] for r in rs]
    return float(sum(values) / len(values)), float(__import__("numpy").std(values))


def claims(results: dict) -> list[dict]:
    """The issue's claims, checked on the results."""
    runs, cfg = results["runs"], results["config"]
    out = []
    scratch, lora = runs["scratch"], runs["lora_uniform_r1"]
    reach = next((e for e in lora["evals"] if e["psnr_db"] >= scratch["psnr_db"]), None)
    base_params = lora.get("base_parameters")
    share = lora["trainable_parameters"] / base_params if base_params else None
    ratio = reach["seconds"] / scratch["seconds"] if reach else None
    out.append({"claim": "LoRA reaches the from-scratch held-out PSNR in ≤ 1/5 of its wall time, ≤ 1% trainable",
                "measured": (f"reached {scratch['psnr_db']:.2f} dB after {reach['seconds']:.0f} s = {ratio:.3f}x of "
                             f"{scratch['seconds']:.0f} s" if reach else
                             f"never reached {scratch['psnr_db']:.2f} dB (best {max(e['psnr_db'] for e in lora['evals']):.2f})")
                            + (f"; {100 * share:.2f}% trainable" if share else ""),
                "met": bool(reach and ratio <= 0.2 and share is not None and share <= 0.01)})
    b = cfg["budget_rank"]
    uni, srch = seed_runs(runs, f"lora_uniform_r{b}", cfg), seed_runs(runs, "lora_searched", cfg)
    mu, su, ms, ss = _mean_std(uni) + _mean_std(srch)
    margin = ms - mu
    noise = max(su, ss)
    out.append({"claim": "searched ranks beat uniform ranks at equal parameter count",
                "measured": (f"searched {ms:.2f} ± {ss:.2f} dB with {srch[0]['trainable_parameters']:,} params vs uniform "
                             f"rank {b} {mu:.2f} ± {su:.2f} dB with {uni[0]['trainable_parameters']:,} "
                             f"(mean ± std over {len(srch)} training seeds; difference {margin:+.2f} dB)"),
                "met": margin > noise and srch[0]["trainable_parameters"] <= uni[0]["trainable_parameters"]})
    full = lora["psnr_db"]
    within = [n for n in cfg["pair_counts"] if runs.get(f"pairs_cluster_{n}", {}).get("psnr_db", -1e9) >= full - 0.5]
    out.append({"claim": "smallest number of pairs within 0.5 dB of training on all pairs",
                "measured": (f"{min(within)} pairs ({runs[f'pairs_cluster_{min(within)}']['psnr_db']:.2f} dB vs "
                             f"{full:.2f} dB on all {cfg['pairs']})" if within else
                             f"none of {list(cfg['pair_counts'])} is within 0.5 dB of {full:.2f} dB"),
                "met": bool(within)})
    return out


def write_report(results: dict, out: Path) -> None:
    """Markdown report + PNG plots next to it (``<out stem>/*.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pocketgan.atomic import atomic_write_bytes

    runs, cfg = results["runs"], results["config"]
    plots = out.parent / out.stem
    plots.mkdir(parents=True, exist_ok=True)
    b = cfg["budget_rank"]
    main = [("(a) from scratch", "scratch"), ("(b) full fine-tune", "full_finetune"),
            ("(c) LoRA uniform rank 1", "lora_uniform_r1"), (f"(c) LoRA uniform rank {b}", f"lora_uniform_r{b}"),
            (f"(d) LoRA searched ranks (rank-{b} budget)", "lora_searched")]

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, key in main:
        ev = runs[key]["evals"]
        ax.plot([e["seconds"] for e in ev], [e["psnr_db"] for e in ev], marker=".", label=label)
    ax.axhline(runs["scratch"]["psnr_db"], color="grey", ls=":", lw=1)
    ax.set(xlabel="training wall time (s, 2 CPU threads)", ylabel="held-out PSNR vs teacher (dB)",
           title=f"concept '{cfg['concept']}' (held out of base training)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plots / "psnr_vs_time.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.8))
    counts = list(cfg["pair_counts"]) + [cfg["pairs"]]
    cluster = [runs[f"pairs_cluster_{n}"]["psnr_db"] for n in cfg["pair_counts"]] + [runs["lora_uniform_r1"]["psnr_db"]]
    ax.plot(counts, cluster, marker="o", label="k-means selection")
    rnd = [(n, runs[f"pairs_random_{n}"]["psnr_db"]) for n in cfg["random_counts"] if f"pairs_random_{n}" in runs]
    if rnd:
        ax.plot(*zip(*rnd), marker="x", ls="--", label="random selection")
    ax.axhline(runs["lora_uniform_r1"]["psnr_db"] - 0.5, color="grey", ls=":", lw=1, label="all pairs − 0.5 dB")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="training pairs", ylabel="held-out PSNR (dB)", title="LoRA rank 1: quality vs number of pairs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plots / "psnr_vs_pairs.png", dpi=110)
    plt.close(fig)

    ablation = [("L1", runs["lora_uniform_r1"])] + [(runs[k]["label"], runs[k]) for k in sorted(runs) if k.startswith("loss_")]
    if len(ablation) > 1:
        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.bar([a for a, _ in ablation], [r["psnr_db"] for _, r in ablation])
        lo = min(r["psnr_db"] for _, r in ablation)
        ax.set_ylim(lo - 1.0, max(r["psnr_db"] for _, r in ablation) + 0.5)
        ax.set(ylabel="held-out PSNR (dB)", title="loss ablation (LoRA rank 1)")
        ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        fig.savefig(plots / "loss_ablation.png", dpi=110)
        plt.close(fig)

    rel = plots.name
    lines = [
        "# Training study: E2GAN's claims on a 2-core CPU",
        "",
        "Produced by `pocketgan study` (the numbers below are from its last run; raw results in "
        f"[`{rel}/{RESULTS}`]({rel}/{RESULTS})). Concept **`{cfg['concept']}`**, held out of the base's training; "
        "the base is the embedded bundle's. Quality is PSNR / SSIM against the teacher on the shipped photos, which "
        "no run trains on. Wall time is training only (evaluation excluded), 2 threads.",
        "",
        f"Settings: {cfg['pairs']} training pairs (256² crops), batch {cfg['batch_size']}, crop {cfg['crop']}, "
        f"from scratch {cfg['scratch_steps']} steps, every other run {cfg['concept_steps']} steps, "
        f"evaluation every {cfg['eval_every']} steps, seed {cfg['seed']}. Main comparison with L1 only.",
        "",
        "## Claims",
        "",
        "| claim | measured | met |",
        "|---|---|---|",
        *[f"| {c['claim']} | {c['measured']} | {'yes' if c['met'] else '**no**'} |" for c in claims(results)],
        "",
        "## (a) scratch, (b) full fine-tune, (c) uniform LoRA, (d) searched LoRA",
        "",
        "| run | PSNR | SSIM | wall time | trainable params | % of base | adapter bytes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base_params = runs["lora_uniform_r1"].get("base_parameters") or 1
    for label, key in main:
        r = runs[key]
        lines.append(f"| {label} | {r['psnr_db']:.2f} dB | {r['ssim']:.3f} | {r['seconds']:.0f} s | "
                     f"{r['trainable_parameters']:,} | {100 * r['trainable_parameters'] / base_params:.2f}% | {r['adapter_bytes']:,} |")
    lines += ["", f"![PSNR vs time]({rel}/psnr_vs_time.png)", ""]
    search = runs["lora_searched"].get("search")
    if search:
        lines += ["### The searched ranks", "",
                  f"Probe: rank {search['probe_rank']} on every layer for {search['probe_steps']} steps "
                  f"({search['probe_seconds']:.0f} s, not in the table's wall time). Budget: {search['budget_parameters']:,} "
                  f"LoRA parameters (uniform rank {b}); used {search['parameters']:,}.", "",
                  "| layer | rank | update energy kept | update norm | parameters |", "|---|---:|---:|---:|---:|",
                  *[f"| `{row['layer']}` | {row['rank']} | {100 * row['energy_kept']:.1f}% | {row['update_norm']:.4f} | {row['parameters']:,} |"
                    for row in search["layers"]], ""]
    uni, srch = seed_runs(runs, f"lora_uniform_r{b}", cfg), seed_runs(runs, "lora_searched", cfg)
    if len(uni) > 1 or len(srch) > 1:
        seeds = [cfg["seed"], *cfg.get("rank_seeds", ())]
        lines += ["### Uniform vs searched over training seeds", "",
                  "The same ranks trained with other seeds (batches, crops, LoRA init), to size the noise:", "",
                  f"| training seed | uniform rank {b} | searched |", "|---:|---:|---:|",
                  *[f"| {seed} | {u['psnr_db']:.2f} dB | {r['psnr_db']:.2f} dB |" for seed, u, r in zip(seeds, uni, srch)],
                  f"| mean ± std | {_mean_std(uni)[0]:.2f} ± {_mean_std(uni)[1]:.2f} dB | "
                  f"{_mean_std(srch)[0]:.2f} ± {_mean_std(srch)[1]:.2f} dB |", ""]
    lines += ["## Quality against the number of pairs", "",
              "| pairs | k-means selection | random selection |", "|---:|---:|---:|"]
    for n in cfg["pair_counts"]:
        r = runs.get(f"pairs_random_{n}")
        random_cell = f"{r['psnr_db']:.2f} dB" if r else "—"
        lines.append(f"| {n} | {runs[f'pairs_cluster_{n}']['psnr_db']:.2f} dB | {random_cell} |")
    lines += [f"| {cfg['pairs']} (all) | {runs['lora_uniform_r1']['psnr_db']:.2f} dB | |", "",
              f"![PSNR vs pairs]({rel}/psnr_vs_pairs.png)", ""]
    if len(ablation) > 1:
        lines += ["## Loss ablation (LoRA rank 1, all pairs)", "",
                  "| losses | PSNR | SSIM | wall time |", "|---|---:|---:|---:|",
                  *[f"| {a} | {r['psnr_db']:.2f} dB | {r['ssim']:.3f} | {r['seconds']:.0f} s |" for a, r in ablation],
                  "", f"![loss ablation]({rel}/loss_ablation.png)", ""]
    atomic_write_bytes(out, "\n".join(lines).encode())


def run_study(config: StudyConfig, out: Path, bundle: Path | None = None, progress: bool = True) -> dict:
    study = Study(config, out, bundle, progress)
    started = time.perf_counter()
    results = study.run_all()
    write_report(results, Path(out))
    print(f"study: {time.perf_counter() - started:.0f} s this run -> {out}")
    return results


def add_study_command(sub) -> None:
    s = sub.add_parser("study", help="reproduce E2GAN's training claims at this machine's scale (report + plots)")
    s.add_argument("--out", type=Path, default=Path("docs/training-study.md"), help="report path (default docs/training-study.md)")
    s.add_argument("--bundle", type=Path, help="source bundle whose base is used (default: the embedded one)")
    for f in StudyConfig.__dataclass_fields__.values():
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",):
            s.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        elif "tuple" in str(f.type):
            s.add_argument(flag, type=int, nargs="*", default=list(f.default), help=f.metadata["help"])
        else:
            s.add_argument(flag, type=type(f.default), default=f.default, help=f.metadata["help"] + f" (default {f.default})")
    s.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    s.add_argument("--report-only", action="store_true", help="rewrite the report from saved results, train nothing")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    import torch

    if args.report_only:
        results = json.loads((args.out.parent / args.out.stem / RESULTS).read_text())
        write_report(results, args.out)
        return 0
    torch.set_num_threads(args.threads)
    config = StudyConfig(**{k: getattr(args, k) for k in StudyConfig.__dataclass_fields__})
    run_study(config, args.out, args.bundle, progress=not args.no_progress)
    return 0
