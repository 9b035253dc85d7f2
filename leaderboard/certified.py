"""The certified-robustness boards: certified result files (randomized smoothing) -> tables and curves.

Cohen, Rosenfeld & Kolter (2019) report *certified accuracy at radius r* (the share of test examples
the smoothed classifier gets right with a certificate of at least r; abstentions count as errors) as
a curve over r, one per noise level. Here each domain gets a table (one row per result: track and
noise level, model, defense, sample counts, clean accuracy of the smoothed classifier, certified
accuracy at each radius) and a plot of accuracy vs radius. Radii are in the units of the track's
threat eps: L2 on pixels, dB SNR per utterance on waveforms (larger dB = smaller radius), a fraction
of the embedding scale per token in text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import is_certified
from leaderboard.documents import kind_documents

COLUMNS = ["domain", "track", "dataset", "units", "sigma", "model", "defense", "n", "n0", "samples", "alpha",
           "full_counts", "headline_key", "clean", "certified", "headline_radius", "abstain", "curve", "keywords",
           "eval_seconds", "train_seconds", "commit", "seed", "checkpoint_sha256", "path", "source"]

NOTE = ("Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): the smoothed classifier predicts the class the base "
        "model gives most often under Gaussian noise of standard deviation sigma on the input z (pixels, waveform, "
        "token embeddings); CERTIFY selects it from n0 noisy samples and certifies L2 radius sigma·Φ⁻¹(p̲) where p̲ is "
        "the one-sided Clopper-Pearson lower bound (1 - alpha) on its probability from n further samples. Certified "
        "accuracy at r: right and certified at radius r or more; abstentions count as errors; clean = at r = 0. "
        "Radii are in the units of the track's threat eps: L2 (image), dB SNR per utterance (speech; larger dB = "
        "smaller radius), fraction of the embedding scale per token (text). Speech rows are keyword-only. "
        "With n samples no radius above sigma·Φ⁻¹(alpha^(1/n)) can be certified.")


def collect_certified(root: str | Path, user: str | Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per valid certified result under ``root`` (and ``user``, marked like the attack board's)."""
    from leaderboard.aggregate import USER_MARK

    docs, bad = kind_documents(root, user, is_certified)
    rows = []
    for doc, shown in docs:
        user_row = shown.endswith("\0user")
        m, cert, prov, head = doc["metrics"], doc["certification"], doc["provenance"], doc["headline"]
        kw = head["robust"].endswith("_keywords")
        key = "certified_accuracy_keywords" if kw else "certified_accuracy"
        rows.append({
            "domain": doc["domain"], "track": doc["track"], "dataset": doc["dataset"], "units": cert["units"],
            "sigma": cert["sigma"], "model": doc["model"], "defense": doc["defense"] + (USER_MARK if user_row else ""),
            "n": doc["n"], "n0": cert["n0"], "samples": cert["n"], "alpha": cert["alpha"],
            "full_counts": cert["full_counts"], "headline_key": head["robust"], "clean": m[head["clean"]],
            "certified": m[head["robust"]], "headline_radius": doc["threat"]["eps"], "abstain": m["abstain_rate"],
            "curve": json.dumps([[p["radius"], p.get(key, p["certified_accuracy"])] for p in m["certified_curve"]]),
            "keywords": kw,
            "eval_seconds": doc["cost"].get("eval_seconds"), "train_seconds": doc["cost"].get("train_seconds"),
            "commit": prov.get("git_commit"), "seed": doc["seed"], "checkpoint_sha256": prov.get("checkpoint_sha256"),
            "path": shown.removesuffix("\0user"), "source": "user" if user_row else "published",
        })
    if not rows:
        return pd.DataFrame(columns=COLUMNS), bad
    df = pd.DataFrame(rows)[COLUMNS].sort_values(["domain", "track", "certified", "model", "defense"],
                                                 ascending=[True, True, False, True, True], kind="mergesort")
    return df.reset_index(drop=True), bad


def _unit_label(units: str) -> str:
    if units.startswith("snr-"):
        return "dB SNR"
    if units.startswith("emb-"):
        return "× embedding scale per token"
    return "L2"


def _radius(r: float, units: str) -> str:
    return f"{r:g} dB" if units.startswith("snr-") else f"{r:g}"


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def domain_radii(sub: pd.DataFrame) -> list[tuple[str, float]]:
    """The (units, radius) columns of a domain's table, in the order of the tracks' curves."""
    out: list[tuple[str, float]] = []
    for units, curve in zip(sub["units"], sub["curve"]):
        for r, _ in json.loads(curve):
            if (units, r) not in out:
                out.append((units, r))
    return out


def _cells(row: dict[str, Any], radii: list[tuple[str, float]]) -> list[str]:
    curve = {r: a for r, a in json.loads(row["curve"])}
    return [_pct(curve[r]) if u == row["units"] and r in curve else "–" for u, r in radii]


def _counts(row: dict[str, Any]) -> str:
    return f"{row['n0']}/{row['samples']:,}, α {row['alpha']:g}" + (" (GPU)" if row["full_counts"] else "")


def certified_markdown(df: pd.DataFrame, heading: bool = True) -> str:
    """The certified section of LEADERBOARD.md ('' without certified results); ``heading=False``: without the
    section title and note (for a generated region of the docs)."""
    from leaderboard.markdown import md

    if df.empty:
        return ""
    out = ["## Certified robustness (randomized smoothing)", "", NOTE, ""] if heading else []
    for domain in df["domain"].drop_duplicates():
        sub = df[df["domain"] == domain]
        radii = domain_radii(sub)
        out += [f"### {md(domain)}: certified accuracy % at radius", ""]
        out.append("| track | σ | model | defense | n | n0/n | clean % | headline % | "
                   + " | ".join(f"{_radius(r, u)}" for u, r in radii) + " |")
        out.append("|---|---|---|---|---|---|---|---|" + "---|" * len(radii))
        for r in sub.to_dict("records"):
            head = f"{_pct(r['certified'])} @ {_radius(r['headline_radius'], r['units'])}"
            out.append(f"| {md(r['track'])} | {r['sigma']:g} | {md(r['model'])} | {md(r['defense'])} | {r['n']} | "
                       f"{_counts(r)} | {_pct(r['clean'])} | {head} | " + " | ".join(_cells(r, radii)) + " |")
        units = sorted(set(sub["units"]))
        out += ["", f"Radii: {', '.join(f'{_unit_label(u)} ({u})' for u in units)}"
                + ("; keyword classes only." if sub["keywords"].any() else "."), ""]
    return "\n".join(out)


def certified_plots(df: pd.DataFrame, folder: Path) -> dict[str, Path]:
    """One accuracy-vs-radius plot per domain (``certified-<domain>.png``); empty without results."""
    from leaderboard.plots import certified_curve

    out = {}
    for domain in df["domain"].drop_duplicates():
        p = certified_curve(df[df["domain"] == domain], domain, folder / f"certified-{domain}.png")
        if p is not None:
            out[domain] = p
    return out


def certified_html(df: pd.DataFrame, plots: dict[str, str] | None = None) -> str:
    """The certified boards of the site's index page ('' without certified results); ``plots``: domain -> the
    plot's path relative to the page."""
    from leaderboard.site import _num_attr, _table, _td, e

    if df.empty:
        return ""
    body = ['<h2 id="certified">Certified robustness (randomized smoothing)</h2>', f'<p class="note">{e(NOTE)}</p>']
    for i, domain in enumerate(df["domain"].drop_duplicates()):
        sub = df[df["domain"] == domain]
        radii = domain_radii(sub)
        body.append(f"<h3>{e(domain)}: certified accuracy % at radius</h3>")
        header = [("track", "t"), ("σ", ""), ("model", "t"), ("defense", "t"), ("n", ""), ("n0/n", "t"),
                  ("clean %", ""), ("headline %", "")] + [(e(_radius(r, u)), "") for u, r in radii]
        rows = []
        for r in sub.to_dict("records"):
            cells = [_td(r["track"], cls="t"), _td(f"{r['sigma']:g}", sort=r["sigma"]), _td(r["model"], cls="t"),
                     _td(r["defense"], cls="t"), _td(str(r["n"]), sort=r["n"]), _td(_counts(r), cls="t"),
                     _td(_pct(r["clean"]), sort=_num_attr(r["clean"])),
                     _td(f"{_pct(r['certified'])} @ {_radius(r['headline_radius'], r['units'])}",
                         sort=_num_attr(r["certified"]))]
            cells += [_td(c) for c in _cells(r, radii)]
            rows.append('<tr class="result-row">' + "".join(cells) + "</tr>")
        body.append(_table(f"certified-{i}", header, rows))
        if plots and domain in plots:
            body.append(f'<div class="plots"><img src="{e(plots[domain])}" '
                        f'alt="{e(domain)}: certified accuracy vs radius"></div>')
    return "\n".join(body)


__all__ = ["collect_certified", "certified_markdown", "certified_html", "certified_plots", "NOTE"]
