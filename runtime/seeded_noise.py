"""Gaussian noise from a seed, the same bits in every runtime (Python here, JS in the web demo).

``seeded_noise(seed, shape)`` -> float32 array, standard normal, C order:

1. a SplitMix64 stream seeded with ``seed`` (0 <= seed < 2^64): ``state += 0x9E3779B97F4A7C15``,
   then the usual two xor-shift-multiply rounds;
2. each 64-bit output becomes a uniform double ``u = ((x >> 11) + 0.5) / 2^53`` in (0, 1);
3. Box-Muller on consecutive pairs: ``r = sqrt(-2 ln u1)``, ``z0 = r cos(2 pi u2)``,
   ``z1 = r sin(2 pi u2)`` (float64), stored as float32 in that order.

Integer steps are exact everywhere; the float64 log/cos/sin of different libraries may
differ in the last bit, which float32 rounding almost always absorbs. ODE pairs store
their noise as well, so distillation never depends on that.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(seed: int, count: int) -> np.ndarray:
    """uint64 (count,): the first ``count`` outputs of SplitMix64 seeded with ``seed``."""
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2^64), got {seed}")
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + _GOLDEN * np.arange(1, count + 1, dtype=np.uint64)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def seeded_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """float32 standard-normal noise of ``shape`` from ``seed`` (see the module docstring)."""
    n = int(np.prod(shape))
    pairs = (n + 1) // 2
    u = ((splitmix64(seed, 2 * pairs) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
    r = np.sqrt(-2.0 * np.log(u[0::2]))
    angle = 2.0 * np.pi * u[1::2]
    z = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1).reshape(-1)[:n]
    return z.astype(np.float32).reshape(shape)
