"""Confidence on the leaderboard: Wilson intervals, exact McNemar, shared ranks for differences within noise."""

from __future__ import annotations

import copy
import json
import math

import pytest

from bench.results import problems
from bench.stats import bootstrap_mean, mcnemar_exact, paired_outcomes_p, wilson
from leaderboard.aggregate import collect, cross_domain
from leaderboard.markdown import track_markdown


def test_wilson_known_values():
    lo, hi = wilson(81, 100)
    # by hand: centre (0.81 + z^2/200) / (1 + z^2/100) = 0.79855, half-width 0.07633 (z = 1.96)
    assert (round(lo, 4), round(hi, 4)) == (0.7222, 0.8749)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0) and 0 < wilson(0, 10)[1] < 0.31


def test_mcnemar_exact_known_values():
    assert mcnemar_exact(3, 0) == pytest.approx(0.25)
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert paired_outcomes_p("1100", "1010") == 1.0 and paired_outcomes_p("11", "1") is None


def test_bootstrap_mean_covers_the_mean():
    lo, hi = bootstrap_mean([0.0, 1.0] * 50, seed=0)
    assert lo < 0.5 < hi and hi - lo < 0.25


def _synthetic(doc: dict, defense: str, robust: str) -> dict:
    """A valid result document on 300 examples with these robust outcomes (every example clean-correct)."""
    out = copy.deepcopy(doc)
    n = len(robust)
    out.update(defense=defense, n=n)
    acc = robust.count("1") / n
    m = out["metrics"]
    m.update(clean_accuracy=1.0, robust_accuracy=acc, per_attack={k: acc for k in m["per_attack"]})
    m.pop("eps_sweep", None)
    out["per_example"] = {"clean": "1" * n, "robust": robust, "attacks": {k: robust for k in m["per_attack"]}}
    return out


@pytest.mark.parametrize("differ, tied", [(3, True), (60, False)])
def test_a_difference_within_noise_shares_the_rank(digits_results, tmp_path, differ, tied):
    src = next(digits_results.rglob("smallcnn__erm.json"))
    doc = json.loads(src.read_text())
    base = "1" * 200 + "0" * 100
    other = "1" * (200 - differ) + "0" * (100 + differ)  # differs from base in `differ` examples, all one way
    root = tmp_path / "results"
    folder = root / src.relative_to(digits_results).parent
    folder.mkdir(parents=True)
    for defense, bits in (("pgd-at", base), ("trades", other)):
        d = _synthetic(doc, defense, bits)
        path = folder / f"smallcnn__{defense}.json"
        path.write_text(json.dumps(d))
        assert problems(d, path) == []
    df = collect(root).frame.set_index("defense")
    assert df.loc["pgd-at", "rank"] == 1
    assert df.loc["trades", "rank"] == (1 if tied else 2)
    p = df.loc["trades", "tie_p"]
    assert p == pytest.approx(mcnemar_exact(0, differ))
    assert (p >= 0.05) == tied
    lo, hi = df.loc["pgd-at", ["robust_lo", "robust_hi"]]
    assert (lo, hi) == pytest.approx(wilson(200, 300))
    text = track_markdown(collect(root).frame, doc["track"])
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in text
    row = next(line for line in text.splitlines() if "| trades |" in line)
    assert ("(=)" in row) == tied
    cd = cross_domain(collect(root).frame).set_index("defense")
    assert math.isnan(cd.loc["trades", "mean_rank"]) or cd.loc["trades", "mean_rank"] == (1.0 if tied else 2.0)


def test_ties_are_tested_against_the_group_leader_not_the_row_above():
    """A 67% / 65% / 63% chain on 500 examples: each step is within noise, the ends are not. The third row
    must not inherit rank 1 through the second."""
    from leaderboard.aggregate import chain_ranks

    a = "1" * 335 + "0" * 165            # 67.0 %
    b = a[:330] + "0" * 5 + a[335:]      # 66.0 %: 5 vs 0 discordant against a, p = 0.0625
    c = a[:325] + "0" * 10 + a[335:]     # 65.0 %: 5 vs 0 against b (p = 0.0625), 10 vs 0 against a (p = 0.002)
    assert paired_outcomes_p(b, a) == pytest.approx(0.0625) and paired_outcomes_p(c, b) == pytest.approx(0.0625)
    assert paired_outcomes_p(c, a) == pytest.approx(2 / 1024)
    ranks, ps = chain_ranks([0.67, 0.66, 0.65], [a, b, c])
    assert ranks == [1, 1, 3]
    assert ps[1] == pytest.approx(0.0625) and ps[2] == pytest.approx(2 / 1024)
