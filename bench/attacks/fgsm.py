"""Fast Gradient Sign Method (Goodfellow et al. 2015, "Explaining and Harnessing
Adversarial Examples"): one step of size eps along the steepest-ascent direction
of the threat's norm (the sign for Linf, the normalized gradient for L2)."""

from __future__ import annotations

from bench.attacks.base import Attack, loss_and_grad, resolve_loss
from bench.registry import ATTACKS


@ATTACKS.register("fgsm")
class FGSM(Attack):
    name = "fgsm"

    def __init__(self, loss=None, seed: int = 0, targeted: bool = False) -> None:
        super().__init__(loss, seed)
        self.targeted = targeted

    def search(self, model, z, ctx, y, threat):
        loss_fn = resolve_loss(self.loss, model)
        _, _, grad = loss_and_grad(model, z, ctx, y, loss_fn, -1.0 if self.targeted else 1.0)
        r = threat._expand(threat.radius(z, ctx), z)
        return z + r * threat.steepest(grad, ctx)
