"""Adversarial Weight Perturbation (Wu et al. 2020, "Adversarial Weight Perturbation Helps
Robust Generalization"), on top of PGD-AT.

After the inner PGD example x' is built, each weight matrix w (dim > 1) is moved
along the normalized ascent direction of the adversarial loss, scaled to its own
norm: v_w = γ·‖w‖·g_w/‖g_w‖ (eq. 9, one step). The training loss is taken at
w + v, its gradient is applied to w: the perturbation is removed after the
backward pass and before the optimizer step. γ = 5e-3 as in the paper.
"""

from __future__ import annotations

import torch

from bench.attacks.pgd import PGD
from bench.registry import RECIPES
from bench.training.common import adv_input, adversarial_loss
from bench.attacks.base import resolve_loss
from bench.training.recipe import Recipe


def _weights(model):
    return [p for n, p in model.named_parameters() if p.requires_grad and p.dim() > 1]


@RECIPES.register("awp")
def awp(gamma: float = 5e-3, steps: int = 7, rel_step: float | None = None) -> Recipe:
    attack = PGD(steps=steps, rel_step=rel_step, random_start=True)

    def inner(model, z, ctx, y, threat, state):
        attack.seed = state.get("step", 0)
        return attack.run(model, z, ctx, y, threat)

    def loss(model, z, z_adv, ctx, y, state):
        ws = _weights(model)
        adv = adv_input(z.detach(), z_adv)
        l0 = resolve_loss(None, model)(model(adv, ctx), y).mean()
        grads = torch.autograd.grad(l0, ws, allow_unused=True)
        vs = []
        with torch.no_grad():
            for w, g in zip(ws, grads):
                if g is None:
                    vs.append(None)
                    continue
                v = gamma * w.norm() * g / (g.norm() + 1e-12)
                w.add_(v)
                vs.append(v)
        state["awp_perturbation"] = list(zip(ws, vs))
        return adversarial_loss(model, z, z_adv, ctx, y, state)

    def after_backward(model, state):
        with torch.no_grad():
            for w, v in state.pop("awp_perturbation", []):
                if v is not None:
                    w.sub_(v)

    return Recipe("awp", inner=inner, loss=loss, after_backward=after_backward,
                  params={"gamma": gamma, "steps": steps},
                  cite="Wu et al. 2020, Adversarial Weight Perturbation Helps Robust Generalization")
