"""``BenchConfig``: what ``pocketgan bench`` measures, validated before anything runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

BACKENDS = ("onnx", "executorch", "eager")
PRECISIONS = ("fp32", "int8")
CONCEPT_MODES = ("separate", "merged")
DEFAULT_SIZES = (256, 512)
# Backends that have an int8 path here. PyTorch eager is the fp32 reference only: its
# int8 rows are not measured (the ratios of int8 rows to eager use eager fp32).
INT8_BACKENDS = ("onnx", "executorch")


@dataclass
class BenchConfig:
    """What ``pocketgan bench`` runs. Every field is checked in ``__post_init__``."""

    out: Path = field(default=Path("bench_out"), metadata={
        "help": "Output directory: results.json, results.md, latency.png, and cache/ (exports, reused)."})
    backends: tuple[str, ...] = field(default=BACKENDS, metadata={"help": f"Backends to measure, of {BACKENDS}."})
    precisions: tuple[str, ...] = field(default=PRECISIONS, metadata={
        "help": f"Precisions, of {PRECISIONS} (eager is fp32 only)."})
    sizes: tuple[int, ...] = field(default=DEFAULT_SIZES, metadata={"help": "Square input sides (multiples of 8)."})
    concept_modes: tuple[str, ...] = field(default=CONCEPT_MODES, metadata={
        "help": "separate: base + hot-swapped adapter; merged: the concept folded into the weights."})
    threads: int = field(default=2, metadata={"help": "Intra-op threads of every backend and of the GEMM micro-benchmark."})
    rounds: int = field(default=20, metadata={"help": "Timed runs per measurement group and repeat."})
    warmup: int = field(default=3, metadata={"help": "Untimed runs before each group's timed runs."})
    repeats: int = field(default=2, metadata={
        "help": "Passes over all groups; each group's per-pass medians must agree within the tolerance."})
    max_group_seconds: float = field(default=30.0, metadata={
        "help": "Stop a group's timed runs after this long (at least min_rounds runs): the pix2pix peer at 512² is slow."})
    min_rounds: int = field(default=5, metadata={"help": "Timed runs a group gets even past max_group_seconds."})
    open_rounds: int = field(default=5, metadata={"help": "Cold bundle opens timed per group."})
    swap_rounds: int = field(default=2000, metadata={"help": "set_concept calls timed per group."})
    max_foreign_load: float = field(default=0.10, metadata={
        "help": "A group timed while other processes used more than this share of the CPUs is timed again."})
    retries: int = field(default=2, metadata={"help": "How often a group disturbed by other processes is timed again."})
    quiet_timeout: float = field(default=60.0, metadata={
        "help": "Seconds to wait for other processes to quiet down before timing a group (0: do not wait)."})
    tolerance: float = field(default=0.10, metadata={
        "help": "Stability: repeated medians must be within this fraction of each other."})
    bundle: Path | None = field(default=None, metadata={"help": "Source bundle; None = the embedded default."})
    peers: bool = field(default=True, metadata={"help": "Measure the pix2pix ResNet-9 peer on every backend too."})
    peer_ngf: int = field(default=64, metadata={"help": "pix2pix generator width (64 = the published one)."})
    peer_blocks: int = field(default=9, metadata={"help": "pix2pix ResNet blocks (9 = the published one)."})
    gemm: bool = field(default=True, metadata={"help": "Measure this machine's fp32 / int8 GEMM peak."})
    gemm_sizes: tuple[int, ...] = field(default=(256, 512, 1024, 2048), metadata={"help": "Square GEMM sides."})
    memory: bool = field(default=True, metadata={"help": "Peak resident memory of each group, in a fresh subprocess."})
    memory_runs: int = field(default=3, metadata={"help": "Inferences the memory subprocess runs after opening."})
    parity_threshold_db: float | None = field(default=None, metadata={
        "help": "Export parity gate; None = the exporter's default (35 dB fp32, 30 dB int8)."})
    cache: Path | None = field(default=None, metadata={"help": "Export cache; None = <out>/cache."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar (stderr)."})
    command: str | None = field(default=None, metadata={"help": "The command line, recorded in the results."})

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.cache = Path(self.cache) if self.cache is not None else None
        self.bundle = Path(self.bundle) if self.bundle is not None else None
        for name, allowed in (("backends", BACKENDS), ("precisions", PRECISIONS), ("concept_modes", CONCEPT_MODES)):
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
            raise ValueError(f"BenchConfig.sizes must be positive multiples of 8 (the generator downsamples 8x), got {bad}")
        if self.precisions == ("int8",) and self.backends == ("eager",):
            raise ValueError("PyTorch eager is measured at fp32 only; add --precision fp32 or another backend")
        for name in ("threads", "rounds", "repeats", "min_rounds", "open_rounds", "swap_rounds", "memory_runs",
                     "peer_ngf", "peer_blocks"):
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
