"""FreeLB (Zhu et al. 2020, "FreeLB: Enhanced Adversarial Training for Natural
Language Understanding", Algorithm 1).

K ascent steps on a perturbation δ of ``z`` (token embeddings in text, any
continuous input elsewhere), starting from a random point of the ball; the
parameter gradients of the K adversarial losses are *accumulated* (averaged)
and one optimizer step is taken, so every ascent step also contributes to
the descent, unlike PGD-AT which steps only on the last iterate:

    g_θ = (1/K) Σ_{t=1..K} ∇_θ L(f_θ(z + δ_{t-1}), y),
    δ_t = Π_ε(δ_{t-1} + α · ∇_δ L / ‖∇_δ L‖)   (per the threat's steepest direction).

The loop takes one backward of the returned loss; here the accumulated
gradient is computed with ``torch.autograd.grad`` inside the loss and handed
back through a surrogate whose value is the mean adversarial loss and whose
gradient is exactly ``g_θ`` (including the embedding weights, through ``z``).
"""

from __future__ import annotations

import torch

from bench.attacks.base import resolve_loss
from bench.registry import RECIPES
from bench.training.recipe import Recipe


@RECIPES.register("freelb")
def freelb(steps: int = 3, rel_step: float = 0.5, random_start: bool = True) -> Recipe:
    """FreeLB with ``steps`` = K ascent steps of size ``rel_step`` × the radius."""
    if steps < 1:
        raise ValueError("freelb needs steps >= 1")

    def inner(model, z, ctx, y, threat, state):
        state["threat"] = threat  # the loss does the ascent (it needs the training-mode graph)
        return None

    def loss(model, z, z_adv, ctx, y, state):
        threat = state.pop("threat")
        loss_fn = resolve_loss(None, model)
        params = [p for p in model.parameters() if p.requires_grad]
        acc = [torch.zeros_like(p) for p in params]
        z0 = z.detach()
        x = threat.random_init(z0, ctx, seed=f"freelb/{state.get('step', 0)}") if random_start else z0.clone()
        alpha = threat._expand(threat.radius(z0, ctx), z0) * rel_step
        total = torch.zeros((), device=z.device)
        out = None
        for t in range(steps):
            delta = (x - z0).requires_grad_(True)
            out = model(z + delta, ctx)
            lt = loss_fn(out, y).mean() / steps
            grads = torch.autograd.grad(lt, params + [delta], retain_graph=True, allow_unused=True)
            for a, g in zip(acc, grads[:-1]):
                if g is not None:
                    a.add_(g)
            total = total + lt.detach()
            if t + 1 < steps:
                x = threat.project(x + alpha * threat.steepest(grads[-1].detach(), ctx), z0, ctx).detach()
        state["outputs"] = out.detach()
        # value = mean adversarial loss; gradient w.r.t. the parameters = the accumulated g_θ
        surrogate = sum((p * a).sum() for p, a in zip(params, acc))
        return total + surrogate - surrogate.detach()

    return Recipe("freelb", inner=inner, loss=loss, params={"steps": steps, "rel_step": rel_step,
                                                            "random_start": random_start},
                  cite="Zhu et al. 2020, FreeLB: Enhanced Adversarial Training for Natural Language Understanding")
