"""``pwws``: Probability Weighted Word Saliency (Ren et al. 2019, "Generating Natural Language Adversarial
Examples through Probability Weighted Word Saliency", ACL), under the shared constraints.

1. Candidates of a word (Ren et al. sec. 3.1): its WordNet synonyms, i.e. the
   single-word lemmas of its synsets of one part of speech. The paper takes
   the word's part of speech in context from a tagger; NLTK's tagger model
   is not available offline here, so the word's most frequent WordNet part
   of speech (:func:`dominant_pos`, from SemCor sense counts) stands in:
   "dull" gets the adjective synonyms (boring, tedious, ...), not "benumb".
   Protected words (:mod:`domains.text.constraints`) get none, and
   candidates that are negations, antonyms or flip General Inquirer polarity
   are dropped.
2. For each word, the best substitute ``w*`` is the candidate with the
   largest drop ``dP* = P(y|x) - P(y|x with w*)`` (eq. 5), and its saliency
   ``S = P(y|x) - P(y|x with the word unknown)`` (eq. 4).
3. Words are ranked by ``softmax(S)_i x dP*_i`` (eq. 7) and replaced by
   their ``w*`` greedily in that order (Algorithm 1), each word at most once,
   until the label flips or ``ceil(max_frac x words)`` words are changed. A
   replacement that does not lower the true-class probability of the current
   text is skipped and costs no budget (Algorithm 1 would apply it anyway).

Deterministic: ties go to the earlier word and the alphabetically first candidate.
"""

from __future__ import annotations

import functools
import re

import torch

from bench.registry import ATTACKS
from domains.text import constraints as C
from domains.text.search import TextAttackBase

_LEMMA = re.compile(r"[a-z]+")


def _pos(synset) -> str:
    return "a" if synset.pos() == "s" else synset.pos()  # adjective satellites are adjectives


def dominant_pos(word: str, synsets) -> str | None:
    """The word's most frequent WordNet part of speech: the largest sum of its senses' tagged counts
    (SemCor, WordNet's cntlist); without counts, that of its first sense (WordNet lists the most
    frequent first). Stands in for a part-of-speech tagger, which is not available offline."""
    if not synsets:
        return None
    counts: dict[str, int] = {}
    for syn in synsets:
        n = sum(lemma.count() for lemma in syn.lemmas() if lemma.name().lower() == word)
        counts[_pos(syn)] = counts.get(_pos(syn), 0) + n
    first = _pos(synsets[0])
    return max(counts, key=lambda p: (counts[p], p == first))


@functools.lru_cache(maxsize=100_000)
def wordnet_synonyms(word: str) -> tuple[str, ...]:
    """Single-word WordNet synonyms of ``word`` (lower case, sorted) that the shared constraints allow."""
    from domains.text.wordnet import wordnet

    w = word.lower()
    if C.is_protected(w):
        return ()
    synsets = wordnet().synsets(w)
    pos = dominant_pos(w, synsets)
    names = {lemma.name().lower() for syn in synsets if _pos(syn) == pos for lemma in syn.lemmas()}
    forms = C.base_forms(w)  # "films" -> "film" is an inflection, not a synonym
    keep = sorted(n for n in names if _LEMMA.fullmatch(n) and n not in forms and not C.is_protected(n))
    return tuple(n for n in keep if C.blocked_swap(w, n) is None)


@ATTACKS.register("pwws")
class PWWS(TextAttackBase):
    """PWWS (Ren et al. 2019) with WordNet synonyms, a word budget and the shared constraint set.

    Args:
        max_frac: at most ``ceil(max_frac x words)`` words change (never 0).
        similarity: ``texts -> unit sentence embeddings`` for the reported similarity (default MiniLM).
        measure_similarity: report the mean sentence similarity of successes (one MiniLM call each).
        seed: accepted for the suite interface; the attack is deterministic.
    """

    name = "pwws"

    def __init__(self, max_frac: float = 0.2, similarity=None, measure_similarity: bool = True,
                 seed: int = 0) -> None:
        self.max_frac = C.check_frac("pwws", max_frac)
        super().__init__(similarity, measure_similarity)

    @property
    def params(self) -> dict:
        return {"max_frac": self.max_frac, "budget": "ceil(max_frac x words), at least 1",
                "candidates": "wordnet-3.0 synonyms", "constraints": "stop words, negations, antonyms, GI polarity"}

    def candidates(self, word: str) -> list[str]:
        return [C.match_case(c, word) for c in wordnet_synonyms(word)]

    def swap_ok(self, old: str, new: str) -> str | None:
        return None if new.lower() in wordnet_synonyms(old) else "not one of its WordNet synonyms"

    def attack_text(self, model, text: str, y: int) -> tuple[str, bool]:
        start = self.begin(model, text, y)
        if start is None:
            return text, True
        cur, word_at, budget, p = start
        p_y = float(p[y])
        movable = [(i, self.candidates(cur[i])) for i in word_at]
        movable = [(i, cands) for i, cands in movable if cands]
        if not movable:
            return text, False
        sal = self.saliency(model, cur, [i for i, _ in movable], y, p_y)
        best, drop = [], []
        for i, cands in movable:
            pc = self.probs(model, ["".join(cur[:i] + [c] + cur[i + 1:]) for c in cands])[:, y]
            j = int(torch.argmin(pc))  # the first minimum: candidates are sorted
            best.append(cands[j])
            drop.append(p_y - float(pc[j]))
        score = torch.softmax(sal, 0) * torch.tensor(drop)
        order = sorted(range(len(movable)), key=lambda k: (-float(score[k]), k))
        changed = 0
        for k in order:
            if changed >= budget:
                break
            i = movable[k][0]
            trial = cur[:i] + [best[k]] + cur[i + 1:]
            pt = self.probs(model, ["".join(trial)])[0]
            if int(pt.argmax()) != y:
                return "".join(trial), True
            if float(pt[y]) < p_y:
                cur, p_y, changed = trial, float(pt[y]), changed + 1
        return "".join(cur), False
