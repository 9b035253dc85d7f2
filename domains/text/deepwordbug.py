"""``deepwordbug``: character edits on the most important words (Gao et al. 2018, "Black-box Generation of
Adversarial Text Sequences to Evade Deep Learning Classifiers", DeepWordBug), under the shared constraints.

1. Scoring (Gao et al. sec. 3.2, the Replace-1 score): a word's importance
   is the drop of the true-class probability when it becomes the unknown
   token. Protected words (:mod:`domains.text.constraints`) and one-letter
   words are never edited.
2. Transformer (sec. 3.3): in decreasing importance, each word gets one
   edit -- swap two adjacent letters, substitute a letter, delete a letter,
   insert a letter -- at a position (and letter) drawn from a generator
   seeded by ``seed`` and the text. All four edits are scored (TextAttack's
   composite of the four, one draw each) and the one with the lowest
   true-class probability is kept if it lowers it; an edited word that is a
   negation, an antonym or a polarity flip of the original is dropped.
3. Budgets: one edit per word (DeepWordBug's), at most ``ceil(max_frac x
   words)`` words, and at most ``max_edits`` characters of Levenshtein
   distance in total (TextAttack's DeepWordBug uses 30; a swap costs 2).
   Stops when the label flips.
"""

from __future__ import annotations

import random
import string
import zlib

from bench.errors import UserError
from bench.registry import ATTACKS
from domains.text import constraints as C
from domains.text.search import TextAttackBase

LETTERS = string.ascii_lowercase
OPS = ("swap", "substitute", "delete", "insert")


def levenshtein(a: str, b: str) -> int:
    """Insertions, deletions and substitutions turning ``a`` into ``b`` (Levenshtein 1966)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def one_edit(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with exactly one DeepWordBug edit (adjacent swap, substitution, deletion,
    insertion of a letter)."""
    if a == b or not b.isalpha():
        return False
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    return abs(len(a) - len(b)) == 1 and levenshtein(a, b) == 1


def edit(word: str, op: str, rng: random.Random) -> str:
    """``word`` with one edit of kind ``op`` at a random position."""
    n = len(word)
    if op == "swap":
        k = rng.randrange(n - 1)
        return word[:k] + word[k + 1] + word[k] + word[k + 2:]
    if op == "substitute":
        k = rng.randrange(n)
        c = rng.choice([x for x in LETTERS if x != word[k].lower()])
        return word[:k] + (c.upper() if word[k].isupper() else c) + word[k + 1:]
    if op == "delete":
        k = rng.randrange(n)
        return word[:k] + word[k + 1:]
    k = rng.randrange(n + 1)
    return word[:k] + rng.choice(LETTERS) + word[k:]


@ATTACKS.register("deepwordbug")
class DeepWordBug(TextAttackBase):
    """DeepWordBug (Gao et al. 2018) with the shared constraint set.

    Args:
        max_frac: at most ``ceil(max_frac x words)`` words are edited (never 0).
        max_edits: largest total Levenshtein distance over the edited words (characters).
        similarity, measure_similarity: as :class:`~domains.text.pwws.PWWS`.
        seed: seeds the edit positions and letters (with a hash of the text).
    """

    name = "deepwordbug"

    def __init__(self, max_frac: float = 0.2, max_edits: int = 30, similarity=None,
                 measure_similarity: bool = True, seed: int = 0) -> None:
        self.max_frac = C.check_frac("deepwordbug", max_frac)
        if int(max_edits) < 1:
            raise UserError(f"deepwordbug max_edits must be >= 1, got {max_edits}")
        self.max_edits, self.seed = int(max_edits), int(seed)
        super().__init__(similarity, measure_similarity)

    @property
    def params(self) -> dict:
        return {"max_frac": self.max_frac, "max_edits": self.max_edits, "edits_per_word": 1, "seed": self.seed}

    @staticmethod
    def edit_distance(a: str, b: str) -> int:
        return levenshtein(a, b)

    def swap_ok(self, old: str, new: str) -> str | None:
        if C.is_protected(new):
            return "the edited word is a stop word"
        return None if one_edit(old, new) else "not one character edit (swap, substitute, delete, insert)"

    def violations(self, x_clean, records):
        out = super().violations(x_clean, records)
        for k, (orig, rec) in enumerate(zip(x_clean["text"], records)):
            swaps = C.align(orig, str(rec.get("adversarial", "")))
            if out[k] is None and isinstance(swaps, list):
                total = sum(levenshtein(u, v) for _, u, v in swaps)
                if total > self.max_edits:
                    out[k] = f"edits {total} characters (at most {self.max_edits} allowed)"
        return out

    def attack_text(self, model, text: str, y: int) -> tuple[str, bool]:
        start = self.begin(model, text, y)
        if start is None:
            return text, True
        cur, word_at, budget, p = start
        p_y = float(p[y])
        movable = [i for i in word_at if len(cur[i]) >= 2 and not C.is_protected(cur[i])]
        if not movable:
            return text, False
        sal = self.saliency(model, cur, movable, y, p_y)
        order = sorted(range(len(movable)), key=lambda k: (-float(sal[k]), k))
        rng = random.Random(self.seed * 1_000_003 + zlib.crc32(text.encode("utf-8")))
        changed = edits = 0
        for k in order:
            if changed >= budget or edits >= self.max_edits:
                break
            i, word = movable[k], cur[movable[k]]
            cands = []
            for op in OPS:
                new = edit(word, op, rng)
                cost = levenshtein(word, new)
                if new != word and edits + cost <= self.max_edits and C.blocked_swap(word, new) is None \
                        and not C.is_protected(new) and new not in cands:
                    cands.append(new)
            if not cands:
                continue
            texts = ["".join(cur[:i] + [c] + cur[i + 1:]) for c in cands]
            pr = self.probs(model, texts)
            j = min(range(len(cands)), key=lambda t: (float(pr[t, y]), t))
            if int(pr[j].argmax()) != y:
                return texts[j], True
            if float(pr[j, y]) < p_y:
                cur, p_y = cur[:i] + [cands[j]] + cur[i + 1:], float(pr[j, y])
                changed, edits = changed + 1, edits + levenshtein(word, cands[j])
        return "".join(cur), False
