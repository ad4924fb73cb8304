"""``BenchConfig``: what ``pocketgan bench`` measures, validated before anything runs; and
the benchmark vocabulary, derived from the export vocabulary (``pocketgan.runtime.targets``).

Only what exists in benchmarks alone is spelled here: PyTorch eager (the reference every
export is compared with, not an export target), the pix2pix peer (a model, not a concept
mode) and which targets a host cannot time. Adding an export target adds it here, with its
runtime's title and its precisions, through ``runtime/targets.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from pocketgan.runtime.targets import COMPRESSED_PARITY_DB, FLOAT_PARITY_DB, RUNNABLE_MODES, TARGET_SPECS, TARGETS
from pocketgan.runtime.targets import PRECISIONS as EXPORT_PRECISIONS

#: The benchmarked model and its peer (the ``model`` of a record). The peer has no concepts:
#: its records' concept mode is ``PEER_MODE``.
GENERATOR, PEER, PEER_MODE = "pocketgan", "pix2pix", "none"
#: PyTorch eager: a backend of the benchmarks only (the fp32 model every export is checked
#: against), so it is not in ``runtime/targets.py``.
EAGER = "eager"
#: Export targets a host cannot time: Core ML predicts only on macOS. Its numbers come from
#: the iOS harness (``device_harness/ios``), its sizes from ``make bench-matrix``.
DEVICE_ONLY_TARGETS = ("coreml",)
HOST_TARGETS = tuple(t for t in TARGETS if t not in DEVICE_ONLY_TARGETS)
#: What ``pocketgan bench --backends`` takes: the host's export targets, then PyTorch eager.
BACKENDS = (*HOST_TARGETS, EAGER)
#: Every backend a results document may hold (the phones add Core ML), in table order.
BACKEND_ORDER = (*TARGETS, EAGER)
#: How tables and charts name a backend: the runtime library that runs it.
BACKEND_TITLES = {**{t: TARGET_SPECS[t].runtime_title for t in TARGETS}, EAGER: "PyTorch eager"}
#: Precisions some host target exports, in the export vocabulary's order (fp32, int8).
BENCH_PRECISIONS = tuple(p for p in EXPORT_PRECISIONS if any(p in TARGET_SPECS[t].precisions for t in HOST_TARGETS))
#: The concept modes a runtime opens (an export in mode "both" holds both).
BENCH_CONCEPT_MODES = RUNNABLE_MODES["both"]
#: The concept modes of records: the generator's, then the peer's.
RECORD_MODES = (*BENCH_CONCEPT_MODES, PEER_MODE)
DEFAULT_SIZES = (256, 512)
# Backends that have an int8 path here. PyTorch eager is the fp32 reference only: its
# int8 rows are not measured (the ratios of int8 rows to eager use eager fp32).
INT8_BACKENDS = tuple(t for t in HOST_TARGETS if "int8" in TARGET_SPECS[t].precisions)


def _opt(default, text: str):
    """A field with its help text (``metadata["help"]``: what the ``pocketgan bench`` flags print)."""
    return field(default=default, metadata={"help": text})


@dataclass
class BenchConfig:
    """What ``pocketgan bench`` runs. Every field is checked in ``__post_init__``."""

    out: Path = _opt(
        Path("bench_out"), "Output directory: results.json, results.md, latency.png, and cache/ (exports, reused)."
    )
    backends: tuple[str, ...] = _opt(BACKENDS, f"Backends to measure, of {BACKENDS}.")
    precisions: tuple[str, ...] = _opt(BENCH_PRECISIONS, f"Precisions, of {BENCH_PRECISIONS} (eager is fp32 only).")
    sizes: tuple[int, ...] = _opt(DEFAULT_SIZES, "Square input sides (multiples of 8).")
    concept_modes: tuple[str, ...] = _opt(
        BENCH_CONCEPT_MODES, "separate: base + hot-swapped adapter; merged: the concept folded into the weights."
    )
    threads: int = _opt(2, "Intra-op threads of every backend and of the GEMM micro-benchmark.")
    rounds: int = _opt(20, "Timed runs per measurement group and repeat.")
    warmup: int = _opt(3, "Untimed runs before each group's timed runs.")
    repeats: int = _opt(2, "Passes over all groups; each group's per-pass medians must agree within the tolerance.")
    max_group_seconds: float = _opt(
        30.0, "Stop a group's timed runs after this long (at least min_rounds runs): the pix2pix peer at 512² is slow."
    )
    min_rounds: int = _opt(5, "Timed runs a group gets even past max_group_seconds.")
    open_rounds: int = _opt(5, "Cold bundle opens timed per group.")
    swap_rounds: int = _opt(2000, "set_concept calls timed per group.")
    max_foreign_load: float = _opt(
        0.10, "A group timed while other processes used more than this share of the CPUs is timed again."
    )
    retries: int = _opt(2, "How often a group disturbed by other processes is timed again.")
    quiet_timeout: float = _opt(
        60.0, "Seconds to wait for other processes to quiet down before timing a group (0: do not wait)."
    )
    tolerance: float = _opt(0.10, "Stability: repeated medians must be within this fraction of each other.")
    bundle: Path | None = _opt(None, "Source bundle; None = the embedded default.")
    peers: bool = _opt(True, "Measure the pix2pix ResNet-9 peer on every backend too.")
    peer_ngf: int = _opt(64, "pix2pix generator width (64 = the published one).")
    peer_blocks: int = _opt(9, "pix2pix ResNet blocks (9 = the published one).")
    gemm: bool = _opt(True, "Measure this machine's fp32 / int8 GEMM peak.")
    gemm_sizes: tuple[int, ...] = _opt((256, 512, 1024, 2048), "Square GEMM sides.")
    memory: bool = _opt(True, "Peak resident memory of each group, in a fresh subprocess.")
    memory_runs: int = _opt(3, "Inferences the memory subprocess runs after opening.")
    parity_threshold_db: float | None = _opt(
        None,
        f"Export parity gate; None = the exporter's default "
        f"({FLOAT_PARITY_DB:g} dB fp32, {COMPRESSED_PARITY_DB:g} dB int8).",
    )
    cache: Path | None = _opt(None, "Export cache; None = <out>/cache.")
    progress: bool = _opt(True, "Show a progress bar (stderr).")
    command: str | None = _opt(None, "The command line, recorded in the results.")

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.cache = Path(self.cache) if self.cache is not None else None
        self.bundle = Path(self.bundle) if self.bundle is not None else None
        for name, allowed in (
            ("backends", BACKENDS),
            ("precisions", BENCH_PRECISIONS),
            ("concept_modes", BENCH_CONCEPT_MODES),
        ):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            value = tuple(dict.fromkeys(value))
            if not value:
                raise ValueError(f"BenchConfig.{name}: name at least one of {list(allowed)}")
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise ValueError(f"BenchConfig.{name}: unknown {unknown}; choose from {list(allowed)}")
            setattr(self, name, value)
        if isinstance(self.sizes, int):
            self.sizes = (self.sizes,)
        self.sizes = tuple(dict.fromkeys(int(s) for s in self.sizes))
        if not self.sizes:
            raise ValueError("BenchConfig.sizes: name at least one size")
        bad = [s for s in self.sizes if s <= 0 or s % 8]
        if bad:
            raise ValueError(
                f"BenchConfig.sizes must be positive multiples of 8 (the generator downsamples 8x), got {bad}"
            )
        if self.precisions == ("int8",) and self.backends == (EAGER,):
            raise ValueError("PyTorch eager is measured at fp32 only; add --precision fp32 or another backend")
        for name in (
            "threads",
            "rounds",
            "repeats",
            "min_rounds",
            "open_rounds",
            "swap_rounds",
            "memory_runs",
            "peer_ngf",
            "peer_blocks",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"BenchConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"BenchConfig.warmup must be >= 0, got {self.warmup}")
        if self.min_rounds > self.rounds:
            self.min_rounds = self.rounds
        if self.max_group_seconds <= 0:
            raise ValueError(f"BenchConfig.max_group_seconds must be positive, got {self.max_group_seconds}")
        if not 0 < self.max_foreign_load <= 1:
            raise ValueError(f"BenchConfig.max_foreign_load is a fraction in (0, 1], got {self.max_foreign_load}")
        if self.retries < 0 or self.quiet_timeout < 0:
            raise ValueError("BenchConfig.retries and quiet_timeout must be >= 0")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"BenchConfig.tolerance is a fraction in (0, 1), got {self.tolerance}")
        self.gemm_sizes = tuple(int(s) for s in self.gemm_sizes)
        if self.gemm and (not self.gemm_sizes or min(self.gemm_sizes) < 16):
            raise ValueError(f"BenchConfig.gemm_sizes must be sides >= 16, got {self.gemm_sizes}")
        if self.parity_threshold_db is not None and self.parity_threshold_db <= 0:
            raise ValueError(f"BenchConfig.parity_threshold_db must be positive, got {self.parity_threshold_db}")
        if self.bundle is not None and not (self.bundle / "manifest.json").is_file():
            raise ValueError(f"BenchConfig.bundle: {self.bundle} is not a bundle (no manifest.json)")

    @property
    def cache_dir(self) -> Path:
        return self.cache if self.cache is not None else self.out / "cache"

    def to_dict(self) -> dict:
        """JSON-able copy (recorded in results.json)."""
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, Path):
                d[key] = str(value)
            elif isinstance(value, tuple):
                d[key] = list(value)
        return d
