"""Adversarial training: one loop, recipes registered in ``bench.registry.RECIPES``."""

from bench.training import awp, erm, fast, free, freelb, gaussian, mart, mixed, multi, pgd_at, trades  # noqa: F401  (registration)
from bench.training.loop import TrainConfig, TrainingDiverged, train
from bench.training.recipe import Recipe

__all__ = ["Recipe", "TrainConfig", "TrainingDiverged", "train"]
