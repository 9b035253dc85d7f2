"""Listenable evidence of speech results (``xrobust eval --samples K``, :mod:`bench.samples`).

For each chosen example: ``clean.wav`` and ``adv.wav`` (16-bit PCM at the data's sample rate, with
``soundfile``), what the model makes of each (ASR: the greedy CTC transcript; keyword spotting: the
predicted class name), the reference (transcript or true class) and the achieved SNR of the
perturbation, 20·log10(‖x‖₂ / ‖x_adv − x‖₂) in dB (higher = quieter), measured on the float waveforms.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from bench.registry import SAMPLE_WRITERS
from bench.samples import SampleJob, SampleWriter, continuous_batch
from domains.speech.synthdata import SAMPLE_RATE
from domains.speech.text import greedy_decode, targets_to_texts


def snr_db(clean: torch.Tensor, adv: torch.Tensor) -> float | None:
    """20·log10(‖clean‖ / ‖adv − clean‖) of one waveform; None when either norm is zero."""
    signal, noise = float(clean.double().norm()), float((adv.double() - clean.double()).norm())
    return 20.0 * math.log10(signal / noise) if signal > 0 and noise > 0 else None


def _class_name(k: int, classes: list) -> str:
    return str(classes[k]) if 0 <= k < len(classes) else f"class {k}"


def write_speech_samples(model, z: torch.Tensor, z_adv: torch.Tensor, ctx, y: Any, paths: list[tuple[Path, Path]],
                         meta: dict[str, Any]) -> tuple[str, int, list[dict[str, Any]]]:
    """Write each example's clean and adversarial waveform to ``paths`` and describe it.

    ``y``: ASR transcripts as CTC targets (a dict), or keyword class ids (a tensor). Returns the task
    (``asr`` / ``kws``), the sample rate and one ``{reference, clean, adversarial, snr_db}`` per example.
    """
    import soundfile as sf

    rate = int(meta.get("sample_rate") or SAMPLE_RATE)
    with torch.no_grad():
        out_clean, out_adv = model(z, ctx), model(z_adv, ctx)
    if isinstance(y, dict):
        task = "asr"
        refs, hyp_clean, hyp_adv = targets_to_texts(y), greedy_decode(out_clean), greedy_decode(out_adv)
    else:
        task = "kws"
        classes = list(meta.get("classes") or [])
        refs = [_class_name(int(k), classes) for k in y.tolist()]
        hyp_clean = [_class_name(int(k), classes) for k in out_clean.argmax(-1).tolist()]
        hyp_adv = [_class_name(int(k), classes) for k in out_adv.argmax(-1).tolist()]
    described = []
    for i, (p_clean, p_adv) in enumerate(paths):
        x, xa = z[i].reshape(-1).float().cpu(), z_adv[i].reshape(-1).float().cpu()
        sf.write(str(p_clean), x.clamp(-1, 1).numpy(), rate, subtype="PCM_16")
        sf.write(str(p_adv), xa.clamp(-1, 1).numpy(), rate, subtype="PCM_16")
        described.append({"reference": refs[i], "clean": hyp_clean[i], "adversarial": hyp_adv[i],
                          "snr_db": snr_db(x, xa)})
    return task, rate, described


def _speech_job(job: SampleJob) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:class:`bench.samples.SampleWriter` entry: ``<index>/clean.wav`` and ``<index>/adv.wav`` per example."""
    rate = int(job.meta.get("sample_rate") or SAMPLE_RATE)
    task = "asr" if isinstance(job.y, dict) else "kws"
    if not job.chosen:
        return {"task": task, "sample_rate": rate}, []
    z, z_adv, ctx = continuous_batch(job)
    paths = [(job.folder / str(ex.index) / "clean.wav", job.folder / str(ex.index) / "adv.wav") for ex in job.chosen]
    task, rate, described = write_speech_samples(job.model, z, z_adv, ctx, job.y, paths, job.meta)
    files = [{"clean": pc.relative_to(job.folder).as_posix(), "adv": pa.relative_to(job.folder).as_posix()}
             for pc, pa in paths]
    return {"task": task, "sample_rate": int(rate)}, [{**d, "files": f} for d, f in zip(described, files)]


SAMPLE_WRITERS.register("speech", SampleWriter("audio", _speech_job))
