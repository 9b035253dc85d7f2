"""Corruption tracks end to end on the digits data: cells, result file, validation, mCE, CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.corruption_eval import corruption_metrics, mean_corruption_error, track_cells
from bench.corruptions import CORRUPTIONS, Corruption, corruption_rng, register_corruption
from bench.registry import TRACKS
from bench.results import problems
from bench.tracks import corruption_track, get_track


def _dropout(x, severity, rng, aux):
    """Zero a severity-dependent share of pixels (a test corruption, 10% .. 50%)."""
    keep = torch.from_numpy(rng.random(tuple(x.shape)) >= 0.1 * severity).to(x.dtype)
    return x * keep


def _invert(x, severity, rng, aux):
    return 1.0 - x


@pytest.fixture(scope="module")
def ctrack():
    for c in (Corruption("test-dropout", "image", _dropout, description="zero 10%*s of the pixels"),
              Corruption("test-invert", "image", _invert, severities=(1,), description="1 - x")):
        if c.key not in CORRUPTIONS:
            register_corruption(c)
    t = corruption_track(get_track("image-digits-linf-0.2"), id="image-digits-test-corruptions",
                         corruption_set="test-c", corruptions=("image/test-dropout", "image/test-invert"),
                         n_eval=80)
    if t.id not in TRACKS:
        TRACKS.register(t.id, t)
    return t


def test_cells_and_rng_are_per_cell(ctrack):
    assert track_cells(ctrack) == [("image/test-dropout", s) for s in range(1, 6)] + [("image/test-invert", 1)]
    a = corruption_rng(0, "image/test-dropout", 3).random(4)
    assert np.array_equal(a, corruption_rng(0, "image/test-dropout", 3).random(4))
    assert not np.array_equal(a, corruption_rng(0, "image/test-dropout", 4).random(4))
    assert not np.array_equal(a, corruption_rng(1, "image/test-dropout", 3).random(4))
    assert ctrack.kind == "corruption" and get_track("image-digits-linf-0.2").kind == "attack"


@pytest.fixture(scope="module")
def run_dir(ctrack, tmp_path_factory):
    d = tmp_path_factory.mktemp("ctrack")
    rc = main(["run", ctrack.id, "--recipes", "erm", "--epochs", "4", "--quiet", "--runs", str(d / "runs"),
               "--results", str(d / "results")])
    assert rc == 0
    return d


def test_run_trains_on_the_attack_track_and_writes_a_valid_corruption_result(run_dir, ctrack):
    # the checkpoint lives under the attack track it comes from, the result under the set id
    assert (run_dir / "runs" / "image-digits-linf-0.2" / "erm-s0" / "model.safetensors").exists()
    path = run_dir / "results" / "image" / "digits" / "test-c" / "smallcnn__erm.json"
    doc = json.loads(path.read_text())
    assert problems(doc, path) == []
    m = doc["metrics"]
    assert doc["kind"] == "corruption" and doc["n"] == 80 and "threat" not in doc
    assert set(m["per_corruption"]) == {"test-dropout", "test-invert"}
    drop = m["per_corruption"]["test-dropout"]
    assert list(drop) == ["1", "2", "3", "4", "5"]
    # more pixels dropped -> no better (allowing one example of noise), and inverted digits are far worse
    assert drop["5"] <= drop["1"] + 1 / 80
    assert m["per_corruption"]["test-invert"]["1"] < m["clean_accuracy"] - 0.3
    cells = [a for d in m["per_corruption"].values() for a in d.values()]
    assert m["corruption_accuracy"] == pytest.approx(sum(cells) / 6)
    bits = doc["per_example"]["cells"]["test-dropout@3"]
    assert len(bits) == 80 and bits.count("1") / 80 == pytest.approx(drop["3"])
    # mCE against itself is 100 by definition
    assert mean_corruption_error(doc, doc) == pytest.approx(100.0)


def test_the_same_seed_gives_the_same_cells(run_dir, ctrack, tmp_path):
    ck = run_dir / "runs" / "image-digits-linf-0.2" / "erm-s0" / "model.safetensors"
    out = tmp_path / "again.json"
    assert main(["eval", "--track", ctrack.id, "--checkpoint", str(ck), "--quiet", "--out", str(out)]) == 0
    first = json.loads((run_dir / "results" / "image" / "digits" / "test-c" / "smallcnn__erm.json").read_text())
    assert json.loads(out.read_text())["per_example"] == first["per_example"]


def test_tampered_corruption_results_are_refused(run_dir, capsys):
    path = run_dir / "results" / "image" / "digits" / "test-c" / "smallcnn__erm.json"
    doc = json.loads(path.read_text())
    bad = copy.deepcopy(doc)
    bad["metrics"]["per_corruption"]["test-dropout"]["3"] = 1.0  # a cell that disagrees with its outcomes
    assert any("test-dropout@3" in p for p in problems(bad))
    bad = copy.deepcopy(doc)
    bad["metrics"]["corruption_accuracy"] = min(1.0, doc["metrics"]["corruption_accuracy"] + 0.1)
    assert any("not the mean of the cells" in p for p in problems(bad))
    bad = copy.deepcopy(doc)
    del bad["metrics"]["per_corruption"]["test-invert"]
    assert any("differ from corruption_set/cells" in p for p in problems(bad))
    assert any("does not match the ids" in p for p in problems(doc, path.with_name("smallcnn__pgd-at.json")))
    assert main(["validate", str(path)]) == 0
    p2 = run_dir / "tampered" / "image" / "digits" / "test-c" / "smallcnn__erm.json"
    p2.parent.mkdir(parents=True)
    bad = copy.deepcopy(doc)
    bad["per_example"]["cells"]["test-invert@1"] = "1" * 79
    p2.write_text(json.dumps(bad))
    assert main(["validate", str(p2)]) == 2
    assert "per_example/cells/test-invert@1: 79 outcomes for n=80" in capsys.readouterr().err


def test_mce_follows_hendrycks_definition():
    def doc(per):
        return {"metrics": {"per_corruption": per}}

    base = doc({"a": {"1": 0.5, "2": 0.0}, "b": {"1": 0.9}})   # errors: a 1.5, b 0.1
    mine = doc({"a": {"1": 0.75, "2": 0.25}, "b": {"1": 0.95}})  # errors: a 1.0, b 0.05
    assert mean_corruption_error(mine, base) == pytest.approx(100 * (1.0 / 1.5 + 0.05 / 0.1) / 2)
    assert mean_corruption_error(mine, doc({"a": {"1": 1.0, "2": 1.0}})) is None  # baseline without errors
    assert corruption_metrics({"clean": torch.tensor([True, False]),
                               "cells": {"x@1": torch.tensor([True, True]), "x@2": torch.tensor([False, False])}}
                              )["corruption_accuracy"] == 0.5


def _variant(doc: dict, defense: str, flip: int) -> dict:
    """``doc`` as another defense whose first ``flip`` wrong outcomes of every cell are right (metrics recomputed)."""
    out = copy.deepcopy(doc)
    out["defense"] = defense
    cells = {}
    for cid, b in doc["per_example"]["cells"].items():
        b = list(b)
        for i in [i for i, c in enumerate(b) if c == "0"][:flip]:
            b[i] = "1"
        cells[cid] = "".join(b)
    out["per_example"]["cells"] = cells
    out["metrics"].update(corruption_metrics({"clean": torch.tensor([c == "1" for c in doc["per_example"]["clean"]]),
                                             "cells": {k: torch.tensor([c == "1" for c in v])
                                                       for k, v in cells.items()}}))
    return out


def test_leaderboard_has_a_corruption_board_with_mce(run_dir, tmp_path):
    from leaderboard.build import build

    src = run_dir / "results" / "image" / "digits" / "test-c" / "smallcnn__erm.json"
    root = tmp_path / "results"
    dest = root / "image" / "digits" / "test-c"
    dest.mkdir(parents=True)
    erm = json.loads(src.read_text())
    better = _variant(erm, "pgd-at", 5)
    (dest / "smallcnn__erm.json").write_text(json.dumps(erm))
    (dest / "smallcnn__pgd-at.json").write_text(json.dumps(better))
    assert problems(better, dest / "smallcnn__pgd-at.json") == []
    built = build(root, out=tmp_path / "site")
    assert built.collection.problems == ()
    text = built.markdown.read_text()
    assert "## Common corruptions" in text
    mce = mean_corruption_error(better, erm)
    assert mce < 100
    row = next(line for line in text.splitlines() if line.startswith("| 1 | smallcnn | pgd-at |"))
    assert f"| {100 * better['metrics']['corruption_accuracy']:.1f} | [" in row and f"] | {mce:.1f} |  |" in row
    assert "| 2 | smallcnn | erm |" in text and "| 100.0 |" in text
    html = (tmp_path / "site" / "index.html").read_text()
    assert 'id="corruption-cross-domain"' in html and "test-c" in html


def test_seeds_are_trained_evaluated_and_summarised(ctrack, tmp_path):
    from bench.seeds import seed_problems
    from leaderboard.build import build

    res = tmp_path / "results"
    rc = main(["run", ctrack.id, "--recipes", "erm", "--epochs", "4", "--quiet", "--runs", str(tmp_path / "runs"),
               "--results", str(res), "--seeds", "0,1,2"])
    assert rc == 0
    path = res / "image" / "digits" / "test-c" / "smallcnn__erm.json"
    doc = json.loads(path.read_text())
    runs = doc["seeds"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert len({r["checkpoint_sha256"] for r in runs}) == 3  # three different trainings
    assert runs[0]["robust"] == doc["metrics"]["corruption_accuracy"]
    rob = [r["robust"] for r in runs]
    assert doc["seeds"]["robust_mean"] == pytest.approx(sum(rob) / 3)
    assert doc["seeds"]["robust_sd"] == pytest.approx(float(np.std(rob, ddof=1)))
    for s in (1, 2):  # the other seeds' checkpoints and results stay under runs/
        assert (tmp_path / "runs" / "image-digits-linf-0.2" / f"erm-s{s}" / f"result-{ctrack.id}.json").exists()
    assert problems(doc, path) == []
    bad = copy.deepcopy(doc)
    bad["seeds"]["robust_sd"] += 0.01
    assert any("not the mean and sd" in p for p in seed_problems(bad))
    bad = copy.deepcopy(doc)
    bad["seeds"]["runs"][0]["checkpoint_sha256"] = "0" * 64
    assert any("not exactly one run" in p for p in seed_problems(bad))
    text = build(res, out=tmp_path / "site").markdown.read_text()
    b = doc["seeds"]
    assert f"{100 * b['robust_mean']:.1f} ± {100 * b['robust_sd']:.1f} (3 seeds)" in text
    assert main(["run", ctrack.id, "--recipes", "erm", "--seeds", "0,0"]) == 2
