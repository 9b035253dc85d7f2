"""MART (Wang et al. 2020, "Improving Adversarial Robustness Requires Revisiting Misclassified Examples").

Loss (eq. 10): BCE(p(x'), y) + λ · KL(p(x) || p(x')) · (1 − p_y(x)), with the boosted CE
BCE(p, y) = −log p_y − log(1 − max_{k≠y} p_k); x' from PGD on CE; λ = 6 by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.attacks.pgd import PGD
from bench.registry import RECIPES
from bench.training.common import adv_input, kl_per_example, require_classifier
from bench.training.recipe import Recipe


def boosted_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = F.softmax(logits.float(), dim=1)
    py = p.gather(1, y[:, None]).squeeze(1)
    other = p.masked_fill(F.one_hot(y, p.shape[1]).bool(), 0.0).amax(1)
    return -torch.log(py.clamp_min(1e-12)) - torch.log((1 - other).clamp_min(1e-12))


@RECIPES.register("mart")
def mart(lam: float = 6.0, steps: int = 10, rel_step: float | None = None) -> Recipe:
    attack = PGD(steps=steps, rel_step=rel_step, random_start=True, loss="ce")

    def inner(model, z, ctx, y, threat, state):
        require_classifier(model, "mart", "its weight 1 - p_y(x) and boosted CE need one class probability per "
                                          "example; for CTC models use trades or mixed-at")
        attack.seed = state.get("step", 0)
        return attack.run(model, z, ctx, y, threat)

    def loss(model, z, z_adv, ctx, y, state):
        out_clean = model(z, ctx)
        out_adv = model(adv_input(z, z_adv), ctx)
        state["outputs"] = out_adv.detach()
        p_true = F.softmax(out_clean.float(), dim=1).gather(1, y[:, None]).squeeze(1)
        return boosted_ce(out_adv, y).mean() + lam * (kl_per_example(out_clean, out_adv) * (1 - p_true)).mean()

    return Recipe("mart", inner=inner, loss=loss, params={"lam": lam, "steps": steps},
                  cite="Wang et al. 2020, Improving Adversarial Robustness Requires Revisiting Misclassified Examples")
