"""Inference-time defenses under adaptive attacks (bench.defenses): EOT averages gradients, BPDA passes
them through a non-differentiable transform, the protocol switches on the pre-attack checks, and on a
real MNIST-5k checkpoint the adaptive attack breaks what the plain one cannot."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from bench.attacks.base import loss_and_grad
from bench.cli import main
from bench.defenses import (RAND, EOTView, Protocol, TransformedModel, choose_protocol, parse_transform)
from bench.errors import UserError
from bench.evaluate import evaluate
from bench.registry import load_domains
from bench.results import problems
from bench.suites import AttackSpec
from bench.task import Context, TaskModel, as_task_model
from bench.threat import ThreatModel
from bench.zoo import load_model

load_domains()
ZOO_ERM = "zoo/image-mnist5k-linf-0.3/smallcnn__erm.safetensors"


class _Cycling(TaskModel):
    """logits = c_k * (w . z) for the k-th call: a 'random' model whose gradients are known exactly."""

    def __init__(self, factors):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[1.0, -2.0, 0.5]]), requires_grad=False)
        self.factors, self.calls = list(factors), 0

    def forward(self, z, ctx=None):
        c = self.factors[self.calls % len(self.factors)]
        self.calls += 1
        s = c * (z @ self.w.T)
        return torch.cat([s, -s], 1)


def test_eot_averages_loss_and_gradient_over_forwards():
    z, y = torch.tensor([[0.3, 0.1, -0.2]]), torch.tensor([0])
    loss_fn = lambda out, yy: -out[torch.arange(len(yy)), yy]  # noqa: E731  linear in the logits
    singles = []
    for c in (1.0, 3.0, -1.0, 5.0):
        m = _Cycling([c])
        singles.append(loss_and_grad(m, z, Context(), y, loss_fn))
    m = _Cycling([1.0, 3.0, -1.0, 5.0])
    loss, _, grad = loss_and_grad(EOTView(m, 4), z, Context(), y, loss_fn)
    assert m.calls == 4
    assert torch.allclose(loss, sum(s[0] for s in singles) / 4)
    assert torch.allclose(grad, sum(s[2] for s in singles) / 4)


def test_eot_is_a_parameter_of_every_gradient_attack_and_refused_by_black_box():
    a = AttackSpec("x", "apgd", {"steps": 5, "eot": 20}).build()
    assert a.eot == 20 and AttackSpec("x", "pgd", {"steps": 5}).build().eot == 1
    assert [s.params["eot"] for s in RAND] == [20, 20]
    with pytest.raises(UserError, match="EOT does not apply"):
        AttackSpec("sq", "square", {"queries": 10, "eot": 5}).build()


def test_parse_transform_and_its_errors():
    t, p = parse_transform("jpeg:quality=50", "image")
    assert t.key == "image/jpeg" and p == {"quality": 50} and t.ident(p) == "jpeg-quality50"
    assert parse_transform("jpeg", "image")[0].ident({"quality": 75}) == "jpeg"
    with pytest.raises(UserError, match="unknown image transform 'jpg'"):
        parse_transform("jpg", "image")
    with pytest.raises(UserError, match="bad parameter"):
        parse_transform("jpeg:q=5", "image")
    with pytest.raises(UserError, match="must be a int"):
        parse_transform("jpeg:quality=high", "image")


class _Linear(TaskModel):
    def __init__(self):
        super().__init__(nn.Linear(4, 3))
        torch.manual_seed(0)
        nn.init.normal_(self.net.weight)


def test_bpda_passes_the_gradient_the_plain_mode_blocks():
    inner = _Linear()
    t, p = parse_transform("bit-depth:bits=2", "image")
    z, y = torch.tensor([[0.1, 0.45, 0.8, 0.33]]), torch.tensor([1])
    ce = lambda out, yy: nn.functional.cross_entropy(out, yy, reduction="none")  # noqa: E731
    plain = TransformedModel(inner, t, p)
    _, _, g_plain = loss_and_grad(plain, z, Context(), y, ce)
    assert torch.equal(g_plain, torch.zeros_like(z))  # what a naive attacker gets from round()
    bpda = TransformedModel(inner, t, p, bpda=True)
    _, _, g_bpda = loss_and_grad(bpda, z, Context(), y, ce)
    _, _, g_at_tz = loss_and_grad(inner, t.fn(z, p, None), Context(), y, ce)
    assert torch.allclose(g_bpda, g_at_tz)  # identity stand-in: the gradient at the transformed point
    assert torch.equal(bpda(z), plain(z))  # the forward pass is the defense's in both modes


def test_protocol_switches_on_the_checks_and_declarations():
    inner = _Linear()
    jpeg = TransformedModel(inner, *parse_transform("jpeg", "image"))
    noisy = TransformedModel(inner, *parse_transform("gaussian", "image"))
    assert choose_protocol(inner, {"zero-gradients": 0.0, "randomized-forward": 0.0}) == Protocol()
    p = choose_protocol(jpeg, {"zero-gradients": 1.0, "randomized-forward": 0.0})
    assert (p.name, p.bpda, p.eot) == ("bpda", True, 1) and any("zero-gradients 1.000" in r for r in p.reasons)
    p = choose_protocol(noisy, {"zero-gradients": 0.0, "randomized-forward": 1.0})
    assert (p.name, p.eot) == ("rand", 20) and "randomized-forward 1.000 > 0" in p.reasons[0]
    p = choose_protocol(inner, {"zero-gradients": 0.9, "randomized-forward": 0.0})
    assert p.name == "standard" and "not applicable" in p.reasons[-1]  # nothing to approximate
    assert choose_protocol(jpeg, {}, mode="plain") == Protocol(name="plain", forced=True)


def test_randomized_transform_is_seeded_and_differs_between_forwards():
    inner = _Linear()
    a = TransformedModel(inner, *parse_transform("gaussian:sigma=0.5", "image"), seed=3)
    b = TransformedModel(inner, *parse_transform("gaussian:sigma=0.5", "image"), seed=3)
    z = torch.full((2, 4), 0.5)
    first = a(z)
    assert not torch.equal(first, a(z)) and torch.equal(first, b(z))
    a.reseed()
    assert torch.equal(a(z), first)


@pytest.fixture(scope="module")
def mnist():
    from bench.tracks import get_track

    track = get_track("image-mnist5k-linf-0.3")
    data, idx = track.eval_data()
    return track, data.inputs[:16], data.y[:16], idx[:16]


def test_adaptive_attack_breaks_jpeg_where_the_plain_one_is_blind(mnist):
    track, x, y, idx = mnist
    erm = as_task_model(load_model("image-mnist5k-linf-0.3/erm"))
    suite = [AttackSpec("apgd-ce", "apgd", {"steps": 20, "loss": "ce"})]
    t, p = parse_transform("jpeg", "image")
    plain = evaluate(TransformedModel(erm, t, p), x, y, track.threat, suite, index=idx, flags=False)
    adaptive = evaluate(TransformedModel(erm, t, p, bpda=True), x, y, track.threat, suite, index=idx, flags=False)
    clean = plain.metrics()["clean_accuracy"]
    assert clean >= 0.9
    assert plain.metrics()["robust_accuracy"] == clean  # zero gradients: APGD never moves
    assert adaptive.metrics()["robust_accuracy"] <= 0.15  # BPDA: ERM is as broken as without JPEG


def test_eval_cli_records_transform_and_protocol(tmp_path, capsys):
    from leaderboard.aggregate import collect
    from leaderboard.markdown import track_markdown

    rc = main(["eval", "--track", "image-mnist5k-linf-0.3", "--checkpoint", ZOO_ERM, "--transform", "bit-depth",
               "--n", "6", "--no-sweep", "--suite", "fast", "--quiet", "--results", str(tmp_path / "res")])
    assert rc == 0
    out = tmp_path / "res/image/mnist5k/linf-0.3/smallcnn__erm+bit-depth.json"
    doc = json.loads(out.read_text())
    frame = collect(tmp_path / "res").frame  # the protocol reaches the leaderboard's table
    assert list(frame["protocol"]) == ["bpda"] and "adaptive: bpda" in track_markdown(frame, doc["track"])
    assert doc["defense"] == "erm+bit-depth" and doc["transform"]["params"] == {"bits": 3}
    assert doc["protocol"]["name"] == "bpda" and doc["protocol"]["bpda"] is True
    assert any("zero-gradients" in r for r in doc["protocol"]["reasons"])
    assert problems(doc) == []
    doc["protocol"] = {**doc["protocol"], "bpda": False, "name": "standard"}
    assert any("without BPDA" in p for p in problems(doc))
    doc2 = json.loads(out.read_text())
    doc2["defense"] = "erm"
    assert any("hides its transform" in p for p in problems(doc2))
    capsys.readouterr()
    rc = main(["eval", "--track", "image-mnist5k-linf-0.3", "--checkpoint", ZOO_ERM, "--transform", "jpeg:q=3",
               "--n", "2", "--quiet", "--out", str(tmp_path / "bad.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "bad parameter 'q=3'" in err[0] and not (tmp_path / "bad.json").exists()


def test_rand_protocol_runs_eot_on_a_randomized_defense(mnist, tmp_path):
    track, x, y, idx = mnist
    erm = as_task_model(load_model("image-mnist5k-linf-0.3/erm"))
    noisy = TransformedModel(erm, *parse_transform("gaussian:sigma=0.3", "image"))
    counts = {"n": 0}
    inner_forward = erm.forward

    def counting(z, ctx=None):
        counts["n"] += 1
        return inner_forward(z, ctx)

    erm.forward = counting
    spec = [AttackSpec("apgd-ce-eot", "apgd", {"steps": 2, "loss": "ce", "eot": 5})]
    evaluate(noisy, x[:4], y[:4], ThreatModel("linf", 0.3), spec, index=idx[:4], flags=False)
    # clean pass + APGD's clean pass + (1 start + 2 steps) x 5 EOT samples, on one batch
    assert counts["n"] >= 15


def test_text_front_end_corrects_typos_and_is_seen_by_raw_queries():
    from domains.text.defenses import correct_word, vocabulary

    vocab = vocabulary("rotten-tomatoes", 2)
    assert [correct_word(w, vocab) for w in ("moive", "Borring", "teh", "brillaint", "the", "xq")] == \
        ["movie", "Boring", "the", "brilliant", "the", "xq"]
    t, p = parse_transform("spell", "text")
    assert t.stage == "input" and choose_protocol(TransformedModel(_Linear(), t, p), {}).name == "standard"

    class _Texts(TaskModel):
        seen: list = []

        def classify_texts(self, texts):
            _Texts.seen = list(texts)
            return torch.zeros(len(texts), 2)

    front = TransformedModel(_Texts(), t, p)
    front.classify_texts(["a moive so borring"])
    assert _Texts.seen == ["a movie so boring"]  # discrete attacks query through the front end
    z = torch.ones(1, 3)
    assert torch.equal(front.apply(z), z)  # an input-stage transform leaves the attack space alone


def test_text_front_end_on_the_typo_corruption_track(tmp_path):
    out = tmp_path / "c.json"
    rc = main(["eval", "--track", "text-rt-corruptions", "--checkpoint",
               "zoo/text-rt-emb-l2-0.05/tiny-bert__erm.safetensors", "--transform", "spell", "--n", "60",
               "--quiet", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["defense"] == "erm+spell" and doc["transform"]["stage"] == "input" and problems(doc) == []
    typo = [v for k, v in doc["metrics"]["per_corruption_mean"].items() if k.startswith("typo-")]
    published = json.loads(open("results/text/rotten-tomatoes/text-c/tiny-bert__erm.json").read())
    pub_typo = [published["metrics"]["per_corruption_mean"][k] for k in doc["metrics"]["per_corruption_mean"]
                if k.startswith("typo-")]
    # on the same 60 texts the corrector recovers typos: at least as good on average as without it
    pub_cells = published["per_example"]["cells"]
    typo_keys = [k for k in pub_cells if k.startswith("typo-")]
    without = sum(pub_cells[k][:60].count("1") for k in typo_keys) / (60 * len(typo_keys))
    with_fe = sum(doc["per_example"]["cells"][k].count("1") for k in typo_keys) / (60 * len(typo_keys))
    assert with_fe > without and len(typo) == len(pub_typo) == 4


def test_leaderboard_marks_adaptive_and_plain_evaluations():
    from leaderboard.markdown import protocol_mark
    from leaderboard.site import protocol_badge

    assert protocol_mark({"protocol": "standard"}) == "" and protocol_mark({}) == ""
    assert protocol_mark({"protocol": "rand+bpda"}) == "adaptive: rand+bpda"
    assert protocol_mark({"protocol": "plain"}) == "plain (not adaptive)"
    badge = protocol_badge({"protocol": "bpda", "protocol_reasons": 'zero-gradients 1.000 > 0.05; <b>"x"</b>'})
    assert "adaptive: bpda" in badge and "<b>" not in badge and "zero-gradients 1.000" in badge


def test_the_rand_suite_is_official_for_a_rand_protocol_result():
    from leaderboard.aggregate import official_suite

    doc = json.loads(open("results/image/mnist5k/linf-0.3/smallcnn__pgd-at.json").read())
    rand_doc = {**doc, "suite": [s.to_dict() for s in RAND]}
    assert official_suite(doc) and not official_suite(rand_doc)  # the rand suite without the protocol is not
    rand_doc["protocol"] = {"name": "rand", "reasons": ["randomized-forward 1.000 > 0"], "eot": 20, "bpda": False}
    assert official_suite(rand_doc)


def test_speech_transforms_keep_shape_and_speed_moves_a_tone():
    import math

    t = torch.arange(16000) / 16000
    tone = (0.5 * torch.sin(2 * math.pi * 440 * t)).repeat(4, 1)
    inner = _Linear()
    for spec in ("lowpass", "bandpass", "mu-law", "bit-depth", "noise", "speed"):
        m = TransformedModel(inner, *parse_transform(spec, "speech"), seed=1)
        y = m.apply(tone.clone())
        assert y.shape == tone.shape and float(y.abs().max()) <= 1.0, spec
    m = TransformedModel(inner, *parse_transform("speed:ratio=0.1", "speech"), seed=1)
    y = m.apply(tone.clone())
    peaks = [torch.fft.rfft(r[2000:12000]).abs().argmax().item() * 16000 / 10000 for r in y]
    assert all(396 <= p <= 484 for p in peaks) and len(set(round(p) for p in peaks)) > 1  # within +-10 %, varied
    g = tone.clone().requires_grad_(True)
    m.apply(g).sum().backward()
    assert g.grad is not None and g.grad.abs().sum() > 0  # differentiable: EOT, not BPDA
