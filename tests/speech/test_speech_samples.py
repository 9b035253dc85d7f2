"""Evidence samples (``xrobust eval --samples K``): a few clean + adversarial WAV pairs beside the result file,
with what the model made of each, the achieved SNR and each file's sha256; checked by ``xrobust validate``."""

import json
import math
from dataclasses import replace

import pytest
import torch

from bench.cli import main
from bench.errors import UserError
from bench.evaluate import evaluate
from bench.pipeline import eval_track, train_track
from bench.samples import sample_problems, samples_dir, write_samples
from bench.suites import AttackSpec
from bench.tracks import TrainSpec, get_track

torch.set_num_threads(1)
SMALL_COMMANDS = dict(n_train=96, n_test=48)  # as in conftest.py (same cached sets)


@pytest.fixture(scope="module")
def kws_eval(speech_cache, small_commands, tmp_path_factory):
    """A briefly trained keyword spotter evaluated with PGD-2 at 20 dB SNR through ``eval_track(samples=3)``."""
    track = replace(get_track("speech-kws-snr-30db"), id="speech-kws-tiny", n_eval=24,
                    threat=get_track("speech-kws-snr-30db").threat.with_eps(20.0),
                    dataset_kwargs={**SMALL_COMMANDS, "progress": False},
                    train=TrainSpec(epochs=2, batch_size=32, lr=3e-3),
                    suite=(AttackSpec("pgd-2", "pgd", {"steps": 2}),), eps_sweep=())
    tmp = tmp_path_factory.mktemp("samples")
    ckpt = train_track(track, "erm", runs=tmp / "runs", progress=False, log=lambda s: None)
    path = eval_track(track, ckpt, results=tmp / "results", progress=False, flags=False, samples=3)
    return track, ckpt, path


def test_eval_writes_samples_beside_the_result(kws_eval):
    import soundfile as sf

    track, _, path = kws_eval
    doc = json.loads(path.read_text())
    folder = samples_dir(path)
    assert folder == path.with_name("melcnn__erm.samples") and folder.is_dir()
    man = json.loads((folder / "manifest.json").read_text())
    broken = round((doc["metrics"]["clean_accuracy"] - doc["metrics"]["robust_accuracy"]) * 24)
    assert len(man["samples"]) == min(3, broken) > 0
    assert (man["result"], man["task"], man["threat"]) == ("melcnn__erm.json", "kws", "snr-20db")
    assert man["result_timestamp"] == doc["provenance"]["timestamp"]
    data, idx = track.eval_data()
    classes = data.meta["classes"]
    for s in man["samples"]:
        assert s["index"] == int(idx[s["position"]]) and s["attack"] == "pgd-2"
        assert s["reference"] == classes[int(data.y[s["position"]])]
        assert s["clean"] == s["reference"] != s["adversarial"]  # clean-right examples first; the attack broke it
        assert doc["per_example"]["clean"][s["position"]] == "1" and doc["per_example"]["robust"][s["position"]] == "0"
        clean, rate = sf.read(str(folder / s["files"]["clean"]), dtype="float32")
        adv, _ = sf.read(str(folder / s["files"]["adv"]), dtype="float32")
        assert rate == 16000 and s["files"] == {"clean": f"{s['index']}/clean.wav", "adv": f"{s['index']}/adv.wav"}
        x = data.inputs[s["position"]].float() / 32768.0
        assert float((torch.from_numpy(clean) - x).abs().max()) <= 1 / 32768 + 1e-7  # the clip, as 16-bit PCM
        snr = 20 * math.log10(float(x.norm()) / float((torch.from_numpy(adv) - x).norm()))
        assert s["snr_db"] == pytest.approx(snr, abs=0.05) and s["snr_db"] >= 20 - 1e-3  # inside the budget
    assert sample_problems(folder, doc) == []
    assert main(["validate", str(path)]) == 0


def test_validate_catches_a_tampered_and_a_missing_wav(kws_eval, tmp_path, capsys):
    import shutil

    _, _, path = kws_eval
    root = tmp_path / "copy"
    shutil.copytree(path.parents[3], root)
    result = root / path.relative_to(path.parents[3])
    folder = samples_dir(result)
    s = json.loads((folder / "manifest.json").read_text())["samples"][0]
    wav = folder / s["files"]["adv"]
    data = bytearray(wav.read_bytes())
    data[-1] ^= 0x01  # the last sample one bit louder
    wav.write_bytes(bytes(data))
    (folder / s["files"]["clean"]).unlink()
    assert main(["validate", str(result)]) == 2
    err = capsys.readouterr().err
    assert f"{s['files']['adv']}: sha256 " in err and "does not match the manifest's" in err
    assert f"{s['files']['clean']}: missing" in err


def test_samples_replace_an_earlier_folder_and_bad_counts_fail_early(kws_eval, tmp_path):
    track, ckpt, path = kws_eval
    for bad in (11, -1, 2.5):
        with pytest.raises(UserError, match="--samples must be between 1 and 10"):
            eval_track(track, ckpt, results=tmp_path, progress=False, flags=False, samples=bad)
    assert not any(tmp_path.iterdir())  # nothing was evaluated or written
    with pytest.raises(UserError, match="speech-kws-corruptions is a corruption track"):
        eval_track(get_track("speech-kws-corruptions"), ckpt, results=tmp_path, progress=False, samples=3)
    assert main(["eval", "--track", "speech-kws-snr-30db", "--checkpoint", str(ckpt), "--samples", "12",
                 "--results", str(tmp_path), "--quiet"]) == 2  # one line, exit 2, before any work
    # a second evaluation at the same result path: one sample now, the old folder replaced, not mixed
    again = eval_track(track, ckpt, results=tmp_path / "r", progress=False, flags=False, samples=1)
    (samples_dir(again) / "stray.txt").write_text("left from before")
    again = eval_track(track, ckpt, results=tmp_path / "r", progress=False, flags=False, samples=1)
    assert sorted(p.name for p in samples_dir(again).iterdir()) == sorted(
        ["manifest.json", str(json.loads((samples_dir(again) / "manifest.json").read_text())["samples"][0]["index"])])


def test_asr_samples_hold_transcripts(tmp_path):
    """A tiny untrained CTC recognizer on a few tones (no data set, no training), its own clean transcripts as
    the references (clean WER 0, so PGD-2 has words to change): the samples record the references and the
    greedy CTC hypotheses on both files, and the adversarial one is what the model makes of adv.wav."""
    import soundfile as sf

    from bench.registry import MODELS
    from bench.threat import ThreatModel
    from domains.speech.text import encode_batch, greedy_decode

    torch.manual_seed(0)
    model = MODELS.get("ctc-digits")(hidden=8, n_mels=16).eval()
    t = torch.arange(8000) / 16000
    x = torch.stack([0.3 * torch.sin(2 * math.pi * f * t) for f in (200.0, 300.0, 440.0)])
    with torch.no_grad():
        texts = greedy_decode(model(x))
    y = encode_batch(texts)
    threat = ThreatModel("l2", 20.0, scale="snr-db", bounds=(-1.0, 1.0))
    track = replace(get_track("speech-asr-digits-snr-30db"), id="speech-asr-tones", threat=threat)
    index = torch.tensor([7, 8, 9])
    rep = evaluate(model, x, y, threat, (AttackSpec("pgd-2", "pgd", {"steps": 2}),), flags=False, keep_adv=True,
                   index=index)
    assert float(rep.clean_errors.sum()) == 0 and len(rep.adversarial) == 3
    result = tmp_path / "ctc-digits__erm.json"
    result.write_text(json.dumps({"track": track.id, "domain": "speech", "model": "ctc-digits", "defense": "erm",
                                  "threat": {"id": threat.id}, "provenance": {"timestamp": "t"}}))
    folder = write_samples(rep, result, 2, track=track, model=model, inputs=x, y=y, meta={"sample_rate": 16000},
                           index=index)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["task"] == "asr" and [s["index"] for s in man["samples"]] == [7, 8]  # the first two by position
    for s in man["samples"]:
        p = s["position"]
        assert s["reference"] == s["clean"] == texts[p]
        assert s["adversarial"] == greedy_decode(model(rep.adversarial[p].z[None]))[0] != texts[p]
        assert s["adv_errors"] == rep.adversarial[p].errors >= 1 and s["clean_errors"] == 0
        adv, _ = sf.read(str(folder / s["files"]["adv"]), dtype="float32")
        assert float((torch.from_numpy(adv) - rep.adversarial[p].z).abs().max()) <= 1 / 32768 + 1e-7
        assert s["snr_db"] >= 20 - 1e-3
    assert sample_problems(folder, json.loads(result.read_text())) == []
