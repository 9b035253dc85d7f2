"""Characters <-> ids for CTC, greedy CTC decoding, word and character error rates."""

from __future__ import annotations

from typing import Sequence

import torch

BLANK = 0
#: id 0 is the CTC blank; then space, apostrophe and a-z
ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz"
NUM_TOKENS = 1 + len(ALPHABET)
_CHAR_ID = {c: i + 1 for i, c in enumerate(ALPHABET)}


def encode_text(text: str) -> list[int]:
    ids = []
    for c in " ".join(text.lower().split()):
        if c not in _CHAR_ID:
            raise ValueError(f"character {c!r} is not in the CTC alphabet")
        ids.append(_CHAR_ID[c])
    return ids


def decode_ids(ids: Sequence[int]) -> str:
    return "".join(ALPHABET[i - 1] for i in ids if 0 < i <= len(ALPHABET))


def encode_batch(texts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Transcripts -> ``{"targets": (N, T) padded with blank, "target_lengths": (N,)}``."""
    seqs = [encode_text(t) for t in texts]
    width = max(1, max((len(s) for s in seqs), default=1))
    targets = torch.zeros(len(seqs), width, dtype=torch.int64)
    for i, s in enumerate(seqs):
        targets[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
    return {"targets": targets, "target_lengths": torch.tensor([len(s) for s in seqs], dtype=torch.int64)}


def targets_to_texts(y: dict[str, torch.Tensor]) -> list[str]:
    t, n = y["targets"].cpu(), y["target_lengths"].cpu()
    return [decode_ids(t[i, : int(n[i])].tolist()) for i in range(len(n))]


def greedy_decode(log_probs: torch.Tensor) -> list[str]:
    """Best path (Graves et al. 2006): argmax per frame, merge repeats, drop blanks. ``(B, T, C)``."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for row in best.tolist():
        ids, prev = [], None
        for t in row:
            if t != prev and t != BLANK:
                ids.append(t)
            prev = t
        out.append(" ".join(decode_ids(ids).split()))
    return out


def word_edits(reference: str, hypothesis: str) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    return edit_distance(reference.split(), hypothesis.split())


def char_edits(reference: str, hypothesis: str) -> int:
    """Levenshtein distance over the characters of the space-normalised transcripts, spaces included
    (the numerator of the character error rate)."""
    return edit_distance(" ".join(reference.split()), " ".join(hypothesis.split()))


def ref_chars(reference: str) -> int:
    """Characters of the space-normalised reference, spaces included (the CER's denominator)."""
    return len(" ".join(reference.split()))


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance between two sequences (unit costs)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate: total word edits / total reference words (can exceed 1)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    words = sum(len(r.split()) for r in references)
    if words == 0:
        raise ValueError("WER is undefined with no reference words")
    return sum(word_edits(r, h) for r, h in zip(references, hypotheses)) / words
