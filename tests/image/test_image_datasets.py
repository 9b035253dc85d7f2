"""Image loaders on fixture files the tests write in the real on-disk formats."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, dtype=np.uint8)
    data = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.fixture
def mnist_root(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    for prefix, n in (("train", 12), ("t10k", 6)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return tmp_path


def test_mnist_torchvision_layout(mnist_root):
    d = DATASETS.get("mnist")(split="test", root=str(mnist_root))
    assert d.inputs.shape == (6, 1, 28, 28) and d.inputs.dtype == torch.float32
    assert 0 <= d.inputs.min() and d.inputs.max() <= 1
    assert d.y.tolist() == [0, 1, 2, 3, 4, 5]


def test_missing_dataset_names_the_fetch_command(tmp_path):
    with pytest.raises(DataMissingError, match=r"run: xrobust data fetch mnist --root"):
        DATASETS.get("mnist")(split="train", root=str(tmp_path))
    with pytest.raises(DataMissingError, match=r"run: xrobust data fetch cifar10 --root"):
        DATASETS.get("cifar10")(split="train", root=str(tmp_path))


def test_cifar10_batches_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8), "labels": [1, 2, 3, 4]}
        (folder / name).write_bytes(pickle.dumps(batch))
    tr = DATASETS.get("cifar10")(split="train", root=str(tmp_path))
    te = DATASETS.get("cifar10")(split="test", root=str(tmp_path))
    assert tr.inputs.shape == (20, 3, 32, 32) and te.inputs.shape == (4, 3, 32, 32)
    assert te.y.tolist() == [1, 2, 3, 4]


def test_cifar10_refuses_executable_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}))
    with pytest.raises(UserError, match="refusing to unpickle builtins.print"):
        DATASETS.get("cifar10")(split="test", root=str(tmp_path))


def test_fashion_mnist_idx_gz_folder(tmp_path, monkeypatch):
    import domains.image.datasets as ds

    rng = np.random.default_rng(2)
    for prefix, n in (("train", 10), ("t10k", 5)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), gz=True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, gz=True)
    monkeypatch.setattr(ds, "DEBIAN_FASHION", tmp_path)
    monkeypatch.setenv("XROBUST_DATA", str(tmp_path / "empty"))
    d = DATASETS.get("fashion-mnist")(split="train")
    assert d.inputs.shape == (10, 1, 28, 28) and d.y.tolist() == list(range(10))


def test_truncated_idx_is_a_clear_error(tmp_path):
    from domains.image.datasets import _read_idx

    p = tmp_path / "x-idx3-ubyte"
    write_idx(p, np.zeros((3, 4, 4)))
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(UserError, match="truncated IDX"):
        _read_idx(p)


def test_mnist5k_is_the_real_subset():
    tr = DATASETS.get("mnist5k")(split="train")
    te = DATASETS.get("mnist5k")(split="test")
    assert len(tr) == 4000 and len(te) == 1000
    assert torch.bincount(te.y).tolist() == [100] * 10
    assert torch.bincount(tr.y).tolist() == [400] * 10
    assert tr.inputs.shape[1:] == (1, 28, 28) and float(tr.inputs.max()) == 1.0


def test_digits_split_is_stratified_and_disjoint():
    """Checked against scikit-learn's own array: every split image is traced back to its original index
    (the 1,797 images are pairwise distinct), so the two splits partition the dataset exactly, each
    label is the original one, and every class's test share is within 1 of 20%."""
    from sklearn.datasets import load_digits

    tr = DATASETS.get("digits")(split="train")
    te = DATASETS.get("digits")(split="test")
    d = load_digits()
    key = lambda img: np.asarray(img).round().astype(np.uint8).tobytes()  # noqa: E731  (values 0..16)
    where = {key(img): i for i, img in enumerate(d.images)}
    assert len(where) == 1797, "the raw images are no longer distinct: the tracing below needs them to be"
    orig = {name: [where[key(img[0] * 16)] for img in part.inputs.numpy()] for name, part in (("train", tr), ("test", te))}
    assert len(set(orig["train"])) == len(tr) and len(set(orig["test"])) == len(te)   # no repeats inside a split
    assert not set(orig["train"]) & set(orig["test"])                                # disjoint
    assert sorted(orig["train"] + orig["test"]) == list(range(1797))                  # nothing lost
    for name, part in (("train", tr), ("test", te)):
        assert part.y.tolist() == d.target[orig[name]].tolist(), f"{name} labels do not follow their images"
    per_class = np.bincount(d.target, minlength=10)
    test_counts = np.bincount(te.y.numpy(), minlength=10)
    assert (np.abs(test_counts - 0.2 * per_class) <= 1).all(), (test_counts, per_class)
    assert te.inputs.shape[1:] == (1, 8, 8) and tr.inputs.dtype == torch.float32
    again = DATASETS.get("digits")(split="test")
    assert torch.equal(again.inputs, te.inputs) and torch.equal(again.y, te.y)       # fixed (seed 0)
