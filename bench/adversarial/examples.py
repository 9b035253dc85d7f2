"""The adversarial examples an evaluation kept: one per example its worst case counts as broken.

:func:`bench.evaluate.evaluate` with ``keep_adv=True`` keeps, for every example
whose errors an attack raised, the input of the *first* attack that raised
them to their final value (under a cascade: the attack that broke it). A
continuous attack's example is the tensor ``z`` it returned, cut to the
example's own shape (text: its own length, so padding is never stored); a
discrete attack's example is the JSON record its ``describe`` hook gives
(e.g. original and adversarial text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class AdvExample:
    """One kept adversarial example.

    Attributes:
        position: the example's position in the evaluated set (0..n-1).
        index: its global id in the dataset (``evaluate(index=...)``).
        attack: the suite name of the attack that found it.
        errors: the model's errors on it (1 for a misclassified example, word edits for ASR).
        z: continuous attacks: the perturbed tensor, shape = the example's own ``encode`` shape.
        record: discrete attacks: the attack's JSON description (``describe``).
        distance: continuous attacks: perturbation size relative to the threat's radius (<= 1).
        threat: the threat id it was found under when that is not the report's own (a smaller
            eps of the sweep: the smaller ball lies inside the larger one).
    """

    position: int
    index: int
    attack: str
    errors: float
    z: torch.Tensor | None = None
    record: dict[str, Any] | None = None
    distance: float | None = None
    threat: str | None = None

    @property
    def discrete(self) -> bool:
        return self.z is None


def own_shape_corner(z_row: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``z_row`` cut to ``shape`` from its leading corner (text: the example's own token length)."""
    return z_row[tuple(slice(0, s) for s in shape)]
