"""The pix2pix ResNet-9 peer (ngf=64), exported through the same backends and the same
precision handling as the generator.

- **ONNX**: ``torch.onnx`` (dynamo, opset 18, optimised) exactly as the generator's
  export (``pocketgan.export.onnx_target.export_onnx_model``); int8 with the same static
  QDQ quantizer (``pocketgan.export.onnx_quantize.quantize_int8``: int8 per-channel
  weights, uint8 activations, percentile calibration, the same nodes left float),
  calibrated on the same photos (``pocketgan.export.calibration.calibration_set``).
- **ExecuTorch**: ``torch.export`` -> XNNPACK partitioner -> ``.pte``
  (``pocketgan.export.executorch_target.export_executorch_program``), int8 with the
  same PT2E ``XNNPACKQuantizer`` recipe. pix2pix's
  ``ReflectionPad2d`` and ``InstanceNorm2d`` have no XNNPACK kernel: they run on
  ExecuTorch's portable kernels, which is what shipping this network through ExecuTorch
  costs; the delegation summary is recorded with the artifact.
- **PyTorch eager**: the module itself.
- **Core ML** (for the iOS harness only: Core ML predicts on Apple devices): the generator's
  converter (``pocketgan.export.coreml_target.convert_function``, iOS 17 target, same
  compute precision and weight compression), one ``.mlpackage``.

Weights are random (seeded): latency and size do not depend on the values, and the peer
has no trained weights in this repository. The peer has no concepts: it is compared with
the generator on the same backend, precision and size, in both of the generator's concept
modes (see ``docs/benchmarks.md``).

Artifacts are cached under ``<cache>/pix2pix-<key>/`` keyed by every setting that changes
them, each file written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pocketgan.atomic import atomic_write_bytes, atomic_write_json
from pocketgan.bench.results import meminfo_bytes, versions

PEER_NAME = "pix2pix-resnet9"
PEER_PRECISIONS = {
    "onnx": ("fp32", "int8"),
    "executorch": ("fp32", "int8"),
    "eager": ("fp32",),
    "coreml": ("fp16", "fp32", "int8", "palettize4"),
}
EXTENSIONS = {"onnx": "onnx", "executorch": "pte", "eager": "safetensors", "coreml": "mlpackage"}
INPUT_NAME, OUTPUT_NAME = "image", "edited"
SEED = 0


@dataclass(frozen=True)
class PeerArtifact:
    """One exported peer: the file a runner opens, its bytes and how it was made."""

    backend: str
    precision: str
    size: int
    path: Path
    bytes: int
    info: dict

    def spec(self, threads: int, ngf: int, blocks: int) -> dict:
        if self.backend == "onnx":
            return {"kind": "onnx-file", "path": str(self.path), "threads": threads}
        if self.backend == "executorch":
            return {"kind": "pte-file", "path": str(self.path), "threads": threads}
        return {"kind": "eager-pix2pix", "weights": str(self.path), "ngf": ngf, "blocks": blocks, "threads": threads}


def build_peer(ngf: int = 64, blocks: int = 9):
    """The pix2pix ResNet generator with seeded random weights, in eval mode."""
    import torch

    from pocketgan.models.pix2pix_resnet import Pix2PixResnetGenerator

    torch.manual_seed(SEED)
    return Pix2PixResnetGenerator(ngf=ngf, n_blocks=blocks).eval()


def peer_name(ngf: int, blocks: int) -> str:
    return PEER_NAME if (ngf, blocks) == (64, 9) else f"pix2pix-resnet{blocks}-ngf{ngf}"


# Backends whose exporter code lives in ``export/<backend>_*.py`` (the rest of export/ is
# shared by all of them); the eager peer has none.
_EXPORTER_BACKENDS = ("onnx", "executorch", "coreml")


def _export_files(export_dir: Path, backend: str) -> list[Path]:
    """The export/ files ``backend``'s artifacts depend on: its own (``<backend>_*.py``)
    and the shared ones (every file that belongs to no backend), sorted by name."""

    def owner(f: Path) -> str | None:
        return next((b for b in _EXPORTER_BACKENDS if f.name.startswith(f"{b}_")), None)

    return [f for f in sorted(export_dir.glob("*.py")) if owner(f) in (None, backend)]


def exporter_fingerprint(backend: str) -> str:
    """sha256 of the source files that shape ``backend``'s exported artifacts: the
    backend's exporter, the shared export code, and the model, LoRA and bundle packages.
    Part of every cache key, so a cached export never outlives the code that wrote it."""
    import pocketgan.export

    root = Path(pocketgan.__file__).parent
    files = _export_files(Path(pocketgan.export.__file__).parent, backend)
    for package in ("models", "concepts", "bundle"):
        files += sorted((root / package).glob("*.py"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(*, backend: str, **settings) -> str:
    """Hash of the settings, the toolchain versions and :func:`exporter_fingerprint`."""
    blob = json.dumps(
        {**settings, "backend": backend, "versions": versions(), "exporter": exporter_fingerprint(backend)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def export_peer(
    backend: str,
    precision: str,
    size: int,
    cache: Path,
    *,
    ngf: int = 64,
    blocks: int = 9,
    progress: Callable[[str], None] | None = None,
) -> PeerArtifact:
    """The peer as ``backend`` at ``precision`` and ``size``², from the cache or exported now."""
    if precision not in PEER_PRECISIONS.get(backend, ()):
        raise ValueError(
            f"the {backend} peer has precisions {list(PEER_PRECISIONS.get(backend, ()))}, not {precision!r}"
        )
    step = progress or (lambda m: None)
    key = cache_key(
        model="pix2pix",
        backend=backend,
        precision=precision,
        size=size,
        ngf=ngf,
        blocks=blocks,
        seed=SEED,
        calibration_budget=(ORT_CALIBRATION_BUDGET_BYTES, PEER_CALIBRATION_MARGIN)
        if (backend, precision) == ("onnx", "int8")
        else None,
    )
    folder = Path(cache) / f"pix2pix-{backend}-{precision}-{size}-{key}"
    path, info_path = folder / f"model.{EXTENSIONS[backend]}", folder / "info.json"
    if path.exists() and info_path.is_file():
        info = json.loads(info_path.read_text())
        return PeerArtifact(backend, precision, size, path, _size(path), info)
    step(f"export {peer_name(ngf, blocks)} {backend} {precision} {size}²")
    model = build_peer(ngf, blocks)
    if backend == "coreml":
        info = _coreml_package(model, precision, size, path)
        info.update(backend=backend, precision=precision, size=size, ngf=ngf, blocks=blocks, seed=SEED, key=key)
        atomic_write_json(info_path, info)
        return PeerArtifact(backend, precision, size, path, _size(path), info)
    if backend == "eager":
        data, info = _eager_bytes(model), {"format": "safetensors (fp32 state dict)"}
    elif backend == "onnx":
        data, info = _onnx_bytes(model, precision, size)
    else:
        data, info = _pte_bytes(model, precision, size)
    info.update(backend=backend, precision=precision, size=size, ngf=ngf, blocks=blocks, seed=SEED, key=key)
    atomic_write_bytes(path, data)
    atomic_write_json(info_path, info)  # written last: its presence marks a complete entry
    return PeerArtifact(backend, precision, size, path, len(data), info)


def _size(path: Path) -> int:
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _coreml_package(model, precision: str, size: int, dest: Path) -> dict:
    import torch

    from pocketgan.atomic import atomic_directory
    from pocketgan.export.coreml_target import convert_function

    mlmodel = convert_function(model, (torch.zeros(1, 3, size, size),), precision=precision, target="iOS17")
    with atomic_directory(dest) as staging:
        package = staging.parent / f"{staging.name}.mlpackage"  # coremltools wants the suffix
        mlmodel.save(str(package))
        for item in package.iterdir():
            item.rename(staging / item.name)
        package.rmdir()
    return {"format": f"Core ML mlprogram .mlpackage (iOS 17), {precision}"}


def _eager_bytes(model) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in model.state_dict().items()})


# ONNX Runtime's histogram calibrator keeps every intermediate tensor of every calibration
# input in memory until it has run them all. ONNX int8 exports whose estimated calibration
# memory (inputs x ``intermediate_bytes``) exceeds this budget calibrate on an evenly spaced
# subset of the same inputs (at least 2 for the peer); the results record how many.
ORT_CALIBRATION_BUDGET_BYTES = 18 * 2**30  # of the estimate (the generator's 256² default set: ~17.8)


# The estimate undercounts what ORT holds per input (measured on the generator at 512²:
# ~1.2x); the peer's exports keep this margin (the generator's fit its budget without one).
PEER_CALIBRATION_MARGIN = 1.5


def intermediate_bytes(model, size: int) -> int:
    """Bytes of every floating-point tensor one forward pass at ``size``² creates (every
    ATen op's outputs): an estimate of what a calibrator that records every intermediate
    tensor holds per input (ONNX Runtime's held ~1.2x this for the generator at 512²)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class _Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    _Count.total += t.numel() * t.element_size()
            return out

    with torch.no_grad(), _Count():
        model(torch.zeros(1, 3, size, size))
    return _Count.total


def calibration_subset(
    inputs: list, per_input_bytes: int, *, feeds_per_input: int = 1, minimum: int = 1, budget: int | None = None
) -> list:
    """An evenly spaced subset of ``inputs`` whose calibration fits ``budget`` (default
    ``ORT_CALIBRATION_BUDGET_BYTES``, or 85% of the memory available now if that is less)."""
    if budget is None:
        available = meminfo_bytes("MemAvailable")
        budget = min(ORT_CALIBRATION_BUDGET_BYTES, int(0.85 * available)) if available else ORT_CALIBRATION_BUDGET_BYTES
    fit = max(minimum, int(budget // max(1, per_input_bytes * feeds_per_input)))
    if fit >= len(inputs):
        return list(inputs)
    step = len(inputs) / fit
    return [inputs[int(i * step)] for i in range(fit)]


def _calibration(size: int, model=None) -> tuple[list, dict]:
    from pocketgan.export.calibration import calibration_set

    cal = calibration_set(size)
    inputs, entry = cal.inputs, cal.manifest_entry()
    if model is not None:  # ONNX: within the calibrator's memory budget
        per_input = intermediate_bytes(model, size)
        inputs = calibration_subset(cal.inputs, int(per_input * PEER_CALIBRATION_MARGIN), minimum=2)
        if len(inputs) < len(cal.inputs):
            entry = {
                **entry,
                "photos": len(inputs),
                "note": f"{len(inputs)} of the {len(cal.inputs)} calibration inputs (evenly spaced): ONNX Runtime's "
                f"calibrator holds every intermediate tensor of every input, about "
                f"{per_input / 2**30:.2f} GiB each here",
            }
    return inputs, entry


def _onnx_bytes(model, precision: str, size: int) -> tuple[bytes, dict]:
    import torch

    from pocketgan.export.onnx_quantize import quantize_int8
    from pocketgan.export.onnx_target import OPSET, export_onnx_model

    proto = export_onnx_model(model, (torch.zeros(1, 3, size, size),), [INPUT_NAME])
    info: dict = {"format": f"ONNX opset {OPSET} (torch.onnx dynamo, optimised)"}
    if precision == "int8":
        inputs, info["calibration"] = _calibration(size, model)
        proto = quantize_int8(proto, [{INPUT_NAME: x} for x in inputs])
        info["format"] += "; static QDQ int8 (same quantizer as the generator)"
    return proto.SerializeToString(), info


def _pte_bytes(model, precision: str, size: int) -> tuple[bytes, dict]:
    import torch

    from pocketgan.export.executorch_target import export_executorch_program

    info: dict = {"format": "ExecuTorch .pte, XNNPACK partitioner"}
    inputs = None
    if precision == "int8":
        inputs, info["calibration"] = _calibration(size)
        info["format"] += "; PT2E int8 (XNNPACKQuantizer, same recipe as the generator)"
    # pix2pix's reflection padding and instance norm have no XNNPACK kernel: record, don't fail
    pte, info["delegation"] = export_executorch_program(
        model, (torch.zeros(1, 3, size, size),), precision=precision, calibration=inputs, require_delegation=False
    )
    return pte, info


def main(argv: list[str] | None = None) -> int:
    """Write the peer's artifacts for the device harnesses: ``OUT/pix2pix-<backend>-<precision>-<size>.<ext>``."""
    import argparse
    import shutil

    ap = argparse.ArgumentParser(prog="python -m pocketgan.bench.peers", description=main.__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--backends", nargs="+", default=["onnx", "executorch", "coreml"], choices=sorted(EXTENSIONS))
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8", "fp16"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[256])
    ap.add_argument("--cache", type=Path, help="export cache (default OUT/.cache)")
    args = ap.parse_args(argv)
    for size in args.sizes:
        for backend in args.backends:
            for precision in args.precisions:
                if precision not in PEER_PRECISIONS[backend]:
                    continue
                art = export_peer(backend, precision, size, args.cache or args.out / ".cache", progress=print)
                dest = args.out / f"pix2pix-{backend}-{precision}-{size}.{EXTENSIONS[backend]}"
                if dest.is_dir():
                    shutil.rmtree(dest)
                if art.path.is_dir():
                    shutil.copytree(art.path, dest)
                else:
                    shutil.copyfile(art.path, dest)
                print(f"wrote {dest} ({art.bytes:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
