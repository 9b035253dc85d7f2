import json
import pickle

import pytest
import torch

import bench
from bench.checkpoint import load_checkpoint, save_checkpoint
from bench.errors import UserError
from bench.results import problems, write_result


def test_checkpoint_roundtrip_predicts_the_same(tmp_path, digits_model, digits_data):
    _, test = digits_data
    path = save_checkpoint(tmp_path / "m.safetensors", digits_model, {"model": "smallcnn", "recipe": "erm"})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    loaded = bench.load_checkpoint(path)
    assert not loaded.training
    assert torch.equal(loaded(test.inputs[:16]), digits_model(test.inputs[:16]))
    assert json.loads(path.with_suffix(".json").read_text())["weights_sha256"] == bench.checkpoint.sha256_file(path)


def test_pickle_checkpoints_are_refused(tmp_path, digits_model):
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(UserError, match="no pickle"):
        load_checkpoint(evil)
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(pickle.dumps({"weights": 1}))
    fake.with_suffix(".json").write_text(json.dumps({"format": "xrobust-checkpoint/1", "model": "smallcnn",
                                                     "model_spec": {"image_size": 8}}))
    with pytest.raises(UserError, match="cannot read .* as safetensors"):
        load_checkpoint(fake)


def test_missing_or_malformed_config(tmp_path, digits_model):
    path = save_checkpoint(tmp_path / "m.safetensors", digits_model, {"model": "smallcnn"})
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(UserError, match="malformed checkpoint config"):
        load_checkpoint(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(UserError, match="checkpoint config not found"):
        load_checkpoint(path)


def _doc():
    return {
        "schema_version": 1, "track": "t", "domain": "image", "dataset": "digits",
        "threat": bench.ThreatModel("linf", 0.1).to_dict(), "model": "smallcnn", "defense": "erm",
        "n": 4, "seed": 0,
        "metrics": {"clean_accuracy": 0.75, "robust_accuracy": 0.25, "per_attack": {"pgd": 0.25}},
        "per_example": {"clean": "1101", "robust": "0100"},
        "cost": {"train_seconds": 1.0, "eval_seconds": 2.0},
        "provenance": {"xrobust_version": "0.1.0", "torch_version": "2.11", "device": "cpu",
                       "timestamp": "2026-11-25T10:00:00Z", "config_hash": "abc"},
    }


def test_valid_document_has_no_problems():
    assert problems(_doc()) == []


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: d["metrics"].update(robust_accuracy=0.9), "robust_accuracy 0.9 > clean_accuracy"),
    (lambda d: d["metrics"].update(clean_accuracy="0.75"), "is not of type 'number'"),
    (lambda d: d.update(n=0), "less than the minimum of 1"),
    (lambda d: d["metrics"]["per_attack"].update(pgd=0.1), "per_attack/pgd: 0.1 < robust_accuracy"),
    (lambda d: d.update(model="../../etc"), "does not match"),
])
def test_inconsistent_documents_are_caught(mutate, msg):
    d = _doc()
    mutate(d)
    assert any(msg in p for p in problems(d)), problems(d)


def test_write_result_refuses_invalid_and_leaves_nothing(tmp_path):
    d = _doc()
    d["metrics"]["robust_accuracy"] = 2.0
    with pytest.raises(UserError):
        write_result(d, root=tmp_path)
    assert list(tmp_path.rglob("*")) == []
    p = write_result(_doc(), root=tmp_path)
    assert p == tmp_path / "image" / "digits" / "linf-0.1" / "smallcnn__erm.json"
    assert json.loads(p.read_text())["metrics"]["robust_accuracy"] == 0.25
