"""`xrobust run quick` re-evaluates the published checkpoints and checks them outcome by outcome."""

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.reproduce import compare, jobs_for, published_result, reproduce, summary_line
from bench.tracks import get_track

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "image-mnist5k-linf-0.3"
KWS = "speech-kws-snr-30db"


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    """A zoo with two cheap published checkpoints: KWS ERM, and image FGSM-RS (some examples survive into Square)."""
    zoo = tmp_path_factory.mktemp("zoo")
    for track, name in ((IMAGE, "smallcnn__fgsm-rs"), (KWS, "melcnn__erm")):
        (zoo / track).mkdir()
        for ext in (".safetensors", ".json"):
            shutil.copyfile(ROOT / "zoo" / track / (name + ext), zoo / track / (name + ext))
    return zoo


def test_jobs_cover_every_published_checkpoint_longest_first():
    tracks = [get_track(IMAGE), get_track(KWS)]
    jobs = jobs_for(tracks)
    names = {(j.track, j.defense) for j in jobs}
    on_disk = {(p.parent.name, p.stem.split("__", 1)[1]) for t in (IMAGE, KWS)
               for p in (ROOT / "zoo" / t).glob("*.safetensors")}
    # a checkpoint is re-checked where a result of it is published (some are published for corruption results only)
    checked = {(t, d) for t, d in on_disk if published_result(get_track(t), d) is not None}
    assert names == checked and len(jobs) >= 8
    unchecked = on_disk - checked
    assert all(published_result(get_track(t), d) is None for t, d in unchecked)
    assert [j.estimate for j in jobs] == sorted((j.estimate for j in jobs), reverse=True)
    assert jobs[-1].estimate < jobs[0].estimate  # the robust models cost far more than ERM


def test_reproduction_matches_the_published_outcomes(small_zoo, tmp_path):
    from dataclasses import replace

    tracks = [replace(get_track(IMAGE), zoo_n=12), replace(get_track(KWS), zoo_n=16)]
    rows = reproduce(tracks, results=tmp_path / "r", zoo=small_zoo, workers=2, log=lambda s: None)
    assert sorted((r["track"], r["defense"]) for r in rows) == [(IMAGE, "fgsm-rs"), (KWS, "erm")]
    for r in rows:
        p = r["published"]
        assert p is not None and r["n"] in (16, 12)
        assert p["robust_agree"] == r["n"] and p["clean_agree"] == r["n"]  # every outcome reproduced
        doc = json.loads(Path(r["path"]).read_text())
        assert doc["n"] == r["n"] and doc["provenance"]["device"].endswith(" 1 threads")
        pub = published_result(get_track(r["track"]), r["defense"])
        assert doc["per_example"]["clean"] == pub["per_example"]["clean"][: r["n"]]
        assert doc["per_example"]["robust"] == pub["per_example"]["robust"][: r["n"]]
    fgsm_rs = next(r for r in rows if r["defense"] == "fgsm-rs")
    assert "1" in json.loads(Path(fgsm_rs["path"]).read_text())["per_example"]["robust"]  # not all broken: a real check


def test_compare_counts_a_differing_outcome():
    track = get_track(IMAGE)
    pub = published_result(track, "pgd-at")
    n = 50
    mine = json.loads(json.dumps(pub))
    mine["n"] = n
    mine["per_example"] = {k: (v[:n] if isinstance(v, str) else v) for k, v in pub["per_example"].items()}
    assert compare(mine, pub)["published"]["robust_agree"] == n
    flipped = mine["per_example"]["robust"]
    mine["per_example"]["robust"] = ("0" if flipped[0] == "1" else "1") + flipped[1:]
    got = compare(mine, pub)["published"]
    assert got["robust_agree"] == n - 1 and got["robust_accuracy_same_examples"] == pub["per_example"]["robust"][:n].count("1") / n


def test_never_written_over_the_published_results(tmp_path):
    with pytest.raises(UserError, match="published results"):
        reproduce([get_track(IMAGE)], results=ROOT / "results", log=lambda s: None)


def test_training_flags_need_train(capsys):
    assert main(["run", "quick", "--recipes", "erm"]) == 2
    assert "add --train" in capsys.readouterr().err


def test_compare_counts_differing_word_errors_on_a_wer_track():
    """WER results are compared utterance by utterance on the worst-case word errors, not only exact match."""
    pub = {"n": 4, "metric": "wer", "headline": {"clean": "clean_wer", "robust": "robust_wer"},
           "metrics": {"clean_wer": 0.1, "robust_wer": 0.9},
           "per_example": {"clean": "1101", "robust": "0000", "robust_word_errors": [3, 2, 5, 1]}}
    mine = json.loads(json.dumps(pub))
    assert compare(mine, pub)["published"]["word_errors_agree"] == 4
    mine["per_example"]["robust_word_errors"] = [3, 2, 4, 1]  # same exact-match bits, one error fewer
    got = compare(mine, pub)["published"]
    assert got["robust_agree"] == 4 and got["word_errors_agree"] == 3 and got["word_errors_compared"] == 4
    row = {"track": "t", "defense": "d", "n": 4, "clean": 0.1, "robust": 0.9, "metric": "wer", "seconds": 1.0,
           "published": got}
    assert "word errors agree 3/4" in summary_line(row)


def test_compare_counts_differing_targeted_hits():
    """A track with a targeted evaluation is also compared example by example on its targets and hits."""
    pub = {"n": 3, "metric": "wer", "headline": {"clean": "clean_wer", "robust": "robust_wer"},
           "metrics": {"clean_wer": 0.1, "robust_wer": 0.9},
           "per_example": {"clean": "111", "robust": "000", "targeted": {"targets": ["one", "two", "six"],
                                                                      "success": "101"}}}
    mine = json.loads(json.dumps(pub))
    assert compare(mine, pub)["published"]["targeted_agree"] == 3
    mine["per_example"]["targeted"]["success"] = "100"
    got = compare(mine, pub)["published"]
    assert got["targeted_agree"] == 2 and got["targeted_compared"] == 3
    row = {"track": "t", "defense": "d", "n": 3, "clean": 0.1, "robust": 0.9, "metric": "wer", "seconds": 1.0,
           "published": got}
    assert "targeted hits agree 2/3" in summary_line(row)
    mine["per_example"]["targeted"]["targets"][0] = "nine"  # a different target is a disagreement, hit or not
    assert compare(mine, pub)["published"]["targeted_agree"] == 1
