"""Training against several perturbation types (Tramèr & Boneh 2019, "Adversarial Training
and Robustness for Multiple Perturbations").

For each listed threat model the inner PGD example is built; the MAX strategy
trains on, per example, the one with the highest loss (eq. 3: the worst case
over the union), the AVG strategy on the mean of their losses (eq. 4). The
track's own threat model is ignored: the union is given by ``threats`` (ids,
e.g. ``["linf-0.3", "l2-2"]``). Evaluate with :func:`bench.evaluate.evaluate_union`.
"""

from __future__ import annotations

import torch

from bench.attacks.base import resolve_loss
from bench.attacks.pgd import PGD
from bench.errors import UserError
from bench.registry import RECIPES
from bench.threat import ThreatModel
from bench.training.common import adv_input
from bench.training.recipe import Recipe


@RECIPES.register("multi")
def multi(threats: tuple[str, ...] | list[str] = ("linf-0.3", "l2-2"), strategy: str = "max",
          steps: int = 10) -> Recipe:
    if strategy not in ("max", "avg"):
        raise UserError(f"multi: strategy must be 'max' or 'avg', got {strategy!r}")
    if not threats:
        raise UserError("multi: needs at least one threat id")
    attack = PGD(steps=steps, random_start=True)

    def inner(model, z, ctx, y, threat, state):
        tms = [ThreatModel.from_id(t, bounds=threat.bounds) for t in threats]
        attack.seed = state.get("step", 0)
        advs = [attack.run(model, z, ctx, y, t) for t in tms]
        loss_fn = resolve_loss(None, model)
        with torch.no_grad():
            losses = torch.stack([loss_fn(model(a, ctx), y) for a in advs])  # (T, B)
        pick = losses.argmax(0)
        state["multi_advs"] = advs
        state["multi_pick"] = pick
        stacked = torch.stack(advs)  # (T, B, ...)
        return stacked[pick, torch.arange(z.shape[0], device=z.device)]

    def loss(model, z, z_adv, ctx, y, state):
        loss_fn = resolve_loss(None, model)
        advs = state.pop("multi_advs")
        if strategy == "max":
            out = model(adv_input(z, z_adv), ctx)
            state["outputs"] = out.detach()
            return loss_fn(out, y).mean()
        outs = [model(adv_input(z, a), ctx) for a in advs]
        state["outputs"] = outs[0].detach()
        return torch.stack([loss_fn(o, y).mean() for o in outs]).mean()

    return Recipe("multi", inner=inner, loss=loss,
                  params={"threats": list(threats), "strategy": strategy, "steps": steps},
                  cite="Tramer & Boneh 2019, Adversarial Training and Robustness for Multiple Perturbations")
