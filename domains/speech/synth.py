"""Offline synthetic speech with espeak-ng, driven through ctypes.

The ``espeakng-loader`` wheel ships ``libespeak-ng.so`` and its voice data, so
speech can be made with no network and no system package. espeak-ng is a
formant synthesizer (Klatt 1980 style); its "voices" (accents) and
"variants" (speaker characteristics: formant shifts, pitch, breathiness)
give us many distinct synthetic speakers.

Determinism: libespeak-ng carries state between utterances, so the same call
twice in one process can give slightly different samples (seeding its RNG or
libc's ``srand`` does not fix it). A fixed *call sequence* in a fresh process
is reproducible, though. So the clips are cut into fixed chunks (independent
of the number of workers) and every chunk is synthesized, in order, in its
own process forked from a parent that never loaded the library
(``multiprocessing`` "fork" context with ``maxtasksperchild=1``). The output
depends only on the job list, never on scheduling.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: espeak-ng's native output rate
ESPEAK_RATE = 22050

# espeak_PARAMETER values (speak_lib.h)
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1


@dataclass(frozen=True)
class Utterance:
    """One thing to say, and how.

    Attributes:
        text: what to say (plain text).
        voice: an espeak-ng voice (accent), e.g. ``en-us``.
        variant: a speaker variant from ``voices/!v``, e.g. ``f2`` or ``klatt3``.
        rate: words per minute (espeak range 80-450).
        pitch: base pitch 0-100 (espeak default 50).
        pitch_range: pitch range 0-100 (espeak default 50).
    """

    text: str
    voice: str
    variant: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


class _Engine:
    """The library in *this* process (only ever created inside a worker)."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        lib.espeak_SetSynthCallback.argtypes = [cb_type]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng initialization failed or unexpected rate ({rate})")
        self._chunks: list[np.ndarray] = []

        def callback(wav, n, events):  # copy out: the buffer is reused by the library
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._cb = cb_type(callback)  # keep a reference, or ctypes frees the trampoline
        lib.espeak_SetSynthCallback(self._cb)
        self.lib = lib

    def say(self, u: Utterance) -> np.ndarray:
        """int16 samples at 22,050 Hz."""
        if self.lib.espeak_SetVoiceByName(f"{u.voice}+{u.variant}".encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {u.voice}+{u.variant}")
        for param, value in ((_RATE, u.rate), (_VOLUME, 100), (_PITCH, u.pitch), (_RANGE, u.pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks = []
        # breathy variants (f1-f5, whisper, ...) add noise from espeak's own RNG, which is otherwise
        # seeded from the clock; reseeding before each utterance makes a fixed call order reproducible
        self.lib.espeak_ng_SetRandSeed(0)
        text = u.text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on {u.text!r}")
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def _synth_chunk(chunk: Sequence[Utterance]) -> list[np.ndarray]:
    engine = _Engine()
    return [engine.say(u) for u in chunk]


def synthesize(utterances: Sequence[Utterance], *, workers: int = 2, chunk_size: int = 256,
               progress: bool = True, desc: str = "espeak-ng") -> list[np.ndarray]:
    """Synthesize every utterance (int16 at 22,050 Hz), reproducibly.

    Each fixed chunk of ``chunk_size`` utterances runs in a fresh forked
    process (see the module docstring), so the result does not depend on
    ``workers``.
    """
    chunks = [list(utterances[i:i + chunk_size]) for i in range(0, len(utterances), chunk_size)]
    out: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(utterances), desc=desc, unit="clip", leave=False)
    ctx = mp.get_context("fork")
    with ctx.Pool(max(1, workers), maxtasksperchild=1) as pool:
        for res in pool.imap(_synth_chunk, chunks):
            out.extend(res)
            if bar is not None:
                bar.update(len(res))
    if bar is not None:
        bar.close()
    return out

