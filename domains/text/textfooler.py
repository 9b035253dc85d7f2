"""``textfooler``: TextFooler (Jin et al. 2020, "Is BERT Really Robust? A Strong Baseline for Natural Language
Attack on Text Classification and Entailment", AAAI, Algorithm 1), under the shared constraints.

1. Word importance by deletion (eq. 2): ``I_i = P_y(x) - P_y(x without w_i)``, plus
   ``P_yhat(x without w_i) - P_yhat(x)`` when deleting the word already changes the label to ``yhat``.
   Only words that have a substitute are scored (the others could not move; their scores would not change
   the order of the rest).
2. In decreasing importance, the candidates of a word are its up to ``k = 50`` nearest neighbours at cosine
   >= ``min_cos = 0.5`` in a counter-fitted word space (:mod:`domains.text.counterfit`: MiniLM's whole-word
   input embeddings counter-fitted with WordNet pairs, standing in for the counter-fitted GloVe vectors
   of Mrksic et al. 2016, which are not available offline), that keep
   * the part of speech (sec. 3.2: same tag, or noun <-> verb, as TextFooler's code and TextAttack's
     ``allow_verb_noun_swap``): the word's most frequent WordNet part of speech
     (:func:`domains.text.pwws.dominant_pos`) stands in for a tagger in context, whose NLTK model is not
     available offline; two words unknown to WordNet count as the same part of speech;
   * the shared constraint set (:mod:`domains.text.constraints`): protected words are never replaced,
     a substitute is not a stop word or negation, nor an antonym or a General Inquirer polarity flip;
   * sentence similarity (sec. 3.2): the angular similarity ``1 - arccos(cos)/pi`` of MiniLM sentence
     embeddings (standing in for the Universal Sentence Encoder) of a ``window = 15``-word window around
     the word, the candidate text against the *previous* text, is at least ``min_sim = 0.840845057``
     (TextFooler's epsilon = 0.5 rad with the division by pi its code omits, as TextAttack's recipe
     corrects it); skipped when the text has fewer than 15 words (as the paper's code and TextAttack do).
3. If candidates flip the label, the one with the highest similarity wins and the attack stops; otherwise
   the candidate with the lowest true-class probability replaces the word if it lowers it, and the next word
   is tried, until ``ceil(max_frac x words)`` words are changed (the shared budget; TextFooler has none).

Deterministic: ties go to the earlier word and the nearer neighbour. The victim is queried before the
similarity check, which gives the same outcome as checking first (as the paper's code does) and counts
those queries.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch

from bench.errors import UserError
from bench.registry import ATTACKS
from domains.text import constraints as C
from domains.text.search import TextAttackBase

#: TextFooler's epsilon (0.5 rad) as an angular similarity, 1 - 0.5 / pi (TextAttack's textfooler recipe)
MIN_SIM = 0.840845057
WINDOW = 15


@functools.lru_cache(maxsize=200_000)
def pos_of(word: str) -> str | None:
    """The word's most frequent WordNet part of speech (n, v, a, r), None when WordNet does not know it."""
    from domains.text.pwws import dominant_pos
    from domains.text.wordnet import wordnet

    w = word.lower()
    return dominant_pos(w, wordnet().synsets(w))


def same_pos(a: str | None, b: str | None) -> bool:
    return a == b or {a, b} == {"n", "v"}


def window(n_words: int, at: int, size: int = WINDOW) -> tuple[int, int]:
    """Word indices ``[lo, hi)`` of the ``size``-word window around word ``at`` (TextFooler's: centred, shifted
    to fit inside the text, the whole text when it is shorter)."""
    half = (size - 1) // 2
    if n_words <= size:
        return 0, n_words
    lo = min(max(0, at - half), n_words - size)
    return lo, lo + size


def angular(cos: torch.Tensor) -> torch.Tensor:
    """Angular similarity ``1 - arccos(cos) / pi`` (1 for the same direction, 0 for opposite ones)."""
    return 1.0 - torch.arccos(cos.clamp(-1.0, 1.0)) / math.pi


@ATTACKS.register("textfooler")
class TextFooler(TextAttackBase):
    """TextFooler (Jin et al. 2020) in a counter-fitted MiniLM word space, with the shared constraint set.

    Args:
        max_frac: at most ``ceil(max_frac x words)`` words change (never 0).
        k: neighbours per word (TextFooler's N = 50).
        min_cos: least cosine between a word and a substitute in the counter-fitted space (delta = 0.5).
        min_sim: least angular sentence similarity of a window to the previous text's (1 - 0.5/pi).
        window: words in the similarity window; texts shorter than this skip the check.
        space: the word space (default: :func:`domains.text.counterfit.counterfitted_space`).
        similarity: ``texts -> unit sentence embeddings`` (default MiniLM, mean pooling).
        measure_similarity: report the mean sentence similarity of successes to their originals.
        seed: accepted for the suite interface; the attack is deterministic.
    """

    name = "textfooler"

    def __init__(self, max_frac: float = 0.2, k: int = 50, min_cos: float = 0.5, min_sim: float = MIN_SIM,
                 window: int = WINDOW, space=None, similarity: Callable[[Sequence[str]], torch.Tensor] | None = None,
                 measure_similarity: bool = True, seed: int = 0) -> None:
        self.max_frac = C.check_frac("textfooler", max_frac)
        if int(k) < 1 or not -1 <= min_cos <= 1 or not 0 <= min_sim <= 1 or int(window) < 1:
            raise UserError(f"textfooler needs k >= 1, min_cos in [-1, 1], min_sim in [0, 1] and window >= 1; got "
                            f"k={k}, min_cos={min_cos}, min_sim={min_sim}, window={window}")
        self.k, self.min_cos, self.min_sim, self.window = int(k), float(min_cos), float(min_sim), int(window)
        self._space = space
        super().__init__(similarity, measure_similarity)

    def reset(self) -> None:
        super().reset()
        self.window_checked = self.window_rejected = 0

    @property
    def space(self):
        if self._space is None:
            from domains.text.counterfit import counterfitted_space

            self._space = counterfitted_space()
        return self._space

    @property
    def params(self) -> dict:
        return {"max_frac": self.max_frac, "budget": "ceil(max_frac x words), at least 1", "k": self.k,
                "min_cos": self.min_cos, "min_sim": self.min_sim, "window": self.window,
                "word_space": "all-MiniLM-L6-v2 whole-word input embeddings counter-fitted with WordNet 3.0",
                "constraints": "stop words, negations, antonyms, GI polarity, WordNet POS"}

    def stats(self) -> dict[str, float]:
        """As :meth:`TextAttackBase.stats`, plus ``window_rejected``: the share of the window checks a
        candidate failed."""
        out = super().stats()
        if self.window_checked:
            out["window_rejected"] = self.window_rejected / self.window_checked
        return out

    # ------------------------------------------------------------------ candidates
    def _candidates(self, word: str) -> tuple[str, ...]:
        w = word.lower()
        if C.is_protected(w):
            return ()
        pw = pos_of(w)
        return tuple(c for c, _ in self.space.neighbours(w, self.k, self.min_cos)
                     if not C.is_protected(c) and C.blocked_swap(w, c) is None and same_pos(pw, pos_of(c)))

    def candidates(self, word: str) -> list[str]:
        """Substitutes of ``word``, nearest first, in its case."""
        return [C.match_case(c, word) for c in self._candidates(word)]

    def swap_ok(self, old: str, new: str) -> str | None:
        if new.lower() in self._candidates(old):
            return None
        return (f"not one of its {self.k} nearest neighbours at cosine >= {self.min_cos} in the counter-fitted "
                "space with its part of speech")

    # ------------------------------------------------------------------ sentence similarity
    def window_similarity(self, prev: list[str], texts: Sequence[list[str]], at: int) -> torch.Tensor:
        """Angular similarity of each of ``texts`` (piece lists) to ``prev`` over the window around the word
        at piece index ``at``."""
        word_at = [i for i, p in enumerate(prev) if C.is_word(p)]
        lo, hi = window(len(word_at), word_at.index(at), self.window)
        a, b = word_at[lo], word_at[hi - 1] + 1
        e = self.similarity(["".join(prev[a:b])] + ["".join(t[a:b]) for t in texts]).float()
        return angular(e[1:] @ e[0])

    # ------------------------------------------------------------------ the search
    def importance(self, model, cur: list[str], positions: Sequence[int], y: int, p: torch.Tensor) -> torch.Tensor:
        """Deletion importance (Jin et al. eq. 2) of the words at ``positions``."""
        pd = self.probs(model, ["".join(cur[:i] + cur[i + 1:]) for i in positions])
        score = p[y] - pd[:, y]
        yhat = pd.argmax(1)
        changed = yhat != y
        return score + torch.where(changed, pd.gather(1, yhat[:, None])[:, 0] - p[yhat], torch.zeros_like(score))

    def attack_text(self, model, text: str, y: int) -> tuple[str, bool]:
        start = self.begin(model, text, y)
        if start is None:
            return text, True
        cur, word_at, budget, p = start
        p_y = float(p[y])
        check_window = len(word_at) >= self.window
        movable = [(i, cands) for i, cands in ((i, self.candidates(cur[i])) for i in word_at) if cands]
        if not movable:
            return text, False
        imp = self.importance(model, cur, [i for i, _ in movable], y, p)
        order = sorted(range(len(movable)), key=lambda k: (-float(imp[k]), k))
        changed = 0
        for k in order:
            if changed >= budget:
                break
            i, cands = movable[k]
            trials = [cur[:i] + [c] + cur[i + 1:] for c in cands]
            pr = self.probs(model, ["".join(t) for t in trials])
            flips = (pr.argmax(1) != y).tolist()
            eligible = [t for t in range(len(cands)) if flips[t] or float(pr[t, y]) < p_y]
            if not eligible:
                continue
            if check_window:
                sims = self.window_similarity(cur, [trials[t] for t in eligible], i).tolist()
                self.window_checked += len(eligible)
                ok = [(t, s) for t, s in zip(eligible, sims) if s >= self.min_sim]
                self.window_rejected += len(eligible) - len(ok)
            else:
                ok = [(t, None) for t in eligible]
            won = [t for t, _ in ok if flips[t]]
            if won:
                if len(won) > 1:  # the most similar of the winners (the whole text when no window applies)
                    sims = dict(ok) if check_window else \
                        dict(zip(won, self.window_similarity(cur, [trials[t] for t in won], i).tolist()))
                    won = [max(won, key=lambda t: (sims[t], -t))]
                return "".join(trials[won[0]]), True
            if not ok:
                continue
            t = min((t for t, _ in ok), key=lambda t: (float(pr[t, y]), t))
            cur, p_y, changed = trials[t], float(pr[t, y]), changed + 1
        return "".join(cur), False
