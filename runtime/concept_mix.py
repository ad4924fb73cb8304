"""Concept strength and blending: one set of concept tensors for a weighted mix of concepts.

A concept is a LoRA delta on the base weights plus a set of tokens. A bundle that supports
mixing also carries a *neutral* concept, trained to give the photo back (the identity edit).
A mix ``{c_1: w_1, ..., c_k: w_k}`` (each ``w_i`` in [0, 1.5], their sum at most 1.5) is::

    delta  = sum_i w_i * delta(c_i) + (1 - sum_i w_i) * delta(neutral)
    tokens = tokens(neutral) + sum_i w_i * (tokens(c_i) - tokens(neutral))

so strength ``s`` of one concept is the mix ``{c: w(s)}``: 0 is the neutral concept (the photo
back), 1 is the concept as trained, values between move along the line from one to the
other and 1.5 goes half as far again. ``w`` is the concept's calibration curve
(:func:`strength_weight`, measured at training time so that strength 0.5 is half-way from the
photo to the full edit; without a curve ``w(s) = s``). Blend weights are used as they are. A
blend whose weights sum to 1 gives the neutral no share.

How ranks combine: each LoRA delta is ``B @ A`` with rank ``r``; a weighted sum of deltas is
the concatenation of the A rows and of the weighted B columns, of rank ``sum r``. A bundle
with a neutral gives its separate-mode graph a second LoRA per layer (inputs
``<layer>.lora_A.mix.weight`` / ``lora_B.mix.weight``, rank ``concept rank + neutral rank``,
zero by default) next to the concepts' (``rank_pattern``, what every adapter holds, unchanged):
together ``2 x (concept rank) + (neutral rank)``, so any one concept at any strength, and any
two-concept blend, is *exact* (:func:`split_slots` puts the mixed rows into the two). A mix
with a larger total rank (three or more concepts) is reduced to the graph's rank by a
truncated SVD of the layer's delta, the best approximation of that rank (exact when the
mixed delta's rank fits); :func:`mix_tensors` reports the relative error it left.

This module is numpy only (the runtime does not import torch): the ONNX backend feeds its
result as graph inputs and the web demo (``web_demo/lib/concept_mix.js``) does the same
concatenation; ExecuTorch and Core ML take only the weights (``pocketgan.concepts.mixing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pocketgan.runtime.errors import MixError, UnknownConceptError

STRENGTH_MIN, STRENGTH_MAX = 0.0, 1.5
#: the key of the concept tokens among the concept tensors
TOKENS = "concept_tokens"
_A, _B = ".lora_A.weight", ".lora_B.weight"


__all__ = [
    "ConceptMix",
    "MixError",
    "concept_mix",
    "mix_slot_names",
    "mix_tensors",
    "parse_blend",
    "split_slots",
    "strength_weight",
]


@dataclass(frozen=True)
class ConceptMix:
    """Weights of a mix, in the caller's order; the neutral concept takes ``1 - sum``.

    Build it with :func:`concept_mix`, which validates.
    """

    weights: tuple[tuple[str, float], ...]

    @property
    def neutral_weight(self) -> float:
        return 1.0 - sum(w for _, w in self.weights)

    @property
    def is_plain(self) -> bool:
        """One concept at strength exactly 1: the concept as exported, no mixing needed."""
        return len(self.weights) == 1 and self.weights[0][1] == 1.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)

    def label(self) -> str:
        """``cartoon`` / ``cartoon@0.5`` / ``cartoon=0.6,stylize=0.4``: for messages and file names."""
        if len(self.weights) == 1:
            name, w = self.weights[0]
            return name if w == 1.0 else f"{name}@{w:g}"
        return ",".join(f"{n}={w:g}" for n, w in self.weights)


def concept_mix(weights: Mapping[str, float], known: tuple[str, ...] | list[str] | None = None) -> ConceptMix:
    """Validate a mix: at least one concept, each known, each weight a finite number in
    [0, 1.5], the weights summing to at most 1.5. Raises :class:`MixError` (or
    :class:`~pocketgan.runtime.errors.UnknownConceptError` for a name not in ``known``)."""
    if not isinstance(weights, Mapping) or not weights:
        raise MixError(f"a mix names at least one concept with its weight, got {weights!r}")
    out = []
    for name, w in weights.items():
        if known is not None and name not in known:
            raise UnknownConceptError(f"unknown concept {name!r}; this bundle has {list(known)}")
        if isinstance(w, bool) or not isinstance(w, (int, float, np.floating, np.integer)) or not np.isfinite(w):
            raise MixError(f"the weight of {name!r} must be a number, got {w!r}")
        if not STRENGTH_MIN <= float(w) <= STRENGTH_MAX:
            raise MixError(f"the weight of {name!r} is {w:g}; strengths and weights go from 0 to 1.5")
        out.append((name, float(w)))
    total = sum(w for _, w in out)
    if total > STRENGTH_MAX + 1e-9:
        raise MixError(f"the weights sum to {total:g}; a mix may sum to at most 1.5")
    return ConceptMix(tuple(out))


def strength_weight(curve, strength: float) -> float:
    """The mix weight that runs ``strength`` of a concept with calibration ``curve`` (the weights
    of strengths 0, 0.1, ..., 1; ``None``: none, the strength is the weight). Strengths above 1
    continue with slope 1 (``1 + (s - 1)``): past the full edit the calibration has no data."""
    if curve is None or strength >= 1.0:
        return float(strength)
    return float(np.interp(strength, np.linspace(0.0, 1.0, len(curve)), curve))


def parse_blend(text: str) -> dict[str, float]:
    """``"cartoon=0.6,stylize=0.4"`` -> ``{"cartoon": 0.6, "stylize": 0.4}`` (for command lines)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not name.strip():
            raise MixError(f"a blend is NAME=WEIGHT[,NAME=WEIGHT...], got {text!r}")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise MixError(f"the weight of {name.strip()!r} is not a number: {value!r}") from None
    return out


MIX_A, MIX_B = ".lora_A.mix.weight", ".lora_B.mix.weight"


def mix_slot_names(layers) -> set[str]:
    """The graph inputs of the second LoRA (strength and blending) of ``layers``."""
    return {layer + suffix for layer in layers for suffix in (MIX_A, MIX_B)}


def split_slots(tensors: Mapping[str, np.ndarray], ranks: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Mixed tensors of both slots' rank (:func:`mix_tensors`) as the graph's inputs: the first
    ``ranks[layer]`` rank rows in the concepts' LoRA, the rest in the second (mix) LoRA."""
    out = {TOKENS: tensors[TOKENS]}
    for layer, r in ranks.items():
        a, b = tensors[layer + _A], tensors[layer + _B]
        out[layer + _A], out[layer + _B] = np.ascontiguousarray(a[:r]), np.ascontiguousarray(b[:, :r])
        out[layer + MIX_A], out[layer + MIX_B] = np.ascontiguousarray(a[r:]), np.ascontiguousarray(b[:, r:])
    return out


def _layers(tensors: Mapping[str, np.ndarray]) -> list[str]:
    return sorted(k[: -len(_A)] for k in tensors if k.endswith(_A))


def mix_tensors(
    concepts: Mapping[str, Mapping[str, np.ndarray]],
    neutral: Mapping[str, np.ndarray],
    mix: ConceptMix,
    ranks: Mapping[str, int],
    dtype=np.float32,
) -> tuple[dict[str, np.ndarray], float]:
    """The concept tensors of ``mix``, at the graph's ``ranks``.

    Args:
        concepts: per concept, its tensors under the graph's names: ``concept_tokens``
            (1, T, D) and ``<layer>.lora_A.weight`` (r, in[, kh, kw]) /
            ``<layer>.lora_B.weight`` (out, r[, 1, 1]), at any rank (zero-padded is fine).
        neutral: the neutral concept's tensors, same layout.
        mix: a validated :class:`ConceptMix`.
        ranks: the rank of each layer in the result (the bundle's ``rank_pattern``).
        dtype: dtype of the result (the graph's concept input dtype).
    Returns:
        (tensors, error): the tensors (``ranks``-shaped, ``dtype``) and the largest relative
        Frobenius error of a layer delta that had to be reduced by SVD (0.0: exact).
    """
    terms = [(concepts[name], w) for name, w in mix.weights if w != 0.0]
    if mix.neutral_weight != 0.0:
        terms.append((neutral, mix.neutral_weight))
    base_tokens = np.asarray(neutral[TOKENS], np.float32)
    tokens = base_tokens.copy()
    for name, w in mix.weights:
        tokens += np.float32(w) * (np.asarray(concepts[name][TOKENS], np.float32) - base_tokens)
    out = {TOKENS: tokens.astype(dtype)}
    error = 0.0
    for layer in _layers(neutral):
        a_parts, b_parts = [], []
        for tensors, w in terms:
            a = np.asarray(tensors[layer + _A], np.float32)
            b = np.asarray(tensors[layer + _B], np.float32)
            # drop zero padding (rows of A / columns of B that are all zero): it adds nothing
            used = np.flatnonzero(
                np.any(a.reshape(a.shape[0], -1) != 0, axis=1) & np.any(b != 0, axis=(0, *range(2, b.ndim)))
            )
            a_parts.append(a[used])
            b_parts.append(b[:, used] * np.float32(w))
        a_shape, b_shape = neutral[layer + _A].shape, neutral[layer + _B].shape
        a_cat = np.concatenate(a_parts, axis=0) if a_parts else np.zeros((0, *a_shape[1:]), np.float32)
        b_cat = np.concatenate(b_parts, axis=1) if b_parts else np.zeros((b_shape[0], 0, *b_shape[2:]), np.float32)
        rank = ranks[layer]
        if a_cat.shape[0] > rank:
            a_cat, b_cat, layer_error = _reduce_rank(a_cat, b_cat, rank)
            error = max(error, layer_error)
        a_out = np.zeros((rank, *a_shape[1:]), np.float32)
        b_out = np.zeros((b_shape[0], rank, *b_shape[2:]), np.float32)
        a_out[: a_cat.shape[0]] = a_cat
        b_out[:, : b_cat.shape[1]] = b_cat
        out[layer + _A], out[layer + _B] = a_out.astype(dtype), b_out.astype(dtype)
    return out, error


def _reduce_rank(a: np.ndarray, b: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Best rank-``rank`` factors of the delta ``B @ A`` (truncated SVD), and the relative error."""
    a2 = a.reshape(a.shape[0], -1).astype(np.float64)
    b2 = b.reshape(b.shape[0], b.shape[1]).astype(np.float64)
    delta = b2 @ a2
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    root = np.sqrt(s[:rank])
    b_new = (u[:, :rank] * root).astype(np.float32)
    a_new = (root[:, None] * vt[:rank]).astype(np.float32)
    norm = float(np.linalg.norm(delta))
    error = float(np.sqrt(np.sum(s[rank:] ** 2)) / norm) if norm > 0 else 0.0
    return a_new.reshape(rank, *a.shape[1:]), b_new.reshape(b.shape[0], rank, *b.shape[2:]), error
