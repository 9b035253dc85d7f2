"""``xrobust export --format robustbench`` (issue 15): RobustBench's model_info from a result, or a clear refusal.

Works on the committed result files and on modified copies in a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main
from bench.errors import UserError
from bench.export import robustbench_eps, robustbench_model_info

ROOT = Path(__file__).resolve().parents[2]
PGD_AT = ROOT / "results/image/mnist5k/linf-0.3/smallcnn__pgd-at.json"
#: RobustBench's model_info keys, in its order
KEYS = ["link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue", "architecture",
        "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable"]


def test_export_of_the_committed_pgd_at_result(tmp_path, capsys):
    out = tmp_path / "model_info.json"
    assert main(["export", "--format", "robustbench", str(PGD_AT), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    info = json.loads(out.read_text())
    assert list(info) == KEYS
    assert (info["clean_acc"], info["autoattack_acc"], info["eps"]) == ("97.40", "67.00", "0.3")
    assert info["additional_data"] is False and info["number_forward_passes"] == 1 and info["unreliable"] is False
    assert (info["dataset"], info["architecture"], info["reported"]) == ("mnist5k", "smallcnn", "")
    assert "n=500" in info["footnote"] and "No model card" in info["footnote"]
    assert main(["export", str(PGD_AT)]) == 0  # robustbench is the default format; stdout without --out
    assert json.loads(capsys.readouterr().out) == info


def test_export_takes_paper_fields_from_the_card():
    doc = json.loads(PGD_AT.read_text())
    doc["card"] = {"paper": "Towards Deep Learning Models Resistant to Adversarial Attacks",
                   "paper_url": "https://arxiv.org/abs/1706.06083", "venue": "ICLR 2018", "architecture": "SmallCNN",
                   "extra_data": "10k pseudo-labelled digits", "license": "MIT",
                   "checkpoint": "zoo:image-mnist5k-linf-0.3/pgd-at", "authors": ["A. Madry", "A. Makelov"],
                   "reported_robust_accuracy": 0.89}
    info = robustbench_model_info(doc)
    assert {k: info[k] for k in ("link", "name", "authors", "venue", "architecture", "additional_data",
                                 "reported")} == {
        "link": "https://arxiv.org/abs/1706.06083", "name": "Towards Deep Learning Models Resistant to Adversarial "
        "Attacks", "authors": "A. Madry, A. Makelov", "venue": "ICLR 2018", "architecture": "SmallCNN",
        "additional_data": True, "reported": "89.00"}
    assert "10k pseudo-labelled digits" in info["footnote"] and "No model card" not in info["footnote"]
    doc["card"]["extra_data"] = False
    assert robustbench_model_info(doc)["additional_data"] is False


def test_export_marks_a_result_with_raised_sanity_flags_unreliable():
    info = robustbench_model_info(json.loads((PGD_AT.parent / "smallcnn__mart.json").read_text()))
    assert info["unreliable"] is True and "not-converged" in info["footnote"]


def test_eps_is_a_fraction_of_255_only_when_it_is_k_over_255():
    assert [robustbench_eps(e) for e in (8 / 255, 4 / 255, 0.3, 0.5, 0.1, 1.0)] == \
        ["8/255", "4/255", "0.3", "0.5", "0.1", "1"]


def _without_fab_t(doc):
    doc["suite"] = [s for s in doc["suite"] if s["attack"] != "fab-t"]
    del doc["metrics"]["per_attack"]["fab-t"], doc["per_example"]["attacks"]["fab-t"]


def _square_queries(doc):
    next(s for s in doc["suite"] if s["attack"] == "square")["params"]["queries"] = 1000


def _apgd_t_default_targets(doc):  # a left-out parameter counts at the attack's default (9 targets: accepted)
    del next(s for s in doc["suite"] if s["attack"] == "apgd-t")["params"]["targets"]


def _fab_t_targets(doc):
    next(s for s in doc["suite"] if s["attack"] == "fab-t")["params"]["targets"] = 3


def _alone(doc):
    doc["metrics"]["per_attack_mode"] = "alone"
    doc["metrics"]["per_attack"]["square"] = 0.7  # each attack alone: any accuracy >= the worst case


def _broken(doc):
    doc["metrics"]["clean_accuracy"] = "97.4"


@pytest.mark.parametrize("source,change,reason", [
    ("results/text/rotten-tomatoes/emb-l2-0.05/tiny-bert__erm.json", None, "domain 'text'"),
    ("results/speech/synth-digits/snr-30db/ctc-digits__pgd-at.json", None, "domain 'speech'"),
    (PGD_AT, _without_fab_t, "the suite lacks fab-t"),
    (PGD_AT, _square_queries, "square runs with queries=1000, fewer than AutoAttack standard's 5000"),
    (PGD_AT, _fab_t_targets, "fab-t runs with targets=3, fewer than AutoAttack standard's 9"),
    (PGD_AT, _alone, "not run as a cascade"),
    (PGD_AT, _broken, "invalid result: metrics/clean_accuracy: '97.4' is not of type 'number'"),
])
def test_export_refuses_what_robustbench_does_not_measure(tmp_path, capsys, source, change, reason):
    path = ROOT / source
    if change is not None:
        doc = json.loads(path.read_text())
        change(doc)
        path = tmp_path / "copy.json"
        path.write_text(json.dumps(doc))
    out = tmp_path / "model_info.json"
    assert main(["export", "--format", "robustbench", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"xrobust: error: {path}: cannot export to robustbench: "), err
    assert reason in err[0]
    assert not out.exists()


def test_a_left_out_budget_counts_at_the_attacks_default():
    doc = json.loads(PGD_AT.read_text())
    _apgd_t_default_targets(doc)
    assert robustbench_model_info(doc)["autoattack_acc"] == "67.00"
    doc["suite"][0]["params"]["loss"] = "dlr"  # APGD on DLR is not AutoAttack's APGD-CE
    with pytest.raises(UserError, match="the suite lacks apgd-ce"):
        robustbench_model_info(doc)
