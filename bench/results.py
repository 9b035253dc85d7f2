"""Result files: one JSON per (track, model, defense), schema-versioned, written atomically.

Layout: ``results/<domain>/<dataset>/<threat-id>/<model>__<defense>.json``.
The schema lives in ``bench/schema/result.schema.json``; :func:`validate`
checks it plus the consistency rules a leaderboard relies on.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from bench.checkpoint import atomic_write_bytes
from bench.errors import UserError

SCHEMA_VERSION = 1


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("bench").joinpath("schema/result.schema.json").read_text())


def bits(mask: torch.Tensor) -> str:
    """A bool tensor as a '0'/'1' string (1 = the model was right)."""
    return "".join("1" if b else "0" for b in mask.bool().tolist())


def result_path(root: str | Path, doc: dict[str, Any]) -> Path:
    """The canonical path of a result under ``root``."""
    return (Path(root) / doc["domain"] / doc["dataset"] / doc["threat"]["id"]
            / f"{doc['model']}__{doc['defense']}.json")


def problems(doc: Any) -> list[str]:
    """Every problem with a result document (empty when valid): schema, then consistency."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
    if out or not isinstance(doc, dict):
        return out
    m = doc["metrics"]
    tol = 1e-9
    if m["robust_accuracy"] > m["clean_accuracy"] + tol:
        out.append(f"metrics: robust_accuracy {m['robust_accuracy']} > clean_accuracy {m['clean_accuracy']}")
    for name, v in m["per_attack"].items():
        if v + tol < m["robust_accuracy"]:
            out.append(f"metrics/per_attack/{name}: {v} < robust_accuracy {m['robust_accuracy']}")
    sweep = m.get("eps_sweep") or []
    pts = sorted((p["eps"], p["robust_accuracy"]) for p in sweep)
    decreasing_budget = doc["threat"]["scale"] == "snr-db"  # larger dB = smaller budget
    flags = doc.get("flags") or {}
    for (e0, a0), (e1, a1) in zip(pts, pts[1:]):
        worse = a1 > a0 + tol if not decreasing_budget else a1 + tol < a0
        if worse and not flags.get("non-monotone-in-eps", {}).get("raised"):
            out.append(f"metrics/eps_sweep: robust accuracy not monotone in eps ({e0}: {a0}, {e1}: {a1})"
                       " and flag non-monotone-in-eps not raised")
            break
    pe = doc.get("per_example") or {}
    for key, val in list(pe.items()):
        vals = val.values() if isinstance(val, dict) else [val]
        for v in vals:
            if len(v) != doc["n"]:
                out.append(f"per_example/{key}: {len(v)} outcomes for n={doc['n']}")
                break
    if "clean" in pe and "robust" in pe and len(pe["clean"]) == len(pe["robust"]) == doc["n"]:
        if abs(pe["robust"].count("1") / doc["n"] - m["robust_accuracy"]) > 1e-6:
            out.append("per_example/robust: does not match metrics/robust_accuracy")
    for k, v in _numbers(doc):
        if isinstance(v, float) and not math.isfinite(v):
            out.append(f"{k}: not a finite number")
    return out


def _numbers(obj: Any, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}/{i}")
    else:
        yield prefix, obj


def validate(doc: Any) -> dict[str, Any]:
    """Raise :class:`UserError` naming the first problem; return the doc when valid."""
    errs = problems(doc)
    if errs:
        raise UserError(f"invalid result: {errs[0]}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""))
    return doc


def load_result(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"result file not found: {p}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not valid JSON ({exc})") from None
    try:
        return validate(doc)
    except UserError as exc:
        raise UserError(f"{p}: {exc}") from None


def write_result(doc: dict[str, Any], root: str | Path = "results", path: str | Path | None = None) -> Path:
    """Validate, then write atomically (temp file + rename) at the canonical path."""
    validate(doc)
    target = Path(path) if path is not None else result_path(root, doc)
    atomic_write_bytes(target, (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode())
    return target
