"""Listenable copies of saved speech adversarial examples (``xrobust eval --save-adv``).

Each continuous example (a waveform) is also written as ``wav/<index>.wav``
(16-bit PCM at the data's sample rate, with ``soundfile``), and its entry in
the manifest gets ``wav`` and ``snr_db``: the achieved signal-to-perturbation
ratio 20·log10(‖x‖₂ / ‖δ‖₂). The exact float samples stay in
``adv.safetensors``; the WAV files are for listening, not for verification.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.registry import ADV_WRITERS
from bench.threat import ThreatModel
from domains.speech.synthdata import SAMPLE_RATE


def achieved_snr_db(distance: float, threat: ThreatModel) -> float | None:
    """SNR of a perturbation ``distance`` x the radius of an L2 ``snr-<eps>db`` threat: eps - 20·log10(distance)."""
    if threat.scale != "snr-db" or threat.norm != "l2":
        return None
    return math.inf if distance <= 0 else threat.eps - 20.0 * math.log10(distance)


@ADV_WRITERS.register("speech")
def write_wavs(folder: Path, examples, entries, threat: ThreatModel, sample_rate: int = SAMPLE_RATE) -> None:
    import soundfile as sf

    (folder / "wav").mkdir(exist_ok=True)
    for ex, entry in zip(examples, entries):
        if ex.z is None:
            continue
        name = f"wav/{ex.index}.wav"
        sf.write(str(folder / name), ex.z.reshape(-1).clamp(-1, 1).numpy(), sample_rate, subtype="PCM_16")
        entry["wav"] = name
        found = ThreatModel.from_id(ex.threat, bounds=threat.bounds) if ex.threat else threat
        snr = achieved_snr_db(float(ex.distance), found)
        if snr is not None:
            entry["snr_db"] = snr if math.isfinite(snr) else None
