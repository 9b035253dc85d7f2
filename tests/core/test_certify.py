"""Randomized smoothing (bench.certify, Cohen, Rosenfeld & Kolter 2019): CERTIFY against the closed form of a
linear model, the Clopper-Pearson bound, abstentions, determinism, masks, radii in the threat's units, the
certified result kind's validation and the gaussian-aug recipe."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy.stats import beta, binom, norm

from bench.certify import (ABSTAIN, certify, lower_confidence_bound, max_radius, predict, radius_of,
                           threat_units)
from bench.data import ArrayData
from bench.errors import UserError
from bench.results import problems, write_result
from bench.task import Context, TaskModel
from bench.threat import ThreatModel
from bench.tracks import Track, TrainSpec, certification_track


class Linear(TaskModel):
    """f(z) = argmax(W z + b) on flat inputs."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b)

    def forward(self, z, ctx=None):
        return self.lin(z.flatten(1))


def binary(d: int = 20, seed: int = 0) -> tuple[Linear, torch.Tensor, float]:
    """Logits [0, w.z + b]: class 1 iff w.z + b > 0; returns the model, w and b."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    b = 0.3
    return Linear(torch.stack([torch.zeros(d), w]), torch.tensor([0.0, b])), w, b


def points_at(w: torch.Tensor, b: float, distances: list[float], seed: int = 1) -> torch.Tensor:
    """Points whose signed distance to the hyperplane w.z + b = 0 is each of ``distances``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(distances), len(w), generator=g)
    x = x - ((x @ w + b) / w.dot(w))[:, None] * w  # onto the plane
    return x + torch.tensor(distances)[:, None] * (w / w.norm())


# ------------------------------------------------------------------ the bound
@pytest.mark.parametrize("k,n,alpha", [(1, 10, 0.05), (990, 1000, 0.001), (1000, 1000, 0.001), (73, 100, 0.01)])
def test_clopper_pearson_lower_bound(k, n, alpha):
    p = lower_confidence_bound(k, n, alpha)
    assert p == pytest.approx(beta.ppf(alpha, k, n - k + 1), rel=1e-12)
    # the defining property: at p, seeing k or more successes has probability exactly alpha
    assert binom.sf(k - 1, n, p) == pytest.approx(alpha, rel=1e-6)
    assert p < k / n
    assert lower_confidence_bound(0, n, alpha) == 0.0


def test_largest_radius_is_all_samples_agreeing():
    assert max_radius(0.25, 1000, 0.001) == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 1000)))
    assert max_radius(0.25, 1000, 0.001) == pytest.approx(0.6158, abs=1e-4)
    assert math.isnan(radius_of(0.5, 1.0)) and radius_of(0.8413447, 1.0) == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------ the closed form
def test_binary_linear_radius_matches_its_closed_form():
    """g of a linear binary f is f itself; its exact L2 radius is |w.x + b| / ||w||. CERTIFY never exceeds it
    (with probability 1 - alpha; here deterministic seeds) and comes within 20% at n = 100,000."""
    sigma = 0.5
    model, w, b = binary()
    dist = [0.2, 0.4, -0.6, 0.8]  # pA = Phi(d / sigma) = 0.66 .. 0.95
    x = points_at(w, b, dist)
    exact = (x @ w + b).abs() / w.norm()
    assert exact.tolist() == pytest.approx([abs(d) for d in dist], rel=1e-4)
    cert = certify(model, x, None, sigma, n0=100, n=100_000, alpha=0.001, batch=20_000, seed=0)
    assert cert.prediction.tolist() == [1, 1, 0, 1]
    r = cert.radius.float()
    assert bool((r <= exact).all()), (r, exact)
    assert bool((r > 0.8 * exact).all()), (r, exact)
    # the estimate of pA itself is right: the counts are Binomial(n, Phi(d / sigma))
    p_true = torch.tensor([norm.cdf(abs(d) / sigma) for d in dist])
    assert (cert.count / 100_000 - p_true).abs().max() < 0.006


def test_multiclass_linear_radius_is_at_most_the_distance_to_fs_boundary():
    """For f = argmax(Wx + b), pA <= P(class A beats c) = Phi(m_c / (sigma ||w_A - w_c||)) for every c, so the
    certified radius is at most f's distance to its nearest boundary (and positive where f is far from it)."""
    torch.manual_seed(0)
    d, sigma = 10, 0.25
    w = torch.randn(4, d)
    model = Linear(w, torch.zeros(4))
    x = torch.randn(6, d)
    logits = x @ w.T
    a = logits.argmax(1)
    dist = torch.tensor([min(float((logits[i, a[i]] - logits[i, c]) / (w[a[i]] - w[c]).norm())
                            for c in range(4) if c != a[i]) for i in range(6)])
    cert = certify(model, x, None, sigma, n0=100, n=20_000, alpha=0.001, batch=20_000, seed=3)
    ok = cert.prediction != ABSTAIN
    assert bool(ok.any())
    assert bool((cert.prediction[ok] == a[ok]).all())
    assert bool((cert.radius[ok].float() <= dist[ok] + 1e-6).all())
    far = dist > 3 * sigma
    assert bool(far.any()) and bool((cert.prediction[far] != ABSTAIN).all())


def test_abstains_on_the_decision_boundary_and_predict_agrees():
    model, w, b = binary()
    x = points_at(w, b, [0.0, 1.5])
    cert = certify(model, x, None, 0.5, n0=100, n=2000, alpha=0.001, batch=500)
    assert cert.prediction[0] == ABSTAIN and math.isnan(cert.radius[0])
    assert cert.prediction[1] == 1 and cert.radius[1] > 0
    assert predict(model, x, None, 0.5, n=2000, alpha=0.001).tolist() == [ABSTAIN, 1]


def test_batch_and_order_do_not_change_a_certificate():
    torch.manual_seed(0)
    model = Linear(torch.randn(3, 8), torch.zeros(3))
    x = torch.randn(5, 8) * 0.3
    ctx = Context(index=torch.tensor([7, 3, 11, 0, 5]))
    whole = certify(model, x, ctx, 0.5, n0=50, n=350, alpha=0.01, batch=1000, seed=4)
    for i in range(5):
        one = certify(model, x[i:i + 1], ctx.select(torch.tensor([i])), 0.5, n0=50, n=350, alpha=0.01, batch=33,
                      seed=4)
        assert one.count.item() == whole.count[i].item() and one.prediction.item() == whole.prediction[i].item()
    assert certify(model, x, ctx, 0.5, n0=50, n=350, alpha=0.01, batch=1000, seed=5).count.tolist() \
        != whole.count.tolist()  # the seed matters
    assert 0 < int(whole.count.min()) < 350  # noisy enough that the check above means something
    twice = certify(model, x[:1].repeat(2, 1), Context(index=torch.tensor([1, 2])), 0.5, 50, 350, 0.01, seed=4)
    assert twice.count[0] != twice.count[1]  # each example its own noise


def test_no_noise_where_the_mask_forbids_it():
    seen = []

    class Probe(TaskModel):
        def forward(self, z, ctx=None):
            seen.append(z.detach().clone())
            return torch.stack([z[:, 0, 0], -z[:, 0, 0]], dim=1)

    z = torch.ones(1, 3, 4)
    mask = torch.tensor([[[1.0], [0.0], [1.0]]])  # token 1 (e.g. padding) never moves
    cert = certify(Probe(), z, Context(mask=mask), 1.0, n0=10, n=40, alpha=0.01, batch=16)
    zs = torch.cat(seen)
    assert torch.equal(zs[:, 1], torch.ones(len(zs), 4))
    assert float((zs[:, 0] - 1).std()) > 0.5 and float((zs[:, 2] - 1).std()) > 0.5
    assert cert.count.item() <= 40


def test_bad_parameters_are_user_errors():
    model, _, _ = binary()
    with pytest.raises(UserError, match="sigma must be > 0"):
        certify(model, torch.zeros(1, 20), None, 0.0, 10, 10, 0.01)
    with pytest.raises(UserError, match="n must be >= 1"):
        certify(model, torch.zeros(1, 20), None, 0.5, 10, 0, 0.01)


# ------------------------------------------------------------------ units
def test_radius_in_the_threat_units():
    r = torch.tensor([0.1, 1.0, math.nan], dtype=torch.float64)
    z = torch.zeros(3, 100)
    z[:, 0] = 10.0  # ||x|| = 10
    assert threat_units(ThreatModel("l2", 0.5), r, z, None)[:2].tolist() == pytest.approx([0.1, 1.0])
    snr = threat_units(ThreatModel("l2", 30.0, scale="snr-db", bounds=(-1, 1)), r, z, None)
    assert snr[:2].tolist() == pytest.approx([40.0, 20.0])  # 20 log10(10 / r)
    emb = ThreatModel.from_id("emb-l2-0.05")
    e = torch.ones(3, 5, 4)
    mask = torch.tensor([0.0, 1, 1, 1, 1])[None, :, None].expand(3, 5, 1)  # [CLS] fixed: 4 tokens move
    u = threat_units(emb, r, e, Context(mask=mask, eps_scale=2.0))
    assert u[:2].tolist() == pytest.approx([0.1 / (2.0 * 2), 1.0 / (2.0 * 2)])  # r / (scale sqrt(L))
    with pytest.raises(UserError, match="certifies L2"):
        threat_units(ThreatModel("linf", 0.3), r, z, None)


# ------------------------------------------------------------------ result files
def _track(threat=ThreatModel("l2", 0.5), radii=(0.0, 0.25, 0.5, 0.75)):
    base = Track(id="image-toy-linf-0.3", domain="image", dataset="toy", model="linear", threat=ThreatModel("linf", 0.3),
                 train=TrainSpec(epochs=1))
    return certification_track(base, id="image-toy-smooth-0.5", sigma=0.5, threat=threat, radii=radii, n_eval=4,
                               n0=100, n=2000)


def _doc(tmp_path=None):
    from bench.certify_eval import certified_document

    model, w, b = binary()
    x = points_at(w, b, [0.0, 0.45, -1.2, 0.9])
    y = torch.tensor([1, 1, 0, 0])  # the first abstains, the last is certified but wrong
    track = _track()
    cert = certify(model, x, None, 0.5, 100, 2000, 0.001, batch=1000)
    units = threat_units(track.threat, cert.radius, x, None)
    out = {"prediction": cert.prediction.tolist(),
           "radius": [None if math.isnan(v) else v for v in cert.radius.tolist()],
           "radius_units": [None if p == ABSTAIN else v for p, v in zip(cert.prediction.tolist(), units.tolist())],
           "n0": 100, "n": 2000}
    return certified_document(track, out, y, model="linear", defense="gaussian-aug", seed=0,
                              ckpt_config={"recipe_params": {"sigma": 0.5}}, checkpoint_sha256=None, eval_seconds=1.0,
                              device="cpu", full=False)


def test_abstention_and_a_wrong_prediction_are_never_certified():
    doc = _doc()
    pe, m = doc["per_example"], doc["metrics"]
    assert pe["prediction"][0] == ABSTAIN and pe["radius"][0] is None
    assert pe["prediction"][3] == 1 and pe["radius"][3] > 0.5  # certified, but of the wrong class
    assert pe["clean"] == "0110" and m["clean_accuracy"] == 0.5 and m["abstain_rate"] == 0.25
    curve = {p["radius"]: p["certified_accuracy"] for p in m["certified_curve"]}
    assert curve == {0.0: 0.5, 0.25: 0.5, 0.5: 0.25, 0.75: 0.25}  # 0.45 certifies to ~0.4, -1.2 to ~1.1
    assert m["certified_accuracy"] == 0.25 and pe["robust"] == "0010"
    assert problems(doc) == []


@pytest.mark.parametrize("doctor,message", [
    (lambda d: d["metrics"]["certified_curve"][3].update(certified_accuracy=0.5), "certified_curve/3"),
    (lambda d: d["per_example"]["radius"].__setitem__(2, 5.0), "outside \\(0, "),
    (lambda d: d["per_example"].update(robust="0011"), "per_example/robust"),
    (lambda d: d["per_example"].update(clean="1110"), "abstained but is counted right"),
    (lambda d: d["per_example"]["radius_units"].__setitem__(2, 0.7), "radius_units"),
    (lambda d: d["metrics"].update(certified_accuracy=0.5), "metrics/certified_accuracy"),
    (lambda d: d["certification"].update(radii=[0.0, 0.3, 0.5, 0.75]), "are not certification/radii"),
])
def test_validation_rejects_a_doctored_certified_file(doctor, message):
    doc = _doc()
    doctor(doc)
    errs = problems(doc)
    assert any(__import__("re").search(message, e) for e in errs), errs


def test_xrobust_validate_reads_the_certified_kind(tmp_path, capsys):
    from bench.cli import main

    doc = _doc()
    path = write_result(doc, root=tmp_path)
    assert path == tmp_path / "image" / "toy" / "smooth-0.5" / "linear__gaussian-aug.json"
    assert main(["validate", str(tmp_path)]) == 0
    doc["metrics"]["certified_curve"][0]["certified_accuracy"] = 1.0
    path.write_text(json.dumps(doc))
    assert main(["validate", str(tmp_path)]) == 2
    assert "certified_curve/0" in capsys.readouterr().err


def test_certification_tracks_are_declared_with_cpu_counts():
    from bench.registry import load_domains
    from bench.tracks import get_track

    load_domains()
    for sigma in (0.25, 0.5):
        t = get_track(f"image-mnist5k-smooth-{sigma}")
        assert t.kind == "certified" and t.certify.sigma == sigma and t.recipes == ("gaussian-aug",)
        assert t.train.recipe_params["gaussian-aug"] == {"sigma": sigma}
        assert t.certify.counts(False) == (100, 1000) and t.certify.counts(True) == (100, 100_000)
        assert "n = 1,000" in t.description and t.train.epochs == get_track("image-mnist5k-linf-0.3").train.epochs
    text = get_track("text-rt-smooth-0.2")
    assert text.certify.relative and text.train.recipe_params["gaussian-aug"] == {"sigma": 0.2, "relative": True}
    kws = get_track("speech-kws-smooth-0.02")
    assert kws.threat.id == "snr-40db" and kws.headline_keys == ("clean_accuracy_keywords", "certified_accuracy_keywords")
    with pytest.raises(ValueError, match="certifies L2"):
        _track(threat=ThreatModel("linf", 0.3))


# ------------------------------------------------------------------ the recipe
def test_gaussian_aug_trains_on_noisy_inputs():
    from bench.registry import RECIPES
    from bench.training import TrainConfig, train

    seen = []

    class Tiny(TaskModel):
        def __init__(self):
            super().__init__(torch.nn.Linear(50, 2))

        def forward(self, z, ctx=None):
            if self.training and len(z) == 32:  # the step the loop trains on (the inner call runs in eval mode)
                seen.append(z.detach().clone())
            return self.net(z)

    torch.manual_seed(0)
    x = torch.zeros(64, 50)
    data = ArrayData(x, torch.randint(0, 2, (64,)), {"num_classes": 2})
    rec = RECIPES.get("gaussian-aug")(sigma=0.3)
    assert rec.params == {"sigma": 0.3}
    train(Tiny(), data, rec, ThreatModel("l2", 0.5), TrainConfig(epochs=1, batch_size=32, device="cpu"), progress=False)
    zs = torch.cat(seen)
    assert len(seen) == 2 and zs.shape == (64, 50)
    assert float(zs.std()) == pytest.approx(0.3, rel=0.05) and abs(float(zs.mean())) < 0.02
    with pytest.raises(UserError, match="sigma must be a number > 0"):
        RECIPES.get("gaussian-aug")(sigma=0)


def test_relative_noise_follows_the_embedding_scale():
    from bench.registry import RECIPES

    rec = RECIPES.get("gaussian-aug")(sigma=0.5, relative=True)
    z = torch.zeros(8, 6, 64)
    mask = torch.ones(8, 6, 1)
    mask[:, 0] = 0  # [CLS]
    torch.manual_seed(0)
    out = rec.inner(None, z, Context(mask=mask, eps_scale=2.0), None, None, {})
    assert float(out[:, 1:].std()) == pytest.approx(1.0, rel=0.05) and bool((out[:, 0] == 0).all())
    with pytest.raises(UserError, match="eps_scale"):
        rec.inner(None, z, Context(), None, None, {})


# ------------------------------------------------------------------ the board
def test_certified_board_table_and_plot(tmp_path):
    from leaderboard.build import build

    write_result(_doc(), root=tmp_path / "results")
    built = build(tmp_path / "results", tmp_path / "site", tmp_path / "LB.md")
    md = built.markdown.read_text()
    section = md.split("## Certified robustness (randomized smoothing)", 1)[1]
    # the row: clean 50, headline 25 at radius 0.5, then the curve at 0, 0.25, 0.5, 0.75
    assert "| image-toy-smooth-0.5 | 0.5 | linear | gaussian-aug | 4 | 100/2,000, α 0.001 | 50.0 | 25.0 @ 0.5 | " \
           "50.0 | 50.0 | 25.0 | 25.0 |" in section
    assert (tmp_path / "site" / "plots" / "certified-image.png").stat().st_size > 1000
    assert 'id="certified"' in (tmp_path / "site" / "index.html").read_text()
    assert built.collection.problems == ()
    empty = build(tmp_path / "none", tmp_path / "site2", tmp_path / "LB2.md")  # no certified results: still builds
    assert "Certified robustness" not in empty.markdown.read_text()


def test_cli_refuses_adversarial_examples_on_a_certification_track(tmp_path, capsys):
    from bench.cli import main

    rc = main(["eval", "--track", "image-mnist5k-smooth-0.25", "--model", "zoo:image-mnist5k-smooth-0.25/gaussian-aug",
               "--save-adv", str(tmp_path / "adv"), "--results", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is a certification track: there are no adversarial examples" in err[0]


def test_a_padded_example_gets_the_same_certificate_whatever_its_neighbours():
    """Text batches are padded to their longest member; run_certify encodes one example at a time, so an
    example's noise (and certificate) never depends on the length of the others."""
    from bench.certify_eval import run_certify

    class Padded(TaskModel):
        def encode(self, x):
            length = int((x.abs().sum(-1) > 0).sum(1).max())  # trim to the longest in the batch
            z = x[:, :length]
            return z, Context(mask=(z.abs().sum(-1, keepdim=True) > 0).float())

        def forward(self, z, ctx=None):
            s = (z * ctx.mask).sum((1, 2))
            return torch.stack([s, -s], dim=1)

    x = torch.zeros(2, 6, 3)
    x[0, :2] = 0.1  # short (2 tokens) and near the boundary
    x[1, :6] = 1.0  # long
    data = ArrayData(x, torch.tensor([0, 0]), {})
    both = run_certify(Padded(), data, torch.tensor([4, 9]), _track(), seed=0, device="cpu", full=False)
    alone = run_certify(Padded(), data.subset(torch.tensor([0])), torch.tensor([4]), _track(), seed=0, device="cpu",
                        full=False)
    assert both["radius"][0] == alone["radius"][0] and both["prediction"][0] == alone["prediction"][0] == 0
    assert 0 < both["radius"][0] < 0.5  # a real, noisy certificate
