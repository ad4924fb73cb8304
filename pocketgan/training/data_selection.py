"""Minimal fine-tuning data: pick the N most representative pairs by clustering.

E2GAN fine-tunes a concept on a small, diverse subset of the photos. We describe each
photo by the frozen base generator's own features (mean and standard deviation of every
channel after the encoder, ``ds``; the base was trained on photos, so these separate
scenes, textures and colours), cluster the features with k-means into N clusters and take
the photo nearest each centre. Without a base (or for comparison) ``method="random"``
picks N at random.
"""

from __future__ import annotations

import numpy as np
import torch

from pocketgan.models.generator import Generator


def base_features(base: Generator, images: np.ndarray, batch: int = 16, side: int = 128) -> np.ndarray:
    """(N, S, S, 3) uint8 photos -> (N, 2·C) float32 features (per-channel mean and std of
    ``base.ds``'s output on the photo resized to ``side``)."""
    from pocketgan.training.trainer import to_model_range

    captured: list[torch.Tensor] = []
    handle = base.ds.register_forward_hook(lambda _m, _i, out: captured.append(out))
    rows = []
    try:
        with torch.no_grad():
            tokens = torch.zeros(base.config.token_count, base.config.token_dim)
            for start in range(0, len(images), batch):
                x = to_model_range(images[start : start + batch])
                x = torch.nn.functional.interpolate(
                    x, size=(side, side), mode="bilinear", antialias=True, align_corners=False
                )
                captured.clear()
                base(x, tokens)
                f = captured[0]
                rows.append(torch.cat([f.mean((2, 3)), f.std((2, 3))], 1))
    finally:
        handle.remove()
    return torch.cat(rows).numpy()


def select_indices(
    count: int, total: int, method: str = "cluster", features: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Indices of ``count`` of ``total`` items, sorted.

    ``cluster``: k-means (k = count) on the standardised ``features``, the item nearest each
    centre. ``random``: a seeded random choice.
    """
    if not 0 < count <= total:
        raise ValueError(f"cannot select {count} of {total} pairs")
    if count == total:
        return np.arange(total)
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(total, count, replace=False))
    if method != "cluster":
        raise ValueError(f"unknown selection method {method!r}; choose cluster or random")
    if features is None or len(features) != total:
        raise ValueError("cluster selection needs one feature row per item")
    from sklearn.cluster import KMeans

    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    km = KMeans(n_clusters=count, n_init=4, random_state=seed).fit(z)
    chosen: list[int] = []
    for c in range(count):
        members = np.flatnonzero(km.labels_ == c)
        dist = np.linalg.norm(z[members] - km.cluster_centers_[c], axis=1)
        for i in members[np.argsort(dist)]:  # nearest member not already taken
            if i not in chosen:
                chosen.append(int(i))
                break
    rest = [i for i in range(total) if i not in chosen]  # empty clusters: top up at random
    rng = np.random.default_rng(seed)
    while len(chosen) < count:
        chosen.append(int(rest.pop(rng.integers(len(rest)))))
    return np.sort(np.array(chosen))
