"""TRADES (Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy").

Inner: maximize KL(f(x) || f(x')) from x + 0.001·N(0, I) with K projected steps (eq. 5).
Outer: L(f(x), y) + β · KL(f(x) || f(x')), β = 6 by default; β = 0 is ERM's loss.

L is the model's objective: cross-entropy for a classifier, the CTC loss for speech
recognition, where the KL is taken frame by frame on the per-frame posteriors (blank
included) and averaged over frames: our sequence version of the consistency term.
"""

from __future__ import annotations

from bench.attacks.base import resolve_loss
from bench.attacks.pgd import PGD
from bench.registry import RECIPES
from bench.training.common import adv_input, kl_per_example
from bench.training.recipe import Recipe


@RECIPES.register("trades")
def trades(beta: float = 6.0, steps: int = 10, rel_step: float | None = None) -> Recipe:
    attack = PGD(steps=steps, rel_step=rel_step if rel_step is not None else 2.5 / steps,
                 random_start=False, init_std=0.001, loss=lambda out, clean: kl_per_example(clean, out))

    def inner(model, z, ctx, y, threat, state):
        clean = model(z, ctx).detach()
        attack.seed = state.get("step", 0)
        return attack.run(model, z, ctx, clean, threat)

    def loss(model, z, z_adv, ctx, y, state):
        out_clean = model(z, ctx)
        ce = resolve_loss(None, model)(out_clean, y).mean()
        state["outputs"] = out_clean.detach()
        if beta == 0:
            return ce
        out_adv = model(adv_input(z, z_adv), ctx)
        return ce + beta * kl_per_example(out_clean, out_adv).mean()

    return Recipe("trades", inner=inner, loss=loss, params={"beta": beta, "steps": steps},
                  cite="Zhang et al. 2019, Theoretically Principled Trade-off between Robustness and Accuracy")
