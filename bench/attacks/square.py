"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"), Linf and L2.

Score-based random search, no gradients: each query changes the perturbation
inside a random window whose area is a fraction p of the input, p halving on
a fixed schedule of the query budget (p_init / 2, /4, ... at 10, 50, 200,
500, 1000, 2000, 4000, 6000, 8000 of 10,000 queries, rescaled to the budget);
a change is kept only if it lowers the margin ``z_y − max_{i≠y} z_i``. An
example stops consuming queries once it is misclassified.

* Linf (§3.1 / Algorithm 2): start from vertical stripes of ±ε, then set a
  window to ±ε, one random sign per channel.
* L2 (§3.2): start from a tiling of ±"meta pseudo-Gaussian" bumps scaled to
  ‖δ‖₂ = ε; each query moves the mass of a second window into the first one
  (adding a fresh bump with random sign per channel) and rescales the whole
  perturbation back to the sphere of radius ε.

Non-image inputs: the per-example tensor is viewed as a grid
``(C, H, W)``: images as they are; ``(L, D)`` (tokens × embedding, or
channels × time) as ``(1, L, D)``; a 1-D signal ``(T,)`` as ``(1, 1, T)``;
higher ranks flatten the trailing dimensions into W. Windows are rectangles
of area ≈ p·H·W: squares when H and W allow, otherwise as tall as the grid
and wider. The threat's own projection is applied to every candidate, so masks
(padding, special tokens), bounds, dB-relative and per-token radii hold.

Randomness is drawn per example from ``(seed, ctx.index)`` up front, so a
batch gives the same result as its examples one by one. Models whose outputs
are not class logits are attacked by maximizing their own objective (the
example then uses its whole query budget).
"""

from __future__ import annotations

import math

import torch

from bench.attacks.base import Attack, model_errors, resolve_loss
from bench.errors import UserError
from bench.registry import ATTACKS, LOSSES
from bench.rng import per_example_uniform

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_at(p_init: float, query: int, budget: int) -> float:
    """The window fraction after ``query`` of ``budget`` queries (the paper's schedule for 10k queries)."""
    q = int(query / max(budget, 1) * 10000)
    halvings = sum(q > t for t in SCHEDULE)
    return p_init / (2 ** halvings)


def grid_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Per-example shape -> (C, H, W) the windows live on (see module docstring)."""
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return shape[0], shape[1], int(math.prod(shape[2:]))


def window(p: float, H: int, W: int) -> tuple[int, int]:
    """Window (height, width) of area ≈ p·H·W, square when possible; at least 1, less than the grid when > 1."""
    area = max(1.0, p * H * W)
    s = max(1, int(round(math.sqrt(area))))
    h = min(s, max(H - 1, 1))
    w = min(W - 1 if W > 1 else 1, max(1, int(round(area / h))))
    return h, w


def pseudo_gaussian(h: int, w: int) -> torch.Tensor:
    """A "meta pseudo-Gaussian" bump (Andriushchenko et al. 2020, §3.2): two halves of
    concentric rectangles with weights 1/(ring+1)², the second half negated, unit L2 norm."""
    def half(hh: int, ww: int) -> torch.Tensor:
        ii = torch.arange(hh, dtype=torch.float32)[:, None]
        jj = torch.arange(ww, dtype=torch.float32)[None, :]
        ring = torch.maximum((ii - (hh - 1) / 2).abs() * 2 / max(hh, 1),
                             (jj - (ww - 1) / 2).abs() * 2 / max(ww, 1))
        return 1.0 / (torch.floor(ring * max(hh, ww) / 2) + 1) ** 2

    if w >= 2:
        a = half(h, w // 2)
        b = -half(h, w - w // 2)
        m = torch.cat([a, b], dim=1)
    else:
        m = half(h, w)
    return m / m.norm().clamp_min(1e-12)


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack, Linf or L2 (the threat's norm).

    Args:
        queries: query budget per example (5,000 in AutoAttack's standard suite),
            including the initial query.
        p_init: initial window fraction (0.8, AutoAttack's choice).
        loss: the score to increase; default the margin loss for class logits,
            the model's objective otherwise.
        seed: seeds the per-example random search.
    """

    name = "square"
    whitebox = False

    def __init__(self, queries: int = 5000, p_init: float = 0.8, loss=None, seed: int = 0) -> None:
        super().__init__(loss, seed)
        if queries < 1 or not 0 < p_init <= 1:
            raise UserError("square needs queries >= 1 and 0 < p_init <= 1")
        self.queries, self.p_init = int(queries), float(p_init)

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
        e0 = model_errors(model, out, y).float()
        linf = threat.norm == "linf"

        def proj(delta_grid):
            return threat.project(z + delta_grid.reshape(z.shape), z, ctx)

        # all random numbers for this example's search, drawn from (seed, index) up front
        n = self.queries
        # per query: 2 window corners (first window), 2 more (L2 second window), C signs
        rnd = per_example_uniform(torch.Size((B, n, 4 + C)), index, "square", self.seed, "q").to(z.device)
        init = per_example_uniform(torch.Size((B, C, H, W)), index, "square", self.seed, "init").to(z.device)
        sign = lambda u: torch.where(u < 0.5, -1.0, 1.0).to(z.dtype)  # noqa: E731

        if linf:
            stripes = sign(init[:, :, :1, :]).expand(B, C, H, W)
            delta = stripes * r_full
        else:
            delta = self._l2_init(init, r_full, threat, z, ctx, (C, H, W))
        x = proj(delta)
        out = model(x, ctx)
        best = score_fn(out, y)
        err = model_errors(model, out, y).float()
        done = (err > 0) if binary else torch.zeros(B, dtype=torch.bool, device=z.device)
        rows = torch.arange(H, device=z.device)
        cols = torch.arange(W, device=z.device)
        for q in range(1, n):
            act = (~done).nonzero().squeeze(1)
            if len(act) == 0:
                break
            h, w = window(p_at(self.p_init, q, n), H, W)
            u = rnd[act, q]
            vh = (u[:, 0] * (H - h + 1)).long().clamp_max(H - h)
            vw = (u[:, 1] * (W - w + 1)).long().clamp_max(W - w)
            m1 = ((rows[None] >= vh[:, None]) & (rows[None] < (vh + h)[:, None]))[:, None, :, None] & \
                 ((cols[None] >= vw[:, None]) & (cols[None] < (vw + w)[:, None]))[:, None, None, :]
            cur = (x[act] - z[act]).reshape(len(act), C, H, W)
            ra = r_full[act]
            s = sign(u[:, 4:4 + C])[:, :, None, None]
            if linf:
                new = s * ra
                # a window already equal to the proposal would waste the query: flip channel 0
                same = ((cur - new).abs() * m1).flatten(1).amax(1) <= 1e-12 * ra.flatten(1).amax(1)
                if bool(same.any()):
                    flip = torch.ones_like(s)
                    flip[:, 0] = -1
                    s = torch.where(same[:, None, None, None], s * flip, s)
                    new = s * ra
                cand = torch.where(m1, new, cur)
            else:
                vh2 = (u[:, 2] * (H - h + 1)).long().clamp_max(H - h)
                vw2 = (u[:, 3] * (W - w + 1)).long().clamp_max(W - w)
                m2 = ((rows[None] >= vh2[:, None]) & (rows[None] < (vh2 + h)[:, None]))[:, None, :, None] & \
                     ((cols[None] >= vw2[:, None]) & (cols[None] < (vw2 + w)[:, None]))[:, None, None, :]
                cand = self._l2_step(cur, m1, m2, s, (h, w), ra, threat, z[act], ctx.select(act), vh, vw)
            xa = proj_sel(threat, z, ctx, act, cand)
            o = model(xa, ctx.select(act))
            ya = take(y, act)
            sc = score_fn(o, ya)
            ea = model_errors(model, o, ya).float()
            better = sc > best[act]
            keep = act[better]
            x[keep] = xa[better]
            best[keep] = sc[better]
            err[keep] = torch.maximum(err[keep], ea[better])
            if binary:
                done[act] = err[act] > 0
        return x

    # ------------------------------------------------------------- L2 parts
    def _l2_init(self, init, r_full, threat, z, ctx, grid):
        """A tiling of ±pseudo-Gaussian bumps (window ≈ a fifth of the grid side), scaled to radius."""
        C, H, W = grid
        B = z.shape[0]
        h, w = max(1, H // 5) if H >= 5 else H, max(1, W // 5) if W >= 5 else W
        bump = pseudo_gaussian(h, w).to(z)
        delta = torch.zeros(B, C, H, W, dtype=z.dtype, device=z.device)
        for i in range(0, H - h + 1, h):
            for j in range(0, W - w + 1, w):
                s = torch.where(init[:, :, i, j] < 0.5, -1.0, 1.0).to(z.dtype)[:, :, None, None]
                delta[:, :, i:i + h, j:j + w] = s * bump
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

    def _l2_step(self, cur, m1, m2, s, hw, ra, threat, z, ctx, vh, vw):
        """Move the mass of window 2 into window 1 plus a fresh bump (§3.2), rescale to the sphere."""
        h, w = hw
        bump = pseudo_gaussian(h, w).to(cur)
        n = cur.shape[0]
        both = m1 | m2
        n1 = (cur * m1).flatten(2).norm(dim=2)  # per channel
        nb = (cur * both).flatten(2).norm(dim=2)
        # current content of window 1, normalized, plus a new bump with a random sign per channel
        rows = vh[:, None] + torch.arange(h, device=cur.device)[None]
        cols = vw[:, None] + torch.arange(w, device=cur.device)[None]
        win = cur[torch.arange(n, device=cur.device)[:, None, None, None],
                  torch.arange(cur.shape[1], device=cur.device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
        new = s * bump + win / n1[:, :, None, None].clamp_min(1e-12)
        new = new / new.flatten(2).norm(dim=2)[:, :, None, None].clamp_min(1e-12) * nb[:, :, None, None]
        cand = torch.where(m2, torch.zeros_like(cur), cur)
        place = torch.zeros_like(cur)
        place[torch.arange(n, device=cur.device)[:, None, None, None],
              torch.arange(cur.shape[1], device=cur.device)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]] = new
        cand = torch.where(m1, place, cand)
        return self._to_radius(cand, threat, z, ctx)


def proj_sel(threat, z, ctx, act, cand_grid):
    """Project candidates of the active examples ``act`` onto their threat sets."""
    za = z[act]
    return threat.project(za + cand_grid.reshape(za.shape), za, ctx.select(act))
