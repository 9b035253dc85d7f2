"""Confidence on every number: Wilson intervals, exact McNemar tests, bootstrap means.

- Wilson (1927) score interval for a binomial proportion: the interval RobustBench-style tables lack;
  unlike the normal approximation it stays inside [0, 1] and behaves at 0 % and 100 %.
- McNemar (1947), exact: two defenses evaluated on the same examples differ only where one is right
  and the other wrong; under "no difference" those discordant examples split like a fair coin, so
  the two-sided p-value is a binomial tail (Fagerland, Lydersen & Laake 2013 recommend the exact test
  for small counts).
- Percentile bootstrap (Efron 1979) over examples for means of per-example scores (e.g. a
  corruption accuracy averaged over cells), seeded so the interval is a function of the data.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (95 % by default)."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_of(value: float, n: int) -> tuple[float, float]:
    """Wilson interval of an accuracy ``value`` measured on ``n`` examples (``k = round(value * n)``)."""
    if n <= 0 or value is None or (isinstance(value, float) and math.isnan(value)):
        return (math.nan, math.nan)
    return wilson(int(round(value * n)), n)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` (only A right) and ``c``
    (only B right): P(X <= min(b, c)) * 2 for X ~ Binomial(b + c, 1/2), capped at 1."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def paired_outcomes_p(a: str, b: str) -> float | None:
    """Exact McNemar p-value of two '0'/'1' outcome strings on the same examples; ``None`` when they
    cannot be paired (different lengths)."""
    if not isinstance(a, str) or not isinstance(b, str) or len(a) != len(b) or not a:
        return None
    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b))
    return mcnemar_exact(only_a, only_b)


def bootstrap_mean(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-example ``values``."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))
