"""Speech data sets as the core sees them.

Inputs are int16 waveforms ``(N, L)`` at 16 kHz (half the memory of float);
every speech model's ``encode`` turns them into the float waveform in
[-1, 1] that the adversary perturbs.

* ``synth-commands`` / ``synth-digits``: generated offline with espeak-ng
  (:mod:`domains.speech.synthdata`), speaker-disjoint splits.
* ``speechcommands``: the real Speech Commands v0.02 (Warden 2018) from a
  local root, with its own ``validation_list.txt`` / ``testing_list.txt``
  split, read with ``soundfile``. 12 classes as in the standard task: the
  ten keywords, ``unknown`` (every other word) and ``silence`` (1 s slices of
  ``_background_noise_``).
* ``librispeech``, ``audiofolder``, ``commonvoice``: read speech corpora from
  local roots (:mod:`domains.speech.corpora`): LibriSpeech (Panayotov et al.
  2015), any Hugging Face audio folder, a Common Voice language folder
  (Ardila et al. 2020); transcripts on the CTC alphabet, 16 kHz, utterances
  up to ``max_seconds`` zero-padded to the longest kept one.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from bench.data import ArrayData
from bench.errors import DataMissingError, UserError
from bench.registry import DATASETS
from domains.speech import corpora
from domains.speech.synthdata import (COMMAND_CLASSES, KEYWORDS, SAMPLE_RATE, SynthConfig, load_or_generate)
from domains.speech.text import NUM_TOKENS, encode_batch


def _check_split(split: str, allowed=("train", "test")) -> None:
    if split not in allowed:
        raise UserError(f"unknown split {split!r}: expected {' or '.join(allowed)}")


def _commands_meta(name: str, source: str) -> dict:
    return {"name": name, "num_classes": len(COMMAND_CLASSES), "classes": list(COMMAND_CLASSES),
            "num_keywords": len(KEYWORDS), "sample_rate": SAMPLE_RATE, "source": source}


@DATASETS.register("synth-commands")
def synth_commands(split: str = "train", root: str | None = None, seed: int = 0, n_train: int = 3240,
                   n_test: int = 864, progress: bool = True) -> ArrayData:
    """Synthetic keyword spotting: 12 balanced classes, 1 s clips, unseen test speakers."""
    _check_split(split)
    cfg = SynthConfig(kind="commands", seed=seed, n_train=n_train, n_test=n_test)
    d = load_or_generate(cfg, progress=progress)[split]
    meta = _commands_meta("synth-commands", f"espeak-ng synth {cfg.key()}")
    meta["speakers"] = d["speakers"]
    return ArrayData(torch.from_numpy(d["waveform"]), torch.from_numpy(d["labels"]), meta)


DIGITS_DEFAULTS = dict(n_train=3000, n_test=400, clip_seconds=2.5, rate=(160, 220))


@DATASETS.register("synth-digits")
def synth_digits(split: str = "train", root: str | None = None, seed: int = 0,
                 n_train: int = DIGITS_DEFAULTS["n_train"], n_test: int = DIGITS_DEFAULTS["n_test"],
                 progress: bool = True) -> ArrayData:
    """Synthetic connected digit strings (1-5 digits), 2.5 s clips, transcripts as CTC targets."""
    _check_split(split)
    cfg = SynthConfig(kind="digits", seed=seed, n_train=n_train, n_test=n_test,
                      clip_seconds=DIGITS_DEFAULTS["clip_seconds"], rate=DIGITS_DEFAULTS["rate"])
    d = load_or_generate(cfg, progress=progress)[split]
    meta = {"name": "synth-digits", "num_tokens": NUM_TOKENS, "sample_rate": SAMPLE_RATE,
            "source": f"espeak-ng synth {cfg.key()}", "speakers": d["speakers"], "texts": d["texts"]}
    return ArrayData(torch.from_numpy(d["waveform"]), encode_batch(d["texts"]), meta)


# ----------------------------------------------------------------- real Speech Commands
def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A mono 16-bit WAV as int16, with a clear :class:`UserError` for anything else."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path}: not a readable audio file ({exc})") from None
    if info.samplerate != sample_rate:
        raise UserError(f"{path}: sample rate {info.samplerate} Hz, expected {sample_rate} Hz "
                        f"(resample the file first)")
    if info.channels != 1:
        raise UserError(f"{path}: {info.channels} channels, expected mono")
    if info.frames == 0:
        raise UserError(f"{path}: empty audio file (0 samples)")
    data, _ = sf.read(str(path), dtype="int16", always_2d=False)
    return np.asarray(data, dtype=np.int16)


def _fit(x: np.ndarray, length: int) -> np.ndarray:
    """Right-pad with zeros (Speech Commands clips are at most 1 s) or keep the middle ``length``."""
    if x.size >= length:
        s = (x.size - length) // 2
        return x[s: s + length]
    return np.pad(x, (0, length - x.size))


def _read_list(root: Path, name: str) -> set[str]:
    p = root / name
    if not p.exists():
        raise DataMissingError(f"{p} not found: {root} is not a Speech Commands v0.02 root "
                               "(download it from http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz "
                               "and extract it; then set XROBUST_SPEECHCOMMANDS to its folder)")
    return {line.strip() for line in p.read_text().splitlines() if line.strip()}


def speechcommands_root(root: str | None) -> Path:
    base = root or os.environ.get("XROBUST_SPEECHCOMMANDS")
    if not base:
        from bench.wheeldata import cache_dir

        base = str(cache_dir() / "data" / "SpeechCommands" / "speech_commands_v0.02")
    return Path(base)


@lru_cache(maxsize=4)
def _load_speechcommands(root: str, split: str, silence_fraction: float) -> tuple[np.ndarray, np.ndarray, tuple]:
    base = Path(root)
    val, test = _read_list(base, "validation_list.txt"), _read_list(base, "testing_list.txt")
    files: list[str] = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for f in sorted(d.glob("*.wav")):
            rel = f"{d.name}/{f.name}"
            in_split = (rel in test) if split == "test" else (rel in val) if split == "validation" \
                else (rel not in test and rel not in val)
            if in_split:
                files.append(rel)
    if not files:
        raise DataMissingError(f"no {split} clips found under {base}")
    waves, labels = [], []
    unknown = COMMAND_CLASSES.index("unknown")
    for rel in files:
        waves.append(_fit(read_wav(base / rel), SAMPLE_RATE))
        word = rel.split("/")[0]
        labels.append(KEYWORDS.index(word) if word in KEYWORDS else unknown)
    # silence: 1 s slices of the background-noise recordings, disjoint seconds per split
    noise_dir = base / "_background_noise_"
    n_sil = int(round(silence_fraction * len(files)))
    slices = []
    if n_sil and noise_dir.is_dir():
        offset = {"train": 0, "validation": 1, "test": 2}[split]
        for f in sorted(noise_dir.glob("*.wav")):
            x = read_wav(f)
            for s in range(offset, x.size // SAMPLE_RATE, 3):
                slices.append(x[s * SAMPLE_RATE: (s + 1) * SAMPLE_RATE])
    for k in range(min(n_sil, len(slices)) if slices else 0):
        waves.append(slices[k * len(slices) // n_sil] if n_sil <= len(slices) else slices[k])
        labels.append(COMMAND_CLASSES.index("silence"))
    return np.stack(waves), np.array(labels, dtype=np.int64), tuple(files)


@DATASETS.register("speechcommands")
def speechcommands(split: str = "train", root: str | None = None, silence_fraction: float = 0.1) -> ArrayData:
    """Speech Commands v0.02 from a local root (never downloaded implicitly).

    Args:
        split: ``train``, ``validation`` or ``test`` (the dataset's own lists).
        root: the folder holding ``yes/``, ``no/``, ... and the two list files;
            default ``$XROBUST_SPEECHCOMMANDS`` or ``<cache>/data/SpeechCommands/speech_commands_v0.02``.
        silence_fraction: silence clips added, as a fraction of the word clips.
    """
    _check_split(split, ("train", "validation", "test"))
    base = speechcommands_root(root)
    if not base.is_dir():
        raise DataMissingError(f"Speech Commands not found at {base}; download "
                               "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz and extract it there, "
                               "or set XROBUST_SPEECHCOMMANDS to its folder")
    x, y, files = _load_speechcommands(str(base.resolve()), split, float(silence_fraction))
    meta = _commands_meta("speechcommands", str(base))
    meta["files"] = list(files)
    return ArrayData(torch.from_numpy(x), torch.from_numpy(y), meta)


# ----------------------------------------------------------------- speech corpora on local roots
def _split_n(split: str, n_train: int | None, n_test: int | None) -> int | None:
    return n_train if split == "train" else n_test


@DATASETS.register("librispeech")
def librispeech(split: str = "train", root: str | None = None, train_subset: str = "train-clean-100",
                validation_subset: str = "dev-clean", test_subset: str = "test-clean", max_seconds: float = 16.0,
                n_train: int | None = None, n_test: int | None = None, progress: bool = True) -> ArrayData:
    """LibriSpeech (Panayotov et al. 2015) from a local root (never downloaded implicitly).

    Args:
        split: ``train``, ``validation`` or ``test`` (mapped to the ``*_subset`` arguments), or a subset
            name itself (``test-other``, ``train-clean-360``, ...).
        root: the folder holding ``LibriSpeech/<subset>/`` (or the ``LibriSpeech`` folder itself); default
            ``$XROBUST_LIBRISPEECH`` or ``<cache>/data``.
        max_seconds: longer utterances are dropped (counted in ``meta["n_too_long"]``), the rest zero-padded.
        n_train, n_test: keep a seed-0 uniform subset of this many (``n_test`` also for validation).
    """
    subsets = {"train": train_subset, "validation": validation_subset, "test": test_subset}
    subset = subsets.get(split, split)
    base = corpora.corpus_root(root, "XROBUST_LIBRISPEECH", "")
    utts = corpora.librispeech_utterances(base, subset)
    return corpora.build_split("librispeech", utts, f"LibriSpeech {subset} at {base}", max_seconds=max_seconds,
                               n=_split_n(split, n_train, n_test), progress=progress)


@DATASETS.register("audiofolder")
def audiofolder(split: str = "train", root: str | None = None, text_column: str | None = None,
                max_seconds: float = 16.0, n_train: int | None = None, n_test: int | None = None,
                skip_unspellable: bool = False, progress: bool = True) -> ArrayData:
    """Any Hugging Face ``audiofolder`` on disk: ``<root>/<split>/metadata.csv`` (``file_name`` + transcript).

    Args:
        split: ``train``, ``validation`` (folder ``validation``, ``dev``, ``valid`` or ``val``), ``test``, or
            any folder name.
        root: default ``$XROBUST_AUDIOFOLDER`` or ``<cache>/data/audiofolder``.
        text_column: the transcript column; default the first of ``transcription``, ``sentence``, ``text``,
            ``transcript``.
        max_seconds, n_train, n_test: as for ``librispeech``; skip_unspellable: as for ``commonvoice``.
    """
    base = corpora.corpus_root(root, "XROBUST_AUDIOFOLDER", "audiofolder")
    utts = corpora.audiofolder_utterances(base, split, text_column)
    return corpora.build_split("audiofolder", utts, f"audiofolder {split} at {base}", max_seconds=max_seconds,
                               n=_split_n(split, n_train, n_test), skip_unspellable=skip_unspellable,
                               progress=progress)


@DATASETS.register("commonvoice")
def commonvoice(split: str = "train", root: str | None = None, max_seconds: float = 10.0,
                n_train: int | None = None, n_test: int | None = None, skip_unspellable: bool = False,
                progress: bool = True) -> ArrayData:
    """A Common Voice (Ardila et al. 2020) language folder on disk: ``clips/`` + ``train/dev/test.tsv``.

    Args:
        split: ``train``, ``validation`` (``dev.tsv``), ``test``, or any ``<name>.tsv`` of the release.
        root: the language folder (``cv-corpus-<version>/<lang>``); default ``$XROBUST_COMMONVOICE`` or
            ``<cache>/data/commonvoice/en``.
        max_seconds, n_train, n_test: as for ``librispeech``. MP3 clips need libsndfile >= 1.1.
        skip_unspellable: skip (and count in ``meta["n_unspellable"]``) sentences with characters the
            normalisation cannot put on the alphabet (digits, symbols, other scripts) instead of failing.
    """
    base = corpora.corpus_root(root, "XROBUST_COMMONVOICE", "commonvoice/en")
    utts = corpora.commonvoice_utterances(base, split)
    return corpora.build_split("commonvoice", utts, f"Common Voice {split} at {base}", max_seconds=max_seconds,
                               n=_split_n(split, n_train, n_test), skip_unspellable=skip_unspellable,
                               progress=progress)


def _generator(kind: str):
    def fetch(root: str | None = None) -> str:
        """Generate (or find) the default set in the cache; returns its folder."""
        if kind == "commands":
            cfg = SynthConfig(kind="commands")
        else:
            cfg = SynthConfig(kind="digits", n_train=DIGITS_DEFAULTS["n_train"], n_test=DIGITS_DEFAULTS["n_test"],
                              clip_seconds=DIGITS_DEFAULTS["clip_seconds"], rate=DIGITS_DEFAULTS["rate"])
        load_or_generate(cfg)
        return str(cfg.folder())
    return fetch


synth_commands.fetch = _generator("commands")
synth_digits.fetch = _generator("digits")
