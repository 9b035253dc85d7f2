"""FAB / FAB-T (Croce & Hein 2020): the hyperplane-and-box projection is exact, and on a linear
classifier FAB finds the minimal adversarial distance, so the eps at which it succeeds is the true
one (just above: fooled; just below: robust)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.attacks.fab import FAB, FABTargeted, project_hyperplane_box
from bench.task import Context, TaskModel
from bench.threat import ThreatModel


def _random_problem(seed: int, n: int = 64, d: int = 50):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w[:, :5] = 0.0  # coordinates the hyperplane ignores stay put
    b = (w * torch.rand(n, d, generator=g, dtype=torch.float64)).sum(1) * 1.3
    return t, w, b


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_is_feasible_and_no_longer_than_the_reference(norm):
    """Against the official AutoAttack code's projections (box [0, 1]): same norm (up to rounding),
    on the hyperplane wherever the box reaches it, inside the box, untouched where w = 0."""
    fab_projections = pytest.importorskip("pyautoattack.fab_projections")
    ref_fn = fab_projections.projection_linf if norm == "linf" else fab_projections.projection_l2
    t, w, b = _random_problem(0)
    d = project_hyperplane_box(w, b - (w * t).sum(1), -t, 1 - t, norm)
    ref = ref_fn(t.float(), w.float(), b.float()).double()
    size = (lambda v: v.abs().amax(1)) if norm == "linf" else (lambda v: v.norm(dim=1))
    on_plane = ((w * (t + d)).sum(1) - b).abs() < 1e-6 * (1 + b.abs())
    ref_on_plane = ((w * (t + ref)).sum(1) - b).abs() < 1e-3 * (1 + b.abs())
    assert bool((on_plane | ~ref_on_plane).all()), "reachable planes must be reached"
    assert on_plane.float().mean() > 0.5
    both = on_plane & ref_on_plane
    assert torch.allclose(size(d)[both], size(ref)[both], rtol=1e-4, atol=1e-5)
    assert bool(((t + d) >= -1e-12).all() and ((t + d) <= 1 + 1e-12).all())
    assert bool((d[:, :5] == 0).all())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_without_bounds_is_the_closed_form(norm):
    t, w, b = _random_problem(1)
    far = torch.full_like(t, 1e30)
    c = b - (w * t).sum(1)
    d = project_hyperplane_box(w, c, -far, far, norm)
    if norm == "l2":   # d = c w / ||w||²
        want = c[:, None] * w / (w ** 2).sum(1, keepdim=True)
    else:              # d = c sign(w) / ||w||₁ on the coordinates w touches
        want = c[:, None] * torch.sign(w) / w.abs().sum(1, keepdim=True)
    assert torch.allclose(d, want, rtol=1e-9, atol=1e-12)


class Linear(TaskModel):
    """Two classes, logit gap f(x) = <a, x> + c: the minimal distance to the boundary is
    |f(x)| / ||a||_q (q the dual norm) when nothing else constrains the perturbation."""

    def __init__(self, a, c):
        super().__init__(nn.Identity())
        self.a, self.c = a, c

    def forward(self, z, ctx=None):
        f = z.flatten(1) @ self.a + self.c
        return torch.stack([torch.zeros_like(f), f], 1)


@pytest.mark.parametrize("cls", [FAB, FABTargeted])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_finds_the_minimal_distance_of_a_linear_model(cls, norm):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(20, generator=g)
    x = torch.randn(16, 20, generator=g)
    model = Linear(a, 0.0).eval()
    y = (model(x)[:, 1] > 0).long()
    dual = a.abs().sum() if norm == "linf" else a.norm()
    dist = (x @ a).abs() / dual  # exact minimal distance per example
    ctx = Context(index=torch.arange(16))
    for factor, fooled in ((1.02, True), (0.98, False)):
        for i in range(16):
            threat = ThreatModel(norm, float(dist[i]) * factor, bounds=None)
            adv = cls(steps=20).run(model, x[i:i + 1], ctx.select(torch.tensor([i])), y[i:i + 1], threat)
            pred = model(adv).argmax(1)
            assert bool(pred != y[i:i + 1]) == fooled, (i, factor, float(dist[i]))
