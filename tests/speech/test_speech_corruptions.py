"""Speech corruptions: length, type, determinism, and each does what its parameters say."""

from __future__ import annotations

import math

import pytest
import torch

from bench.corruptions import domain_corruptions, get_corruption
from bench.registry import load_domains
from domains.speech.corruptions import (CUTOFF_HZ, MU_BITS, NOISE_SNR_DB, PITCH, SPEED, mix_at_snr, mu_law_quantize,
                                        room_impulse_response)

load_domains()
SR = 16000
NAMES = ["babble-noise", "band-limit", "mu-law", "pink-noise", "pitch", "reverb", "speed", "white-noise"]


def _speechlike(n: int = 6, seconds: float = 0.5) -> torch.Tensor:
    """Harmonic vowels with a syllable envelope, different pitch per clip, as int16 PCM (the datasets' type)."""
    t = torch.arange(int(SR * seconds)) / SR
    out = []
    for i in range(n):
        f0 = 110 + 20 * i
        x = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 12))
        x = x * (0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t)) * 0.3 / x.abs().max()
        out.append(x)
    return (torch.stack(out) * 32767).round().to(torch.int16)


X = _speechlike()
AUX = {"sample_rate": SR, "pool": _speechlike(8).flip(-1)}


def _f(x):
    return x.float() / 32768.0


def test_all_registered():
    assert [c.name for c in domain_corruptions("speech")] == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("severity", [1, 5])
def test_shape_type_determinism(name, severity):
    c = get_corruption(f"speech/{name}")
    y = c(X, severity, seed=0, aux=AUX)
    assert y.shape == X.shape and y.dtype == torch.int16
    assert torch.equal(y, c(X, severity, seed=0, aux=AUX))
    assert not torch.equal(y, X)


@pytest.mark.parametrize("name", ["white-noise", "pink-noise", "babble-noise"])
def test_noise_hits_its_snr(name):
    c = get_corruption(f"speech/{name}")
    x = _f(X)
    for s in range(1, 6):
        y = _f(c(X, s, seed=0, aux=AUX))
        noise = y - x
        snr = 10 * torch.log10(x.pow(2).mean(1) / noise.pow(2).mean(1))
        # int16 rounding adds ~-96 dB of noise: within 0.5 dB at every level
        assert torch.allclose(snr, torch.full_like(snr, NOISE_SNR_DB[s - 1]), atol=0.5), (s, snr)
    assert not torch.equal(c(X, 3, seed=0, aux=AUX), c(X, 3, seed=1, aux=AUX))


def test_mix_at_snr_keeps_silence_silent():
    x = torch.zeros(2, 100)
    assert torch.equal(mix_at_snr(x, torch.randn(2, 100), 10.0), x)


def test_band_limit_removes_high_frequencies():
    t = torch.arange(SR // 2) / SR
    x = 0.25 * (torch.sin(2 * math.pi * 500 * t) + torch.sin(2 * math.pi * 6000 * t))
    for s in (1, 5):
        y = get_corruption("speech/band-limit")(x.unsqueeze(0), s, seed=0, aux=AUX)[0]
        spec_x, spec_y = torch.fft.rfft(x).abs(), torch.fft.rfft(y).abs()
        hi, lo = 6000 * len(x) // SR, 500 * len(x) // SR
        assert 20 * math.log10(spec_x[hi] / spec_y[hi]) > 20  # the 6 kHz tone drops by > 20 dB
        assert 20 * math.log10(spec_x[lo] / spec_y[lo]) < 1.5 if CUTOFF_HZ[s - 1] > 1500 else True


def test_mu_law_levels_and_monotone_distortion():
    c = get_corruption("speech/mu-law")
    x = torch.linspace(-1, 1, 20001).unsqueeze(0)
    assert len(torch.unique(c(x, 5, seed=0))) == 7  # 3 bits, mid-tread: 2^3 - 1 levels
    assert len(torch.unique(mu_law_quantize(x, 8))) == 255
    err = [float((c(X, s, seed=0).float() - X.float()).pow(2).mean()) for s in range(1, 6)]
    assert err == sorted(err)
    quiet = torch.zeros(1, 1000, dtype=torch.int16)
    quiet[0, ::7] = 30  # near silence: -61 dBFS ticks
    assert torch.equal(c(quiet, 5, seed=0), torch.zeros_like(quiet))  # no DC offset, no buzz
    one = torch.tensor([[0.5, -0.5]])
    assert torch.allclose(mu_law_quantize(one, 16), one, atol=1e-4)  # fine codes reproduce the input


def test_severity_tables_grow():
    assert all(abs(math.log(a)) < abs(math.log(b)) for a, b in zip(SPEED, SPEED[1:]))
    assert all(abs(a) < abs(b) for a, b in zip(PITCH, PITCH[1:]))
    assert list(MU_BITS) == sorted(MU_BITS, reverse=True) and list(NOISE_SNR_DB) == sorted(NOISE_SNR_DB)[::-1]


def test_babble_is_distinct_equal_level_talkers():
    """Babble of a pool of eight pure tones (one 100x louder than the rest): every clip's babble holds
    exactly four different tones, at equal level (the loud one does not take over)."""
    t = torch.arange(SR // 2) / SR
    freqs = [300 + 200 * k for k in range(8)]  # whole cycles in 0.5 s: a circular shift keeps the line
    pool = torch.stack([0.1 * torch.sin(2 * math.pi * f * t) for f in freqs])
    pool[0] *= 100.0
    x = _f(X)
    y = get_corruption("speech/babble-noise")(x, 5, seed=0, aux={"sample_rate": SR, "pool": pool})
    for noise in (y - x):
        spec = torch.fft.rfft(noise).abs()
        level = torch.stack([spec[f // 2] for f in freqs])  # bin spacing 2 Hz
        present = level > 0.05 * level.max()
        assert int(present.sum()) == 4
        assert float(level[present].max() / level[present].min()) < 1.05
    with pytest.raises(ValueError, match="at least 4"):
        get_corruption("speech/babble-noise")(X, 1, seed=0, aux={"sample_rate": SR, "pool": pool[:3]})


def test_speed_and_pitch_keep_length_and_move_a_tone():
    t = torch.arange(SR) / SR
    tone = (0.5 * torch.sin(2 * math.pi * 440 * t)).unsqueeze(0)
    for name, s, factor in (("speed", 5, 0.75), ("speed", 4, 1.2), ("pitch", 3, 2 ** (3 / 12)), ("pitch", 4, 2 ** (-4 / 12))):
        y = get_corruption(f"speech/{name}")(tone, s, seed=0)[0]
        assert y.shape == tone[0].shape
        seg = y[2000:12000]
        peak = torch.fft.rfft(seg).abs().argmax().item() * SR / len(seg)
        assert abs(peak - 440 * factor) < 440 * factor * 0.01, (name, s, peak)


def test_reverb_tail_follows_rt60():
    import numpy as np

    h = room_impulse_response(np.random.default_rng(0), 0.6, SR)
    assert len(h) == int(0.6 * SR)
    e = h.pow(2)
    early, late = e[1:800].mean(), e[-800:].mean()  # first and last 50 ms
    assert 10 * math.log10(early / late) > 45  # ~60 dB of decay over RT60 (noisy estimate)


@pytest.mark.parametrize("name", NAMES)
def test_a_prefix_of_the_batch_is_corrupted_the_same(name):
    """`xrobust run quick` re-checks published outcomes on a prefix of the subset: corrupting the first k
    examples alone must give what they got in the whole batch."""
    c = get_corruption(f"speech/{name}")
    assert torch.equal(c(X[:3], 4, seed=0, aux=AUX), c(X, 4, seed=0, aux=AUX)[:3])
