"""Deterministic randomness that does not depend on batch composition.

Random starts are drawn per example from a generator seeded by
``(seed, stream, example index)``, so attacking a batch gives exactly the
same result as attacking its examples one by one, and a sharded evaluation
equals the single-process one. Seeds are explicit: never the clock.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across processes)."""
    h = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def per_example_uniform(shape: torch.Size, index: torch.Tensor, *seed_parts: int | str,
                        normal: bool = False, dtype=torch.float32) -> torch.Tensor:
    """``(B, *shape[1:])`` tensor whose row i depends only on ``(seed_parts, index[i])``."""
    rows = []
    gen = torch.Generator()
    for i in index.tolist():
        gen.manual_seed(derive_seed(*seed_parts, int(i)))
        f = torch.randn if normal else torch.rand
        rows.append(f(tuple(shape[1:]), generator=gen, dtype=dtype))
    if not rows:
        return torch.empty(shape, dtype=dtype)
    return torch.stack(rows)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
