"""The default text track: fine-tuned MiniLM under the discrete attacks, with the word budget declared once."""

import json
from dataclasses import replace

import pytest

from bench.errors import UserError
from bench.suites import AttackSpec
from bench.tracks import get_track

import domains.text  # noqa: F401  (registers the tracks)


def test_default_text_track_declares_its_budget_suite_and_training_threat():
    t = get_track("text-rt-minilm-words-0.25")
    assert t.quick and t.model == "minilm-l6" and t.cascade
    assert t.threat.id == "words-0.25" and t.threat.discrete
    assert [s.attack for s in t.attack_specs] == ["pwws", "textfooler", "deepwordbug"]
    assert all(dict(s.params)["max_frac"] == 0.25 for s in t.attack_specs)
    assert t.training_threat.id == "emb-seq-l2-0.5" and not t.training_threat.discrete
    d = t.to_dict()
    assert d["threat"]["id"] == "words-0.25" and d["train_threat"]["id"] == "emb-seq-l2-0.5"
    emb = get_track("text-rt-minilm-emb-seq-l2-0.5")
    assert emb.threat == t.training_threat and emb.threat.scale == "absolute"  # one radius for every model


def test_a_suite_that_disagrees_with_the_word_budget_is_refused():
    t = get_track("text-rt-minilm-words-0.25")
    with pytest.raises(UserError, match="must declare max_frac = 0.25"):
        replace(t, suite=(AttackSpec("pwws", "pwws", {"max_frac": 0.2}),))
    with pytest.raises(UserError, match="needs a continuous train_threat"):
        replace(t, train_threat=None)


@pytest.mark.slow
def test_minilm_trains_in_embedding_space_and_the_result_records_the_word_budget(tmp_path):
    """A few MiniLM steps of PGD-AT (in the emb-seq ball), then the discrete suite on 3 reviews: the checkpoint
    records the training threat, the result file the words threat and each attack's quality (about 40 s)."""
    from bench.checkpoint import read_checkpoint_config
    from bench.pipeline import eval_track, train_track
    from bench.results import problems

    t = get_track("text-rt-minilm-words-0.25")
    ck = train_track(t, "pgd-at", epochs=0.002, out=tmp_path / "m.safetensors", progress=False, log=lambda s: None)
    assert read_checkpoint_config(ck)["threat"]["id"] == "emb-seq-l2-0.5"
    path = eval_track(t, ck, results=tmp_path / "res", n=3, progress=False)
    doc = json.loads(path.read_text())
    assert problems(doc, path) == []
    assert doc["threat"]["id"] == "words-0.25" and path.parent.name == "words-0.25"
    assert set(doc["metrics"]["attack_stats"]) == {"pwws", "textfooler", "deepwordbug"}
    assert doc["metrics"]["per_attack_mode"] == "cumulative"


# ---------------------------------------------------------------- the published files
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
WORDS = REPO / "results" / "text" / "rotten-tomatoes" / "words-0.25"


def test_published_default_track_meets_the_issue_bar_and_declares_its_budget():
    """ERM: clean >= 0.80, worst case over the three attacks <= 0.30, median words changed <= 25% per attack."""
    from bench.results import problems

    erm = json.loads((WORDS / "minilm-l6__erm.json").read_text())
    m = erm["metrics"]
    assert m["clean_accuracy"] >= 0.80 and m["robust_accuracy"] <= 0.30 and erm["n"] == 500
    assert m["robust_accuracy"] <= min(m["per_attack"].values())  # the worst case per example
    for name, st in m["attack_stats"].items():
        assert st["words_changed_median"] <= 0.25, name
    assert problems(erm, WORDS / "minilm-l6__erm.json") == []
    bad = json.loads(json.dumps(erm))
    bad["suite"][1]["params"]["max_frac"] = 0.3
    assert any("max_frac 0.3 is not the threat's word budget 0.25" in p for p in problems(bad))


def test_collapsed_recipes_carry_the_one_class_flag_and_are_not_ranked():
    """PGD-AT at the emb-seq-l2-0.5 training radius predicts one class: its 'robust' accuracy is that class's share."""
    import pandas as pd

    from leaderboard.aggregate import collect, cross_domain, unrankable

    pgd = json.loads((WORDS / "minilm-l6__pgd-at.json").read_text())
    assert pgd["flags"]["one-class"] == {"value": 1.0, "raised": True}
    assert pgd["metrics"]["clean_accuracy"] == pgd["metrics"]["robust_accuracy"]
    assert json.loads((WORDS / "minilm-l6__erm.json").read_text())["flags"]["one-class"]["raised"] is False
    df = collect(REPO / "results").frame
    sub = df[df["track"] == "text-rt-minilm-words-0.25"].set_index("defense")
    assert bool(unrankable(sub.reset_index()).set_axis(sub.index)["pgd-at"])
    assert sub.loc["pgd-at", "rank"] > sub.loc["erm", "rank"]  # 58.2 "robust" ranked below ERM's 9.8
    cd = cross_domain(df).set_index("defense")
    assert bool(cd.loc["pgd-at", "text-rt-minilm-words-0.25:unranked"])
    assert not bool(cd.loc["free", "text-rt-minilm-words-0.25:unranked"])
    assert isinstance(cd, pd.DataFrame)


def test_minilm_checkpoints_are_training_records_with_a_remake_command(capsys):
    import bench
    from bench.cli import main
    from bench.reproduce import reproduce

    with pytest.raises(UserError, match=r"not in the repository .* re-make it with: xrobust train --track "
                                         r"text-rt-minilm-words-0\.25 --recipe erm --seed 0 --device cuda"):
        bench.load_model("text-rt-minilm-words-0.25/erm")
    rec = json.loads((REPO / "zoo" / "text-rt-minilm-words-0.25" / "minilm-l6__erm.json").read_text())
    res = json.loads((WORDS / "minilm-l6__erm.json").read_text())
    assert rec["weights"]["sha256"] == res["provenance"]["checkpoint_sha256"]  # the record is the result's model
    assert main(["zoo", "ls"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("zoo:text-rt-minilm-words-0.25/erm "))
    assert "training record only" in line and "0.824" in line
    logged = []
    with pytest.raises(UserError, match="no published checkpoints"):
        reproduce([get_track("text-rt-minilm-words-0.25")], results="/tmp/xrobust-never-written", log=logged.append)
    assert any(s.startswith("not re-evaluated: text-rt-minilm-words-0.25/erm") for s in logged)
