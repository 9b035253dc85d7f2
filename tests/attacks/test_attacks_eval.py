"""`xrobust eval --suite ...` writes a valid result file with per-attack numbers, eps sweep and flags."""

from __future__ import annotations

import json

import pytest
import torch

from bench.cli import main
from bench.evaluate import evaluate
from bench.results import problems
from bench.sanity import CHECKS
from bench.threat import ThreatModel


def test_eval_cli_fast_suite_writes_flags(digits_ckpt, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["eval", "--track", "image-digits-linf-0.2", "--checkpoint", str(digits_ckpt), "--suite", "fast",
               "--n", "20", "--cascade", "--quiet", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert problems(doc) == []
    m = doc["metrics"]
    assert set(m["per_attack"]) == {"apgd-ce", "apgd-t"} and m["per_attack_mode"] == "cumulative"
    # cumulative: each attack can only lower the accuracy, and the last one is the robust number
    assert m["clean_accuracy"] >= m["per_attack"]["apgd-ce"] >= m["per_attack"]["apgd-t"] == m["robust_accuracy"]
    sweep = [(p["eps"], p["robust_accuracy"]) for p in m["eps_sweep"]]
    assert [e for e, _ in sweep] == [0.1, 0.2, 0.3] and all(p["n"] == 20 for p in m["eps_sweep"])
    assert sweep[1][1] == m["robust_accuracy"]        # the headline eps reuses the headline outcome
    # The sweep carries outcomes per example (monotone by construction), so ">=" alone proves nothing.
    # Exact expectations instead: each point's clean accuracy is the file's clean bits; the smallest eps
    # (nothing carried into it yet) equals a stand-alone evaluation of those 20 examples at that eps, example
    # by example; on this undefended model it is strictly below clean and strictly above the headline eps
    # (measured: clean 0.95, sweep 0.40, 0.00, 0.00).
    clean_bits = doc["per_example"]["clean"]
    assert all(p["clean_accuracy"] == clean_bits.count("1") / 20 for p in m["eps_sweep"])
    assert sweep[1][1] < sweep[0][1] < m["clean_accuracy"]
    assert sweep[2][1] <= sweep[1][1]
    from bench.checkpoint import load_checkpoint
    from bench.tracks import get_track

    track = get_track("image-digits-linf-0.2")
    (x, y), idx = track.test_data(), track.eval_data()[1]
    alone = evaluate(load_checkpoint(digits_ckpt).eval(), x[:20], y[:20], track.threat.with_eps(0.1), "fast",
                     cascade=True, index=idx[:20], flags=False)
    assert sweep[0][1] == alone.metrics()["robust_accuracy"]
    # per example monotone: every example robust at the headline eps is robust at the smaller 0.1
    robust_headline = torch.tensor([c == "1" for c in doc["per_example"]["robust"]])
    assert not bool((robust_headline & (alone.robust_errors > 0)).any())
    assert set(doc["flags"]) == set(CHECKS)
    assert all(isinstance(v["raised"], bool) for v in doc["flags"].values())
    assert doc["flags"]["randomized-forward"] == {"value": 0.0, "raised": False}
    assert [s["attack"] for s in doc["suite"]] == ["apgd", "apgd-t"]
    assert "apgd-ce" in capsys.readouterr().err


def test_eval_rejects_unknown_suite(digits_ckpt, capsys):
    rc = main(["eval", "--track", "image-digits-linf-0.2", "--checkpoint", str(digits_ckpt), "--suite", "standrad"])
    assert rc == 2
    assert "standard" in capsys.readouterr().err  # did-you-mean


def test_evaluate_plain_module_with_standard_suite(digits_model, digits_batch):
    """Any nn.Module classifier on raw inputs, as AutoAttack's run_standard_evaluation."""
    x, y = digits_batch
    net = torch.nn.Sequential(digits_model.normalize, digits_model.net)  # a plain nn.Module
    rep = evaluate(net, x[:16], y[:16], ThreatModel("linf", 0.3), "standard", cascade=True)
    m = rep.metrics()
    assert list(m["per_attack"]) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert m["robust_accuracy"] <= 0.1 < m["clean_accuracy"]
