"""Synthetic speech data sets made offline with espeak-ng (see :mod:`domains.speech.synth`).

* ``synth-commands``: Speech-Commands-style keyword spotting (Warden 2018):
  1 s clips at 16 kHz of the ten core keywords, ``unknown`` (other words of
  Speech Commands v0.02) and ``silence`` (low background noise only).
* ``synth-digits``: connected digit strings of 1-5 digits ("zero"/"oh" ...
  "nine", TIDIGITS-style; Leonard 1984), 2.5 s clips with transcripts, for
  CTC speech recognition.

A *speaker* is an espeak-ng accent plus a speaker variant. Train and test
use disjoint variant sets, so every test clip comes from a speaker never
heard in training. Every clip also varies in rate, pitch, pitch range,
loudness, position in the window (time shift) and background-noise level.

Everything random is drawn from ``numpy.random.default_rng`` seeded with the
config's seed, the split and the clip index, and the synthesis itself is
reproducible (see :mod:`domains.speech.synth`), so a config always gives the
same bytes. Sets are cached under ``<cache>/speech/<name>-<config hash>/`` as
safetensors (int16 waveforms) plus a JSON sidecar.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.wheeldata import cache_dir
from domains.speech.synth import ESPEAK_RATE, Utterance, synthesize

#: bump when the generator's output changes for the same config
GENERATOR_VERSION = 2
SAMPLE_RATE = 16000

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
#: the auxiliary (non-keyword) words of Speech Commands v0.02
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine", "one",
                 "seven", "sheila", "six", "three", "tree", "two", "wow", "zero", "backward", "forward",
                 "follow", "learn", "visual")
COMMAND_CLASSES = KEYWORDS + ("unknown", "silence")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

VOICES = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = ("m1", "m2", "m4", "m5", "m6", "m8", "f1", "f3", "f4", "klatt", "klatt2", "klatt3", "klatt5",
                  "Alex", "annie", "edward", "grandpa", "john")
TEST_VARIANTS = ("m3", "m7", "f2", "f5", "klatt4", "klatt6", "linda", "robert")


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a generated set (its hash keys the cache).

    Attributes:
        kind: ``commands`` or ``digits``.
        seed: the one seed.
        n_train, n_test: clips per split (commands: rounded to whole classes).
        clip_seconds: window length.
        train_variants, test_variants: the disjoint speaker variants.
        voices: accents (shared; a speaker is accent + variant).
        rate: words per minute range.
        noise_snr_db: background noise level relative to the speech (range).
        peak: peak amplitude range of a clip.
        silence_rms: RMS range of the ``silence`` class.
    """

    kind: str = "commands"
    seed: int = 0
    n_train: int = 3240
    n_test: int = 864
    clip_seconds: float = 1.0
    voices: tuple[str, ...] = VOICES
    train_variants: tuple[str, ...] = TRAIN_VARIANTS
    test_variants: tuple[str, ...] = TEST_VARIANTS
    rate: tuple[int, int] = (140, 220)
    noise_snr_db: tuple[float, float] = (20.0, 40.0)
    peak: tuple[float, float] = (0.25, 0.9)
    silence_rms: tuple[float, float] = (0.001, 0.01)

    def __post_init__(self) -> None:
        if self.kind not in ("commands", "digits"):
            raise ValueError(f"unknown kind {self.kind!r}")
        if set(self.train_variants) & set(self.test_variants):
            raise ValueError("train and test speaker variants must be disjoint")

    def key(self) -> str:
        blob = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def folder(self) -> Path:
        return cache_dir() / "speech" / f"synth-{self.kind}-{self.key()}"


@dataclass
class Plan:
    """What each clip of a split will be (drawn before any synthesis)."""

    utterances: list[Utterance | None] = field(default_factory=list)  # None = silence
    labels: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    speakers: list[str] = field(default_factory=list)


def _rng(cfg: SynthConfig, split: str, i: int, what: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, 0 if split == "train" else 1, i, what])


def plan_split(cfg: SynthConfig, split: str) -> Plan:
    n = cfg.n_train if split == "train" else cfg.n_test
    variants = cfg.train_variants if split == "train" else cfg.test_variants
    plan = Plan()
    ncls = len(COMMAND_CLASSES)
    for i in range(n):
        r = _rng(cfg, split, i, 0)
        voice = cfg.voices[int(r.integers(len(cfg.voices)))]
        variant = variants[int(r.integers(len(variants)))]
        rate = int(r.integers(cfg.rate[0], cfg.rate[1] + 1))
        pitch, prange = int(r.integers(30, 71)), int(r.integers(20, 81))
        if cfg.kind == "commands":
            label = i % ncls  # balanced classes
            if COMMAND_CLASSES[label] == "silence":
                plan.utterances.append(None)
                plan.texts.append("")
                plan.speakers.append("")
                plan.labels.append(label)
                continue
            text = KEYWORDS[label] if label < len(KEYWORDS) else UNKNOWN_WORDS[int(r.integers(len(UNKNOWN_WORDS)))]
        else:
            label = -1
            k = int(r.integers(1, 6))
            words = []
            for d in r.integers(0, 10, size=k):
                words.append("oh" if d == 0 and r.random() < 0.5 else DIGIT_WORDS[int(d)])
            text = " ".join(words)
        plan.utterances.append(Utterance(text, voice, variant, rate, pitch, prange))
        plan.texts.append(text)
        plan.speakers.append(f"{voice}+{variant}")
        plan.labels.append(label)
    return plan


def _trim(x: np.ndarray, rel: float = 0.01) -> np.ndarray:
    """Cut leading/trailing near-silence (espeak pads every utterance)."""
    if x.size == 0:
        return x
    loud = np.nonzero(np.abs(x.astype(np.float32)) > rel * max(1, int(np.abs(x).max())))[0]
    return x[loud[0]: loud[-1] + 1] if loud.size else x[:0]


def render_split(cfg: SynthConfig, split: str, *, workers: int = 2, progress: bool = True) -> dict:
    """Synthesize and post-process one split: int16 waveforms (N, L) at 16 kHz + labels/texts."""
    import torchaudio.functional as AF

    plan = plan_split(cfg, split)
    speech_idx = [i for i, u in enumerate(plan.utterances) if u is not None]
    raw = synthesize([plan.utterances[i] for i in speech_idx], workers=workers, progress=progress,
                     desc=f"synth-{cfg.kind} {split}")
    canvas_22k = int(round(cfg.clip_seconds * ESPEAK_RATE))
    length = int(round(cfg.clip_seconds * SAMPLE_RATE))
    n = len(plan.utterances)
    out = np.zeros((n, length), dtype=np.int16)
    block = 256
    speech = dict(zip(speech_idx, raw))
    for s in range(0, n, block):
        ids = list(range(s, min(n, s + block)))
        canv = np.zeros((len(ids), canvas_22k), dtype=np.float32)
        for row, i in enumerate(ids):
            if i not in speech:
                continue
            x = _trim(speech[i]).astype(np.float32)
            if x.size == 0:
                raise RuntimeError(f"espeak-ng produced no audio for {plan.texts[i]!r} ({plan.speakers[i]})")
            if x.size > canvas_22k:
                raise RuntimeError(f"{plan.texts[i]!r} ({plan.speakers[i]}, rate {plan.utterances[i].rate}) lasts "
                                   f"{x.size / ESPEAK_RATE:.2f}s > the {cfg.clip_seconds}s window")
            r = _rng(cfg, split, i, 1)
            off = int(r.integers(0, canvas_22k - x.size + 1))  # time shift
            canv[row, off: off + x.size] = x / np.abs(x).max() * r.uniform(*cfg.peak)
        wav = AF.resample(torch.from_numpy(canv), ESPEAK_RATE, SAMPLE_RATE).numpy()[:, :length]
        for row, i in enumerate(ids):
            r = _rng(cfg, split, i, 2)
            noise = r.standard_normal(length).astype(np.float32)
            if i in speech:
                active = wav[row][np.abs(wav[row]) > 1e-4]
                rms = float(np.sqrt(np.mean(active ** 2))) if active.size else 1e-3
                level = rms * 10 ** (-r.uniform(*cfg.noise_snr_db) / 20)
            else:
                level = r.uniform(*cfg.silence_rms)
            y = np.clip(wav[row] + level * noise, -1.0, 32767 / 32768)
            out[i] = np.round(y * 32768).astype(np.int16)
    return {"waveform": out, "labels": np.array(plan.labels, dtype=np.int64), "texts": plan.texts,
            "speakers": plan.speakers}


def _save(folder: Path, parts: dict[str, dict], cfg: SynthConfig) -> None:
    from safetensors.numpy import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        meta = {"config": asdict(cfg), "generator_version": GENERATOR_VERSION, "sample_rate": SAMPLE_RATE}
        for split, d in parts.items():
            save_file({"waveform": d["waveform"], "labels": d["labels"]}, str(tmp / f"{split}.safetensors"))
            meta[split] = {"texts": d["texts"], "speakers": d["speakers"]}
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_or_generate(cfg: SynthConfig, *, progress: bool = True, workers: int = 2) -> dict[str, dict]:
    """Both splits of ``cfg``: from the cache, else generated and cached (atomically)."""
    from safetensors.numpy import load_file

    folder = cfg.folder()
    if not (folder / "meta.json").exists():
        parts = {split: render_split(cfg, split, workers=workers, progress=progress) for split in ("train", "test")}
        _save(folder, parts, cfg)
    meta = json.loads((folder / "meta.json").read_text())
    out = {}
    for split in ("train", "test"):
        arrays = load_file(str(folder / f"{split}.safetensors"))
        out[split] = {**arrays, **meta[split]}
    return out


def digest(cfg: SynthConfig) -> str:
    """sha256 over the cached arrays of both splits (for determinism checks and provenance)."""
    h = hashlib.sha256()
    for split in ("train", "test"):
        h.update((cfg.folder() / f"{split}.safetensors").read_bytes())
    return h.hexdigest()
