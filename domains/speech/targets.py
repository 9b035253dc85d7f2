"""Target rules of the speech tracks' targeted evaluations (:mod:`bench.targeted`).

* ``speech/other-digits`` (connected digits): every word of the reference becomes a *different*
  digit word, drawn uniformly from the other nine digit values ("oh" counts as zero; targets
  use "zero"), so the target has the reference's length and differs from it in every word --
  the clean transcript is at WER 1 against it.
* ``speech/other-keyword`` (keyword spotting): a keyword other than the true class, uniform over
  the remaining keywords (any keyword for ``unknown`` / ``silence`` clips).

Each example's draw depends only on ``(seed, rule, example index)`` (:func:`bench.rng.derive_seed`).
"""

from __future__ import annotations

import random

import torch

from bench.errors import UserError
from bench.registry import TARGET_RULES
from bench.rng import derive_seed
from domains.speech.synthdata import DIGIT_WORDS, KEYWORDS
from domains.speech.text import encode_batch, targets_to_texts

_VALUE = {w: i for i, w in enumerate(DIGIT_WORDS)} | {"oh": 0}


@TARGET_RULES.register("speech/other-digits")
def other_digits(y: dict, meta: dict, index: torch.Tensor, seed: int):
    out = []
    for text, i in zip(targets_to_texts(y), index.tolist()):
        rng = random.Random(derive_seed("target", "speech/other-digits", seed, int(i)))
        words = []
        for w in text.split():
            if w not in _VALUE:
                raise UserError(f"speech/other-digits needs digit transcripts, got the word {w!r}")
            words.append(DIGIT_WORDS[rng.choice([v for v in range(10) if v != _VALUE[w]])])
        out.append(" ".join(words))
    return encode_batch(out), out


@TARGET_RULES.register("speech/other-keyword")
def other_keyword(y: torch.Tensor, meta: dict, index: torch.Tensor, seed: int):
    k = int(meta.get("num_keywords") or len(KEYWORDS))
    names = list(meta.get("classes") or KEYWORDS)
    if k < 2:
        raise UserError("speech/other-keyword needs at least 2 keyword classes")
    labels = []
    for label, i in zip(y.tolist(), index.tolist()):
        rng = random.Random(derive_seed("target", "speech/other-keyword", seed, int(i)))
        labels.append(rng.choice([c for c in range(k) if c != int(label)]))
    return torch.tensor(labels, dtype=torch.int64), [names[c] for c in labels]
