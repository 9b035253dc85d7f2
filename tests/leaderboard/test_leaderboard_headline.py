"""The leaderboard reads each file's declared headline, marks results of an unofficial suite, and the
result tables in README/docs are generated from results/ (a drifted number fails here)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from leaderboard.aggregate import UNOFFICIAL, collect, official_suite, row_of
from leaderboard.docs import doc_files, render

ROOT = Path(__file__).resolve().parents[2]


def _doc(digits_results, name="smallcnn__erm.json"):
    return json.loads((digits_results / "image/digits/linf-0.2" / name).read_text())


def test_row_uses_the_declared_headline(digits_results):
    doc = _doc(digits_results)
    assert doc["headline"]["robust"] == "robust_accuracy" and official_suite(doc)
    row = row_of(doc, "x.json")
    assert row["robust"] == doc["metrics"]["robust_accuracy"] and UNOFFICIAL not in row["flags"]
    kws = copy.deepcopy(doc)  # a KWS-style file: all-class numbers differ from the keyword-only headline
    kws["metrics"].update(clean_accuracy_keywords=0.99, robust_accuracy_keywords=0.0)
    kws["headline"] = {"clean": "clean_accuracy_keywords", "robust": "robust_accuracy_keywords",
                       "higher_is_better": True}
    row = row_of(kws, "x.json")
    assert (row["clean"], row["robust"], row["headline"]) == (0.99, 0.0, "robust_accuracy_keywords")


def test_files_without_a_headline_get_their_tracks(digits_results):
    """KWS files written before result files recorded the headline still show keyword-only accuracy."""
    doc = _doc(digits_results)
    doc.pop("headline")
    doc["track"] = "speech-kws-snr-30db"
    doc["metrics"].update(clean_accuracy_keywords=0.994, robust_accuracy_keywords=0.0)
    row = row_of(doc, "x.json")
    assert row["headline"] == "robust_accuracy_keywords"
    assert (row["clean"], row["robust"]) == (0.994, 0.0)
    del doc["metrics"]["robust_accuracy_keywords"]  # a file without those metrics keeps its own numbers
    assert row_of(doc, "x.json")["robust"] == doc["metrics"]["robust_accuracy"]


def test_a_weaker_suite_gets_the_unofficial_badge(digits_results):
    doc = _doc(digits_results)
    weak = copy.deepcopy(doc)
    weak["suite"] = [{"name": "pgd-20", "attack": "pgd", "params": {"steps": 20}}]
    assert not official_suite(weak)
    row = row_of(weak, "x.json")
    assert UNOFFICIAL in row["flags"].split(";") and "stronger attack" in row["flag_details"]
    fewer_queries = copy.deepcopy(doc)
    fewer_queries["suite"][-1]["params"]["queries"] = 100
    assert not official_suite(fewer_queries)


def test_validation_rejects_a_headline_the_metrics_lack(digits_results):
    from bench.results import problems

    doc = _doc(digits_results)
    doc["headline"]["robust"] = "robust_accuracy_keywords"
    assert any("headline/robust" in p for p in problems(doc))


def test_committed_doc_tables_match_the_results():
    """Every generated region of README.md and docs/*.md equals what results/ gives today."""
    df = collect(ROOT / "results").frame
    files = doc_files(ROOT)
    assert any("<!-- results:" in p.read_text() for p in files)
    for path in files:
        text = path.read_text()
        assert render(text, df, ROOT / "results") == text, f"{path.name}: a generated table differs from results/ (run xrobust docs)"


def test_an_edited_number_in_a_doc_table_is_caught():
    df = collect(ROOT / "results").frame
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- results: cross-domain -->")
    body_end = readme.index("<!-- /results -->", start)
    region = readme[start:body_end]
    digit = next(i for i, ch in enumerate(region) if ch.isdigit() and region[i - 1] in " (")
    edited = readme[:start + digit] + str((int(region[digit]) + 1) % 10) + readme[start + digit + 1:]
    assert render(edited, df, ROOT / "results") != edited and render(edited, df, ROOT / "results") == readme


def test_an_edited_number_in_the_perf_table_is_caught():
    """docs/attacks.md's timing table is results/perf/<track>.json, not typed numbers."""
    df = collect(ROOT / "results").frame
    doc = (ROOT / "docs" / "attacks.md").read_text()
    start = doc.index("<!-- results: perf image-mnist5k-linf-0.3 -->")
    body_end = doc.index("<!-- /results -->", start)
    perf = json.loads((ROOT / "results" / "perf" / "image-mnist5k-linf-0.3.json").read_text())
    assert f"| `limit_ratio` | {perf['ratios']['limit_ratio']:.3f} |" in doc[start:body_end]
    i = doc.index("| `limit_ratio` | ", start) + len("| `limit_ratio` | ")
    edited = doc[:i] + str((int(doc[i]) + 1) % 10) + doc[i + 1:]
    assert render(edited, df, ROOT / "results") == doc != edited


def test_unknown_region_is_a_user_error():
    from bench.errors import UserError

    with pytest.raises(UserError, match="unknown generated region"):
        render("<!-- results: pie-chart -->\n<!-- /results -->", collect(ROOT / "results").frame)


def test_cost_region_sums_the_published_cost_fields():
    """README's `run quick --train` cost table is the published files' train + eval seconds."""
    from leaderboard.docs import cost_markdown

    df = collect(ROOT / "results").frame
    md = cost_markdown(df)
    doc = json.loads((ROOT / "results/image/mnist5k/linf-0.3/smallcnn__pgd-at.json").read_text())
    tr, ev = doc["cost"]["train_seconds"], doc["cost"]["eval_seconds"]
    assert f"| image-mnist5k-linf-0.3 | pgd-at | {tr:.0f} | {ev:.0f} | {(tr + ev) / 60:.1f} |" in md
    from bench.registry import TRACKS

    wanted = [(t.id, r) for _, t in TRACKS.items() if t.quick and t.kind == "attack" for r in t.recipes]
    have = {(t, d) for t, d in zip(df["track"], df["defense"])}
    on_gpu = {(t, d) for t, d, dev in zip(df["track"], df["defense"], df["device"]) if str(dev).startswith("cuda")}
    total = sum(float(df[(df["track"] == t) & (df["defense"] == r)][c].iloc[0])
                for t, r in wanted if (t, r) in have and (t, r) not in on_gpu for c in ("train_seconds", "eval_seconds"))
    for t, r in on_gpu & set(wanted):  # made on a GPU: shown, not summed as CPU time
        assert f"| {t} | {r} | " in md and "(GPU)" in md.split(f"| {t} | {r} | ")[1].splitlines()[0]
    assert f"Published ones: {total / 3600:.1f} h" in md
    for t, r in wanted:
        if (t, r) not in have:
            assert f"| {t} | {r} | – | – | no published file |" in md
