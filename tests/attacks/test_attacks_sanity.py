"""Sanity flags fire on deliberately broken models and stay quiet on a normal one."""

from __future__ import annotations

import pytest
import torch

from bench.evaluate import evaluate
from bench.sanity import CHECKS, Flag, compute_flags, non_monotone_in_eps, raised, robust_above_clean
from bench.task import TaskModel
from bench.threat import ThreatModel

THREAT = ThreatModel("linf", 0.2)


class Quantized(TaskModel):
    """Gradient masking by input quantization (Buckman et al. 2018 style): pixels rounded to 1 bit.
    The input gradient is zero almost everywhere."""

    def __init__(self, inner):
        super().__init__(inner)

    def forward(self, z, ctx=None):
        return self.net(torch.round(z))


class Saturated(TaskModel):
    """Gradient masking by a saturated output: logits times 1e4, so the softmax is one-hot in float32
    and the cross-entropy gradient of every confidently classified example is exactly zero."""

    def __init__(self, inner):
        super().__init__(inner)

    def forward(self, z, ctx=None):
        return self.net(z) * 1e4


class Noisy(TaskModel):
    """A randomized defense: Gaussian noise on the input at every forward (Cohen et al. 2019 style)."""

    def __init__(self, inner):
        super().__init__(inner)

    def forward(self, z, ctx=None):
        return self.net(z + 0.3 * torch.randn_like(z))


def _flags(model, x, y):
    from bench.suites import AttackSpec

    suite = [AttackSpec("apgd-ce", "apgd", {"steps": 10, "loss": "ce"}),
             AttackSpec("square", "square", {"queries": 200})]
    rep = evaluate(model, x, y, THREAT, suite, cascade=True, index=torch.arange(len(y)))
    sweep = []
    for eps in (0.0, 0.1, 0.2):
        r = evaluate(model, x, y, THREAT.with_eps(eps), suite[:1], cascade=True, index=torch.arange(len(y)))
        sweep.append({"threat": THREAT.with_eps(eps).id, "eps": eps, "robust_accuracy": r.metrics()["robust_accuracy"]})
    return compute_flags(model, x, y, THREAT, rep, eps_sweep=sweep, index=torch.arange(len(y)), n_check=len(y),
                         steps=5)


def test_normal_model_raises_no_flag(digits_model, digits_batch):
    flags = _flags(digits_model, *digits_batch)
    assert set(flags) == set(CHECKS)
    assert raised(flags) == [], flags
    assert flags["zero-gradients"]["value"] == 0.0
    assert flags["randomized-forward"]["value"] == 0.0


def test_quantized_input_is_flagged(digits_model, digits_batch):
    flags = _flags(Quantized(digits_model).eval(), *digits_batch)
    assert flags["zero-gradients"]["raised"] and flags["zero-gradients"]["value"] > 0.9
    assert flags["blackbox-beats-whitebox"]["raised"], flags


def test_saturated_softmax_is_flagged(digits_model, digits_batch):
    flags = _flags(Saturated(digits_model).eval(), *digits_batch)
    assert flags["zero-gradients"]["raised"] and flags["zero-gradients"]["value"] > 0.5, flags


def test_randomized_model_is_flagged(digits_model, digits_batch):
    torch.manual_seed(0)
    flags = _flags(Noisy(digits_model).eval(), *digits_batch)
    assert flags["randomized-forward"]["raised"] and flags["randomized-forward"]["value"] > 0.9
    assert flags["eps0-differs-from-clean"]["raised"], flags


def test_flags_from_numbers():
    assert robust_above_clean(0.9, [0.5, 0.91]).raised
    assert not robust_above_clean(0.9, [0.9, 0.2]).raised
    f = non_monotone_in_eps([(0.0, 0.9), (0.1, 0.5), (0.2, 0.6), (0.3, 0.1)])
    assert f.raised and f.value == pytest.approx(0.1)
    assert not non_monotone_in_eps([(0.0, 0.9), (0.1, 0.5), (0.2, 0.5)]).raised
    assert non_monotone_in_eps([(0.3, 0.2)]).value is None
    assert Flag("more-steps-weaker", 0.02).raised and not Flag("more-steps-weaker", 0.0).raised
    assert Flag("zero-gradients", None).to_dict() == {"value": None, "raised": False}
