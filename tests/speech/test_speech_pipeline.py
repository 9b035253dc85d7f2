"""A tiny end-to-end train + attack + result file per speech task, on small generated subsets."""

import json
from dataclasses import replace

import pytest

from bench.pipeline import eval_track, train_track
from bench.results import problems
from bench.suites import AttackSpec
from bench.tracks import Track, TrainSpec, get_track

SMALL_COMMANDS = dict(n_train=96, n_test=48)  # as in conftest.py (same cached sets)
SMALL_DIGITS = dict(n_train=48, n_test=24)


def test_speech_tracks_are_registered():
    kws = get_track("speech-kws-snr-30db")
    asr = get_track("speech-asr-digits-snr-30db")
    assert kws.quick and asr.quick and asr.metric == "wer"
    assert kws.threat.id == asr.threat.id == "snr-30db" and kws.threat.bounds == (-1.0, 1.0)
    assert kws.eps_sweep == (40.0, 30.0, 20.0, 10.0)
    assert get_track("speech-speechcommands-snr-30db").dataset == "speechcommands"


def test_kws_end_to_end_writes_a_valid_result(speech_cache, small_commands, tmp_path):
    base = get_track("speech-kws-snr-30db")
    track = replace(base, id="speech-kws-tiny", n_eval=24, dataset_kwargs={**SMALL_COMMANDS, "progress": False},
                    train=TrainSpec(epochs=2, batch_size=32, lr=3e-3, recipe_params={"pgd-at": {"steps": 2}}),
                    suite=(AttackSpec("pgd-5", "pgd", {"steps": 5}),),
                    sweep_suite=(AttackSpec("pgd-3", "pgd", {"steps": 3}),))
    ckpt = train_track(track, "pgd-at", runs=tmp_path / "runs", progress=False, log=lambda s: None)
    path = eval_track(track, ckpt, results=tmp_path / "results", progress=False)
    doc = json.loads(path.read_text())
    assert problems(doc) == []
    assert path.relative_to(tmp_path / "results").as_posix() == "speech/synth-commands/snr-30db/melcnn__pgd-at.json"
    m = doc["metrics"]
    assert doc["n"] == 24 and 0 < m["n_keywords"] <= 24
    assert 0 <= m["robust_accuracy_keywords"] <= m["clean_accuracy_keywords"] <= 1
    assert [p["threat"] for p in m["eps_sweep"]] == ["snr-40db", "snr-30db", "snr-20db", "snr-10db"]


def test_asr_end_to_end_reports_wer(speech_cache, small_digits, tmp_path):
    base = get_track("speech-asr-digits-snr-30db")
    track = replace(base, id="speech-asr-tiny", n_eval=12, dataset_kwargs={**SMALL_DIGITS, "progress": False},
                    train=TrainSpec(epochs=1, batch_size=16, lr=3e-3),
                    suite=(AttackSpec("pgd-3", "pgd", {"steps": 3}),))
    ckpt = train_track(track, "erm", runs=tmp_path / "runs", progress=False, log=lambda s: None)
    path = eval_track(track, ckpt, results=tmp_path / "results", progress=False)
    doc = json.loads(path.read_text())
    assert problems(doc) == []
    m = doc["metrics"]
    assert m["robust_wer"] >= m["clean_wer"] > 0  # one epoch on 48 clips cannot transcribe yet
    assert m["clean_wer"] == pytest.approx(m["clean_error_rate"])
    assert set(m["per_attack_wer"]) == {"pgd-3"}
    # per-utterance word errors: what the WER interval and the leaderboard's paired test are computed from
    pe = doc["per_example"]
    refs, clean, robust = pe["ref_words"], pe["clean_word_errors"], pe["robust_word_errors"]
    assert len(refs) == len(clean) == len(robust) == 12 and min(refs) >= 1
    assert sum(clean) / sum(refs) == pytest.approx(m["clean_wer"], abs=1e-12)
    assert sum(robust) / sum(refs) == pytest.approx(m["robust_wer"], abs=1e-12)
    assert all(r >= c for c, r in zip(clean, robust))  # the worst case includes the clean hypothesis
    assert pe["robust"] == "".join("1" if e == 0 else "0" for e in robust)
    lo, hi = m["intervals"]["robust_wer"]
    assert lo <= m["robust_wer"] <= hi
