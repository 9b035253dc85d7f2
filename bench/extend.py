"""Extend a published cascade with more attacks, reading the finished attacks' outcomes from its file.

A cascade attacks only the examples every earlier attack missed, and every attack here is
seeded per example (:mod:`bench.rng`), so an attack's outcome on an example does not depend on
which other examples share its batch. Running a suite ``S + T`` from scratch therefore gives,
example for example, what the published file of ``S`` says for ``S`` and then ``T`` run on the
examples ``S`` left robust. That is AutoAttack's own way of adding attacks to an evaluation
(``run_standard_evaluation`` attacks only the points still robust). This module reads the
per-example outcomes of ``S`` from a result file (after checking that the file is the same
evaluation: track, checkpoint hash, n, seed, threat, suite prefix) and rebuilds the
:class:`~bench.evaluate.EvalReport` of ``S + T``; the sweep and the sanity flags are then
computed afresh by the caller, as for any evaluation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError
from bench.evaluate import EvalReport, evaluate
from bench.suites import resolve_suite


def read_prior(path: str | Path, *, track, suite, ckpt_sha: str, n: int, seed: int) -> dict[str, Any]:
    """The result file ``path`` if it is this evaluation with a prefix of ``suite``; else one clear line."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--extend: cannot read {p}: {e}") from None
    specs = [s.to_dict() for s in resolve_suite(suite)]
    prior = doc.get("suite") or []
    checks = [
        (doc.get("track") == track.id, f"its track is {doc.get('track')!r}, not {track.id!r}"),
        (track.metric == "accuracy" and doc.get("metric") == "accuracy", "only accuracy tracks can be extended"),
        (track.cascade, f"{track.id} does not run its suite as a cascade"),
        (doc.get("metrics", {}).get("per_attack_mode") == "cumulative", "its attacks did not run as a cascade"),
        ((doc.get("provenance") or {}).get("checkpoint_sha256") == ckpt_sha,
         "it was made from another checkpoint (checkpoint_sha256 differs)"),
        (doc.get("n") == n, f"it has n={doc.get('n')}, this evaluation n={n}"),
        (doc.get("seed") == seed, f"it has seed {doc.get('seed')}, this evaluation seed {seed}"),
        (doc.get("threat", {}).get("id") == track.threat.id, "its threat differs"),
        (not doc.get("protocol") and not doc.get("transform"), "it ran under another protocol or a transform"),
        (0 < len(prior) < len(specs) and prior == specs[:len(prior)],
         f"its suite ({', '.join(s.get('name', '?') for s in prior)}) is not a proper prefix of "
         f"this one ({', '.join(s['name'] for s in specs)})"),
    ]
    for ok, why in checks:
        if not ok:
            raise UserError(f"--extend: {p} is not the start of this evaluation: {why}")
    pe = doc.get("per_example") or {}
    attacks = pe.get("attacks") or {}
    names = [s["name"] for s in prior]
    if set(attacks) != set(names) or any(len(pe.get(k) or "") != n for k in ("clean", "robust")) or \
            any(len(v) != n for v in attacks.values()):
        raise UserError(f"--extend: {p} lacks the per-example outcomes of its attacks")
    unknown = set(pe) - {"clean", "robust", "attacks", "achieved_snr_db"}
    if unknown:
        raise UserError(f"--extend: {p} has per-example data this extension cannot carry: {', '.join(sorted(unknown))}")
    return doc


def _errors(bits: str) -> torch.Tensor:
    return torch.tensor([0.0 if c == "1" else 1.0 for c in bits])


def _distances(prior: dict, threat) -> torch.Tensor:
    """The worst case's perturbation size per example (relative to the radius) from the file's achieved list."""
    vals = (prior.get("per_example") or {}).get("achieved_snr_db")
    n = prior["n"]
    if vals is None:
        return torch.full((n,), float("nan"))
    out = []
    for a in vals:
        if a is None:
            out.append(float("nan"))
        elif math.isinf(a):
            out.append(0.0)
        else:
            out.append(10.0 ** ((threat.eps - float(a)) / 20.0) if threat.scale == "snr-db" else float(a) / threat.eps)
    return torch.tensor(out, dtype=torch.float64)


def extend_report(prior: dict, model, x, y, threat, suite, *, batch_size: int, seed: int, device, index,
                  progress: bool = False) -> tuple[EvalReport, int]:
    """The report of ``suite`` (whose prefix the file ``prior`` ran) with only the new attacks run, on the
    examples the prefix left robust. Returns ``(report, number of examples attacked)``."""
    from bench.data import take

    specs = resolve_suite(suite)
    names = [s["name"] for s in prior["suite"]]
    tail = specs[len(names):]
    pe = prior["per_example"]
    clean = _errors(pe["clean"])
    per = {k: _errors(pe["attacks"][k]) for k in names}
    worst = _errors(pe["robust"])
    if not torch.equal(worst, per[names[-1]]):
        raise UserError("--extend: the file's robust outcomes are not those of its last attack")
    distance = _distances(prior, threat).float()
    sel = (worst == 0).nonzero().squeeze(1)
    stats = dict((prior.get("metrics") or {}).get("attack_stats") or {})
    notes: list[str] = []
    secs: dict[str, float] = {}
    if len(sel):
        rep = evaluate(model, take(x, sel), take(y, sel), threat, list(tail), batch_size=batch_size, cascade=True,
                       seed=seed, device=device, index=index[sel], progress=progress, flags=False)
        for s in tail:
            col = worst.clone()
            col[sel] = torch.maximum(worst[sel], rep.attack_errors[s.name])
            per[s.name] = col
        raised = rep.robust_errors > worst[sel]
        distance[sel[raised]] = rep.details["distance"][raised].float()
        worst[sel] = torch.maximum(worst[sel], rep.robust_errors)
        notes, secs = list(rep.notes), dict(rep.attack_seconds)
        stats.update(rep.attack_stats)
    else:
        for s in tail:
            per[s.name] = worst.clone()
    report = EvalReport(threat, tuple(specs), clean, per, worst, torch.ones(len(clean)), True, 0.0,
                        secs, notes, stats, details={"distance": distance})
    return report, int(len(sel))


def mark_extended(doc: dict[str, Any], prior: dict[str, Any], attacked: int) -> None:
    """What the extended result file owes to ``prior``, in place: the prior's notes and a note naming the
    commit that made the read outcomes, both runs' ``eval_seconds``, and the prior's dirty tree (part of the
    number was made by that run, so the ``dirty-tree`` badge stays)."""
    made = prior.get("provenance") or {}
    done = [a["name"] for a in prior["suite"]]
    new = [s["name"] for s in doc["suite"][len(done):]]
    doc["notes"] = list(prior.get("notes") or []) + doc["notes"] + [
        f"extended: the outcomes of {', '.join(done)} were read from the result made at commit "
        f"{str(made.get('git_commit'))[:7]}{' (dirty tree)' if made.get('git_dirty') else ''}; "
        f"{', '.join(new)} ran here on the {attacked} examples they left robust (bench.extend); "
        "eval_seconds adds both runs"]
    doc["cost"]["eval_seconds"] = float(doc["cost"]["eval_seconds"]) + float(
        (prior.get("cost") or {}).get("eval_seconds") or 0.0)
    doc["provenance"]["git_dirty"] = bool(doc["provenance"].get("git_dirty")) or bool(made.get("git_dirty"))
