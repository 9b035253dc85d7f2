"""Training-seed variation: the same recipe trained with K seeds, summarised in the seed-0 result file.

A result file stays one (track, model, defense) with one checkpoint and its per-example evidence (the
first seed's). ``xrobust run --seeds 0,1,2`` trains and evaluates every seed and records each seed's
headline numbers and checkpoint hash under ``seeds``, with the mean and the sample standard deviation
(n - 1), so the leaderboard can show mean ± sd across seeds next to the single-run number.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

#: absolute tolerance of the consistency checks (numbers are re-derived from the runs)
TOL = 1e-9


def headline_of(doc: Mapping[str, Any]) -> tuple[str, str]:
    head = doc.get("headline") or {}
    return head.get("clean", "clean_accuracy"), head.get("robust", "robust_accuracy")


def _mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def seed_summary(docs: Sequence[Mapping[str, Any]], train_seeds: Sequence[int]) -> dict[str, Any]:
    """The ``seeds`` block of the first document, from the result documents of every training seed
    (same track, model, defense and headline keys; ``train_seeds[i]`` trained ``docs[i]``'s checkpoint).
    The evaluation itself uses one seed for all, so the runs differ only in training."""
    if len(docs) < 2 or len(docs) != len(train_seeds):
        raise ValueError("a seed summary needs at least two seeds, one document each")
    first = docs[0]
    key = (first["track"], first["model"], first["defense"], headline_of(first))
    for d in docs[1:]:
        if (d["track"], d["model"], d["defense"], headline_of(d)) != key:
            raise ValueError(f"seed runs differ in track/model/defense/headline: {d['track']} {d['defense']}")
    if len(set(train_seeds)) != len(train_seeds):
        raise ValueError(f"repeated seeds {list(train_seeds)}")
    ck, rk = headline_of(first)
    runs = [{"seed": int(s), "clean": float(d["metrics"][ck]), "robust": float(d["metrics"][rk]),
             "checkpoint_sha256": d["provenance"].get("checkpoint_sha256")} for d, s in zip(docs, train_seeds)]
    cm, csd = _mean_sd([r["clean"] for r in runs])
    rm, rsd = _mean_sd([r["robust"] for r in runs])
    return {"runs": runs, "clean_mean": cm, "clean_sd": csd, "robust_mean": rm, "robust_sd": rsd}


def seed_problems(doc: Mapping[str, Any]) -> list[str]:
    """Consistency of a ``seeds`` block: exactly one run is the file's own (its checkpoint hash), with the
    file's headline numbers; distinct seeds and checkpoints; mean and sd equal to the runs'."""
    block = doc.get("seeds")
    if block is None:
        return []
    runs = block["runs"]
    out = []
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        out.append(f"seeds/runs: repeated seeds {seeds}")
    mine = doc["provenance"].get("checkpoint_sha256")
    own = [r for r in runs if mine is not None and r.get("checkpoint_sha256") == mine]
    ck, rk = headline_of(doc)
    if len(own) != 1:
        out.append("seeds/runs: not exactly one run has the file's checkpoint (provenance.checkpoint_sha256)")
    elif abs(own[0]["clean"] - doc["metrics"][ck]) > TOL or abs(own[0]["robust"] - doc["metrics"][rk]) > TOL:
        out.append(f"seeds/runs: seed {own[0]['seed']} numbers differ from the file's headline {ck}/{rk}")
    for role in ("clean", "robust"):
        m, sd = _mean_sd([r[role] for r in runs])
        if not (abs(block[f"{role}_mean"] - m) <= TOL and abs(block[f"{role}_sd"] - sd) <= TOL):
            out.append(f"seeds/{role}_mean, {role}_sd: not the mean and sd of the runs ({m}, {sd})")
    return out
