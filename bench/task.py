"""The contract between the adversarial core and a domain: ``TaskModel``.

A task model has two steps (see DESIGN.md, "attack in a continuous space"):

* ``encode(inputs) -> (z, ctx)``: the continuous tensor the adversary
  perturbs (pixels in [0, 1], a waveform in [-1, 1], token embeddings) and a
  :class:`Context` with whatever else the forward pass needs;
* ``forward(z, ctx) -> outputs``: logits, or per-frame log-probs for CTC.

Normalization and feature extraction live inside the model so that inputs are
raw and gradients reach them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch
from torch import nn


@dataclass(frozen=True)
class Context:
    """What the forward pass needs besides ``z``.

    Attributes:
        mask: 1 where ``z`` may be perturbed (broadcastable to ``z``, leading
            dim = batch), e.g. never padding or [CLS]/[SEP] in text.
        eps_scale: reference scale for relative threat models (a model's mean
            token-embedding norm).
        index: global index of each example in its dataset; seeds random
            starts per example so a batch gives the same result as its
            examples one by one.
        extras: per-example tensors (leading dim = batch) the forward pass
            needs, e.g. an attention mask.
    """

    mask: torch.Tensor | None = None
    eps_scale: float | None = None
    index: torch.Tensor | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    def select(self, idx: torch.Tensor) -> "Context":
        """The context of a subset of the batch."""
        pick = lambda t: t[idx] if isinstance(t, torch.Tensor) else t  # noqa: E731
        return replace(
            self,
            mask=pick(self.mask),
            index=pick(self.index),
            extras={k: pick(v) for k, v in self.extras.items()},
        )

    def to(self, device: torch.device | str) -> "Context":
        mv = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return replace(self, mask=mv(self.mask), index=mv(self.index),
                       extras={k: mv(v) for k, v in self.extras.items()})


class TaskModel(nn.Module):
    """Base class: wraps a network so the adversary sees ``encode`` + ``forward``.

    The default is the classifier case: ``z`` is the raw input itself.
    Subclasses (text, ASR) override :meth:`encode` and :meth:`forward`.
    """

    #: name of the objective used by attacks/training by default ("ce" or "ctc")
    objective: str = "ce"

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net

    def encode(self, inputs: Any) -> tuple[torch.Tensor, Context]:
        return inputs, Context()

    def forward(self, z: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:  # noqa: D401
        return self.net(z)

    def predict(self, inputs: Any) -> torch.Tensor:
        z, ctx = self.encode(inputs)
        return self(z, ctx)


def as_task_model(model: nn.Module) -> TaskModel:
    """Any ``nn.Module`` classifier on raw inputs becomes a :class:`TaskModel`."""
    if isinstance(model, TaskModel):
        return model
    return TaskModel(model).train(model.training)  # the wrapper takes the module's mode


def compile_model(model: nn.Module, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` the model in place (``nn.Module.compile``): the state dict keeps its keys.

    Attacks and training then call the compiled forward; ``backend`` is any of
    ``torch._dynamo.list_backends()`` ("inductor" needs a C++ compiler on CPU,
    "aot_eager" needs none).
    """
    import torch._dynamo

    known = set(torch._dynamo.list_backends(exclude_tags=())) | {"eager", "aot_eager"}
    if backend not in known:
        from bench.errors import UserError

        raise UserError(f"unknown torch.compile backend {backend!r}: expected one of {', '.join(sorted(known))}")
    model.compile(backend=backend)
    return model
