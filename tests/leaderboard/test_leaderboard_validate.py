"""Validation: schema + consistency rules, one line per problem, and `xrobust validate` exit codes."""

from __future__ import annotations

import copy
import json

import pytest

from bench.cli import main
from bench.results import problems, result_path


@pytest.fixture(scope="module")
def real_doc(digits_results) -> dict:
    return json.loads((digits_results / "image/digits/linf-0.2/smallcnn__pgd-at.json").read_text())


def _robust_above_clean(d):
    d["metrics"]["robust_accuracy"] = d["metrics"]["clean_accuracy"] + 0.01
    for k in d["metrics"]["per_attack"]:
        d["metrics"]["per_attack"][k] = 1.0
    d.pop("per_example")


def _per_attack_below_robust(d):
    d["metrics"]["per_attack"]["fgsm"] = d["metrics"]["robust_accuracy"] - 0.05


def _sweep_not_monotone(d):
    sweep = d["metrics"]["eps_sweep"]
    sweep[-1]["robust_accuracy"] = sweep[0]["robust_accuracy"]  # largest eps as good as eps 0
    sweep[1]["robust_accuracy"] = 0.0


def _set(path, value):
    def f(d):
        obj = d
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return f


CASES = {
    "robust-above-clean": (_robust_above_clean, "metrics: robust_accuracy"),
    "per-attack-below-robust": (_per_attack_below_robust, "metrics/per_attack/fgsm:"),
    "accuracy-above-1": (_set(["metrics", "clean_accuracy"], 1.5), "metrics/clean_accuracy: 1.5 is greater than the maximum of 1"),
    "negative-cost": (_set(["cost", "train_seconds"], -1.0), "cost/train_seconds: -1.0 is less than the minimum of 0"),
    "n-zero": (_set(["n"], 0), "n: 0 is less than the minimum of 1"),
    "number-as-string": (_set(["metrics", "robust_accuracy"], "0.6"), "metrics/robust_accuracy: '0.6' is not of type 'number'"),
    "sweep-not-monotone": (_sweep_not_monotone, "metrics/eps_sweep: robust accuracy not monotone in eps"),
    "model-id-malformed": (_set(["model"], "SmallCNN v2"), "model: 'SmallCNN v2' does not match"),
    "threat-id-mismatch": (_set(["threat", "id"], "linf-0.3"), "threat/id: 'linf-0.3' does not match its parameters"),
    "bitmap-length": (lambda d: d["per_example"].update(clean="1" * (d["n"] - 1)), "per_example/clean: "),
    "bitmap-vs-metric": (lambda d: d["per_example"].update(robust="1" * d["n"]), "per_example/robust: "),
    "wer-robust-below-clean": (lambda d: d["metrics"].update(clean_wer=0.30, robust_wer=0.10),
                               "metrics: robust_wer 0.1 < clean_wer 0.3"),
    "wer-metric-without-wer": (_set(["metric"], "wer"), "metrics: metric is wer but clean_wer / robust_wer are missing"),
    "nan": (_set(["cost", "eval_seconds"], float("nan")), "cost/eval_seconds: not a finite number"),
    "traversal-id": (_set(["defense"], "../../etc"), "defense: '../../etc' is not a safe path segment"),
}


def test_real_result_is_valid(real_doc, digits_results):
    path = digits_results / "image/digits/linf-0.2/smallcnn__pgd-at.json"
    assert problems(real_doc, path=path) == []
    assert result_path(digits_results, real_doc) == path


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_inconsistency_is_reported(real_doc, case):
    mutate, message = CASES[case]
    doc = copy.deepcopy(real_doc)
    mutate(doc)
    errs = problems(doc)
    assert any(message in e for e in errs), errs
    assert all("\n" not in e for e in errs)  # one line per problem


def test_raised_flag_allows_non_monotone_sweep(real_doc):
    doc = copy.deepcopy(real_doc)
    _sweep_not_monotone(doc)
    doc["flags"]["non-monotone-in-eps"] = {"value": 1.0, "raised": True}
    assert problems(doc) == []


def test_path_must_match_ids(real_doc, tmp_path):
    wrong = tmp_path / "image/digits/linf-0.3/smallcnn__pgd-at.json"
    errs = problems(real_doc, path=wrong)
    assert errs == [f"path: {wrong} does not match the ids; expected .../image/digits/linf-0.2/smallcnn__pgd-at.json"]


def test_several_problems_give_several_lines(real_doc):
    doc = copy.deepcopy(real_doc)
    doc["n"] = 0
    doc["metrics"]["clean_accuracy"] = -0.1
    doc["model"] = "Bad Name"
    errs = problems(doc)
    assert len(errs) == 3, errs


def test_cli_validate_reports_each_problem_and_exits_2(real_doc, digits_results, tmp_path, capsys):
    doc = copy.deepcopy(real_doc)
    doc["n"] = 0
    _per_attack_below_robust(doc)
    bad = tmp_path / "image/digits/linf-0.2/smallcnn__pgd-at.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps(doc))
    misplaced = tmp_path / "elsewhere.json"
    misplaced.write_text(json.dumps(real_doc))
    assert main(["validate", str(bad), str(misplaced)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith(f"{bad}: n: 0 is less than the minimum of 1") for line in lines), lines
    assert any(line.startswith(f"{misplaced}: path: ") for line in lines), lines
    assert main(["validate", "--no-path-check", str(misplaced)]) == 0
    assert main(["validate", str(digits_results)]) == 0
    assert "2 result file(s) valid" in capsys.readouterr().out
