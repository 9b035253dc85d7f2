"""The espeak-ng generator (deterministic, speaker-disjoint) and the Speech Commands loader."""

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from domains.speech.synthdata import (COMMAND_CLASSES, SynthConfig, TEST_VARIANTS, TRAIN_VARIANTS, digest,
                                      load_or_generate, render_split)


def test_generator_is_deterministic_across_runs_and_worker_counts(tmp_path, monkeypatch):
    cfg = SynthConfig(kind="commands", n_train=36, n_test=24, seed=3)
    digests = []
    for run, workers in enumerate((2, 1)):
        monkeypatch.setenv("XROBUST_CACHE", str(tmp_path / f"run{run}"))
        load_or_generate(cfg, progress=False, workers=workers)
        digests.append(digest(cfg))
    assert digests[0] == digests[1]
    # a different seed gives different audio
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path / "other"))
    other = SynthConfig(kind="commands", n_train=36, n_test=24, seed=4)
    load_or_generate(other, progress=False)
    assert digest(other) != digests[0]


def test_commands_are_speaker_disjoint_balanced_and_valid(small_commands):
    train, test = small_commands
    assert set(TRAIN_VARIANTS).isdisjoint(TEST_VARIANTS)
    tr_spk = {s for s in train.meta["speakers"] if s}
    te_spk = {s for s in test.meta["speakers"] if s}
    assert tr_spk and te_spk and tr_spk.isdisjoint(te_spk)
    assert {s.split("+")[1] for s in te_spk} <= set(TEST_VARIANTS)
    assert train.inputs.dtype == torch.int16 and train.inputs.shape == (96, 16000)
    assert torch.bincount(train.y, minlength=12).tolist() == [8] * 12
    assert train.meta["classes"] == list(COMMAND_CLASSES)
    wav = train.inputs.float() / 32768
    peak = wav.abs().amax(1)
    silence = train.y == COMMAND_CLASSES.index("silence")
    assert bool((peak[~silence] > 0.2).all()), "every spoken clip carries speech"
    assert bool((peak[silence] < 0.1).all()), "silence is low noise only"


def test_digits_have_transcripts_and_fit_the_window(small_digits):
    train, test = small_digits
    texts = train.meta["texts"]
    assert len(texts) == 48 and all(1 <= len(t.split()) <= 5 for t in texts)
    assert set(" ".join(texts).split()) <= {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven",
                                           "eight", "nine"}
    assert train.inputs.shape == (48, 40000)
    assert set(train.meta["speakers"]).isdisjoint(test.meta["speakers"])
    assert train.y["target_lengths"].tolist() == [len(t) for t in texts]


# ------------------------------------------------------------------- Speech Commands
def _wav(path, x, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype="PCM_16")


def _tone(n, f=440.0, sr=16000):
    return (0.3 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


@pytest.fixture
def sc_root(tmp_path):
    """A small tree in the real v0.02 layout: word folders, the two lists, background noise."""
    root = tmp_path / "speech_commands_v0.02"
    files = {"yes": ["aa_nohash_0", "bb_nohash_0", "cc_nohash_1"], "no": ["aa_nohash_0", "dd_nohash_0"],
             "marvin": ["ee_nohash_0", "ff_nohash_0"]}
    for word, names in files.items():
        for k, name in enumerate(names):
            _wav(root / word / f"{name}.wav", _tone(16000 if k else 12000, 200 + 50 * k))
    (root / "validation_list.txt").write_text("yes/bb_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/cc_nohash_1.wav\nno/dd_nohash_0.wav\nmarvin/ff_nohash_0.wav\n")
    _wav(root / "_background_noise_" / "white_noise.wav", (0.05 * np.random.default_rng(0).standard_normal(16000 * 9)))
    (root / "README.md").write_text("fixture\n")
    return root


def test_speechcommands_fixture_loads_with_its_split(sc_root):
    load = DATASETS.get("speechcommands")
    train = load("train", root=str(sc_root), silence_fraction=0.5)
    test = load("test", root=str(sc_root), silence_fraction=0.0)
    val = load("validation", root=str(sc_root), silence_fraction=0.0)
    assert train.meta["files"] == ["marvin/ee_nohash_0.wav", "no/aa_nohash_0.wav", "yes/aa_nohash_0.wav"]
    assert test.meta["files"] == ["marvin/ff_nohash_0.wav", "no/dd_nohash_0.wav", "yes/cc_nohash_1.wav"]
    assert val.meta["files"] == ["yes/bb_nohash_0.wav"]
    unknown, silence = COMMAND_CLASSES.index("unknown"), COMMAND_CLASSES.index("silence")
    assert test.y.tolist() == [unknown, COMMAND_CLASSES.index("no"), COMMAND_CLASSES.index("yes")]
    # 3 words + round(0.5 * 3) = 2 silence slices of the background noise
    assert train.y.tolist() == [unknown, 1, 0, silence, silence]
    assert train.inputs.shape == (5, 16000) and train.inputs.dtype == torch.int16
    # the 0.75 s clip is zero-padded on the right
    first = train.inputs[0]
    assert first[12000:].eq(0).all() and first[:12000].abs().max() > 9000


def test_speechcommands_missing_root_names_the_fix(tmp_path):
    with pytest.raises(DataMissingError, match="speech_commands_v0.02.tar.gz"):
        DATASETS.get("speechcommands")("train", root=str(tmp_path / "nowhere"))


@pytest.mark.parametrize("kind, message", [("rate", "sample rate 8000 Hz, expected 16000"),
                                           ("stereo", "2 channels, expected mono"),
                                           ("empty", "empty audio file")])
def test_bad_audio_gives_a_clear_error(sc_root, kind, message):
    bad = sc_root / "yes" / "zz_nohash_0.wav"
    if kind == "rate":
        _wav(bad, _tone(8000, sr=8000), sr=8000)
    elif kind == "stereo":
        _wav(bad, np.stack([_tone(16000), _tone(16000)], axis=1))
    else:
        _wav(bad, np.zeros(0, dtype=np.float32))
    with pytest.raises(UserError, match=message) as err:
        DATASETS.get("speechcommands")("train", root=str(sc_root), silence_fraction=0.0)
    assert "zz_nohash_0.wav" in str(err.value)


def test_render_rejects_utterances_longer_than_the_window(speech_cache):
    cfg = SynthConfig(kind="digits", n_train=6, n_test=2, clip_seconds=0.3, seed=1)
    with pytest.raises(RuntimeError, match="window"):
        render_split(cfg, "train", progress=False)
