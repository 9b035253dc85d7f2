"""WER, word edits, CTC targets and greedy decoding on hand-worked cases."""

import math

import pytest
import torch

from domains.speech.text import (ALPHABET, BLANK, decode_ids, encode_batch, encode_text, greedy_decode,
                                 targets_to_texts, wer, word_edits)


@pytest.mark.parametrize("ref, hyp, edits", [
    ("one two three", "one two three", 0),
    ("one two three", "one three", 1),            # one deletion
    ("one two three", "one two two three", 1),    # one insertion
    ("one two three", "one too three", 1),        # one substitution
    ("one two three", "", 3),                     # everything deleted
    ("", "oh oh", 2),                             # insertions only
    ("seven oh five", "five oh seven", 2),        # two substitutions (no transposition edit)
    ("a b c d", "x b c", 2),                      # substitution + deletion
    ("nine", "nine nine nine nine", 3),
])
def test_word_edits_hand_worked(ref, hyp, edits):
    assert word_edits(ref, hyp) == edits


def test_wer_is_total_edits_over_total_reference_words():
    # 1 deletion over 3 words + 2 insertions over 1 word = 3 / 4
    assert wer(["one two three", "four"], ["one three", "four four four"]) == pytest.approx(0.75)
    # more errors than words: WER above 1
    assert wer(["one"], ["two three"]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no reference words"):
        wer([""], ["x"])
    with pytest.raises(ValueError, match="hypotheses"):
        wer(["a"], [])


def test_targets_round_trip_and_padding():
    y = encode_batch(["three oh", "one"])
    assert y["targets"].shape == (2, len("three oh"))
    assert y["target_lengths"].tolist() == [8, 3]
    assert y["targets"][1, 3:].eq(BLANK).all()
    assert targets_to_texts(y) == ["three oh", "one"]
    assert decode_ids(encode_text("Seven  Eight")) == "seven eight"
    with pytest.raises(ValueError, match="alphabet"):
        encode_text("4")


def test_greedy_decode_merges_repeats_and_drops_blanks():
    ids = {c: i + 1 for i, c in enumerate(ALPHABET)}
    # frames o o _ n e _ e ␣ ␣ o h: adjacent repeats merge, a blank separates real repeats -> "onee oh"
    path = [ids["o"], ids["o"], BLANK, ids["n"], ids["e"], BLANK, ids["e"], ids[" "], ids[" "], ids["o"], ids["h"]]
    lp = torch.full((1, len(path), 1 + len(ALPHABET)), -10.0)
    for t, k in enumerate(path):
        lp[0, t, k] = 0.0
    assert greedy_decode(lp) == ["onee oh"]
    assert math.isclose(wer(["one oh"], greedy_decode(lp)), 0.5)
