"""ERM: clean training, the baseline every defense is compared against."""

from __future__ import annotations

from bench.registry import RECIPES
from bench.training.common import adversarial_loss
from bench.training.recipe import Recipe


@RECIPES.register("erm")
def erm() -> Recipe:
    """Empirical risk minimization: clean training, the baseline."""
    return Recipe("erm", inner=lambda *a: None, loss=adversarial_loss, cite="")
