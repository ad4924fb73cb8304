"""What every diffusion-teacher training shares: resume checks, EMA, checkpoints, the loop.

Both teachers trained here use it: the InstructPix2Pix-style editor
(``pocketgan train-teacher``, :mod:`pocketgan.diffusion_editor.train`) and the emoji
text-to-image model (``pocketgan train-generation-teacher``,
:mod:`pocketgan.generation.teacher_training`). A teacher supplies a :class:`DiffusionRun`
subclass (its model, one ``train_step``, and how its EMA pipeline is saved); this module
does the rest:

- ``run.json`` records the configuration; a resume with other settings (other than
  ``steps``, ``checkpoint_every``, ``progress``, ``threads``) is refused, naming them;
- every ``checkpoint_every`` steps the model, its EMA, the optimizer and any extra tensors go
  to ``checkpoint/`` (safetensors + JSON, atomic), and the EMA pipeline to ``pipeline/``
  (atomic): a kill at any moment leaves the previous state or the new one;
- each step's draws come from ``(seed, step, rank)``, so a resumed run draws what an unbroken
  one would; ``accelerate launch`` runs it data-parallel (each rank draws its own batch).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
# run.json fields a resume may change (they do not change what a step computes)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "progress", "threads")


def check_resume(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume ``out`` when its run.json differs from ``settings`` in a field that matters."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    changed = sorted(
        k for k in set(old) | set(settings) if k not in RESUMABLE_CHANGES and old.get(k) != settings.get(k)
    )
    if changed:
        diff = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise ValueError(f"{out} is a run with other settings ({diff}); use another --out or the run's settings")


class DiffusionRun:
    """Model, EMA, optimizer and step counter of one run; subclasses add ``train_step``.

    The subclass's ``__init__`` builds its model and calls :meth:`setup` with it; it
    implements ``train_step(data) -> float`` (one optimizer step, via :meth:`optimize`) and
    ``save_pipeline(staging)`` (write the sampling pipeline, EMA weights loaded, into
    ``staging``). ``extra_tensors()`` / ``load_extra(tensors)`` carry anything else trained
    (e.g. a text encoder) through checkpoints.
    """

    config: Any  # a dataclass with out, lr, warmup, ema_decay, seed, to_json()

    def setup(self, model: Any) -> None:
        import torch
        from accelerate import Accelerator

        self.accelerator = Accelerator()
        model.train()
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        opt = torch.optim.AdamW(self.trainable(model), lr=self.config.lr, weight_decay=1e-2)
        self.model, self.opt = self.accelerator.prepare(model, opt)
        self.step, self.elapsed, self.losses = 0, 0.0, []

    def trainable(self, model: Any) -> list:
        """Parameters the optimizer updates (the model's; subclasses add their own)."""
        return list(model.parameters())

    def lr_at(self, step: int) -> float:
        return self.config.lr * min(1.0, (step + 1) / max(1, self.config.warmup))

    def optimize(self, loss: Any) -> float:
        """Backward, clip, step, EMA update, count the step; returns the loss as a float."""
        acc = self.accelerator
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        acc.backward(loss)
        acc.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        return float(loss.detach())

    def _update_ema(self) -> None:
        import torch

        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for k, v in self.unwrapped.state_dict().items():
                if v.dtype.is_floating_point:
                    self.ema[k].mul_(decay).add_(v.detach().cpu(), alpha=1 - decay)
                else:
                    self.ema[k].copy_(v)

    @property
    def unwrapped(self) -> Any:
        return self.accelerator.unwrap_model(self.model)

    def extra_tensors(self) -> dict[str, Any]:
        return {}

    def load_extra(self, tensors: dict[str, Any]) -> None:
        pass

    def save_pipeline(self, staging: Path) -> None:
        raise NotImplementedError

    # -- checkpoints ---------------------------------------------------------------------

    def save(self) -> None:
        from pocketgan.atomic import atomic_directory
        from pocketgan.training.checkpoint import flatten_optimizer, save_checkpoint
        from pocketgan.training.diffusers_teacher import quiet_pipeline_io

        model = self.unwrapped
        tensors = {f"unet/{k}": v for k, v in model.state_dict().items()}
        tensors |= {f"ema/{k}": v for k, v in self.ema.items()}
        tensors |= self.extra_tensors()
        opt_tensors, opt_meta = flatten_optimizer("opt", self.opt.state_dict())
        meta = {"step": self.step, "elapsed_s": self.elapsed, "losses": self.losses, "optimizer": opt_meta}
        save_checkpoint(self.config.out / "checkpoint", tensors | opt_tensors, meta)
        # the pipeline with the EMA weights: what distillation loads
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.ema)
        try:
            # quiet: a "writing shards" bar per checkpoint would break the step bar
            with atomic_directory(self.config.out / "pipeline") as staging, quiet_pipeline_io():
                self.save_pipeline(staging)
                (staging / "pocketgan-teacher.json").write_text(
                    json.dumps({"step": self.step, "run": self.config.to_json()}, indent=1), encoding="utf-8"
                )
        finally:
            model.load_state_dict(live)

    def load(self) -> None:
        from pocketgan.training.checkpoint import load_checkpoint, unflatten_optimizer

        tensors, meta = load_checkpoint(self.config.out / "checkpoint")
        self.unwrapped.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet/")})
        self.ema = {k[4:]: v.clone() for k, v in tensors.items() if k.startswith("ema/")}
        self.load_extra(tensors)
        self.opt.load_state_dict(unflatten_optimizer("opt", tensors, meta["optimizer"]))
        self.step, self.elapsed, self.losses = int(meta["step"]), float(meta["elapsed_s"]), list(meta["losses"])


def open_run_folder(config: Any) -> None:
    """Set torch's threads, refuse a resume with other settings, write ``run.json``."""
    import torch

    from pocketgan.atomic import atomic_write_json

    if config.threads:
        torch.set_num_threads(config.threads)
    check_resume(config.out, config.to_json())
    config.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config.out / RUN_FILE, config.to_json())


def run_training(run_factory: Any, config: Any, data: Any, desc: str) -> dict[str, Any]:
    """Create or resume the run in ``config.out`` and train it to ``config.steps``.

    ``run_factory(config)`` builds the :class:`DiffusionRun`; ``data`` is passed to every
    ``train_step``. Returns a summary (steps, elapsed seconds, last losses, pipeline folder).
    """
    from tqdm import tqdm

    from pocketgan.training.checkpoint import has_checkpoint

    open_run_folder(config)
    run = run_factory(config)
    if has_checkpoint(config.out / "checkpoint"):
        run.load()
    main = run.accelerator.is_main_process
    smooth = None
    with tqdm(
        total=config.steps, initial=run.step, desc=desc, unit="step", disable=not (config.progress and main)
    ) as bar:
        while run.step < config.steps:
            start = time.perf_counter()
            loss = run.train_step(data)
            run.elapsed += time.perf_counter() - start
            smooth = loss if smooth is None else 0.98 * smooth + 0.02 * loss
            if not math.isfinite(loss):
                raise FloatingPointError(f"step {run.step}: loss {loss}; the last checkpoint is intact")
            bar.update(1)
            bar.set_postfix(loss=f"{smooth:.4f}")
            if run.step % 50 == 0:
                run.losses.append([run.step, round(smooth, 6)])
            if main and (run.step % config.checkpoint_every == 0 or run.step == config.steps):
                run.save()
    if main and not (config.out / "pipeline").is_dir():
        run.save()  # a resume of a finished run still leaves its pipeline
    return {
        "steps": run.step,
        "elapsed_s": round(run.elapsed, 1),
        "losses": run.losses[-5:],
        "pipeline": str(config.out / "pipeline"),
    }
