"""Per-example attack losses (higher = worse for the model), registered by name.

Each loss maps ``(outputs, y)`` to a ``(B,)`` tensor. Attacks maximize it;
a targeted attack passes the target labels and maximizes the negated loss.
Domains add their own (e.g. CTC for speech recognition).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.registry import LOSSES


@LOSSES.register("ce")
def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the true class."""
    return F.cross_entropy(logits.float(), y, reduction="none")


@LOSSES.register("margin")
def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Best wrong logit minus the true logit (Carlini & Wagner 2017, the f6 objective)."""
    logits = logits.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return other - true


@LOSSES.register("dlr")
def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020, eq. 6): shift- and scale-invariant margin.

    -(z_y - max_{i≠y} z_i) / (z_π1 - z_π3). Needs at least 3 classes.
    """
    logits = logits.float()
    if logits.shape[1] < 3:
        raise ValueError("DLR loss needs at least 3 classes")
    srt, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -(true - other) / (srt[:, 0] - srt[:, 2] + 1e-12)
