"""Certify a model on a certification track and write its result file (``kind: certified``).

Every example of the fixed evaluation subset goes through CERTIFY (:func:`bench.certify.certify`,
Cohen, Rosenfeld & Kolter 2019) at the track's noise level; the result keeps, per example, the
smoothed prediction (-1 = abstained), the certified L2 radius in ``z`` units and the same radius in
the units of the track's threat eps (:func:`bench.certify.threat_units`: L2, dB SNR per utterance,
or a per-token fraction of the embedding scale). The metrics are what the paper plots: *certified
accuracy at radius r*, the share of examples whose smoothed prediction is right and certified at
r or more (an abstention or a wrong prediction is never certified), at each of the track's radii;
``clean_accuracy`` is the same at radius 0 and ``certified_accuracy`` at the threat's own eps.
:func:`certified_problems` re-derives every one of those numbers from the per-example lists.

On a CUDA device the paper's counts are used (n0 = 100, n = 100,000), on CPU the track's scaled
ones; the file records which (``certification.full_counts``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from bench.certify import ABSTAIN, certified_at, certify, max_radius, threat_units
from bench.data import ArrayData, to_device
from bench.errors import UserError
from bench.results import SCHEMA_VERSION, bits

CERTIFIED_KIND = "certified"
#: tolerance of the consistency checks on stored fractions and radii
TOL = 1e-9


def _finite(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def run_certify(model, data: ArrayData, idx: torch.Tensor, track, *, seed: int, device, full: bool,
                progress: bool = False) -> dict[str, Any]:
    """CERTIFY on the (prepared) evaluation data; per-example predictions, radii and their threat units."""
    spec = track.certify
    n0, n = spec.counts(full)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(data), desc=f"certify {track.id}", unit="ex", leave=False)
    preds, radii, units = [], [], []
    model.eval()
    # one example per encode: a padded batch (text) would give an example a length, hence a noise draw,
    # that depends on its neighbours; alone it always has its own (CERTIFY's own batching is per example)
    for pos, xb, _ in data.batches(1):
        xb = to_device(xb, device)
        with torch.no_grad():
            z, ctx = model.encode(xb)
        from dataclasses import replace

        ctx = replace(ctx, index=idx[pos].to(device)).to(device)
        from bench.training.gaussian import noise_level

        sigma = noise_level(spec.sigma, spec.relative, ctx)
        cert = certify(model, z.detach(), ctx, sigma, n0, n, spec.alpha, batch=spec.batch, seed=seed,
                       progress=bar.update if bar is not None else None)
        u = threat_units(track.threat, cert.radius, z.detach(), ctx)
        preds += cert.prediction.tolist()
        radii += [_finite(r) for r in cert.radius.tolist()]
        units += [None if p == ABSTAIN else float(v) for p, v in zip(cert.prediction.tolist(), u.tolist())]
    if bar is not None:
        bar.close()
    return {"prediction": preds, "radius": radii, "radius_units": units, "n0": n0, "n": n, "sigma": sigma}


def _is_db(threat: dict[str, Any]) -> bool:
    return threat.get("scale") == "snr-db"


def _frac(flags: list[bool], among: list[bool] | None = None) -> float:
    if among is None:
        return sum(flags) / len(flags) if flags else 0.0
    k = sum(among)
    return sum(f for f, a in zip(flags, among) if a) / k if k else 0.0


def certified_metrics(per: dict[str, Any], correct: list[bool], radii: list[float], eps: float, db: bool,
                      keywords: list[bool] | None = None) -> dict[str, Any]:
    """Clean accuracy of the smoothed classifier, certified accuracy at ``eps`` and at every radius of ``radii``
    (and the same over the ``keywords`` examples when given), from per-example outcomes."""
    from bench.stats import wilson

    units, n = per["radius_units"], len(correct)
    head = certified_at(units, correct, eps, db)
    m: dict[str, Any] = {
        "clean_accuracy": _frac(correct),
        "certified_accuracy": _frac(head),
        "abstain_rate": _frac([p == ABSTAIN for p in per["prediction"]]),
        "certified_curve": [],
    }
    for r in radii:
        pt = {"radius": float(r), "certified_accuracy": _frac(certified_at(units, correct, r, db))}
        if keywords is not None:
            pt["certified_accuracy_keywords"] = _frac(certified_at(units, correct, r, db), keywords)
        m["certified_curve"].append(pt)
    m["intervals"] = {"clean_accuracy": list(wilson(sum(correct), n)), "certified_accuracy": list(wilson(sum(head), n))}
    if keywords is not None:
        k = sum(keywords)
        m.update(clean_accuracy_keywords=_frac(correct, keywords), certified_accuracy_keywords=_frac(head, keywords),
                 n_keywords=int(k))
        m["intervals"]["clean_accuracy_keywords"] = list(wilson(sum(c and w for c, w in zip(correct, keywords)), k))
        m["intervals"]["certified_accuracy_keywords"] = list(wilson(sum(c and w for c, w in zip(head, keywords)), k))
    return m


def certified_document(track, out: dict[str, Any], y, *, model: str, defense: str, seed: int, ckpt_config: dict,
                       checkpoint_sha256: str | None, eval_seconds: float, device: Any, full: bool,
                       keywords: torch.Tensor | None = None, git: dict | None = None) -> dict[str, Any]:
    """A schema-valid certified result document (``bench/schema/certified.schema.json``)."""
    from bench.pipeline import cost_and_provenance

    spec, threat = track.certify, track.threat
    labels = torch.as_tensor(y).cpu().tolist()
    correct = [p != ABSTAIN and p == t for p, t in zip(out["prediction"], labels)]
    db = threat.scale == "snr-db"
    kw = [bool(v) for v in keywords.tolist()] if keywords is not None and bool(keywords.any()) else None
    metrics = certified_metrics(out, correct, spec.radii, threat.eps, db, kw)
    notes = []
    trained = (ckpt_config.get("recipe_params") or {}).get("sigma")
    trained_relative = bool((ckpt_config.get("recipe_params") or {}).get("relative", False))
    if trained is not None and (abs(float(trained) - spec.sigma) > 1e-12 or trained_relative != spec.relative):
        notes.append(f"the checkpoint was trained with noise sigma {trained}, certified at sigma {spec.sigma}")
    per_example = {"clean": bits(torch.tensor(correct, dtype=torch.bool)),
                   "robust": bits(torch.tensor(certified_at(out["radius_units"], correct, threat.eps, db))),
                   "prediction": list(out["prediction"]), "radius": list(out["radius"]),
                   "radius_units": list(out["radius_units"])}
    if kw is not None:
        per_example["keywords"] = bits(torch.tensor(kw))
    clean_key, robust_key = track.headline_keys
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": CERTIFIED_KIND,
        "track": track.id,
        "metric": "accuracy",
        "headline": {"clean": clean_key, "robust": robust_key, "higher_is_better": True},
        "domain": track.domain,
        "dataset": track.dataset,
        "threat": threat.to_dict(),
        "certification": {
            "id": spec.id, "method": "randomized-smoothing", "sigma": spec.sigma, "n0": out["n0"], "n": out["n"],
            "alpha": spec.alpha, "radii": [float(r) for r in spec.radii], "units": threat.id,
            "full_counts": bool(full), "max_radius": max_radius(out.get("sigma", spec.sigma), out["n"], spec.alpha),
            **({"relative": True, "noise_sigma": out["sigma"]} if spec.relative else {}),
        },
        "model": model,
        "defense": defense,
        "defense_params": ckpt_config.get("recipe_params", {}),
        "n": len(correct),
        "seed": seed,
        "metrics": metrics,
        "per_example": per_example,
        "notes": notes,
        **cost_and_provenance(track, ckpt_config, eval_seconds=eval_seconds, device=device, seed=seed,
                              checkpoint_sha256=checkpoint_sha256, git=git),
    }


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(a), abs(b))


def certified_problems(doc: dict[str, Any]) -> list[str]:
    """Consistency of a (schema-valid) certified result beyond its schema: per-example lists of length n;
    an abstention has no radius and is never right; every radius inside (0, the largest CERTIFY can give
    with these counts]; absolute-L2 units equal to the radius; and the clean accuracy, the abstention rate,
    the headline certified accuracy and every point of the curve (its radii those of ``certification``)
    equal to what the per-example outcomes give."""
    out: list[str] = []
    m, n, pe, cert = doc["metrics"], doc["n"], doc["per_example"], doc["certification"]
    for key in ("clean", "robust", "prediction", "radius", "radius_units", "keywords"):
        if key in pe and len(pe[key]) != n:
            out.append(f"per_example/{key}: {len(pe[key])} entries for n={n}")
    if out:
        return out
    from bench.threat import ThreatModel

    try:
        threat = ThreatModel.from_dict(doc["threat"])
    except UserError as exc:
        return [f"threat: {exc}"]
    if threat.id != doc["threat"]["id"]:
        out.append(f"threat/id: {doc['threat']['id']!r} does not match its parameters (expected {threat.id!r})")
    if cert["units"] != threat.id:
        out.append(f"certification/units: {cert['units']!r} is not the threat's id {threat.id!r}")
    if threat.norm != "l2":
        out.append(f"threat: randomized smoothing certifies L2 balls, not {threat.norm}")
    correct = [b == "1" for b in pe["clean"]]
    top = max_radius(cert.get("noise_sigma", cert["sigma"]), cert["n"], cert["alpha"])
    absolute = threat.scale == "absolute" and threat.per == "example"
    for i, (p, r, u, ok) in enumerate(zip(pe["prediction"], pe["radius"], pe["radius_units"], correct)):
        if (p == ABSTAIN) != (r is None) or (p == ABSTAIN) != (u is None):
            out.append(f"per_example: example {i} has prediction {p} with radius {r} (units {u}): an abstention, "
                       "and only an abstention, has no radius")
            break
        if p == ABSTAIN and ok:
            out.append(f"per_example/clean: example {i} abstained but is counted right")
            break
        if r is not None and not (0 < r <= top * (1 + 1e-9)):
            out.append(f"per_example/radius: example {i} has radius {r}, outside (0, {top}] (the largest radius "
                       f"CERTIFY gives with sigma {cert['sigma']}, n {cert['n']}, alpha {cert['alpha']})")
            break
        if absolute and r is not None and not _close(r, u):
            out.append(f"per_example/radius_units: example {i} has {u}, not its L2 radius {r}")
            break
    units = pe["radius_units"]
    db = _is_db(doc["threat"])
    kw = [b == "1" for b in pe["keywords"]] if "keywords" in pe else None

    def check(name: str, have: float, flags: list[bool], among: list[bool] | None = None):
        want = _frac(flags, among)
        if not _close(have, want):
            out.append(f"metrics/{name}: {have} does not match the per-example outcomes ({want})")

    for role, key in (doc.get("headline") or {}).items():
        if role in ("clean", "robust") and not isinstance(m.get(key), (int, float)):
            out.append(f"headline/{role}: metrics has no number {key!r}")
    check("clean_accuracy", m["clean_accuracy"], correct)
    check("abstain_rate", m["abstain_rate"], [p == ABSTAIN for p in pe["prediction"]])
    head = certified_at(units, correct, threat.eps, db)
    check("certified_accuracy", m["certified_accuracy"], head)
    if pe["robust"] != "".join("1" if h else "0" for h in head):
        out.append(f"per_example/robust: differs from the examples right and certified at {threat.id}")
    radii = [p["radius"] for p in m["certified_curve"]]
    if radii != list(cert["radii"]):
        out.append(f"metrics/certified_curve: radii {radii} are not certification/radii {cert['radii']}")
    for i, pt in enumerate(m["certified_curve"]):
        flags = certified_at(units, correct, pt["radius"], db)
        check(f"certified_curve/{i} (radius {pt['radius']})", pt["certified_accuracy"], flags)
        if kw is not None and "certified_accuracy_keywords" in pt:
            check(f"certified_curve/{i}/keywords", pt["certified_accuracy_keywords"], flags, kw)
    if kw is not None:
        for key, flags in (("clean_accuracy_keywords", correct), ("certified_accuracy_keywords", head)):
            if key in m:
                check(key, m[key], flags, kw)
        if "n_keywords" in m and m["n_keywords"] != sum(kw):
            out.append(f"metrics/n_keywords: {m['n_keywords']} but per_example/keywords marks {sum(kw)}")
    return out


def eval_certified_track(track, model, data: ArrayData, idx: torch.Tensor, *, ckpt_config, ckpt_sha, model_id: str,
                         defense: str, seed: int, device, progress: bool, results, out, git) -> Path:
    """Certify on the track's fixed subset and write the result file (atomically, validated). The paper's
    sample counts are used on CUDA, the track's CPU-scaled ones otherwise."""
    from bench.results import write_result

    if track.metric != "accuracy" or getattr(model, "objective", "ce") != "ce":
        raise UserError(f"track {track.id}: randomized smoothing needs a classifier (accuracy), not {track.metric}")
    full = torch.device(device).type == "cuda"
    t0 = time.perf_counter()
    res = run_certify(model, data, idx, track, seed=seed, device=device, full=full, progress=progress)
    hook = getattr(model, "keyword_mask", None)
    keywords = hook(data.y) if callable(hook) else None
    doc = certified_document(track, res, data.y, model=model_id, defense=defense, seed=seed, ckpt_config=ckpt_config,
                             checkpoint_sha256=ckpt_sha, eval_seconds=time.perf_counter() - t0, device=device,
                             full=full, keywords=keywords, git=git)
    return write_result(doc, root=results, path=out)


__all__ = ["run_certify", "certified_metrics", "certified_document", "certified_problems", "eval_certified_track"]
