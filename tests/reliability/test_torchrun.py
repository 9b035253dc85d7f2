"""Two gloo processes under torchrun: training and sharded evaluation equal the single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from safetensors.torch import load_file
import torch

SCRIPT = textwrap.dedent('''
    import sys
    from dataclasses import replace
    from bench.pipeline import eval_track, train_track
    from bench.tracks import get_track
    from bench.suites import AttackSpec

    # LeNet has no dropout, so ranks draw no model randomness and results are comparable
    track = replace(get_track("image-digits-linf-0.2"), model="lenet", eps_sweep=(),
                    suite=(AttackSpec("pgd-10", "pgd", {"steps": 10}),))
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "train":
        train_track(track, "erm", epochs=2, out=out + "/model.safetensors", progress=False, log=lambda m: None)
    eval_track(track, sys.argv[3] + "/model.safetensors", results=out + "/results", progress=False)
''')

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_gloo_ranks_match_single_process(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    single, multi = tmp_path / "single", tmp_path / "multi"
    _run([sys.executable, str(script), "train", str(single), str(single)], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517"]
    _run(torchrun + [str(script), "train", str(multi), str(multi)], tmp_path)
    # training: gradients averaged over two equal shards of each batch == the full-batch gradient
    a, b = load_file(single / "model.safetensors"), load_file(multi / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-4, worst
    # evaluation: the DDP-trained checkpoint evaluated by 2 ranks and by 1 process, outcome by outcome
    sharded = tmp_path / "sharded"
    _run(torchrun + [str(script), "eval", str(sharded), str(multi)], tmp_path)
    plain = tmp_path / "plain"
    _run([sys.executable, str(script), "eval", str(plain), str(multi)], tmp_path)
    rel = "image/digits/linf-0.2/lenet__erm.json"
    d1 = json.loads((sharded / "results" / rel).read_text())
    d2 = json.loads((plain / "results" / rel).read_text())
    assert d1["per_example"] == d2["per_example"]
    assert d1["metrics"] == d2["metrics"]
    assert d1["n"] == 359
    assert not list((multi / "results").rglob("*.json.*")), "no stray temp files"


@pytest.mark.slow
def test_sigkill_under_torchrun_then_resume_gives_identical_weights(tmp_path):
    """Resuming works under torchrun: kill both ranks mid-epoch, resume, reach the uninterrupted weights."""
    import signal
    import time

    from bench.checkpoint import sha256_file
    from bench.errors import UserError
    from bench.training.loop import load_train_state

    env = {**ENV, "PYTHONUNBUFFERED": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29523",
                "-m", "bench.cli", "train", "--track", "image-digits-linf-0.2", "--recipe", "pgd-at",
                "--epochs", "2", "--quiet", "--checkpoint-every", "4"]
    ref = tmp_path / "ref" / "model.safetensors"
    _run(torchrun + ["--out", str(ref)], tmp_path)
    out = tmp_path / "killed" / "model.safetensors"
    state = out.with_name("model.train_state.pt")
    proc = subprocess.Popen(torchrun + ["--out", str(out)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    killed_at, deadline = None, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists():
            try:
                s = load_train_state(state)
            except UserError:
                continue
            if s["step"] >= 12:  # mid first epoch (23 global batches)
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
                killed_at = s["step"]
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed"
    assert not out.exists() and 0 < load_train_state(state)["batch"] < 23
    done = subprocess.run(torchrun + ["--out", str(out), "--resume"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming pgd-at" in done.stderr
    assert sha256_file(out) == sha256_file(ref)
