"""Aggregation (results/ -> DataFrame) is pure and deterministic; rendering escapes untrusted strings."""

from __future__ import annotations

import argparse
import json
import shutil

import pandas as pd
import pytest

from bench.cli import COMMANDS, build_parser, main
from leaderboard.aggregate import collect, cross_domain
from leaderboard.build import build
from leaderboard.markdown import leaderboard_markdown
from leaderboard.site import index_html, track_html

XSS = "<script>alert(1)</script>"


def test_frame_has_one_row_per_result_with_file_numbers(digits_results):
    col = collect(digits_results)
    df = col.frame
    assert col.problems == () and col.files == 2 and len(df) == 2
    for r in df.to_dict("records"):
        doc = json.loads((digits_results / r["path"]).read_text())
        assert r["clean"] == doc["metrics"]["clean_accuracy"] and r["robust"] == doc["metrics"]["robust_accuracy"]
        assert r["attack:apgd-ce"] == doc["metrics"]["per_attack"]["apgd-ce"]
        assert r["official"] and r["headline"] == "robust_accuracy"
        assert r["checkpoint_sha256"] == doc["provenance"]["checkpoint_sha256"]
        assert r["metric"] == "accuracy" and r["track"] == "image-digits-linf-0.2"
    # rank 1 = the higher robust accuracy
    best = df.loc[df["robust"].idxmax()]
    assert best["rank"] == 1 and sorted(df["rank"]) == [1, 2]


def test_aggregation_is_deterministic(digits_results, tmp_path):
    """Same files -> same frame, Markdown, CSV, HTML and plot bytes, whatever the copy order or location."""
    other = tmp_path / "copy" / "results"
    for f in sorted(digits_results.rglob("*.json"), reverse=True):  # create files in the other order
        dst = other / f.relative_to(digits_results)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    a = build(digits_results, tmp_path / "site-a", markdown=tmp_path / "a.md")
    b = build(other, tmp_path / "site-b", markdown=tmp_path / "b.md")
    pd.testing.assert_frame_equal(a.collection.frame, b.collection.frame)
    assert (tmp_path / "a.md").read_bytes() == (tmp_path / "b.md").read_bytes()
    names = sorted(p.relative_to(a.site).as_posix() for p in a.site.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b.site).as_posix() for p in b.site.rglob("*") if p.is_file())
    assert {"index.html", "track-image-digits-linf-0.2.html", "leaderboard.csv", "LEADERBOARD.md",
            "plots/eps-image-digits-linf-0.2.png", "plots/clean-vs-robust.png", "plots/cost-vs-robust.png"} <= set(names)
    for n in names:
        assert (a.site / n).read_bytes() == (b.site / n).read_bytes(), n
    csv = pd.read_csv(a.csv)
    assert len(csv) == 2 and list(csv["defense"]) == list(a.collection.frame["defense"])


def test_markdown_tables(digits_results):
    df = collect(digits_results).frame
    text = leaderboard_markdown(df)
    pgd = df[df["defense"] == "pgd-at"].iloc[0]
    cell = f"{100 * pgd['robust']:.1f} ({100 * pgd['clean']:.1f})"
    assert f"| pgd-at | {cell} |" in text  # cross-domain row
    assert ("| rank | model | defense | clean % | robust % | robust 95% CI | p vs leader | apgd-ce | apgd-t | fab-t | square "
            "| train s | flags |") in text


def test_training_cost_table_from_perf_files(tmp_path):
    """results/perf/<track>-training.json becomes a cost table under its track; junk files are skipped."""
    import json

    from leaderboard.aggregate import training_costs

    perf = tmp_path / "perf"
    perf.mkdir()
    rows = [{"recipe": "erm", "replay": 1, "seconds_per_epoch": 8.0, "ratio_to_erm": 1.0},
            {"recipe": "free", "replay": 4, "seconds_per_epoch": 34.0, "ratio_to_erm": 4.25},
            {"recipe": "bad", "seconds_per_epoch": "NaN", "ratio_to_erm": 1.0}]
    (perf / "t-training.json").write_text(json.dumps({"track": "t", "kind": "training", "rows": rows}))
    (perf / "u-training.json").write_text("{not json")
    (perf / "v-training.json").write_text(json.dumps({"track": "v", "kind": "attacks", "rows": rows}))
    costs = training_costs(tmp_path)
    assert list(costs) == ["t"] and [r["recipe"] for r in costs["t"]] == ["erm", "free"]
    from leaderboard.markdown import cost_markdown

    assert "| free | 34.0 | 4.25 | 4 |" in cost_markdown(costs["t"])


def test_committed_leaderboard_shows_every_committed_result_and_cost():
    """The committed Markdown leaderboard is the one results/ gives: every result file's defense in its
    track's table, and each track's `perf --training` recipes in its cost table."""
    from pathlib import Path

    from leaderboard.aggregate import training_costs
    from leaderboard.corruption import collect_corruptions, corruption_markdown, corruption_mean_ranks
    from leaderboard.markdown import leaderboard_markdown

    root = Path(__file__).resolve().parents[2] / "results"
    text = (root / "LEADERBOARD.md").read_text()
    col = collect(root)
    cdf, bad = collect_corruptions(root)
    assert bad == []
    want = leaderboard_markdown(col.frame, col.problems, training_costs(root), corruption_mean_ranks(cdf))
    from leaderboard.certified import certified_markdown, collect_certified

    sdf, sbad = collect_certified(root)
    assert sbad == []
    assert text == want + ("\n" + corruption_markdown(cdf) if not cdf.empty else "") + \
        ("\n" + certified_markdown(sdf) if not sdf.empty else ""), "run xrobust leaderboard"
    for r in col.frame.to_dict("records"):
        section = text.split(f"### {r['track']}", 1)[1].split("\n### ", 1)[0]
        assert f"| {r['defense']} |" in section.split("Training cost", 1)[0], (r["track"], r["defense"])
    for track, rows in training_costs(root).items():
        if track in set(col.frame["track"]):
            section = text.split(f"### {track}", 1)[1].split("\n### ", 1)[0]
            for row in rows:
                assert f"| {row['recipe']} |" in section.split("Training cost", 1)[1], (track, row["recipe"])


def test_cross_domain_mean_rank_and_wer():
    """Mean rank averages per domain first; WER tracks rank lower numbers first."""
    rows = []
    for domain, track, metric, vals in [
        ("image", "img-a", "accuracy", {"erm": 0.0, "pgd-at": 0.5, "trades": 0.6}),
        ("image", "img-b", "accuracy", {"erm": 0.1, "pgd-at": 0.4, "trades": 0.3}),
        ("speech", "asr", "wer", {"erm": 1.1, "pgd-at": 0.4, "trades": 0.5}),
    ]:
        for d, v in vals.items():
            rows.append({"domain": domain, "track": track, "metric": metric, "defense": d, "model": "m",
                         "robust": v, "clean": 0.9 if metric == "accuracy" else 0.1})
    cd = cross_domain(pd.DataFrame(rows)).set_index("defense")
    # image: pgd-at ranks 2,1 -> 1.5; trades 1,2 -> 1.5; erm 3,3 -> 3. speech (WER): pgd-at 1, trades 2, erm 3.
    assert cd.loc["pgd-at", "mean_rank"] == pytest.approx((1.5 + 1) / 2)
    assert cd.loc["trades", "mean_rank"] == pytest.approx((1.5 + 2) / 2)
    assert cd.loc["erm", "mean_rank"] == pytest.approx(3.0)
    assert list(cd.index) == ["pgd-at", "trades", "erm"] and set(cd["domains"]) == {2}
    assert cd.loc["erm", "asr:robust"] == 1.1


def test_one_defense_track_shows_its_cell_but_ranks_nothing():
    """ERM alone on a second text track must not rank first there and lift its text mean rank."""
    rows = []
    for track, vals in [("txt-a", {"erm": 0.46, "pgd-at": 0.50}), ("txt-b", {"erm": 0.23}),
                        ("txt-c", {"freelb": 0.40})]:
        for d, v in vals.items():
            rows.append({"domain": "text", "track": track, "metric": "accuracy", "defense": d, "model": "m",
                         "robust": v, "clean": 0.8})
    cd = cross_domain(pd.DataFrame(rows)).set_index("defense")
    assert cd.loc["erm", "mean_rank"] == 2.0 and cd.loc["pgd-at", "mean_rank"] == 1.0
    assert cd.loc["erm", "txt-b:robust"] == 0.23
    assert cd.loc["freelb", "mean_rank"] != cd.loc["freelb", "mean_rank"] and cd.loc["freelb", "domains"] == 0
    assert list(cd.index) == ["pgd-at", "erm", "freelb"]  # unranked last
    from leaderboard.markdown import cross_domain_markdown

    assert "| freelb | – | – | 40.0 (80.0) | – | 0 |" in cross_domain_markdown(pd.DataFrame(rows).assign(
        dataset="d", threat="t", n=1))


def test_invalid_file_is_left_out_and_reported(digits_results, tmp_path, capsys):
    root = tmp_path / "results"
    shutil.copytree(digits_results, root)
    bad = root / "image/digits/linf-0.2/smallcnn__erm.json"
    doc = json.loads(bad.read_text())
    doc["metrics"]["robust_accuracy"] = 1.0
    bad.write_text(json.dumps(doc))
    (root / "image/digits/linf-0.2/notes.json").write_text("{not json")
    rc = main(["leaderboard", "--results", str(root), "--out", str(tmp_path / "site"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "smallcnn__erm.json: metrics: robust_accuracy 1.0 > clean_accuracy" in err
    assert "notes.json: not valid JSON" in err
    df = collect(root).frame
    assert list(df["defense"]) == ["pgd-at"]
    assert "Files left out" in (tmp_path / "site" / "index.html").read_text()


def test_run_quick_hook_signature_builds_default_site(digits_results, tmp_path):
    """`xrobust run quick --results results` calls the leaderboard handler with exactly these fields."""
    root = tmp_path / "results"
    shutil.copytree(digits_results, root)
    build_parser()  # loads the entry-point verbs
    rc = COMMANDS["leaderboard"][2](argparse.Namespace(results=str(root), user=None, out=None, markdown=None,
                                                       quiet=True))
    assert rc == 0
    assert (tmp_path / "site" / "index.html").is_file() and (root / "LEADERBOARD.md").is_file()


def test_untrusted_strings_are_escaped(xss_frame):
    df = xss_frame
    page = track_html(df, "image-digits-linf-0.2", None)
    index = index_html(df, {}, (f"bad.json: model {XSS}",), 1)
    md = leaderboard_markdown(df)
    for html_text in (page, index):
        assert "<script>alert" not in html_text and "<img src=x" not in html_text and "<b>" not in html_text
        assert "<svg" not in html_text
        assert html_text.count("<script>") == 1  # only the page's own sorting script
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page  # inside the badge's title attribute
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md


def test_empty_results_build_an_empty_site(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "site")]) == 0
    assert "No valid result files yet." in (tmp_path / "site" / "index.html").read_text()
    assert "No valid result files yet." in (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert "0 results" in capsys.readouterr().err


def test_perf_timings_are_not_result_files(tmp_path):
    from bench.results import result_files

    (tmp_path / "perf").mkdir()
    (tmp_path / "perf" / "t.json").write_text('{"track": "t", "rows": []}')
    (tmp_path / "image" / "d").mkdir(parents=True)
    (tmp_path / "image" / "d" / "x.json").write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in result_files(tmp_path)] == ["image/d/x.json"]
