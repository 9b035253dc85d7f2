"""Kill a training run with SIGKILL, resume it, and get the same weights; evaluation resumes too."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.checkpoint import sha256_file
from bench.errors import UserError
from bench.evaluate import evaluate
from bench.registry import ATTACKS
from bench.suites import AttackSpec
from bench.threat import ThreatModel
from bench.training.loop import load_train_state

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TRAIN = [sys.executable, "-m", "bench.cli", "train", "--track", "image-digits-linf-0.2", "--recipe", "pgd-at",
         "--epochs", "2", "--quiet", "--checkpoint-every", "4"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    ref = tmp_path / "ref" / "model.safetensors"
    subprocess.run(TRAIN + ["--out", str(ref)], env=ENV, check=True, capture_output=True)

    out = tmp_path / "killed" / "model.safetensors"
    state = out.with_name("model.train_state.pt")
    proc = subprocess.Popen(TRAIN + ["--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if state.exists():
            try:
                s = load_train_state(state)
            except UserError:
                continue  # caught between write and rename is impossible (atomic), but be patient
            if s["step"] >= 12:  # the first epoch has 23 batches: this is mid-epoch
                proc.send_signal(signal.SIGKILL)
                killed_at = s["step"]
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed run must not leave a final checkpoint"
    assert 0 < load_train_state(state)["batch"] < 23, "the kill should land mid-epoch"

    done = subprocess.run(TRAIN + ["--out", str(out), "--resume"], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming pgd-at" in done.stderr
    assert sha256_file(out) == sha256_file(ref)


def test_train_state_refuses_executable_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "state.pt"
    bad.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(UserError, match="cannot resume from"):
        load_train_state(bad)


class _Boom(RuntimeError):
    pass


def test_interrupted_evaluation_resumes_without_redoing_batches(tmp_path, digits_model, digits_data, monkeypatch):
    _, test = digits_data
    x, y = test.inputs[:120], test.y[:120]
    threat = ThreatModel("linf", 0.1)
    suite = [AttackSpec("pgd", "pgd", {"steps": 5})]
    full = evaluate(digits_model, x, y, threat, suite, batch_size=40)

    pgd = ATTACKS.get("pgd")
    calls = []
    orig = pgd.run

    def counting(self, model, z, ctx, yb, t):
        calls.append(int(ctx.index[0]))
        if len(calls) == 3 and not hasattr(counting, "fired"):
            counting.fired = True
            raise _Boom()
        return orig(self, model, z, ctx, yb, t)

    monkeypatch.setattr(pgd, "run", counting)
    partial = tmp_path / "eval.partial.json"
    with pytest.raises(_Boom):
        evaluate(digits_model, x, y, threat, suite, batch_size=40, resume_file=partial, resume_key="k", flags=False)
    assert partial.exists()
    calls.clear()
    again = evaluate(digits_model, x, y, threat, suite, batch_size=40, resume_file=partial, resume_key="k",
                     flags=False)  # the checks would call the attack again: not what is counted here
    assert len(calls) == 1, "only the unfinished third batch may be attacked again"
    assert torch.equal(again.robust_errors, full.robust_errors)
    assert not partial.exists()


def test_nonfinite_loss_stops_with_clear_error_and_keeps_last_state(tmp_path, digits_track):
    from bench.pipeline import train_track
    from bench.training.loop import TrainingDiverged

    (tmp_path / "nan_recipe.py").write_text(
        "from bench.training import Recipe\n"
        "from bench.training.common import adversarial_loss\n"
        "def NanAfter(k=3):\n"
        "    def loss(model, z, z_adv, ctx, y, state):\n"
        "        l = adversarial_loss(model, z, z_adv, ctx, y, state)\n"
        "        return l * float('nan') if state['step'] >= k else l\n"
        "    return Recipe('nan-after', inner=lambda *a: None, loss=loss)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        out = tmp_path / "ck" / "model.safetensors"
        with pytest.raises(TrainingDiverged, match="non-finite loss .* step 3"):
            train_track(digits_track, "nan_recipe:NanAfter", epochs=1, out=out, progress=False,
                        log=lambda m: None, checkpoint_every=1)
        assert not out.exists()
        assert load_train_state(out.with_name("model.train_state.pt"))["step"] == 3
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("nan_recipe", None)


def test_a_state_resumes_only_with_the_rank_count_that_wrote_it():
    from bench.training.loop import _rank_part

    one = {"rng": torch.get_rng_state(), "acc": [0.0, 0.0, 0]}  # written by a single process (no "world")
    assert _rank_part(one, 0, 1, "s.pt") is one
    two = {"world": 2, "ranks": [{"acc": [1.0, 0.0, 1]}, {"acc": [2.0, 0.0, 1]}]}
    assert _rank_part(two, 1, 2, "s.pt")["acc"][0] == 2.0  # each rank its own part
    with pytest.raises(UserError, match="written by 2 rank.*this run has 1"):
        _rank_part(two, 0, 1, "s.pt")
    with pytest.raises(UserError, match="written by 1 rank.*this run has 2"):
        _rank_part(one, 0, 2, "s.pt")
