"""Attacks on the shared contract; importing this package registers them."""

from bench.attacks.base import Attack, AttackError, loss_and_grad, model_errors
from bench.attacks import apgd, fab, fgsm, pgd, square, targeted  # noqa: F401  (registration)

__all__ = ["Attack", "AttackError", "loss_and_grad", "model_errors"]
