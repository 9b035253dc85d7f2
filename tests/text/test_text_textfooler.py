"""textfooler's own parts: the counter-fitted word space (built for real on a vocabulary subset, and the
cached full space), the 15-word sentence-similarity window, and its check of saved records. The attack on a
real victim is in test_text_attacks.py."""

import pytest
import torch
from safetensors import safe_open

from bench.errors import DataMissingError, UserError
from bench.registry import ATTACKS
from domains.text import constraints as C
from domains.text import counterfit as K

torch.set_num_threads(1)
SUBSET_EXTRA = ("good", "bad", "happy", "sad", "love", "hate", "film", "movie", "boring", "dull")


def wordnet_or_skip():
    from domains.text.wordnet import wordnet

    try:
        return wordnet()
    except DataMissingError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def subset():
    """4,000 whole-word MiniLM rows (the first of 3+ letters, plus the pairs under test) and their vectors."""
    wordnet_or_skip()
    words, vectors = K.minilm_whole_words()
    keep = [w for w in words if len(w) >= 3][:4000]
    keep += [w for w in SUBSET_EXTRA if w not in keep]
    at = {w: i for i, w in enumerate(words)}
    return keep, vectors[[at[w] for w in keep]]


def test_counter_fitting_pushes_antonyms_apart_and_pulls_synonyms_together(subset, tmp_path, monkeypatch):
    """The real build (WordNet pairs + counter-fitting + cache) on 4,000 words. Measured: good/bad 0.535 ->
    -0.18, happy/sad 0.35 -> -0.14, film/movie 0.715 -> 0.96, boring/dull 0.50 -> 0.96; antonyms among the
    top-50 neighbours at cos >= 0.5: 2.8% -> 0.002%, neighbours per word 1.1 -> 10.5."""
    words, vectors = subset
    cfg = K.CounterFitConfig()
    monkeypatch.setattr(K, "minilm_whole_words", lambda: (words, vectors))
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path))
    K.counterfitted_space.cache_clear()
    try:
        fitted = K.counterfitted_space(cfg)
    finally:
        K.counterfitted_space.cache_clear()
    raw = K.WordSpace(words, vectors)
    assert raw.cos("good", "bad") > 0.5 and fitted.cos("good", "bad") < 0.0  # antonyms repelled
    assert raw.cos("happy", "sad") > 0.3 and fitted.cos("happy", "sad") < 0.0
    assert raw.cos("film", "movie") < 0.75 and fitted.cos("film", "movie") > 0.9  # synonyms attracted
    assert raw.cos("boring", "dull") < 0.55 and fitted.cos("boring", "dull") > 0.9
    assert "bad" in dict(raw.neighbours("good")) and "bad" not in dict(fitted.neighbours("good"))
    info = fitted.info
    assert info["vocabulary"] == len(words) and info["antonym_pairs"] > 1000 and info["synonym_pairs"] > 1000
    assert info["vsp_pairs"] > 0 and info["fit_seconds"] < 120
    _, ant = K.wordnet_pairs(words)
    pairs = [(words[a], words[b]) for a, b in ant]
    before, after = K.antonym_share(raw, pairs), K.antonym_share(fitted, pairs)
    assert before["antonym_share"] > 0.01 and after["antonym_share"] < 0.001
    assert after["mean_neighbours"] > 3 * before["mean_neighbours"]
    # cached as safetensors under a name keyed by the wheel, WordNet and the hyper-parameters; read back as is
    path = K.cache_path(cfg)
    assert path.parent == tmp_path / "counterfit" and path.suffix == ".safetensors" and path.exists()
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["wordnet_version"] == "3.0" and f.metadata()["words"].split("\n") == words
    assert torch.allclose(K.load(path).unit, fitted.unit, atol=1e-6)
    assert K.cache_path(K.CounterFitConfig(epochs=4)) != path
    assert K.CounterFitConfig().key("a" * 64, "3.0") != K.CounterFitConfig().key("b" * 64, "3.0")


def test_the_cached_full_space_is_counter_fitted():
    """The space textfooler uses (21,745 whole words; built once, about a CPU minute): antonyms apart,
    synonyms together; its build measured in the cache file."""
    wordnet_or_skip()
    space = K.counterfitted_space()
    assert len(space.words) > 20_000 and "##s" not in space and "[unused0]" not in space
    assert all(w.isalpha() and w.islower() for w in space.words)
    assert space.cos("good", "bad") < 0.0 and space.cos("love", "hate") < 0.2
    assert space.cos("film", "movie") > 0.9 and space.cos("funny", "amusing") > 0.8
    assert space.info["antonym_pairs"] > 15_000 and space.info["synonym_pairs"] > 10_000


# ------------------------------------------------------------------ the sentence-similarity window
def test_window_is_centred_and_shifted_inside_the_text():
    from domains.text.textfooler import window

    assert window(10, 3) == (0, 10)  # shorter than the window: the whole text
    assert window(30, 0) == (0, 15) and window(30, 20) == (13, 28) and window(30, 29) == (15, 30)
    assert window(15, 7) == (0, 15)


class StubSpace:
    """film -> movie (nearest), picture."""

    def neighbours(self, word, k, min_cos):
        return (("movie", 0.9), ("picture", 0.8)) if word.lower() == "film" else ()


class MovieVictim(torch.nn.Module):
    """Says 0 when "movie" is in the text; "picture" lowers the probability of 1 a little."""

    def classify_texts(self, texts):
        rows = []
        for t in texts:
            ws = {w.lower() for w in C.words(t)}
            rows.append([2.0, -2.0] if "movie" in ws else [0.1, 0.9] if "picture" in ws else [0.0, 1.0])
        return torch.tensor(rows)

    def tokenize(self, texts):
        return {"text": list(texts)}


def movie_is_far(texts):
    """A sentence encoder under which a window with "movie" is 72 degrees from one without it."""
    rows = [[1.0, 3.0 if "movie" in {w.lower() for w in C.words(t)} else 0.0] for t in texts]
    return torch.nn.functional.normalize(torch.tensor(rows), dim=1)


def test_window_check_rejects_a_dissimilar_flip_in_long_texts_and_is_skipped_in_short_ones():
    wordnet_or_skip()
    long = "The film was shown in a small town hall to a crowd of local people who stayed for every minute"
    short = "The film was shown in a small town hall"
    assert len(C.words(long)) >= 15 > len(C.words(short))
    att = ATTACKS.get("textfooler")(space=StubSpace(), similarity=movie_is_far, measure_similarity=False)
    adv, ok = att.attack_text(MovieVictim(), long, 1)
    assert not ok and adv == long.replace("film", "picture")  # the flip to "movie" failed the window check
    assert att.window_checked == 2 and att.window_rejected == 1
    att.reset()
    adv, ok = att.attack_text(MovieVictim(), short, 1)
    assert ok and adv == short.replace("film", "movie")  # under 15 words: no window check
    assert att.window_checked == 0 and att.window_rejected == 0
    # a permissive threshold lets the long text flip too
    lax = ATTACKS.get("textfooler")(space=StubSpace(), similarity=movie_is_far, min_sim=0.5, measure_similarity=False)
    assert lax.attack_text(MovieVictim(), long, 1) == (long.replace("film", "movie"), True)


# ------------------------------------------------------------------ saved records and parameters
def test_textfooler_checks_saved_records_and_its_parameters():
    wordnet_or_skip()
    att = ATTACKS.get("textfooler")(measure_similarity=False)
    assert att.discrete and att.params["k"] == 50 and att.params["min_sim"] == pytest.approx(0.840845057)
    orig = "A dull, tedious film that doesn't know what it wants to be about."
    assert "movie" in att.candidates("film") and "Movie" in att.candidates("Film")
    cases = {
        "A dull, tedious movie that doesn't know what it wants to be about.": None,
        "A dull, tedious cat that doesn't know what it wants to be about.": "nearest neighbours",
        "A bright, tedious film that doesn't know what it wants to be about.": "antonym",
        "A dull, tedious film that does know what it wants to be about.": "negation",
        "A boring, slow movie that doesn't know what it wishes to be about.": "changes 4 of 13",
    }
    for adv, why in cases.items():
        got = att.violations({"text": [orig]}, [{"original": orig, "adversarial": adv}])[0]
        assert (got is None) if why is None else (why in (got or "")), (adv, got)
    for bad in ({"max_frac": 0.0}, {"k": 0}, {"min_sim": 1.5}):
        with pytest.raises(UserError):
            ATTACKS.get("textfooler")(**bad)


class GoodNeighbours:
    """good -> bad (an antonym), not (a negation), decent."""

    def neighbours(self, word, k, min_cos):
        return (("bad", 0.9), ("not", 0.8), ("decent", 0.7)) if word.lower() == "good" else ()


class BadVictim(torch.nn.Module):
    """Says 0 ("rotten") when "not" or "bad" is in the text, else 1."""

    def classify_texts(self, texts):
        neg = torch.tensor([float(bool({"not", "bad"} & {w.lower() for w in C.words(t)})) for t in texts])
        return torch.stack([neg, 1 - neg], dim=1) * 4

    def tokenize(self, texts):
        return {"text": list(texts)}


def test_textfooler_refuses_neighbours_that_are_antonyms_or_negations():
    """Even when the word space offers them and they would flip the victim."""
    wordnet_or_skip()
    att = ATTACKS.get("textfooler")(max_frac=1.0, space=GoodNeighbours(), measure_similarity=False)
    assert att.candidates("good") == ["decent"]
    adv, ok = att.attack_text(BadVictim(), "A good film", 1)
    assert not ok and adv == "A good film"
