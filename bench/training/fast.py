"""FGSM-RS, "fast" adversarial training (Wong, Rice & Kolter 2020)."""

from __future__ import annotations

from bench.attacks.pgd import PGD
from bench.registry import RECIPES
from bench.training.common import adversarial_loss
from bench.training.recipe import Recipe


@RECIPES.register("fgsm-rs")
def fgsm_rs(rel_step: float = 1.25) -> Recipe:
    """FGSM with a uniform random start and step 1.25·ε (Wong, Rice & Kolter 2020, "Fast is better than free").

    The step may leave the ball; the result is projected back, as in Alg. 3 of the paper.
    """
    attack = PGD(steps=1, rel_step=rel_step, random_start=True)

    def inner(model, z, ctx, y, threat, state):
        attack.seed = state.get("step", 0)
        return attack.run(model, z, ctx, y, threat)

    return Recipe("fgsm-rs", inner=inner, loss=adversarial_loss, params={"rel_step": rel_step},
                  cite="Wong, Rice & Kolter 2020, Fast is better than free: Revisiting adversarial training")


@RECIPES.register("fgsm")
def fgsm_at(rel_step: float = 1.0, random_start: bool = False) -> Recipe:
    """Plain FGSM adversarial training (Goodfellow et al. 2015): zero init, step = rel_step·ε.

    The single-step baseline that exhibits catastrophic overfitting (Wong et al. 2020, Sec. 4.1):
    accuracy under FGSM stays high while accuracy under PGD collapses.
    """
    attack = PGD(steps=1, rel_step=rel_step, random_start=random_start)

    def inner(model, z, ctx, y, threat, state):
        attack.seed = state.get("step", 0)
        return attack.run(model, z, ctx, y, threat)

    return Recipe("fgsm", inner=inner, loss=adversarial_loss,
                  params={"rel_step": rel_step, "random_start": random_start},
                  cite="Goodfellow, Shlens & Szegedy 2015, Explaining and Harnessing Adversarial Examples")
