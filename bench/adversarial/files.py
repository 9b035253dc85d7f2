"""The on-disk format of saved adversarial examples (``xrobust eval --save-adv DIR``).

``DIR/manifest.json``
    ``format`` (``xrobust-adv/1``), ``track``, ``domain``, ``threat`` (dict + id), the model
    (``model`` spec, ``model_id``, ``defense``, ``checkpoint_sha256``), ``suite``, ``cascade``,
    ``seed``, ``n`` (the first n examples of the track's fixed subset), ``metrics`` (the
    evaluation's clean and robust accuracy, and error rates for WER tracks), ``result`` (the
    result file written beside it, if any) and ``examples``: one entry per example the worst
    case counts as broken by an attack, ``{index, position, attack, errors, label?, distance?,
    threat?, row? | line?}`` plus what a domain writer adds (speech: ``wav``, ``snr_db``).
``DIR/adv.safetensors``
    Examples of continuous attacks (pixels, waveforms, token embeddings): ``adv`` (k, ...)
    zero-padded to a common shape, ``shape`` (k, d) each example's own shape, ``index`` and
    ``position`` (k,). An entry's ``row`` points into it.
``DIR/adv.jsonl``
    Examples of discrete attacks, one JSON object per line (``index``, ``position``, ``attack``
    and the attack's record, e.g. text: ``original``, ``adversarial``, ``words_changed``). An
    entry's ``line`` points into it.

A domain may register a writer for listenable / readable copies in
:data:`bench.registry.ADV_WRITERS` (speech: ``wav/<index>.wav``). The folder
is written under a temporary name and renamed into place, so it is either
complete or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.errors import UserError

FORMAT = "xrobust-adv/1"
MANIFEST, TENSORS, RECORDS = "manifest.json", "adv.safetensors", "adv.jsonl"


def check_output_dir(folder: str | Path) -> Path:
    """``folder`` must not exist yet, or be an empty folder (checked before any attack runs)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"--save-adv {folder}: exists and is not an empty folder (adversarial examples are never "
                        "mixed with other files)")
    return folder


def _metrics(report) -> dict[str, float]:
    m = report.metrics()
    keys = ("clean_accuracy", "robust_accuracy", "clean_error_rate", "robust_error_rate")
    return {k: float(m[k]) for k in keys if k in m}


def save_adversarial(report, folder: str | Path, *, track, model: str, model_id: str | None = None,
                     defense: str | None = None, checkpoint_sha256: str | None = None, seed: int = 0,
                     y: Any = None, result: str | Path | None = None) -> Path:
    """Write the adversarial examples of ``report`` (``evaluate(..., keep_adv=True)``) to ``folder``.

    Args:
        report: the evaluation of the first ``report.n`` examples of ``track``'s fixed subset.
        track: the :class:`~bench.tracks.Track` evaluated (its id and domain are recorded).
        model: how to load the model again (a model spec or checkpoint path), for the verifier.
        y: the evaluated labels; class labels (a 1-D integer tensor) are recorded per example.
        result: the result file of this evaluation, recorded for reference.
    """
    from safetensors.torch import save_file

    from bench.registry import ADV_WRITERS

    if report.adversarial is None:
        raise UserError("the report holds no adversarial examples: evaluate with keep_adv=True")
    folder = check_output_dir(folder)
    examples = list(report.adversarial.values())
    labels = y.tolist() if isinstance(y, torch.Tensor) and y.dim() == 1 and not y.is_floating_point() else None
    entries: list[dict[str, Any]] = []
    rows = [ex for ex in examples if not ex.discrete]
    lines = [ex for ex in examples if ex.discrete]
    where = {id(ex): k for k, ex in enumerate(rows)} | {id(ex): k for k, ex in enumerate(lines)}
    for ex in examples:
        e: dict[str, Any] = {"index": ex.index, "position": ex.position, "attack": ex.attack, "errors": ex.errors}
        if labels is not None:
            e["label"] = int(labels[ex.position])
        if ex.threat:
            e["threat"] = ex.threat
        if ex.discrete:
            e["line"] = where[id(ex)]
        else:
            e["row"], e["distance"] = where[id(ex)], ex.distance
        entries.append(e)
    manifest = {
        "format": FORMAT, "track": track.id, "domain": track.domain, "threat": report.threat.to_dict(),
        "model": str(model), "model_id": model_id, "defense": defense, "checkpoint_sha256": checkpoint_sha256,
        "suite": [s.to_dict() for s in report.suite], "cascade": report.cascade, "seed": seed, "n": report.n,
        "metrics": _metrics(report), "result": str(result) if result is not None else None, "examples": entries,
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        if rows:
            d = max(ex.z.dim() for ex in rows)
            shape = torch.tensor([list(ex.z.shape) + [1] * (d - ex.z.dim()) for ex in rows], dtype=torch.int64)
            adv = torch.zeros((len(rows), *shape.amax(0).tolist()), dtype=rows[0].z.dtype)
            for r, ex in enumerate(rows):
                adv[r][tuple(slice(0, s) for s in ex.z.shape)] = ex.z
            save_file({"adv": adv.contiguous(), "shape": shape,
                       "index": torch.tensor([ex.index for ex in rows], dtype=torch.int64),
                       "position": torch.tensor([ex.position for ex in rows], dtype=torch.int64)},
                      str(tmp / TENSORS), metadata={"format": FORMAT, "track": track.id})
        if lines:
            with open(tmp / RECORDS, "w", encoding="utf-8") as f:
                for ex in lines:
                    f.write(json.dumps({"index": ex.index, "position": ex.position, "attack": ex.attack,
                                        **ex.record}, ensure_ascii=False) + "\n")
        if track.domain in ADV_WRITERS.names():
            ADV_WRITERS.get(track.domain)(tmp, examples, entries, report.threat)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        for f in tmp.rglob("*"):
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        os.chmod(tmp, 0o755)  # mkdtemp's folder is private
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def read_adversarial(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[dict[str, Any]]]:
    """``(manifest, tensors, records)`` of a saved folder; a malformed one is a :class:`UserError`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise UserError(f"{folder}: no {MANIFEST} (not a folder written by xrobust eval --save-adv)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{folder / MANIFEST}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{folder / MANIFEST}: format is not {FORMAT!r}")
    for key in ("track", "threat", "n", "metrics", "examples"):
        if key not in manifest:
            raise UserError(f"{folder / MANIFEST}: no {key!r}")
    tensors: dict[str, torch.Tensor] = {}
    if (folder / TENSORS).exists():
        try:
            tensors = load_file(str(folder / TENSORS))
        except Exception as exc:  # safetensors raises its own error types on a damaged file
            raise UserError(f"{folder / TENSORS}: cannot be read ({str(exc).splitlines()[0]})") from None
    records: list[dict[str, Any]] = []
    if (folder / RECORDS).exists():
        for k, line in enumerate((folder / RECORDS).read_text(encoding="utf-8").splitlines()):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise UserError(f"{folder / RECORDS}: line {k + 1} is not valid JSON ({exc})") from None
    return manifest, tensors, records
