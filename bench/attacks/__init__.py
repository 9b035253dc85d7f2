"""Attacks on the shared contract; importing this package registers them."""

from bench.attacks.base import Attack, AttackError, loss_and_grad, model_errors
from bench.attacks import fgsm, pgd  # noqa: F401  (registration)

__all__ = ["Attack", "AttackError", "loss_and_grad", "model_errors"]
