import math

import pytest
import torch

from bench.errors import UserError
from bench.task import Context
from bench.threat import ThreatModel, format_eps


@pytest.mark.parametrize("threat,expected", [
    (ThreatModel("linf", 0.3), "linf-0.3"),
    (ThreatModel("linf", 8 / 255), "linf-8_255"),
    (ThreatModel("l2", 0.5), "l2-0.5"),
    (ThreatModel("l2", 30, scale="snr-db", bounds=(-1, 1)), "snr-30db"),
    (ThreatModel("linf", 20, scale="snr-db", bounds=(-1, 1)), "linf-20db"),
    (ThreatModel("l2", 0.05, space="embedding", scale="relative", per="token", bounds=None), "emb-l2-0.05"),
])
def test_ids_are_stable_and_parse_back(threat, expected):
    assert threat.id == expected
    back = ThreatModel.from_id(expected, bounds=threat.bounds)
    assert back.id == expected
    assert math.isclose(back.eps, threat.eps, rel_tol=1e-12)
    assert back == threat


def test_format_eps():
    assert format_eps(0.1) == "0.1"
    assert format_eps(2 / 255) == "2_255"
    assert format_eps(2.0) == "2"


@pytest.mark.parametrize("kwargs,msg", [
    (dict(norm="linf", eps=-0.1), "eps must be finite and >= 0"),
    (dict(norm="l1", eps=0.1), "unknown norm 'l1'"),
    (dict(norm="linf", eps=float("nan")), "eps must be a number"),
    (dict(norm="linf", eps=0.1, scale="weird"), "unknown scale"),
])
def test_bad_threats_raise_valueerror(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        ThreatModel(**kwargs)


def test_malformed_id():
    with pytest.raises(UserError, match="malformed threat id"):
        ThreatModel.from_id("linf=0.3")


def test_linf_projection_is_exact_and_clipped():
    t = ThreatModel("linf", 0.1)
    z = torch.rand(4, 1, 5, 5)
    far = z + torch.randn_like(z)
    p = t.project(far, z)
    assert (p - z).abs().max() <= 0.1 + 1e-7
    assert p.min() >= 0 and p.max() <= 1
    assert t.contains(p, z).all()
    assert not t.contains(z + 0.2, z).any()


def test_l2_projection_radius():
    t = ThreatModel("l2", 0.5, bounds=None)
    z = torch.zeros(3, 10)
    p = t.project(torch.ones(3, 10), z)
    assert torch.allclose(p.norm(dim=1), torch.full((3,), 0.5), atol=1e-6)
    inside = z + 0.01
    assert torch.equal(t.project(inside, z), inside)


def test_snr_radius_relative_to_each_signal():
    t = ThreatModel.from_id("snr-20db", bounds=(-1, 1))
    z = torch.stack([torch.full((100,), 0.5), torch.full((100,), 0.05)])
    r = t.radius(z)
    assert torch.allclose(r, z.norm(dim=1) * 0.1)
    adv = t.project(z + torch.randn(2, 100), z)
    snr = 20 * torch.log10(z.norm(dim=1) / (adv - z).norm(dim=1))
    assert (snr >= 20 - 1e-4).all()


def test_per_token_mask_and_relative_scale():
    t = ThreatModel.from_id("emb-l2-0.1")
    z = torch.randn(2, 4, 8)
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]]).float()[..., None]
    ctx = Context(mask=mask, eps_scale=2.0)
    adv = t.project(z + torch.randn_like(z), z, ctx)
    d = adv - z
    assert d[mask.expand_as(d) == 0].abs().max() == 0
    assert (d.norm(dim=-1) <= 0.2 + 1e-6).all()
    assert t.contains(adv, z, ctx).all()
    with pytest.raises(UserError, match="eps_scale"):
        t.radius(z, Context())


def test_random_init_inside_and_reproducible():
    t = ThreatModel("l2", 1.0)
    z = torch.rand(5, 1, 4, 4)
    ctx = Context(index=torch.arange(5))
    a = t.random_init(z, ctx, seed=3)
    b = t.random_init(z, ctx, seed=3)
    assert torch.equal(a, b)
    assert t.contains(a, z, ctx).all()
    one = t.random_init(z[2:3], Context(index=torch.tensor([2])), seed=3)
    assert torch.allclose(one, a[2:3])


# ---------------------------------------------------------------- absolute embedding balls, discrete words
@pytest.mark.parametrize("tid,norm,per,scale,space", [
    ("emb-tok-l2-0.5", "l2", "token", "absolute", "embedding"),
    ("emb-seq-l2-0.5", "l2", "example", "absolute", "embedding"),
    ("emb-seq-linf-0.01", "linf", "example", "absolute", "embedding"),
    ("words-0.25", "l0", "example", "relative", "words"),
])
def test_absolute_embedding_and_words_ids_round_trip(tid, norm, per, scale, space):
    t = ThreatModel.from_id(tid)
    assert (t.norm, t.per, t.scale, t.space, t.bounds) == (norm, per, scale, space, None)
    assert t.id == tid and ThreatModel.from_dict(t.to_dict()) == t
    assert t.discrete == (space == "words")


def test_absolute_embedding_radius_does_not_depend_on_the_model_scale():
    """The same radius whatever embedding scale a model reports (a defense cannot move its own budget)."""
    t = ThreatModel.from_id("emb-seq-l2-0.5")
    z = torch.randn(2, 5, 8)
    m = torch.ones(2, 5, 1)
    m[:, 0] = 0  # [CLS] never moves
    for scale in (0.1, 10.0):
        ctx = Context(mask=m, eps_scale=scale)
        assert torch.allclose(t.radius(z, ctx), torch.full((2,), 0.5))
        z_adv = t.project(z + 3 * torch.randn_like(z), z, ctx)
        d = z_adv - z
        assert torch.allclose(d.flatten(1).norm(dim=1), torch.full((2,), 0.5), atol=1e-5)  # whole-sequence ball
        assert d[:, 0].abs().max() == 0 and bool(t.contains(z_adv, z, ctx).all())
    tok = ThreatModel.from_id("emb-tok-l2-0.5")
    z_adv = tok.project(z + 3 * torch.randn_like(z), z, Context(mask=m, eps_scale=10.0))
    assert torch.allclose((z_adv - z)[:, 1:].norm(dim=-1), torch.full((2, 4), 0.5), atol=1e-5)  # per token


def test_words_threat_has_no_geometry_and_checks_its_budget():
    t = ThreatModel.from_id("words-0.25")
    z = torch.zeros(1, 3)
    for call in (lambda: t.radius(z), lambda: t.project(z, z), lambda: t.random_init(z), lambda: t.steepest(z),
                 lambda: t.contains(z, z)):
        with pytest.raises(UserError, match="discrete word budget: it has no geometry"):
            call()
    with pytest.raises(UserError, match="fraction of words"):
        ThreatModel("l0", 1.5, space="words", scale="relative", bounds=None)
    with pytest.raises(UserError, match="l0 budget"):
        ThreatModel("l2", 0.25, space="words", scale="relative", bounds=None)


def test_one_class_flag_fires_on_a_constant_classifier_only():
    from bench.sanity import one_class

    y = torch.tensor([0, 0, 1, 1, 1, 0, 1, 1])
    constant = (y != 1).long()  # errors of "always 1"
    assert one_class(constant, y).value == 1.0 and one_class(constant, y).raised
    good = torch.tensor([0, 0, 0, 1, 0, 0, 0, 0])  # one mistake
    f = one_class(good, y)
    assert f.value < 0.7 and not f.raised
    assert one_class(good, ["one two", "three"]).value is None  # transcripts: no classes
