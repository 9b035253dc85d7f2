"""Text evidence samples (``xrobust eval --samples K``): the discrete attacks' examples beside the result file,
original vs adversarial with the changed words and their offsets, labels and true-class probabilities before
and after; re-checked without a model by ``xrobust validate``.

The victim is a bag-of-words logistic regression trained here on 1,000 Rotten Tomatoes sentences (as in
test_text_attacks.py, a few seconds), attacked with pwws, deepwordbug and a continuous PGD on its features."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from bench.errors import DataMissingError
from bench.evaluate import evaluate
from bench.registry import ATTACKS, DATASETS
from bench.samples import manifest_problems, sample_problems, write_samples
from bench.suites import AttackSpec
from bench.threat import ThreatModel
from bench.tracks import get_track
from domains.text import constraints as C
from domains.text.pwws import PWWS
from text_victims import train_victim  # tests/text/text_victims.py (pytest puts tests/text on sys.path)

torch.set_num_threads(1)
NAMES = ["rotten", "fresh"]



def letters(texts):
    """A stand-in sentence encoder (no 90 MB MiniLM in a unit test): unit vectors of letter counts."""
    v = torch.tensor([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], dtype=torch.float)
    return nn.functional.normalize(v, dim=1)


class LetterPWWS(PWWS):
    """pwws whose reported sentence similarity comes from :func:`letters`."""

    def __init__(self, **kw):
        super().__init__(similarity=letters, **kw)


def result_file(path, track):
    path.write_text(json.dumps({"track": track.id, "domain": "text", "model": "bow", "defense": "erm",
                                "threat": {"id": track.threat.id}, "provenance": {"timestamp": "t"}}))
    return path


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """deepwordbug, pwws (with a sentence similarity) and PGD on 40 test sentences; every example's worst case
    kept; then 4 samples written beside a result file."""
    from domains.text.wordnet import wordnet

    try:
        wordnet()
    except DataMissingError as exc:
        pytest.skip(str(exc))
    train, test = DATASETS.get("rotten-tomatoes")("train"), DATASETS.get("rotten-tomatoes")("test")
    texts, y = list(train.inputs[:1000]), train.y[:1000]
    model = train_victim(texts, y)
    ATTACKS.register("test-letter-pwws", LetterPWWS, replace=True)
    suite = (AttackSpec("deepwordbug", "deepwordbug", {"max_frac": 0.2, "measure_similarity": False}),
             AttackSpec("pwws", "test-letter-pwws", {"max_frac": 0.2}),
             AttackSpec("pgd-5", "pgd", {"steps": 5}))
    threat = ThreatModel("linf", 1.0, bounds=(0.0, 1.0))
    track = replace(get_track("text-rt-emb-l2-0.05"), id="text-rt-bow", threat=threat, suite=suite)
    ev_texts, ev_y = list(test.inputs[:40]), test.y[:40]
    inputs, index = model.tokenize(ev_texts), torch.arange(500, 540)
    rep = evaluate(model, inputs, ev_y, threat, suite, flags=False, keep_adv=True, index=index)
    result = result_file(tmp_path_factory.mktemp("text") / "bow__erm.json", track)
    folder = write_samples(rep, result, 4, track=track, model=model, inputs=inputs, y=ev_y,
                           meta={"label_names": NAMES}, index=index)
    return model, track, rep, ev_texts, ev_y, result, folder


def test_eval_writes_the_discrete_examples_as_text(evaluated):
    model, _, rep, texts, y, result, folder = evaluated
    kept = rep.adversarial
    assert {ex.attack for ex in kept.values()} == {"pwws", "deepwordbug", "pgd-5"}  # all three broke something
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]  # no files: the manifest holds it all
    man = json.loads((folder / "manifest.json").read_text())
    assert (man["kind"], man["task"], man["result"], man["domain"]) == ("text", "classification", "bow__erm.json",
                                                                         "text")
    discrete = sorted(p for p, ex in kept.items() if ex.discrete and rep.clean_errors[p] == 0)
    assert [s["position"] for s in man["samples"]] == discrete[:4]  # only discrete ones; clean-right, in order
    assert {s["attack"] for s in man["samples"]} <= {"pwws", "deepwordbug"}
    for s in man["samples"]:
        p = s["position"]
        ex = kept[p]
        assert s["index"] == 500 + p and s["original"] == texts[p] and s["adversarial"] == ex.record["adversarial"]
        assert s["label"] == NAMES[int(y[p])] == s["clean_prediction"] != s["adversarial_prediction"]
        probs = torch.softmax(model.classify_texts([texts[p], s["adversarial"]]), 1)[:, int(y[p])]
        assert (s["clean_true_prob"], s["adversarial_true_prob"]) == pytest.approx(probs.tolist(), abs=1e-6)
        assert s["clean_true_prob"] > 0.5 > s["adversarial_true_prob"]
        assert (s["clean_errors"], s["adv_errors"]) == (0.0, 1.0)
        swaps = C.align(texts[p], s["adversarial"])
        assert [(c["word"], c["old"], c["new"]) for c in s["changes"]] == swaps and swaps
        for c in s["changes"]:
            assert texts[p][c["start"]:c["start"] + len(c["old"])] == c["old"]
            assert s["adversarial"][c["adv_start"]:c["adv_start"] + len(c["new"])] == c["new"]
        assert s["words"] == len(C.words(texts[p])) and s["budget"] == C.word_budget(s["words"], 0.2)
        assert len(s["changes"]) <= s["budget"]
        if s["attack"] == "pwws":
            assert s["unit"] == "word" and "edits" not in s["changes"][0]
            e = letters([texts[p], s["adversarial"]])
            assert s["sentence_similarity"] == pytest.approx(float(e[0] @ e[1]), abs=1e-6)
            assert s["sentence_similarity"] < 1
        else:  # deepwordbug edits characters, and was told not to measure the similarity
            from domains.text.deepwordbug import levenshtein, one_edit

            assert s["unit"] == "character"  # one edit per word; an adjacent swap is 2 Levenshtein edits
            assert all(one_edit(c["old"], c["new"]) and c["edits"] == levenshtein(c["old"], c["new"]) in (1, 2)
                       for c in s["changes"])
            assert s["sentence_similarity"] is None
    assert sample_problems(folder, json.loads(result.read_text())) == []


def _tampered(folder, tmp_path, edit):
    import shutil

    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    man = json.loads((copy / "manifest.json").read_text())
    edit(man)
    (copy / "manifest.json").write_text(json.dumps(man))
    return sample_problems(copy)


def test_validation_catches_a_tampered_adversarial_text(evaluated, tmp_path):
    *_, folder = evaluated

    def stronger(man):  # one more word changed in the text, the change list left as written
        s = man["samples"][0]
        free = [w for w in C.words(s["adversarial"]) if w not in {c["new"] for c in s["changes"]}][-1]
        s["adversarial"] = s["adversarial"].replace(free, "<script>alert(1)</script>", 1)

    errs = _tampered(folder, tmp_path / "a", stronger)
    assert any("the recorded changes do not turn the original into the adversarial text" in e for e in errs), errs

    def shifted(man):  # the change list edited to match, but at another word index: the domain's own check
        s = man["samples"][0]
        s["changes"][0]["word"] += 1

    errs = _tampered(folder, tmp_path / "b", shifted)
    assert any("the recorded changes are not the word swaps between the two texts" in e for e in errs), errs

    def over_budget(man):
        man["samples"][0]["budget"] = len(man["samples"][0]["changes"]) - 1

    errs = _tampered(folder, tmp_path / "c", over_budget)
    assert any("more than the budget of" in e for e in errs), errs

    def flipped(man):  # the adversarial prediction claimed right while the errors say broken
        s = man["samples"][0]
        s["adversarial_prediction"] = s["label"]

    errs = _tampered(folder, tmp_path / "d", flipped)
    assert any("adversarial prediction" in e and "disagrees with adv_errors" in e for e in errs), errs


def test_validation_catches_a_malformed_manifest(evaluated, tmp_path):
    *_, folder = evaluated
    man = json.loads((folder / "manifest.json").read_text())
    assert manifest_problems(man) == []
    for edit, where in ((lambda m: m["samples"][0].pop("changes"), "samples/0"),
                        (lambda m: m["samples"][0].update(unit="letter"), "samples/0/unit"),
                        (lambda m: m["samples"][0].update(clean_true_prob=1.5), "samples/0/clean_true_prob"),
                        (lambda m: m.update(sample_rate=16000), "sample_rate"),
                        (lambda m: m["samples"][0]["changes"][0].update(start=-1), "samples/0/changes/0/start"),
                        (lambda m: m.update(task="asr"), "task")):
        bad = json.loads(json.dumps(man))
        edit(bad)
        errs = manifest_problems(bad)
        assert errs and all(e.startswith(f"manifest.json: {where}") for e in errs[:1]), (where, errs)
    audio = json.loads(json.dumps(man))
    audio.pop("kind")  # read as audio: a text sample is not an audio sample
    assert any("sample_rate" in e for e in manifest_problems(audio))
    (tmp_path / "x.samples").mkdir()
    (tmp_path / "x.samples" / "manifest.json").write_text("{not json")
    assert sample_problems(tmp_path / "x.samples")[0].startswith("manifest.json: not valid JSON")


def test_only_continuous_examples_give_a_manifest_that_says_so(evaluated, tmp_path):
    """A suite whose kept examples are all embedding-space ones (here PGD on the features): no text to show,
    and the manifest says why; nothing broken at all: no folder."""
    model, track, _, texts, y, _, _ = evaluated
    inputs = model.tokenize(texts[:20])
    rep = evaluate(model, inputs, y[:20], track.threat, track.suite[2:], flags=False, keep_adv=True)
    assert rep.adversarial and all(not ex.discrete for ex in rep.adversarial.values())
    result = result_file(tmp_path / "bow__erm.json", track)
    folder = write_samples(rep, result, 3, track=track, model=model, inputs=inputs, y=y[:20],
                           meta={"label_names": NAMES})
    man = json.loads((folder / "manifest.json").read_text())
    assert man["samples"] == [] and "no text sample" in man["note"] and "pgd-5" in man["note"]
    assert sample_problems(folder) == []
    none = replace(track.threat, eps=0.0)
    rep = evaluate(model, inputs, y[:20], none, track.suite[2:], flags=False, keep_adv=True)
    assert rep.adversarial == {}
    assert write_samples(rep, result, 3, track=track, model=model, inputs=inputs, y=y[:20]) is None
    assert not folder.exists()  # the earlier folder was that result's evidence: replaced by nothing
