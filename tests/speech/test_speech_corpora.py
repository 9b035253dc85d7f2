"""Speech corpora on local roots (LibriSpeech, HF audio folder, Common Voice), on fixtures in the real layouts."""

import math
import socket

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from bench.tracks import get_track
from domains.speech import corpora
from domains.speech.text import targets_to_texts


def _tone(seconds, sr, f=440.0, amp=0.3):
    n = int(round(seconds * sr))
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


def _write(path, x, sr, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, **kw)


#: (speaker, chapter, utterance, seconds, transcript as LibriSpeech writes it)
LIBRI = [(1089, 134686, 0, 1.0, "HE HOPED THERE WOULD BE STEW FOR DINNER"),
         (1089, 134686, 1, 0.5, "STUFF IT INTO YOU"),
         (1089, 134686, 2, 3.0, "A LONG ONE THAT THE DURATION CAP DROPS"),
         (121, 121726, 0, 0.75, "ALSO A BUTTERFLY'S WINGS")]


def _librispeech(root, subset="test-clean", rows=LIBRI):
    chapters = {}
    for spk, ch, utt, sec, text in rows:
        name = f"{spk}-{ch}-{utt:04d}"
        _write(root / "LibriSpeech" / subset / str(spk) / str(ch) / f"{name}.flac", _tone(sec, 16000, 200 + 40 * utt),
               16000, format="FLAC", subtype="PCM_16")
        chapters.setdefault((spk, ch), []).append(f"{name} {text}")
    for (spk, ch), lines in chapters.items():
        folder = root / "LibriSpeech" / subset / str(spk) / str(ch)
        (folder / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def libri_root(tmp_path):
    root = _librispeech(tmp_path / "libri")
    _librispeech(root, "train-clean-100", LIBRI[:2])
    return root


def test_librispeech_loads_normalised_filtered_and_padded(libri_root):
    d = DATASETS.get("librispeech")("test", root=str(libri_root), max_seconds=2.0, progress=False)
    # torchaudio's walk order (sorted file ids), the 3 s utterance dropped by the cap
    assert d.meta["files"] == ["1089-134686-0000", "1089-134686-0001", "121-121726-0000"]
    assert d.meta["texts"] == ["he hoped there would be stew for dinner", "stuff it into you",
                               "also a butterfly's wings"]
    assert targets_to_texts(d.y) == d.meta["texts"]
    assert d.meta["n_too_long"] == 1 and d.meta["speakers"] == ["1089", "1089", "121"]
    assert d.inputs.dtype == torch.int16 and d.inputs.shape == (3, 16000)
    assert d.meta["lengths"] == [16000, 8000, 12000]
    # zero padding after each utterance's own end, the audio itself intact
    assert d.inputs[1, 8000:].eq(0).all() and d.inputs[2, 12000:].eq(0).all()
    assert int(d.inputs[1, :8000].abs().max()) > 9000
    # the split names map onto subsets; a subset can also be named directly
    train = DATASETS.get("librispeech")("train", root=str(libri_root), progress=False)
    assert train.meta["files"] == ["1089-134686-0000", "1089-134686-0001"]
    assert "train-clean-100" in train.meta["source"]
    # the LibriSpeech folder itself is accepted as the root
    same = DATASETS.get("librispeech")("test-clean", root=str(libri_root / "LibriSpeech"), max_seconds=2.0,
                                       progress=False)
    assert same.meta["files"] == d.meta["files"]


def test_librispeech_n_is_the_seed0_subset_of_the_ones_that_fit(tmp_path):
    # 12 utterances of one chapter, the 4th too long; n = 5 of the 11 that fit
    rows = [(7, 70, u, 2.5 if u == 3 else 0.25, f"WORD {chr(97 + u).upper()}") for u in range(12)]
    root = _librispeech(tmp_path / "libri", rows=rows)
    load = DATASETS.get("librispeech")
    a = load("test", root=str(root), max_seconds=2.0, n_test=5, progress=False)
    assert load("test", root=str(root), max_seconds=2.0, n_test=5, progress=False).meta["files"] == a.meta["files"]
    # documented: probe in the order of a seed-0 permutation, keep the first 5 that fit, return them in corpus order
    perm = [u for u in torch.randperm(12, generator=torch.Generator().manual_seed(0)).tolist() if u != 3][:5]
    assert a.meta["files"] == [f"7-70-{u:04d}" for u in sorted(perm)]
    assert a.meta["files"] != [f"7-70-{u:04d}" for u in (0, 1, 2, 4, 5)]  # not simply the first five
    assert a.meta["n_too_long"] == (3 in torch.randperm(12, generator=torch.Generator().manual_seed(0))
                                    .tolist()[: a.meta["n_probed"]])
    # the training split's n does not limit the test split
    assert len(load("test", root=str(root), max_seconds=2.0, n_train=5, progress=False)) == 11


def test_librispeech_missing_root_says_where_to_get_it(tmp_path):
    with pytest.raises(DataMissingError) as err:
        DATASETS.get("librispeech")("test", root=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "openslr.org/12" in msg and "XROBUST_LIBRISPEECH" in msg and "test-clean" in msg
    assert "\n" not in msg


def test_librispeech_unknown_subset_lists_the_real_ones(libri_root):
    with pytest.raises(UserError, match="unknown LibriSpeech subset 'test-dirty'.*test-other"):
        DATASETS.get("librispeech")("test-dirty", root=str(libri_root))


def test_bad_transcript_character_names_file_and_character(tmp_path):
    root = _librispeech(tmp_path / "libri", rows=[(19, 198, 0, 0.5, "CHAPTER 3 THE END")])
    with pytest.raises(UserError) as err:
        DATASETS.get("librispeech")("test", root=str(root), progress=False)
    msg = str(err.value)
    assert "19-198-0000.flac" in msg and "'3'" in msg and "outside the CTC alphabet" in msg


def test_missing_transcript_line_is_a_user_error(tmp_path):
    root = _librispeech(tmp_path / "libri", rows=[(19, 198, 0, 0.5, "HELLO")])
    (root / "LibriSpeech" / "test-clean" / "19" / "198" / "19-198.trans.txt").write_text("19-198-0007 OTHER\n")
    with pytest.raises(UserError, match="Translation not found for 19-198-0000"):
        DATASETS.get("librispeech")("test", root=str(root), progress=False)


@pytest.mark.parametrize("raw, clean", [
    ("HE HOPED THERE WOULD BE STEW", "he hoped there would be stew"),
    ("It\u2019s  a Caf\u00e9, isn't it?", "it's a cafe isn't it"),
    ("Well-known \u201cquotes\u201d\u2026 and   spaces.", "well known quotes and spaces"),
    ("Se\u00f1or Zo\u00eb", "senor zoe"),
])
def test_transcripts_are_normalised_onto_the_alphabet(raw, clean):
    assert corpora.normalise_transcript(raw) == clean


@pytest.mark.parametrize("raw, bad", [("room 101", "'0', '1'"), ("50% off", "'%', '0', '5'"),
                                      ("\u65e5\u672c", "'\u65e5', '\u672c'")])
def test_unspellable_transcripts_are_errors(raw, bad):
    with pytest.raises(UserError, match=f"x.wav: transcript .*: {bad}$"):
        corpora.normalise_transcript(raw, "x.wav")


# ------------------------------------------------------------------- HF audio folder
@pytest.fixture
def af_root(tmp_path):
    """``<root>/<split>/metadata.csv`` + WAVs at 8 kHz, 22.05 kHz and 16 kHz (one stereo)."""
    root = tmp_path / "af"
    for split in ("train", "test"):
        _write(root / split / "a.wav", _tone(0.5, 8000), 8000, subtype="PCM_16")
        _write(root / split / "sub" / "b.wav", _tone(0.75, 22050), 22050, subtype="PCM_16")
        _write(root / split / "c.wav", np.stack([_tone(0.25, 16000), _tone(0.25, 16000)], axis=1), 16000,
               subtype="PCM_16")
        (root / split / "metadata.csv").write_text(
            'file_name,transcription,sentence,speaker_id\na.wav,Hello World!,first,s1\n'
            'sub/b.wav,"It\'s, fine.",second,s2\nc.wav,Stereo   two,third,s3\n')
    return root


def test_audiofolder_resamples_to_16k_with_the_right_length_and_pitch(af_root):
    d = DATASETS.get("audiofolder")("test", root=str(af_root), progress=False)
    assert d.meta["texts"] == ["hello world", "it's fine", "stereo two"]
    assert d.meta["speakers"] == ["s1", "s2", "s3"] and d.meta["files"] == ["a.wav", "sub/b.wav", "c.wav"]
    expect = [math.ceil(4000 * 16000 / 8000), math.ceil(round(0.75 * 22050) * 16000 / 22050), 4000]
    assert d.meta["lengths"] == expect == [8000, 12001, 4000]  # ceil(16538 x 16000 / 22050)
    assert d.inputs.shape == (3, 12001) and d.meta["sample_rate"] == 16000
    # the 440 Hz tone is still 440 Hz at 16 kHz (a rate mix-up would move it)
    for row, n in zip(d.inputs, d.meta["lengths"]):
        x = row[:n].float().numpy()
        spectrum = np.abs(np.fft.rfft(x))
        assert abs(np.argmax(spectrum) * 16000 / n - 440) < 3


def test_audiofolder_touches_no_network(af_root, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    d = DATASETS.get("audiofolder")("train", root=str(af_root), progress=False)
    assert len(d) == 3


def test_audiofolder_text_column_and_bad_tables(af_root):
    load = DATASETS.get("audiofolder")
    # "transcription" comes before "sentence" by default; text_column picks another one
    d = load("test", root=str(af_root), text_column="sentence", progress=False)
    assert d.meta["texts"] == ["first", "second", "third"]
    with pytest.raises(UserError, match="no transcript column words.*columns: file_name, transcription, sentence"):
        load("test", root=str(af_root), text_column="words")
    with pytest.raises(DataMissingError, match="no validation split .*folders there: test, train"):
        load("validation", root=str(af_root))
    (af_root / "test" / "metadata.csv").write_text("file_name,transcription\n../train/a.wav,escape\n")
    with pytest.raises(UserError, match="not a relative path inside"):
        load("test", root=str(af_root))
    (af_root / "test" / "metadata.csv").write_text("path,transcription\na.wav,hello\n")
    with pytest.raises(UserError, match="no file_name column"):
        load("test", root=str(af_root))


# ------------------------------------------------------------------- Common Voice
def _commonvoice(root, ext="mp3", split="test"):
    rows = [("c1", "common_voice_en_1", "Hello, world!"), ("c2", "common_voice_en_2", "\u201cQuoted\u201d words."),
            ("c1", "common_voice_en_3", "Room 101 is free.")]
    for k, (_, name, _) in enumerate(rows):
        kw = {"format": "MP3"} if ext == "mp3" else {"subtype": "PCM_16"}
        _write(root / "clips" / f"{name}.{ext}", _tone(0.5 + 0.25 * k, 48000), 48000, **kw)
    lines = ["client_id\tpath\tsentence\tup_votes\tdown_votes"]
    lines += [f"{c}\t{n}.{ext}\t{s}\t2\t0" for c, n, s in rows]
    (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_commonvoice_wav_clips_resampled_from_48k(tmp_path):
    root = _commonvoice(tmp_path / "en", ext="wav")
    load = DATASETS.get("commonvoice")
    with pytest.raises(UserError, match="common_voice_en_3.wav: transcript 'Room 101 is free.'"):
        load("test", root=str(root), progress=False)
    d = load("test", root=str(root), skip_unspellable=True, progress=False)
    assert d.meta["texts"] == ["hello world", "quoted words"] and d.meta["n_unspellable"] == 1
    assert d.meta["lengths"] == [8000, 12000] and d.meta["speakers"] == ["c1", "c2"]


def test_commonvoice_mp3_clips_decode(tmp_path):
    if not corpora.mp3_supported():
        pytest.skip("this libsndfile has no MP3 support")
    root = _commonvoice(tmp_path / "en", ext="mp3")
    d = DATASETS.get("commonvoice")("test", root=str(root), skip_unspellable=True, progress=False)
    assert d.meta["files"] == ["common_voice_en_1.mp3", "common_voice_en_2.mp3"]
    # MP3 frames are what the encoder wrote; within 1% of the clip length after resampling
    for got, want in zip(d.meta["lengths"], (8000, 12000)):
        assert abs(got - want) <= 0.01 * want
    assert int(d.inputs[0].abs().max()) > 5000


def test_mp3_without_libsndfile_support_is_one_line(tmp_path, monkeypatch):
    root = _commonvoice(tmp_path / "en", ext="mp3")
    monkeypatch.setattr(corpora, "mp3_supported", lambda: False)
    with pytest.raises(UserError, match=r"common_voice_en_1.mp3: this soundfile's libsndfile .* cannot decode MP3"):
        DATASETS.get("commonvoice")("test", root=str(root), skip_unspellable=True, progress=False)


def test_missing_or_broken_clips_are_one_line_errors(tmp_path):
    root = _commonvoice(tmp_path / "en", ext="wav")
    load = DATASETS.get("commonvoice")
    (root / "clips" / "common_voice_en_2.wav").unlink()
    with pytest.raises(DataMissingError, match=r"common_voice_en_2.wav: audio file not found$"):
        load("test", root=str(root), skip_unspellable=True, progress=False)
    (root / "clips" / "common_voice_en_2.wav").write_bytes(b"RIFF\x00\x00not audio")
    with pytest.raises(UserError, match=r"common_voice_en_2.wav: not a readable audio file"):
        load("test", root=str(root), skip_unspellable=True, progress=False)


def test_commonvoice_missing_root_says_where_to_get_it(tmp_path):
    with pytest.raises(DataMissingError) as err:
        DATASETS.get("commonvoice")("validation", root=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "commonvoice.mozilla.org" in msg and "XROBUST_COMMONVOICE" in msg and "dev.tsv" in msg


# ------------------------------------------------------------------- tracks
def test_librispeech_track_loads_its_eval_data_from_the_env_root(libri_root, monkeypatch):
    from bench.pipeline import build_model

    monkeypatch.setenv("XROBUST_LIBRISPEECH", str(libri_root))
    track = get_track("speech-librispeech-snr-30db")
    assert track.metric == "wer" and track.dataset == "librispeech" and not track.quick
    data, idx = track.eval_data()
    # every fixture utterance of test-clean fits 10 s: 4 of them, in the seed-0 permutation order
    assert sorted(idx.tolist()) == [0, 1, 2, 3]
    assert sorted(data.meta["texts"]) == sorted(" ".join(t.lower().split()) for *_, t in LIBRI)
    model = build_model(track, data)
    with torch.no_grad():
        out = model.predict(data.inputs[:2])
    assert out.shape == (2, data.inputs.shape[1] // 320 + 1, 29)


def test_commonvoice_track_loads_its_eval_data_from_the_env_root(tmp_path, monkeypatch):
    root = _commonvoice(tmp_path / "en", ext="wav")
    monkeypatch.setenv("XROBUST_COMMONVOICE", str(root))
    data, _ = get_track("speech-commonvoice-en-snr-30db").eval_data()
    assert sorted(data.meta["texts"]) == ["hello world", "quoted words"] and data.meta["n_unspellable"] == 1


def test_ctc_char_is_the_ctc_digits_architecture_grown():
    from bench.registry import MODELS

    small, big = MODELS.get("ctc-digits")(), MODELS.get("ctc-char")()
    # layers=1 leaves ctc-digits' parameters (and so its published checkpoints) unchanged
    assert sum(p.numel() for p in small.parameters()) == 66_669
    assert big.net.rnn.num_layers == 3 and 3_000_000 < sum(p.numel() for p in big.parameters()) < 3_500_000
