"""The attack contract and the checking wrapper every attack ends in.

An attack implements :meth:`Attack.search`; :meth:`Attack.run` wraps it so
that no attack can hand back an invalid example (cf. foolbox's final
projection): the model is put in eval mode, the search result is projected
onto the threat model, checked with ``threat.contains`` and for NaN, and
returned detached. Inputs are never mutated. Gradients are taken with
``torch.autograd.grad`` so parameter ``.grad`` buffers are left untouched.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from bench.errors import UserError
from bench.registry import LOSSES
from bench.task import Context, TaskModel
from bench.threat import ThreatModel


class AttackError(RuntimeError):
    """An attack produced an invalid example (a bug, never silently ignored)."""


def resolve_loss(loss: str | Callable | None, model: TaskModel) -> Callable:
    if loss is None:
        loss = getattr(model, "objective", "ce")
    return LOSSES.get(loss) if isinstance(loss, str) else loss


def loss_and_grad(model: TaskModel, z: torch.Tensor, ctx: Context, y: Any,
                  loss_fn: Callable, sign: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example loss (times ``sign``), outputs and d(sum of loss)/dz.

    A model seen through EOT (``model.eot_samples = N > 1``, :class:`bench.defenses.EOTView`) gives the
    loss and gradient averaged over N forward passes (Athalye, Carlini & Wagner 2018, §4.3; AutoAttack's
    ``eot_iter``) and the outputs of the last one."""
    samples = int(getattr(model, "eot_samples", 1) or 1)
    z = z.detach().requires_grad_(True)
    loss_sum = grad_sum = None
    with torch.enable_grad():
        for _ in range(samples):
            out = model(z, ctx)
            loss = sign * loss_fn(out, y)
            (grad,) = torch.autograd.grad(loss.sum(), z)
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            grad_sum = grad.detach() if grad_sum is None else grad_sum + grad.detach()
    return loss_sum / samples, out.detach(), grad_sum / samples


def model_errors(model: TaskModel, outputs: torch.Tensor, y: Any) -> torch.Tensor:
    """Per-example error of the model (0 = correct). Classification: 1 - [argmax == y]."""
    fn = getattr(model, "errors", None)
    if callable(fn):
        return fn(outputs, y)
    return (outputs.argmax(1) != y).float()


class Attack:
    """Base class: ``run(model, z, ctx, y, threat) -> z_adv``.

    Subclasses set ``name`` and implement ``search``. Constructor arguments
    are the attack's hyper-parameters; ``seed`` seeds random starts per example.
    """

    name = "attack"
    #: the attack uses gradients (white-box) or only scores (black-box)
    whitebox = True
    #: the attack's output depends only on the example (batch == one by one)
    per_example = True

    #: forward passes averaged per gradient (EOT); set with :meth:`with_eot` or an ``eot`` suite parameter
    eot: int = 1

    def __init__(self, loss: str | Callable | None = None, seed: int = 0) -> None:
        self.loss = loss
        self.seed = seed

    def with_eot(self, samples: int) -> "Attack":
        """This attack with every loss/gradient averaged over ``samples`` stochastic forwards (EOT)."""
        if int(samples) < 1:
            raise UserError(f"eot must be >= 1, got {samples}")
        if int(samples) > 1 and not self.whitebox:
            raise UserError(f"{self.name} uses no gradients: EOT does not apply")
        self.eot = int(samples)
        return self

    def search(self, model: TaskModel, z: torch.Tensor, ctx: Context, y: Any,
               threat: ThreatModel) -> torch.Tensor:
        raise NotImplementedError

    def run(self, model: TaskModel, z: torch.Tensor, ctx: Context | None, y: Any,
            threat: ThreatModel) -> torch.Tensor:
        ctx = ctx if ctx is not None else Context()
        if not isinstance(threat, ThreatModel):
            raise UserError(f"threat must be a ThreatModel, got {type(threat).__name__}")
        was_training = model.training
        model.eval()
        if self.eot > 1:
            from bench.defenses import EOTView

            model = EOTView(model, self.eot)
        try:
            z0 = z.detach()
            if z0.shape[0] == 0:
                return z0.clone()
            # a zero budget is searched and projected like any other, so a projection or radius that
            # moves points at eps = 0 shows up (the eps0-differs-from-clean check relies on it)
            z_adv = self.search(model, z0, ctx, y, threat).detach()
            z_adv = threat.project(z_adv, z0, ctx)
            if torch.isnan(z_adv).any():
                raise AttackError(f"{self.name} produced NaN")
            inside = threat.contains(z_adv, z0, ctx)
            if not bool(inside.all()):
                raise AttackError(f"{self.name} left the threat model {threat.id} on "
                                  f"{int((~inside).sum())} examples")
            return z_adv.detach()
        finally:
            model.train(was_training)

    __call__ = run

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def keep_worst(best_z: torch.Tensor, best_err: torch.Tensor, best_loss: torch.Tensor,
               z: torch.Tensor, err: torch.Tensor, loss: torch.Tensor) -> None:
    """In place: per example, keep the candidate with the larger error, ties broken by loss."""
    better = (err > best_err) | ((err == best_err) & (loss > best_loss))
    best_z[better] = z[better]
    best_err[better] = err[better]
    best_loss[better] = loss[better]
