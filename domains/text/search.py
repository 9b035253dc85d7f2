"""What every discrete text attack shares besides the constraints: victim queries, word saliency,
``run_inputs`` for :mod:`bench.evaluate`, statistics, and saved-example records.

An attack built on :class:`TextAttackBase` implements ``attack_text(model, text, y) -> (adversarial text,
success)`` within :mod:`domains.text.constraints` and ``swap_ok(old, new)`` (its own test of one saved
swap); this class counts queries, runs it over a batch and re-checks saved examples.
"""

from __future__ import annotations

import statistics
from typing import Callable, Sequence

import torch

from bench.errors import UserError
from domains.text import constraints as C


def unk_token(model) -> str:
    """The victim's unknown-word token as text (a BERT tokenizer maps "[UNK]" to its id)."""
    tok = getattr(model, "tokenizer", None)
    return str(getattr(tok, "unk_token", None) or "[UNK]")


class TextAttackBase:
    """Shared machinery; subclasses set ``name`` and implement ``attack_text`` and ``swap_ok``."""

    name = "text-attack"
    discrete = True
    whitebox = False
    max_frac = 0.2

    def __init__(self, similarity: Callable[[Sequence[str]], torch.Tensor] | None = None,
                 measure_similarity: bool = True) -> None:
        self._similarity = similarity
        self.measure_similarity = bool(measure_similarity)
        self.reset()

    def reset(self) -> None:
        self.n_attacked = self.n_success = self.total_queries = 0
        self.changed_fracs: list[float] = []
        self.similarities: list[float] = []
        self.char_edits: list[int] = []
        #: (original, adversarial) -> their sentence similarity, for the records of kept examples (describe)
        self.pair_similarity: dict[tuple[str, str], float] = {}

    # ------------------------------------------------------------------ victim
    def begin(self, model, text: str, y: int):
        """The start every search shares: ``(pieces, word positions, budget, class probabilities)`` of the clean text, or
        None when the model already gets it wrong (then there is nothing to attack; one query spent)."""
        cur = C.pieces(text)
        word_at = [i for i, p in enumerate(cur) if C.is_word(p)]
        p = self.probs(model, [text])[0]
        if int(p.argmax()) != y:
            return None
        return cur, word_at, C.word_budget(len(word_at), self.max_frac), p

    def probs(self, model, texts: Sequence[str]) -> torch.Tensor:
        """Class probabilities of ``texts``; every text counts as one query."""
        self.total_queries += len(texts)
        return torch.softmax(model.classify_texts(list(texts)).float(), dim=1)

    def saliency(self, model, cur: list[str], positions: Sequence[int], y: int, p_y: float) -> torch.Tensor:
        """Word saliency (Li et al. 2016; PWWS eq. 4; DeepWordBug's Replace-1 score): the drop of the true
        class probability when the word at each of ``positions`` becomes the unknown token."""
        unk = unk_token(model)
        texts = ["".join(cur[:i] + [unk] + cur[i + 1:]) for i in positions]
        return p_y - self.probs(model, texts)[:, y]

    @property
    def similarity(self):
        if self._similarity is None:
            from domains.text.wordsub import minilm_sentence_encoder

            self._similarity = minilm_sentence_encoder()
        return self._similarity

    # ------------------------------------------------------------------ statistics
    def stats(self) -> dict[str, float]:
        """attack_success_rate: flipped / attacked; words_changed (+ _median): fraction of the words changed
        on successful attacks (TextAttack's "average perturbed word %"); queries: victim calls per attacked
        example (the clean one included); sentence_similarity: mean MiniLM cosine of successful adversarial
        texts to their originals (when measured); chars_changed: mean character edits of successes (when the
        attack edits characters)."""
        n = max(1, self.n_attacked)
        out = {"attack_success_rate": self.n_success / n, "queries": self.total_queries / n,
               "words_changed": statistics.fmean(self.changed_fracs) if self.changed_fracs else 0.0,
               "words_changed_median": statistics.median(self.changed_fracs) if self.changed_fracs else 0.0}
        if self.similarities:
            out["sentence_similarity"] = statistics.fmean(self.similarities)
        if self.char_edits:
            out["chars_changed"] = statistics.fmean(self.char_edits)
        return out

    def _record(self, original: str, adversarial: str, success: bool) -> None:
        self.n_attacked += 1
        swaps = C.align(original, adversarial)
        if not success or not isinstance(swaps, list) or not swaps:
            return
        self.n_success += 1
        self.changed_fracs.append(len(swaps) / max(1, len(C.words(original))))
        if hasattr(self, "edit_distance"):
            self.char_edits.append(sum(self.edit_distance(u, v) for _, u, v in swaps))
        if self.measure_similarity:
            e = self.similarity([original, adversarial]).float()
            self.similarities.append(float(e[0] @ e[1]))
            self.pair_similarity[(original, adversarial)] = self.similarities[-1]

    # ------------------------------------------------------------------ bench.evaluate
    def attack_text(self, model, text: str, y: int) -> tuple[str, bool]:
        raise NotImplementedError

    def run_inputs(self, model, inputs, y):
        """Attack every example; returns the model's tokenized adversarial texts."""
        if not hasattr(model, "classify_texts") or "text" not in inputs:
            raise UserError(f"{self.name} needs a text model (classify_texts) and inputs holding the raw 'text'")
        was_training = model.training
        model.eval()
        try:
            out = []
            for text, label in zip(inputs["text"], y.tolist()):
                adv, success = self.attack_text(model, text, int(label))
                self._record(text, adv, success)
                out.append(adv)
        finally:
            model.train(was_training)
        return model.tokenize(out)

    # ------------------------------------------------------------------ saved examples (bench.adversarial)
    def describe(self, x_clean, x_adv) -> list[dict]:
        """JSON records of adversarial texts: original, adversarial, words changed (of how many), and the
        sentence similarity of the two when the attack measured it."""
        out = C.describe_pairs(x_clean["text"], x_adv["text"])
        for rec in out:
            sim = self.pair_similarity.get((rec["original"], rec["adversarial"]))
            if sim is not None:
                rec["sentence_similarity"] = sim
        return out

    def word_budget(self, text: str) -> int:
        """Words this attack may change in ``text``: ``ceil(max_frac x words)``, at least 1."""
        return C.word_budget(len(C.words(text)), self.max_frac)

    def restore(self, model, records: Sequence[dict]):
        """The model's inputs for saved records: the adversarial texts, tokenized again."""
        return model.tokenize([str(r["adversarial"]) for r in records])

    def swap_ok(self, old: str, new: str) -> str | None:
        raise NotImplementedError

    def violations(self, x_clean, records: Sequence[dict]) -> list[str | None]:
        """Why each record breaks the constraints (None where it keeps them), against the data set's own
        texts ``x_clean["text"]``: see :func:`domains.text.constraints.check_record` and ``swap_ok``."""
        return [C.check_record(orig, dict(rec), self.max_frac, self.swap_ok)
                for orig, rec in zip(x_clean["text"], records)]
