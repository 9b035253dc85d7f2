"""The one adversarial-training loop, for every domain and recipe.

Solves min_θ E[max_{δ∈S} L(f_θ(x+δ), y)] (Madry et al. 2018): per minibatch
the recipe builds the inner example (model in eval mode, as in the TRADES
reference code), then the loop steps on the recipe's loss (model in train
mode). The loop owns seeds, device placement (pinned-memory copies on CUDA),
DistributedDataParallel under torchrun, bf16 autocast, channels_last, torch.compile,
gradient clipping, the learning-rate schedule, an eps ramp, minibatch replay
and the progress bar. Non-finite losses stop training with a clear error.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import torch

from bench.attacks.base import model_errors
from bench.data import ArrayData, check_inputs, take, to_device
from bench.errors import UserError
from bench.rng import derive_seed, seed_everything
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
    compile: str | None = None
    device: str | None = None
    checkpoint_every: int = 0
    state_path: str | None = None
    resume: bool = False

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
        if self.checkpoint_every < 0:
            raise UserError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if (self.checkpoint_every or self.resume) and not self.state_path:
            raise UserError("checkpoint_every/resume need a state_path")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_device(name: str | None = None) -> torch.device:
    """The device to use: the name given, else ``cuda:LOCAL_RANK`` / ``cuda`` when present, else CPU."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); ``(rank, world)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


class _RecipeLoss(torch.nn.Module):
    """The recipe's training loss as one module call, so DistributedDataParallel can wrap it.

    DDP arms its gradient all-reduce in ``forward`` and expects exactly one
    backward per forward. Wrapping the whole loss (TRADES and MART call the
    model twice in it, AWP perturbs the weights inside it) keeps that contract
    for every recipe; the inner attack calls the plain model before, so its
    input-gradient passes never trigger a reduction.
    """

    def __init__(self, model: TaskModel, recipe: Recipe):
        super().__init__()
        self.model = model
        self._recipe = recipe

    def forward(self, z, z_adv, ctx, y, state):
        return self._recipe.loss(self.model, z, z_adv, ctx, y, state)


def _wrap_ddp(model: TaskModel, recipe: Recipe, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel over the recipe loss (NCCL on CUDA, gloo on CPU); broadcasts rank 0's weights."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        _RecipeLoss(model, recipe), device_ids=[device] if device.type == "cuda" else None,
        # a recipe may leave parameters out of a step (e.g. a pooler a head never reads)
        find_unused_parameters=True)


def shard_positions(order: torch.Tensor, start: int, batch_size: int, rank: int, world: int) -> torch.Tensor:
    """This rank's share of the global minibatch ``order[start:start + batch_size]``.

    Rank r takes positions r, r + world, ... — the partition DistributedSampler
    makes (``indices[rank::num_replicas]``) applied per global batch, so the
    union over ranks is exactly the single-process minibatch and averaged
    gradients match the single-process run.
    """
    return order[start:start + batch_size][rank::world]


def save_train_state(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write a resumable training state (tensors and plain containers only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _gather_to_rank0(part: dict[str, Any], rank: int, world: int) -> list[dict[str, Any]] | None:
    """Every rank's ``part`` on rank 0 (a list indexed by rank), None on the others."""
    if world == 1:
        return [part]
    import torch.distributed as dist

    out = [None] * world if rank == 0 else None
    dist.gather_object(part, out, dst=0)
    return out


def _rank_part(saved: dict[str, Any], rank: int, world: int, path: Any) -> dict[str, Any]:
    """This rank's RNG / recipe state / running sums of a saved training state."""
    had = saved.get("world", 1)
    if had != world:
        raise UserError(f"cannot resume from {path}: it was written by {had} rank(s), this run has {world}; "
                        f"resume with the same torchrun --nproc-per-node")
    return saved["ranks"][rank] if world > 1 else saved


def load_train_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state with ``weights_only=True`` (no arbitrary unpickling)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError variants
        raise UserError(f"cannot resume from {path}: {exc}".splitlines()[0]) from None


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
    """Train ``model`` in place on ``data`` with ``recipe`` against ``threat``. Returns per-epoch stats.

    Under ``torchrun`` (WORLD_SIZE > 1) every rank takes its share of each global
    batch (:func:`shard_positions`), DistributedDataParallel averages the
    gradients over ranks, and rank 0 alone writes the training state. With
    ``cfg.checkpoint_every`` the full state (weights, optimizer, RNG states,
    epoch/batch position, recipe state) is written
    atomically every N steps; ``cfg.resume`` continues from it and reaches the
    same weights as an uninterrupted run.
    """
    device = pick_device(cfg.device)
    rank, world = init_distributed(device)
    seed_everything(cfg.seed if world == 1 else derive_seed(cfg.seed, "rank", rank))
    model.to(device)
    check_inputs(model, data, device, "train")
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.compile:
        from bench.task import compile_model

        compile_model(model, cfg.compile)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(model, cfg)
    replay = max(1, recipe.replay)
    # Free-AT (Shafahi et al. 2019, Alg. 1) replays each minibatch m times and makes epochs/m
    # passes, so the number of gradient steps equals ERM's; the eps ramp is counted in the same
    # replay-adjusted epochs (a 3-epoch ramp over 10 epochs ends after 0.75 passes when m = 4).
    epochs = cfg.epochs / replay
    n = len(data)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    full_epochs = math.ceil(epochs)
    total = max(1, int(round(epochs * steps_per_epoch)))
    ramp_steps = cfg.eps_ramp_epochs / replay * steps_per_epoch
    gen = torch.Generator().manual_seed(cfg.seed)
    state: dict[str, Any] = {"step": 0}
    history: list[dict] = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    step, start_epoch, start_batch = 0, 0, 0
    acc = [0.0, 0.0, 0]  # loss sum, correct, seen in the current epoch
    gen_epoch_state = None
    if cfg.resume and cfg.state_path and Path(cfg.state_path).exists():
        saved = load_train_state(cfg.state_path)
        mine = _rank_part(saved, rank, world, cfg.state_path)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        torch.set_rng_state(mine["rng"])
        if device.type == "cuda" and "cuda_rng" in mine:
            torch.cuda.set_rng_state(mine["cuda_rng"], device)
        step, start_epoch, start_batch = saved["step"], saved["epoch"], saved["batch"]
        gen_epoch_state = saved["gen_epoch_state"]
        history = list(saved["history"])
        acc = list(mine["acc"])
        state.update(mine.get("recipe_state", {}))
    # under torchrun: DDP over the recipe loss (it broadcasts rank 0's weights, then averages gradients)
    step_loss = _wrap_ddp(model, recipe, device) if world > 1 else _RecipeLoss(model, recipe)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=total * replay, initial=step * replay, desc=f"train {recipe.name}", unit="step", leave=False)
    threat_t = threat
    for epoch in range(start_epoch, full_epochs):
        t0 = time.perf_counter()
        if epoch == start_epoch and gen_epoch_state is not None:
            gen.set_state(gen_epoch_state)
        else:
            acc = [0.0, 0.0, 0]
        gen_epoch_state = gen.get_state()
        order = torch.randperm(n, generator=gen)
        for b, s0 in enumerate(range(0, n, cfg.batch_size)):
            if epoch == start_epoch and b < start_batch:
                continue
            if step >= total:
                break
            pos = shard_positions(order, s0, cfg.batch_size, rank, world)
            xb, yb = to_device(take(data.inputs, pos), device), to_device(take(data.y, pos), device)
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
                    loss = step_loss(z, z_adv, ctx, yb, state)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"non-finite loss ({float(loss.detach())}) at epoch {epoch + 1}, step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.on_input_grad is not None and z_adv is not None:
                    recipe.on_input_grad(z_adv.grad.detach(), state)
                if recipe.after_backward is not None:
                    recipe.after_backward(model, state)
                gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
                if not torch.isfinite(gnorm):
                    raise TrainingDiverged(f"non-finite gradients at epoch {epoch + 1}, step {step}")
                opt.step()
                acc[0] += float(loss.detach()) * len(pos)
                acc[2] += len(pos)
                out = state.pop("outputs", None)
                if out is not None and getattr(model, "binary_errors", True):
                    acc[1] += float((model_errors(model, out, yb) == 0).float().sum())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{acc[0] / acc[2]:.3f}",
                                    acc=f"{acc[1] / acc[2]:.3f}" if acc[1] else "-")
            step += 1
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                # what differs between ranks (RNG streams, per-shard recipe state such as Free's
                # delta, running sums) is gathered, so every rank resumes its own stream
                parts = _gather_to_rank0({
                    "rng": torch.get_rng_state(),
                    **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                    "acc": list(acc),
                    "recipe_state": {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)},
                }, rank, world)
                if rank == 0:
                    save_train_state(cfg.state_path, {
                        "model": model.state_dict(), "optimizer": opt.state_dict(), **parts[0],
                        "step": step, "epoch": epoch, "batch": b + 1, "gen_epoch_state": gen_epoch_state,
                        "history": history, "world": world, "ranks": parts if world > 1 else None,
                    })
        stats = {"epoch": epoch + 1, "loss": acc[0] / max(1, acc[2]), "train_accuracy": acc[1] / max(1, acc[2]),
                 "seconds": time.perf_counter() - t0, "eps": threat_t.eps}
        history.append(stats)
        if on_epoch is not None and rank == 0:
            on_epoch(stats)
    if bar is not None:
        bar.close()
    model.eval()
    return history
