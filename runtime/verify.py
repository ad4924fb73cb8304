"""What ``verify_bundle`` (and ``pocketgan info --verify``) checks beyond checksums, without
running a model or importing torch.

- ONNX: every model opens in ONNX Runtime from its verified bytes and its inputs, outputs
  and overridable concept inputs match ``io`` and ``concept_inputs``; every adapter holds
  exactly ``concept_inputs`` (:func:`pocketgan.runtime.backends.onnx.verify_onnx_export`).
- ExecuTorch: every program carries the ``.pte`` file identifier. Loading its methods
  needs the ExecuTorch runtime (and torch), so the method checks run when the
  ``executorch`` backend opens the bundle.
- Core ML: every package's ``Manifest.json`` structure
  (:func:`pocketgan.runtime.backends.coreml.check_package`). Core ML itself runs only on
  macOS, where the backend checks each function's inputs and outputs when it opens.
- Every package or program path the manifest names stays inside the bundle.
- The full-resolution stage: every concept's ``upsampler`` file is a float32 safetensors file
  holding exactly the tensors the manifest's ``upsampler`` calls for
  (:func:`pocketgan.runtime.upsampling.load_upsamplers`).
"""

from __future__ import annotations

from pathlib import Path

from pocketgan.runtime.bundle_files import read_artifact, resolve_in_bundle
from pocketgan.runtime.manifest_view import Manifest


def verify_exports(bundle_dir: Path, manifest: Manifest) -> None:
    """Run the checks above for every export in ``manifest``; raise the first BundleError."""
    from pocketgan.runtime.backends.coreml import check_package
    from pocketgan.runtime.backends.executorch import check_pte_identifier
    from pocketgan.runtime.backends.onnx import verify_onnx_export
    from pocketgan.runtime.upsampling import load_upsamplers

    load_upsamplers(bundle_dir, manifest)
    verify_onnx_export(bundle_dir, manifest)
    et = manifest.executorch
    if et is not None:
        programs = [et.program, et.merged_program]
        if et.external_data is not None:
            programs += list(et.external_data.programs.values())
        for relpath in filter(None, programs):
            check_pte_identifier(read_artifact(bundle_dir, manifest, relpath), relpath)
    cm = manifest.coreml
    if cm is not None:
        for relpath in filter(None, [cm.package, cm.merged_package, *cm.ios17_packages.values()]):
            resolve_in_bundle(bundle_dir, relpath, field="targets.coreml")
            check_package(bundle_dir, manifest, relpath)
