"""Threat models as values.

A :class:`ThreatModel` says what the adversary may do to the continuous
tensor ``z`` that a :class:`~bench.task.TaskModel` exposes (pixels, waveform
or token embeddings). It is the only place that knows the geometry: every
attack asks it for a random start, a steepest-ascent direction and a
projection, and the attack wrapper checks :meth:`ThreatModel.contains` on
every output.

The radius can be absolute (``linf-8_255``), relative to each example's own
signal (``snr-30db``: ‖δ‖₂ ≤ ‖x‖₂·10^(−30/20), the convention of the speech
literature, e.g. Carlini & Wagner 2018; ``linf-30db``: ‖δ‖∞ ≤ max|x|·10^(−30/20)),
or relative to a reference scale the model provides (``emb-l2-0.05``:
per-token ‖δ_t‖₂ ≤ 0.05 × the model's mean token-embedding norm). Embedding
threats can also be absolute, so the radius is one number for every model of a
track: per token (``emb-tok-l2-0.5``: ‖δ_t‖₂ ≤ 0.5) or over the whole sequence
(``emb-seq-l2-1``: ‖δ‖₂ ≤ 1 over all tokens, FreeLB's convention, Zhu et al. 2020).

A discrete threat (``words-0.25``, space ``words``, norm ``l0``) is a budget of
word substitutions: at most ceil(0.25 × words) words of a text change. It has
no geometry; only discrete attacks run under it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bench.errors import UserError
from bench.task import Context

NORMS = ("linf", "l2", "l0")
SPACES = ("input", "embedding", "words")
SCALES = ("absolute", "snr-db", "relative")
PERS = ("example", "token")

#: relative tolerance of :meth:`ThreatModel.contains` (on top of float rounding)
RTOL = 1e-6


def format_eps(eps: float) -> str:
    """Stable short text for eps: ``0.3``, ``8_255`` for 8/255, ``2`` for 2.0."""
    if eps == 0:
        return "0"
    text = f"{eps:.6g}"
    k = eps * 255
    if len(text) > 6 and abs(k - round(k)) < 1e-6 and round(k) > 0:
        return f"{int(round(k))}_255"
    return text


def parse_eps(text: str) -> float:
    if text.endswith("_255"):
        return float(text[:-4]) / 255
    return float(text)


_ID_PATTERNS = [
    (re.compile(r"^(linf|l2)-([0-9.]+(?:_255)?)$"), "absolute"),
    (re.compile(r"^snr-([0-9.]+)db$"), "snr"),
    (re.compile(r"^linf-([0-9.]+)db$"), "peak"),
    (re.compile(r"^emb-(linf|l2)-([0-9.]+)$"), "embedding"),
    (re.compile(r"^emb-tok-(linf|l2)-([0-9.]+)$"), "embedding-token"),
    (re.compile(r"^emb-seq-(linf|l2)-([0-9.]+)$"), "embedding-sequence"),
    (re.compile(r"^words-([0-9.]+)$"), "words"),
]


@dataclass(frozen=True)
class ThreatModel:
    """What the adversary may do, as data.

    Args:
        norm: ``"linf"`` or ``"l2"``.
        eps: the budget; its unit depends on ``scale`` (absolute distance,
            decibels below the signal, or a fraction of a reference scale).
        space: ``"input"`` (pixels, waveform) or ``"embedding"`` (token embeddings).
        scale: ``"absolute"``, ``"snr-db"`` (per-example, relative to the
            signal's L2 norm, or to its peak for linf) or ``"relative"`` (eps
            times ``ctx.eps_scale``).
        per: ``"example"`` (one ball per example) or ``"token"`` (one ball per
            position along dim 1, norms over the last dim).
        bounds: valid range of ``z`` (e.g. ``(0, 1)`` for pixels) or ``None``.
    """

    norm: str
    eps: float
    space: str = "input"
    scale: str = "absolute"
    per: str = "example"
    bounds: tuple[float, float] | None = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise UserError(f"unknown norm {self.norm!r}: expected one of {', '.join(NORMS)}")
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or math.isnan(self.eps):
            raise UserError(f"eps must be a number, got {self.eps!r}")
        if self.eps < 0 or math.isinf(self.eps):
            raise UserError(f"eps must be finite and >= 0, got {self.eps}")
        if self.space not in SPACES:
            raise UserError(f"unknown space {self.space!r}: expected one of {', '.join(SPACES)}")
        if self.scale not in SCALES:
            raise UserError(f"unknown scale {self.scale!r}: expected one of {', '.join(SCALES)}")
        if self.per not in PERS:
            raise UserError(f"unknown per {self.per!r}: expected one of {', '.join(PERS)}")
        if (self.space == "words") != (self.norm == "l0"):
            raise UserError("a words threat is an l0 budget (and l0 only counts words): "
                            f"got norm {self.norm!r} in space {self.space!r}")
        if self.space == "words" and not self.eps <= 1:
            raise UserError(f"a words threat's eps is the fraction of words that may change, in [0, 1]: got {self.eps}")
        if self.bounds is not None:
            lo, hi = self.bounds
            if not lo < hi:
                raise UserError(f"bounds must satisfy low < high, got {self.bounds}")
            object.__setattr__(self, "bounds", (float(lo), float(hi)))
        object.__setattr__(self, "eps", float(self.eps))

    # ------------------------------------------------------------------ ids
    @property
    def id(self) -> str:
        e = format_eps(self.eps)
        if self.space == "words":
            return f"words-{e}"
        if self.space == "embedding":
            if self.scale == "absolute":
                return f"emb-{'tok' if self.per == 'token' else 'seq'}-{self.norm}-{e}"
            return f"emb-{self.norm}-{e}"
        if self.scale == "snr-db":
            return f"snr-{e}db" if self.norm == "l2" else f"linf-{e}db"
        return f"{self.norm}-{e}"

    @classmethod
    def from_id(cls, threat_id: str, bounds: tuple[float, float] | None = (0.0, 1.0)) -> "ThreatModel":
        """Parse an id such as ``linf-8_255``, ``l2-0.5``, ``snr-30db``, ``emb-l2-0.05`` (relative, per token),
        ``emb-tok-l2-0.5`` (absolute, per token), ``emb-seq-l2-1`` (absolute, whole sequence: FreeLB's convention)
        or ``words-0.25`` (discrete: at most ceil(0.25 x words) words substituted)."""
        for pattern, kind in _ID_PATTERNS:
            m = pattern.match(threat_id)
            if not m:
                continue
            if kind == "absolute":
                return cls(m.group(1), parse_eps(m.group(2)), bounds=bounds)
            if kind == "snr":
                return cls("l2", float(m.group(1)), scale="snr-db", bounds=bounds)
            if kind == "peak":
                return cls("linf", float(m.group(1)), scale="snr-db", bounds=bounds)
            if kind == "words":
                return cls("l0", float(m.group(1)), space="words", scale="relative", bounds=None)
            if kind in ("embedding-token", "embedding-sequence"):
                return cls(m.group(1), float(m.group(2)), space="embedding", scale="absolute",
                           per="token" if kind == "embedding-token" else "example", bounds=None)
            return cls(m.group(1), float(m.group(2)), space="embedding", scale="relative",
                       per="token", bounds=None)
        raise UserError(f"malformed threat id {threat_id!r}: expected e.g. linf-8_255, l2-0.5, snr-30db, emb-l2-0.05, "
                        "emb-seq-l2-1, words-0.25")

    @property
    def discrete(self) -> bool:
        """A budget of discrete edits (``words-*``): only discrete attacks run under it; no geometry."""
        return self.space == "words"

    def _continuous(self) -> None:
        if self.space == "words":
            raise UserError(f"threat {self.id} is a discrete word budget: it has no geometry, so only discrete "
                            "attacks (pwws, textfooler, deepwordbug) run under it")

    def with_eps(self, eps: float) -> "ThreatModel":
        return ThreatModel(self.norm, eps, self.space, self.scale, self.per, self.bounds)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bounds"] = list(self.bounds) if self.bounds is not None else None
        d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ThreatModel":
        d = {k: v for k, v in d.items() if k != "id"}
        if d.get("bounds") is not None:
            d["bounds"] = tuple(d["bounds"])
        try:
            return cls(**d)
        except TypeError as exc:
            raise UserError(f"malformed threat: {exc}") from None

    # ------------------------------------------------------------ geometry
    def _reduce_dims(self, z: torch.Tensor) -> tuple[int, ...]:
        if self.per == "token":
            return (z.dim() - 1,)
        return tuple(range(1, z.dim()))

    def _norm(self, d: torch.Tensor) -> torch.Tensor:
        dims = self._reduce_dims(d)
        if self.norm == "linf":
            return d.abs().amax(dim=dims)
        return d.flatten(start_dim=dims[0]).norm(dim=-1) if self.per == "token" else d.flatten(1).norm(dim=1)

    def _expand(self, r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Reshape a per-example / per-token radius to broadcast against z."""
        return r.reshape(r.shape + (1,) * (z.dim() - r.dim()))

    def radius(self, z: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        """The ball radius for each example (shape ``(B,)``) or token (``(B, L)``)."""
        self._continuous()
        shape = z.shape[:2] if self.per == "token" else z.shape[:1]
        if self.scale == "absolute":
            return torch.full(shape, self.eps, dtype=z.dtype, device=z.device)
        if self.scale == "relative":
            if ctx is None or ctx.eps_scale is None:
                raise UserError(f"threat {self.id} is relative: the model must provide ctx.eps_scale")
            return torch.full(shape, self.eps * float(ctx.eps_scale), dtype=z.dtype, device=z.device)
        # snr-db: the budget is N dB below the example's own signal
        factor = 10.0 ** (-self.eps / 20.0)
        signal = z.detach()
        if ctx is not None and ctx.mask is not None:
            signal = signal * ctx.mask
        return self._norm(signal) * factor

    def mask(self, z: torch.Tensor, ctx: Context | None) -> torch.Tensor | None:
        if ctx is None or ctx.mask is None:
            return None
        return ctx.mask.to(dtype=z.dtype, device=z.device)

    def project(self, z_adv: torch.Tensor, z: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        """Nearest point (in the threat's norm, then clipped to bounds) of the allowed set."""
        delta = z_adv - z
        m = self.mask(z, ctx)
        if m is not None:
            delta = delta * m
        r = self._expand(self.radius(z, ctx), z)
        if self.norm == "linf":
            delta = torch.maximum(torch.minimum(delta, r), -r)
        else:
            n = self._expand(self._norm(delta), z)
            delta = delta * torch.clamp(r / (n + 1e-12), max=1.0)
        out = z + delta
        if self.bounds is not None:
            out = out.clamp(*self.bounds)
        return out

    def projector(self, z: torch.Tensor, ctx: Context | None = None):
        """``project(·, z, ctx)`` with the radius, mask and bounds worked out once.

        For iterative attacks: the unmasked Linf case becomes one clamp between
        precomputed limits per step (equal to :meth:`project` up to float rounding).
        """
        if self.norm != "linf" or self.mask(z, ctx) is not None:
            return lambda z_adv: self.project(z_adv, z, ctx)
        r = self._expand(self.radius(z, ctx), z)
        lo, hi = z - r, z + r
        if self.bounds is not None:
            lo, hi = lo.clamp(min=self.bounds[0]), hi.clamp(max=self.bounds[1])
        return lambda z_adv: torch.minimum(torch.maximum(z_adv, lo), hi)

    def distance(self, z_adv: torch.Tensor, z: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        """Per-example size of the perturbation relative to the radius (≤ 1 inside)."""
        d = self._norm(z_adv - z) / self.radius(z, ctx).clamp_min(1e-30)
        if self.per == "token":
            d = d.amax(dim=1)
        return d

    def achieved(self, distance: torch.Tensor) -> torch.Tensor:
        """A :meth:`distance` (relative to the radius) in the units of ``eps``: dB SNR for ``snr-db``
        threats (eps − 20·log10(d), +inf for an untouched input), eps·d otherwise."""
        d = torch.as_tensor(distance, dtype=torch.float64)
        if self.scale == "snr-db":
            return torch.where(d > 0, self.eps - 20.0 * torch.log10(d.clamp_min(1e-300)),
                               torch.full_like(d, math.inf))
        return d * self.eps

    def contains(self, z_adv: torch.Tensor, z: torch.Tensor, ctx: Context | None = None,
                 rtol: float = RTOL) -> torch.Tensor:
        """Bool per example: inside the ball (``rtol`` relative + float rounding), bounds and mask."""
        delta = (z_adv - z).double()
        r = self.radius(z, ctx).double()
        # float rounding of z + delta - z can exceed the radius by a few ulps of |z|
        ulp = torch.finfo(z.dtype).eps * 4 * max(1.0, float(z.detach().abs().max()) if z.numel() else 1.0)
        if self.norm == "l2":
            ulp = ulp * math.sqrt(max(1, z[0].numel() if self.per == "example" else z.shape[-1]))
        ok = self._norm(delta) <= r * (1 + rtol) + ulp
        if self.per == "token":
            ok = ok.all(dim=1)
        m = self.mask(z, ctx)
        if m is not None:
            outside = ((delta * (1 - m.double())).abs() > 0).flatten(1).any(dim=1)
            ok = ok & ~outside
        if self.bounds is not None:
            lo, hi = self.bounds
            inb = ((z_adv >= lo) & (z_adv <= hi)).flatten(1).all(dim=1)
            ok = ok & inb
        return ok & torch.isfinite(z_adv).flatten(1).all(dim=1)

    def random_init(self, z: torch.Tensor, ctx: Context | None = None, seed: int | str = 0) -> torch.Tensor:
        """A uniform point of the Linf ball, or a random direction at a uniform radius (L2).

        Drawn per example from ``(seed, ctx.index[i])`` (see :mod:`bench.rng`),
        so a batch and its examples one by one get the same start.
        """
        from bench.rng import per_example_uniform

        index = ctx.index if ctx is not None and ctx.index is not None else torch.arange(z.shape[0])
        r = self._expand(self.radius(z, ctx), z)
        u = per_example_uniform(z.shape, index, seed, "u", dtype=z.dtype).to(z.device)
        if self.norm == "linf":
            delta = (2 * u - 1) * r
        else:
            g = per_example_uniform(z.shape, index, seed, "n", normal=True, dtype=z.dtype).to(z.device)
            n = self._expand(self._norm(g), z).clamp_min(1e-12)
            k = 2 if self.per == "token" else 1
            # radius fraction: one uniform per ball (taken from the first entries of u)
            frac = u.flatten(k)[..., 0]
            delta = g / n * r * self._expand(frac, z)
        return self.project(z + delta, z, ctx)

    def steepest(self, grad: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        """Unit steepest-ascent direction for this norm: sign (Linf) or normalized gradient (L2)."""
        self._continuous()
        g = grad
        m = self.mask(grad, ctx)
        if m is not None:
            g = g * m
        if self.norm == "linf":
            return g.sign()
        n = self._expand(self._norm(g), g).clamp_min(1e-12)
        return g / n


def scaled_threat(threat: ThreatModel, factor: float) -> ThreatModel:
    """The same threat with its radius multiplied by ``factor`` (for eps ramps).

    For dB-scaled threats a smaller radius is a larger dB value: eps - 20·log10(factor).
    """
    factor = min(1.0, max(0.0, factor))
    if factor >= 1.0:
        return threat
    if threat.scale == "snr-db":
        return threat.with_eps(threat.eps - 20.0 * math.log10(max(factor, 1e-3)))
    return threat.with_eps(threat.eps * factor)
