"""The model resolver (bench.resolve): schemes as registrations, zoo: reproduces published numbers,
`xrobust zoo ls`, a model that does not fit a track stops before any attack, `--batch-size`."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import bench
from bench.cli import main
from bench.errors import UserError
from bench.registry import SCHEMES, SUITES
from bench.resolve import ModelSource, parse, resolve
from bench.results import result_files
from bench.suites import STANDARD
from bench.tracks import get_track

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
MNIST = "image-mnist5k-linf-0.3"
PUBLISHED = REPO / "results" / "image" / "mnist5k" / "linf-0.3"


def three_classes() -> nn.Module:
    """A plug-in (``test_model_resolver:three_classes``) that declares nothing: 28x28 pixels -> 3 logits."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3))


def test_the_schemes_are_registrations_and_a_new_one_is_one_function(monkeypatch):
    assert {"zoo", "hf", "timm", "torchvision", "robustbench"} <= set(SCHEMES.names())
    monkeypatch.setitem(SCHEMES._items, "toy", None)  # removed again after the test

    @SCHEMES.register("toy", replace=True)
    def toy(ref, hints, **_):
        return nn.Linear(int(ref), 2), ModelSource(ref, f"toy-{ref}", "none", "0" * 64)

    model = resolve("toy:5")
    assert model.net.in_features == 5 and not model.training
    assert (model.source.spec, model.source.model_id, model.source.defense) == ("toy:5", "toy-5", "none")


def test_spec_parsing():
    assert parse("zoo:image-mnist5k-linf-0.3/pgd-at") == ("zoo", "image-mnist5k-linf-0.3/pgd-at")
    assert parse("image-mnist5k-linf-0.3/pgd-at") == ("zoo", "image-mnist5k-linf-0.3/pgd-at")  # the bare alias
    assert parse("hf:org/name") == ("hf", "org/name")
    assert parse("mypkg.models:build") == ("module", "mypkg.models:build")
    with pytest.raises(UserError, match="malformed model spec"):
        parse("resnet18")
    with pytest.raises(UserError, match="neither a scheme .*zoo.* nor an importable module:object"):
        resolve("nosuchscheme:thing")


def test_zoo_scheme_and_bare_alias_load_the_published_checkpoint_sha256_checked():
    doc = json.loads((PUBLISHED / "smallcnn__pgd-at.json").read_text())
    a, b = bench.load_model(f"zoo:{MNIST}/pgd-at"), bench.load_model(f"{MNIST}/pgd-at")
    assert a.source.sha256 == b.source.sha256 == doc["provenance"]["checkpoint_sha256"]
    assert (a.source.model_id, a.source.defense) == ("smallcnn", "pgd-at")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    with pytest.raises(UserError, match="no published checkpoint"):
        bench.load_model(f"zoo:{MNIST}/nosuch")


def test_module_object_plugin_is_checked_against_the_track_by_its_outputs():
    model = resolve(f"{__name__}:three_classes")
    assert model.source.model_id == "test_model_resolver-three_classes" and model.source.defense == "external"
    # it declares nothing, so the probe on two track examples finds the mismatch (3 logits, 10 classes)
    with pytest.raises(UserError, match=r"3 outputs per example, the track has num_classes 10"):
        bench.load_model(f"{__name__}:three_classes", track=MNIST)


def test_zoo_ls_lists_every_published_result(capsys):
    assert main(["zoo", "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = result_files(REPO / "results")
    assert len(files) >= 10
    for f in files:
        doc = json.loads(f.read_text())
        m, head = doc["metrics"], doc["headline"]
        if doc.get("transform"):  # an inference-time defense in front of a published checkpoint (its recipe's)
            recipe = doc["defense"].split("+", 1)[0]
            home = get_track(doc["track"]).checkpoints_from or doc["track"]
            assert any(ln.split()[0] == f"zoo:{home}/{recipe}" for ln in lines), f"{home}/{recipe} missing"
            continue
        if doc.get("kind") == "corruption" or get_track(doc["track"]).checkpoints_from:
            # its checkpoint is another track's published one (a corruption track's, or MiniLM's emb-seq track's)
            want = f"zoo:{get_track(doc['track']).checkpoints_from}/{doc['defense']}"
            row = next((ln for ln in lines if ln.split()[0] == want), None)
            assert row is not None and row.split()[1:3] == [doc["model"], doc["defense"]], f"{want} missing"
            continue
        want = f"zoo:{doc['track']}/{doc['defense']}"
        row = next((ln for ln in lines if ln.split()[0] == want), None)
        assert row is not None, f"{want} missing from zoo ls"
        assert row.split()[1:5] == [doc["model"], doc["defense"], f"{m[head['clean']]:.3f}", f"{m[head['robust']]:.3f}"]


@pytest.fixture
def apgd_ce_suite(monkeypatch):
    """The official suite's first attack alone (APGD-CE, 100 steps, CE loss: the same spec)."""
    monkeypatch.setitem(SUITES._items, "test-apgd-ce", STANDARD[:1])
    return "test-apgd-ce"


def _eval(tmp_path, *args):
    rc = main(["eval", "--track", MNIST, "--no-sweep", "--no-flags", "--quiet", "--results", str(tmp_path), *args])
    assert rc == 0
    return json.loads(next(tmp_path.rglob("*.json")).read_text())


def test_eval_model_zoo_reproduces_the_published_per_example_outcomes_on_a_prefix(tmp_path, apgd_ce_suite):
    """`xrobust eval --model zoo:<track>/pgd-at` on the first 10 examples of the fixed subset.

    Random starts are seeded per example (by its global index), so a prefix gives the same per-example
    outcomes as the full run, attack by attack. Under the cascade each attack sees only the examples the
    earlier ones missed, and the committed file keeps the cumulative outcome after every attack; the
    first attack (APGD-CE) sees every clean-correct example, so its column is comparable on its own.
    The whole standard suite takes about 10 minutes on these 10 examples on a shared CPU core (measured
    equal on all four columns), so it is the slow test below. Measured here: 2-3 s. What this catches: another
    model, subset, example order or budget (each measured to fail it); not the random-start seeds (these 10
    outcomes are the same with seeds 0..9 in place of the global indices).
    """
    doc = _eval(tmp_path, "--model", f"zoo:{MNIST}/pgd-at", "--n", "10", "--suite", apgd_ce_suite)
    pub = json.loads((PUBLISHED / "smallcnn__pgd-at.json").read_text())
    assert (doc["model"], doc["defense"]) == ("smallcnn", "pgd-at")
    assert doc["provenance"]["checkpoint_sha256"] == pub["provenance"]["checkpoint_sha256"]
    assert doc["suite"] == pub["suite"][:1]
    assert doc["per_example"]["clean"] == pub["per_example"]["clean"][:10]
    assert doc["per_example"]["attacks"]["apgd-ce"] == pub["per_example"]["attacks"]["apgd-ce"][:10]
    assert "0" in doc["per_example"]["attacks"]["apgd-ce"]  # the prefix holds a broken example (measured: 3)


@pytest.mark.slow
def test_eval_model_zoo_reproduces_the_published_robust_accuracy_exactly(tmp_path):
    """The full evaluation (AutoAttack standard, cascade, all 500 images) of a published checkpoint gives the
    published file's robust accuracy and every example's outcome. FGSM-RS (robust 5.0%) keeps it to minutes:
    the same command on PGD-AT (67.0%) takes about 20 minutes on one core, its prefix is checked above.

    Without the eps sweep: the sweep can only count more examples as broken at the headline eps, and the
    committed file says (in its notes) when it did, so this file must have no such note.
    """
    pub = json.loads((PUBLISHED / "smallcnn__fgsm-rs.json").read_text())
    assert not any("smaller eps" in n for n in pub["notes"])
    doc = _eval(tmp_path, "--model", f"zoo:{MNIST}/fgsm-rs")
    assert doc["metrics"]["robust_accuracy"] == pub["metrics"]["robust_accuracy"] == 0.05
    assert doc["per_example"] == pub["per_example"]


def test_eval_batch_size_is_passed_through_and_does_not_change_results(tmp_path, apgd_ce_suite, monkeypatch):
    """`--batch-size` only bounds memory: outcomes are seeded per example. The Free-AT checkpoint (40% robust)
    gives mixed outcomes on these 8 examples (APGD-CE breaks 2, as in the published file, which used
    batches of 250), so a batch-dependent seed or a mixed-up example would show."""
    import bench.pipeline

    seen = []
    real = bench.pipeline.evaluate
    monkeypatch.setattr(bench.pipeline, "evaluate", lambda *a, **k: seen.append(k["batch_size"]) or real(*a, **k))
    docs = [_eval(tmp_path / bs, "--model", f"zoo:{MNIST}/free", "--n", "8", "--suite", apgd_ce_suite,
                  "--batch-size", bs) for bs in ("3", "8")]
    assert seen == [3, 8]
    assert docs[0]["per_example"] == docs[1]["per_example"] and docs[0]["metrics"] == docs[1]["metrics"]
    assert 0 < docs[0]["metrics"]["robust_accuracy"] < docs[0]["metrics"]["clean_accuracy"]
    pub = json.loads((PUBLISHED / "smallcnn__free.json").read_text())
    assert docs[0]["per_example"]["attacks"]["apgd-ce"] == pub["per_example"]["attacks"]["apgd-ce"][:8]


def test_a_model_that_does_not_fit_the_track_exits_2_before_any_attack(tmp_path, tiny_hf, capsys, monkeypatch):
    import bench.pipeline
    import torchvision

    monkeypatch.setattr(bench.pipeline, "evaluate", lambda *a, **k: pytest.fail("an attack ran"))
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), weights)
    cases = [  # (model, track, what the one line must say)
        (f"torchvision:resnet18@{weights}", MNIST, "in_channels 3 (the track: 1)"),  # a 3-channel ImageNet net
        (f"hf:{tiny_hf('text', num_labels=2)}", MNIST, "domain text (the track: image)"),
        (f"hf:{tiny_hf('text', num_labels=10)}", "text-rt-emb-l2-0.05", "num_classes 10 (the track: 2)"),
        (f"hf:{tiny_hf('image', channels=1)}", "text-rt-emb-l2-0.05", "domain image (the track: text)"),
    ]
    capsys.readouterr()  # what building the models printed
    for spec, track, msg in cases:
        rc = main(["eval", "--model", spec, "--track", track, "--quiet", "--results", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip()
        assert rc == 2, err
        assert msg in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()
    assert main(["eval", "--model", f"zoo:{MNIST}/erm", "--track", MNIST, "--publish"]) == 2
