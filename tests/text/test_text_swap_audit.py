"""Issue 14's bar: a sample of 200 successful adversarial texts of the discrete text attacks (pwws, textfooler,
deepwordbug) has at most 2% texts with an antonym or negation swap.

The victim is the bag-of-words logistic regression of tests/text/text_victims.py, trained on 1,000 real Rotten
Tomatoes sentences (as tests/text/test_text_attacks.py does). The three attacks run on the test sentences the
victim gets right, in order, until they have 200 successes between them. Every word swap of those successes is
then audited *independently of the attacks' constraint code* (domains.text.constraints is not used at all):
the texts are aligned here (difflib over words), antonyms come straight from NLTK's WordNet reader, and the
negation words and fragments are listed below, so a bug in the attacks' own filters shows up as a failure.
"""

import difflib
import re
import time

import pytest
import torch

from bench.errors import DataMissingError
from bench.registry import ATTACKS, DATASETS
from text_victims import train_victim  # tests/text/text_victims.py (pytest puts tests/text on sys.path)

torch.set_num_threads(1)

ATTACK_NAMES = ("pwws", "textfooler", "deepwordbug")
#: successful adversarial texts to audit (issue 14), the largest share of them with a bad swap, and how many
#: test sentences may be attacked at most to get them (the victim gets about 2/3 right and each attack flips
#: about half to three quarters of those: ~160 sentences are needed)
N_SUCCESSES, MAX_BAD_SHARE, MAX_SENTENCES = 200, 0.02, 500

#: a word as a reader sees it: letters, joined by apostrophes ("doesn't", "n't", "film's" are one word each)
WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")
#: negation words (written here, independently of domains.text.constraints)
NEGATION_WORDS = frozenset("""
not no never nor none nobody nothing neither nowhere noone cannot without n't nt
""".split())
#: what splitting on apostrophes leaves of "doesn't", "isn't", "don't", ...: the stems and the lone "t"
NEGATION_FRAGMENTS = frozenset("""
ain aren couldn didn doesn don hadn hasn haven isn mightn mustn needn shan shouldn wasn weren won wouldn t
""".split())


def norm(word: str) -> str:
    return word.lower().replace("\u2019", "'")


def is_negation(word: str) -> bool:
    w = norm(word)
    return w in NEGATION_WORDS or w in NEGATION_FRAGMENTS or w.endswith("n't")


def word_swaps(original: str, adversarial: str) -> list[tuple[str, str]]:
    """(old, new) word pairs turning ``original`` into ``adversarial``: difflib over the two word lists; words
    put in or taken out pair with "" (a replaced block of unequal length is paired in order)."""
    a, b = WORD.findall(original), WORD.findall(adversarial)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        olds, news = a[i1:i2], b[j1:j2]
        n = max(len(olds), len(news))
        olds, news = olds + [""] * (n - len(olds)), news + [""] * (n - len(news))
        out.extend(zip(olds, news))
    return out


class AntonymAudit:
    """WordNet antonyms read straight from NLTK's reader, cached per word."""

    def __init__(self, wn):
        self.wn, self._ants, self._forms = wn, {}, {}

    def forms(self, word: str) -> frozenset[str]:
        """The word and its WordNet base forms ("hated" -> {hated, hate}), by NLTK's morphy."""
        w = norm(word)
        if w not in self._forms:
            out = {w}
            for pos in ("n", "v", "a", "r"):
                out.update(self.wn._morphy(w, pos))  # all base forms (the public morphy() keeps only the first)
            self._forms[w] = frozenset(out)
        return self._forms[w]

    def antonyms(self, word: str) -> frozenset[str]:
        """Lower-cased names of the antonyms of any lemma of any synset of ``word`` (direct antonymy), and for
        an adjective satellite those of its heads (indirect antonymy, Miller 1995: excellent -> good -> bad);
        the satellites of every antonym adjective come too (bad -> terrible)."""
        w = norm(word)
        if w not in self._ants:
            out = set()
            for syn in self.wn.synsets(w):
                heads = [syn] + (syn.similar_tos() if syn.pos() == "s" else [])
                for head in heads:
                    for lemma in head.lemmas():
                        for ant in lemma.antonyms():
                            out.add(ant.name().lower())
                            for sat in ant.synset().similar_tos():
                                out.update(l_.name().lower() for l_ in sat.lemmas())
            self._ants[w] = frozenset(out)
        return self._ants[w]

    def is_antonym(self, old: str, new: str, exact: bool = False) -> bool:
        """Either word an antonym of the other; with ``exact`` the words as written (a misspelling's base forms
        are not looked up), else their base forms too."""
        if not old or not new:
            return False
        if exact:
            return norm(new) in self.antonyms(old) or norm(old) in self.antonyms(new)
        return bool(self.forms(new) & self.antonyms(old) or self.forms(old) & self.antonyms(new))


def bad_swap(audit: AntonymAudit, attack: str, old: str, new: str) -> str | None:
    """Why a swap is bad (None when it is fine): it puts in, takes out or changes a negation, or its words are
    WordNet antonyms (for deepwordbug's character edits: only an edited word that is exactly an antonym)."""
    if norm(old) == norm(new):
        return None
    if is_negation(old) or is_negation(new):
        return "negation"
    if audit.is_antonym(old, new, exact=attack == "deepwordbug"):
        return "antonym"
    return None


def test_audit_catches_what_it_should():
    """The audit itself, on hand-made swaps (no attack involved)."""
    from domains.text.wordnet import wordnet

    try:
        audit = AntonymAudit(wordnet())
    except DataMissingError as exc:
        pytest.skip(str(exc))
    bad = {("good", "bad"): "antonym", ("bad", "good"): "antonym", ("excellent", "bad"): "antonym",
           ("loved", "hated"): "antonym", ("interesting", "boring"): "antonym", ("great", "not"): "negation",
           ("doesn't", "does"): "negation", ("isn", "is"): "negation", ("never", "ever"): "negation",
           ("film", ""): None, ("", "nothing"): "negation", ("t", "s"): "negation"}
    for (old, new), why in bad.items():
        assert bad_swap(audit, "pwws", old, new) == why, (old, new)
    for old, new in (("funny", "amusing"), ("film", "movie"), ("dull", "tedious"), ("Not", "not")):
        assert bad_swap(audit, "pwws", old, new) is None, (old, new)
    assert bad_swap(audit, "deepwordbug", "nut", "not") == "negation"
    assert bad_swap(audit, "deepwordbug", "good", "bad") == "antonym"
    assert bad_swap(audit, "pwws", "likes", "dislikes") == "antonym"  # through the base forms like, dislike
    assert bad_swap(audit, "deepwordbug", "likes", "dislikes") is None  # exact: "dislikes" is not a listed antonym
    assert word_swaps("It doesn't work, sadly.", "It does work, sadly.") == [("doesn't", "does")]
    assert word_swaps("A dull film.", "A not dull film.") == [("", "not")]
    assert word_swaps("A dull film.", "A boring movie!") == [("dull", "boring"), ("film", "movie")]


@pytest.fixture(scope="module")
def victim():
    train, test = DATASETS.get("rotten-tomatoes")("train"), DATASETS.get("rotten-tomatoes")("test")
    model = train_victim(list(train.inputs[:1000]), train.y[:1000])
    texts, y = list(test.inputs[:MAX_SENTENCES]), test.y[:MAX_SENTENCES]
    correct = model.classify_texts(texts).argmax(1) == y
    return model, texts, y, correct


def test_at_most_2_percent_of_200_successes_swap_an_antonym_or_a_negation(victim):
    """Measured (one thread): 105 sentences attacked in 37-44 s; successes pwws 71, textfooler 81, deepwordbug 48;
    402 swaps, none bad. With the negations taken out of the constraints' protected words (is_negation always
    False, STOP_WORDS without NEGATIONS) 7 of 201 successes (0.035) swap a negation and this test fails."""
    from domains.text.wordnet import wordnet

    try:
        audit = AntonymAudit(wordnet())
    except DataMissingError as exc:
        pytest.skip(str(exc))
    model, texts, y, correct = victim
    # measure_similarity only fills the reported statistics; textfooler's own window check keeps its defaults
    attacks = {name: ATTACKS.get(name)(measure_similarity=False) for name in ATTACK_NAMES}
    successes = {name: [] for name in ATTACK_NAMES}  # (original, adversarial)
    attacked = 0
    t0 = time.perf_counter()
    for text, label, ok in zip(texts, y.tolist(), correct.tolist()):
        if sum(map(len, successes.values())) >= N_SUCCESSES:
            break
        if not ok:  # nothing to attack: the victim already gets it wrong
            continue
        attacked += 1
        for name, att in attacks.items():
            adv, success = att.attack_text(model, text, label)
            flipped = int(model.classify_texts([adv]).argmax()) != label
            assert success == flipped, (name, text, adv, success)
            if success:
                assert adv != text, (name, text)
                successes[name].append((text, adv))
    seconds = time.perf_counter() - t0

    n_texts = sum(map(len, successes.values()))
    bad_texts, n_swaps, bad_swaps = [], 0, 0
    for name, pairs in successes.items():
        for orig, adv in pairs:
            swaps = word_swaps(orig, adv)
            assert swaps, (name, orig, adv)
            n_swaps += len(swaps)
            why = [(old, new, w) for old, new in swaps if (w := bad_swap(audit, name, old, new))]
            bad_swaps += len(why)
            if why:
                bad_texts.append((name, why, orig, adv))
    share = len(bad_texts) / max(1, n_texts)
    print(f"\nswap audit: {attacked} sentences attacked in {seconds:.1f} s; successes "
          + ", ".join(f"{n} {len(p)}" for n, p in successes.items())
          + f" (total {n_texts}); {n_swaps} swaps, {bad_swaps} bad; {len(bad_texts)} texts with a bad swap, "
          f"share {share:.4f}")
    for name, why, orig, adv in bad_texts:
        print(f"  {name}: {why}\n    {orig}\n    {adv}")
    assert n_texts >= N_SUCCESSES, (attacked, {n: len(p) for n, p in successes.items()})
    assert all(len(p) > 0 for p in successes.values()), {n: len(p) for n, p in successes.items()}
    assert share <= MAX_BAD_SHARE, bad_texts
