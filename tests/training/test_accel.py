"""torch.compile (in place, same state dict), pinned-memory copies on CUDA (their logic also checked on
the CPU by recording calls), and their CLI switches."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main
from bench.data import to_device
from bench.errors import UserError
from bench.evaluate import evaluate
from bench.pipeline import build_model
from bench.registry import RECIPES
from bench.task import compile_model
from bench.training import TrainConfig, train


def _train(track, data, **cfg):
    torch.manual_seed(0)
    model = build_model(track, data)
    train(model, data, RECIPES.get("pgd-at")(steps=2), track.threat,
          TrainConfig(epochs=1, batch_size=64, lr=2e-3, seed=0, **cfg), progress=False)
    return model


def test_compiled_training_matches_eager_and_keeps_state_dict_keys(digits_track, digits_data):
    train_data, test = digits_data
    small = train_data.subset(torch.arange(256))
    eager = _train(digits_track, small)
    compiled = _train(digits_track, small, compile="aot_eager")  # dynamo + AOTAutograd, no C++ compiler
    assert compiled._compiled_call_impl is not None
    a, b = eager.state_dict(), compiled.state_dict()
    assert list(a) == list(b)  # no "_orig_mod." prefix: checkpoints load into an uncompiled model
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    x, y = test.inputs[:100], test.y[:100]
    m1 = evaluate(eager, x, y, digits_track.threat, "pgd").metrics()
    m2 = evaluate(compiled, x, y, digits_track.threat, "pgd").metrics()
    assert m1["robust_accuracy"] == m2["robust_accuracy"] and m1["clean_accuracy"] == m2["clean_accuracy"]


def test_unknown_compile_backend_is_a_user_error(digits_track, digits_data):
    model = build_model(digits_track, digits_data[0])
    with pytest.raises(UserError, match="unknown torch.compile backend 'nope'"):
        compile_model(model, "nope")


def test_cli_eval_compile_equals_eager_and_rejects_bad_backend(digits_model, tmp_path, capsys):
    from bench.checkpoint import save_checkpoint

    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, digits_model, {"model": "smallcnn", "recipe": "erm"})
    common = ["eval", "--track", "image-digits-linf-0.2", "--checkpoint", str(ckpt), "--no-sweep", "--no-flags",
              "--n", "60", "--quiet"]
    assert main(common + ["--out", str(tmp_path / "eager.json")]) == 0
    assert main(common + ["--out", str(tmp_path / "compiled.json"), "--compile", "aot_eager"]) == 0
    e, c = (json.loads((tmp_path / f).read_text()) for f in ("eager.json", "compiled.json"))
    assert e["per_example"] == c["per_example"]
    capsys.readouterr()
    assert main(common + ["--out", str(tmp_path / "bad.json"), "--compile", "nope"]) == 2
    assert "unknown torch.compile backend 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()


def test_to_device_on_cpu_never_pins_and_hands_back_the_same_tensors(monkeypatch):
    """Without CUDA, ``is_pinned()`` is False whatever the code does (pinning needs a CUDA driver), so the
    check is on what ``to_device`` asks for: a CPU target never requests pinned memory, and CPU tensors
    come back as the very same objects (no copy), in dicts too, other objects unchanged."""
    pins = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pins.append(self) or self)
    x, mask = torch.arange(12.0).reshape(4, 3), torch.ones(4, dtype=torch.bool)
    assert to_device(x, "cpu") is x
    assert to_device(x, torch.device("cpu")) is x
    out = to_device({"x": x, "mask": mask}, "cpu")
    assert list(out) == ["x", "mask"] and out["x"] is x and out["mask"] is mask
    assert to_device([1, 2], "cpu") == [1, 2] and to_device("text", "cpu") == "text"
    assert pins == [], "pin_memory was requested for a CPU target"


def test_to_device_stages_cpu_tensors_for_cuda_through_pinned_memory(monkeypatch):
    """The CUDA path's logic, checked without a GPU by recording the calls: a CPU tensor bound for CUDA is
    pinned and copied with ``non_blocking=True`` (in dicts too); ``pin=False`` and a tensor not on the CPU
    go with a plain ``.to`` (the copy on a real GPU is the ``gpu`` test below)."""
    calls = []

    class Pinned:
        def __init__(self, src):
            self.src = src

        def to(self, device, non_blocking=False):
            calls.append(("pinned.to", self.src, torch.device(device), non_blocking))
            return "on-cuda"

    def pin_memory(self, *a, **k):
        calls.append(("pin", self))
        return Pinned(self)

    def plain_to(self, *args, **kwargs):
        calls.append(("to", self, args, kwargs))
        return "plain"

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin_memory)
    monkeypatch.setattr(torch.Tensor, "to", plain_to)
    x = torch.arange(12.0).reshape(4, 3)
    assert to_device({"a": x}, "cuda") == {"a": "on-cuda"}
    assert [c[0] for c in calls] == ["pin", "pinned.to"] and calls[0][1] is x and calls[1][1] is x
    assert calls[1][2] == torch.device("cuda") and calls[1][3] is True
    calls.clear()
    assert to_device(x, "cuda", pin=False) == "plain"
    assert [c[0] for c in calls] == ["to"] and calls[0][2] == (torch.device("cuda"),)
    calls.clear()
    meta = torch.empty(2, device="meta")  # a tensor already off the CPU: nothing to pin
    assert to_device(meta, "cuda") == "plain" and [c[0] for c in calls] == ["to"]


@pytest.mark.gpu
def test_to_device_pins_and_copies_to_cuda():
    x = torch.arange(12.0).reshape(4, 3)
    out = to_device({"a": x}, "cuda")["a"]
    torch.cuda.synchronize()
    assert out.is_cuda and torch.equal(out.cpu(), x)
    assert not x.is_pinned()  # the caller's tensor is untouched; a pinned staging copy was used


@pytest.mark.gpu
def test_inductor_compiled_bf16_training_on_cuda(digits_track, digits_data):
    train_data, _ = digits_data
    model = _train(digits_track, train_data, compile="inductor", bf16=True, channels_last=True, device="cuda")
    assert next(model.parameters()).is_cuda
    assert all(torch.isfinite(p).all() for p in model.parameters())
