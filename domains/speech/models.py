"""Speech models on the raw waveform in [-1, 1]; feature extraction lives inside.

The adversary perturbs the waveform itself (z = waveform, bounds (-1, 1)),
so the Mel front end is part of the differentiable model and gradients reach
the samples (Carlini & Wagner 2018, "Audio Adversarial Examples").

* ``m5``: the raw-waveform 1-D CNN M5 (Dai et al. 2017, "Very Deep
  Convolutional Neural Networks for Raw Waveforms"), width configurable.
* ``melcnn``: log-Mel spectrogram + a small 2-D CNN (in the spirit of
  Sainath & Parada 2015, "Convolutional Neural Networks for Small-footprint
  Keyword Spotting").
* ``ctc-digits``: log-Mel + 1-D convolution + bidirectional GRU + a CTC head
  over characters (Graves et al. 2006; Amodei et al. 2016, Deep Speech 2,
  in miniature), greedy decoding.
* ``ctc-char``: the same architecture, wider and with 3 BiGRU layers, for the
  real corpora (LibriSpeech, Common Voice).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import LOSSES, MODELS
from bench.task import Context, TaskModel
from domains.speech.synthdata import SAMPLE_RATE
from domains.speech.text import NUM_TOKENS, char_edits, greedy_decode, ref_chars, targets_to_texts, word_edits

#: the waveform's valid range, for threat models (z = waveform)
BOUNDS = (-1.0, 1.0)


def as_waveform(inputs: torch.Tensor) -> torch.Tensor:
    """int16 PCM or float -> float32 waveform in [-1, 1], shape (B, L)."""
    if inputs.dtype == torch.int16:
        return inputs.float() / 32768.0
    return inputs.float()


class LogMel(nn.Module):
    """log(Mel(x) + floor): the floor keeps the log and its gradient finite on silence."""

    def __init__(self, n_mels: int = 40, n_fft: int = 400, hop: int = 160, floor: float = 1e-6,
                 sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop,
                                                        n_mels=n_mels, power=2.0)
        self.floor = floor

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, n_mels, T)
        return torch.log(self.mel(wav.float()) + self.floor)


class KeywordModel(TaskModel):
    """Keyword spotting: z = waveform, outputs = class logits."""

    def __init__(self, net: nn.Module, spec: dict, num_keywords: int | None = None) -> None:
        super().__init__(net)
        self.spec = spec
        self.num_keywords = num_keywords

    def encode(self, inputs):
        return as_waveform(inputs), Context()

    def forward(self, z, ctx=None):
        return self.net(z)

    def keyword_mask(self, y) -> torch.Tensor | None:
        """True for the keyword classes (labels < num_keywords): the examples the headline counts."""
        return (torch.as_tensor(y).cpu() < self.num_keywords) if self.num_keywords else None

    def extra_metrics(self, report, y) -> dict[str, Any]:
        """Accuracy over the keyword classes only (labels < num_keywords).

        An SNR budget is relative to each clip's energy, so near-silent clips
        (the ``silence`` class) get a near-zero budget and count as robust for
        free; the keyword-only numbers are the headline for speech.
        """
        if not self.num_keywords:
            return {}
        kw = (torch.as_tensor(y).cpu() < self.num_keywords)
        if not bool(kw.any()):
            return {}
        acc = lambda e: float((e[kw] == 0).float().mean())  # noqa: E731
        return {"clean_accuracy_keywords": acc(report.clean_errors),
                "robust_accuracy_keywords": acc(report.robust_errors),
                "n_keywords": int(kw.sum())}


class _Block2d(nn.Sequential):
    def __init__(self, cin: int, cout: int, pool: bool = True) -> None:
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


class MelCNN(nn.Module):
    def __init__(self, num_classes: int, n_mels: int, width: int, n_fft: int, hop: int) -> None:
        super().__init__()
        self.front = LogMel(n_mels=n_mels, n_fft=n_fft, hop=hop)
        self.norm = nn.BatchNorm2d(1)
        w = width
        self.body = nn.Sequential(_Block2d(1, w), _Block2d(w, 2 * w), _Block2d(2 * w, 4 * w),
                                  _Block2d(4 * w, 4 * w, pool=False))
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, wav):
        x = self.norm(self.front(wav).unsqueeze(1))
        return self.head(self.body(x).mean(dim=(2, 3)))


@MODELS.register("melcnn")
def melcnn(num_classes: int = 12, num_keywords: int | None = 10, n_mels: int = 40, width: int = 16,
           n_fft: int = 480, hop: int = 320, assets_dir=None, **_) -> KeywordModel:
    """Log-Mel (40 bands, 30 ms windows every 20 ms) + 4 conv blocks (w, 2w, 4w, 4w) + global average pool."""
    spec = {"num_classes": num_classes, "num_keywords": num_keywords, "n_mels": n_mels, "width": width,
            "n_fft": n_fft, "hop": hop}
    return KeywordModel(MelCNN(num_classes, n_mels, width, n_fft, hop), spec, num_keywords)


class M5(nn.Module):
    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        w = width

        def block(cin, cout, k, stride=1):
            return [nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2 if stride == 1 else 0, bias=False),
                    nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(4)]

        self.body = nn.Sequential(*block(1, w, 80, 4), *block(w, w, 3), *block(w, 2 * w, 3), *block(2 * w, 4 * w, 3))
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, wav):
        return self.head(self.body(wav.unsqueeze(1)).mean(dim=2))


@MODELS.register("m5")
def m5(num_classes: int = 12, num_keywords: int | None = 10, width: int = 32, assets_dir=None, **_) -> KeywordModel:
    """M5 (Dai et al. 2017): conv 80/4 then three conv-3 blocks, each + BN + ReLU + max-pool 4 (paper width 128)."""
    spec = {"num_classes": num_classes, "num_keywords": num_keywords, "width": width}
    return KeywordModel(M5(num_classes, width), spec, num_keywords)


# --------------------------------------------------------------------------- ASR
class CTCNet(nn.Module):
    def __init__(self, num_tokens: int, n_mels: int, hidden: int, hop: int, layers: int = 1) -> None:
        super().__init__()
        self.front = LogMel(n_mels=n_mels, hop=hop)
        self.norm = nn.BatchNorm1d(n_mels)
        self.conv = nn.Sequential(nn.Conv1d(n_mels, hidden, 5, padding=2, bias=False), nn.BatchNorm1d(hidden),
                                  nn.ReLU())
        self.rnn = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_tokens)

    def forward(self, wav):  # (B, L) -> (B, T, C) log-probs
        f = self.front(wav)
        # per-utterance mean/variance normalization of each band (CMVN): removes gain and channel
        f = (f - f.mean(dim=2, keepdim=True)) / (f.var(dim=2, keepdim=True) + 1e-4).sqrt()
        x = self.conv(self.norm(f))
        h, _ = self.rnn(x.transpose(1, 2))
        return F.log_softmax(self.head(h).float(), dim=-1)


class CTCRecognizer(TaskModel):
    """Speech recognition: z = waveform, outputs = per-frame log-probs ``(B, T, C)``.

    ``y`` is ``{"targets": (B, S) char ids padded with blank, "target_lengths": (B,)}``.
    Errors are word edits per utterance, units the reference word count, so
    the core's error rate is the word error rate.
    """

    objective = "ctc"
    binary_errors = False

    def __init__(self, net: nn.Module, spec: dict) -> None:
        super().__init__(net)
        self.spec = spec

    def encode(self, inputs):
        return as_waveform(inputs), Context()

    def forward(self, z, ctx=None):
        return self.net(z)

    def transcribe(self, inputs) -> list[str]:
        with torch.no_grad():
            return greedy_decode(self.predict(inputs))

    def errors(self, outputs: torch.Tensor, y: dict) -> torch.Tensor:
        hyp = greedy_decode(outputs)
        ref = targets_to_texts(y)
        return torch.tensor([float(word_edits(r, h)) for r, h in zip(ref, hyp)], device=outputs.device)

    def error_units(self, y: dict) -> torch.Tensor:
        return torch.tensor([float(len(t.split())) for t in targets_to_texts(y)])

    def error_details(self, outputs: torch.Tensor, y: dict) -> dict[str, torch.Tensor]:
        """Character edits per utterance (for the CER), next to the word edits of :meth:`errors`."""
        hyp = greedy_decode(outputs)
        ref = targets_to_texts(y)
        return {"char": torch.tensor([float(char_edits(r, h)) for r, h in zip(ref, hyp)])}

    def detail_units(self, y: dict) -> dict[str, torch.Tensor]:
        return {"char": torch.tensor([float(ref_chars(t)) for t in targets_to_texts(y)])}

    def extra_metrics(self, report, y) -> dict[str, Any]:
        """``clean_wer`` / ``robust_wer`` (per-utterance worst case over the suite) and WER per attack;
        ``clean_cer`` / ``robust_cer`` / ``per_attack_cer``: the character error rate of the same
        hypotheses (the worst case per utterance is the one with the most word errors)."""
        units = report.units.double().sum().clamp_min(1)  # float64, as clean/robust_error_rate
        w = lambda e: float(e.double().sum() / units)  # noqa: E731
        out = {"clean_wer": w(report.clean_errors), "robust_wer": w(report.robust_errors),
               "per_attack_wer": {k: w(v) for k, v in report.attack_errors.items()}}
        d = report.details
        if "units/char" in d:
            chars = d["units/char"].double().sum().clamp_min(1)
            c = lambda e: float(e.double().sum() / chars)  # noqa: E731
            out.update({"clean_cer": c(d["clean/char"]), "robust_cer": c(d["robust/char"]),
                        "per_attack_cer": {k: c(d[f"attack/{k}/char"]) for k in report.attack_errors}})
        return out


@MODELS.register("ctc-digits")
def ctc_digits(num_tokens: int = NUM_TOKENS, n_mels: int = 40, hidden: int = 64, hop: int = 320,
               assets_dir=None, **_) -> CTCRecognizer:
    """Log-Mel (20 ms frames) + per-utterance CMVN + conv(5) + BiGRU + linear CTC head over characters."""
    spec = {"num_tokens": num_tokens, "n_mels": n_mels, "hidden": hidden, "hop": hop}
    return CTCRecognizer(CTCNet(num_tokens, n_mels, hidden, hop), spec)


@MODELS.register("ctc-char")
def ctc_char(num_tokens: int = NUM_TOKENS, n_mels: int = 80, hidden: int = 256, layers: int = 3, hop: int = 320,
             assets_dir=None, **_) -> CTCRecognizer:
    """``ctc-digits`` grown for read and crowd-sourced speech (LibriSpeech, Common Voice): 80 Mel bands,
    3 BiGRU layers of 256 (about 3.2M parameters), same 20 ms frames, CMVN and character CTC head."""
    spec = {"num_tokens": num_tokens, "n_mels": n_mels, "hidden": hidden, "hop": hop, "layers": layers}
    return CTCRecognizer(CTCNet(num_tokens, n_mels, hidden, hop, layers), spec)


@LOSSES.register("ctc")
def ctc_loss(log_probs: torch.Tensor, y: dict) -> torch.Tensor:
    """Per-utterance CTC loss (Graves et al. 2006) of the transcript, divided by its length.

    Untargeted attacks maximize it for the true transcript; a targeted attack
    passes a chosen wrong transcript as ``y`` and minimizes it.
    """
    lp = log_probs.float().transpose(0, 1)  # (T, B, C)
    t, b = lp.shape[0], lp.shape[1]
    input_lengths = torch.full((b,), t, dtype=torch.int64)
    lengths = y["target_lengths"].to(torch.int64)
    loss = F.ctc_loss(lp, y["targets"], input_lengths, lengths, blank=0, reduction="none", zero_infinity=True)
    return loss / lengths.clamp_min(1).to(loss.dtype)
