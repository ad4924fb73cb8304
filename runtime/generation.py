"""The runtime of a generation bundle: a text prompt and a seed in, an image out (no torch here).

    >>> from pocketgan.runtime import GenerationRuntime
    >>> rt = GenerationRuntime("my_generation_bundle")      # or open_bundle(path)
    >>> rt.generate("red apple", seed=3).save("apple.png")   # PIL image, S x S RGB
    >>> rt.generate("red apple", seed=3, size=256)           # the same, upscaled (Lanczos)

What one generation runs (every step is in the bundle's manifest, so the web demo, Kotlin
and Swift do the same bit for bit up to the model's own float rounding):

1. the prompt's states: its hashed words' rows of the prompt table, float32 (1, 12, width)
   (:mod:`pocketgan.runtime.prompt_hashing`); the empty prompt (or one with no word) is all
   padding rows: the *unconditional* generation, allowed on purpose;
2. the noise: float32 (1, 3, S, S) standard normal from the seed
   (:func:`pocketgan.runtime.seeded_noise.seeded_noise`: SplitMix64 + Box-Muller), so a
   (prompt, seed) pair is the same picture on every platform;
3. one run of the generator (ONNX Runtime, ExecuTorch or Core ML) -> float32 (1, 3, S, S)
   in [-1, 1] -> pixels ``round((y + 1) * 127.5)`` clipped to 0..255.
"""

from __future__ import annotations

import numbers
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from pocketgan.runtime.errors import ArtifactMissingError, PocketganError
from pocketgan.runtime.generation_backends import GenerationBackend, create_generation_backend
from pocketgan.runtime.generation_manifest import (
    GenerationManifest,
    load_golden,
    load_prompt_table,
    read_generation_manifest,
)
from pocketgan.runtime.prompt_hashing import prompt_states
from pocketgan.runtime.seeded_noise import seeded_noise

#: Longest prompt accepted, in characters (only the first ``tokens`` words count anyway).
MAX_PROMPT_CHARS = 4096
#: Largest ``size`` of :meth:`GenerationRuntime.generate` (a display upscale, not more detail).
MAX_DISPLAY_SIZE = 4096
#: Seeds are 64-bit unsigned integers (SplitMix64's state).
MAX_SEED = 2**64 - 1


class GenerationInputError(PocketganError, ValueError):
    """A prompt that is not a ``str`` or is too long, a seed outside [0, 2^64), a bad ``size``,
    or ``run_tensor`` arrays of the wrong dtype or shape."""


def default_generation_bundle_path() -> Path:
    """The generation bundle shipped inside the package (``pocketgan/default_generation_bundle``)."""
    return Path(str(resources.files("pocketgan").joinpath("default_generation_bundle")))


def check_prompt(prompt: object) -> str:
    """``prompt`` when it is a ``str`` of at most :data:`MAX_PROMPT_CHARS` characters."""
    if not isinstance(prompt, str):
        raise GenerationInputError(f"a prompt is a str, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise GenerationInputError(f"the prompt has {len(prompt)} characters, more than {MAX_PROMPT_CHARS}")
    return prompt


def check_seed(seed: object) -> int:
    """``seed`` as an ``int`` when it is an integer in [0, 2^64) (``True`` is not a seed)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise GenerationInputError(f"a seed is an integer in [0, 2^64), got {type(seed).__name__}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise GenerationInputError(f"a seed is an integer in [0, 2^64), got {seed}")
    return int(seed)


class GenerationRuntime:
    """An opened generation bundle. Thread-safe: ``generate`` may run on several threads at once.

    Opening verifies the manifest (schema and meaning), the prompt table's and the model's
    checksums, and the model's real inputs and outputs against the manifest's ``io``; every
    failure is a typed :class:`~pocketgan.runtime.errors.BundleError` saying what to do.

    Args:
        bundle: the bundle directory; ``None``: the embedded default
            (:func:`default_generation_bundle_path`).
        backend: ``"onnx"`` (ONNX Runtime), ``"executorch"`` (XNNPACK; needs the
            ``executorch`` extra) or ``"coreml"`` (macOS only).
        threads: intra-op threads of the backend; ``None`` lets it decide.
    """

    def __init__(self, bundle: str | Path | None = None, *, backend: str = "onnx", threads: int | None = None) -> None:
        if bundle is None and not default_generation_bundle_path().is_dir():
            raise ArtifactMissingError(
                f"no default generation bundle at {default_generation_bundle_path()} (this pocketgan ships none "
                "yet): name a generation bundle directory (pocketgan generate --bundle DIR; one is written by "
                "pocketgan.generation.bundle.write_generation_bundle)"
            )
        self.path = Path(bundle) if bundle is not None else default_generation_bundle_path()
        #: the bundle's validated manifest (``.raw``: the dict)
        self.manifest: GenerationManifest = read_generation_manifest(self.path)
        #: the generated image's side, pixels
        self.image_size: int = self.manifest.image_size
        #: float32 (buckets + 1, width), checksum-verified
        self.table: np.ndarray = load_prompt_table(self.path, self.manifest)
        self._backend: GenerationBackend = create_generation_backend(backend, self.path, self.manifest, threads=threads)

    @property
    def backend(self) -> str:
        return self._backend.name

    def prompt_states(self, prompt: str) -> np.ndarray:
        """float32 (1, tokens, width): the table rows of ``prompt``'s words (all padding for ``""``)."""
        return prompt_states(self.table, check_prompt(prompt), self.manifest.tokens)

    def noise(self, seed: int) -> np.ndarray:
        """float32 (1, 3, S, S) standard-normal noise of ``seed`` (the same on every platform)."""
        return seeded_noise(check_seed(seed), self.manifest.noise_shape)

    def run_tensor(self, noise: np.ndarray, prompt_states: np.ndarray) -> np.ndarray:
        """Raw model call: float32 noise (1, 3, S, S) and prompt states (1, tokens, width) ->
        float32 image (1, 3, S, S) in [-1, 1]."""
        for spec, x in zip(self.manifest.inputs, (noise, prompt_states)):
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != spec.shape:
                got = (getattr(x, "dtype", type(x).__name__), getattr(x, "shape", None))
                raise GenerationInputError(f"run_tensor's {spec.name} must be float32 {spec.shape}, got {got}")
        return self._backend.run(np.ascontiguousarray(noise), np.ascontiguousarray(prompt_states))

    def generate_array(self, prompt: str, seed: int = 0) -> np.ndarray:
        """uint8 (S, S, 3) RGB: ``prompt`` generated from ``seed``."""
        y = self.run_tensor(self.noise(seed), self.prompt_states(prompt))
        return np.clip(np.rint((y[0].transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)

    def generate(self, prompt: str, seed: int = 0, size: int | None = None) -> Image.Image:
        """An RGB ``PIL.Image`` of ``prompt`` from ``seed``: S x S, or ``size`` x ``size``
        upscaled with Lanczos for display (no new detail: the model makes S x S)."""
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_DISPLAY_SIZE
        ):
            raise GenerationInputError(f"size must be an int in 1..{MAX_DISPLAY_SIZE} (or None), got {size!r}")
        image = Image.fromarray(self.generate_array(prompt, seed))  # uint8 (S, S, 3): RGB
        if size is not None and size != self.image_size:
            image = image.resize((size, size), Image.Resampling.LANCZOS)
        return image

    def check_golden(self) -> list[float]:
        """Run every golden case of the bundle on this backend; return the PSNR (dB, [-1, 1]
        range) of each against the PyTorch image stored with it. Also checks that this runtime's
        noise and prompt states are the ones stored (``ArtifactFormatError`` otherwise)."""
        from pocketgan.runtime.errors import ArtifactFormatError

        scores = []
        for case in self.manifest.golden:
            stored = load_golden(self.path, self.manifest, case)
            for name, mine in (("noise", self.noise(case.seed)), ("prompt_states", self.prompt_states(case.prompt))):
                if not np.allclose(mine, stored[name], rtol=0, atol=1e-6):
                    raise ArtifactFormatError(
                        f"{case.file}: the stored {name} of ({case.prompt!r}, seed {case.seed}) differs from "
                        "what this runtime computes",
                        file=case.file,
                    )
            y = self.run_tensor(stored["noise"], stored["prompt_states"])
            mse = float(np.mean(((y.astype(np.float64) - stored["image"]) / 2.0) ** 2))
            scores.append(float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse))
        return scores

    def __repr__(self) -> str:
        return f"GenerationRuntime({str(self.path)!r}, backend={self.backend!r}, size={self.image_size})"
