"""What gets timed: one *runner* per (model, backend, concept mode), opened from a
JSON-able spec so the memory subprocess opens exactly what the parent times.

Specs (``kind``):

- ``runtime``: a pocketgan bundle through :class:`pocketgan.runtime.Runtime`
  (``backend`` onnx | executorch, ``mode`` separate | merged), what an app embeds;
- ``eager-bundle``: the same generator in PyTorch eager (``pocketgan.bundle``); separate:
  one model with LoRA injected, a concept swap copies that concept's LoRA tensors and
  tokens in place; merged: one model per concept with the LoRA folded in, a swap is a
  dict lookup;
- ``onnx-file`` / ``pte-file`` / ``eager-pix2pix``: the pix2pix peer (no concepts) as an
  ONNX model in ONNX Runtime, an ExecuTorch program, or the PyTorch module.

Every runner has ``run(x)`` ((1, 3, S, S) float32 numpy -> numpy), ``concepts`` (empty for
the peer), ``set_concept(name)`` (a no-op without concepts) and ``close()``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KINDS = ("runtime", "eager-bundle", "onnx-file", "pte-file", "eager-pix2pix")


def import_for(spec: dict) -> None:
    """Import the libraries ``spec`` needs (so a memory baseline can exclude them)."""
    kind = spec["kind"]
    if kind == "runtime" and spec["backend"] == "onnx" or kind == "onnx-file":
        import onnxruntime  # noqa: F401

        import pocketgan.runtime  # noqa: F401
    elif kind == "runtime" or kind == "pte-file":
        import torch  # noqa: F401
        from executorch.runtime import Runtime

        import pocketgan.runtime  # noqa: F401

        Runtime.get()
    else:
        import torch  # noqa: F401

        import pocketgan.bundle  # noqa: F401
        import pocketgan.models.pix2pix_resnet  # noqa: F401


class RuntimeRunner:
    def __init__(self, spec: dict) -> None:
        from pocketgan.runtime import Runtime

        self.rt = Runtime(
            spec["bundle"],
            backend=spec["backend"],
            threads=spec["threads"],
            concept_mode=spec["mode"],
            concept=spec.get("concept"),
        )
        self.concepts = self.rt.concepts

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.rt.run_tensor(x)

    def set_concept(self, name: str) -> None:
        self.rt.set_concept(name)

    def close(self) -> None:
        self.rt = None


class EagerBundleRunner:
    def __init__(self, spec: dict) -> None:
        import torch

        from pocketgan.bundle import load_bundle

        torch.set_num_threads(spec["threads"])
        bundle = load_bundle(spec.get("bundle"))
        self.concepts = tuple(bundle.concept_names)
        self.mode = spec["mode"]
        first = spec.get("concept") or self.concepts[0]
        if self.mode == "separate":
            self.model = bundle.model_for(first, "separate")
            params = dict(self.model.generator.named_parameters())
            # concept -> [(model tensor, concept tensor)]: a swap is in-place copies only
            self._swaps = {}
            for c in bundle.concepts:
                pairs = []
                for key, value in c.padded(bundle.rank_pattern).items():
                    layer, ab = key.rsplit(".lora_", 1)
                    pairs.append((params[f"{layer}.lora_{ab[0]}.default.weight"], value))
                pairs.append((self.model.concept_tokens, c.tokens.reshape(self.model.concept_tokens.shape)))
                self._swaps[c.name] = pairs
        else:
            self._models = {name: bundle.model_for(name, "merged") for name in self.concepts}
            self.model = self._models[first]

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()

    def set_concept(self, name: str) -> None:
        if self.mode == "separate":
            import torch

            with torch.no_grad():
                for target, source in self._swaps[name]:
                    target.copy_(source)
        else:
            self.model = self._models[name]

    def close(self) -> None:
        self.model = None


class OnnxFileRunner:
    concepts: tuple[str, ...] = ()

    def __init__(self, spec: dict) -> None:
        import onnxruntime as ort

        from pocketgan.runtime.backends.onnx import session_options

        data = Path(spec["path"]).read_bytes()
        self.session = ort.InferenceSession(data, session_options(spec["threads"]), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]

    def set_concept(self, name: str) -> None:
        pass

    def close(self) -> None:
        self.session = None


class PteFileRunner:
    concepts: tuple[str, ...] = ()

    def __init__(self, spec: dict) -> None:
        import torch  # noqa: F401  (executorch exchanges torch tensors)
        from executorch.runtime import Runtime

        from pocketgan.runtime.backends.executorch import set_threads

        set_threads(spec["threads"])
        self.program = Runtime.get().load_program(Path(spec["path"]).read_bytes())
        self.method = self.program.load_method(spec.get("method", "forward"))

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self.method.execute([torch.from_numpy(x)])[0].numpy()

    def set_concept(self, name: str) -> None:
        pass

    def close(self) -> None:
        self.method = self.program = None


class EagerPix2PixRunner:
    concepts: tuple[str, ...] = ()

    def __init__(self, spec: dict) -> None:
        import torch
        from safetensors.torch import load_file

        from pocketgan.models.pix2pix_resnet import Pix2PixResnetGenerator

        torch.set_num_threads(spec["threads"])
        self.model = Pix2PixResnetGenerator(ngf=spec["ngf"], n_blocks=spec["blocks"]).eval()
        self.model.load_state_dict(load_file(spec["weights"]))

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()

    def set_concept(self, name: str) -> None:
        pass

    def close(self) -> None:
        self.model = None


_RUNNERS = {
    "runtime": RuntimeRunner,
    "eager-bundle": EagerBundleRunner,
    "onnx-file": OnnxFileRunner,
    "pte-file": PteFileRunner,
    "eager-pix2pix": EagerPix2PixRunner,
}


def open_runner(spec: dict):
    """Open the runner ``spec`` describes (see the module docstring)."""
    try:
        cls = _RUNNERS[spec["kind"]]
    except KeyError:
        raise ValueError(f"unknown runner kind {spec.get('kind')!r}; one of {list(KINDS)}") from None
    return cls(spec)
