"""Our PGD equals a plain PGD loop written here (Madry et al. 2018), and is stronger than FGSM."""

import pytest
import torch
import torch.nn.functional as F

from bench.attacks.fgsm import FGSM
from bench.attacks.pgd import PGD
from bench.evaluate import evaluate
from bench.suites import AttackSpec
from bench.task import Context
from bench.threat import ThreatModel


def reference_pgd_linf(model, x, y, eps, alpha, steps, x0):
    xa = x0.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xa)
        xa = xa.detach() + alpha * g.sign()
        xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(0, 1)
    return xa


def reference_pgd_l2(model, x, y, eps, alpha, steps, x0):
    xa = x0.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xa)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        xa = xa.detach() + alpha * g / gn
        d = xa - x
        dn = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        xa = (x + d * torch.clamp(eps / (dn + 1e-12), max=1.0)).clamp(0, 1)
    return xa


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_linf_matches_reference(digits_model, digits_data, random_start):
    _, test = digits_data
    x, y = test.inputs[:64], test.y[:64]
    threat = ThreatModel("linf", 0.2)
    ctx = Context(index=torch.arange(64))
    ours = PGD(steps=10, step_size=0.05, random_start=random_start, seed=7).run(digits_model, x, ctx, y, threat)
    x0 = threat.random_init(x, ctx, seed="pgd/7/0") if random_start else x
    ref = reference_pgd_linf(digits_model, x, y, 0.2, 0.05, 10, x0)
    assert (ours - ref).abs().max() <= 1e-5


def test_pgd_l2_matches_reference(digits_model, digits_data):
    _, test = digits_data
    x, y = test.inputs[:64], test.y[:64]
    threat = ThreatModel("l2", 1.0)
    ours = PGD(steps=10, rel_step=0.25, random_start=False).run(digits_model, x, Context(), y, threat)
    ref = reference_pgd_l2(digits_model, x, y, 1.0, 0.25, 10, x)
    assert (ours - ref).abs().max() <= 1e-5


def test_pgd_at_least_as_strong_as_fgsm(digits_model, digits_data):
    _, test = digits_data
    threat = ThreatModel("linf", 0.1)
    rep = evaluate(digits_model, test.inputs, test.y, threat,
                   [AttackSpec("fgsm", "fgsm"), AttackSpec("pgd", "pgd", {"steps": 20})])
    m = rep.metrics()
    assert m["per_attack"]["pgd"] <= m["per_attack"]["fgsm"]
    assert m["per_attack"]["pgd"] < m["clean_accuracy"] - 0.2, "PGD must clearly hurt an ERM model"


def test_restarts_never_weaker(digits_model, digits_data):
    _, test = digits_data
    threat = ThreatModel("linf", 0.08)
    one = evaluate(digits_model, test.inputs, test.y, threat, [AttackSpec("p", "pgd", {"steps": 5})])
    five = evaluate(digits_model, test.inputs, test.y, threat, [AttackSpec("p", "pgd", {"steps": 5, "restarts": 4})])
    # restart 0 of the 4-restart run is the 1-restart run; the kept worst case can only be worse
    assert (five.robust_errors >= one.robust_errors).all()
