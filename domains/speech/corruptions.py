"""Common corruptions of speech: the acoustic conditions a deployed recogniser meets.

Following the noise/reverberation/channel families of speech-robustness benchmarks (e.g. the
CHiME and Aurora noise conditions, Hirsch & Pearce 2000; reverberation by room impulse responses,
Ko et al. 2017; speed perturbation, Ko et al. 2015), each corruption works on the raw waveform
batch ``[N, T]`` in [-1, 1] with torchaudio functionals, keeps the length ``T`` and has five
severities (parameter tables below). Noise levels are set per utterance relative to the
utterance's own power (SNR in dB), so quiet clips get quiet noise. All randomness comes from the
cell's generator.
"""

from __future__ import annotations


import math

import numpy as np
import torch
import torchaudio.functional as AF

from bench.corruptions import Corruption, register_corruption

#: SNR (dB) of the additive noises at severities 1..5
NOISE_SNR_DB = (30.0, 20.0, 10.0, 5.0, 0.0)
#: reverberation time RT60 (s) of the synthetic room impulse responses
RT60 = (0.2, 0.4, 0.6, 0.9, 1.2)
#: speed factors: 5, 10, 15, 20, 25 % off, alternating slower / faster
SPEED = (0.95, 1.1, 0.85, 1.2, 0.75)
#: pitch shift in semitones
PITCH = (1.0, -2.0, 3.0, -4.0, 6.0)
#: low-pass cutoff (Hz) of the band-limit corruption (telephone band is ~3,400 Hz)
CUTOFF_HZ = (4000.0, 3000.0, 2000.0, 1500.0, 1000.0)
#: mu-law code sizes: 8, 6, 5, 4, 3 bits (8 bit is the G.711 telephone codec)
MU_BITS = (8, 6, 5, 4, 3)
#: the compander's mu (G.711)
MU = 255.0

_SR = 16000


def _sr(aux) -> int:
    return int(aux.get("sample_rate", _SR))


def _noise(rng: np.random.Generator, shape) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def _power(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1, keepdim=True)


def mix_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``x + g * noise`` with ``g`` per utterance such that 10 log10(P(x) / P(g noise)) = ``snr_db``
    (a silent clip stays silent), clipped to [-1, 1]."""
    gain = torch.sqrt(_power(x) / _power(noise).clamp_min(1e-12) / 10 ** (snr_db / 10))
    return (x + gain * noise).clamp(-1.0, 1.0)


def pink(rng: np.random.Generator, shape) -> torch.Tensor:
    """Pink (1/f power) noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    w = torch.fft.rfft(_noise(rng, shape), dim=-1)
    f = torch.arange(w.shape[-1], dtype=torch.float32)
    f[0] = 1.0
    return torch.fft.irfft(w / f.sqrt(), n=shape[-1], dim=-1)


def _white(x, severity, rng, aux):
    return mix_at_snr(x, _noise(rng, tuple(x.shape)), NOISE_SNR_DB[severity - 1])


def _pink(x, severity, rng, aux):
    return mix_at_snr(x, pink(rng, tuple(x.shape)), NOISE_SNR_DB[severity - 1])


def _babble(x, severity, rng, aux, talkers: int = 4):
    """Babble: ``talkers`` different utterances of the training split (``aux["pool"]``), each
    circularly shifted at random and scaled to the same power (no talker dominates; equal-level
    talkers as in babble-noise construction, Krishnamurthy & Hansen 2009), summed and mixed at the
    severity's SNR."""
    pool = torch.as_tensor(aux["pool"], dtype=x.dtype)
    n, t = x.shape
    pool = pool[:, :t] if pool.shape[1] >= t else torch.nn.functional.pad(pool, (0, t - pool.shape[1]))
    pool = pool / _power(pool).clamp_min(1e-12).sqrt()
    if len(pool) < talkers:
        raise ValueError(f"babble needs at least {talkers} pool utterances, got {len(pool)}")
    babble = torch.zeros_like(x)
    for i in range(n):  # draws example by example, so a prefix of the batch gets the same babble
        pick = rng.choice(len(pool), size=talkers, replace=False)
        shift = rng.integers(0, t, size=talkers)
        for k in range(talkers):
            babble[i] += torch.roll(pool[int(pick[k])], int(shift[k]))
    return mix_at_snr(x, babble, NOISE_SNR_DB[severity - 1])


def room_impulse_response(rng: np.random.Generator, rt60: float, sr: int) -> torch.Tensor:
    """A synthetic room impulse response: a direct path, then Gaussian noise under an exponential
    decay reaching -60 dB at ``rt60`` seconds (the statistical reverberation model, Schroeder 1962)."""
    n = int(rt60 * sr)
    t = torch.arange(n, dtype=torch.float32) / sr
    h = _noise(rng, (n,)) * torch.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: 60 dB in amplitude
    h[0] = 1.0
    return h / h.norm()


def _reverb(x, severity, rng, aux):
    sr = _sr(aux)
    h = room_impulse_response(rng, RT60[severity - 1], sr)
    y = AF.fftconvolve(x, h.unsqueeze(0).expand(x.shape[0], -1))[..., : x.shape[-1]]
    # keep each utterance's level
    y = y * torch.sqrt(_power(x) / _power(y).clamp_min(1e-12))
    return y.clamp(-1.0, 1.0)


def _fit(y: torch.Tensor, t: int) -> torch.Tensor:
    """Crop or zero-pad the time axis to ``t`` samples."""
    return y[..., :t] if y.shape[-1] >= t else torch.nn.functional.pad(y, (0, t - y.shape[-1]))


def speed_change(x: torch.Tensor, factor: float, sr: int) -> torch.Tensor:
    """Speed perturbation (tempo and pitch together, Ko et al. 2015): resample by ``factor`` and play at
    the original rate; cropped / zero-padded back to the input length, clipped to [-1, 1]."""
    y = AF.resample(x, orig_freq=int(round(sr * factor)), new_freq=sr)
    return _fit(y, x.shape[-1]).clamp(-1.0, 1.0)


def _speed(x, severity, rng, aux):
    """Speed perturbation by the severity's factor (:func:`speed_change`)."""
    return speed_change(x, SPEED[severity - 1], _sr(aux))


def _pitch(x, severity, rng, aux, n_fft: int = 512, hop: int = 128):
    """Pitch shift without tempo change (the method of torchaudio's ``pitch_shift``): a phase-vocoder
    time stretch by the pitch factor f, then resampling by f back to the original duration. The
    resampling ratio is rounded to a multiple of 100 Hz (pitch within 0.4% of 2^(n/12)): torchaudio's
    own exact ratio has no common divisor with 16 kHz, which makes its polyphase resampler ~100x slower
    (55-73 s for 400 one-second clips on one core, against ~2 s here)."""
    sr = _sr(aux)
    f = 2.0 ** (PITCH[severity - 1] / 12.0)
    win = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop_length=hop, window=win, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2])[..., None]
    stretched = AF.phase_vocoder(spec, rate=1.0 / f, phase_advance=advance)
    y = torch.istft(stretched, n_fft, hop_length=hop, window=win, length=int(round(x.shape[-1] * f)))
    y = AF.resample(y, orig_freq=int(round(sr * f / 100.0)) * 100, new_freq=sr)
    return _fit(y, x.shape[-1]).clamp(-1.0, 1.0)


def band_limit(x: torch.Tensor, sr: int, high: float, low: float | None = None) -> torch.Tensor:
    """A 2nd-order high-pass at ``low`` Hz (none when ``None``) and a low-pass at ``high`` Hz applied twice
    (4th-order roll-off), like a narrow-band channel; clipped to [-1, 1]."""
    y = x if low is None else AF.highpass_biquad(x, sr, low)
    for _ in range(2):
        y = AF.lowpass_biquad(y, sr, high)
    return y.clamp(-1.0, 1.0)


def _band_limit(x, severity, rng, aux):
    """Band limit: 100 Hz high-pass and the severity's low-pass cutoff (:func:`band_limit`)."""
    return band_limit(x, _sr(aux), CUTOFF_HZ[severity - 1], low=100.0)


def mu_law_quantize(x: torch.Tensor, bits: int, mu: float = MU) -> torch.Tensor:
    """Mu-law companding (ITU-T G.711, mu = 255) with a ``bits``-bit mid-tread quantiser: the companded
    value ``sign(x) ln(1 + mu |x|) / ln(1 + mu)`` is rounded to one of ``2^bits - 1`` levels symmetric
    about zero, then expanded. Zero is a level, so silence stays silent (torchaudio's
    ``mu_law_encoding`` has an even number of levels and no zero level: at 3 bits it turns silence
    into a 0.05 DC offset that toggles into a buzz)."""
    k = 2 ** (bits - 1) - 1
    c = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    c = torch.round(c * k) / k
    return torch.sign(c) * torch.expm1(c.abs() * math.log1p(mu)) / mu


def _mu_law(x, severity, rng, aux):
    """Low-bitrate companding: :func:`mu_law_quantize` at the severity's bits (8 bits: G.711)."""
    return mu_law_quantize(x.clamp(-1.0, 1.0), MU_BITS[severity - 1]).to(x.dtype)


def _on_float(fn):
    """Run ``fn`` on float waveforms in [-1, 1]: int16 PCM (the datasets' storage) is converted as the
    models do (``/ 32768``) and the result converted back to int16 (rounded, clipped), so a corrupted
    batch is stored like a clean one."""

    def wrapped(x, severity, rng, aux):
        if x.dtype != torch.int16:
            return fn(x.float(), severity, rng, aux).to(x.dtype)
        pool = aux.get("pool")
        if pool is not None and torch.as_tensor(pool).dtype == torch.int16:
            aux = {**aux, "pool": torch.as_tensor(pool).float() / 32768.0}
        y = fn(x.float() / 32768.0, severity, rng, aux)
        return (y * 32768.0).round().clamp(-32768, 32767).to(torch.int16)

    wrapped.__doc__ = fn.__doc__
    return wrapped


for _name, _fn, _desc, _needs in (
    ("white-noise", _white, "additive white Gaussian noise at 30/20/10/5/0 dB SNR", ()),
    ("pink-noise", _pink, "additive pink (1/f) noise at 30/20/10/5/0 dB SNR", ()),
    ("babble-noise", _babble, "four other training utterances mixed at 30/20/10/5/0 dB SNR", ("pool",)),
    ("reverb", _reverb, "synthetic room impulse response, RT60 0.2/0.4/0.6/0.9/1.2 s", ()),
    ("speed", _speed, "speed perturbation x0.95/1.1/0.85/1.2/0.75 (tempo and pitch)", ()),
    ("pitch", _pitch, "pitch shift +1/-2/+3/-4/+6 semitones, tempo kept", ()),
    ("band-limit", _band_limit, "100 Hz high-pass and 4th-order low-pass at 4000/3000/2000/1500/1000 Hz", ()),
    ("mu-law", _mu_law, "mu-law (G.711, mu 255) companding at 8/6/5/4/3 bits, zero kept", ()),
):
    register_corruption(Corruption(_name, "speech", _on_float(_fn), description=_desc, needs=_needs))

__all__ = ["band_limit", "mix_at_snr", "mu_law_quantize", "speed_change", "pink", "room_impulse_response", "NOISE_SNR_DB", "RT60", "SPEED",
           "PITCH", "CUTOFF_HZ", "MU_BITS"]
