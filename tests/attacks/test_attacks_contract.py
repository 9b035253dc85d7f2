"""Every registered attack, on every kind of threat model: stays inside the threat,
does not mutate its input, and attacking a batch equals attacking its examples one by one.

Parametrized from the ATTACKS registry (register an attack and it is tested here).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bench.attacks  # noqa: F401  (registration)
from bench.attacks.apgd import APGD, checkpoints
from bench.attacks.square import grid_shape, p_at, pseudo_gaussian, window
from bench.registry import ATTACKS
from bench.task import Context, TaskModel
from bench.threat import ThreatModel

#: small budgets so the whole matrix runs in seconds
FAST = {"pgd": {"steps": 3}, "apgd": {"steps": 6}, "apgd-t": {"steps": 6, "targets": 2},
        "fab": {"steps": 5}, "fab-t": {"steps": 5, "targets": 2}, "square": {"queries": 25}}


class RowTokens(TaskModel):
    """Digits seen as a sequence: each of the 8 image rows is a token of 8 values
    (a non-image z of shape (B, L, D) with a per-token threat and a mask)."""

    def __init__(self, image_model):
        super().__init__(image_model)

    def forward(self, z, ctx=None):
        return self.net(z.unsqueeze(1))


def _setups(model, x, y):
    """(name, task model, z, ctx, threat) for each kind of threat model."""
    idx = torch.arange(100, 100 + len(y))
    tok = RowTokens(model).eval()
    zt = x[:, 0].clone()
    mask = torch.ones_like(zt[..., :1])
    mask[:, 0] = 0  # the first token may never move (like [CLS])
    return [
        ("linf-abs", model, x, Context(index=idx), ThreatModel("linf", 0.2)),
        ("l2-abs", model, x, Context(index=idx), ThreatModel("l2", 1.0)),
        ("snr-db", model, x, Context(index=idx), ThreatModel("l2", 20.0, scale="snr-db")),
        ("token-l2", tok, zt, Context(mask=mask, eps_scale=2.0, index=idx),
         ThreatModel("l2", 0.3, space="embedding", scale="relative", per="token", bounds=None)),
        ("token-linf", tok, zt, Context(mask=mask, eps_scale=2.0, index=idx),
         ThreatModel("linf", 0.1, space="embedding", scale="relative", per="token", bounds=(0.0, 1.0))),
    ]


ATTACK_NAMES = sorted(n for n in ATTACKS.names() if not getattr(ATTACKS.get(n), "discrete", False))
SETUPS = ["linf-abs", "l2-abs", "snr-db", "token-l2", "token-linf"]


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_contract(name, setup, digits_model, digits_batch):
    x, y = digits_batch
    x, y = x[:12], y[:12]
    _, tm, z, ctx, threat = next(s for s in _setups(digits_model, x, y) if s[0] == setup)
    attack = ATTACKS.get(name)(**FAST.get(name, {}))
    z_before = z.clone()
    tm.train()
    z_adv = attack.run(tm, z, ctx, y, threat)
    assert tm.training, "the attack must restore the model's mode"
    tm.eval()
    assert torch.equal(z, z_before), "the attack mutated its input"
    assert z_adv.shape == z.shape and not z_adv.requires_grad
    assert bool(threat.contains(z_adv, z, ctx).all())
    if ctx.mask is not None:
        assert torch.equal(z_adv[:, 0], z[:, 0]), "a masked position moved"
    if getattr(attack, "per_example", True):
        one = torch.cat([attack.run(tm, z[i:i + 1], ctx.select(torch.tensor([i])), y[i:i + 1], threat)
                         for i in (0, 5, 11)])
        assert torch.allclose(one, z_adv[[0, 5, 11]], atol=1e-5), "batch result differs from one by one"


@pytest.mark.parametrize("name", ["apgd", "apgd-t", "fab", "fab-t", "square"])
def test_attack_lowers_accuracy(name, digits_model, digits_batch):
    x, y = digits_batch
    ctx = Context(index=torch.arange(len(y)))
    params = {"apgd": {"steps": 20}, "apgd-t": {"steps": 20, "targets": 3}, "fab": {"steps": 20},
              "fab-t": {"steps": 20, "targets": 3}, "square": {"queries": 300}}[name]
    z_adv = ATTACKS.get(name)(**params).run(digits_model, x, ctx, y, ThreatModel("linf", 0.2))
    with torch.no_grad():
        clean = (digits_model(x).argmax(1) == y).float().mean()
        adv = (digits_model(z_adv).argmax(1) == y).float().mean()
    assert clean > 0.85
    assert adv < clean - 0.3, f"{name} barely changed accuracy ({clean:.2f} -> {adv:.2f})"


def test_apgd_at_least_as_strong_as_pgd(digits_model, digits_batch):
    x, y = digits_batch
    ctx = Context(index=torch.arange(len(y)))
    threat = ThreatModel("linf", 0.1)
    acc = {}
    for name, params in [("pgd", {"steps": 20}), ("apgd", {"steps": 20, "loss": "ce"})]:
        z_adv = ATTACKS.get(name)(**params).run(digits_model, x, ctx, y, threat)
        with torch.no_grad():
            acc[name] = float((digits_model(z_adv).argmax(1) == y).float().mean())
    assert acc["apgd"] <= acc["pgd"] + 1 / len(y)


def test_apgd_checkpoints_follow_the_paper():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (Croce & Hein 2020, §3.2)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000)[:3] == [220, 410, 570]
    assert checkpoints(25) == [5, 9, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25]


def test_dlr_falls_back_on_two_classes(digits_batch):
    torch.manual_seed(0)
    x, y = digits_batch
    y2 = (y >= 5).long()
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    attack = APGD(steps=3, loss="dlr")
    z_adv = attack.run(TaskModel(net), x, Context(index=torch.arange(len(y))), y2, ThreatModel("linf", 0.1))
    assert z_adv.shape == x.shape
    assert any("margin" in n and "3 classes" in n for n in attack.notes), attack.notes


def test_square_schedule_and_windows():
    # AutoAttack's standard version keeps the 10k-query schedule at 5,000 queries (no rescaling)
    assert p_at(0.8, 0, 5000) == p_at(0.8, 10, 5000) == 0.8
    assert p_at(0.8, 11, 5000) == 0.4 and p_at(0.8, 300, 5000) == 0.8 / 8
    assert p_at(0.8, 4999, 5000) == 0.8 / 128
    assert p_at(0.8, 4999, 5000, rescale=True) == 0.8 / 512
    assert window(0.8, 28, 28) == (25, 25)             # Linf: round(sqrt(p·H·W)), square
    assert window(0.8, 28, 28, l2=True) == (25, 25)    # L2: odd
    assert window(0.001, 28, 28) == (1, 1) and window(0.001, 28, 28, l2=True) == (3, 3)  # L2: at least 3
    assert window(0.3, 28, 28, l2=True) == (15, 15)    # round(sqrt(235.2)) = 15, odd already
    assert window(0.8 / 512, 32, 32, l2=True) == (3, 3)
    assert window(0.01, 1, 16000) == (1, 160)          # 1-D signal: a segment of p·T samples
    assert window(0.01, 1, 16000, l2=True) == (1, 161)
    h, w = window(0.1, 8, 384)                          # tokens × embedding: area ≈ p·L·D
    assert h <= 8 and abs(h * w - 0.1 * 8 * 384) / (0.1 * 8 * 384) < 0.2
    assert grid_shape((3, 32, 32)) == (3, 32, 32) and grid_shape((16000,)) == (1, 1, 16000)


def test_square_bump_is_the_papers_cumulative_one():
    """Each half is a sum of nested rectangles with weights 1/(k+1)² (Andriushchenko et al. 2020, §3.2):
    the centre holds Σ_k 1/(k+1)², the ring at distance d the tail Σ_{k≥d}; not 1/(d+1)² alone."""
    from bench.attacks.square import _nested

    half = _nested(3, 7)  # centre (1, 3), K = 4 rings
    tail = [sum(1 / (k + 1) ** 2 for k in range(d, 4)) for d in range(4)]
    assert torch.allclose(half[1], torch.tensor([tail[3], tail[2], tail[1], tail[0], tail[1], tail[2], tail[3]]))
    assert torch.allclose(half[0, 3], torch.tensor(tail[1]))
    bump = pseudo_gaussian(6, 6)
    assert abs(float(bump.norm()) - 1) < 1e-5 and bump[:3].sum() > 0 > bump[3:].sum()   # split along rows
    cols = pseudo_gaussian(6, 6, split_rows=False)
    assert torch.allclose(cols, bump.T)                 # the reference's random transpose
    # on a 1-D segment the bump is spread, not a click: its largest 10% of samples hold no more of the
    # energy than on a 2-D window of the same area (measured 0.50 vs 0.68; the 1-D nested sum alone: 0.95)
    def top_decile(b):
        e = b.flatten() ** 2
        return float(e.sort(descending=True).values[:len(e) // 10].sum())

    assert top_decile(pseudo_gaussian(1, 169)) <= top_decile(pseudo_gaussian(13, 13))
    assert top_decile(pseudo_gaussian(1, 161)) < 0.55


class EpsIgnored(ThreatModel):
    """A broken threat (a plausible bug): its radius ignores eps and stays that of eps = 0.1, so at eps = 0
    the ball is not a point. Projection and ``contains`` agree with each other, so ``Attack.run`` accepts
    what comes out; only the eps = 0 comparison with the clean input can see it."""

    def radius(self, z, ctx=None):
        return ThreatModel(self.norm, 0.1, self.space, self.scale, self.per, self.bounds).radius(z, ctx)


#: threat kinds where eps = 0 is a zero radius (for snr-db, 0 dB is the signal's own size)
ZERO_RADIUS_SETUPS = ["linf-abs", "l2-abs", "token-l2", "token-linf"]


@pytest.mark.parametrize("setup", ZERO_RADIUS_SETUPS)
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_eps_zero_returns_the_clean_input_and_is_really_searched(name, setup, digits_model, digits_batch):
    """At eps = 0 every attack gives back the clean input bit for bit, on every kind of threat model.

    That alone would hold by construction if ``Attack.run`` returned the input at eps = 0 without searching;
    it no longer does (the ``eps0-differs-from-clean`` flag relies on it). So the same attack is also run
    against a threat whose radius ignores eps: its output must move, i.e. the search and the projection
    really ran at eps = 0, and a projection bug of that kind fails the first assertion. (The flag itself,
    raised by a leaky radius, is tested in test_attacks_sanity.py.)
    """
    x, y = digits_batch
    x, y = x[:12], y[:12]
    _, tm, z, ctx, threat = next(s for s in _setups(digits_model, x, y) if s[0] == setup)
    if getattr(ATTACKS.get(name), "targets_in_y", False):  # a targeted attack's y is the target: another class
        y = (y + 1) % 10
    t0 = threat.with_eps(0.0)
    attack = ATTACKS.get(name)(**FAST.get(name, {}))
    z_adv = attack.run(tm, z, ctx, y, t0)
    assert torch.equal(z_adv, z), f"{name} moved the input at eps = 0 ({setup})"

    broken = EpsIgnored(t0.norm, 0.0, t0.space, t0.scale, t0.per, t0.bounds)
    z_bad = attack.run(tm, z, ctx, y, broken)
    moved = (z_bad - z).flatten(1).abs().amax(1) > 0
    # measured: every example moves (APGD skips the one the model misclassifies already: 11 of 12)
    assert int(moved.sum()) >= 10, f"{name} did not search at eps = 0 ({setup}): {int(moved.sum())} of 12 moved"
    if ctx.mask is not None:
        assert torch.equal(z_bad[:, 0], z[:, 0]), "a masked position moved"
