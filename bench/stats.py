"""Confidence on every number: Wilson intervals, exact McNemar tests, bootstraps of means and of WER.

- Wilson (1927) score interval for a binomial proportion: the interval RobustBench-style tables lack;
  unlike the normal approximation it stays inside [0, 1] and behaves at 0 % and 100 %.
- McNemar (1947), exact: two defenses evaluated on the same examples differ only where one is right
  and the other wrong; under "no difference" those discordant examples split like a fair coin, so
  the two-sided p-value is a binomial tail (Fagerland, Lydersen & Laake 2013 recommend the exact test
  for small counts).
- Percentile bootstrap (Efron 1979) over examples for means of per-example scores (e.g. a
  corruption accuracy averaged over cells), seeded so the interval is a function of the data.
- Word error rate is a ratio of sums over utterances, not a mean of per-utterance scores: its interval
  resamples utterances and recomputes the corpus WER of each resample (Bisani & Ney 2004), and two
  systems on the same utterances are compared by a paired bootstrap (Koehn 2004; Bisani & Ney's
  "probability of improvement"). Both are seeded, so they are functions of the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


#: resamples of the WER interval and of the paired WER test (the test's p-value is read near 0.05, so it
#: gets more: its Monte Carlo error there is about sqrt(0.05 * 0.95 / 10000) = 0.002)
WER_RESAMPLES = 2000
PAIRED_RESAMPLES = 10000


@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors per utterance of one system, and the reference words of each utterance (same order).

    A result file stores them as ``per_example.robust_word_errors`` (or ``clean_word_errors``) and
    ``per_example.ref_words``; the corpus WER is ``sum(errors) / sum(ref_words)``.
    """

    errors: tuple[int, ...]
    ref_words: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.errors) != len(self.ref_words):
            raise ValueError(f"{len(self.errors)} error counts but {len(self.ref_words)} reference word counts")

    @property
    def wer(self) -> float:
        words = sum(self.ref_words)
        return sum(self.errors) / words if words else math.nan

    def __str__(self) -> str:  # compact, for the leaderboard CSV
        return f"errors={list(self.errors)};ref_words={list(self.ref_words)}"


def _resampled_sums(columns: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Column sums of ``resamples`` bootstrap resamples of the rows of ``columns`` (n rows drawn with
    replacement each time); ``(resamples, columns.shape[1])``. Drawn in chunks of about a million
    indices, a chunk size that depends only on n, so the result depends only on the data and the seed."""
    rng = np.random.default_rng(seed)
    n = columns.shape[0]
    out = np.empty((resamples, columns.shape[1]))
    chunk = max(1, 2 ** 20 // n)
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        out[start:start + k] = columns[rng.integers(0, n, size=(k, n))].sum(axis=1)
    return out


def wer_bootstrap(errors: Sequence[int], ref_words: Sequence[int], *, resamples: int = WER_RESAMPLES,
                  seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the corpus word error rate over utterances.

    Bisani & Ney (2004), "Bootstrap estimates for confidence intervals in ASR performance evaluation"
    (ICASSP): utterances, not words, are the independent units (the errors of one utterance are
    correlated), so each resample draws n utterances with replacement and its WER is the resample's
    word errors over its reference words; the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of those WERs. Resamples without reference words (possible only
    when some utterances have none) have no WER and are left out. Seeded: a function of the data.

    Returns ``(nan, nan)`` when there are no utterances or no reference words at all.
    """
    e, r = np.asarray(errors, dtype=float), np.asarray(ref_words, dtype=float)
    if e.shape != r.shape:
        raise ValueError(f"{e.size} error counts but {r.size} reference word counts")
    if e.size == 0 or r.sum() <= 0:
        return (math.nan, math.nan)
    sums = _resampled_sums(np.stack([e, r], axis=1), resamples, seed)
    ok = sums[:, 1] > 0
    wers = sums[ok, 0] / sums[ok, 1]
    lo, hi = np.quantile(wers, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def paired_wer_p(a: UtteranceErrors, b: UtteranceErrors, *, resamples: int = PAIRED_RESAMPLES,
                 seed: int = 0) -> float | None:
    """Two-sided paired bootstrap p-value for "systems ``a`` and ``b`` have the same corpus WER".

    Koehn (2004), "Statistical significance tests for machine translation evaluation" (EMNLP), and
    Bisani & Ney (2004): resample the utterances (the same draw for both systems, which is what pairs
    them) and recompute the WER difference; the share of resamples in which ``a`` is not worse is
    Bisani & Ney's probability of improvement. Both systems share the reference words of a resample,
    so the sign of the WER difference is the sign of the difference in word errors. The p-value is
    ``2 * (min(#{delta <= 0}, #{delta >= 0}) + 1) / (resamples + 1)``, capped at 1: twice the smaller
    tail, with the +1 that keeps a Monte Carlo p-value from being 0 (North, Curtis & Sham 2002).
    Identical systems get 1. Seeded: a function of the data.

    Returns ``None`` when the two cannot be paired (different utterance counts or reference words).
    """
    if a.ref_words != b.ref_words or not a.errors:
        return None
    d = np.asarray(a.errors, dtype=float) - np.asarray(b.errors, dtype=float)
    deltas = _resampled_sums(d[:, None], resamples, seed)[:, 0]
    tail = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    return min(1.0, 2.0 * (tail + 1) / (resamples + 1))


def paired_p(a: str | UtteranceErrors | None, b: str | UtteranceErrors | None) -> float | None:
    """The paired test of two systems' per-example robust outcomes on the same examples: exact McNemar
    on '0'/'1' strings (accuracy), the paired bootstrap on :class:`UtteranceErrors` (WER); ``None``
    when either is missing or they cannot be paired."""
    if isinstance(a, str) and isinstance(b, str):
        return paired_outcomes_p(a, b)
    if isinstance(a, UtteranceErrors) and isinstance(b, UtteranceErrors):
        return paired_wer_p(a, b)
    return None
