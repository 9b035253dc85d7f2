"""Training cost of each recipe relative to ERM, measured interleaved in one process.

Timings on a shared machine drift by 20–30% between processes, so each recipe
is timed on the same slice of the track's training data in round-robin order,
``rounds`` times, and the median is used; only ratios to ERM are reported as
targets (FGSM-RS ≤ 2.5× ERM; Free with m replays ≈ m× ERM per epoch, with
epochs divided by m; PGD-K ≈ (K+1)× ERM).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from bench.pipeline import build_model, make_recipe, prepare
from bench.tracks import Track
from bench.training.loop import TrainConfig, train


def training_costs(track: Track, recipes: list[str], *, batches: int = 8, rounds: int = 3, seed: int = 0,
                   device: str | None = None) -> list[dict[str, Any]]:
    """Seconds per epoch of each recipe on ``track`` and the ratio to ERM's."""
    if "erm" not in recipes:
        recipes = ["erm", *recipes]
    data = track.dataset_split("train")
    torch.manual_seed(seed)
    model0 = build_model(track, data)
    data = prepare(model0, data)
    bs = track.train.batch_size
    part = data.subset(torch.arange(min(len(data), batches * bs)))
    built = {name: make_recipe(track, name)[0] for name in recipes}
    times: dict[str, list[float]] = {name: [] for name in recipes}
    for r in range(rounds + 1):  # round 0 warms up (allocator, kernels) and is not counted
        for name in recipes:
            model = copy.deepcopy(model0)  # same weights and the same preprocessing state (e.g. a tokenizer)
            rec = built[name]
            cfg = TrainConfig(epochs=rec.replay if rec.replay > 1 else 1, batch_size=bs, lr=track.train.lr,
                              optimizer=track.train.optimizer, seed=seed, device=device)
            t0 = time.perf_counter()
            train(model, part if r else part.subset(torch.arange(min(len(part), bs))), rec, track.training_threat, cfg,
                  progress=False)
            if r:
                times[name].append(time.perf_counter() - t0)
    scale = len(data) / len(part)
    erm = statistics.median(times["erm"]) * scale
    out = []
    for name in recipes:
        rec = built[name]
        per_epoch = statistics.median(times[name]) * scale  # one pass over the data, replays included
        out.append({"recipe": name, "replay": rec.replay, "seconds_per_epoch": per_epoch,
                    "ratio_to_erm": per_epoch / erm, "params": rec.params,
                    "samples": [t * scale for t in times[name]]})
    return out
