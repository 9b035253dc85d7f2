"""Pieces shared by recipes: the task loss and the adversarial input."""

from __future__ import annotations

import torch

from bench.attacks.base import resolve_loss


def task_loss(model, z_in, ctx, y, state=None) -> torch.Tensor:
    """Mean of the model's own objective (CE for classifiers, CTC for ASR)."""
    return resolve_loss(None, model)(model(z_in, ctx), y).mean()


def adv_input(z: torch.Tensor, z_adv: torch.Tensor | None) -> torch.Tensor:
    """z + (z_adv - z.detach()): the adversarial point, with gradients to z (embedding weights)."""
    return z if z_adv is None else z + (z_adv - z.detach())


def adversarial_loss(model, z, z_adv, ctx, y, state):
    """The model's objective at the adversarial point (clean point for ERM)."""
    out = model(adv_input(z, z_adv), ctx)
    state["outputs"] = out.detach()
    return resolve_loss(None, model)(out, y).mean()
