"""Every registered attack, on every kind of threat model: stays inside, never mutates its
input, and a batch gives the same result as its examples one by one (random starts are
seeded per example). Parametrized from the registry: a new attack is tested by registering it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.registry import ATTACKS
from bench.task import Context, TaskModel
from bench.threat import ThreatModel


class TokenModel(TaskModel):
    """A tiny classifier over (B, L, D) 'token' tensors, for per-token threats."""

    def __init__(self):
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)))

    def forward(self, z, ctx=None):
        return self.net(z)


def attack_names():
    return [n for n, cls in ATTACKS.items() if not getattr(cls, "discrete", False)]


THREATS = {
    "linf": lambda: ThreatModel("linf", 0.1),
    "l2": lambda: ThreatModel("l2", 0.5),
    "snr": lambda: ThreatModel("l2", 20.0, scale="snr-db", bounds=(0.0, 1.0)),
    "emb": lambda: ThreatModel.from_id("emb-l2-0.1"),
}


def _case(kind, digits_model, digits_data):
    _, test = digits_data
    x, y = test.inputs[:12], test.y[:12]
    idx = torch.arange(100, 112)
    if kind == "emb":
        torch.manual_seed(0)
        model = TokenModel().eval()
        z = x.reshape(-1, 8, 8)
        mask = torch.ones(len(z), 8, 1)
        mask[:, 0] = 0
        mask[:, -1] = 0
        return model, z, Context(mask=mask, eps_scale=1.5, index=idx), y
    return digits_model, x, Context(index=idx), y


def _build(name):
    cls = ATTACKS.get(name)
    return cls(**getattr(cls, "fast_params", {}))


@pytest.mark.parametrize("kind", list(THREATS))
@pytest.mark.parametrize("name", attack_names())
def test_attack_contract(name, kind, digits_model, digits_data):
    threat = THREATS[kind]()
    model, z, ctx, y = _case(kind, digits_model, digits_data)
    z_before = z.clone()
    model.train()
    adv = _build(name).run(model, z, ctx, y, threat)
    assert model.training, "the attack must restore the model's mode"
    model.eval()
    assert torch.equal(z, z_before), "the attack mutated its input"
    assert not adv.requires_grad
    assert torch.isfinite(adv).all()
    assert threat.contains(adv, z, ctx).all()
    assert threat.distance(adv, z, ctx).max() <= 1 + 1e-5
    if getattr(ATTACKS.get(name), "per_example", True):
        ones = torch.cat([_build(name).run(model, z[i:i + 1], ctx.select(torch.tensor([i])), y[i:i + 1], threat)
                          for i in range(len(z))])
        assert torch.allclose(adv, ones, atol=1e-5), "batch result differs from one-by-one"


@pytest.mark.parametrize("name", attack_names())
def test_eps_zero_returns_clean_input(name, digits_model, digits_data):
    _, test = digits_data
    x, y = test.inputs[:8], test.y[:8]
    adv = _build(name).run(digits_model, x, Context(index=torch.arange(8)), y, ThreatModel("linf", 0.0))
    assert torch.equal(adv, x)
