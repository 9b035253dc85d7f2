"""Speech adversarial examples out: KWS and ASR round trips through save + verify, listenable WAVs with the
achieved SNR, and a waveform pushed past the SNR budget is rejected."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import bench
from bench.pipeline import eval_track, train_track
from bench.suites import AttackSpec
from bench.tracks import TrainSpec, get_track

torch.set_num_threads(1)
SMALL_COMMANDS = dict(n_train=96, n_test=48)  # as in conftest.py (same cached sets)
SMALL_DIGITS = dict(n_train=48, n_test=24)
REPO = Path(__file__).resolve().parents[2]


def _run(track, recipe, tmp_path, ckpt=None):
    from bench.checkpoint import load_checkpoint

    if ckpt is None:
        ckpt = train_track(track, recipe, runs=tmp_path / "runs", progress=False, log=lambda s: None)
    path = eval_track(track, ckpt, results=tmp_path / "results", progress=False, flags=False,
                      save_adv=tmp_path / "adv")
    return load_checkpoint(ckpt), json.loads(path.read_text()), path


def test_kws_round_trip_with_wavs_and_a_tampered_waveform(speech_cache, small_commands, tmp_path):
    import soundfile as sf

    track = replace(get_track("speech-kws-snr-30db"), id="speech-kws-tiny", n_eval=24,
                    dataset_kwargs={**SMALL_COMMANDS, "progress": False},
                    train=TrainSpec(epochs=2, batch_size=32, lr=3e-3),
                    suite=(AttackSpec("pgd-5", "pgd", {"steps": 5}),), eps_sweep=())
    model, doc, path = _run(track, "erm", tmp_path)
    folder = tmp_path / "adv"
    man = json.loads((folder / "manifest.json").read_text())
    m = doc["metrics"]
    assert len(man["examples"]) == round((m["clean_accuracy"] - m["robust_accuracy"]) * 24) > 0
    t = load_file(str(folder / "adv.safetensors"))
    x = track.eval_data()[0].inputs.float() / 32768.0
    for e in man["examples"]:
        wav, rate = sf.read(str(folder / e["wav"]), dtype="float32")
        adv = t["adv"][e["row"]]
        assert rate == 16000 and wav.shape == adv.shape and e["wav"] == f"wav/{e['index']}.wav"
        assert float((torch.from_numpy(wav) - adv).abs().max()) <= 1 / 32768 + 1e-7  # 16-bit PCM of the same samples
        clean = x[e["position"]]
        snr = 20 * math.log10(float(clean.norm()) / float((adv - clean).norm()))
        assert e["snr_db"] == pytest.approx(snr, abs=1e-3) and e["snr_db"] >= 30 - 1e-4  # inside the 30 dB budget
    rep = bench.verify_adversarial(folder, model, track, result=path)
    assert rep.ok, rep.problems
    assert rep.robust_accuracy == m["robust_accuracy"]
    # the perturbation of one clip made 1.25x larger: about 1.9 dB louder than the budget allows
    shutil.copytree(folder, tmp_path / "bad")
    e = man["examples"][0]
    clean = x[e["position"]]
    t["adv"][e["row"]] = clean + 1.25 * (t["adv"][e["row"]] - clean)
    save_file(t, str(tmp_path / "bad" / "adv.safetensors"))
    rep = bench.verify_adversarial(tmp_path / "bad", model, track)
    assert not rep.ok and len(rep.problems) == 2  # the example, and the accuracy it no longer supports
    assert f"index {e['index']} (pgd-5) lies outside the threat model snr-30db: 1.25" in rep.problems[0]
    assert "the examples imply robust accuracy" in rep.problems[1]


def test_asr_round_trip_and_an_example_that_does_not_raise_the_wer(speech_cache, small_digits, tmp_path):
    """The published ERM recognizer (zoo/) on 12 utterances of the small generated test set: a model that
    transcribes, so the attack has word errors to add (a briefly trained one outputs nothing, WER 1)."""
    track = replace(get_track("speech-asr-digits-snr-30db"), id="speech-asr-tiny", n_eval=12,
                    dataset_kwargs={**SMALL_DIGITS, "progress": False},
                    suite=(AttackSpec("pgd-3", "pgd", {"steps": 3}),))
    zoo = REPO / "zoo" / "speech-asr-digits-snr-30db" / "ctc-digits__erm.safetensors"
    model, doc, path = _run(track, "erm", tmp_path, ckpt=zoo)
    folder = tmp_path / "adv"
    man = json.loads((folder / "manifest.json").read_text())
    m = doc["metrics"]
    assert m["robust_wer"] > m["clean_wer"] and man["examples"]  # the attack raised some utterances' word errors
    assert all("label" not in e and e["errors"] >= 1 for e in man["examples"])
    rep = bench.verify_adversarial(folder, model, track, result=path)
    assert rep.ok, rep.problems
    assert rep.robust_error_rate == pytest.approx(m["robust_wer"], abs=1e-6)  # robust_wer is float32
    # the result file's per-utterance robust word errors with two utterances swapped: the same total WER,
    # but the utterances no longer agree with what the saved examples do
    robust = doc["per_example"]["robust_word_errors"]
    i, j = next((i, j) for i in range(len(robust)) for j in range(i) if robust[i] != robust[j])
    swapped = json.loads(json.dumps(doc))
    swapped["per_example"]["robust_word_errors"][i], swapped["per_example"]["robust_word_errors"][j] = robust[j], robust[i]
    (tmp_path / "swapped.json").write_text(json.dumps(swapped))
    rep = bench.verify_adversarial(folder, model, track, result=tmp_path / "swapped.json")
    assert rep.problems == [f"utterance {j}: the model makes {robust[j]} word errors with the saved examples, "
                            f"the result file swapped.json records {robust[i]} (per_example/robust_word_errors)"]
    # the clean waveform in place of one example: inside the ball, but no more word errors than clean
    t = load_file(str(folder / "adv.safetensors"))
    e = man["examples"][0]
    t["adv"][e["row"]] = track.eval_data()[0].inputs[e["position"]].float() / 32768.0
    shutil.copytree(folder, tmp_path / "bad")
    save_file(t, str(tmp_path / "bad" / "adv.safetensors"))
    rep = bench.verify_adversarial(tmp_path / "bad", model, track)
    assert f"index {e['index']} (pgd-3) is not adversarial: it does not raise the model's errors" in rep.problems[0]
    assert any("the examples imply robust error rate" in p for p in rep.problems)
