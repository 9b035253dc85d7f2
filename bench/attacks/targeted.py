"""A targeted attack: make the model output a chosen target (a class, or a whole transcript).

``apgd-targeted`` runs APGD (Croce & Hein 2020, Algorithm 1, the same step-size schedule and
momentum as :mod:`bench.attacks.apgd`) on the *negated* objective of the target: ``y`` holds the
targets, and the attack minimizes the model's own loss of them (cross-entropy of a target class,
or the CTC loss of a target transcript -- the objective of Carlini & Wagner 2018, "Audio
Adversarial Examples: Targeted Attacks on Speech-to-Text", run under the track's fixed budget
instead of their shrinking one). It keeps, per example, the point whose output is closest to
the target (fewest errors against it: 0/1 for a class, word edits for a transcript), ties
broken by the lower loss; restarts only attack the examples not yet at the target. Success is an
exact hit: zero errors against the target.

This is not AutoAttack's ``apgd-t``, which targets other classes only to find *any*
misclassification; here the target itself is the goal (:mod:`bench.targeted` scores it).
"""

from __future__ import annotations

import torch

from bench.attacks.apgd import APGD
from bench.attacks.base import model_errors, resolve_loss
from bench.registry import ATTACKS


@ATTACKS.register("apgd-targeted")
class TargetedAPGD(APGD):
    """APGD towards the targets in ``y``.

    Args:
        steps: iterations per restart.
        restarts: further runs on the examples not yet at their target.
        loss: the loss of the target (default: the model's objective, CE or CTC).
    """

    name = "apgd-targeted"
    #: ``y`` holds the targets, not the true labels (callers that probe attacks generically need to know)
    targets_in_y = True

    def _errors(self, model, out, y) -> torch.Tensor:
        # APGD keeps the point with the *largest* error: the negated errors against the target
        return -model_errors(model, out, y).float()

    def _todo(self, st: dict) -> torch.Tensor:
        return st["err"] < 0  # not yet exactly at the target

    def search(self, model, z, ctx, y, threat):
        out, st = self._start(model, z, ctx, y)
        loss = resolve_loss(self.loss, model)
        towards = lambda o, t: -loss(o, t)  # noqa: E731  (APGD ascends)
        self._runs(model, z, ctx, y, threat, lambda idx: towards, "target", st)
        return st["adv"]
