"""The one adversarial-training loop, for every domain and recipe.

Solves min_θ E[max_{δ∈S} L(f_θ(x+δ), y)] (Madry et al. 2018): per minibatch
the recipe builds the inner example (model in eval mode, as in the TRADES
reference code), then the loop steps on the recipe's loss (model in train
mode). The loop owns seeds, device placement, bf16 autocast, channels_last,
gradient clipping, the learning-rate schedule, an eps ramp, minibatch replay
and the progress bar. Non-finite losses stop training with a clear error.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import torch

from bench.attacks.base import model_errors
from bench.data import ArrayData, to_device
from bench.errors import UserError
from bench.rng import seed_everything
from bench.task import TaskModel
from bench.threat import ThreatModel, scaled_threat
from bench.training.recipe import Recipe


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became NaN/inf."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run (validated here, once)."""

    epochs: float = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    eps_ramp_epochs: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    bf16: bool = False
    channels_last: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise UserError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise UserError(f"unknown optimizer {self.optimizer!r}: expected adam, adamw or sgd")
        if self.schedule not in ("constant", "cosine", "onecycle"):
            raise UserError(f"unknown schedule {self.schedule!r}: expected constant, cosine or onecycle")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    t = step / max(1, total)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "onecycle":  # linear up for 40%, down to 0 (Smith & Topin 2019, as in Wong et al. 2020)
        return t / 0.4 if t < 0.4 else max(0.0, (1 - t) / 0.6)
    return 1.0


def train(model: TaskModel, data: ArrayData, recipe: Recipe, threat: ThreatModel, cfg: TrainConfig, *,
          progress: bool = True, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train ``model`` in place on ``data`` with ``recipe`` against ``threat``. Returns per-epoch stats."""
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, cfg)
    replay = max(1, recipe.replay)
    epochs = max(1, math.ceil(cfg.epochs / replay)) if replay > 1 else cfg.epochs
    n = len(data)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    full_epochs = math.ceil(epochs)
    total = int(round(epochs * steps_per_epoch))
    ramp_steps = cfg.eps_ramp_epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(cfg.seed)
    state: dict[str, Any] = {"step": 0}
    history: list[dict] = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total * replay, desc=f"train {recipe.name}", unit="step", leave=False)
    step = 0
    for epoch in range(full_epochs):
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0.0, 0
        for pos, xb, yb in data.batches(cfg.batch_size, shuffle=True, generator=gen):
            if step >= total:
                break
            xb, yb = to_device(xb, device), to_device(yb, device)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * _lr_factor(cfg, step, total)
            threat_t = scaled_threat(threat, (step + 1) / ramp_steps) if ramp_steps > 0 else threat
            for r in range(replay):
                state.update(step=step, replay=r, epoch=epoch)
                with autocast:
                    model.train()
                    z, ctx = model.encode(xb)
                    ctx = replace(ctx, index=pos.to(device))
                    if cfg.channels_last and z.dim() == 4:
                        z = z.contiguous(memory_format=torch.channels_last)
                    z_adv = recipe.inner(model, z.detach(), ctx, yb, threat_t, state)
                    model.train()
                    if z_adv is not None and recipe.on_input_grad is not None:
                        z_adv = z_adv.detach().requires_grad_(True)
                    loss = recipe.loss(model, z, z_adv, ctx, yb, state)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"non-finite loss ({float(loss)}) at epoch {epoch + 1}, step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.on_input_grad is not None and z_adv is not None:
                    recipe.on_input_grad(z_adv.grad.detach(), state)
                if recipe.after_backward is not None:
                    recipe.after_backward(model, state)
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                loss_sum += float(loss.detach()) * len(pos)
                seen += len(pos)
                out = state.pop("outputs", None)
                if out is not None and getattr(model, "binary_errors", True):
                    correct += float((model_errors(model, out, yb) == 0).float().sum())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}",
                                    acc=f"{correct / seen:.3f}" if correct else "-")
            step += 1
        stats = {"epoch": epoch + 1, "loss": loss_sum / max(1, seen), "train_accuracy": correct / max(1, seen),
                 "seconds": time.perf_counter() - t0, "eps": threat_t.eps if seen else threat.eps}
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    if bar is not None:
        bar.close()
    model.eval()
    return history
