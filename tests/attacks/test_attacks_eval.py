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
    assert sweep[0][1] >= sweep[1][1] >= sweep[2][1]  # per example monotone by construction
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
