"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"), Linf and L2, as in AutoAttack's
standard version.

Score-based random search, no gradients: each query changes the perturbation
inside a random square window whose area is a fraction p of the input, p halving
at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (the paper's schedule;
AutoAttack's standard version does *not* rescale it to the budget, and neither do
we unless ``rescale_schedule=True``); a change is kept only if it lowers the
margin ``z_y − max_{i≠y} z_i``. An example stops consuming queries once it is
misclassified.

* Linf (§3.1 / Algorithm 2): start from vertical stripes of ±ε, then set a
  window to ±ε, one random sign per channel; side ``round(sqrt(p·H·W))``, at least 1.
* L2 (§3.2, Algorithm 3): start from a tiling of ±"meta pseudo-Gaussian" bumps
  scaled to ‖δ‖₂ = ε. Each query picks two windows of odd side ≥ 3; the mass of
  the second moves into the first together with a fresh bump of random sign per
  channel, the new window scaled so the total keeps the budget — including what
  clipping to the valid range took away, sqrt(max(ε² − ‖δ‖², 0)/C + ‖δ_W‖²) per
  channel (W = both windows) — and the whole perturbation is scaled back to ε.
  The bump is the paper's: two halves of opposite sign, each a sum of nested
  rectangles with weights 1/(k+1)², so the centre carries the cumulative weight;
  split along rows or columns at random (the reference's random transpose).

Non-image inputs: the per-example tensor is viewed as a grid
``(C, H, W)``: images as they are; ``(L, D)`` (tokens × embedding, or
channels × time) as ``(1, L, D)``; a 1-D signal ``(T,)`` as ``(1, 1, T)``;
higher ranks flatten the trailing dimensions into W. On a square grid windows
are squares exactly as in the reference; on other grids they are rectangles of
area ≈ p·H·W (a 1-D signal gets a segment of p·T samples and the marginal of the
2-D bump, spread over the segment as on an image, not a click). The threat's own projection is
applied to every candidate, so masks (padding, special tokens), bounds,
dB-relative and per-token radii hold.

Randomness is drawn per example from ``(seed, ctx.index)`` up front, so a
batch gives the same result as its examples one by one. Models whose outputs
are not class logits are attacked by maximizing their own objective (the
example then uses its whole query budget).
"""

from __future__ import annotations

import functools
import math

import torch

from bench.attacks.base import Attack, model_errors, resolve_loss
from bench.errors import UserError
from bench.registry import ATTACKS, LOSSES
from bench.rng import per_example_uniform

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_at(p_init: float, query: int, budget: int, rescale: bool = False) -> float:
    """The window fraction at ``query`` (the paper's schedule for 10k queries; optionally rescaled to ``budget``)."""
    q = int(query / max(budget, 1) * 10000) if rescale else int(query)
    halvings = sum(q > t for t in SCHEDULE)
    return p_init / (2 ** halvings)


def grid_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Per-example shape -> (C, H, W) the windows live on (see module docstring)."""
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return shape[0], shape[1], int(math.prod(shape[2:]))


def _odd_at_least_3(s: int, limit: int) -> int:
    s = max(s, 3)
    if s % 2 == 0:
        s += 1
    return min(s, limit)


def window(p: float, H: int, W: int, l2: bool = False) -> tuple[int, int]:
    """Window (height, width) for fraction ``p`` of an H×W grid.

    Square grids (images): a square of side round(sqrt(p·H·W)), at least 1 (Linf) or odd and
    at least 3 (L2), at most the grid's side — the reference's rule. Other grids: a rectangle of
    area ≈ p·H·W, as square as the grid allows, with the same floor and parity on each side
    that can take it.
    """
    if H == W:
        s = max(int(round(math.sqrt(p * H * W))), 1)
        if l2:
            s = _odd_at_least_3(s, H)
        return min(s, H), min(s, H)
    area = max(1.0, p * H * W)
    h = min(H, max(1, int(round(math.sqrt(area)))))
    w = min(W, max(1, int(round(area / h))))
    if l2:
        h = _odd_at_least_3(h, H) if H >= 3 else h
        w = _odd_at_least_3(w, W) if W >= 3 else w
    return h, w


def _nested(h: int, w: int) -> torch.Tensor:
    """Sum of nested rectangles around the centre (h//2, w//2) with weights 1/(k+1)²:
    the weight at Chebyshev distance d is Σ_{k=d}^{K−1} 1/(k+1)², K = max(h//2, w//2) + 1."""
    K = max(h // 2, w // 2) + 1
    tail = torch.tensor([1.0 / (k + 1) ** 2 for k in range(K)]).flip(0).cumsum(0).flip(0)
    ii = (torch.arange(h)[:, None] - h // 2).abs()
    jj = (torch.arange(w)[None, :] - w // 2).abs()
    return tail[torch.maximum(ii, jj)]


@functools.lru_cache(maxsize=64)
def _segment(n: int) -> torch.Tensor:
    """A 1-D half-bump of length n: the 2-D nested-rectangle half of side n summed over its rows
    (its marginal), so a proposal on a signal spreads over its segment as an image proposal
    spreads over its window (the 1-D nested sum alone puts ~90% of the energy in 10 samples).
    Cached: building the n x n half costs O(n^2) (seconds for a 1 s waveform), and the window
    length only changes at the schedule's steps. Callers must not modify the returned tensor."""
    return _nested(n, n).sum(0)


def pseudo_gaussian(h: int, w: int, split_rows: bool = True) -> torch.Tensor:
    """The "meta pseudo-Gaussian" bump of Square L2 (Andriushchenko et al. 2020, §3.2):
    two halves of nested rectangles (:func:`_nested`), the second negated, unit L2 norm.
    ``split_rows``: halves stacked along rows (else columns: the reference's transpose);
    a side of length 1 cannot be split, so the other one is, and a 1-D window gets the
    marginal of the 2-D halves (:func:`_segment`)."""
    if h < 2 and w < 2:
        return torch.ones(h, w)
    if min(h, w) == 1:
        n = max(h, w)
        m = torch.cat([_segment(n // 2), -_segment(n - n // 2)])
        m = (m / m.norm().clamp_min(1e-12))
        return m[None, :] if h == 1 else m[:, None]
    if split_rows and h < 2:
        split_rows = False
    if not split_rows and w < 2:
        split_rows = True
    if split_rows:
        m = torch.cat([_nested(h // 2, w), -_nested(h - h // 2, w)], dim=0)
    else:
        m = torch.cat([_nested(h, w // 2), -_nested(h, w - w // 2)], dim=1)
    return m / m.norm().clamp_min(1e-12)


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack, Linf or L2 (the threat's norm).

    Args:
        queries: query budget per example (5,000 in AutoAttack's standard suite),
            including the initial query.
        p_init: initial window fraction (0.8, AutoAttack's choice).
        rescale_schedule: stretch the 10k-query p schedule over ``queries`` (off in
            AutoAttack's standard version, whose budget is 5,000).
        loss: the score to increase; default the margin loss for class logits,
            the model's objective otherwise.
        seed: seeds the per-example random search.
    """

    name = "square"
    whitebox = False

    def __init__(self, queries: int = 5000, p_init: float = 0.8, loss=None, seed: int = 0,
                 rescale_schedule: bool = False) -> None:
        super().__init__(loss, seed)
        if queries < 1 or not 0 < p_init <= 1:
            raise UserError("square needs queries >= 1 and 0 < p_init <= 1")
        self.queries, self.p_init, self.rescale_schedule = int(queries), float(p_init), bool(rescale_schedule)

    def _score(self, model, out, y):
        if self.loss is not None:
            return resolve_loss(self.loss, model)
        if isinstance(out, torch.Tensor) and out.dim() == 2 and isinstance(y, torch.Tensor) and y.dim() == 1:
            return LOSSES.get("margin")
        return resolve_loss(None, model)

    @torch.no_grad()
    def search(self, model, z, ctx, y, threat):
        from bench.data import take

        B = z.shape[0]
        C, H, W = grid_shape(tuple(z.shape[1:]))
        index = ctx.index if ctx.index is not None else torch.arange(B)
        index = index.cpu()
        r_full = threat._expand(threat.radius(z, ctx), z).expand_as(z).reshape(B, C, H, W)
        out = model(z, ctx)
        score_fn = self._score(model, out, y)
        binary = bool(getattr(model, "binary_errors", True))
        linf = threat.norm == "linf"

        def proj(delta_grid):
            return threat.project(z + delta_grid.reshape(z.shape), z, ctx)

        # all random numbers for this example's search, drawn from (seed, index) up front;
        # per query: 2 window corners, 2 more (L2 second window), the bump's split axis, C signs
        n = self.queries
        rnd = per_example_uniform(torch.Size((B, n, 5 + C)), index, "square", self.seed, "q").to(z.device)
        init = per_example_uniform(torch.Size((B, 2 * C + 1, H, W)), index, "square", self.seed,
                                   "init").to(z.device)
        sign = lambda u: torch.where(u < 0.5, -1.0, 1.0).to(z.dtype)  # noqa: E731

        if linf:
            stripes = sign(init[:, :C, :1, :]).expand(B, C, H, W)
            delta = stripes * r_full
        else:
            delta = self._l2_init(init, threat, z, ctx, (C, H, W))
        x = proj(delta)
        out = model(x, ctx)
        best = score_fn(out, y)
        err = model_errors(model, out, y).float()
        done = (err > 0) if binary else torch.zeros(B, dtype=torch.bool, device=z.device)
        rows = torch.arange(H, device=z.device)
        cols = torch.arange(W, device=z.device)

        def box(uh, uw, h, w):
            vh = (uh * (H - h + 1)).long().clamp_max(H - h)
            vw = (uw * (W - w + 1)).long().clamp_max(W - w)
            m = ((rows[None] >= vh[:, None]) & (rows[None] < (vh + h)[:, None]))[:, None, :, None] & \
                ((cols[None] >= vw[:, None]) & (cols[None] < (vw + w)[:, None]))[:, None, None, :]
            return vh, vw, m

        for q in range(1, n):
            act = (~done).nonzero().squeeze(1)
            if len(act) == 0:
                break
            p = p_at(self.p_init, q - 1, n, self.rescale_schedule)
            h, w = window(p, H, W, l2=not linf)
            u = rnd[act, q]
            vh, vw, m1 = box(u[:, 0], u[:, 1], h, w)
            cur = (x[act] - z[act]).reshape(len(act), C, H, W)
            ra = r_full[act]
            s = sign(u[:, 5:5 + C])[:, :, None, None]
            if linf:
                new = s * ra
                # a window already equal to the proposal would waste the query (the original
                # implementation resamples it): flip channel 0
                same = ((cur - new).abs() * m1).flatten(1).amax(1) <= 1e-12 * ra.flatten(1).amax(1)
                if bool(same.any()):
                    flip = torch.ones_like(s)
                    flip[:, 0] = -1
                    s = torch.where(same[:, None, None, None], s * flip, s)
                    new = s * ra
                cand = torch.where(m1, new, cur)
            else:
                _, _, m2 = box(u[:, 2], u[:, 3], h, w)
                cand = self._l2_step(cur, m1, m2, s, (h, w), u[:, 4] < 0.5, threat, z[act], ctx.select(act),
                                     vh, vw)
            xa = proj_sel(threat, z, ctx, act, cand)
            o = model(xa, ctx.select(act))
            ya = take(y, act)
            sc = score_fn(o, ya)
            ea = model_errors(model, o, ya).float()
            better = (sc > best[act]) | ((ea > 0) & binary)
            keep = act[better]
            x[keep] = xa[better]
            best[keep] = sc[better]
            err[keep] = torch.maximum(err[keep], ea[better])
            if binary:
                done[act] = err[act] > 0
        return x

    # ------------------------------------------------------------- L2 parts
    @staticmethod
    def _ball_energy(threat, z, ctx):
        """Σ radius² over the movable balls of each example (ε² for a per-example ball)."""
        r = threat.radius(z, ctx)
        if threat.per == "token":
            m = threat.mask(z, ctx)
            if m is not None:
                r = r * (m.reshape(m.shape[0], m.shape[1], -1).amax(-1) > 0)
            return (r ** 2).sum(1)
        return r ** 2

    def _l2_init(self, init, threat, z, ctx, grid):
        """A tiling of ±pseudo-Gaussian bumps (tiles a fifth of each side, centred as in the
        reference), random sign per tile and channel, random split axis per tile, scaled to the radius."""
        C, H, W = grid
        B = z.shape[0]
        th, tw = max(1, H // 5), max(1, W // 5)
        oh, ow = (H - 5 * th) // 2 if H >= 5 else 0, (W - 5 * tw) // 2 if W >= 5 else 0
        bumps = (pseudo_gaussian(th, tw, True).to(z), pseudo_gaussian(th, tw, False).to(z))
        delta = torch.zeros(B, C, H, W, dtype=z.dtype, device=z.device)
        for i in range(oh, H - th + 1, th):
            for j in range(ow, W - tw + 1, tw):
                s = torch.where(init[:, :C, i, j] < 0.5, -1.0, 1.0).to(z.dtype)[:, :, None, None]
                rows = init[:, 2 * C, i, j] < 0.5
                bump = torch.where(rows[:, None, None, None], bumps[0], bumps[1])
                delta[:, :, i:i + th, j:j + tw] = s * bump
        return self._to_radius(delta, threat, z, ctx)

    @staticmethod
    def _to_radius(delta_grid, threat, z, ctx):
        """Scale each ball's perturbation to the full radius (L2)."""
        d = delta_grid.reshape(z.shape)
        m = threat.mask(z, ctx)
        if m is not None:
            d = d * m
        r = threat._expand(threat.radius(z, ctx), z)
        nrm = threat._expand(threat._norm(d), z).clamp_min(1e-12)
        return (d / nrm * r).reshape(delta_grid.shape)

    def _l2_step(self, cur, m1, m2, s, hw, split_rows, threat, z, ctx, vh, vw):
        """Algorithm 3 of the paper: window 2's mass and a fresh bump go into window 1, with the
        budget clipping took away, then the whole perturbation is scaled back to the sphere."""
        h, w = hw
        n, C = cur.shape[0], cur.shape[1]
        bump = torch.where(split_rows[:, None, None, None], pseudo_gaussian(h, w, True).to(cur),
                           pseudo_gaussian(h, w, False).to(cur))
        both = m1 | m2
        n1 = (cur * m1).flatten(2).norm(dim=2)                       # per channel
        nw = (cur * both).flatten(2).norm(dim=2)                     # per channel, both windows
        spare = (self._ball_energy(threat, z, ctx) - cur.flatten(1).pow(2).sum(1)).clamp_min(0.0)
        rows = vh[:, None] + torch.arange(h, device=cur.device)[None]
        cols = vw[:, None] + torch.arange(w, device=cur.device)[None]
        ib = torch.arange(n, device=cur.device)[:, None, None, None]
        ic = torch.arange(C, device=cur.device)[None, :, None, None]
        win = cur[ib, ic, rows[:, None, :, None], cols[:, None, None, :]]
        new = s * bump + win / (n1[:, :, None, None] + 1e-12)
        target = (spare[:, None] / C + nw ** 2).sqrt()
        new = new / (new.flatten(2).norm(dim=2)[:, :, None, None] + 1e-12) * target[:, :, None, None]
        cand = torch.where(m2, torch.zeros_like(cur), cur)
        place = torch.zeros_like(cur)
        place[ib, ic, rows[:, None, :, None], cols[:, None, None, :]] = new
        cand = torch.where(m1, place, cand)
        return self._to_radius(cand, threat, z, ctx)


def proj_sel(threat, z, ctx, act, cand_grid):
    """Project candidates of the active examples ``act`` onto their threat sets."""
    za = z[act]
    return threat.project(za + cand_grid.reshape(za.shape), za, ctx.select(act))
