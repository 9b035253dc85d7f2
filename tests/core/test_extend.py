"""`xrobust eval --extend`: a published cascade extended by more attacks equals the longer suite run from
scratch, outcome for outcome (bench.extend), and a file that is not this evaluation's start is refused."""

import json

import pytest
import torch

from bench.cli import main
from bench.errors import UserError
from bench.pipeline import eval_track
from bench.suites import AttackSpec
from bench.tracks import get_track

torch.set_num_threads(1)
TRACK = "image-digits-linf-0.2"
PREFIX = [AttackSpec("fgsm", "fgsm")]  # weak on purpose: the tail must find more
TAIL = [AttackSpec("apgd-t", "apgd-t", {"steps": 10, "targets": 3, "loss": "dlr"}),
        AttackSpec("apgd-ce-40", "apgd", {"steps": 40, "loss": "ce"})]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A briefly trained digits model (2 epochs, so that the whole suite still matters), evaluated on
    60 examples at eps 0.1 with the prefix, with the whole suite from scratch, and extended (about 20 s)."""
    from bench.pipeline import train_track

    d = tmp_path_factory.mktemp("extend")
    track = get_track(TRACK)
    track = track.with_threat(track.threat.with_eps(0.1))
    ckpt = train_track(get_track(TRACK), "erm", epochs=2, runs=d / "runs", progress=False, log=lambda s: None)
    kw = dict(n=60, eps_sweep=False, progress=False)
    prior = eval_track(track, ckpt, suite=PREFIX, out=d / "prior.json", flags=False, **kw)
    fresh = eval_track(track, ckpt, suite=PREFIX + TAIL, out=d / "fresh.json", **kw)
    ext = eval_track(track, ckpt, suite=PREFIX + TAIL, out=d / "ext.json", extend=prior, **kw)
    load = lambda p: json.loads(p.read_text())  # noqa: E731
    return track, ckpt, d, load(prior), load(fresh), load(ext)


def test_extension_equals_the_longer_suite_from_scratch(runs):
    _, _, _, prior, fresh, ext = runs
    assert ext["per_example"] == fresh["per_example"]
    for k in ("clean_accuracy", "robust_accuracy", "per_attack", "per_attack_mode"):
        assert ext["metrics"][k] == fresh["metrics"][k], k
    assert ext["suite"] == fresh["suite"] and [s["name"] for s in ext["suite"]] == ["fgsm", "apgd-t", "apgd-ce-40"]
    assert {k: v["value"] for k, v in ext["flags"].items()} == {k: v["value"] for k, v in fresh["flags"].items()}
    # the tail found something the prefix missed, so the equality above is not the prefix's own outcomes
    assert fresh["metrics"]["robust_accuracy"] < prior["metrics"]["robust_accuracy"], (prior["metrics"],
                                                                                       fresh["metrics"])
    assert ext["per_example"]["attacks"]["fgsm"] == prior["per_example"]["attacks"]["fgsm"]
    note = ext["notes"][-1]
    assert note.startswith("extended: the outcomes of fgsm were read from the result made at commit")
    assert ext["cost"]["eval_seconds"] > prior["cost"]["eval_seconds"]


def test_a_dirty_prior_leaves_the_extension_dirty(runs, tmp_path, monkeypatch):
    import bench.pipeline

    track, ckpt, d, prior, _, _ = runs
    monkeypatch.setattr(bench.pipeline, "git_state", lambda: {"git_commit": "a" * 40, "git_dirty": False})
    dirty = dict(prior, provenance=dict(prior["provenance"], git_dirty=True))
    (tmp_path / "dirty.json").write_text(json.dumps(dirty))
    out = eval_track(track, ckpt, suite=PREFIX + TAIL, n=60, eps_sweep=False, progress=False, flags=False,
                     extend=tmp_path / "dirty.json", out=tmp_path / "ext.json")
    doc = json.loads(out.read_text())
    assert doc["provenance"]["git_dirty"] is True and "(dirty tree)" in doc["notes"][-1]


def test_a_file_that_is_not_this_evaluations_start_is_refused(runs, tmp_path):
    track, ckpt, d, prior, _, _ = runs
    kw = dict(n=60, eps_sweep=False, progress=False, out=tmp_path / "x.json")
    with pytest.raises(UserError, match="is not the start of this evaluation: it has seed 0, this evaluation seed 1"):
        eval_track(track, ckpt, suite=PREFIX + TAIL, extend=d / "prior.json", seed=1, **kw)
    with pytest.raises(UserError, match="is not a proper prefix"):
        eval_track(track, ckpt, suite=TAIL, extend=d / "prior.json", **kw)
    with pytest.raises(UserError, match="is not a proper prefix"):  # nothing to add
        eval_track(track, ckpt, suite=PREFIX, extend=d / "prior.json", **kw)
    edited = dict(prior, provenance=dict(prior["provenance"], checkpoint_sha256="0" * 64))
    (tmp_path / "other.json").write_text(json.dumps(edited))
    with pytest.raises(UserError, match="made from another checkpoint"):
        eval_track(track, ckpt, suite=PREFIX + TAIL, extend=tmp_path / "other.json", **kw)
    assert not (tmp_path / "x.json").exists()


def test_cli_extend_of_a_bad_file_is_one_line_and_exit_2(runs, tmp_path, capsys):
    _, ckpt, _, _, _, _ = runs
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    rc = main(["eval", "--track", TRACK, "--checkpoint", str(ckpt), "--eps", "0.1", "--n", "60", "--quiet",
               "--no-sweep", "--extend", str(bad), "--out", str(tmp_path / "r.json")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1 and "--extend: cannot read" in err[0], err
    assert not (tmp_path / "r.json").exists()
