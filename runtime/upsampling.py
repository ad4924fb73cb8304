"""Full-resolution output: lift the model's low-resolution edit to the photo's own size.

The generator runs at its working size (the letterboxed square, 256 px on the long side for the
shipped bundle). Blowing its output up with bicubic resampling gives a soft picture: the photo's
own detail above 256 px is lost. Instead, :func:`guided_upsample` fits the edit, at the model's
resolution, as a local per-channel affine function of the photo (the guided filter of He et al.,
run the "fast" way of Wu et al.'s Deep Guided Filter): in every window of ``2 * radius + 1`` pixels,
``edit ~= A * photo + b``. ``A`` and ``b`` are smooth, so they are upsampled bilinearly to the
photo's size and applied to the full-resolution photo, whose edges and texture then pass into the
edit. docs/full-resolution.md measures it against bicubic upscaling and the teacher at full size.

numpy + Pillow only. Memory is bounded by the image size: the output (3 bytes a pixel) plus one
strip of rows in float32; nothing full-size is ever float. Every platform can implement it: box
filters at the model's size, then per pixel two bilinear taps and a multiply-add.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pocketgan.runtime.errors import ArtifactFormatError, ImageTooLargeError

# Pixels per strip of the full-resolution pass: 256 kpx x about 16 float32 planes of temporaries,
# some 16 MB; small enough not to add to the peak, large enough that the per-strip overhead is noise.
_STRIP_PIXELS = 1 << 18

RESOLUTIONS = ("full", "upscale", "model")
"""What ``Runtime.edit(resolution=...)`` accepts:

- ``"full"``: the photo's own size, detail lifted from the photo (:func:`guided_upsample`);
- ``"upscale"``: the photo's own size, the model's output resized bicubically (what every edit
  was before the stage; cheapest at full size, soft);
- ``"model"``: the model's working size (the photo scaled to fit the model's square, aspect kept):
  the fast mode for camera previews drawn at screen size.
"""


UPSAMPLER_KIND = "guided-filter-mlp"
"""The manifest's ``upsampler.kind``: the guided filter with a learned correction of ``A``."""

FEATURES = 12
"""Inputs of the learned correction, per pixel at the model's size: the window means of the photo
and of the edit, the photo's window standard deviation x 4 and the photo-edit covariance x 16
(3 channels each; the factors bring all four to a similar range)."""


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


@dataclass(frozen=True)
class GuidedUpsampling:
    """How :func:`guided_upsample` fits the edit to the photo.

    ``radius``: half-width of the box window, in pixels at the model's resolution (the window is
    ``2 * radius + 1`` wide). ``eps``: regulariser of the fit, in (0..1 intensity)^2; larger keeps
    ``A`` nearer 0 (the edit's own colour, less of the photo's texture), smaller follows the photo
    more closely. ``mlp``: a concept's learned correction (trained on full-resolution crops
    against its teacher, :mod:`pocketgan.full_resolution.train`): ``((W, b), ...)`` of a per-pixel
    MLP, ``FEATURES`` inputs, ReLU between layers, 3 outputs added to ``A``; with it, ``eps`` is
    learned too. ``None``: the plain guided filter (radius 2 and eps 1e-3: the best of four
    settings in a one-off comparison on one training photo, not a measurement the repo repeats).
    """

    radius: int = 2
    eps: float = 1e-3
    mlp: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.radius, bool) or not isinstance(self.radius, numbers.Integral) or self.radius < 1:
            raise ValueError(f"GuidedUpsampling.radius must be a positive int, got {self.radius!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, numbers.Real) or not 0 < self.eps < 1:
            raise ValueError(f"GuidedUpsampling.eps must be a number in (0, 1), got {self.eps!r}")

    @classmethod
    def from_tensors(cls, radius: int, hidden: int, tensors: dict[str, np.ndarray], file: str) -> GuidedUpsampling:
        """A concept's learned settings from its ``upsampler`` safetensors (see :func:`tensor_shapes`);
        ``ArtifactFormatError`` naming ``file`` when the tensors are not exactly those."""
        expected = tensor_shapes(hidden)
        got = {name: tuple(t.shape) for name, t in tensors.items()}
        if got != expected:
            raise ArtifactFormatError(
                f"{file} holds {sorted(got.items())}, but the manifest's upsampler (hidden {hidden}) "
                f"needs {sorted(expected.items())}",
                file=file,
                field="upsampler.hidden",
            )
        eps = float(np.exp(tensors["log_eps"][0]))
        if not 1e-8 < eps < 1:
            raise ArtifactFormatError(f"{file}: log_eps gives eps = {eps:g}, outside (1e-8, 1)", file=file)
        layers = tuple((tensors[f"mlp.{i}.weight"], tensors[f"mlp.{i}.bias"]) for i in range(3))
        return cls(radius, eps, layers)

    def coefficients(self, low_photo: np.ndarray, low_edit: np.ndarray) -> np.ndarray:
        """(3, h, w) float photo and edit at the model's size, values 0..1 -> (6, h, w) float32:
        ``A`` (3 planes) then ``b`` (3 planes), so that ``edit ~= A * photo + b`` per channel."""
        return _coefficients(low_photo, low_edit, self.radius, self.eps, [(1.0, self.mlp)] if self.mlp else [])


@dataclass(frozen=True)
class MixedUpsampling:
    """The full-resolution stage of a strength or blend (``Runtime.edit(strength=...)``).

    ``eps`` is the weighted geometric mean of the concepts' and the neutral's (``NEUTRAL_EPS``:
    the neutral edit is the photo, whose best fit is ``A = 1, b = 0``, which a near-zero
    regulariser gives), and each concept's learned correction is added scaled by its weight.
    At strength 1 it is the concept's own stage; at strength 0 the plain fit of the neutral's
    edit, which gives the photo back at its own resolution.
    """

    radius: int
    eps: float
    corrections: tuple[tuple[float, tuple], ...]

    def coefficients(self, low_photo: np.ndarray, low_edit: np.ndarray) -> np.ndarray:
        return _coefficients(low_photo, low_edit, self.radius, self.eps, list(self.corrections))


#: the regulariser the neutral concept's edit is fitted with (see MixedUpsampling)
NEUTRAL_EPS = 1e-6


def mixed_upsampling(stages: dict[str, GuidedUpsampling], weights: dict[str, float]) -> MixedUpsampling:
    """The stage of the mix ``weights`` (``{concept: weight}``; the neutral takes ``1 - sum``)."""
    neutral = 1.0 - sum(weights.values())
    log_eps = neutral * np.log(NEUTRAL_EPS) + sum(w * np.log(stages[n].eps) for n, w in weights.items())
    eps = float(np.clip(np.exp(log_eps), 1e-8, 0.5))
    radius = stages[next(iter(weights))].radius
    corrections = tuple((float(w), stages[n].mlp) for n, w in weights.items() if w and stages[n].mlp)
    return MixedUpsampling(radius, eps, corrections)


def _coefficients(low_photo, low_edit, r: int, eps: float, corrections: list) -> np.ndarray:
    """The guided filter's ``A`` and ``b`` with learned corrections ``[(weight, mlp), ...]`` added to ``A``."""
    # one box pass over all four statistics (12 planes), one over A and b (6): numpy's
    # per-call overhead, not the arithmetic, is most of the cost at the model's size
    means = _box_mean(np.concatenate([low_photo, low_edit, low_photo * low_edit, low_photo * low_photo]), r)
    mean_x, mean_y, mean_xy, mean_xx = np.split(means, 4)
    cov = mean_xy - mean_x * mean_y
    var = mean_xx - mean_x * mean_x
    a = cov / (var + np.float32(eps))
    if corrections:
        std = np.sqrt(np.maximum(var, 0))
        features = np.concatenate([mean_x, mean_y, std * 4, cov * 16]).reshape(FEATURES, -1)
        for weight, mlp in corrections:
            h = features
            for i, (w, bias) in enumerate(mlp):
                h = w @ h + bias[:, None]
                h = _relu(h) if i < len(mlp) - 1 else h
            a = a + (h if weight == 1.0 else np.float32(weight) * h).reshape(a.shape)
    b = mean_y - a * mean_x
    # smoothing A and b once more is the guided filter's second step: it removes the window seams
    return _box_mean(np.concatenate([a, b]), r)


def tensor_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    """The tensors of a concept's ``upsampler`` file, for an MLP of ``hidden`` channels."""
    return {
        "log_eps": (1,),
        "mlp.0.weight": (hidden, FEATURES),
        "mlp.0.bias": (hidden,),
        "mlp.1.weight": (hidden, hidden),
        "mlp.1.bias": (hidden,),
        "mlp.2.weight": (3, hidden),
        "mlp.2.bias": (3,),
    }


def check_resolution(resolution) -> str:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {list(RESOLUTIONS)}, got {resolution!r}")
    return resolution


def _box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window of each (C, H, W) plane, the borders replicated (as
    ``avg_pool2d`` of a ``replicate``-padded tensor computes it in training)."""
    k = 2 * radius + 1
    h, w = x.shape[1:]
    padded = np.pad(x.astype(np.float32, copy=False), ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    if k > 9:  # wide windows: running sums, in float64 so the differences stay exact enough
        c = np.cumsum(padded, axis=1, dtype=np.float64)
        rows = np.concatenate([c[:, k - 1 : k], c[:, k:] - c[:, :-k]], axis=1)
        c = np.cumsum(rows, axis=2)
        return (np.concatenate([c[:, :, k - 1 : k], c[:, :, k:] - c[:, :, :-k]], axis=2) / (k * k)).astype(np.float32)
    rows = padded[:, 0:h].copy()  # narrow windows: k shifted adds per axis are faster than cumsum
    for i in range(1, k):
        rows += padded[:, i : i + h]
    out = rows[:, :, 0:w].copy()
    for j in range(1, k):
        out += rows[:, :, j : j + w]
    return out * np.float32(1 / (k * k))


def _strip_rows(image, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of a checked photo (PIL image or (H, W, 3) uint8) as (3, rows, W) float32 0..1."""
    if isinstance(image, np.ndarray):
        rows = image[y0:y1]
    else:
        strip = image.crop((0, y0, image.width, y1))
        rows = np.asarray(strip if strip.mode == "RGB" else strip.convert("RGB"))
    return rows.astype(np.float32).transpose(2, 0, 1) * np.float32(1 / 255)


def guided_upsample(
    image, low_photo: np.ndarray, low_edit: np.ndarray, settings: GuidedUpsampling, *, as_image: bool = False
):
    """The edit at the photo's own size.

    Args:
        image: the full-resolution photo, checked (:func:`~pocketgan.runtime.imaging.check_image`):
            a PIL image or an (H, W, 3) uint8 array.
        low_photo, low_edit: (3, h, w) float32, values 0..1: the photo as the model saw it (its
            letterbox crop) and the model's edit of it, h x w the photo's size at the model's scale.
        settings: window radius, regulariser and the concept's learned correction.
        as_image: return a PIL image (written a strip at a time, never also held as an array).
    Returns:
        (H, W, 3) uint8 RGB, or a ``PIL.Image`` in mode RGB, the photo's size.
    """
    return apply_coefficients(image, settings.coefficients(low_photo, low_edit), as_image=as_image)


def apply_coefficients(image, coefficients: np.ndarray, *, as_image: bool = False):
    """The full-resolution pass: ``coefficients`` ((6, h, w) float32, ``A`` then ``b``) sampled
    bilinearly at every pixel of ``image`` (checked, any size) and applied, a strip of rows at a
    time; returns (H, W, 3) uint8 RGB (a PIL RGB image when ``as_image``)."""
    height, width = (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]
    planes = [Image.fromarray(plane) for plane in coefficients]  # mode "F"
    h, w = coefficients.shape[1:]
    try:
        out = Image.new("RGB", (width, height)) if as_image else np.empty((height, width, 3), np.uint8)
    except MemoryError:
        raise ImageTooLargeError(f"an edited image of {width}x{height} does not fit in memory") from None
    step = max(1, _STRIP_PIXELS // width)
    for y0 in range(0, height, step):
        y1 = min(height, y0 + step)
        # the box maps output rows y0..y1 onto the same source positions a whole-image resize uses
        box = (0.0, y0 * h / height, float(w), y1 * h / height)
        lifted = np.stack([np.asarray(p.resize((width, y1 - y0), Image.Resampling.BILINEAR, box=box)) for p in planes])
        edit = lifted[:3] * _strip_rows(image, y0, y1) + lifted[3:]
        rgb = np.clip(edit * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        if as_image:
            out.paste(Image.fromarray(np.ascontiguousarray(rgb)), (0, y0))
        else:
            out[y0:y1] = rgb
    return out


def load_upsamplers(bundle_dir, manifest) -> dict[str, GuidedUpsampling]:
    """Each concept's :class:`GuidedUpsampling`, read from the bundle's verified bytes: the learned
    ones of a bundle with an ``upsampler``, the plain guided filter for one made before it."""
    from pocketgan.runtime.bundle_files import read_artifact
    from pocketgan.runtime.tensor_file import read_float32_safetensors

    info = manifest.upsampler
    if info is None:
        return {c.name: GuidedUpsampling() for c in manifest.concepts}
    out = {}
    for c in manifest.concepts:
        tensors = read_float32_safetensors(read_artifact(bundle_dir, manifest, c.upsampler), c.upsampler)
        out[c.name] = GuidedUpsampling.from_tensors(info.radius, info.hidden, tensors, c.upsampler)
    return out
