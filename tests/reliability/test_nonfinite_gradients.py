"""A non-finite gradient (with a finite loss) stops training with exit code 1, a one-line message, no
checkpoint, and the last good training state kept (README: "A non-finite loss or gradient stops training
with a clear message (exit 1)"); the non-finite *loss* case is in test_resume.py."""

from __future__ import annotations

import sys

import torch

from bench.cli import main
from bench.training.loop import load_train_state

RECIPE = '''
import torch
from bench.training import Recipe
from bench.training.common import adversarial_loss


class _NanGradient(torch.autograd.Function):
    """The identity forward (a finite loss), NaN backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def NanGradAfter(k=2):
    def loss(model, z, z_adv, ctx, y, state):
        value = adversarial_loss(model, z, z_adv, ctx, y, state)
        return _NanGradient.apply(value) if state["step"] >= k else value
    return Recipe("nan-grad-after", inner=lambda *a: None, loss=loss)
'''


def test_nonfinite_gradient_exits_1_and_keeps_the_last_good_state(tmp_path, capsys):
    (tmp_path / "nan_grad_recipe.py").write_text(RECIPE)
    sys.path.insert(0, str(tmp_path))
    try:
        out = tmp_path / "ck" / "model.safetensors"
        rc = main(["train", "--track", "image-digits-linf-0.2", "--recipe", "nan_grad_recipe:NanGradAfter",
                   "--epochs", "1", "--out", str(out), "--checkpoint-every", "1", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 1, err
        lines = [line for line in err.splitlines() if line.startswith("xrobust: error:")]
        assert lines == ["xrobust: error: training diverged: non-finite gradients at epoch 1, step 2; "
                         "the last good training state (if any) was kept"], err
        assert not out.exists(), "no checkpoint may be written from a diverged run"
        state = load_train_state(out.with_name("model.train_state.pt"))
        assert state["step"] == 2  # the two good steps; the weights of the bad one were never applied
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("nan_grad_recipe", None)
