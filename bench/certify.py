"""Certified robustness by randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019).

The smoothed classifier of a base classifier f is g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I).
If the top class c_A has probability p_A ≥ p̲_A > 1/2, g is constant on the L2 ball of radius
σ·Φ⁻¹(p̲_A) around x (Cohen et al., Theorem 1 with p̄_B = 1 − p̲_A). This module implements the
paper's two Monte-Carlo procedures on a :class:`~bench.task.TaskModel`, with the noise added in the
model's attack space ``z`` (pixels, waveform or token embeddings; never where ``ctx.mask`` is 0):

- :func:`certify` (their Alg. 1, CERTIFY): guess c_A from ``n0`` noisy samples, then bound p_A
  from below with the one-sided (1 − α) Clopper-Pearson bound on ``n`` fresh samples; certify
  radius σ·Φ⁻¹(p̲_A) when p̲_A > 1/2, otherwise abstain. With probability ≥ 1 − α over the noise,
  a returned radius is a true certificate of g.
- :func:`predict` (their Alg. 2, PREDICT): the two most frequent classes of ``n`` samples and a
  two-sided binomial test at level α; abstain unless it rejects "equally likely".

Noise is drawn per example from generators seeded by ``(seed, stage, ctx.index[i], chunk)``
(:func:`bench.rng.derive_seed`) in chunks of :data:`CHUNK` samples, so an example gets the same
noise, hence the same outcome, alone or in any batch, and with any ``batch`` (samples per forward).

:func:`threat_units` expresses a certified L2 radius in the units of a track's threat model, so a
certificate reads like the attack track's eps: absolute L2, dB SNR per example
(20·log10(‖x‖ / r)), or, for per-token embedding threats, the largest per-token eps whose whole
threat set lies inside the certified ball (r / (scale · √#movable tokens)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.errors import UserError
from bench.rng import derive_seed
from bench.task import Context, TaskModel
from bench.threat import ThreatModel

#: noise samples drawn from one seeded generator (a constant, so ``batch`` never changes the noise)
CHUNK = 100
#: the prediction of an abstention
ABSTAIN = -1


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 − alpha) Clopper-Pearson lower bound on a binomial proportion from ``k`` of ``n``
    (Clopper & Pearson 1934; Cohen et al.'s LowerConfBound): the alpha quantile of Beta(k, n − k + 1),
    0 when k = 0."""
    from scipy.stats import beta

    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def radius_of(p_lower: float, sigma: float) -> float:
    """The certified L2 radius σ·Φ⁻¹(p̲_A) (Cohen et al., Theorem 1); NaN when p̲_A ≤ 1/2 (abstain)."""
    from scipy.stats import norm

    return float(sigma * norm.ppf(p_lower)) if p_lower > 0.5 else math.nan


def max_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius CERTIFY can return with ``n`` samples: all of them agree, p̲_A = alpha^(1/n)."""
    return radius_of(alpha ** (1.0 / n), sigma)


@dataclass
class Certificate:
    """Per-example outcome of :func:`certify`.

    Attributes:
        prediction: the smoothed classifier's class, :data:`ABSTAIN` (-1) when it abstained.
        radius: the certified L2 radius in ``z`` units (NaN when abstained).
        p_lower: the Clopper-Pearson lower bound on p_A.
        count: how many of the ``n`` samples voted for the predicted (selected) class.
    """

    prediction: torch.Tensor
    radius: torch.Tensor
    p_lower: torch.Tensor
    count: torch.Tensor


def _repeat_ctx(ctx: Context, k: int) -> Context:
    """The context of one example, repeated ``k`` times along the batch dim."""
    rep = lambda t: t.expand(k, *t.shape[1:]) if isinstance(t, torch.Tensor) and t.dim() > 0 else t  # noqa: E731
    return Context(mask=rep(ctx.mask), eps_scale=ctx.eps_scale, index=rep(ctx.index),
                   extras={key: rep(v) for key, v in ctx.extras.items()})


def _noise(shape: tuple[int, ...], count: int, sigma: float, seed: int | str, stage: str, index: int,
           dtype: torch.dtype) -> "iter[torch.Tensor]":
    """``count`` noise samples of ``shape`` for one example, in chunks of :data:`CHUNK`."""
    gen = torch.Generator()
    for c, start in enumerate(range(0, count, CHUNK)):
        gen.manual_seed(derive_seed(seed, "smooth", stage, int(index), c))
        yield sigma * torch.randn((min(CHUNK, count - start), *shape), generator=gen, dtype=dtype)


@torch.no_grad()
def sample_counts(model: TaskModel, z: torch.Tensor, ctx: Context, sigma: float, count: int, *, batch: int,
                  seed: int | str, stage: str, index: int, num_classes: int | None = None) -> torch.Tensor:
    """Class counts of the base classifier on ``count`` noisy copies of one example (``z``: shape ``(1, ...)``)."""
    shape, dev = tuple(z.shape[1:]), z.device
    mask = ctx.mask.to(dtype=z.dtype, device=dev) if ctx.mask is not None else None
    counts: torch.Tensor | None = None if num_classes is None else torch.zeros(num_classes, dtype=torch.long)
    pending: list[torch.Tensor] = []

    def flush():
        nonlocal counts
        eps = torch.cat(pending).to(dev)
        pending.clear()
        if mask is not None:
            eps = eps * mask
        logits = model(z + eps, _repeat_ctx(ctx, len(eps)))
        if counts is None:
            counts = torch.zeros(logits.shape[-1], dtype=torch.long)
        counts += torch.bincount(logits.argmax(-1).cpu(), minlength=len(counts))[: len(counts)]

    have = 0
    for eps in _noise(shape, count, sigma, seed, stage, index, z.dtype):
        while len(eps):  # split chunks at the batch size, keeping their order
            take = min(len(eps), batch - have)
            pending.append(eps[:take])
            eps, have = eps[take:], have + take
            if have == batch:
                flush()
                have = 0
    if pending:
        flush()
    return counts


def _check(sigma: float, alpha: float, batch: int, **counts: int) -> None:
    if not sigma > 0:
        raise UserError(f"sigma must be > 0, got {sigma}")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be in (0, 1), got {alpha}")
    if batch < 1:
        raise UserError(f"batch must be >= 1, got {batch}")
    for name, v in counts.items():
        if v < 1:
            raise UserError(f"{name} must be >= 1, got {v}")


def _indices(z: torch.Tensor, ctx: Context) -> list[int]:
    return ctx.index.tolist() if ctx.index is not None else list(range(z.shape[0]))


def certify(model: TaskModel, z: torch.Tensor, ctx: Context | None, sigma: float, n0: int, n: int, alpha: float,
            batch: int = 1000, seed: int | str = 0, progress=None) -> Certificate:
    """CERTIFY (Cohen et al. 2019, Alg. 1) for every example of ``z`` (a batch in the model's attack space).

    Returns a :class:`Certificate`: the class c_A selected from ``n0`` samples, abstention
    (:data:`ABSTAIN`) unless the (1 − alpha) Clopper-Pearson lower bound p̲_A on its probability,
    from ``n`` independent samples, exceeds 1/2, and then the radius σ·Φ⁻¹(p̲_A). ``progress``:
    an optional callable receiving 1 per example done.
    """
    _check(sigma, alpha, batch, n0=n0, n=n)
    ctx = ctx or Context()
    model.eval()
    preds, radii, lows, hits = [], [], [], []
    for i, idx in enumerate(_indices(z, ctx)):
        zi, ci = z[i:i + 1], ctx.select(torch.tensor([i])) if z.shape[0] > 1 else ctx
        sel = sample_counts(model, zi, ci, sigma, n0, batch=batch, seed=seed, stage="select", index=idx)
        c_a = int(sel.argmax())
        est = sample_counts(model, zi, ci, sigma, n, batch=batch, seed=seed, stage="estimate", index=idx,
                            num_classes=len(sel))
        k = int(est[c_a])
        p = lower_confidence_bound(k, n, alpha)
        r = radius_of(p, sigma)
        preds.append(c_a if not math.isnan(r) else ABSTAIN)
        radii.append(r)
        lows.append(p)
        hits.append(k)
        if progress is not None:
            progress(1)
    return Certificate(torch.tensor(preds, dtype=torch.long), torch.tensor(radii, dtype=torch.float64),
                       torch.tensor(lows, dtype=torch.float64), torch.tensor(hits, dtype=torch.long))


def predict(model: TaskModel, z: torch.Tensor, ctx: Context | None, sigma: float, n: int, alpha: float,
            batch: int = 1000, seed: int | str = 0) -> torch.Tensor:
    """PREDICT (Cohen et al. 2019, Alg. 2): the smoothed classifier's class per example, or :data:`ABSTAIN`.

    The two most frequent classes n_A ≥ n_B of ``n`` noisy samples; the class is returned when a
    two-sided binomial test of n_A out of n_A + n_B against p = 1/2 rejects at level ``alpha``
    (then it is g's class with probability ≥ 1 − alpha, their Theorem 2).
    """
    from scipy.stats import binomtest

    _check(sigma, alpha, batch, n=n)
    ctx = ctx or Context()
    model.eval()
    out = []
    for i, idx in enumerate(_indices(z, ctx)):
        ci = ctx.select(torch.tensor([i])) if z.shape[0] > 1 else ctx
        counts = sample_counts(model, z[i:i + 1], ci, sigma, n, batch=batch, seed=seed, stage="predict", index=idx)
        top = torch.topk(counts, min(2, len(counts)))
        n_a, n_b = int(top.values[0]), int(top.values[1]) if len(counts) > 1 else 0
        ok = binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha
        out.append(int(top.indices[0]) if ok else ABSTAIN)
    return torch.tensor(out, dtype=torch.long)


# ------------------------------------------------------------------ radii in the threat's units
def _movable_tokens(z: torch.Tensor, ctx: Context | None) -> torch.Tensor:
    """Per example, how many positions (dim 1) may move (all when there is no mask)."""
    if ctx is None or ctx.mask is None:
        return torch.full((z.shape[0],), z.shape[1], dtype=torch.float64)
    m = ctx.mask.to(z.device).expand_as(z) != 0
    return m.flatten(2).any(dim=2).sum(dim=1).double().cpu()


def threat_units(threat: ThreatModel, radius: torch.Tensor, z: torch.Tensor, ctx: Context | None) -> torch.Tensor:
    """A certified L2 radius (in ``z`` units, per example) in the units of ``threat``'s eps.

    The value u is the largest eps at which the whole threat set of the example lies inside the
    certified ball, so "certified at eps" is ``u >= eps`` (``u <= eps`` in dB, where a larger eps is
    a smaller budget):

    - absolute, per example: u = r;
    - snr-db: u = 20·log10(‖x‖ / r), ‖x‖ the (masked) signal's L2 norm, as the threat reads eps;
    - per token (absolute or relative to ``ctx.eps_scale``): a per-token ball of radius ρ on each of
      the L movable tokens spans an L2 ball of radius ρ·√L, so u = r / (scale·√L).

    NaN where ``radius`` is NaN (abstentions). Only L2 threats are supported.
    """
    if threat.norm != "l2":
        raise UserError(f"threat {threat.id}: randomized smoothing certifies L2 balls, not {threat.norm}")
    r = radius.double().cpu()
    if threat.scale == "snr-db":
        if threat.per != "example":
            raise UserError(f"threat {threat.id}: dB budgets per token are not supported")
        signal = threat.with_eps(0.0).radius(z, ctx).double().cpu()  # 0 dB: the signal's own norm
        with torch.no_grad():
            return torch.where(r > 0, 20 * torch.log10(signal / r), torch.full_like(r, math.inf))
    unit = threat.with_eps(1.0).radius(z, ctx).double().cpu()  # the radius at eps = 1
    if threat.per == "token":
        unit = unit[:, 0] * _movable_tokens(z, ctx).sqrt()
    return r / unit


def certified_at(units: list[float | None], correct: list[bool], eps: float, db: bool) -> list[bool]:
    """Per example: right and certified at ``eps`` (``units`` from :func:`threat_units`; None = abstained)."""
    out = []
    for u, ok in zip(units, correct):
        if not ok or u is None or (isinstance(u, float) and math.isnan(u)):
            out.append(False)
        else:
            out.append(u <= eps if db else u >= eps)
    return out


__all__ = ["ABSTAIN", "Certificate", "certify", "predict", "lower_confidence_bound", "radius_of", "max_radius",
           "threat_units", "certified_at", "sample_counts"]
