"""word-sub: budget, stop words, determinism, a constant model, and the real offline resources."""

import re

import torch

from bench.registry import ATTACKS
from domains.text.wordsub import PIECES, WORD, stop_words


class KeywordModel(torch.nn.Module):
    """Predicts 1 ("fresh") when positive keywords outnumber negative ones; counts nothing else."""

    POS = {"great", "superb", "very"}

    def classify_texts(self, texts):
        score = torch.tensor([sum(w.lower() in self.POS for w in WORD.findall(t)) for t in texts], dtype=torch.float)
        return torch.stack([torch.zeros_like(score) + 0.5, score], dim=1)

    def tokenize(self, texts):
        return {"text": list(texts)}


SYN = {"great": ["fine", "great"], "superb": ["decent"], "very": ["rather"], "film": ["movie"], "plot": ["story"]}


def attack(**kw):
    return ATTACKS.get("word-sub")(synonyms=lambda w: SYN.get(w.lower(), []),
                                   similarity=lambda ts: torch.ones(len(ts), 4) / 2.0, **kw)


def changed_words(a, b):
    wa, wb = WORD.findall(a), WORD.findall(b)
    assert len(wa) == len(wb)
    return [(x, y) for x, y in zip(wa, wb) if x != y]


def test_flips_a_label_within_budget_and_counts_queries():
    att = attack()
    text = "A Great film with a plot that holds up over ten long years"  # 13 words: budget 2
    adv, n, ok = att.attack_text(KeywordModel(), text, 1)
    assert ok and n == 1 and changed_words(text, adv) == [("Great", "Fine")]  # case kept
    assert int(KeywordModel().classify_texts([adv]).argmax()) == 0
    # queries: the clean text, 3 deletions (Great, film, plot have candidates), 1 candidate for Great
    assert att.total_queries == 1 + 3 + 1


def test_budget_of_twenty_percent_and_stop_words_are_respected():
    att = attack()
    text = "very great superb very great superb acting ok"  # 8 words -> at most 1 change
    assert "very" in stop_words()
    adv, n, ok = att.attack_text(KeywordModel(), text, 1)
    diff = changed_words(text, adv)
    assert not ok and n == len(diff) == 1 <= int(0.2 * 8)
    assert all(w.lower() != "very" for w, _ in diff)  # 'very' flips the model but is a stop word
    short = "great fun"  # 2 words: budget 0, nothing may change
    assert attack().attack_text(KeywordModel(), short, 1) == (short, 0, False)


def test_constant_model_keeps_every_label_and_the_text():
    class Constant(KeywordModel):
        def classify_texts(self, texts):
            return torch.tensor([[0.0, 3.0]]).repeat(len(texts), 1)

    att = attack()
    texts = ["A great film with a superb plot and great acting too", "Great great great great great"]
    out = att.run_inputs(Constant(), {"text": texts}, torch.tensor([1, 1]))
    assert out["text"] == texts
    assert att.stats()["attack_success_rate"] == 0.0 and att.stats()["queries"] > 1


def test_deterministic_and_stats():
    runs = []
    for _ in range(2):
        att = attack()
        out = att.run_inputs(KeywordModel(), {"text": ["A great film about an old plot and a lost dog"] * 2},
                             torch.tensor([1, 1]))
        runs.append((out["text"], att.stats()))
    assert runs[0] == runs[1]
    stats = runs[0][1]
    assert stats["attack_success_rate"] == 1.0 and abs(stats["words_changed"] - 1 / 11) < 1e-9


def test_real_offline_synonyms_and_sentence_similarity():
    from domains.text.wordsub import minilm_sentence_encoder, minilm_synonyms

    syn = minilm_synonyms(20, 0.5)
    cands = syn("funny")
    assert "hilarious" in cands and "funny" not in cands and len(cands) <= 20
    assert all(re.fullmatch(r"[a-z]{2,}", c) for c in cands)
    enc = minilm_sentence_encoder()
    e = enc(["a funny , touching film", "a hilarious , touching film", "the tax forms are due in april"])
    assert float(e[0] @ e[1]) > 0.8 > float(e[0] @ e[2])
    assert PIECES.findall("it's fine.") == ["it", "'", "s", " ", "fine", "."]
