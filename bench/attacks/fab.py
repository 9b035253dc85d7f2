"""FAB: the Fast Adaptive Boundary attack (Croce & Hein 2020, ICML, "Minimally distorted
adversarial examples with a fast adaptive boundary attack", Algorithm 1), Linf and L2,
untargeted (``fab``) and targeted over the top-k classes (``fab-t``, the version in
AutoAttack's standard suite).

FAB looks for the adversarial example of smallest norm. At the iterate x it linearizes the
decision boundary between the true class y and a class k, π_k = {x': f_k(x) − f_y(x) +
⟨∇(f_k − f_y)(x), x' − x⟩ = 0} (untargeted: the k whose boundary is closest in the norm, eq. 4;
FAB-T: the target class), and projects both the iterate and the original point onto π_k
intersected with the box of valid inputs (d₁, d₂). The next iterate is the biased convex
combination (eq. 9)

    x ← clip((x + η d₁)(1 − α) + (x_orig + η d₂) α),  α = min(‖d₁‖ / (‖d₁‖ + ‖d₂‖), α_max),

with overshoot η = 1.05 and α_max = 0.1; when x is adversarial it is recorded if it is the
smallest found so far and pulled back towards the original, x ← x_orig + β (x − x_orig) with
β = 0.9 (the backward step, §3.2). Restarts after the first start from a random point at half
the best distance found (or half the radius).

Geometry. Everything runs in coordinates normalized by the threat's radius, u = (z − z₀)/r
(per example or per token), so the threat ball is the unit ball of the norm: the SNR-relative
budgets of speech and the per-token budgets of text embeddings become one box-constrained
problem. The box is the threat's ``bounds`` (none for embeddings), and positions outside the
threat's mask (padding, special tokens) are fixed. For per-token L2 balls the projection step
uses the flat L2 norm of u (the per-token geometry is enforced by the final projection of the
attack wrapper); all other threats are handled exactly. The hyperplane-and-box projection is
solved exactly per example (sort the breakpoints of the piecewise-linear dual, pick the active
segment), in float64.

A candidate counts as found when the model errs on it *and* it lies inside the threat ball,
as AutoAttack counts FAB's output. Outputs that are not class logits (CTC) are left unattacked
and the attack records why in :attr:`FAB.notes`.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.attacks.apgd import _is_logits, _pick
from bench.attacks.base import Attack, model_errors
from bench.errors import UserError
from bench.registry import ATTACKS
from bench.rng import per_example_uniform

#: a finite stand-in for "no bound" in the box, far beyond any radius-normalized step
_FAR = 1e30


def project_hyperplane_box(w: torch.Tensor, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                           norm: str) -> torch.Tensor:
    """Smallest ``d`` (Linf or L2) with ``⟨w, d⟩ = c`` and ``lo ≤ d ≤ hi``, one problem per row.

    ``w, lo, hi``: ``(N, D)`` with ``lo ≤ 0 ≤ hi``; ``c``: ``(N,)``. Where the box cannot reach the
    hyperplane, the point of the box that gets closest (every useful coordinate at its bound).

    Per row, with ``e_i = sign(c·w_i)·d_i ≥ 0`` the room ``cap_i`` towards the hyperplane, the
    optimum is ``e_i = min(μ·v_i, cap_i)`` (L2: ``v = |w|``; Linf: ``v = 1``, μ is then the
    Linf norm), and ``G(μ) = Σ |w_i| e_i`` is piecewise linear and non-decreasing in μ; the
    breakpoints ``μ_i = cap_i / v_i`` are sorted and the segment where ``G = |c|`` is solved.
    """
    w, c, lo, hi = w.double(), c.double(), lo.double(), hi.double()
    s = torch.where(c >= 0, 1.0, -1.0).to(w)
    direction = torch.sign(w) * s[:, None]                      # the helpful sign of each coordinate
    aw = w.abs()
    active = aw > 0
    cap = torch.where(direction > 0, hi, -lo).clamp(0.0, _FAR)
    cap = torch.where(active, cap, torch.zeros_like(cap))
    v = aw if norm == "l2" else torch.ones_like(aw)
    brk = torch.where(active, cap / v.clamp_min(1e-300), torch.full_like(cap, _FAR * 1e10))
    order = brk.argsort(dim=1)
    brk_s, aw_s, v_s, cap_s = (t.gather(1, order) for t in (brk, aw, v, cap))
    sat = aw_s * cap_s
    prefix = sat.cumsum(1) - sat                               # Σ_{j<k} |w_j| cap_j (saturated before k)
    slope = (aw_s * v_s).flip(1).cumsum(1).flip(1)             # Σ_{j≥k} |w_j| v_j (still growing at k)
    g_at = prefix + brk_s * slope                              # G at the k-th breakpoint
    target = c.abs()
    k = (g_at < target[:, None]).sum(1)                        # first breakpoint where G ≥ |c|
    feasible = k < w.shape[1]
    kk = k.clamp_max(w.shape[1] - 1)[:, None]
    mu = (target - prefix.gather(1, kk).squeeze(1)) / slope.gather(1, kk).squeeze(1).clamp_min(1e-300)
    e = torch.minimum(mu[:, None] * v, cap)
    e = torch.where(feasible[:, None], e, cap)
    return (direction * e * active).to(torch.float64)


def _norm(u: torch.Tensor, norm: str) -> torch.Tensor:
    flat = u.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


class _Problem:
    """One batch in radius-normalized coordinates: z = z₀ + r·u, box lo ≤ u ≤ hi (0 where fixed)."""

    def __init__(self, threat, z0, ctx):
        self.threat, self.z0, self.ctx = threat, z0, ctx
        r = threat._expand(threat.radius(z0, ctx), z0).expand_as(z0)
        self.zero = r <= 0
        self.r = torch.where(self.zero, torch.ones_like(r), r)
        if threat.bounds is not None:
            lo_b, hi_b = threat.bounds
            lo = ((lo_b - z0) / self.r).clamp(-_FAR, 0.0)
            hi = ((hi_b - z0) / self.r).clamp(0.0, _FAR)
        else:
            lo, hi = torch.full_like(z0, -_FAR), torch.full_like(z0, _FAR)
        fixed = self.zero.clone()
        m = threat.mask(z0, ctx)
        if m is not None:
            fixed = fixed | (m.expand_as(z0) == 0)
        self.lo = torch.where(fixed, torch.zeros_like(lo), lo)
        self.hi = torch.where(fixed, torch.zeros_like(hi), hi)
        self.norm = "linf" if threat.norm == "linf" else "l2"

    def z(self, u: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        if idx is None:
            return self.z0 + self.r * u
        return self.z0[idx] + self.r[idx] * u

    def distance(self, u: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Size relative to the radius in the threat's own geometry (≤ 1 inside the ball)."""
        return self.threat.distance(self.z(u, idx), self.z0[idx], self.ctx.select(idx))


@ATTACKS.register("fab")
class FAB(Attack):
    """FAB (untargeted): minimum-norm boundary attack, Croce & Hein 2020, Algorithm 1.

    Args:
        steps: iterations per run (100 in AutoAttack).
        restarts: runs per example; after the first, each starts from a random point at half
            the best distance found so far (AutoAttack's standard version uses 1).
        eta: overshoot η (1.05), alpha_max: α_max (0.1), beta: backward step β (0.9).
        seed: seeds the random starts of restarts, per example.
    """

    name = "fab"
    targeted = False

    def __init__(self, steps: int = 100, restarts: int = 1, eta: float = 1.05, alpha_max: float = 0.1,
                 beta: float = 0.9, seed: int = 0) -> None:
        super().__init__(None, seed)
        if steps < 1 or restarts < 1:
            raise UserError(f"{self.name} needs steps >= 1 and restarts >= 1")
        if not (eta >= 1 and 0 <= alpha_max <= 1 and 0 < beta < 1):
            raise UserError(f"{self.name} needs eta >= 1, 0 <= alpha_max <= 1 and 0 < beta < 1")
        self.steps, self.restarts = int(steps), int(restarts)
        self.eta, self.alpha_max, self.beta = float(eta), float(alpha_max), float(beta)
        self.notes: set[str] = set()

    # ------------------------------------------------------- boundary geometry
    def _boundary(self, model, prob: _Problem, u, idx, y, target):
        """At z(u): f_k − f_y and its gradient in u for the chosen boundary, plus the errors there.

        Untargeted: the class k ≠ y whose linearized boundary is nearest in the threat's norm
        (dual norm of the gradient, eq. 4); targeted: k = ``target``.
        """
        ctx = prob.ctx.select(idx)
        z = prob.z(u, idx).detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(z, ctx)
            logits = out.float()
            rows = torch.arange(len(idx), device=z.device)
            fy = logits[rows, y]
            if target is not None:
                f = logits[rows, target] - fy
                (g,) = torch.autograd.grad(f.sum(), z)
                f, g = f.detach(), g * prob.r[idx]
            else:
                n_cls = logits.shape[1]
                fs, gs = [], []
                for k in range(n_cls):
                    fk = logits[:, k] - fy
                    (gk,) = torch.autograd.grad(fk.sum(), z, retain_graph=k < n_cls - 1)
                    fs.append(fk.detach())
                    gs.append(gk * prob.r[idx])
                fs_t, gs_t = torch.stack(fs, 1), torch.stack(gs, 1)
                dual = gs_t.flatten(2).abs().sum(2) if prob.norm == "linf" else gs_t.flatten(2).norm(dim=2)
                dist = fs_t.abs() / (dual + 1e-12)
                dist[rows, y] = float("inf")
                k_best = dist.argmin(1)
                f, g = fs_t[rows, k_best], gs_t[rows, k_best]
        err = model_errors(model, out.detach(), y).float() > 0
        return f, g.detach(), err

    def _step(self, prob: _Problem, u, idx, f, g):
        """One FAB update (eq. 9) of the iterate ``u`` (rows ``idx``)."""
        B = u.shape[0]
        w = g.flatten(1).double()
        uf = u.flatten(1).double()
        lo, hi = prob.lo[idx].flatten(1).double(), prob.hi[idx].flatten(1).double()
        c1 = -f.double()                                   # plane through the linearization, seen from u
        c2 = (w * uf).sum(1) - f.double()                  # ... seen from the original point (u = 0)
        d = project_hyperplane_box(torch.cat([w, w]), torch.cat([c1, c2]),
                                   torch.cat([lo - uf, lo]), torch.cat([hi - uf, hi]), prob.norm)
        d1, d2 = d[:B], d[B:]
        a1 = _norm(d1, prob.norm).clamp_min(1e-8)
        a2 = _norm(d2, prob.norm).clamp_min(1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0.0, self.alpha_max)[:, None]
        new = (uf + self.eta * d1) * (1 - alpha) + (self.eta * d2) * alpha
        new = torch.minimum(torch.maximum(new, lo), hi)
        return new.to(u.dtype).reshape(u.shape)

    def _random_start(self, prob: _Problem, idx, scale: torch.Tensor, tag: str) -> torch.Tensor:
        index = prob.ctx.index[idx] if prob.ctx.index is not None else idx.cpu()
        shape = torch.Size((len(idx),) + tuple(prob.z0.shape[1:]))
        if prob.norm == "linf":
            t = 2 * per_example_uniform(shape, index.cpu(), "fab", self.seed, tag).to(prob.z0) - 1
        else:
            t = per_example_uniform(shape, index.cpu(), "fab", self.seed, tag, normal=True).to(prob.z0)
        t = t / _norm(t, prob.norm).clamp_min(1e-12).reshape((-1,) + (1,) * (t.dim() - 1))
        u = 0.5 * scale.reshape((-1,) + (1,) * (t.dim() - 1)) * t
        return torch.minimum(torch.maximum(u, prob.lo[idx]), prob.hi[idx])

    # ------------------------------------------------------------- one run
    def _run(self, model, prob: _Problem, idx, y, target, best_u, best_d, tag: str, restart: int) -> None:
        """FAB from the origin (restart 0) or a random start, on the rows ``idx``; updates the bests in place."""
        yi = _pick(y, idx)
        ti = None if target is None else target[idx]
        if restart == 0:
            u = torch.zeros_like(prob.z0[idx])
        else:
            u = self._random_start(prob, idx, best_d[idx].clamp(max=1.0), f"{tag}/{restart}")
        f, g, err = self._boundary(model, prob, u, idx, yi, ti)
        for _ in range(self.steps):
            u = self._step(prob, u, idx, f, g)
            f, g, err = self._boundary(model, prob, u, idx, yi, ti)
            if bool(err.any()):
                hit = err.nonzero().squeeze(1)
                dist = prob.distance(u[hit], idx[hit])
                better = dist < best_d[idx[hit]]
                rows = idx[hit[better]]
                best_u[rows] = u[hit[better]]
                best_d[rows] = dist[better]
                # the backward step: pull adversarial iterates towards the original point
                u[hit] = self.beta * u[hit]
                f2, g2, _ = self._boundary(model, prob, u[hit], idx[hit], _pick(yi, hit),
                                           None if ti is None else ti[hit])
                f, g = f.clone(), g.clone()
                f[hit], g[hit] = f2, g2

    def _fab(self, model, prob: _Problem, y, target, best_u, best_d, tag: str) -> None:
        for restart in range(self.restarts):
            todo = (best_d > 1.0).nonzero().squeeze(1)  # not yet fooled inside the ball
            if len(todo) == 0:
                return
            self._run(model, prob, todo, y, target, best_u, best_d, tag, restart)

    def _setup(self, model, z, ctx, y, threat):
        with torch.no_grad():
            out = model(z, ctx)
        if not _is_logits(out, y):
            self.notes.add(f"{self.name}: outputs are not class logits; FAB needs class boundaries, "
                           "examples left unattacked")
            return None, None, None, None
        prob = _Problem(threat, z, ctx)
        best_u = torch.zeros_like(z)
        best_d = torch.full((z.shape[0],), float("inf"), device=z.device)
        return out, prob, best_u, best_d

    def search(self, model, z, ctx, y, threat):
        out, prob, best_u, best_d = self._setup(model, z, ctx, y, threat)
        if prob is None:
            return z
        self._fab(model, prob, y, None, best_u, best_d, "u")
        return prob.z(best_u)


@ATTACKS.register("fab-t")
class FABTargeted(FAB):
    """FAB-T: FAB towards each of the ``targets`` highest-scoring wrong classes of the clean
    logits in turn (9 in AutoAttack's standard version, capped at classes − 1), each run only on
    the examples not yet fooled inside the ball; success is any misclassification."""

    name = "fab-t"
    targeted = True

    def __init__(self, steps: int = 100, restarts: int = 1, targets: int = 9, eta: float = 1.05,
                 alpha_max: float = 0.1, beta: float = 0.9, seed: int = 0) -> None:
        super().__init__(steps, restarts, eta, alpha_max, beta, seed)
        if targets < 1:
            raise UserError("fab-t needs targets >= 1")
        self.targets = int(targets)

    def search(self, model, z, ctx, y: Any, threat):
        out, prob, best_u, best_d = self._setup(model, z, ctx, y, threat)
        if prob is None:
            return z
        n_cls = out.shape[1]
        order = out.float().sort(dim=1, descending=True).indices
        wrong = order[order != y[:, None]].view(len(y), n_cls - 1)
        for k in range(min(self.targets, n_cls - 1)):
            self._fab(model, prob, y, wrong[:, k], best_u, best_d, f"t{k}")
        return prob.z(best_u)
