"""Hugging Face speech models behind the ``hf:`` scheme of the model resolver (``bench.resolve``).

* ``audio-classification`` — ``AutoModelForAudioClassification`` (keyword spotting), as a
  :class:`~domains.speech.models.KeywordModel`: logits per clip.
* ``ctc`` — ``AutoModelForCTC`` (wav2vec 2.0, Baevski et al. 2020; HuBERT, WavLM, ...), as a
  :class:`~domains.speech.models.CTCRecognizer`: per-frame log-probs over the ASR tracks'
  alphabet (blank, space, apostrophe, a-z), so the CTC loss, greedy decoding and WER are the
  project's own. The model's character vocabulary is mapped onto it: its pad token is the CTC
  blank (as in wav2vec 2.0), its word delimiter ``|`` the space, upper and lower case letters
  the same letter (their probabilities added); tokens the alphabet cannot write (``<unk>``,
  ``<s>``, digits, punctuation) decode to nothing, so their probability joins the blank's.

The feature extractor runs inside, on the raw waveform in [-1, 1]: Wav2Vec2FeatureExtractor's
per-utterance zero-mean unit-variance normalisation (``do_normalize``). Extractors that compute
filter banks (AST, Whisper) are refused with one line rather than approximated.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import UserError
from bench.registry import HF_TASKS
from bench.resolve import HFTask
from domains.speech.models import CTCRecognizer, KeywordModel
from domains.speech.text import ALPHABET, NUM_TOKENS


class WaveformNormalize(nn.Module):
    """Wav2Vec2FeatureExtractor's ``do_normalize``: (x - mean) / sqrt(var + 1e-7) per utterance."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = bool(enabled)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return wav
        mean = wav.mean(dim=-1, keepdim=True)
        var = wav.var(dim=-1, keepdim=True, unbiased=False)
        return (wav - mean) / torch.sqrt(var + 1e-7)


def _front(ref: str, local_only: bool) -> tuple[WaveformNormalize, int]:
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

    fe = AutoFeatureExtractor.from_pretrained(ref, local_files_only=local_only)
    if not isinstance(fe, Wav2Vec2FeatureExtractor):
        raise UserError(f"feature extractor {type(fe).__name__} of {ref!r} has no differentiable version here "
                        f"(supported: Wav2Vec2FeatureExtractor, the raw-waveform models wav2vec 2.0, HuBERT, WavLM)")
    return WaveformNormalize(getattr(fe, "do_normalize", True)), int(fe.sampling_rate)


class HFAudioNet(nn.Module):
    def __init__(self, model: nn.Module, front: WaveformNormalize) -> None:
        super().__init__()
        self.model, self.front = model, front

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=self.front(wav)).logits


def build_hf_audio(ref: str, config: Any, local_only: bool, hints: Mapping[str, Any]) -> KeywordModel:
    """``AutoModelForAudioClassification`` on the waveform; ``num_keywords`` from the track, if any."""
    from transformers import AutoModelForAudioClassification

    front, rate = _front(ref, local_only)
    net = AutoModelForAudioClassification.from_pretrained(ref, local_files_only=local_only)
    spec = {"path": ref, "num_classes": int(config.num_labels)}
    model = KeywordModel(HFAudioNet(net, front), spec, hints.get("num_keywords"))
    model.requirements = {"domain": "speech", "sample_rate": rate, "num_classes": int(config.num_labels)}
    return model


def alphabet_map(vocab: Mapping[str, int], blank: int, delimiter: str | None, size: int = 0) -> torch.Tensor:
    """A ``(V, NUM_TOKENS)`` 0/1 matrix: which of the model's ``V`` output tokens writes which character of ours."""
    size = max(size, max(vocab.values()) + 1)
    m = torch.zeros(size, NUM_TOKENS)
    ours = {c: i + 1 for i, c in enumerate(ALPHABET)}
    for tok, i in vocab.items():
        c = " " if tok == delimiter else tok.lower() if len(tok) == 1 else None
        if i != blank and c in ours:
            m[i, ours[c]] = 1.0
    m[:, 0] = (m.sum(1) == 0).float()  # the blank, and every token the alphabet cannot write
    missing = [c for c in ALPHABET if c != "'" and m[:, ours[c]].sum() == 0]
    if missing:
        raise UserError(f"the CTC vocabulary has no {', '.join(repr(c) for c in missing[:5])}: the ASR tracks score "
                        f"characters (space, apostrophe, a-z), so the model must be character-level")
    return m


class HFCTCNet(nn.Module):
    """Per-frame log-probs of a transformers CTC model, mapped onto the project's alphabet (log-sum-exp)."""

    def __init__(self, model: nn.Module, front: WaveformNormalize, mapping: torch.Tensor) -> None:
        super().__init__()
        self.model, self.front = model, front
        # log(0) as -103 rather than -inf: a character no token writes (an apostrophe) keeps a finite
        # log-prob and a finite gradient; the mass it adds (1e-45) is below float32 resolution
        self.register_buffer("log_map", mapping.clamp_min(1e-45).log(), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, T, NUM_TOKENS)
        logp = F.log_softmax(self.model(input_values=self.front(wav)).logits.float(), dim=-1)
        return torch.logsumexp(logp[..., None] + self.log_map[: logp.shape[-1]], dim=-2)


def build_hf_ctc(ref: str, config: Any, local_only: bool, hints: Mapping[str, Any]) -> CTCRecognizer:
    """``AutoModelForCTC`` + its feature extractor and character tokenizer, scored on our alphabet."""
    from transformers import AutoModelForCTC, AutoTokenizer

    front, rate = _front(ref, local_only)
    net = AutoModelForCTC.from_pretrained(ref, local_files_only=local_only)
    tok = AutoTokenizer.from_pretrained(ref, local_files_only=local_only)
    blank = config.pad_token_id if config.pad_token_id is not None else tok.pad_token_id
    mapping = alphabet_map(tok.get_vocab(), int(blank), getattr(tok, "word_delimiter_token", None),
                           int(config.vocab_size))
    model = CTCRecognizer(HFCTCNet(net, front, mapping), {"path": ref, "num_tokens": NUM_TOKENS})
    model.requirements = {"domain": "speech", "sample_rate": rate, "num_tokens": NUM_TOKENS}
    return model


HF_TASKS.register("audio-classification", HFTask("MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES", build_hf_audio))
HF_TASKS.register("ctc", HFTask("MODEL_FOR_CTC_MAPPING_NAMES", build_hf_ctc))
