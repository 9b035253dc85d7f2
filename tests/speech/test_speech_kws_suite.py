"""The KWS track's suite: AutoAttack's standard four plus APGD-CE-1000, and the sweep's measured
equivalent (issue 12, item 1), checked against the committed result files."""

import json
from pathlib import Path

import pytest

from bench import registry
from bench.sanity import _step_attack
from bench.tracks import get_track

registry.load_domains()
ROOT = Path(__file__).resolve().parents[2]
TRACK = get_track("speech-kws-snr-30db")
FILES = sorted((ROOT / "results" / "speech" / "synth-commands" / "snr-30db").glob("melcnn__*.json"))


def test_the_suite_is_autoattack_standard_then_a_long_apgd():
    names = [s.name for s in TRACK.suite]
    assert names == ["apgd-ce", "apgd-t", "fab-t", "square", "apgd-ce-1000"] and TRACK.cascade
    assert dict(TRACK.suite[-1].params) == {"steps": 1000, "loss": "ce"}
    assert _step_attack(TRACK.suite).name == "apgd-ce-1000"  # not-converged: 4,000 against 1,000 steps
    assert [s.name for s in TRACK.sweep_suite] == ["apgd-ce", "apgd-t", "apgd-ce-1000"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_committed_result_runs_the_suite_and_fab_square_add_nothing(path):
    """The sweep drops FAB-T and Square: allowed only while, on every committed checkpoint, they broke
    no clip that APGD-CE and APGD-T had left robust (0 points, the bar is 0.5)."""
    doc = json.loads(path.read_text())
    assert [s["name"] for s in doc["suite"]] == [s.name for s in TRACK.suite], path.name
    pa, n = doc["metrics"]["per_attack"], doc["n"]
    assert doc["metrics"]["per_attack_mode"] == "cumulative"
    assert round((pa["apgd-t"] - pa["square"]) * n) == 0, (path.name, pa)
    attacks = doc["per_example"]["attacks"]
    assert attacks["apgd-t"] == attacks["fab-t"] == attacks["square"], path.name


def test_every_recipe_of_the_track_is_committed():
    assert {p.stem.split("__")[1] for p in FILES} == {"erm", "pgd-at", "trades", "mart", "fgsm-rs", "free"}
