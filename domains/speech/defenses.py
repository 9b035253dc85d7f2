"""Inference-time speech defenses (bench.defenses) on waveform batches ``[N, T]`` in [-1, 1] at 16 kHz:
the input transformations proposed against audio adversarial examples (Yang et al., ICLR 2019,
"Characterizing audio adversarial examples using temporal dependency"; Rajaratnam & Kalita 2018,
"Noise flooding for detecting audio adversarial examples"; Das et al. 2018, compression).

- ``lowpass``: a 2nd-order low-pass at ``cutoff`` Hz applied twice (torchaudio ``lowpass_biquad``);
  differentiable.
- ``bandpass``: the telephone band, a 300 Hz high-pass and a 4th-order 3,400 Hz low-pass; differentiable.
- ``mu-law``: G.711 mu-law companding at ``bits`` (``domains.speech.corruptions.mu_law_quantize``); not
  differentiable, BPDA identity.
- ``bit-depth``: uniform quantisation of the waveform to ``bits``; not differentiable, BPDA identity.
- ``noise``: additive Gaussian noise of std ``sigma`` (noise flooding); randomized, differentiable.
- ``speed``: random speed perturbation, a factor drawn per utterance from ``1 +- ratio`` (in 1 % steps),
  resampled with torchaudio and cropped / zero-padded back to the input length (the speed corruption's
  operation, ``domains.speech.corruptions``); randomized, differentiable.
"""

from __future__ import annotations

import torch

from bench.defenses import InputTransform, register_transform
from domains.speech.corruptions import band_limit, mu_law_quantize, speed_change


def _lowpass(z, params, gen):
    return band_limit(z, int(params["sample_rate"]), float(params["cutoff"]))


def _bandpass(z, params, gen):
    return band_limit(z, int(params["sample_rate"]), float(params["high"]), low=float(params["low"]))


def _mu_law(z, params, gen):
    return mu_law_quantize(z.clamp(-1, 1), int(params["bits"])).to(z.dtype)


def _bit_depth(z, params, gen):
    k = 2 ** (int(params["bits"]) - 1) - 1
    return torch.round(z.clamp(-1, 1) * k) / k


def _noise(z, params, gen):
    return (z + float(params["sigma"]) * torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)).clamp(-1, 1)


def _speed(z, params, gen):
    sr, steps = int(params["sample_rate"]), int(round(float(params["ratio"]) * 100))
    dev = gen.device if gen is not None else torch.device("cpu")
    out = []
    for i in range(z.shape[0]):  # one draw per utterance, in order
        pct = int(torch.randint(-steps, steps + 1, (1,), generator=gen, device=dev))
        out.append(z[i] if pct == 0 else speed_change(z[i:i + 1], (100 + pct) / 100, sr)[0])
    return torch.stack(out).clamp(-1, 1)


for _t in (
    InputTransform("lowpass", "speech", _lowpass, {"cutoff": 4000.0, "sample_rate": 16000},
                   description="4th-order low-pass at 4 kHz (torchaudio biquads)"),
    InputTransform("bandpass", "speech", _bandpass, {"low": 300.0, "high": 3400.0, "sample_rate": 16000},
                   description="telephone band: 300 Hz high-pass, 4th-order 3,400 Hz low-pass (torchaudio biquads)"),
    InputTransform("mu-law", "speech", _mu_law, {"bits": 8}, differentiable=False,
                   description="mu-law (G.711) companding at 8 bits; BPDA identity"),
    InputTransform("bit-depth", "speech", _bit_depth, {"bits": 8}, differentiable=False,
                   description="uniform quantisation to 8 bits; BPDA identity"),
    InputTransform("noise", "speech", _noise, {"sigma": 0.01}, randomized=True,
                   description="additive Gaussian noise, std 0.01 (noise flooding)"),
    InputTransform("speed", "speech", _speed, {"ratio": 0.1, "sample_rate": 16000}, randomized=True,
                   description="random speed perturbation by up to 10 % per utterance, length kept"),
):
    register_transform(_t)
