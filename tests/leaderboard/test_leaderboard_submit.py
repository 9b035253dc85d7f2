"""`xrobust submit`: validation, checkpoint hash, canonical placement, no overwrite, no traversal, no partial file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.checkpoint import sha256_file
from bench.cli import main
from bench.errors import UserError
from bench.results import submit_result

REL = Path("image/digits/linf-0.2/smallcnn__erm.json")


@pytest.fixture
def submission(digits_results, tmp_path) -> tuple[Path, dict]:
    doc = json.loads((digits_results / REL).read_text())
    src = tmp_path / "mine.json"
    src.write_text(json.dumps(doc))
    return src, doc


def _checkpoint(digits_results: Path) -> Path:
    return digits_results.parent / "runs/image-digits-linf-0.2/erm-s0/model.safetensors"


def test_submit_places_file_at_canonical_path(submission, tmp_path):
    src, doc = submission
    root = tmp_path / "results"
    placed = submit_result(src, root)
    assert placed == root / REL
    assert json.loads(placed.read_text()) == doc


def test_submit_refuses_overwrite_without_replace(submission, tmp_path, capsys):
    src, doc = submission
    root = tmp_path / "results"
    submit_result(src, root)
    with pytest.raises(UserError, match="exists; pass --replace"):
        submit_result(src, root)
    assert main(["submit", str(src), "--results", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --replace" in err[0]
    assert main(["submit", str(src), "--results", str(root), "--replace"]) == 0


@pytest.mark.parametrize("field,value", [("model", "../../../evil"), ("dataset", ".."), ("domain", "/etc")])
def test_submit_refuses_path_traversal(submission, tmp_path, field, value):
    src, doc = submission
    doc[field] = value
    src.write_text(json.dumps(doc))
    root = tmp_path / "a" / "b" / "results"
    with pytest.raises(UserError, match="would escape the results folder"):
        submit_result(src, root)
    assert not any(p.name.endswith("__erm.json") for p in tmp_path.rglob("*.json"))


def test_submit_refuses_symlink_out_of_results(submission, tmp_path):
    src, _ = submission
    root, outside = tmp_path / "results", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "image")
    with pytest.raises(UserError, match="resolves outside"):
        submit_result(src, root)
    assert list(outside.rglob("*.json")) == []


def test_submit_rejects_invalid_result(submission, tmp_path):
    src, doc = submission
    doc["metrics"]["robust_accuracy"] = 1.0
    src.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="invalid result: .*robust_accuracy"):
        submit_result(src, tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_submit_checks_and_fills_checkpoint_hash(submission, digits_results, tmp_path):
    src, doc = submission
    ckpt = _checkpoint(digits_results)
    assert doc["provenance"]["checkpoint_sha256"] == sha256_file(ckpt)
    assert submit_result(src, tmp_path / "r1", checkpoint=ckpt).exists()
    other = tmp_path / "other.safetensors"
    other.write_bytes(ckpt.read_bytes()[:-1] + b"\0")
    with pytest.raises(UserError, match="does not match the result's provenance.checkpoint_sha256"):
        submit_result(src, tmp_path / "r2", checkpoint=other)
    doc["provenance"]["checkpoint_sha256"] = None
    src.write_text(json.dumps(doc))
    placed = submit_result(src, tmp_path / "r3", checkpoint=other)
    assert json.loads(placed.read_text())["provenance"]["checkpoint_sha256"] == sha256_file(other)


def test_submit_never_leaves_partial_file(submission, tmp_path, monkeypatch):
    src, _ = submission
    root = tmp_path / "results"

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("bench.checkpoint.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        submit_result(src, root)
    assert [p for p in root.rglob("*") if p.is_file()] == []  # neither the target nor a temp file
