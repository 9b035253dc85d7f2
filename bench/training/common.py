"""Pieces shared by recipes: the adversarial input and loss, the KL term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.attacks.base import resolve_loss
from bench.errors import UserError


def adv_input(z: torch.Tensor, z_adv: torch.Tensor | None) -> torch.Tensor:
    """z + (z_adv - z.detach()): the adversarial point, with gradients to z (embedding weights)."""
    return z if z_adv is None else z + (z_adv - z.detach())


def adversarial_loss(model, z, z_adv, ctx, y, state):
    """The model's objective at the adversarial point (clean point for ERM)."""
    out = model(adv_input(z, z_adv), ctx)
    state["outputs"] = out.detach()
    return resolve_loss(None, model)(out, y).mean()


def require_classifier(model, recipe: str, why: str = "") -> None:
    if getattr(model, "objective", "ce") != "ce":
        raise UserError(f"recipe {recipe!r} needs a classifier (objective 'ce'), "
                        f"got objective {getattr(model, 'objective', None)!r}" + (f": {why}" if why else ""))


def kl_per_example(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) || softmax(q)) per example, summed over classes (the last dim).

    Sequence outputs ``(B, T, C)`` (per-frame CTC log-probs) give the KL of each frame's
    distribution, averaged over frames: TRADES's consistency term applied frame by frame."""
    lp = F.log_softmax(logits_p.float(), dim=-1)
    lq = F.log_softmax(logits_q.float(), dim=-1)
    kl = (lp.exp() * (lp - lq)).sum(dim=-1)
    return kl.reshape(kl.shape[0], -1).mean(dim=1)
