"""Text adversarial examples out: embedding-space examples in adv.safetensors, word substitutions in adv.jsonl
(original, adversarial, words changed); both re-checked, and tampering with either is rejected."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

import bench
from bench.evaluate import evaluate
from bench.registry import ATTACKS
from bench.suites import AttackSpec
from bench.tracks import get_track
from domains.text.wordsub import WordSubstitution

torch.set_num_threads(1)
#: every word's substitution candidates (stands in for MiniLM's neighbours: no 90 MB model in a unit test)
CANDIDATES = ["good", "bad", "dull", "fine", "great", "boring", "fun", "awful", "film", "story"]


class FixedWordSub(WordSubstitution):
    def __init__(self, **kw):
        super().__init__(synonyms=lambda w: CANDIDATES, similarity=lambda ts: torch.ones(len(ts), 4) / 2.0, **kw)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The published ERM tiny BERT (zoo/) on 40 test sentences: APGD-CE (5 steps) in
    embedding space, then word substitution on what it left, as a cascade (a few seconds)."""
    from pathlib import Path

    from bench.checkpoint import load_checkpoint

    ATTACKS.register("test-fixed-word-sub", FixedWordSub, replace=True)
    base = get_track("text-rt-emb-l2-0.05")
    ws = next(s for s in base.attack_specs if s.name == "word-sub")
    track = replace(base, suite=(AttackSpec("apgd-ce", "apgd", {"steps": 5, "loss": "ce"}),
                                 AttackSpec("word-sub", "test-fixed-word-sub", ws.params)))
    repo = Path(__file__).resolve().parents[2]
    model = load_checkpoint(repo / "zoo" / "text-rt-emb-l2-0.05" / "tiny-bert__erm.safetensors").eval()
    data, idx = track.eval_data()
    data = model.prepare(data.subset(torch.arange(40)))
    rep = evaluate(model, data.inputs, data.y, track.threat, track.suite, cascade=True, index=idx[:40], flags=False,
                   keep_adv=True)
    folder = tmp_path_factory.mktemp("text") / "adv"
    bench.save_adversarial(rep, folder, track=track, model="tiny-bert (test)", y=data.y)
    return folder, model, track, rep, data


def test_both_kinds_of_example_are_saved_and_verify(saved):
    folder, model, track, rep, data = saved
    man = json.loads((folder / "manifest.json").read_text())
    kinds = {e["attack"] for e in man["examples"]}
    assert kinds == {"word-sub", "apgd-ce"}  # measured: 3 embedding examples, 20 substitutions
    lines = [json.loads(ln) for ln in (folder / "adv.jsonl").read_text().splitlines()]
    assert [(r["index"], r["position"]) for r in lines] == \
        [(e["index"], e["position"]) for e in man["examples"] if e["attack"] == "word-sub"]
    for r in lines:
        assert r["original"] == data.inputs["text"][r["position"]] != r["adversarial"]
        assert 1 <= r["words_changed"] <= int(0.2 * r["words"])
    t = load_file(str(folder / "adv.safetensors"))
    lengths = data.inputs["attention_mask"].sum(1)
    for e in man["examples"]:
        if e["attack"] == "apgd-ce":  # the example's own length, never padding; L2 per token <= 0.05 x the scale
            assert t["shape"][e["row"]].tolist() == [int(lengths[e["position"]]), 128]
    v = bench.verify_adversarial(folder, model, track)
    assert v.ok, v.problems
    assert v.robust_accuracy == rep.metrics()["robust_accuracy"] < v.clean_accuracy


def test_a_substitution_that_breaks_the_constraints_is_rejected(saved, tmp_path):
    folder, model, track, _, _ = saved
    shutil.copytree(folder, tmp_path / "adv")
    lines = [json.loads(ln) for ln in (tmp_path / "adv" / "adv.jsonl").read_text().splitlines()]
    r = lines[0]
    words = r["original"].split(" ")
    r["adversarial"] = " ".join("bad" if w.isalpha() and len(w) > 3 else w for w in words)  # every long word
    (tmp_path / "adv" / "adv.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    v = bench.verify_adversarial(tmp_path / "adv", model, track)
    assert f"index {r['index']} (word-sub) breaks the constraints of word-sub: it changes" in v.problems[0]
    assert "words (at most" in v.problems[0]


def test_an_embedding_example_outside_the_ball_is_rejected(saved, tmp_path):
    folder, model, track, _, data = saved
    shutil.copytree(folder, tmp_path / "adv")
    man = json.loads((folder / "manifest.json").read_text())
    t = load_file(str(folder / "adv.safetensors"))
    e = next(e for e in man["examples"] if e["attack"] == "apgd-ce")
    z, _ = model.encode({k: v[e["position"]:e["position"] + 1] for k, v in data.inputs.items() if k != "text"})
    L = int(t["shape"][e["row"]][0])
    t["adv"][e["row"], :L] = z[0, :L] + 2 * (t["adv"][e["row"], :L] - z[0, :L])
    save_file(t, str(tmp_path / "adv" / "adv.safetensors"))
    v = bench.verify_adversarial(tmp_path / "adv", model, track)
    assert f"index {e['index']} (apgd-ce) lies outside the threat model emb-l2-0.05: 2" in v.problems[0]
