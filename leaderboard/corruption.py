"""The common-corruption boards: corruption result files -> tables (Markdown and HTML).

RobustBench's corruption board (CIFAR-10-C, ImageNet-C) shows the mean accuracy over corruption types
and severities; Hendrycks & Dietterich (2019) also report the mean corruption error (mCE) relative to
a baseline. Here each corruption track gets a table (rank by mean corruption accuracy, mCE relative
to the same model's ERM on that track, one column per corruption averaged over its severities), and
a cross-domain table ranks the defenses per domain as the attack board does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.corruption_eval import mean_corruption_error
from bench.results import is_corruption
from leaderboard.documents import kind_documents

COLUMNS = ["domain", "track", "dataset", "corruption_set", "rank", "model", "defense", "n", "clean", "corruption",
           "ci", "mce", "seeds", "n_cells", "train_seconds", "eval_seconds", "commit", "seed", "checkpoint_sha256", "path", "source"]
#: the defense mCE is measured against (its own value is 100 by definition)
BASELINE = "erm"


def collect_corruptions(root: str | Path, user: str | Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """One row per valid corruption result under ``root`` (and ``user``, marked like the attack board's)."""
    from leaderboard.aggregate import USER_MARK

    docs, bad = kind_documents(root, user, is_corruption)
    base = {(d["track"], d["model"]): d for d, s in docs if d["defense"] == BASELINE and not s.endswith("\0user")}
    rows = []
    for doc, shown in docs:
        user_row = shown.endswith("\0user")
        m, prov = doc["metrics"], doc["provenance"]
        ref = base.get((doc["track"], doc["model"]))
        row = {
            "domain": doc["domain"], "track": doc["track"], "dataset": doc["dataset"],
            "corruption_set": doc["corruption_set"]["id"], "model": doc["model"],
            "defense": doc["defense"] + (USER_MARK if user_row else ""), "n": doc["n"],
            "clean": m["clean_accuracy"], "corruption": m["corruption_accuracy"],
            "mce": mean_corruption_error(doc, ref) if ref is not None else math.nan,
            "ci": _ci(doc),
            "n_cells": sum(len(v) for v in m["per_corruption"].values()),
            "seeds": seeds_cell(doc),
            "train_seconds": doc["cost"].get("train_seconds"), "eval_seconds": doc["cost"].get("eval_seconds"),
            "commit": prov.get("git_commit"), "seed": doc["seed"], "checkpoint_sha256": prov.get("checkpoint_sha256"),
            "path": shown.removesuffix("\0user"), "source": "user" if user_row else "published",
        }
        for name, acc in (m.get("per_corruption_mean") or {}).items():
            row[f"c:{name}"] = acc
        row.update({f"ci:{name}": ci for name, ci in _corruption_cis(doc).items()})
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=COLUMNS), bad
    df = pd.DataFrame(rows)
    df["mce"] = df["mce"].astype(float)
    df["rank"] = df["corruption"].groupby(df["track"]).rank(method="min", ascending=False).astype(int)
    per = sorted(c for c in df.columns if c.startswith("c:"))
    cis = sorted(c for c in df.columns if c.startswith("ci:"))
    df = df[COLUMNS + per + cis].sort_values(["domain", "track", "rank", "model", "defense"], kind="mergesort")
    return df.reset_index(drop=True), bad


def _corruption_cis(doc: dict[str, Any]) -> dict[str, str]:
    """Per corruption: the bootstrap interval (over examples) of its accuracy averaged over severities."""
    from bench.stats import bootstrap_mean

    cells = (doc.get("per_example") or {}).get("cells", {})
    by_name: dict[str, list[str]] = {}
    for cid, bits in cells.items():
        by_name.setdefault(cid.rsplit("@", 1)[0], []).append(bits)
    out = {}
    for name, rows in by_name.items():
        per = [sum(b[i] == "1" for b in rows) / len(rows) for i in range(len(rows[0]))]
        lo, hi = bootstrap_mean(per, seed=0)
        out[name] = f"95% CI [{100 * lo:.1f}, {100 * hi:.1f}]"
    return out


def _ci(doc: dict[str, Any]) -> str:
    """The 95% interval of the corruption accuracy: percentile bootstrap over examples of each example's
    mean over the cells (from the file's per-example outcomes, so old files get one too)."""
    from bench.stats import bootstrap_mean

    cells = list((doc.get("per_example") or {}).get("cells", {}).values())
    if not cells:
        return ""
    n = len(cells[0])
    per = [sum(c[i] == "1" for c in cells) / len(cells) for i in range(n)]
    lo, hi = bootstrap_mean(per, seed=0)
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def seeds_cell(doc: dict[str, Any]) -> str:
    """``mean ± sd (k seeds)`` of the headline robust number across training seeds ('' for one seed)."""
    b = doc.get("seeds")
    if not b:
        return ""
    return f"{100 * b['robust_mean']:.1f} ± {100 * b['robust_sd']:.1f} ({len(b['runs'])} seeds)"


def corruption_columns(sub: pd.DataFrame) -> list[str]:
    return [c for c in sub.columns if c.startswith("c:") and sub[c].notna().any()]


def cross_domain_corruption(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = defenses; per corruption track its best model's corruption (and clean) accuracy; mean rank
    averaged per domain first, as :func:`leaderboard.aggregate.cross_domain` does for attacks."""
    tracks = sorted(df[["domain", "track"]].drop_duplicates().itertuples(index=False))
    defenses = sorted(df["defense"].unique())
    cols: dict[str, Any] = {}
    ranks: dict[str, dict[str, list[float]]] = {}
    for domain, track in tracks:
        best = df[df["track"] == track].sort_values(["corruption", "clean"], ascending=False, kind="mergesort") \
            .drop_duplicates("defense").set_index("defense")
        cols[f"{track}:corruption"], cols[f"{track}:clean"] = best["corruption"], best["clean"]
        cols[f"{track}:ci"] = best["ci"]
        if len(best) < 2:
            continue
        for d, r in best["corruption"].rank(method="min", ascending=False).items():
            ranks.setdefault(d, {}).setdefault(domain, []).append(float(r))
    out = pd.DataFrame(cols, index=pd.Index(defenses, name="defense"))
    out["mean_rank"] = [sum(sum(v) / len(v) for v in ranks[d].values()) / len(ranks[d]) if d in ranks else math.nan
                        for d in defenses]
    out["domains"] = [len(ranks.get(d, {})) for d in defenses]
    return out.reset_index().sort_values(["mean_rank", "defense"], kind="mergesort").reset_index(drop=True)


def corruption_mean_ranks(df: pd.DataFrame) -> dict[str, float]:
    """Defense -> its mean rank on the corruption tracks (the cross-domain corruption table's), for the
    column next to the attack board's mean rank; empty without corruption results."""
    if df.empty:
        return {}
    cd = cross_domain_corruption(df)
    return {d: float(r) for d, r in zip(cd["defense"], cd["mean_rank"]) if not math.isnan(r)}


def _wilson_title(v, n) -> str:
    from bench.stats import wilson_of

    lo, hi = wilson_of(float(v), int(n))
    return "" if math.isnan(lo) else f"95% CI [{100 * lo:.1f}, {100 * hi:.1f}]"


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _mce(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


NOTE = ("Corruption accuracy: mean over every (corruption, severity) cell of the track, on the same fixed "
        "evaluation subset as the attack track whose checkpoints it evaluates. mCE (Hendrycks & Dietterich 2019): "
        "the corruption errors summed over severities relative to the same model's ERM, averaged over corruptions, "
        "in % (ERM = 100; lower is better). 95% CI: percentile bootstrap over examples. Across seeds: "
        "mean ± sd of the corruption accuracy over training seeds, "
        "when the recipe was trained with several. Per-corruption columns: accuracy averaged over severities.")


def corruption_markdown(df: pd.DataFrame, heading: bool = True) -> str:
    """The corruption section of LEADERBOARD.md ('' without corruption results); ``heading=False``: without
    the section title and note (for a generated region of the docs)."""
    from leaderboard.markdown import md

    if df.empty:
        return ""
    out = ["## Common corruptions", "", NOTE, ""] if heading else []
    out += ["### Cross-domain (corruption accuracy %, clean in parentheses)", ""]
    cd = cross_domain_corruption(df)
    tracks = [t for t in df["track"].drop_duplicates()]
    out.append("| defense | " + " | ".join(md(t) for t in tracks) + " | mean rank | domains |")
    out.append("|---|" + "---|" * (len(tracks) + 2))
    for r in cd.to_dict("records"):
        cells = [f"{_pct(r[f'{t}:corruption'])} ({_pct(r[f'{t}:clean'])})" if not math.isnan(r[f"{t}:corruption"])
                 else "–" for t in tracks]
        rank = "–" if math.isnan(r["mean_rank"]) else f"{r['mean_rank']:.2f}"
        out.append(f"| {md(r['defense'])} | " + " | ".join(cells) + f" | {rank} | {r['domains']} |")
    for track in tracks:
        sub = df[df["track"] == track]
        per = corruption_columns(sub)
        first = sub.iloc[0]
        out += ["", f"### {md(track)}", "",
                f"dataset {md(first['dataset'])} · corruption set {md(first['corruption_set'])} · n {int(first['n'])} "
                f"· {int(first['n_cells'])} cells", ""]
        out.append("| rank | model | defense | clean % | corruption % | 95% CI | mCE | across seeds % | "
                   + " | ".join(md(c[2:]) for c in per) + " |")
        out.append("|---|---|---|---|---|---|---|---|" + "---|" * len(per))
        for r in sub.to_dict("records"):
            out.append(f"| {r['rank']} | {md(r['model'])} | {md(r['defense'])} | {_pct(r['clean'])} | "
                       f"{_pct(r['corruption'])} | {r['ci']} | {_mce(r['mce'])} | {r['seeds']} | "
                       + " | ".join(_pct(r[c]) for c in per) + " |")
    return "\n".join(out) + "\n"


def corruption_html(df: pd.DataFrame) -> str:
    """The corruption boards of the site's index page ('' without corruption results)."""
    from leaderboard.site import _num_attr, _table, _td, e

    if df.empty:
        return ""
    tracks = [t for t in df["track"].drop_duplicates()]
    body = ['<h2 id="corruptions">Common corruptions</h2>', f'<p class="note">{e(NOTE)}</p>']
    cd = cross_domain_corruption(df)
    header = [("defense", "t")] + [(e(t), "") for t in tracks] + [("mean rank", ""), ("domains", "")]
    rows = []
    for r in cd.to_dict("records"):
        cells = [_td(r["defense"], cls="t")]
        for t in tracks:
            v = r[f"{t}:corruption"]
            ci = r.get(f"{t}:ci")
            cells.append(_td("–" if math.isnan(v) else f"{_pct(v)} ({_pct(r[f'{t}:clean'])})", sort=_num_attr(v),
                             title=f"corruption accuracy 95% CI {ci}" if isinstance(ci, str) and ci else ""))
        cells += [_td("–" if math.isnan(r["mean_rank"]) else f"{r['mean_rank']:.2f}", sort=_num_attr(r["mean_rank"])),
                  _td(str(r["domains"]))]
        rows.append('<tr class="result-row">' + "".join(cells) + "</tr>")
    body.append(_table("corruption-cross-domain", header, rows))
    for i, track in enumerate(tracks):
        sub = df[df["track"] == track]
        per = corruption_columns(sub)
        first = sub.iloc[0]
        body.append(f'<h3>{e(track)}</h3><p class="sub">dataset {e(first["dataset"])} · corruption set '
                    f'{e(first["corruption_set"])} · n {e(int(first["n"]))} · {e(int(first["n_cells"]))} cells</p>')
        header = [("rank", ""), ("model", "t"), ("defense", "t"), ("clean %", ""), ("corruption %", ""),
                  ("95% CI", ""), ("mCE", ""), ("across seeds %", "")] + [(e(c[2:]), "") for c in per]
        rows = []
        for r in sub.to_dict("records"):
            cells = [_td(str(r["rank"]), sort=r["rank"]), _td(r["model"], cls="t"), _td(r["defense"], cls="t"),
                     _td(_pct(r["clean"]), sort=_num_attr(r["clean"]), title=_wilson_title(r["clean"], r["n"])),
                     _td(_pct(r["corruption"]), sort=_num_attr(r["corruption"])),
                     _td(r["ci"]), _td(_mce(r["mce"]), sort=_num_attr(r["mce"])), _td(r["seeds"])]
            cells += [_td(_pct(r[c]), sort=_num_attr(r[c]), title=r.get("ci:" + c[2:]) or "") for c in per]
            rows.append('<tr class="result-row">' + "".join(cells) + "</tr>")
        body.append(_table(f"corruption-{i}", header, rows))
    return "\n".join(body)
