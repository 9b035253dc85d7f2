"""User runs never touch the published results; provenance says which code made a number.

``xrobust run``/``eval`` write to ``runs/results`` unless ``--results results`` is given; the
leaderboard shows such rows beside the published ones, marked; a result made from a work tree
with uncommitted code changes carries ``git_dirty`` and the leaderboard's ``dirty-tree`` badge.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.cli import COMMANDS, build_parser, main
from bench.provenance import git_state
from leaderboard.aggregate import DIRTY, USER_MARK, collect, row_of
from leaderboard.build import build

REL = "image/digits/linf-0.2/smallcnn__erm.json"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def test_git_state_is_dirty_for_code_changes_only(tmp_path):
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "c")
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert git_state(repo / "bench") == {"git_commit": head, "git_dirty": False}
    # outputs and prose do not change a number
    (repo / "results" / "image").mkdir(parents=True)
    (repo / "results" / "image" / "r.json").write_text("{}")
    (repo / "zoo").mkdir()
    (repo / "zoo" / "w.safetensors").write_bytes(b"0")
    (repo / "NOTES.md").write_text("hi")
    assert git_state(repo)["git_dirty"] is False
    (repo / "bench" / "a.py").write_text("x = 2\n")  # an edited module does
    assert git_state(repo)["git_dirty"] is True
    _git(repo, "checkout", "-q", "bench/a.py")
    (repo / "bench" / "b.py").write_text("")  # and so does a new one
    assert git_state(repo)["git_dirty"] is True
    (tmp_path / "elsewhere").mkdir()  # not a checkout: nothing is claimed
    assert git_state(tmp_path / "elsewhere") == {"git_commit": None, "git_dirty": None}


@pytest.fixture(scope="module")
def erm_checkpoint(digits_results) -> Path:
    ckpts = sorted((digits_results.parent / "runs").rglob("model.safetensors"))
    ck = [c for c in ckpts if "erm" in c.parent.name]
    assert ck, ckpts
    return ck[0]


def test_eval_writes_your_results_by_default_with_the_state_at_start(erm_checkpoint, tmp_path, monkeypatch):
    states = iter([{"git_commit": "a" * 40, "git_dirty": True}, {"git_commit": "b" * 40, "git_dirty": False}])
    monkeypatch.setattr("bench.pipeline.git_state", lambda: next(states))
    monkeypatch.chdir(tmp_path)
    rc = main(["eval", "--track", "image-digits-linf-0.2", "--checkpoint", str(erm_checkpoint), "--n", "12",
               "--suite", "pgd", "--no-sweep", "--no-flags", "--quiet"])
    assert rc == 0
    assert not (tmp_path / "results").exists()  # the published folder is never the default
    doc = json.loads((tmp_path / "runs" / "results" / REL).read_text())
    assert doc["provenance"]["git_commit"] == "a" * 40 and doc["provenance"]["git_dirty"] is True
    assert DIRTY in row_of(doc, REL)["flags"].split(";")
    doc["provenance"]["git_dirty"] = False
    assert DIRTY not in row_of(doc, REL)["flags"].split(";")
    # an explicit --results writes where it is told
    rc = main(["eval", "--track", "image-digits-linf-0.2", "--checkpoint", str(erm_checkpoint), "--n", "12",
               "--suite", "pgd", "--no-sweep", "--no-flags", "--quiet", "--results", "results"])
    assert rc == 0 and (tmp_path / "results" / REL).is_file()


def test_user_rows_are_marked_and_the_published_files_untouched(digits_results, tmp_path):
    published = tmp_path / "results"
    shutil.copytree(digits_results, published)
    user = tmp_path / "runs" / "results"
    (user / REL).parent.mkdir(parents=True)
    shutil.copy(digits_results / REL, user / REL)  # the same run, re-made by a user
    before = {p: p.read_bytes() for p in published.rglob("*") if p.is_file()}
    build_parser()
    rc = COMMANDS["leaderboard"][2](argparse.Namespace(results=str(published), user=str(user), out=None,
                                                       markdown=None, quiet=True))
    assert rc == 0
    assert {p: p.read_bytes() for p in published.rglob("*") if p.is_file()} == before  # nothing written there
    md = (user / "LEADERBOARD.md").read_text()
    assert (tmp_path / "runs" / "site" / "index.html").is_file()
    df = collect(published, user).frame
    mine = df[df["source"] == "user"]
    theirs = df[df["source"] == "published"].set_index("defense")
    assert sorted(theirs.index) == ["erm", "pgd-at"]
    assert list(mine["defense"]) == ["erm" + USER_MARK]
    assert mine["rank"].iloc[0] == theirs.loc["erm", "rank"] == 2  # ranked with them, below PGD-AT
    assert "erm (yours)" in md
    # without a user folder, nothing is marked
    assert set(collect(published).frame["source"]) == {"published"}


def test_leaderboard_cli_user_flag(digits_results, tmp_path):
    user = tmp_path / "mine"
    (user / REL).parent.mkdir(parents=True)
    shutil.copy(digits_results / REL, user / REL)
    rc = main(["leaderboard", "--results", str(digits_results), "--user", str(user), "--out", str(tmp_path / "site"),
               "--markdown", str(tmp_path / "LB.md"), "--quiet"])
    assert rc == 0 and "erm (yours)" in (tmp_path / "LB.md").read_text()
    assert "erm (yours)" in (tmp_path / "site" / "index.html").read_text()
