"""Adversarial examples out (bench.adversarial): `xrobust eval --save-adv` writes the examples the worst
case kept, `xrobust verify-adv` re-scores them, and tampered folders are rejected in one line, exit 2."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

import bench
from bench.cli import main
from bench.evaluate import evaluate
from bench.suites import AttackSpec
from bench.tracks import get_track

torch.set_num_threads(1)
TRACK = "image-digits-linf-0.2"
EPS = "0.1"  # an undefended model keeps some examples at 0.1, so robust accuracy is neither 0 nor clean's


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A digits checkpoint (ERM, 4 epochs), evaluated on 40 examples with --save-adv (about 10 s)."""
    from bench.pipeline import train_track

    d = tmp_path_factory.mktemp("adv")
    track = get_track(TRACK)
    ckpt = train_track(track, "erm", epochs=4, runs=d / "runs", progress=False, log=lambda s: None)
    rc = main(["eval", "--track", TRACK, "--checkpoint", str(ckpt), "--eps", EPS, "--n", "40", "--suite", "pgd",
               "--no-sweep", "--no-flags", "--quiet", "--out", str(d / "result.json"), "--save-adv", str(d / "adv")])
    assert rc == 0
    return d, ckpt


def verify(folder, ckpt, *extra):
    return main(["verify-adv", str(folder), "--track", TRACK, "--eps", EPS, "--checkpoint", str(ckpt), *extra])


def tampered(saved, tmp_path):
    d, _ = saved
    shutil.copytree(d / "adv", tmp_path / "adv")
    return tmp_path / "adv", json.loads((tmp_path / "adv" / "manifest.json").read_text())


def one_error_line(capsys):
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("xrobust: error: ") and "rejected" in lines[0]
    return lines[0]


def test_save_adv_writes_every_broken_example_with_its_attack(saved):
    d, _ = saved
    doc = json.loads((d / "result.json").read_text())
    man = json.loads((d / "adv" / "manifest.json").read_text())
    t = load_file(str(d / "adv" / "adv.safetensors"))
    m = doc["metrics"]
    assert 0 < m["robust_accuracy"] < m["clean_accuracy"]  # measured 0.425 < 0.95
    assert man["metrics"]["robust_accuracy"] == m["robust_accuracy"] and man["n"] == 40
    assert man["threat"]["id"] == "linf-0.1" and man["checkpoint_sha256"] == doc["provenance"]["checkpoint_sha256"]
    # one example per clean-correct example the suite broke, found by the first attack of the cascade that did
    pe = doc["per_example"]
    robust, clean, fgsm = pe["robust"], pe["clean"], pe["attacks"]["fgsm"]
    broken = [p for p in range(40) if clean[p] == "1" and robust[p] == "0"]
    assert [e["position"] for e in man["examples"]] == broken
    assert [e["attack"] for e in man["examples"]] == ["fgsm" if fgsm[p] == "0" else "pgd-20" for p in broken]
    assert {e["attack"] for e in man["examples"]} == {"fgsm", "pgd-20"}  # both attacks found some
    x, y = get_track(TRACK).test_data()
    idx = get_track(TRACK).eval_data()[1]
    assert t["index"].tolist() == [int(idx[p]) for p in broken] == [e["index"] for e in man["examples"]]
    assert [e["label"] for e in man["examples"]] == [int(y[p]) for p in broken]
    delta = t["adv"] - x[broken]
    assert float(delta.abs().amax()) <= 0.1 + 1e-6 and float(delta.abs().amax()) > 0.09
    assert t["adv"].min() >= 0 and t["adv"].max() <= 1


def test_verify_adv_accepts_the_untouched_folder(saved, capsys):
    d, ckpt = saved
    assert verify(d / "adv", ckpt, "--result", str(d / "result.json")) == 0
    out = capsys.readouterr().out
    doc = json.loads((d / "result.json").read_text())
    n_broken = round((doc["metrics"]["clean_accuracy"] - doc["metrics"]["robust_accuracy"]) * 40)
    assert f"verified {n_broken} adversarial example(s)" in out
    assert f"({round(doc['metrics']['robust_accuracy'] * 40)}/40) as recorded" in out


def test_an_example_moved_outside_the_ball_is_rejected(saved, tmp_path, capsys):
    folder, man = tampered(saved, tmp_path)
    t = load_file(str(folder / "adv.safetensors"))
    x, _ = get_track(TRACK).test_data()
    e = man["examples"][2]
    clean = x[e["position"]]
    k = int((clean < 0.5).flatten().nonzero()[0])  # a pixel with room below the upper bound
    flat = t["adv"][e["row"]].flatten().clone()
    flat[k] = clean.flatten()[k] + 0.15  # 1.5 x eps
    t["adv"][e["row"]] = flat.reshape(clean.shape)
    save_file(t, str(folder / "adv.safetensors"))
    assert verify(folder, saved[1]) == 2
    line = one_error_line(capsys)
    assert f"index {e['index']} ({e['attack']}) lies outside the threat model linf-0.1: 1.5 x the radius " \
           "(50% outside)" in line


def test_a_tampered_label_is_rejected(saved, tmp_path, capsys):
    folder, man = tampered(saved, tmp_path)
    e = man["examples"][0]
    e["label"] = (e["label"] + 1) % 10
    (folder / "manifest.json").write_text(json.dumps(man))
    assert verify(folder, saved[1]) == 2
    assert f"index {e['index']} ({e['attack']}): records label {e['label']}, the track's label is " \
           f"{(e['label'] - 1) % 10}" in one_error_line(capsys)


def test_an_example_that_is_not_misclassified_is_rejected(saved, tmp_path, capsys):
    """The clean image itself lies inside the ball, but the model classifies it correctly."""
    folder, man = tampered(saved, tmp_path)
    t = load_file(str(folder / "adv.safetensors"))
    x, _ = get_track(TRACK).test_data()
    e = man["examples"][1]
    t["adv"][e["row"]] = x[e["position"]]
    save_file(t, str(folder / "adv.safetensors"))
    assert verify(folder, saved[1]) == 2
    assert f"index {e['index']} ({e['attack']}) is not adversarial: it is classified correctly" \
        in one_error_line(capsys)


def test_a_missing_example_changes_the_implied_robust_accuracy(saved, tmp_path, capsys):
    d, ckpt = saved
    folder, man = tampered(saved, tmp_path)
    rec = man["metrics"]["robust_accuracy"]
    man["examples"].pop()
    (folder / "manifest.json").write_text(json.dumps(man))
    assert verify(folder, ckpt) == 2
    assert f"the examples imply robust accuracy {rec + 1 / 40:.4f}, the folder records {rec:.4f}" \
        in one_error_line(capsys)
    # the folder untouched, but a result file that claims more than the examples show
    doc = json.loads((d / "result.json").read_text())
    doc["metrics"]["robust_accuracy"] = rec + 0.1
    (tmp_path / "claim.json").write_text(json.dumps(doc))
    assert verify(d / "adv", ckpt, "--result", str(tmp_path / "claim.json")) == 2
    assert "the result file claim.json records" in one_error_line(capsys)


def test_another_threat_or_a_non_empty_output_folder_is_refused(saved, tmp_path, capsys):
    d, ckpt = saved
    rc = main(["verify-adv", str(d / "adv"), "--track", TRACK, "--checkpoint", str(ckpt)])  # eps 0.2, not 0.1
    assert rc == 2 and "the examples are for threat 'linf-0.1', the track's is 'linf-0.2'" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    rc = main(["eval", "--track", TRACK, "--checkpoint", str(ckpt), "--n", "4", "--suite", "pgd", "--no-sweep",
               "--quiet", "--out", str(tmp_path / "r.json"), "--save-adv", str(tmp_path / "busy")])
    assert rc == 2 and "exists and is not an empty folder" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists() and [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]


def test_keep_adv_keeps_the_first_attack_that_broke_each_example(digits_model, digits_data):
    """Without a cascade every attack runs on every clean-correct example; the kept example is the first
    attack's that broke it, it is the one the report counts, and keeping changes no outcome."""
    _, test = digits_data
    x, y = test.inputs[:30], test.y[:30]
    threat = get_track(TRACK).threat.with_eps(0.1)
    suite = [AttackSpec("fgsm", "fgsm"), AttackSpec("pgd-5", "pgd", {"steps": 5})]
    plain = evaluate(digits_model, x, y, threat, suite, flags=False)
    rep = evaluate(digits_model, x, y, threat, suite, flags=False, keep_adv=True)
    assert plain.adversarial is None and torch.equal(plain.robust_errors, rep.robust_errors)
    broken = ((rep.robust_errors > 0) & (rep.clean_errors == 0)).nonzero().squeeze(1).tolist()
    assert sorted(rep.adversarial) == broken and len(broken) >= 5
    by_fgsm = rep.attack_errors["fgsm"] > 0
    assert [ex.attack for ex in rep.adversarial.values()] == ["fgsm" if by_fgsm[p] else "pgd-5" for p in broken]
    assert {"fgsm", "pgd-5"} == {ex.attack for ex in rep.adversarial.values()}
    z = torch.stack([ex.z for ex in rep.adversarial.values()])
    assert bool((digits_model(z).argmax(1) != y[broken]).all())
    assert threat.contains(z, x[broken]).all() and all(0 < ex.distance <= 1 + 1e-6 for ex in rep.adversarial.values())


def test_an_example_found_at_a_smaller_sweep_eps_is_saved_for_the_headline(saved, tmp_path, monkeypatch):
    """The sweep counts an example broken at a smaller eps as broken at the headline eps (the smaller ball
    lies inside); its example is the one saved, and the folder still verifies. The attack here is FGSM that
    gives up above eps 0.07, so every example the headline counts as broken comes from the 0.05 sweep point."""
    from bench.attacks.fgsm import FGSM
    from bench.checkpoint import load_checkpoint
    from bench.pipeline import eval_track
    from bench.registry import ATTACKS

    class SmallOnly(FGSM):
        def search(self, model, z, ctx, y, threat):
            return super().search(model, z, ctx, y, threat) if threat.eps < 0.07 else z

    monkeypatch.setitem(ATTACKS._items, "test-small-only", SmallOnly)
    _, ckpt = saved
    base = get_track(TRACK)
    track = replace(base, threat=base.threat.with_eps(0.1), suite=(AttackSpec("fgsm-small", "test-small-only"),),
                    eps_sweep=(0.05, 0.1), sweep_n=40, sweep_suite=None)
    path = eval_track(track, ckpt, n=40, results=tmp_path, progress=False, flags=False, save_adv=tmp_path / "adv")
    man = json.loads((tmp_path / "adv" / "manifest.json").read_text())
    doc = json.loads(path.read_text())
    m = doc["metrics"]
    assert m["per_attack"]["fgsm-small"] == m["clean_accuracy"] > m["robust_accuracy"]  # broken only by the sweep
    assert len(man["examples"]) == round((m["clean_accuracy"] - m["robust_accuracy"]) * 40) > 0
    assert {e["threat"] for e in man["examples"]} == {"linf-0.05"}
    assert all(e["distance"] <= 1 + 1e-6 for e in man["examples"])
    rep = bench.verify_adversarial(tmp_path / "adv", load_checkpoint(ckpt), track, result=path)
    assert rep.ok, rep.problems
    assert rep.robust_accuracy == m["robust_accuracy"]
