"""Inference-time text defense (bench.defenses): a word-recognition front end in front of the classifier.

Pruthi, Dhingra & Lipton (ACL 2019, "Combating adversarial misspellings with robust word recognition")
put a word recogniser before the classifier that maps a misspelt word back to a vocabulary word, with
back-off strategies for words it cannot recognise. Their recogniser is a trained semi-character RNN;
this one is the dictionary corrector built from the training vocabulary (Norvig 2007, "How to write a
spelling corrector"): a word that is not in the vocabulary of the track's training split is replaced by
the most frequent vocabulary word within one edit (delete, adjacent transposition, substitution,
insertion), keeping the first letter and the capitalisation; otherwise it is passed through (their
"pass-through" back-off). It acts on the raw strings (``stage="input"``): discrete attacks and
corruptions see it, attacks on the embeddings do not (it runs before tokenization).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

from bench.defenses import InputTransform, register_transform
from bench.registry import DATASETS
from domains.text.datasets import TextList

_WORD = re.compile(r"[A-Za-z]+")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@lru_cache(maxsize=4)
def vocabulary(dataset: str, min_count: int) -> Counter:
    """Lower-cased word counts of ``dataset``'s training split (words seen at least ``min_count`` times)."""
    counts = Counter(w.lower() for t in DATASETS.get(dataset)("train").inputs for w in _WORD.findall(t))
    return Counter({w: c for w, c in counts.items() if c >= min_count})


def _edits1(w: str) -> set[str]:
    splits = [(w[:i], w[i:]) for i in range(len(w) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    transposes = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    inserts = {a + c + b for a, b in splits for c in _LETTERS}
    return deletes | transposes | replaces | inserts


def correct_word(word: str, vocab: Counter) -> str:
    """``word`` if known (or too short to correct safely), else the most frequent vocabulary word within one
    edit that starts with the same letter (ties: alphabetical), else ``word`` itself."""
    low = word.lower()
    if len(low) < 3 or low in vocab:
        return word
    cands = [c for c in _edits1(low) if c in vocab and c[0] == low[0]]
    if not cands:
        return word
    best = min(cands, key=lambda c: (-vocab[c], c))
    if word.isupper():
        return best.upper()
    return best.capitalize() if word[0].isupper() else best


def _spell(texts, params, gen):
    vocab = vocabulary(str(params["dataset"]), int(params["min_count"]))
    return TextList(_WORD.sub(lambda m: correct_word(m.group(), vocab), t) for t in texts)


register_transform(InputTransform(
    "spell", "text", _spell, {"dataset": "rotten-tomatoes", "min_count": 2}, differentiable=False, stage="input",
    description="word-recognition front end (Pruthi et al. 2019 style): one-edit dictionary correction from the "
                "training vocabulary, pass-through back-off"))
