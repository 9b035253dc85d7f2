"""Checkpoints: safetensors weights + a JSON config, nothing else.

``save_checkpoint`` writes ``<stem>.safetensors`` and ``<stem>.json`` (and an
``<stem>.assets/`` folder for models with files such as a tokenizer), each
atomically. :func:`load_checkpoint` rebuilds the model from the registered
factory named in the JSON and loads the weights; it refuses anything that is
not safetensors + JSON (no pickle, ever).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bench.errors import UserError
from bench.registry import MODELS
from bench.task import TaskModel

FORMAT = "xrobust-checkpoint/1"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _paths(path: str | Path) -> tuple[Path, Path, Path]:
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json"), stem.with_suffix(".assets")


def save_checkpoint(path: str | Path, model: TaskModel, config: dict[str, Any]) -> Path:
    """Write weights and config atomically; returns the ``.safetensors`` path.

    ``config`` must name the registered ``model`` and may hold anything
    JSON-able; the model's ``spec`` (constructor kwargs) is added.
    """
    weights, meta, assets = _paths(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=weights.parent if weights.parent.exists() else None, suffix=".safetensors")
    os.close(fd)
    weights.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_file(state, tmp, metadata={"format": FORMAT})
        os.replace(tmp, weights)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if hasattr(model, "save_assets"):
        assets.mkdir(parents=True, exist_ok=True)
        model.save_assets(assets)
    doc = dict(config)
    doc["format"] = FORMAT
    doc["model_spec"] = dict(getattr(model, "spec", {}) or {})
    doc["weights_sha256"] = sha256_file(weights)
    atomic_write_bytes(meta, json.dumps(doc, indent=2, sort_keys=True).encode())
    return weights


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    weights, meta, _ = _paths(path)
    if Path(path).suffix not in ("", ".safetensors", ".json") and not Path(path).is_dir():
        raise UserError(f"refusing to load {path}: checkpoints are .safetensors + .json only (no pickle)")
    if not weights.is_file():
        raise UserError(f"checkpoint not found: {weights}")
    if not meta.is_file():
        raise UserError(f"checkpoint config not found: {meta} (a checkpoint is .safetensors + .json)")
    try:
        doc = json.loads(meta.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"malformed checkpoint config {meta}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "model" not in doc:
        raise UserError(f"{meta} is not an xrobust checkpoint config (format {FORMAT!r} with a 'model')")
    return doc


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> TaskModel:
    """The trained model, in eval mode, whose ``forward``/``predict`` take raw inputs.

    Args:
        path: the ``.safetensors`` file, its ``.json`` or their folder.
    """
    weights, _, assets = _paths(path)
    doc = read_checkpoint_config(path)
    factory = MODELS.get(doc["model"])
    spec = dict(doc.get("model_spec") or {})
    if assets.is_dir():
        spec["assets_dir"] = str(assets)
    model = factory(**spec)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise UserError(f"cannot read {weights} as safetensors: {exc}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"checkpoint {weights} does not match model {doc['model']!r}: "
                        f"missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}")
    model.checkpoint_config = doc
    return model.to(device).eval()
