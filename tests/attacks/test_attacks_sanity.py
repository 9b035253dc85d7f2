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
    return compute_flags(model, x, y, THREAT, rep, eps_sweep=sweep, index=torch.arange(len(y)), n_check=len(y))


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
    assert Flag("not-converged", 0.02).raised and not Flag("not-converged", 0.01).raised


class LeakyRadius(ThreatModel):
    """A threat whose radius has an additive floor (a plausible bug): at eps = 0 the ball is not a point.
    Projection and ``contains`` agree with each other, so only the eps = 0 check can see it."""

    def radius(self, z, ctx=None):
        return super().radius(z, ctx) + 0.1

    def with_eps(self, eps):
        return LeakyRadius(self.norm, eps, self.space, self.scale, self.per, self.bounds)


def test_eps0_check_runs_the_attack_and_sees_a_leaky_projection(digits_model, digits_batch):
    """The attack really searches and projects at eps = 0 (no short-circuit returning the clean input),
    so a projection that moves points changes errors and raises ``eps0-differs-from-clean``."""
    from bench.sanity import eps0_differs
    from bench.suites import AttackSpec

    x, y = digits_batch
    attack = AttackSpec("apgd-ce", "apgd", {"steps": 10, "loss": "ce"}).build()
    kw = dict(n=len(y), batch=250, device="cpu", index=torch.arange(len(y)))
    good = eps0_differs(digits_model, x, y, THREAT, attack, **kw)
    leaky = eps0_differs(digits_model, x, y, LeakyRadius("linf", 0.2), attack, **kw)
    assert good.value == 0.0 and not good.raised
    assert leaky.raised and leaky.value > 0.2, leaky


def test_not_converged_fires_on_a_short_attack_and_not_on_the_standard_one(digits_model, digits_batch):
    """``not-converged`` runs the suite's own first gradient attack at K and 4K steps."""
    from bench.sanity import step_checks
    from bench.suites import STANDARD, AttackSpec

    x, y = digits_batch
    kw = dict(n=len(y), batch=250, device="cpu", index=torch.arange(len(y)))
    short = step_checks(digits_model, x, y, THREAT, [AttackSpec("pgd-1", "pgd", {"steps": 2, "rel_step": 0.05})],
                        **kw)
    assert {f.name: f.raised for f in short} == {"more-steps-weaker": False, "not-converged": True}, short
    full = {f.name: f for f in step_checks(digits_model, x, y, THREAT, STANDARD, **kw)}
    assert not full["not-converged"].raised and not full["more-steps-weaker"].raised, full
    assert full["not-converged"].value is not None


def test_evaluate_computes_flags_and_restores_the_mode(digits_model, digits_batch):
    from bench.suites import AttackSpec

    x, y = digits_batch
    digits_model.train()
    try:
        rep = evaluate(digits_model, x[:40], y[:40], THREAT, [AttackSpec("apgd-ce", "apgd", {"steps": 5})],
                       index=torch.arange(40))
        assert digits_model.training, "evaluate must give the model back in the mode it came in"
    finally:
        digits_model.eval()
    assert set(rep.flags) == set(CHECKS) and rep.flags["zero-gradients"]["value"] == 0.0
    assert evaluate(digits_model, x[:8], y[:8], THREAT, [AttackSpec("apgd-ce", "apgd", {"steps": 2})],
                    flags=False).flags == {}
    assert Flag("zero-gradients", None).to_dict() == {"value": None, "raised": False}


def test_step_checks_take_the_suites_longest_gradient_attack():
    """A suite that ends with a long APGD (the KWS suite) is checked at 4x *that* attack's steps; among
    attacks of equal length the first one counts, so AutoAttack's standard suite keeps APGD-CE."""
    from bench.sanity import _step_attack
    from bench.suites import STANDARD, AttackSpec

    long = AttackSpec("apgd-ce-1000", "apgd", {"steps": 1000, "loss": "ce"})
    assert _step_attack(STANDARD).name == "apgd-ce"
    assert _step_attack((*STANDARD, long)).name == "apgd-ce-1000"
    assert _step_attack((long, *STANDARD)).name == "apgd-ce-1000"
    assert _step_attack((STANDARD[3],)) is None  # Square has no steps: nothing to check
