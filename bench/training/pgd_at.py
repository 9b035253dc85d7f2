"""PGD-AT (Madry et al. 2018)."""

from __future__ import annotations

from bench.attacks.pgd import PGD
from bench.registry import RECIPES
from bench.training.common import adversarial_loss
from bench.training.recipe import Recipe


@RECIPES.register("pgd-at")
def pgd_at(steps: int = 7, rel_step: float | None = None, restarts: int = 1) -> Recipe:
    """PGD adversarial training (Madry et al. 2018): train on the PGD-K example.

    The default step is 2.5·ε/K, Madry et al.'s rule, with a random start.
    """
    attack = PGD(steps=steps, rel_step=rel_step, restarts=restarts)

    def inner(model, z, ctx, y, threat, state):
        attack.seed = state.get("step", 0)
        return attack.run(model, z, ctx, y, threat)

    return Recipe("pgd-at", inner=inner, loss=adversarial_loss,
                  params={"steps": steps, "rel_step": rel_step if rel_step is not None else 2.5 / steps},
                  cite="Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks")
