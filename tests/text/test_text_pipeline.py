"""End to end: train a tiny BERT with FreeLB on Rotten Tomatoes, evaluate PGD + word-sub, write a valid result."""

import json
from dataclasses import replace

import pytest
import torch

from bench.evaluate import evaluate
from bench.pipeline import eval_track, train_track
from bench.results import problems
from bench.threat import ThreatModel
from bench.tracks import get_track

torch.set_num_threads(1)


@pytest.mark.slow
def test_tiny_train_and_eval_writes_a_valid_result(tmp_path):
    track = get_track("text-rt-emb-l2-0.05")
    assert track.quick and [s.name for s in track.attack_specs] == ["apgd-ce", "apgd-t", "fab-t", "square", "word-sub"]
    track = replace(track, model_kwargs={"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64,
                                         "vocab_size": 1000},
                    train=replace(track.train, batch_size=128), eps_sweep=(0.01, 0.1))
    ckpt = train_track(track, "freelb", epochs=0.1, out=tmp_path / "ckpt" / "model.safetensors",
                       progress=False, log=lambda s: None)
    assert (tmp_path / "ckpt" / "model.assets" / "tokenizer.json").exists()
    path = eval_track(track, ckpt, n=24, results=tmp_path / "results", progress=False)
    assert path == tmp_path / "results/text/rotten-tomatoes/emb-l2-0.05/tiny-bert__freelb.json"
    doc = json.loads(path.read_text())
    assert problems(doc) == []
    m = doc["metrics"]
    assert doc["n"] == 24 and doc["defense"] == "freelb" and doc["defense_params"]["steps"] == 2
    assert set(m["per_attack"]) == {"apgd-ce", "apgd-t", "fab-t", "square", "word-sub"}
    # worst case per example over the embedding attack AND the word substitution
    assert m["robust_accuracy"] <= min(m["per_attack"].values()) <= m["clean_accuracy"]
    ws = m["attack_stats"]["word-sub"]
    assert m["words_changed"] == ws["words_changed"] and 0 <= m["words_changed"] <= 0.2
    assert m["queries"] >= 1 or m["clean_accuracy"] == 0
    assert [e["eps"] for e in m["eps_sweep"]] == [0.01, 0.1]
    assert m["eps_sweep"][0]["robust_accuracy"] >= m["eps_sweep"][1]["robust_accuracy"]


def test_discrete_attack_enters_the_worst_case():
    """A discrete attack that empties every text changes what the model sees; evaluate scores that."""
    from domains.text import datasets as tds
    from domains.text.models import tiny_bert

    class Blank:
        discrete = True

        def __init__(self, seed=0):
            self.calls = 0

        def run_inputs(self, model, inputs, y):
            self.calls += len(y)
            return model.tokenize(["" for _ in inputs["text"]])

        def stats(self):
            return {"queries": 0.0, "calls": float(self.calls)}

    from bench.registry import ATTACKS
    from bench.suites import AttackSpec

    ATTACKS.register("test-blank", Blank, replace=True)
    torch.manual_seed(0)
    model = tiny_bert(hidden=32, layers=1, heads=2, intermediate=64, vocab_size=500).eval()  # evaluate keeps the mode
    data = model.prepare(tds.rotten_tomatoes("test").subset(torch.arange(40)))
    rep = evaluate(model, data.inputs, data.y, ThreatModel.from_id("emb-l2-0.05"), [AttackSpec("blank", "test-blank")])
    blank_pred = int(model.classify_texts([""]).argmax())
    clean_ok = rep.clean_errors == 0
    expected = clean_ok & (data.y == blank_pred)
    assert torch.equal(rep.robust_errors == 0, expected)
    assert rep.metrics()["attack_stats"]["blank"]["calls"] == float(clean_ok.sum())


def test_training_costs_on_text_keep_the_tokenizer():
    """perf --training copies the prepared model, tokenizer included (rebuilding it lost the tokenizer)."""
    from bench.perf_training import training_costs

    track = get_track("text-rt-emb-l2-0.05")
    track = replace(track, model_kwargs={"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64,
                                         "vocab_size": 1000}, train=replace(track.train, batch_size=32))
    rows = {r["recipe"]: r for r in training_costs(track, ["free"], batches=1, rounds=1)}
    assert set(rows) == {"erm", "free"} and rows["free"]["replay"] == 2  # the track's m for text
    assert rows["erm"]["ratio_to_erm"] == 1.0 and rows["free"]["seconds_per_epoch"] > 0
