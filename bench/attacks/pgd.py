"""Projected Gradient Descent (Madry et al. 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks", eq. 2): x^{t+1} = Π_{B(x,ε)}(x^t + α·s(∇L)),
with s the steepest-ascent direction of the norm, a uniform random start and
restarts. Across restarts each example keeps its worst case: the first restart
that fools the model, otherwise the one with the highest loss. Within a restart
the last iterate is returned, as in Madry et al.
"""

from __future__ import annotations

import torch

from bench.attacks.base import Attack, keep_worst, loss_and_grad, model_errors, resolve_loss
from bench.errors import UserError
from bench.registry import ATTACKS


@ATTACKS.register("pgd")
class PGD(Attack):
    """PGD-K with random start and restarts.

    Args:
        steps: iterations K.
        step_size: absolute step α (only for absolute-scale threats).
        rel_step: step as a fraction of the radius (default ``2.5 / steps``,
            Madry et al.'s rule). Ignored when ``step_size`` is given.
        random_start: start from a uniform point of the ball.
        init_std: without ``random_start``, start at z + init_std·N(0, I) (TRADES uses 0.001).
        restarts: independent runs; the worst case per example is kept.
        loss: name in ``bench.registry.LOSSES`` or a callable ``(out, y) -> (B,)``.
        targeted: minimize the loss of ``y`` (then ``y`` holds target labels).
        seed: seeds the random start per example and restart.
    """

    name = "pgd"

    def __init__(self, steps: int = 10, step_size: float | None = None, rel_step: float | None = None,
                 random_start: bool = True, restarts: int = 1, loss=None, targeted: bool = False,
                 seed: int = 0, init_std: float = 0.0) -> None:
        super().__init__(loss, seed)
        if steps < 1 or restarts < 1:
            raise UserError("pgd needs steps >= 1 and restarts >= 1")
        self.steps, self.step_size, self.rel_step = int(steps), step_size, rel_step
        self.random_start, self.restarts, self.targeted = random_start, int(restarts), targeted
        self.init_std = float(init_std)

    def _alpha(self, z, ctx, threat) -> torch.Tensor:
        r = threat._expand(threat.radius(z, ctx), z)
        if self.step_size is not None:
            if threat.scale != "absolute":
                raise UserError(f"pgd step_size is absolute; threat {threat.id} needs rel_step")
            if threat.eps == 0:
                return torch.zeros_like(r)
            return r * (self.step_size / threat.eps)
        rel = self.rel_step if self.rel_step is not None else 2.5 / self.steps
        return r * rel

    def _start(self, z, ctx, threat, restart: int):
        if self.random_start:
            return threat.random_init(z, ctx, seed=f"pgd/{self.seed}/{restart}")
        if self.init_std > 0:
            from bench.rng import per_example_uniform

            index = ctx.index if ctx.index is not None else torch.arange(z.shape[0])
            noise = per_example_uniform(z.shape, index, "pgd-normal", self.seed, restart, normal=True, dtype=z.dtype)
            return threat.project(z + self.init_std * noise.to(z.device), z, ctx)
        return z.clone()

    def search(self, model, z, ctx, y, threat):
        loss_fn = resolve_loss(self.loss, model)
        sign = -1.0 if self.targeted else 1.0
        alpha = self._alpha(z, ctx, threat)
        project = threat.projector(z, ctx)
        best = None
        for restart in range(self.restarts):
            x = self._start(z, ctx, threat, restart)
            for _ in range(self.steps):
                _, _, grad = loss_and_grad(model, x, ctx, y, loss_fn, sign)
                x = project(x + alpha * threat.steepest(grad, ctx))
            if self.restarts == 1:
                return x
            with torch.no_grad():
                out = model(x, ctx)
                loss = sign * loss_fn(out, y)
                err = model_errors(model, out, y)
                if self.targeted:
                    err = 1.0 - err  # targeted: success means the target label is predicted
            if best is None:
                best = [x.clone(), err.clone(), loss.clone()]
            else:
                keep_worst(best[0], best[1], best[2], x, err, loss)
        return best[0]
