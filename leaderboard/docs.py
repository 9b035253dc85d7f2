"""Numbers in README and docs come from ``results/``: tables between markers are regenerated.

A Markdown file marks a generated region with

    <!-- results: cross-domain -->
    ...table...
    <!-- /results -->

(``cross-domain``: the cross-domain table of the leaderboard; ``track <id>``: that track's table;
``perf <id>``: the attack timings of ``results/perf/<id>.json`` written by ``xrobust perf``;
``corruptions``: the corruption boards; ``certified``: the certified-accuracy boards (randomized smoothing);
``cost quick``: what ``xrobust run quick --train`` costs, from the published files' cost fields).
``xrobust docs`` rewrites every region of README.md and docs/*.md from the result files, and the
test suite fails when a committed region differs from what the files give (one edited number is
enough), so a table in the docs is never typed by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

REGION = re.compile(r"(<!-- results: (?P<what>[^>]+?) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def perf_markdown(doc: dict) -> str:
    """An ``xrobust perf`` document as Markdown: the timings, the ratios, the machine."""
    lines = ["| measurement | seconds | robust acc (batch) |", "|---|---|---|"]
    for r in doc["rows"]:
        acc = "" if r.get("robust_accuracy") is None else f"{r['robust_accuracy']:.3f}"
        lines.append(f"| {r['name']} | {r['seconds']:.3f} | {acc} |")
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| `{k}` | {v:.3f} |" for k, v in doc["ratios"].items()]
    m = doc["machine"]
    lines += ["", f"Machine: {m['device']}, {m.get('cpu', m.get('machine', '?'))}, load average "
                  f"{m.get('load_average_1m', '?')}; batch {doc['batch_size']}, {doc['threat']}, K = {doc['steps']}, "
                  f"median of {doc['repeats']} interleaved rounds."]
    return "\n".join(lines)


def device_note(df: pd.DataFrame, names: list[str]) -> str:
    """The distinct devices the results ``<track>/<recipe>`` were made on."""
    devs = sorted({str(d) for t_r in names for d in df[(df["track"] + "/" + df["defense"]) == t_r]["device"]})
    return ", ".join(devs)


def cost_markdown(df: pd.DataFrame) -> str:
    """Train + evaluation seconds of every quick track's default recipes, from the published files."""
    from bench.registry import TRACKS

    lines = ["| track | recipe | train s | eval s | total min |", "|---|---|---|---|---|"]
    total, missing, gpu = 0.0, [], []
    for _, track in TRACKS.items():
        if not track.quick or track.kind != "attack":
            continue
        for recipe in track.recipes:
            row = df[(df["track"] == track.id) & (df["defense"] == recipe) & (df["model"] == track.model)]
            if row.empty:
                lines.append(f"| {track.id} | {recipe} | – | – | no published file |")
                missing.append(f"{track.id}/{recipe}")
                continue
            tr, ev = float(row["train_seconds"].iloc[0]), float(row["eval_seconds"].iloc[0])
            device = str(row["device"].iloc[0] or "") if "device" in row else ""
            if device.startswith("cuda"):  # made on a GPU machine: not a CPU cost
                gpu.append(f"{track.id}/{recipe}")
                lines.append(f"| {track.id} | {recipe} | {tr:.0f} (GPU) | {ev:.0f} (GPU) | – |")
                continue
            total += tr + ev
            lines.append(f"| {track.id} | {recipe} | {tr:.0f} | {ev:.0f} | {(tr + ev) / 60:.1f} |")
    lines += ["", f"Published ones: {total / 3600:.1f} h on one core in all"
                  + (f"; not counted: {', '.join(missing)}" if missing else "")
                  + (f"; made on a GPU ({device_note(df, gpu)}), not counted: {len(gpu)}" if gpu else "") + "."]
    return "\n".join(lines)


def render_region(what: str, df: pd.DataFrame, results: str | Path = "results") -> str:
    import json

    from bench.errors import UserError
    from leaderboard.markdown import cross_domain_markdown, track_markdown

    words = what.split()
    if words == ["cross-domain"]:
        from leaderboard.corruption import collect_corruptions, corruption_mean_ranks

        return cross_domain_markdown(df, corruption_mean_ranks(collect_corruptions(results)[0]))
    if len(words) == 2 and words[0] == "track":
        if words[1] not in set(df["track"]):
            return f"(no result file of track {words[1]} under results/)"
        return track_markdown(df, words[1])
    if len(words) == 2 and words[0] == "perf":
        path = Path(results) / "perf" / f"{words[1]}.json"
        if not path.is_file():
            return f"(no results/perf/{words[1]}.json)"
        return perf_markdown(json.loads(path.read_text()))
    if words == ["cost", "quick"]:
        return cost_markdown(df)
    if words == ["corruptions"]:
        from leaderboard.corruption import collect_corruptions, corruption_markdown

        cdf, _ = collect_corruptions(results)
        return corruption_markdown(cdf, heading=False).rstrip("\n") if not cdf.empty else "(no corruption results)"
    if words == ["certified"]:
        from leaderboard.certified import certified_markdown, collect_certified

        sdf, _ = collect_certified(results)
        return certified_markdown(sdf, heading=False).rstrip("\n") if not sdf.empty else "(no certified results)"
    raise UserError(f"unknown generated region {what!r}: expected 'cross-domain', 'track <id>', 'perf <id>', "
                    "'cost quick', 'corruptions' or 'certified'")


def render(text: str, df: pd.DataFrame, results: str | Path = "results") -> str:
    """``text`` with every marked region regenerated from ``df`` (the leaderboard frame of
    ``results``) and the perf files under ``results``."""
    return REGION.sub(lambda m: m.group(1) + render_region(m.group("what"), df, results) + "\n" + m.group(4), text)


def doc_files(root: str | Path = ".") -> list[Path]:
    root = Path(root)
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.exists()]


def update(results: str | Path = "results", root: str | Path = ".") -> list[Path]:
    """Regenerate the regions of README.md and docs/*.md; returns the files that changed."""
    from bench.checkpoint import atomic_write_bytes
    from leaderboard.aggregate import collect

    df = collect(results).frame
    changed = []
    for path in doc_files(root):
        old = path.read_text()
        new = render(old, df, results)
        if new != old:
            atomic_write_bytes(path, new.encode())
            changed.append(path)
    return changed
