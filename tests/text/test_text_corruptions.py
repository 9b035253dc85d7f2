"""Text corruptions: deterministic, severity-monotone, and each does what it says."""

from __future__ import annotations

import re

import pytest

from bench.corruptions import domain_corruptions, get_corruption
from bench.registry import load_domains
from domains.text.corruptions import KEYBOARD
from domains.text.datasets import TextList

load_domains()

TEXTS = TextList([
    "I do not think this movie is worth watching, it's dull and far too long.",
    "A wonderful, heartfelt story that doesn't quit until the very last frame.",
    "The performances are strong but the script cannot decide what it is about.",
    "It is a mess: loud, confused and somehow still boring after the first hour.",
] * 10)

NAMES = ["case", "contractions", "punctuation", "typo-delete", "typo-insert", "typo-keyboard", "typo-swap"]


def _changed_words(a: str, b: str) -> float:
    wa, wb = a.split(), b.split()
    if len(wa) != len(wb):
        return 1.0
    return sum(x != y for x, y in zip(wa, wb)) / len(wa)


def test_all_registered():
    assert [c.name for c in domain_corruptions("text")] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_type_preserving_and_changing(name):
    c = get_corruption(f"text/{name}")
    a, b = c(TEXTS, 3, seed=0), c(TEXTS, 3, seed=0)
    assert isinstance(a, TextList) and len(a) == len(TEXTS) and a == b
    assert sum(x != y for x, y in zip(a, TEXTS)) >= len(TEXTS) // 4
    assert c(TEXTS, 3, seed=1) != a


@pytest.mark.parametrize("name", ["case", "punctuation", "typo-delete", "typo-insert", "typo-keyboard", "typo-swap"])
def test_more_severe_changes_more(name):
    c = get_corruption(f"text/{name}")
    share = [sum(_changed_words(x, y) for x, y in zip(c(TEXTS, s, seed=0), TEXTS)) / len(TEXTS) for s in (1, 3, 5)]
    assert share[0] < share[1] < share[2], share
    assert share[2] <= 0.6


def test_keyboard_typos_use_qwerty_neighbours_and_keep_the_ends():
    out = get_corruption("text/typo-keyboard")(TEXTS, 5, seed=0)
    seen = 0
    for x, y in zip(TEXTS, out):
        for wx, wy in zip(re.findall(r"[A-Za-z]+", x), re.findall(r"[A-Za-z]+", y)):
            if wx != wy:
                seen += 1
                diff = [i for i in range(len(wx)) if wx[i] != wy[i]]
                assert len(wx) == len(wy) and len(diff) == 1 and 0 < diff[0] < len(wx) - 1
                assert wy[diff[0]].lower() in KEYBOARD[wx[diff[0]].lower()]
    assert seen > 20
    assert KEYBOARD["g"] == "bfhtvy" and KEYBOARD["q"] == "aw" and KEYBOARD["m"] == "jkn"


def test_swap_and_delete_keep_first_and_last_letters():
    for name in ("typo-swap", "typo-delete"):
        out = get_corruption(f"text/{name}")(TEXTS, 5, seed=0)
        for x, y in zip(TEXTS, out):
            for wx, wy in zip(x.split(), y.split()):
                if wx != wy:
                    assert wx[0] == wy[0] and wx[-1] == wy[-1]
                    assert sorted(wx) == sorted(wy) if name == "typo-swap" else len(wy) == len(wx) - 1


def test_contractions_round_trip_and_keep_negation():
    c = get_corruption("text/contractions")
    out = c(TextList(["I do not like it. It is bad and I cannot stay."]), 5, seed=0)[0]
    assert out == "I don't like it. It's bad and I can't stay."
    back = c(TextList([out]), 5, seed=0)[0]
    assert back == "I do not like it. It is bad and I can not stay."


@pytest.mark.parametrize("name", NAMES)
def test_a_prefix_of_the_batch_is_corrupted_the_same(name):
    c = get_corruption(f"text/{name}")
    assert c(TextList(TEXTS[:7]), 4, seed=0) == c(TEXTS, 4, seed=0)[:7]
