"""Evaluate a model on a corruption track and write its result file.

For every corruption ``c`` of the track and every severity ``s`` it accepts, the whole fixed
evaluation subset is corrupted (raw inputs, seeded per cell: :func:`bench.corruptions.corruption_rng`),
passed through the model's own preprocessing and classified. The result file keeps every
cell's per-example outcome, so any two models on the track can be compared example by example,
and the metrics Hendrycks & Dietterich (2019) report:

- ``corruption_accuracy``: the mean accuracy over all (corruption, severity) cells;
- ``per_corruption``: ``{name: {severity: accuracy}}`` and ``per_corruption_mean`` (over severities);
- ``mCE`` is relative to a baseline model (the track's ERM), so the leaderboard computes it from
  the two files (:func:`mean_corruption_error`) rather than storing a number that depends on
  another file.

Only classification tracks (accuracy) are supported; a WER track is refused with one line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from bench.attacks.base import model_errors
from bench.corruptions import get_corruption
from bench.data import ArrayData, length, to_device
from bench.errors import UserError
from bench.results import SCHEMA_VERSION, bits

CORRUPTION_KIND = "corruption"


def cell_id(name: str, severity: int) -> str:
    return f"{name}@{severity}"


@torch.no_grad()
def correct(model, data: ArrayData, *, batch_size: int, device) -> torch.Tensor:
    """Per-example correctness (bool) of ``model`` on already prepared ``data``."""
    model.eval()
    out = torch.zeros(len(data), dtype=torch.bool)
    for pos, xb, yb in data.batches(batch_size):
        xb, yb = to_device(xb, device), to_device(yb, device)
        z, ctx = model.encode(xb)
        e = model_errors(model, model(z.detach(), ctx.to(device)), yb)
        out[pos] = (e == 0).cpu()
    return out


def track_cells(track) -> list[tuple[str, int]]:
    """The (corruption key, severity) cells of a corruption track, in declaration order."""
    cells = []
    for key in track.corruptions:
        c = get_corruption(key)
        sev = tuple(s for s in (track.severities or c.severities) if s in c.severities)
        cells += [(key, s) for s in sev]
    return cells


def evaluate_corruptions(model, raw: ArrayData, track, *, prepare: Callable[[Any, ArrayData], ArrayData],
                         seed: int = 0, batch_size: int = 250, device="cpu", aux: Mapping[str, Any] | None = None,
                         progress: bool = False) -> dict[str, Any]:
    """Clean and per-cell per-example correctness on the raw evaluation subset ``raw``.

    Returns ``{"clean": bool tensor, "cells": {cell_id: bool tensor}, "seconds": {cell_id: s}}``.
    """
    clean = correct(model, prepare(model, raw), batch_size=batch_size, device=device)
    cells, secs = {}, {}
    todo = track_cells(track)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"corruptions {track.id}", unit="cell", leave=False)
    for key, s in todo:
        c = get_corruption(key)
        t = time.perf_counter()
        xc = c(raw.inputs, s, seed=seed, aux=aux)
        if length(xc) != len(raw):
            raise RuntimeError(f"{key} returned {length(xc)} examples for {len(raw)}")
        data = prepare(model, ArrayData(xc, raw.y, dict(raw.meta)))
        cells[cell_id(c.name, s)] = correct(model, data, batch_size=batch_size, device=device)
        secs[cell_id(c.name, s)] = time.perf_counter() - t
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"clean": clean, "cells": cells, "seconds": secs}


def corruption_metrics(out: dict[str, Any]) -> dict[str, Any]:
    """The metrics of a corruption result from per-example outcomes (see the module docstring)."""
    per: dict[str, dict[str, float]] = {}
    for cid, ok in out["cells"].items():
        name, s = cid.rsplit("@", 1)
        per.setdefault(name, {})[s] = float(ok.double().mean())
    accs = [a for d in per.values() for a in d.values()]
    from bench.stats import bootstrap_mean, wilson

    clean = out["clean"]
    per_example = torch.stack([v.double() for v in out["cells"].values()]).mean(0) if out["cells"] else None
    intervals = {"clean_accuracy": list(wilson(int(clean.sum()), len(clean)))}
    if per_example is not None:  # the mean over cells is not binomial: bootstrap over examples (Efron 1979)
        intervals["corruption_accuracy"] = list(bootstrap_mean(per_example.tolist(), seed=0))
    return {
        "intervals": intervals,
        "clean_accuracy": float(out["clean"].double().mean()),
        "corruption_accuracy": float(sum(accs) / len(accs)) if accs else 0.0,
        "per_corruption": per,
        "per_corruption_mean": {k: float(sum(v.values()) / len(v)) for k, v in per.items()},
        "n_cells": len(accs),
    }


def mean_corruption_error(doc: Mapping[str, Any], baseline: Mapping[str, Any]) -> float | None:
    """mCE of ``doc`` relative to ``baseline`` (both corruption result documents of one track), in %.

    Hendrycks & Dietterich (2019), eq. 1: CE_c = sum_s E_{s,c}(f) / sum_s E_{s,c}(baseline) and
    mCE = mean_c CE_c, over the corruptions both files evaluated at the same severities. ``None``
    when no corruption is comparable or the baseline makes no error on one (CE undefined).
    """
    mine, base = doc["metrics"]["per_corruption"], baseline["metrics"]["per_corruption"]
    ces = []
    for name, sev in mine.items():
        if name not in base or set(base[name]) != set(sev):
            continue
        e_f = sum(1 - a for a in sev.values())
        e_b = sum(1 - a for a in base[name].values())
        if e_b <= 0:
            return None
        ces.append(e_f / e_b)
    return 100.0 * sum(ces) / len(ces) if ces else None


def corruption_document(track, out: dict[str, Any], *, model: str, defense: str, seed: int,
                        ckpt_config: dict[str, Any], checkpoint_sha256: str | None, eval_seconds: float,
                        device: Any, git: dict | None = None) -> dict[str, Any]:
    """A schema-valid corruption result document (``bench/schema/corruption.schema.json``)."""
    from bench.pipeline import cost_and_provenance

    cells = track_cells(track)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": CORRUPTION_KIND,
        "track": track.id,
        "metric": "accuracy",
        "headline": {"clean": "clean_accuracy", "robust": "corruption_accuracy", "higher_is_better": True},
        "domain": track.domain,
        "dataset": track.dataset,
        "corruption_set": {
            "id": track.corruption_set,
            "cells": [{"corruption": get_corruption(k).name, "key": k, "severity": s} for k, s in cells],
            "descriptions": {get_corruption(k).name: get_corruption(k).description for k in track.corruptions},
        },
        "model": model,
        "defense": defense,
        "defense_params": ckpt_config.get("recipe_params", {}),
        "n": int(len(out["clean"])),
        "seed": seed,
        "metrics": corruption_metrics(out),
        "per_example": {"clean": bits(out["clean"]), "cells": {k: bits(v) for k, v in out["cells"].items()}},
        "notes": [],
        **cost_and_provenance(track, ckpt_config, eval_seconds=eval_seconds, device=device, seed=seed,
                              checkpoint_sha256=checkpoint_sha256, git=git),
    }
    return doc


def corruption_problems(doc: dict[str, Any]) -> list[str]:
    """Consistency of a corruption result beyond its schema: every cell's bits of length n and equal to
    its accuracy, the mean equal to the mean of the cells, clean bits equal to clean accuracy."""
    out = []
    m, n, pe = doc["metrics"], doc["n"], doc.get("per_example") or {}
    tol = 1e-6
    clean = pe.get("clean")
    if isinstance(clean, str):
        if len(clean) != n:
            out.append(f"per_example/clean: {len(clean)} outcomes for n={n}")
        elif abs(clean.count("1") / n - m["clean_accuracy"]) > tol:
            out.append(f"per_example/clean: {clean.count('1')}/{n} correct does not match metrics/clean_accuracy")
    declared = {cell_id(c["corruption"], c["severity"]) for c in doc["corruption_set"]["cells"]}
    per = m["per_corruption"]
    have = {cell_id(name, int(s)) for name, d in per.items() for s in d}
    if have != declared:
        out.append(f"metrics/per_corruption: cells {sorted(have ^ declared)[:3]} differ from corruption_set/cells")
    for cid, b in (pe.get("cells") or {}).items():
        name, s = cid.rsplit("@", 1)
        if len(b) != n:
            out.append(f"per_example/cells/{cid}: {len(b)} outcomes for n={n}")
        elif name in per and s in per[name] and abs(b.count("1") / n - per[name][s]) > tol:
            out.append(f"per_example/cells/{cid}: {b.count('1')}/{n} correct does not match "
                       f"metrics/per_corruption/{name}/{s} {per[name][s]}")
    accs = [a for d in per.values() for a in d.values()]
    if accs and abs(sum(accs) / len(accs) - m["corruption_accuracy"]) > tol:
        out.append(f"metrics/corruption_accuracy: {m['corruption_accuracy']} is not the mean of the cells "
                   f"({sum(accs) / len(accs)})")
    return out


def eval_corruption_track(track, model, raw: ArrayData, idx: torch.Tensor, *, prepare, ckpt_config, ckpt_sha,
                          model_id: str, defense: str, seed: int, device, batch_size: int, progress: bool,
                          results, out, git) -> Path:
    """Evaluate on the track's corruptions and write the result file (atomically, validated)."""
    from bench.results import write_result

    if track.metric != "accuracy":
        raise UserError(f"track {track.id}: corruption tracks support accuracy only, not {track.metric}")
    aux: dict[str, Any] = {}
    if "sample_rate" in raw.meta:
        aux["sample_rate"] = int(raw.meta["sample_rate"])
    if any("pool" in get_corruption(k).needs for k in track.corruptions):
        train = track.dataset_split("train")
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(train), generator=g)[: min(len(train), 512)]
        aux["pool"] = train.subset(pick).inputs
    t0 = time.perf_counter()
    res = evaluate_corruptions(model, raw, track, prepare=prepare, seed=seed, batch_size=batch_size,
                               device=device, aux=aux, progress=progress)
    doc = corruption_document(track, res, model=model_id, defense=defense, seed=seed, ckpt_config=ckpt_config,
                              checkpoint_sha256=ckpt_sha, eval_seconds=time.perf_counter() - t0, device=device,
                              git=git)
    from bench.defenses import TransformedModel

    if isinstance(model, TransformedModel):  # an inference-time defense in front of the model
        doc["transform"] = model.describe()
    return write_result(doc, root=results, path=out)


__all__ = ["evaluate_corruptions", "corruption_metrics", "mean_corruption_error", "corruption_document",
           "corruption_problems", "eval_corruption_track", "track_cells", "cell_id"]
