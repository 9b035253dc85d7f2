"""Gaussian data augmentation for randomized smoothing (Cohen, Rosenfeld & Kolter 2019, §4 / §3.3).

The smoothed classifier g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), is only as good as the base
classifier f is on noisy inputs, so Cohen et al. train f on x + ε with the noise level σ that will be
certified. Here the noise is added in the model's attack space ``z`` (pixels, waveform, token
embeddings: where :func:`bench.certify.certify` adds it), only where ``ctx.mask`` lets ``z`` move, and
is not clipped to the input bounds (the paper neither clips in training nor in certification).
"""

from __future__ import annotations

import torch

from bench.errors import UserError
from bench.registry import RECIPES
from bench.training.common import adversarial_loss
from bench.training.recipe import Recipe


def gaussian_noise(z: torch.Tensor, ctx, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``sigma`` times standard normal noise shaped like ``z``, zero where ``ctx.mask`` is 0."""
    eps = torch.randn(z.shape, generator=generator, dtype=z.dtype, device="cpu" if generator is not None else z.device)
    eps = eps.to(z.device) * sigma
    if ctx is not None and ctx.mask is not None:
        eps = eps * ctx.mask.to(dtype=z.dtype, device=z.device)
    return eps


def noise_level(sigma: float, relative: bool, ctx) -> float:
    """The absolute noise level: ``sigma``, or ``sigma`` times the model's ``ctx.eps_scale`` when ``relative``
    (token embeddings, whose scale the model learns: an absolute level could be outgrown by larger embeddings)."""
    if not relative:
        return sigma
    if ctx is None or ctx.eps_scale is None:
        raise UserError("relative noise needs a model that provides ctx.eps_scale (e.g. its mean embedding norm)")
    return sigma * float(ctx.eps_scale)


@RECIPES.register("gaussian-aug")
def gaussian_aug(sigma: float = 0.25, relative: bool = False) -> Recipe:
    """Train on ``z + N(0, sigma²)`` (Cohen, Rosenfeld & Kolter 2019, §4): the base classifier of a smoothed
    classifier certified at noise level ``sigma`` (times ``ctx.eps_scale`` when ``relative``). The threat
    model of the track is not used."""
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
        raise UserError(f"gaussian-aug: sigma must be a number > 0, got {sigma!r}")
    sigma = float(sigma)

    def inner(model, z, ctx, y, threat, state):
        # drawn from torch's global generator, which the loop seeds (bench.rng.seed_everything)
        return (z + gaussian_noise(z, ctx, noise_level(sigma, relative, ctx))).detach()

    params = {"sigma": sigma, **({"relative": True} if relative else {})}
    return Recipe("gaussian-aug", inner=inner, loss=adversarial_loss, params=params,
                  cite="Cohen, Rosenfeld & Kolter 2019, Certified Adversarial Robustness via Randomized Smoothing")
