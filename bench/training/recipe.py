"""What an adversarial-training recipe is: a couple of small functions.

The one loop in :mod:`bench.training.loop` solves
min_θ E[max_{δ∈S} L(f_θ(x+δ), y)]; a recipe supplies how to make the inner
example (``inner``) and what loss to step on (``loss``). Recipes are
registered in ``bench.registry.RECIPES`` as factories ``(**params) -> Recipe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bench.task import Context, TaskModel
from bench.threat import ThreatModel

#: inner(model, z, ctx, y, threat, state) -> z_adv (detached) or None (clean training)
InnerFn = Callable[[TaskModel, torch.Tensor, Context, Any, ThreatModel, dict], "torch.Tensor | None"]
#: loss(model, z, z_adv, ctx, y, state) -> scalar; z carries gradients to the model
LossFn = Callable[[TaskModel, torch.Tensor, "torch.Tensor | None", Context, Any, dict], torch.Tensor]


@dataclass(frozen=True)
class Recipe:
    """A training recipe.

    Attributes:
        name: registry name, also the ``defense`` id in result files.
        inner: builds the adversarial example from detached ``z`` (runs with
            the model in eval mode), or returns ``None`` for clean training.
        loss: the training loss; receives ``z`` with gradients attached (for
            text, ``z`` is the embedding output) and ``z_adv``; the loop feeds
            ``z + (z_adv - z.detach())`` so embedding weights get gradients too.
        replay: times each minibatch is replayed (Free-AT); the loop makes
            epochs/replay passes (fractional passes stop mid-epoch) and counts the
            eps ramp in the same replay-adjusted epochs, so the budget matches ERM's.
        on_input_grad: called with d(loss)/d(z_adv) after each backward
            (Free-AT reuses this gradient to update its perturbation).
        after_backward: called with ``(model, state)`` after the backward pass and
            before the optimizer step (AWP restores its weight perturbation here).
        params: the hyper-parameters, recorded in checkpoints and results.
        cite: the paper.
    """

    name: str
    inner: InnerFn
    loss: LossFn
    replay: int = 1
    on_input_grad: Callable[[torch.Tensor, dict], None] | None = None
    after_backward: Callable[[TaskModel, dict], None] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    cite: str = ""
