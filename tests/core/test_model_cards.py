"""Model cards (issue 15): the schema's optional ``card`` block, ``xrobust submit --paper ...`` and the leaderboard.

Every test works on copies of a committed result (results/ is never written).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from bench.cards import card_problems, parse_extra_data
from bench.cli import main
from bench.results import problems

ROOT = Path(__file__).resolve().parents[2]
REL = Path("image/mnist5k/linf-0.3/smallcnn__pgd-at.json")

CARD = {
    "paper": "Towards Deep Learning Models Resistant to Adversarial Attacks",
    "paper_url": "https://arxiv.org/abs/1706.06083",
    "venue": "ICLR 2018",
    "architecture": "SmallCNN",
    "extra_data": False,
    "license": "MIT",
    "checkpoint": "zoo:image-mnist5k-linf-0.3/pgd-at",
    "authors": ["Aleksander Madry", "Aleksandar Makelov"],
}
#: the same card as ``xrobust submit`` options
OPTIONS = ["--paper", CARD["paper"], "--paper-url", CARD["paper_url"], "--venue", CARD["venue"],
           "--architecture", CARD["architecture"], "--extra-data", "no", "--license", CARD["license"],
           "--checkpoint-url", CARD["checkpoint"], "--authors", "Aleksander Madry, Aleksandar Makelov"]


@pytest.fixture
def published(tmp_path) -> Path:
    """A copy of the committed MNIST-5k PGD-AT result at its canonical path under a temporary results root."""
    path = tmp_path / "results" / REL
    path.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / "results" / REL, path)
    return path


def _doc() -> dict:
    return json.loads((ROOT / "results" / REL).read_text())


def test_schema_accepts_a_valid_card():
    doc = _doc()
    assert "card" not in doc and problems(doc) == []  # the block is optional: version-1 files stay valid
    doc["card"] = copy.deepcopy(CARD)
    assert problems(doc) == [] and doc["schema_version"] == 1
    doc["card"].update(extra_data="50M synthetic images (DDPM)", reported_robust_accuracy=0.89)
    del doc["card"]["authors"], doc["card"]["paper_url"]  # optional fields
    assert problems(doc) == []


@pytest.mark.parametrize("change,expected", [
    ({"extra_data": 3}, "card/extra_data: 3 is not of type 'boolean', 'string'"),
    ({"paper": ["a title"]}, "card/paper: ['a title'] is not of type 'string'"),
    ({"authors": "Madry"}, "card/authors: 'Madry' is not of type 'array'"),
    ({"paper_url": "javascript:alert(1)"}, "card/paper_url: 'javascript:alert(1)' does not match"),
    ({"checkpoint": "runs/x/model.safetensors"}, "card/checkpoint: 'runs/x/model.safetensors' does not match"),
    ({"reported_robust_accuracy": 89.0}, "card/reported_robust_accuracy: 89.0 is greater than the maximum of 1"),
    ({"lisence": "MIT"}, "card: Additional properties are not allowed ('lisence' was unexpected)"),
    ({"venue": None}, "card: 'venue' is a required property"),
])
def test_schema_rejects_a_malformed_card(change, expected):
    doc = _doc()
    doc["card"] = {**CARD, **change}
    if change.get("venue", "") is None:
        del doc["card"]["venue"]
    errs = problems(doc)
    assert any(e.startswith(expected) for e in errs), errs


def test_card_problems_name_every_missing_field_with_its_option():
    errs = card_problems({"paper": "A title", "venue": "ICLR 2018"})
    assert errs == ["missing architecture, extra_data, license, checkpoint (give --architecture, --extra-data, "
                    "--license, --checkpoint or a --card file)"]


def test_extra_data_option_reads_yes_no_or_a_description():
    assert [parse_extra_data(t) for t in ("no", "None", "FALSE", "yes", "true")] == [False, False, False, True, True]
    assert parse_extra_data(" 500k pseudo-labelled images ") == "500k pseudo-labelled images"


def test_submit_attaches_the_card_in_place_and_the_leaderboard_shows_it(published, capsys):
    before = json.loads(published.read_text())
    root = published.parents[3]
    assert main(["submit", str(published), "--results", str(root), *OPTIONS]) == 0
    assert capsys.readouterr().out.strip() == str(published)
    doc = json.loads(published.read_text())
    assert doc["card"] == CARD
    assert {k: v for k, v in doc.items() if k != "card"} == before  # nothing else changed
    assert problems(doc, path=published) == []

    from leaderboard.aggregate import collect
    from leaderboard.markdown import track_markdown
    from leaderboard.site import track_table_html

    col = collect(root)
    assert col.problems == ()
    row = col.frame.iloc[0]
    assert (row["paper"], row["venue"], row["paper_url"]) == (CARD["paper"], "ICLR 2018", CARD["paper_url"])
    table = track_markdown(col.frame, doc["track"])
    assert "| smallcnn ([ICLR 2018](https://arxiv.org/abs/1706.06083)) | pgd-at |" in table
    html = track_table_html(col.frame)
    assert ('<a class="paper" href="https://arxiv.org/abs/1706.06083" title="Towards Deep Learning Models '
            'Resistant to Adversarial Attacks" rel="noopener noreferrer">ICLR 2018</a>') in html


def test_submit_merges_options_over_a_card_file_and_places_a_copy(tmp_path, capsys):
    src = tmp_path / "mine.json"
    shutil.copyfile(ROOT / "results" / REL, src)
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps({**CARD, "venue": "arXiv 2017"}))
    root = tmp_path / "results"
    assert main(["submit", str(src), "--results", str(root), "--card", str(card_file), "--venue", "ICLR 2018",
                 "--extra-data", "80M tiny images"]) == 0
    placed = root / REL
    assert json.loads(placed.read_text())["card"] == {**CARD, "extra_data": "80M tiny images"}
    assert src.read_bytes() == (ROOT / "results" / REL).read_bytes()  # the source is copied, not changed
    # a later submit changes one field and keeps the rest of the card
    assert main(["submit", str(placed), "--results", str(root), "--license", "CC-BY-4.0"]) == 0
    assert json.loads(placed.read_text())["card"] == {**CARD, "extra_data": "80M tiny images", "license": "CC-BY-4.0"}


def _fails_cleanly(argv: list[str], path: Path, capsys, *needles: str) -> None:
    """``xrobust argv`` exits 2 with one line naming the problem, and ``path`` keeps its bytes."""
    before = path.read_bytes()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xrobust: error: "), err
    assert all(n in err[0] for n in needles), err[0]
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left beside it


def test_submit_on_a_broken_result_leaves_it_byte_identical(published, capsys):
    doc = json.loads(published.read_text())
    doc["metrics"]["robust_accuracy"] = 0.99  # above clean 0.974, flag not raised
    published.write_text(json.dumps(doc, indent=2))
    _fails_cleanly(["submit", str(published), "--results", str(published.parents[3]), *OPTIONS], published, capsys,
                   "invalid result", "robust_accuracy")


@pytest.mark.parametrize("extra,needles", [
    (["--paper-url", "javascript:alert(1)"], ("invalid model card", "paper_url", "http(s)://")),
    (["--reported", "89"], ("invalid model card", "reported_robust_accuracy")),
    (["--checkpoint-url", "zoo:image-mnist5k-linf-0.3/trades"], ("not this result's weights",)),
])
def test_submit_with_a_malformed_card_leaves_the_file_untouched(published, capsys, extra, needles):
    _fails_cleanly(["submit", str(published), "--results", str(published.parents[3]), *OPTIONS, *extra],
                   published, capsys, *needles)


def test_submit_with_an_incomplete_or_mistyped_card_file_leaves_the_file_untouched(published, tmp_path, capsys):
    root = str(published.parents[3])
    _fails_cleanly(["submit", str(published), "--results", root, "--paper", "A title"], published, capsys,
                   "missing venue, architecture")
    card_file = tmp_path / "card.json"
    card_file.write_text(json.dumps({**CARD, "extra_data": 3}))
    _fails_cleanly(["submit", str(published), "--results", root, "--card", str(card_file)], published, capsys,
                   "card", "extra_data")
    card_file.write_text("{not json")
    _fails_cleanly(["submit", str(published), "--results", root, "--card", str(card_file)], published, capsys,
                   "card.json: not valid JSON")
