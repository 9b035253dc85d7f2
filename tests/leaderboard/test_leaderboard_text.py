"""What a text-robustness researcher reads on a text board: the discrete attacks' own quality (success rate, words
changed, queries, sentence similarity) as columns only when some result reports it, and the adversarial texts of
the evidence samples on an examples page, changed words highlighted, every string escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results import problems
from leaderboard.aggregate import collect
from leaderboard.build import build
from leaderboard.examples import highlighted
from leaderboard.markdown import track_markdown
from leaderboard.site import track_table_html

ROOT = Path(__file__).resolve().parents[2]
ERM = ROOT / "results/text/rotten-tomatoes/emb-l2-0.05/tiny-bert__erm.json"
TRACK = "text-rt-emb-l2-0.05"
XSS = "<script>alert(1)</script>"


def text_doc(defense: str, stats: dict | None) -> dict:
    """The committed ERM file under another defense; ``stats``: its ``attack_stats`` (None: removed)."""
    doc = json.loads(ERM.read_text())
    doc["defense"] = defense
    m = doc["metrics"]
    if stats is None:
        m.pop("attack_stats", None)
    else:
        m["attack_stats"] = stats
    return doc


def place(root: Path, doc: dict) -> Path:
    path = root / "text/rotten-tomatoes/emb-l2-0.05" / f"{doc['model']}__{doc['defense']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    assert problems(doc, path) == []
    return path


def _header_row(text: str, defense: str) -> tuple[list[str], list[str]]:
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = next(line for line in lines if f"| {defense} |" in line)
    return header, [c.strip() for c in row.strip("|").split("|")]


PWWS = {"attack_success_rate": 0.625, "words_changed": 0.0912, "words_changed_median": 0.0833, "queries": 57.25,
        "sentence_similarity": 0.9137}


def test_attack_quality_columns_when_results_report_them(tmp_path):
    root = tmp_path / "results"
    place(root, text_doc("trades", {"word-sub": {"attack_success_rate": 0.2, "words_changed": 0.1, "queries": 9.0},
                                    "pwws": PWWS}))
    place(root, text_doc("erm", None))  # a file without them
    df = collect(root).frame
    text = track_markdown(df, TRACK)
    header, row = _header_row(text, "trades")
    cols = {h: i for i, h in enumerate(header)}
    want = {"pwws success %": "62.5", "pwws words changed %": "9.1", "pwws words changed % median": "8.3",
            "pwws queries": "57.2", "pwws similarity": "0.914", "word-sub success %": "20.0",
            "word-sub words changed %": "10.0", "word-sub queries": "9.0"}
    assert {h: row[cols[h]] for h in want} == want
    assert "word-sub similarity" not in cols and "chars changed" not in text.splitlines()[0]  # nobody reports them
    _, old = _header_row(text, "erm")
    assert [old[cols[h]] for h in want] == ["—"] * len(want)
    assert "Attack quality, as the discrete attacks report it" in text
    html = track_table_html(df[df["track"] == TRACK])
    assert "<th>pwws similarity</th>" in html and '<td data-sort="0.9137">0.914</td>' in html
    csv = df.to_csv(index=False).splitlines()[0]
    assert "quality:pwws:sentence_similarity" in csv and "quality:word-sub:queries" in csv


def test_no_attack_quality_columns_without_them(tmp_path):
    root = tmp_path / "results"
    place(root, text_doc("erm", None))
    df = collect(root).frame
    text = track_markdown(df, TRACK)
    assert "success %" not in text and "Attack quality" not in text
    assert not [c for c in df.columns if c.startswith("quality:")]
    assert "success %" not in track_table_html(df)


def test_committed_word_sub_stats_are_shown(tmp_path):
    """The committed text files report word-sub's success rate, words changed and queries: the board shows them."""
    root = tmp_path / "results"
    stats = json.loads(ERM.read_text())["metrics"]["attack_stats"]["word-sub"]
    place(root, text_doc("erm", {"word-sub": stats}))
    text = track_markdown(collect(root).frame, TRACK)
    header, row = _header_row(text, "erm")
    cols = {h: i for i, h in enumerate(header)}
    assert row[cols["word-sub success %"]] == f"{100 * stats['attack_success_rate']:.1f}"
    assert row[cols["word-sub queries"]] == f"{stats['queries']:.1f}"
    assert "word-sub similarity" not in cols


def write_text_samples_by_hand(result: Path, pairs: list[tuple[str, str]], attack: str = "pwws") -> Path:
    """A text samples folder beside ``result`` as ``xrobust eval --samples`` writes it (bench.samples)."""
    from domains.text import constraints as C
    from domains.text.samples import changes

    doc = json.loads(result.read_text())
    folder = result.with_suffix(".samples")
    folder.mkdir()
    samples = []
    for k, (orig, adv) in enumerate(pairs):
        samples.append({"index": 300 + k, "position": k, "attack": attack, "original": orig, "adversarial": adv,
                        "unit": "word", "changes": changes(orig, adv), "words": len(C.words(orig)), "budget": 2,
                        "label": "fresh", "clean_prediction": "fresh", "adversarial_prediction": "rotten",
                        "clean_true_prob": 0.81, "adversarial_true_prob": 0.32, "sentence_similarity": 0.9,
                        "clean_errors": 0.0, "adv_errors": 1.0})
    manifest = {"format": "xrobust-samples/1", "kind": "text", "result": result.name, "track": doc["track"],
                "domain": "text", "model": doc["model"], "defense": doc["defense"], "threat": doc["threat"]["id"],
                "checkpoint_sha256": doc["provenance"].get("checkpoint_sha256"),
                "result_timestamp": doc["provenance"]["timestamp"], "task": "classification", "samples": samples}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


ORIGINAL = f"a {XSS} dull film & more"
ADVERSARIAL = "a <script>prompt(1)</script> boring film & more"


@pytest.fixture
def board_with_text_samples(tmp_path):
    root = tmp_path / "results"
    path = place(root, text_doc("pgd-at", {"pwws": PWWS}))
    folder = write_text_samples_by_hand(path, [(ORIGINAL, ADVERSARIAL), ("a fine story", "a good story")])
    built = build(root, tmp_path / "site", markdown=tmp_path / "L.md")
    return root, folder, built


def test_examples_page_escapes_and_highlights(board_with_text_samples):
    root, folder, built = board_with_text_samples
    assert built.collection.problems == ()
    page = built.site / f"examples-{TRACK}.html"
    assert page in built.pages and not (built.site / f"audio-{TRACK}.html").exists()
    html = page.read_text()
    assert XSS not in html and "<script>prompt" not in html
    assert ('a &lt;script&gt;<del class="chg">alert</del>(1)&lt;/script&gt; <del class="chg">dull</del> film '
            "&amp; more") in html
    assert ('a &lt;script&gt;<ins class="chg">prompt</ins>(1)&lt;/script&gt; <ins class="chg">boring</ins> film '
            "&amp; more") in html
    assert html.count('<tr class="sample-row">') == 2 and "rotten (32.0%)" in html and "2 of 2 allowed" in html
    assert html.count("<script>") == 1  # the page's own sorting script, nothing from the manifest
    dest = "samples/published/text/rotten-tomatoes/emb-l2-0.05/tiny-bert__pgd-at.samples"
    assert (built.site / dest / "manifest.json").read_bytes() == (folder / "manifest.json").read_bytes()
    track = (built.site / f"track-{TRACK}.html").read_text()
    assert f'class="examples-link" href="examples-{TRACK}.html"' in track and "audio-link" not in track
    assert "on the site's examples page of this track, from: text/rotten-tomatoes/emb-l2-0.05/tiny-bert\\_\\_pgd-at" \
        in built.markdown.read_text()


def test_highlight_never_trusts_an_offset():
    assert highlighted("<b>x</b> y", [(3, "x"), (0, "nope"), (9, "y")], "ins") == \
        '&lt;b&gt;<ins class="chg">x</ins>&lt;/b&gt; <ins class="chg">y</ins>'


def test_tampered_text_samples_are_left_out_and_reported(board_with_text_samples):
    root, folder, _ = board_with_text_samples
    man = json.loads((folder / "manifest.json").read_text())
    man["samples"][1]["adversarial"] = "a good tale"  # a second word changed after the manifest was written
    (folder / "manifest.json").write_text(json.dumps(man))
    built = build(root, root.parent / "site2", markdown=root.parent / "L2.md")
    shown = "text/rotten-tomatoes/emb-l2-0.05/tiny-bert__pgd-at.samples"
    assert any(p.startswith(f"{shown}: manifest.json: sample 301: the recorded changes do not turn") for p in
               built.collection.problems), built.collection.problems
    assert not (built.site / f"examples-{TRACK}.html").exists() and len(built.collection.frame) == 1
