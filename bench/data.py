"""In-memory datasets as the core sees them.

``inputs`` and ``y`` are tensors, dicts of tensors, or objects with
``take(idx)`` (leading dim = examples). Domains return :class:`ArrayData`
from their dataset loaders; the core slices, batches and shuffles it
without knowing what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from bench.errors import UserError


def take(obj: Any, idx: torch.Tensor | slice) -> Any:
    """Index the leading (example) dim of a tensor, dict of tensors, list or ``take``-able."""
    if isinstance(obj, torch.Tensor):
        return obj[idx]
    if isinstance(obj, dict):
        return {k: take(v, idx) for k, v in obj.items()}
    if hasattr(obj, "take"):
        return obj.take(idx)
    if isinstance(obj, (list, tuple)):
        if isinstance(idx, slice):
            return type(obj)(obj[idx])
        return type(obj)(obj[i] for i in idx.tolist())
    raise TypeError(f"cannot index {type(obj).__name__}")


def to_device(obj: Any, device: torch.device | str, *, pin: bool = True) -> Any:
    """Move a batch (tensor, dict of tensors, or an object with ``.to``) to ``device``.

    CPU tensors bound for CUDA go through page-locked (pinned) memory with a
    non-blocking copy, as a ``DataLoader(pin_memory=True)`` does, so the copy
    overlaps with queued GPU work; ``pin=False`` turns that off.
    """
    device = torch.device(device)
    if isinstance(obj, torch.Tensor):
        if pin and device.type == "cuda" and obj.device.type == "cpu":
            return obj.pin_memory().to(device, non_blocking=True)
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device, pin=pin) for k, v in obj.items()}
    if hasattr(obj, "to") and not isinstance(obj, (list, tuple)):
        return obj.to(device)
    return obj


def length(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.shape[0]
    if isinstance(obj, dict):
        return length(next(iter(obj.values())))
    return len(obj)


@dataclass
class ArrayData:
    """A dataset held in memory: ``inputs`` (raw), labels ``y`` and metadata.

    ``meta`` carries what a model factory needs (``num_classes``,
    ``in_channels``, ...) and provenance (``source``, ``sha256``).
    """

    inputs: Any
    y: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if length(self.inputs) != length(self.y):
            raise UserError(f"inputs ({length(self.inputs)}) and labels ({length(self.y)}) differ in length")

    def __len__(self) -> int:
        return length(self.y)

    def subset(self, idx: torch.Tensor) -> "ArrayData":
        return ArrayData(take(self.inputs, idx), take(self.y, idx), dict(self.meta))

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                indices: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, Any, Any]]:
        """Yield ``(index, inputs, y)`` batches; ``index`` holds the examples' positions."""
        n = len(self)
        order = indices if indices is not None else (
            torch.randperm(n, generator=generator) if shuffle else torch.arange(n))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            yield idx, take(self.inputs, idx), take(self.y, idx)


def stratified_split(labels: torch.Tensor, test_per_class: int | float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stratified split: (train_idx, test_idx), each sorted."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = int(round(test_per_class * len(idx))) if isinstance(test_per_class, float) else test_per_class
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def check_inputs(model: Any, data: ArrayData, device: torch.device | str, what: str) -> None:
    """Fail early, in one line (:class:`~bench.errors.UserError`), on data a model cannot take.

    An empty dataset, class labels that are not a 1-D integer tensor (for
    classifiers), or inputs whose shape the model rejects (probed with one
    uncompiled forward pass on two examples, in eval mode so no dropout draws
    random numbers) would otherwise surface as a torch traceback mid-run or,
    for an empty set, as a silently empty result.
    """
    n = len(data)
    if n == 0:
        raise UserError(f"{what}: the dataset is empty")
    y = data.y
    if getattr(model, "objective", "ce") == "ce" and isinstance(y, torch.Tensor) \
            and (y.dim() != 1 or y.is_floating_point() or y.is_complex()):
        raise UserError(f"{what}: class labels must be a 1-D integer tensor, got {str(y.dtype).replace('torch.', '')} "
                        f"of shape {tuple(y.shape)}")
    head = take(data.inputs, torch.arange(min(2, n)))
    shape = tuple(head.shape[1:]) if isinstance(head, torch.Tensor) else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z, ctx = model.encode(to_device(head, device))
            model.forward(z, ctx.to(device))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        got = f"inputs of shape {shape} per example" if shape is not None else "these inputs"
        raise UserError(f"{what}: the model cannot run on {got}: {str(exc).splitlines()[0]}") from None
    finally:
        model.train(was_training)
