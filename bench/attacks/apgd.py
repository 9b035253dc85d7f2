"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness
with an ensemble of diverse parameter-free attacks", Algorithm 1).

PGD with momentum (α = 0.75) and a step size that starts at 2ε and is halved
at checkpoints w_j = ⌈p_j N⌉ (p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) when

1. the loss increased in fewer than ρ = 0.75 of the steps since the last
   checkpoint, or
2. the step was not reduced at the last checkpoint and the best loss has not
   improved since;

after a reduction the iterate restarts from the best point found so far.
Losses: CE, DLR (eq. 6) and, for the targeted variant ``apgd-t``, targeted
DLR (eq. 7) run once per target class among the top-k of the clean logits
(as AutoAttack does). Everything is per example (step sizes, checkpoints,
best points), so a batch gives the same result as its examples one by one.

The attack is written against :class:`~bench.threat.ThreatModel` only
(radius, steepest direction, projection, random start), so it serves Linf and
L2, absolute, dB-scaled and per-token threats alike. DLR needs at least 3
classes (targeted DLR 4): with fewer, or with outputs that are not class
logits (e.g. CTC log-probs), the attack falls back to the margin loss or the
model's own objective and records why in :attr:`APGD.notes`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from bench.attacks.base import Attack, loss_and_grad, model_errors, resolve_loss
from bench.errors import UserError
from bench.registry import ATTACKS, LOSSES

MOMENTUM = 0.75
RHO = 0.75


def checkpoints(n_iter: int) -> list[int]:
    """Iterations at which APGD checks its step size (Croce & Hein 2020, §3.2).

    The paper's p_j = 0, 0.22, 0.41, 0.57, ... (interval shrinking by 0.03 N, at
    least 0.06 N), with the integer rounding of the authors' reference code:
    intervals int(0.22 N), minus max(int(0.03 N), 1), at least max(int(0.06 N), 1).
    For N = 100 this is 22, 41, 57, 70, 80, 87, 93, 99; for small N the rounding
    makes late checks more frequent, and the peers (AutoAttack, torchattacks) do
    the same, which matters for parity at small budgets.
    """
    k, dec, low = max(int(0.22 * n_iter), 1), max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
    out, it = [], 0
    while it + k <= n_iter:
        it += k
        out.append(it)
        k = max(k - dec, low)
    return out


def targeted_dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020, eq. 7): −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)."""
    logits = logits.float()
    srt, _ = logits.sort(dim=1, descending=True)
    zy = logits.gather(1, y[:, None]).squeeze(1)
    zt = logits.gather(1, target[:, None]).squeeze(1)
    return -(zy - zt) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


def _is_logits(out: Any, y: Any) -> bool:
    return isinstance(out, torch.Tensor) and out.dim() == 2 and isinstance(y, torch.Tensor) and y.dim() == 1 \
        and y.dtype in (torch.int64, torch.int32)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(B,)`` tensor reshaped to broadcast against ``like``."""
    return v.reshape((v.shape[0],) + (1,) * (like.dim() - 1))


def _pick(y: Any, idx: torch.Tensor) -> Any:
    from bench.data import take

    return take(y, idx)


@ATTACKS.register("apgd")
class APGD(Attack):
    """APGD (untargeted), Croce & Hein 2020, Algorithm 1.

    Args:
        steps: iterations N (100 in AutoAttack).
        restarts: random restarts; each only on examples not yet fooled.
        loss: ``"ce"``, ``"dlr"`` or any registered loss / callable (default: the model's objective).
        random_start: start from a uniform point of the ball (AutoAttack does).
        seed: seeds the random starts per example and restart.
    """

    name = "apgd"

    def __init__(self, steps: int = 100, restarts: int = 1, loss=None, random_start: bool = True,
                 seed: int = 0) -> None:
        super().__init__(loss, seed)
        if steps < 1 or restarts < 1:
            raise UserError(f"{self.name} needs steps >= 1 and restarts >= 1")
        self.steps, self.restarts, self.random_start = int(steps), int(restarts), bool(random_start)
        self.notes: set[str] = set()

    # ------------------------------------------------------------ the loss
    def _loss_fn(self, model, out, y) -> Callable:
        if self.loss == "dlr":
            if not _is_logits(out, y):
                self.notes.add(f"{self.name}: outputs are not class logits, DLR replaced by the model's objective")
                return resolve_loss(None, model)
            if out.shape[1] < 3:
                self.notes.add(f"{self.name}: DLR needs >= 3 classes, got {out.shape[1]}; used the margin loss")
                return LOSSES.get("margin")
        return resolve_loss(self.loss, model)

    # ------------------------------------------------------------ one run
    def _errors(self, model, out, y) -> torch.Tensor:
        return model_errors(model, out, y).float()

    def _apgd(self, model, z, ctx, y, threat, loss_fn, tag: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One APGD run from a (random) start; returns (best adversarial point, its error)."""
        B = z.shape[0]
        r = threat._expand(threat.radius(z, ctx), z)
        eta = 2.0 * r * torch.ones((B,) + (1,) * (z.dim() - 1), dtype=z.dtype, device=z.device)
        x = threat.random_init(z, ctx, seed=f"apgd/{self.seed}/{tag}") if self.random_start else z.clone()
        project = threat.projector(z, ctx)
        loss, out, grad = loss_and_grad(model, x, ctx, y, loss_fn)
        err = self._errors(model, out, y)
        # best adversarial point (first maximize error, then loss): what the attack returns
        adv, adv_err, adv_loss = x.clone(), err.clone(), loss.clone()
        # best point by loss: where the iterate restarts after a step-size reduction
        x_max, f_max, g_max = x.clone(), loss.clone(), grad.clone()
        f_max_last = f_max.clone()
        # as in the authors' code, condition 2 cannot fire at the first checkpoint
        reduced_last = torch.ones(B, dtype=torch.bool, device=z.device)
        increases = torch.zeros(B, device=z.device)
        checks = set(checkpoints(self.steps))
        last_check = 0
        x_prev = x.clone()
        prev_loss = loss
        for k in range(self.steps):
            a = 1.0 if k == 0 else MOMENTUM
            step = project(x + eta * threat.steepest(grad, ctx))
            x_new = project(x + a * (step - x) + (1.0 - a) * (x - x_prev))
            x_prev, x = x, x_new
            loss, out, grad = loss_and_grad(model, x, ctx, y, loss_fn)
            err = self._errors(model, out, y)
            better = (err > adv_err) | ((err == adv_err) & (loss > adv_loss))
            adv = torch.where(_view(better, x), x, adv)
            adv_err = torch.where(better, err, adv_err)
            adv_loss = torch.where(better, loss, adv_loss)
            increases += (loss > prev_loss).float()
            prev_loss = loss
            up = loss > f_max
            x_max = torch.where(_view(up, x), x, x_max)
            g_max = torch.where(_view(up, x), grad, g_max)
            f_max = torch.where(up, loss, f_max)
            it = k + 1
            if it in checks:
                h = it - last_check
                cond1 = increases <= RHO * h  # the authors' code uses <=, the paper <
                cond2 = (~reduced_last) & (f_max_last >= f_max)
                reduce = cond1 | cond2
                eta = torch.where(_view(reduce, eta), eta / 2.0, eta)
                x = torch.where(_view(reduce, x), x_max, x)
                grad = torch.where(_view(reduce, x), g_max, grad)
                reduced_last = reduce
                f_max_last = f_max.clone()
                increases.zero_()
                last_check = it
        return adv, adv_err

    def _start(self, model, z, ctx, y):
        """Clean outputs and the bookkeeping of the best point per example."""
        with torch.no_grad():
            out = model(z, ctx)
        e0 = self._errors(model, out, y)
        state = {"adv": z.clone(), "err": e0.clone(), "e0": e0,
                 "fresh": torch.ones(z.shape[0], dtype=torch.bool, device=z.device),
                 "binary": bool(getattr(model, "binary_errors", True))}
        return out, state

    def _todo(self, st: dict) -> torch.Tensor:
        """The examples a restart still attacks: an example is done once its error rose above the
        clean one (classification: fooled)."""
        return (st["err"] <= st["e0"]) if not st["binary"] else (st["err"] <= 0)

    def _runs(self, model, z, ctx, y, threat, loss_for: Callable, tag: str, st: dict) -> None:
        """Restarts on the examples not yet fooled, in place on the state ``st``."""
        for restart in range(self.restarts):
            todo = self._todo(st).nonzero().squeeze(1)
            if len(todo) == 0:
                return
            x, e = self._apgd(model, z[todo], ctx.select(todo), _pick(y, todo), threat, loss_for(todo),
                              f"{tag}/{restart}")
            win = (e > st["err"][todo]) | st["fresh"][todo]
            st["adv"][todo[win]] = x[win]
            st["err"][todo[win]] = torch.maximum(e[win], st["err"][todo[win]])
            st["fresh"][todo] = False

    def search(self, model, z, ctx, y, threat):
        out, st = self._start(model, z, ctx, y)
        loss_fn = self._loss_fn(model, out, y)
        self._runs(model, z, ctx, y, threat, lambda idx: loss_fn, "u", st)
        return st["adv"]


@ATTACKS.register("apgd-t")
class APGDTargeted(APGD):
    """Targeted APGD over the top-k classes (AutoAttack's APGD-T).

    For each of the ``targets`` highest-scoring wrong classes of the clean
    logits (in order), APGD maximizes the targeted DLR loss (eq. 7) on the
    examples not yet misclassified; success is any misclassification.

    Args:
        targets: number of target classes (9 in AutoAttack's standard version,
            capped at classes − 1).
        loss: ``"dlr"`` (default, eq. 7) or ``"ce"`` (targeted cross-entropy).
    """

    name = "apgd-t"

    def __init__(self, steps: int = 100, restarts: int = 1, targets: int = 9, loss: str = "dlr",
                 random_start: bool = True, seed: int = 0) -> None:
        super().__init__(steps, restarts, loss, random_start, seed)
        if targets < 1:
            raise UserError("apgd-t needs targets >= 1")
        self.targets = int(targets)

    def search(self, model, z, ctx, y, threat):
        out, st = self._start(model, z, ctx, y)
        if not _is_logits(out, y):
            self.notes.add("apgd-t: outputs are not class logits; ran untargeted APGD on the model's objective")
            self._runs(model, z, ctx, y, threat, lambda idx: resolve_loss(None, model), "t", st)
            return st["adv"]
        n_classes = out.shape[1]
        if n_classes < 4 and self.loss == "dlr":
            self.notes.add(f"apgd-t: targeted DLR needs >= 4 classes, got {n_classes}; used the targeted margin")
            kind = "margin"
        else:
            kind = self.loss
        order = out.float().sort(dim=1, descending=True).indices
        for k in range(min(self.targets, n_classes - 1)):
            # the (k+1)-th best class other than the true one (clean logits)
            wrong = order[order != y[:, None]].view(len(y), n_classes - 1)
            target = wrong[:, k]

            def loss_for(idx, target=target):
                t = target[idx]
                if kind == "dlr":
                    return lambda o, yy: targeted_dlr(o, yy, t)
                if kind == "margin":
                    return lambda o, yy: (o.float().gather(1, t[:, None]) - o.float().gather(1, yy[:, None])).squeeze(1)
                return lambda o, yy: -F.cross_entropy(o.float(), t, reduction="none")

            self._runs(model, z, ctx, y, threat, loss_for, f"t{k}", st)
        return st["adv"]
