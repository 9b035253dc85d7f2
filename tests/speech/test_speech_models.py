"""Gradients reach the waveform through the Mel front end; SNR threat models hold on real clips."""

import math

import pytest
import torch

from bench.attacks.pgd import PGD
from bench.registry import LOSSES, MODELS
from bench.threat import ThreatModel
from domains.speech.models import BOUNDS


@pytest.mark.parametrize("name", ["melcnn", "m5", "ctc-digits"])
def test_gradients_reach_the_waveform(name, small_commands, small_digits):
    torch.manual_seed(0)
    model = MODELS.get(name)().eval()
    data = small_digits[0] if name == "ctc-digits" else small_commands[0]
    x = data.inputs[:4]
    z, ctx = model.encode(x)
    assert z.dtype == torch.float32 and float(z.abs().max()) <= 1.0
    z = torch.cat([z, torch.zeros_like(z[:1])])  # an all-zero clip too: the log floor keeps it finite
    z.requires_grad_(True)
    out = model(z, ctx)
    y = data.y
    if name == "ctc-digits":
        yy = {k: torch.cat([v[:4], v[:1]]) for k, v in y.items()}
    else:
        yy = torch.cat([y[:4], y[:1]])
    loss = LOSSES.get(model.objective)(out, yy)
    (g,) = torch.autograd.grad(loss.sum(), z)
    assert torch.isfinite(g).all(), "finite also for the all-zero clip"
    # (a power spectrogram has zero gradient at exactly zero input, so only real clips must move)
    assert (g[:4].flatten(1).norm(dim=1) > 0).all(), "every real clip gets a non-zero gradient"


def _snr_db(x, d):
    return 20 * torch.log10(x.flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(1e-30))


@pytest.mark.parametrize("db", [40.0, 30.0, 20.0, 10.0])
def test_pgd_respects_the_snr_budget_on_every_clip(db, small_commands):
    torch.manual_seed(0)
    model = MODELS.get("melcnn")().eval()
    x, y = small_commands[1].inputs[:16], small_commands[1].y[:16]
    z, ctx = model.encode(x)
    threat = ThreatModel.from_id(f"snr-{db:g}db", bounds=BOUNDS)
    assert threat.id == f"snr-{db:g}db"
    z_adv = PGD(steps=5).run(model, z, ctx, y, threat)
    snr = _snr_db(z, z_adv - z)
    assert bool((snr >= db - 1e-3).all()), snr.min()
    # the attack uses its budget: within 0.5 dB of the bound on most clips
    assert float((snr < db + 0.5).float().mean()) > 0.8
    assert float(z_adv.abs().max()) <= 1.0


def test_peak_relative_linf_budget(small_commands):
    model = MODELS.get("melcnn")().eval()
    z, ctx = model.encode(small_commands[1].inputs[:8])
    y = small_commands[1].y[:8]
    threat = ThreatModel.from_id("linf-30db", bounds=BOUNDS)
    z_adv = PGD(steps=3).run(model, z, ctx, y, threat)
    ratio = (z_adv - z).abs().amax(1) / z.abs().amax(1)
    assert bool((ratio <= 10 ** (-30 / 20) * (1 + 1e-5)).all())
    assert float(ratio.max()) > 0.9 * 10 ** (-30 / 20)


def test_targeted_ctc_attack_lowers_the_loss_of_the_chosen_transcript(small_digits):
    from domains.speech.text import encode_batch

    torch.manual_seed(0)
    model = MODELS.get("ctc-digits")().eval()
    x = small_digits[1].inputs[:4]
    z, ctx = model.encode(x)
    target = encode_batch(["one two three"] * 4)
    ctc = LOSSES.get("ctc")
    before = ctc(model(z), target)
    z_adv = PGD(steps=10, targeted=True).run(model, z, ctx, target, ThreatModel.from_id("snr-20db", bounds=BOUNDS))
    after = ctc(model(z_adv), target)
    assert bool((after < before).all()), (before, after)
    assert bool((_snr_db(z, z_adv - z) >= 20 - 1e-3).all())


def test_ctc_loss_is_per_utterance_and_finite(small_digits):
    model = MODELS.get("ctc-digits")().eval()
    data = small_digits[1]
    out = model(model.encode(data.inputs[:3])[0])
    loss = LOSSES.get("ctc")(out, {k: v[:3] for k, v in data.y.items()})
    assert loss.shape == (3,) and torch.isfinite(loss).all() and (loss > 0).all()
    assert out.shape[0] == 3 and out.shape[2] == model.spec["num_tokens"]
    assert math.isclose(float(out.detach().exp().sum(-1).mean()), 1.0, rel_tol=1e-4)
