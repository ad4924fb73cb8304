"""``run_bench``: the typed entry point behind ``pocketgan bench`` (its flags are built from
:class:`BenchConfig` in :mod:`pocketgan.cli.bench`).

One run, on this machine:

1. machine details and the GEMM peak (``gemm.py``);
2. the exports it needs, from the cache or made now: the generator through
   ``pocketgan.export.run_export`` (both concept modes) and the pix2pix peer through the
   same backends and precision handling (``exports.py``, ``peers.py``);
3. ``repeats`` passes over every measurement group (model x backend x precision x concept
   mode x size): open, time ``rounds`` inferences after ``warmup``; on the first pass also
   the cold open and ``set_concept``. Passes, not back-to-back repeats, so that drift
   over the run shows up as instability;
4. peak resident memory of every group in a fresh subprocess;
5. FLOPs, ratios, GEMM shares, stability and claims (``results.py``), validated against
   ``schema.json``, written as ``results.json``, ``results.md`` and ``latency.png``.
"""

from __future__ import annotations

import functools
import gc
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pocketgan.bench.config import BACKENDS, BENCH_PRECISIONS, BenchConfig

if TYPE_CHECKING:
    from pocketgan.runtime.manifest_view import Manifest

RESULTS_JSON, RESULTS_MD, CHART_PNG = "results.json", "results.md", "latency.png"


@dataclass
class Group:
    """One measurement group (model x backend x precision x concept mode x size): what
    to open (``spec``, for :func:`pocketgan.bench.runners.open_runner`), what is known
    about its artifact, and what was measured."""

    model: str
    model_name: str
    backend: str
    precision: str
    mode: str
    size: int
    spec: dict | None
    concept: str | None = None
    concepts: int | None = None
    artifact_bytes: int | None = None
    parity: float | None = None
    extra: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    foreign: list = field(default_factory=list)
    retried: int = 0
    open_stats: object = None
    swap_stats: object = None
    memory: dict | None = None
    error: str | None = None

    @property
    def id(self) -> str:
        from pocketgan.bench.results import record_id

        return record_id(self.model, self.backend, self.precision, self.mode, self.size)


def _photo_input(size: int):
    from pocketgan.photos import load_rgb, sample_photo_paths
    from pocketgan.runtime.imaging import to_model_input

    return to_model_input(load_rgb(sample_photo_paths()[0]), size)[0]


def _error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 400 else text[:397] + "..."


def _export_tasks(config: BenchConfig) -> list[tuple]:
    tasks = []
    for size in config.sizes:
        for backend in config.backends:
            for precision in config.precisions:
                if backend == "eager":
                    continue
                tasks.append(("pocketgan", backend, precision, size))
                if config.peers:
                    tasks.append(("pix2pix", backend, precision, size))
            if backend == "eager" and config.peers:
                tasks.append(("pix2pix", "eager", "fp32", size))
    return tasks


def group_ids(config: BenchConfig) -> list[str]:
    """The ids of the groups :func:`plan_groups` makes, without exporting anything."""
    from pocketgan.bench.results import record_id

    ids = []
    for kind, backend, precision, size in _export_tasks(config):
        modes = config.concept_modes if kind == "pocketgan" else ("none",)
        ids += [record_id(kind, backend, precision, mode, size) for mode in modes]
    if "eager" in config.backends:
        ids += [
            record_id("pocketgan", "eager", "fp32", mode, size)
            for size in config.sizes
            for mode in config.concept_modes
        ]
    return ids


def _generator_groups(config: BenchConfig, src: Manifest, backend: str, precision: str, size: int, log) -> list[Group]:
    """The generator's groups of one export (one per concept mode), the export made or cached."""
    from pocketgan.bench.exports import export_bundle

    name, concepts = f"pocketgan-{src.generator.size}", list(src.concept_names)
    try:
        exp = export_bundle(
            backend,
            precision,
            size,
            config.cache_dir,
            bundle=config.bundle,
            parity_threshold_db=config.parity_threshold_db,
            progress=log,
        )
        error = None
    except Exception as e:  # a failed export (parity gate, delegation) is a result, not a crash
        exp, error = None, _error(e)
        log(f"export pocketgan {backend} {precision} {size}² failed: {error}")
    groups = []
    for mode in config.concept_modes:
        g = Group("pocketgan", name, backend, precision, mode, size, None, concepts[0], len(concepts))
        if exp is None:
            g.error = f"export failed: {error}"
        else:
            g.spec = {
                "kind": "runtime",
                "bundle": str(exp.path),
                "backend": backend,
                "mode": mode,
                "threads": config.threads,
                "concept": concepts[0],
            }
            g.artifact_bytes = exp.artifact_bytes(mode)
            g.parity = exp.worst_psnr_db(mode)
            # free-form sections, copied into the results as the manifest writes them
            entry = exp.manifest.raw["targets"][backend]
            if "delegation" in entry:
                g.extra["delegation"] = entry["delegation"].get(mode)
            if "calibration" in entry:
                g.extra["calibration"] = entry["calibration"]
        groups.append(g)
    return groups


def _peer_group(config: BenchConfig, backend: str, precision: str, size: int, log) -> Group:
    """The pix2pix peer's group on one backend, its export made or cached."""
    from pocketgan.bench.peers import export_peer, peer_name

    peer = peer_name(config.peer_ngf, config.peer_blocks)
    try:
        art = export_peer(
            backend, precision, size, config.cache_dir, ngf=config.peer_ngf, blocks=config.peer_blocks, progress=log
        )
    except Exception as e:
        g = Group("pix2pix", peer, backend, precision, "none", size, None, error=f"export failed: {_error(e)}")
        log(f"export {peer} {backend} {precision} {size}² failed: {g.error}")
        return g
    spec = art.spec(config.threads, config.peer_ngf, config.peer_blocks)
    g = Group("pix2pix", peer, backend, precision, "none", size, spec, None, None, art.bytes)
    g.extra = {k: v for k, v in art.info.items() if k in ("delegation", "calibration", "format")}
    g.notes.append("random (seeded) weights: latency and size do not depend on the values")
    return g


def _eager_groups(config: BenchConfig, src: Manifest) -> list[Group]:
    """PyTorch eager on the source bundle: a group per size and concept mode."""
    from pocketgan.bench.exports import source_bytes

    name, concepts = f"pocketgan-{src.generator.size}", list(src.concept_names)
    sb = source_bytes(src)
    eager_bytes = {"separate": sb["base"] + sum(sb["concepts"].values()), "merged": sb["base"] * len(concepts)}
    groups = []
    for size in config.sizes:
        for mode in config.concept_modes:
            spec = {
                "kind": "eager-bundle",
                "bundle": str(config.bundle) if config.bundle else None,
                "mode": mode,
                "threads": config.threads,
                "concept": concepts[0],
            }
            g = Group(
                "pocketgan",
                name,
                "eager",
                "fp32",
                mode,
                size,
                spec,
                concepts[0],
                len(concepts),
                eager_bytes[mode] if sb["concepts"] else None,
            )
            g.notes.append("bytes: the source bundle's fp32 safetensors (merged: one base per concept)")
            groups.append(g)
    return groups


def plan_groups(config: BenchConfig, log=None, bar=None) -> list[Group]:
    """Every measurement group, its exports made (or taken from the cache)."""
    from pocketgan.bench.exports import source_manifest

    log = log or (lambda message: None)
    src = source_manifest(config.bundle)
    groups: list[Group] = []
    for kind, backend, precision, size in _export_tasks(config):
        if kind == "pocketgan":
            groups += _generator_groups(config, src, backend, precision, size, log)
        else:
            groups.append(_peer_group(config, backend, precision, size, log))
        if bar is not None:
            bar.update()
    if "eager" in config.backends:
        groups += _eager_groups(config, src)
    order = {"pocketgan": 0, "pix2pix": 1}
    groups.sort(
        key=lambda g: (g.size, BACKENDS.index(g.backend), BENCH_PRECISIONS.index(g.precision), order[g.model], g.mode)
    )
    return groups


def _measure_pass(config: BenchConfig, groups: list[Group], repeat: int, inputs: dict, log, bar) -> None:
    from pocketgan.bench.measure import (
        cpu_snapshot,
        foreign_load,
        time_calls,
        time_open,
        time_set_concept,
        wait_until_quiet,
    )
    from pocketgan.bench.runners import open_runner

    for g in groups:
        if g.spec is None or (g.error and repeat > 0):
            bar.update()
            continue
        bar.set_postfix_str(
            f"pass {repeat + 1}/{config.repeats}: {g.model} {g.backend} {g.precision} {g.mode} {g.size}²"
        )
        runner = None
        try:
            runner = open_runner(g.spec)  # the first open reads the files: the timed opens find them cached
            if repeat == 0:
                g.open_stats = time_open(functools.partial(open_runner, g.spec), rounds=config.open_rounds, warmup=0)
                if len(runner.concepts) > 1:
                    g.swap_stats = time_set_concept(runner.set_concept, runner.concepts, rounds=config.swap_rounds)
                    runner.set_concept(g.concept)
            x = inputs[g.size]
            for attempt in range(config.retries + 1):
                if config.quiet_timeout:
                    wait_until_quiet(config.max_foreign_load, config.quiet_timeout)
                before = cpu_snapshot()
                samples = time_calls(
                    functools.partial(runner.run, x),
                    rounds=config.rounds,
                    warmup=config.warmup,
                    max_seconds=config.max_group_seconds,
                    min_rounds=config.min_rounds,
                )
                load = foreign_load(before, cpu_snapshot())
                if load is None or load <= config.max_foreign_load or attempt == config.retries:
                    break
                g.retried += 1
                log(f"{g.id}: other processes used {load:.0%} of the CPUs while it was timed; timing it again")
            g.samples.append(samples)
            g.foreign.append(load)
        except Exception as e:
            g.error = _error(e)
            log(f"{g.model} {g.backend} {g.precision} {g.mode} {g.size}²: {g.error}")
        finally:
            if runner is not None:
                runner.close()
            del runner
            gc.collect()
        bar.update()


def _measure_memory(config: BenchConfig, groups: list[Group], log, bar) -> None:
    from pocketgan.bench.measure import measure_memory

    for g in groups:
        if g.spec is not None and not g.error:
            bar.set_postfix_str(f"peak memory: {g.model} {g.backend} {g.precision} {g.mode} {g.size}²")
            try:
                g.memory = measure_memory(g.spec, g.size, config.memory_runs)
            except Exception as e:
                g.notes.append(f"peak memory not measured: {_error(e)}")
                log(f"memory {g.model} {g.backend} {g.precision} {g.mode} {g.size}²: {_error(e)}")
        bar.update()


def _records(config: BenchConfig, groups: list[Group]) -> tuple[list[dict], dict]:
    from pocketgan.bench.flops import generator_flops, pix2pix_flops
    from pocketgan.bench.results import latency_entry, new_record

    models: dict = {}
    records = []
    bundle = str(config.bundle) if config.bundle else None
    for g in groups:
        if g.model == "pocketgan":
            flops = generator_flops(bundle, g.mode, g.size)
        else:
            flops = pix2pix_flops(g.size, config.peer_ngf, config.peer_blocks)
        info = models.setdefault(g.model_name, {"family": g.model, "parameters": None, "flops": {}})
        info["flops"].setdefault(str(g.size), {})[g.mode] = flops
        rec = new_record(
            g.model,
            g.model_name,
            g.backend,
            g.precision,
            g.mode,
            g.size,
            concept=g.concept,
            concepts=g.concepts,
            artifact_bytes=g.artifact_bytes,
            parity_psnr_db=g.parity,
            flops=flops,
            extra=dict(g.extra),
            notes=list(g.notes),
        )
        if g.samples and all(g.samples):
            rec["latency_ms"] = latency_entry(g.samples, config.warmup, config.tolerance)
            if any(f is not None for f in g.foreign):
                rec["latency_ms"]["foreign_load"] = g.foreign
                busy = [f for f in g.foreign if f is not None and f > config.max_foreign_load]
                if busy:
                    rec["notes"].append(
                        f"other processes used up to {max(busy):.0%} of the CPUs while this group "
                        f"was timed (after {config.retries} retries)"
                    )
            if g.retried:
                rec["notes"].append(f"timed again {g.retried} time(s): other processes were busy")
        if g.open_stats is not None:
            rec["open_ms"] = g.open_stats.to_dict()
        if g.swap_stats is not None:
            rec["set_concept_ms"] = g.swap_stats.to_dict()
        if g.memory:
            rec["peak_rss_bytes"] = g.memory["peak_rss_bytes"]
            rec["baseline_rss_bytes"] = g.memory["baseline_rss_bytes"]
            rec["open_fresh_process_ms"] = g.memory["open_ms"]
            rec["extra"]["memory_process_loaded_torch"] = g.memory.get("torch_imported")
        if g.error:
            rec["status"], rec["error"] = ("failed", g.error)
        records.append(rec)
    return records, models


def _model_parameters(config: BenchConfig, models: dict) -> None:
    from pocketgan.bench.exports import source_manifest
    from pocketgan.bench.peers import build_peer

    for info in models.values():
        if info["family"] == "pocketgan":
            info["parameters"] = source_manifest(config.bundle).generator.parameters
        else:
            info["parameters"] = sum(p.numel() for p in build_peer(config.peer_ngf, config.peer_blocks).parameters())


def run_bench(config: BenchConfig) -> dict:
    """Measure everything ``config`` names; write results.json, results.md and latency.png
    into ``config.out``; return the results document (``schema.json``)."""
    import torch
    from tqdm import tqdm

    from pocketgan._quiet import quiet_library_logs, start_executorch_threadpool
    from pocketgan.atomic import atomic_write_json
    from pocketgan.bench.gemm import gemm_peak
    from pocketgan.bench.report import write_report
    from pocketgan.bench.results import finalize, machine_info, new_results, validate

    torch.set_num_threads(config.threads)
    quiet_library_logs()  # e.g. the ONNX exporter's one line per torchvision operator it skips
    if "executorch" in config.backends:
        start_executorch_threadpool()
    config.out.mkdir(parents=True, exist_ok=True)
    tasks = _export_tasks(config)
    eager_groups = len(config.sizes) * len(config.concept_modes) if "eager" in config.backends else 0
    per_pass = sum(len(config.concept_modes) if k == "pocketgan" else 1 for k, *_ in tasks) + eager_groups
    total = len(tasks) + per_pass * config.repeats + (per_pass if config.memory else 0) + int(config.gemm) + 1
    with tqdm(
        total=total, desc="pocketgan bench", disable=not config.progress, file=sys.stderr, dynamic_ncols=True
    ) as bar:

        def log(message: str) -> None:
            if config.progress:
                bar.write(message, file=sys.stderr)

        machine = machine_info(config.threads)
        gemm = None
        if config.gemm:
            bar.set_postfix_str("GEMM peak")
            gemm = gemm_peak(config.threads, config.gemm_sizes)
            bar.update()
        groups = plan_groups(config, log, bar)
        inputs = {size: _photo_input(size) for size in config.sizes}
        for repeat in range(config.repeats):
            _measure_pass(config, groups, repeat, inputs, log, bar)
        if config.memory:
            _measure_memory(config, groups, log, bar)
        bar.set_postfix_str("report")
        records, models = _records(config, groups)
        _model_parameters(config, models)
        try:
            import os

            machine["load_average"] = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            pass
        results = new_results(
            "host",
            machine,
            command=config.command,
            config=config.to_dict(),
            gemm=gemm,
            models=models,
            records=records,
            tolerance=config.tolerance,
            repeats=config.repeats,
        )
        finalize(results)
        validate(results)
        atomic_write_json(config.out / RESULTS_JSON, results)
        write_report(results, config.out)
        bar.update()
    return results
