"""Free adversarial training (Shafahi et al. 2019, "Adversarial Training for Free!", Alg. 1).

Each minibatch is replayed m times; one backward pass per replay gives both the
parameter gradient and the input gradient, which updates a perturbation δ that
is carried across replays and minibatches: δ ← Π(δ + ε·sign(∇_x L)). The loop
divides the epoch count by m, so the number of gradient computations matches
ERM's for the same nominal epochs.
"""

from __future__ import annotations

import torch

from bench.registry import RECIPES
from bench.training.common import adversarial_loss
from bench.training.recipe import Recipe


@RECIPES.register("free")
def free(replay: int = 4, rel_step: float = 1.0) -> Recipe:
    def inner(model, z, ctx, y, threat, state):
        delta = state.get("free_delta")
        if delta is None or delta.shape != z.shape:
            delta = torch.zeros_like(z)  # the paper starts from 0; reset when the batch shape changes
        state.update(free_z=z, free_ctx=ctx, free_threat=threat)
        z_adv = threat.project(z + delta, z, ctx)
        state["free_delta"] = z_adv - z
        return z_adv

    def on_input_grad(grad, state):
        z, ctx, threat = state["free_z"], state["free_ctx"], state["free_threat"]
        r = threat._expand(threat.radius(z, ctx), z)
        stepped = threat.project(z + state["free_delta"] + rel_step * r * threat.steepest(grad, ctx), z, ctx)
        state["free_delta"] = (stepped - z).detach()

    return Recipe("free", inner=inner, loss=adversarial_loss, replay=replay, on_input_grad=on_input_grad,
                  params={"replay": replay, "rel_step": rel_step},
                  cite="Shafahi et al. 2019, Adversarial Training for Free!")
