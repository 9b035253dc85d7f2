"""Common corruptions of text: the noise real text has, without any external resource.

Natural-noise studies (Belinkov & Bisk, ICLR 2018, "Synthetic and natural noise both break neural
machine translation"; Pruthi et al., ACL 2019, "Combating adversarial misspellings with robust word
recognition") use four character operations on words — swap two adjacent inner characters,
delete one, insert one, substitute a QWERTY keyboard neighbour — keeping the first and last
character; we add case and punctuation noise and contraction changes. Severity 1..5 is the share
of eligible sites touched, ``SHARE[s-1]`` (5%..40% of words for the typos). Every random choice
comes from the cell's generator, texts in order, so a cell is the same for every model.
"""

from __future__ import annotations

import re

import numpy as np

from bench.corruptions import Corruption, register_corruption
from domains.text.datasets import TextList

#: share of eligible sites (words, or contraction sites) changed at severities 1..5
SHARE = (0.05, 0.1, 0.2, 0.3, 0.4)

_WORD = re.compile(r"[A-Za-z]+")

#: QWERTY neighbours (same row and the rows above and below, touching keys)
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _neighbours() -> dict[str, str]:
    pos = {c: (r, i + 0.5 * r) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, x) in pos.items():
        out[c] = "".join(sorted(d for d, (r2, x2) in pos.items() if d != c and abs(r2 - r) <= 1 and abs(x2 - x) <= 1))
    return out


KEYBOARD = _neighbours()


def _words(text: str, min_len: int) -> list[re.Match]:
    return [m for m in _WORD.finditer(text) if len(m.group()) >= min_len]


def _pick(rng: np.random.Generator, n: int, share: float) -> list[int]:
    """``round(share * n)`` (at least one when n > 0) distinct sites, in text order."""
    if n == 0:
        return []
    k = max(1, int(round(share * n)))
    return sorted(rng.choice(n, size=min(k, n), replace=False).tolist())


def _typo(op, min_len: int):
    """A corruption that applies ``op(word, rng) -> word`` to a share of the words of each text that have
    at least ``min_len`` letters (so the first and last letter stay)."""

    def fn(texts, severity, rng, aux):
        out = []
        for t in texts:
            ws = _words(t, min_len)
            chosen = _pick(rng, len(ws), SHARE[severity - 1])
            pieces, last = [], 0
            for i in chosen:
                m = ws[i]
                pieces += [t[last:m.start()], op(m.group(), rng)]
                last = m.end()
            out.append("".join(pieces) + t[last:])
        return TextList(out)

    return fn


def _swap(w: str, rng) -> str:
    """Swap the inner pair (i, i+1), 1 <= i <= len - 3 (a word of >= 4 letters); a pair of equal letters is
    moved to the next different pair when there is one."""
    pairs = [i for i in range(1, len(w) - 2) if w[i] != w[i + 1]] or [1]
    i = pairs[int(rng.integers(len(pairs)))]
    return w[:i] + w[i + 1] + w[i] + w[i + 2:]


def _delete(w: str, rng) -> str:
    i = int(rng.integers(1, len(w) - 1))
    return w[:i] + w[i + 1:]


def _insert(w: str, rng) -> str:
    i = int(rng.integers(1, len(w)))
    c = "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(26))]
    return w[:i] + (c.upper() if w[i - 1].isupper() and w[i:i + 1].isupper() else c) + w[i:]


def _keyboard(w: str, rng) -> str:
    i = int(rng.integers(1, len(w) - 1))
    near = KEYBOARD[w[i].lower()]
    c = near[int(rng.integers(len(near)))]
    return w[:i] + (c.upper() if w[i].isupper() else c) + w[i + 1:]


def _case(texts, severity, rng, aux):
    """Case noise: a share of the words flipped to UPPER, lower or Title case (a different one)."""
    out = []
    for t in texts:
        ws = _words(t, 1)
        pieces, last = [], 0
        for i in _pick(rng, len(ws), SHARE[severity - 1]):
            m = ws[i]
            w = m.group()
            forms = [f for f in (w.upper(), w.lower(), w.title()) if f != w] or [w.swapcase()]
            pieces += [t[last:m.start()], forms[int(rng.integers(len(forms)))]]
            last = m.end()
        out.append("".join(pieces) + t[last:])
    return TextList(out)


_PUNCT = ",.;:!?-'\""


def _punctuation(texts, severity, rng, aux):
    """Punctuation noise: after a share of the words insert a random mark, and delete each existing mark
    with the same probability."""
    share = SHARE[severity - 1]
    out = []
    for t in texts:
        kept = "".join(c for c in t if not (c in _PUNCT and rng.random() < share))
        ws = _words(kept, 1)
        pieces, last = [], 0
        for i in _pick(rng, len(ws), share):
            m = ws[i]
            pieces += [kept[last:m.end()], _PUNCT[int(rng.integers(len(_PUNCT)))]]
            last = m.end()
        out.append("".join(pieces) + kept[last:])
    return TextList(out)


#: contraction <-> expansion (lower case; the first letter's case is carried over)
CONTRACTIONS = {
    "do not": "don't", "does not": "doesn't", "did not": "didn't", "is not": "isn't", "are not": "aren't",
    "was not": "wasn't", "were not": "weren't", "can not": "can't", "cannot": "can't", "could not": "couldn't",
    "would not": "wouldn't", "should not": "shouldn't", "will not": "won't", "has not": "hasn't",
    "have not": "haven't", "had not": "hadn't", "it is": "it's", "that is": "that's", "there is": "there's",
    "what is": "what's", "he is": "he's", "she is": "she's", "i am": "i'm", "you are": "you're",
    "we are": "we're", "they are": "they're", "i have": "i've", "you have": "you've", "we have": "we've",
    "they have": "they've", "i will": "i'll", "you will": "you'll", "it will": "it'll", "we will": "we'll",
    "they will": "they'll", "let us": "let's",
}
_EXPAND = {v: k for k, v in CONTRACTIONS.items() if k != "cannot"}
_SITES = re.compile(r"\b(" + "|".join(sorted((re.escape(k) for k in list(CONTRACTIONS) + list(_EXPAND)),
                                            key=len, reverse=True)) + r")\b", re.IGNORECASE)


def _same_case(src: str, new: str) -> str:
    return new[0].upper() + new[1:] if src[:1].isupper() else new


def _contractions(texts, severity, rng, aux):
    """Contract expanded forms and expand contractions ("do not" <-> "don't") at a share of the sites;
    meaning-preserving, and the negation stays (the fragments are never split)."""
    share = SHARE[severity - 1] * 2.5  # sites are rare: 12.5% .. 100%
    out = []
    for t in texts:
        def swap(m: re.Match) -> str:
            if rng.random() >= share:
                return m.group()
            low = m.group().lower()
            new = CONTRACTIONS.get(low) or _EXPAND.get(low)
            return _same_case(m.group(), new) if new else m.group()

        out.append(_SITES.sub(swap, t))
    return TextList(out)


for _name, _fn, _desc in (
    ("typo-swap", _typo(_swap, 4), "swap two adjacent inner letters of 5-40% of the words (Belinkov & Bisk 2018)"),
    ("typo-delete", _typo(_delete, 3), "delete one inner letter of 5-40% of the words"),
    ("typo-insert", _typo(_insert, 2), "insert a random letter inside 5-40% of the words"),
    ("typo-keyboard", _typo(_keyboard, 3), "replace one inner letter of 5-40% of the words by a QWERTY neighbour"),
    ("case", _case, "change the case of 5-40% of the words (UPPER, lower or Title)"),
    ("punctuation", _punctuation, "insert a mark after 5-40% of the words, delete marks with the same probability"),
    ("contractions", _contractions, "contract / expand 12.5-100% of the contraction sites (do not <-> don't)"),
):
    register_corruption(Corruption(_name, "text", _fn, description=_desc))
