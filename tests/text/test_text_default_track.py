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
