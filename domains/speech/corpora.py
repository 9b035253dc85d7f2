"""Read speech corpora from local roots into the core's fixed-size int16 waveforms.

Three layouts, none ever downloaded implicitly:

* **LibriSpeech** (Panayotov, Chen, Povey & Khudanpur 2015, "LibriSpeech: an
  ASR corpus based on public domain audio books", ICASSP):
  ``<root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``
  plus ``<speaker>-<chapter>.trans.txt``. torchaudio's ``LIBRISPEECH`` walks the
  tree and reads the transcripts (``get_metadata``, no decoding); the audio is
  decoded here with ``soundfile`` (torchaudio 2.11's ``load`` needs torchcodec).
* **Hugging Face audio folder**: ``<root>/<split>/metadata.csv`` with a
  ``file_name`` column (paths relative to that folder) and a transcript column
  (``transcription``, ``sentence``, ``text`` or ``transcript``), read with
  ``datasets.load_dataset("audiofolder", ...)``.
* **Common Voice** (Ardila et al. 2020, "Common Voice: A Massively-Multilingual
  Speech Corpus", LREC): one language folder of a release,
  ``<root>/clips/*.mp3`` plus ``<root>/<split>.tsv`` with ``path`` and
  ``sentence`` columns.

Every corpus ends in :func:`build_split`, which fixes what the core sees:

* **transcripts** go through :func:`normalise_transcript` onto the CTC
  alphabet of :mod:`domains.speech.text`;
* **audio** is decoded with ``soundfile``, mixed down to mono (mean of the
  channels) and resampled to 16 kHz with ``torchaudio.functional.resample``;
* **variable length**: utterances longer than ``max_seconds`` (read from the
  file header, before decoding) are dropped, never cut (a cut would leave
  words of the transcript without audio), and their count is recorded in
  ``meta["n_too_long"]``; transcripts that do not normalise are an error,
  or skipped and counted (``skip_unspellable``); an optional ``n`` keeps a
  seed-0 uniform subset of the rest (in corpus order); the kept ones are
  zero-padded at the end to the longest of them. ``meta["lengths"]`` holds
  each utterance's true length in samples. Memory is ``n x longest x 2``
  bytes (int16).
"""

from __future__ import annotations

import csv
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from bench.data import ArrayData
from bench.errors import DataMissingError, UserError
from domains.speech.synthdata import SAMPLE_RATE
from domains.speech.text import ALPHABET, NUM_TOKENS, encode_batch

#: typographic apostrophes and backticks written as the ASCII apostrophe of the alphabet
_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"}
_ALLOWED = set(ALPHABET)
#: punctuation (Unicode P*) that is read aloud ("percent", "and", "slash"): kept, hence unspellable
_SPOKEN_PUNCTUATION = set("%&#@/\\*\u00a7\u2030")


@dataclass(frozen=True)
class Utterance:
    """One utterance of a corpus before decoding: its audio file, raw transcript and ids."""

    path: Path
    text: str
    id: str
    speaker: str = ""


def _silent_punctuation(c: str) -> bool:
    return unicodedata.category(c).startswith("P") and c != "'" and c not in _SPOKEN_PUNCTUATION


def normalise_transcript(text: str, where: str = "") -> str:
    """A transcript on the CTC alphabet (space, apostrophe, a-z), or a :class:`UserError`.

    The normalisation, in order: Unicode NFKD with combining marks removed
    (``café`` -> ``cafe``), lower case, typographic apostrophes -> ``'``, every
    other punctuation character (Unicode category ``P*``: ``. , ? ! - " ...``)
    -> a space, except the ones read aloud (``% & # @ / *``), whitespace
    collapsed. Anything still outside the alphabet (digits, symbols, other
    scripts) is an error naming the character: it has no spelling the model
    could emit, and guessing one (``%`` -> "percent") would be language-specific.
    """
    s = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()
    s = "".join(_APOSTROPHES.get(c, " " if _silent_punctuation(c) else c) for c in s)
    s = " ".join(s.split())
    bad = sorted({c for c in s if c not in _ALLOWED})
    if bad:
        at = f"{where}: " if where else ""
        raise UserError(f"{at}transcript {text!r} has characters outside the CTC alphabet "
                        f"(space, apostrophe, a-z): {', '.join(repr(c) for c in bad)}")
    return s


def mp3_supported() -> bool:
    """Whether the installed libsndfile decodes MP3 (libsndfile >= 1.1)."""
    import soundfile as sf

    return "MP3" in sf.available_formats()


def _check_decodable(path: Path) -> None:
    if path.suffix.lower() == ".mp3" and not mp3_supported():
        import soundfile as sf

        raise UserError(f"{path}: this soundfile's libsndfile ({sf.__libsndfile_version__}) cannot decode MP3; "
                        "install soundfile >= 0.12 (libsndfile >= 1.1) or convert the clips to WAV/FLAC")


def audio_seconds(path: Path) -> float:
    """Duration from the file header (no decoding), with a one-line error for unreadable files."""
    import soundfile as sf

    _check_decodable(path)
    if not path.is_file():
        raise DataMissingError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path}: not a readable audio file ({exc})") from None
    if info.frames <= 0:
        raise UserError(f"{path}: empty audio file (0 samples)")
    return info.frames / info.samplerate


def read_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` with soundfile: mono float32 in [-1, 1] at ``sample_rate`` (resampled when needed)."""
    import soundfile as sf
    import torchaudio.functional as AF

    _check_decodable(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: not a readable audio file ({exc})") from None
    if data.shape[0] == 0:
        raise UserError(f"{path}: empty audio file (0 samples)")
    x = data.mean(axis=1)  # mono: the mean of the channels
    if rate != sample_rate:
        x = AF.resample(torch.from_numpy(np.ascontiguousarray(x)), rate, sample_rate).numpy()
    return x


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float waveform -> int16 PCM (clipped: resampling can overshoot full scale slightly)."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def build_split(name: str, utterances: Sequence[Utterance], source: str, *, max_seconds: float,
                n: int | None = None, skip_unspellable: bool = False, progress: bool = False) -> ArrayData:
    """Normalise, filter by duration, subset, decode, resample and pad ``utterances`` (see the module doc).

    With ``n``, the utterances are probed (transcript, then file header only)
    in the order of a seed-0 permutation until ``n`` of them qualify: a
    uniform subset of the qualifying ones, found without reading every header
    of a large corpus. A transcript that does not normalise onto the alphabet
    is an error, or, with ``skip_unspellable``, a skipped utterance counted in
    ``meta["n_unspellable"]``. ``y`` is the CTC target dict of
    :func:`domains.speech.text.encode_batch`.
    """
    if not utterances:
        raise DataMissingError(f"{name}: no utterances found in {source}")
    if not max_seconds > 0:
        raise UserError(f"{name}: max_seconds must be > 0, got {max_seconds}")
    if n is not None and n < 1:
        raise UserError(f"{name}: n must be >= 1, got {n}")
    order = range(len(utterances)) if n is None else \
        torch.randperm(len(utterances), generator=torch.Generator().manual_seed(0)).tolist()
    texts: dict[int, str] = {}
    too_long = unspellable = 0
    for i in order:
        u = utterances[i]
        try:
            text = normalise_transcript(u.text, str(u.path))
        except UserError:
            if not skip_unspellable:
                raise
            unspellable += 1
            continue
        if not text:
            raise UserError(f"{u.path}: empty transcript (WER needs reference words)")
        if audio_seconds(u.path) > max_seconds:
            too_long += 1
            continue
        texts[i] = text
        if n is not None and len(texts) == n:
            break
    if not texts:
        raise UserError(f"{name}: none of the {len(utterances)} utterances in {source} qualifies "
                        f"({too_long} longer than {max_seconds:g} s, {unspellable} unspellable)")
    keep = sorted(texts)
    it = keep
    if progress and len(keep) > 200:
        from tqdm import tqdm

        it = tqdm(keep, desc=f"read {name}", unit="utt", leave=False)
    waves = [to_int16(read_audio(utterances[i].path)) for i in it]
    lengths = [int(w.size) for w in waves]
    x = np.zeros((len(waves), max(lengths)), dtype=np.int16)
    for row, w in enumerate(waves):
        x[row, : w.size] = w
    kept_texts = [texts[i] for i in keep]
    meta = {"name": name, "num_tokens": NUM_TOKENS, "sample_rate": SAMPLE_RATE, "source": source,
            "texts": kept_texts, "files": [utterances[i].id for i in keep],
            "speakers": [utterances[i].speaker for i in keep], "lengths": lengths,
            "max_seconds": float(max_seconds), "n_in_corpus": len(utterances),
            "n_probed": len(keep) + too_long + unspellable, "n_too_long": too_long, "n_unspellable": unspellable,
            "padding": "zeros at the end, to the longest kept utterance"}
    return ArrayData(torch.from_numpy(x), encode_batch(kept_texts), meta)


# ---------------------------------------------------------------- roots
def corpus_root(root: str | None, env: str, default: str) -> Path:
    """``root``, else ``$<env>``, else ``<cache>/data/<default>`` (``<cache>/data`` when ``default`` is empty)."""
    base = root or os.environ.get(env)
    if not base:
        from bench.wheeldata import cache_dir

        base = str(cache_dir() / "data" / default)
    return Path(base)


# ---------------------------------------------------------------- LibriSpeech
LIBRISPEECH_URL = "https://www.openslr.org/12"
LIBRISPEECH_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360",
                       "train-other-500")


def librispeech_utterances(root: Path, subset: str) -> list[Utterance]:
    """The utterances of one subset, walked by ``torchaudio.datasets.LIBRISPEECH`` (metadata only).

    ``root`` holds ``LibriSpeech/<subset>/``; a ``root`` that is itself the
    ``LibriSpeech`` folder is accepted too.
    """
    from torchaudio.datasets import LIBRISPEECH

    if subset not in LIBRISPEECH_SUBSETS:
        raise UserError(f"unknown LibriSpeech subset {subset!r}: expected one of {', '.join(LIBRISPEECH_SUBSETS)}")
    if root.name == "LibriSpeech" and not (root / "LibriSpeech").is_dir():
        root = root.parent
    if not (root / "LibriSpeech" / subset).is_dir():
        raise DataMissingError(f"LibriSpeech {subset} not found under {root} (expected {root}/LibriSpeech/{subset}/); "
                               f"download {subset}.tar.gz from {LIBRISPEECH_URL} and extract it there, "
                               "or set XROBUST_LIBRISPEECH to the folder that holds LibriSpeech/")
    ds = LIBRISPEECH(str(root), url=subset, download=False)
    out = []
    for k in range(len(ds)):
        try:
            rel, _, text, speaker, chapter, utt = ds.get_metadata(k)
        except FileNotFoundError as exc:
            raise UserError(f"LibriSpeech {subset}: {exc} (missing or incomplete .trans.txt)") from None
        out.append(Utterance(root / "LibriSpeech" / rel, text, f"{speaker}-{chapter}-{utt:04d}", str(speaker)))
    return out


# ---------------------------------------------------------------- Hugging Face audio folder
#: transcript columns looked for, in this order, when none is named
TRANSCRIPT_COLUMNS = ("transcription", "sentence", "text", "transcript")
#: folder names accepted for each split (the ones ``datasets`` itself recognises)
SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "dev", "valid", "val"), "test": ("test", "eval")}


def _inside(folder: Path, rel: str, where: str) -> Path:
    path = (folder / rel).resolve()
    if os.path.isabs(rel) or not path.is_relative_to(folder.resolve()):
        raise UserError(f"{where}: file {rel!r} is not a relative path inside {folder}")
    return folder / rel


def audiofolder_utterances(root: Path, split: str, text_column: str | None = None) -> list[Utterance]:
    """The rows of ``<root>/<split>/metadata.csv`` (an HF ``audiofolder``), read by ``datasets``.

    ``datasets`` (>= 4) decodes *and encodes* its ``Audio`` feature with
    torchcodec, even with ``Audio(decode=False)``; so the metadata is loaded
    with every column typed as a string (no ``Audio`` feature at all), and the
    files are resolved against the split folder and decoded by
    :func:`read_audio`. ``streaming=True`` writes no Arrow cache; the data is a
    local folder, so nothing is fetched.
    """
    folder = next((root / name for name in SPLIT_FOLDERS.get(split, (split,)) if (root / name).is_dir()), None)
    if folder is None:
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DataMissingError(f"no {split} split under {root} (expected {root}/{split}/metadata.csv; "
                               f"folders there: {', '.join(found) or 'none'}); point XROBUST_AUDIOFOLDER "
                               "at a Hugging Face audiofolder root")
    table = folder / "metadata.csv"
    if not table.is_file():
        raise DataMissingError(f"{table} not found: an audiofolder split needs a metadata.csv "
                               "with a file_name column and a transcript column")
    with open(table, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    if "file_name" not in header:
        raise UserError(f"{table}: no file_name column (columns: {', '.join(header) or 'none'})")
    column = text_column or next((c for c in TRANSCRIPT_COLUMNS if c in header), None)
    if column not in header:
        raise UserError(f"{table}: no transcript column {text_column or ' / '.join(TRANSCRIPT_COLUMNS)} "
                        f"(columns: {', '.join(header)}); name it with text_column=")
    from datasets import Features, Value, load_dataset

    parts = load_dataset("audiofolder", data_dir=str(folder), streaming=True,
                         features=Features({c: Value("string") for c in header}))
    rows = [row for part in parts.values() for row in part]
    speaker = next((c for c in ("speaker_id", "client_id", "speaker") if c in header), None)
    return [Utterance(_inside(folder, r["file_name"], str(table)), r[column] or "", r["file_name"],
                      (r[speaker] or "") if speaker else "") for r in rows]


# ---------------------------------------------------------------- Common Voice
COMMONVOICE_URL = "https://commonvoice.mozilla.org/datasets"
#: the release's tsv of each split (any other ``<name>.tsv``, e.g. ``validated``, is taken by its name)
COMMONVOICE_SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def commonvoice_utterances(root: Path, split: str) -> list[Utterance]:
    """The rows of ``<root>/<split>.tsv`` of a Common Voice language folder (clips in ``<root>/clips/``)."""
    tsv = root / COMMONVOICE_SPLITS.get(split, f"{split}.tsv")
    if not tsv.is_file() or not (root / "clips").is_dir():
        raise DataMissingError(f"Common Voice {split} not found: {root} needs clips/ and {tsv.name}; download a "
                               f"release for your language from {COMMONVOICE_URL}, extract it and set "
                               "XROBUST_COMMONVOICE to the language folder (e.g. cv-corpus-<version>/en)")
    with open(tsv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in ("path", "sentence") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{tsv}: no {' / '.join(missing)} column (columns: {', '.join(reader.fieldnames or [])})")
        rows = list(reader)
    clips = root / "clips"
    return [Utterance(_inside(clips, r["path"], str(tsv)), r["sentence"] or "", r["path"], r.get("client_id") or "")
            for r in rows]
