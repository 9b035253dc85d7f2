"""Mixed clean + adversarial training (Goodfellow et al. 2015, "Explaining and Harnessing
Adversarial Examples", §6: J̃ = α·J(x) + (1 − α)·J(x_adv)), with the PGD-K example of PGD-AT.

The loss is the model's objective on both points (cross-entropy, or CTC for speech
recognition), so it serves every task. ``clean_weight`` is α: 0 is PGD-AT, 1 is ERM. Keeping
part of the clean objective is the usual way to keep a sequence model's clean error usable
(Kurakin et al. 2017 mix clean and adversarial examples in each batch for the same reason).
"""

from __future__ import annotations

from bench.attacks.base import resolve_loss
from bench.attacks.pgd import PGD
from bench.errors import UserError
from bench.registry import RECIPES
from bench.training.common import adv_input
from bench.training.recipe import Recipe


@RECIPES.register("mixed-at")
def mixed_at(clean_weight: float = 0.5, steps: int = 7, rel_step: float | None = None) -> Recipe:
    if not 0.0 <= float(clean_weight) <= 1.0:
        raise UserError(f"mixed-at: clean_weight must be in [0, 1], got {clean_weight!r}")
    alpha = float(clean_weight)
    attack = PGD(steps=steps, rel_step=rel_step)

    def inner(model, z, ctx, y, threat, state):
        attack.seed = state.get("step", 0)
        return attack.run(model, z, ctx, y, threat)

    def loss(model, z, z_adv, ctx, y, state):
        objective = resolve_loss(None, model)
        out_clean = model(z, ctx)
        state["outputs"] = out_clean.detach()
        total = alpha * objective(out_clean, y).mean()
        if alpha < 1.0:
            total = total + (1.0 - alpha) * objective(model(adv_input(z, z_adv), ctx), y).mean()
        return total

    return Recipe("mixed-at", inner=inner, loss=loss,
                  params={"clean_weight": alpha, "steps": steps,
                          "rel_step": rel_step if rel_step is not None else 2.5 / steps},
                  cite="Goodfellow et al. 2015, Explaining and Harnessing Adversarial Examples")
