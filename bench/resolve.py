"""One model resolver: ``scheme:reference`` -> a ready :class:`~bench.task.TaskModel` (eval mode).

In the spirit of timm's ``create_model``, Hugging Face's ``from_pretrained`` and RobustBench's
``load_model``, every way to name a model is one registration in :data:`bench.registry.SCHEMES`
(a new scheme is one decorated function)::

    zoo:<track>/<defense>                  a published checkpoint (zoo/), sha256-checked against its result;
                                           the bare <track>/<defense> is an alias
    hf:<repo-id or folder>[#task]          transformers Auto classes: image / audio classification, CTC, text
    timm:<name>[@weights-file]             a timm classifier (domains/image/pretrained.py)
    torchvision:<name>[@weights-file]      a torchvision classifier (domains/image/pretrained.py)
    robustbench:<dataset>/<threat>/<name>  RobustBench's model zoo, from its local cache
    <module>:<object>                      a plug-in: an ``nn.Module``, or a function returning one

Wrappers put the preprocessing (normalisation, feature extraction, tokenisation) inside the model,
so attacks see raw pixels in [0, 1], waveforms in [-1, 1] or token embeddings (DESIGN.md). Each
resolved model carries a :class:`ModelSource` (``model.source``): the ids its result file gets and
the sha256 of its weights. What a model can run on is declared in ``model.requirements`` (domain,
``in_channels``, ``image_size``, ``sample_rate``, ``num_classes``, ``num_tokens``) and checked
against a track before any attack (:func:`check_compatible`).
"""

from __future__ import annotations

import hashlib
import importlib
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from bench.errors import UserError
from bench.registry import HF_TASKS, SCHEMES
from bench.task import TaskModel, as_task_model

#: what a model may declare it needs, compared with the track's dataset metadata (+ the track's domain)
REQUIREMENT_KEYS = ("domain", "in_channels", "image_size", "sample_rate", "num_classes", "num_tokens")


@dataclass(frozen=True)
class ModelSource:
    """Where a resolved model came from, as its result file records it.

    Attributes:
        spec: the spec as given, e.g. ``timm:resnet18@weights.safetensors``.
        model_id, defense: the result file's ids (``^[a-z0-9][a-z0-9_.+-]*$``).
        sha256: of the weights file, or of the state dict when there is no single file.
        config: what the result's provenance records about the model (a checkpoint config for ``zoo:``).
    """

    spec: str
    model_id: str
    defense: str
    sha256: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HFTask:
    """A Hugging Face task kind the ``hf:`` scheme can wrap (registered in ``HF_TASKS`` by a domain).

    Attributes:
        mapping: name of the transformers ``MODEL_FOR_*_MAPPING_NAMES`` table that recognises the
            task from a config (``model_type`` -> architecture class name).
        build: ``build(ref, config, local_only, hints) -> TaskModel``.
    """

    mapping: str
    build: Callable[..., TaskModel]


# ------------------------------------------------------------------------- helpers for schemes
def slug(text: str) -> str:
    """A result-file id from any name: lower case, runs of other characters -> ``-``."""
    s = re.sub(r"[^a-z0-9_.+]+", "-", text.lower()).strip("-._+")
    return s[:100] or "model"


def state_sha256(module: nn.Module) -> str:
    """A digest of a state dict (names, dtypes, shapes, bytes): the weights' identity without a single file."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def require(module: str, extra: str, scheme: str):
    """Import an optional dependency, or one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"the {scheme}: scheme needs the {module!r} package ({exc}); "
                        f"install it with pip install 'xrobust[{extra}]'") from None


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state dict and the file's metadata from safetensors, or ``torch.load(weights_only=True)``.

    Raw pickle is never run: ``weights_only`` refuses anything but tensors and plain containers.
    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a DDP ``module.`` prefix are removed.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"weights file not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and the weights-only unpickler raise their own types
        raise UserError(f"cannot read weights {p}: {str(exc).splitlines()[0]}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{p} holds no state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj, {}


def load_state(net: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise UserError(f"weights do not fit {what}: {' '.join(lines[1:3]) or lines[0]}"[:400]) from None


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` inside (a third-party loader's too) runs with ``weights_only=True``."""
    import os

    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------- the resolver
def parse(spec: str) -> tuple[str, str]:
    """``(scheme, reference)``; a bare ``<track>/<defense>`` is ``zoo``; an unknown prefix is a plug-in."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty model spec {spec!r}")
    head, sep, rest = spec.partition(":")
    if not sep:
        if spec.count("/") == 1:
            return "zoo", spec
        raise UserError(f"malformed model spec {spec!r}: expected scheme:reference with a scheme in "
                        f"{', '.join(SCHEMES.names())}, module:object, or <track>/<defense>")
    if head in SCHEMES:
        return head, rest
    return "module", spec


def resolve(spec: str, device: str | torch.device = "cpu", hints: Mapping[str, Any] | None = None,
            **options: Any) -> TaskModel:
    """The model named by ``spec``, in eval mode on ``device``, with ``model.source`` set.

    Args:
        spec: ``scheme:reference`` (see the module docstring).
        hints: the track's dataset metadata when known (e.g. ``num_keywords`` for a KWS model's
            keyword-only accuracy), as a track's own model factory receives it.
        options: passed to the scheme (``root``/``results`` for ``zoo:``).
    """
    scheme, ref = parse(spec)
    if not ref:
        raise UserError(f"malformed model spec {spec!r}: nothing after {scheme}:")
    fn = _plugin if scheme == "module" else SCHEMES.get(scheme)
    out = fn(ref, hints=dict(hints or {}), **options)
    model, source = out if isinstance(out, tuple) else (out, None)
    model = as_task_model(model)
    if source is None:
        source = ModelSource(spec, slug(f"{scheme}-{ref}"), "external", state_sha256(model))
    model.source = replace(source, spec=spec)
    return model.to(device).eval()


def _plugin(ref: str, hints: Mapping[str, Any], **_) -> tuple[TaskModel, ModelSource]:
    """``module:object``: an ``nn.Module``, or a callable returning one (called without arguments)."""
    from bench.registry import _import_object

    try:
        obj = _import_object(ref)
    except (ImportError, AttributeError) as exc:
        known = ", ".join(SCHEMES.names())
        raise UserError(f"model spec {ref!r}: {ref.partition(':')[0]!r} is neither a scheme ({known}) nor an "
                        f"importable module:object ({exc})") from None
    model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else None
    if not isinstance(model, nn.Module):
        raise UserError(f"plug-in {ref!r} gave {type(model).__name__}, not a torch nn.Module")
    model = as_task_model(model)
    return model, ModelSource(ref, slug(ref), "external", state_sha256(model))


@SCHEMES.register("zoo")
def zoo_model(ref: str, hints: Mapping[str, Any], root: str | Path | None = None,
              results: str | Path | None = None, **_) -> tuple[TaskModel, ModelSource]:
    """``zoo:<track>/<defense>``: a published checkpoint (``bench.zoo``), sha256-checked against its result."""
    from bench.checkpoint import load_checkpoint, sha256_file
    from bench.zoo import checked_path

    path = checked_path(ref, root, results)
    model = load_checkpoint(path)
    cfg = dict(model.checkpoint_config)
    return model, ModelSource(ref, cfg["model"], cfg["recipe"], sha256_file(path), cfg)


@SCHEMES.register("hf")
def hf_model(ref: str, hints: Mapping[str, Any], **_) -> tuple[TaskModel, ModelSource]:
    """``hf:<repo-id or folder>[#task]``: a transformers model with its processor inside (Wolf et al. 2020).

    A local folder is read with ``local_files_only``; a repo id goes through the hub cache (and
    ``HF_HUB_OFFLINE=1`` keeps it to the cache). The task is recognised from the config's
    architecture by the tables of transformers' Auto classes; ``#task`` picks one of
    ``HF_TASKS`` (``image-classification``, ``audio-classification``, ``ctc``, ``text-classification``).
    """
    from transformers import AutoConfig
    from transformers.models.auto import modeling_auto

    name, _, task = ref.partition("#")
    local = Path(name).is_dir()
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load the Hugging Face model {name!r}: {str(exc).splitlines()[0]}") from None
    if not task:
        arch = (getattr(config, "architectures", None) or [None])[0]
        tables = {t: getattr(modeling_auto, HF_TASKS.get(t).mapping, {}) for t in HF_TASKS.names()}
        exact = [t for t, tab in tables.items() if arch is not None and tab.get(config.model_type) == arch]
        loose = [t for t, tab in tables.items() if config.model_type in tab]
        found = exact or loose
        if len(found) != 1:
            raise UserError(f"cannot tell the task of {name!r} (model type {config.model_type!r}, architecture "
                            f"{arch!r}; candidates: {', '.join(found) or 'none'}): name one as "
                            f"hf:{name}#<task>, task in {', '.join(HF_TASKS.names())}")
        task = found[0]
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would come before the CLI's one-line errors
    try:
        model = HF_TASKS.get(task).build(name, config=config, local_only=local, hints=hints)
    except (OSError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cannot load the Hugging Face {task} model {name!r}: {str(exc).splitlines()[0]}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    label = Path(name).name if local else name
    files = [Path(name) / f for f in ("model.safetensors", "pytorch_model.bin")] if local else []
    files = [f for f in files if f.is_file()]
    from bench.checkpoint import sha256_file

    sha = sha256_file(files[0]) if len(files) == 1 else state_sha256(model)
    return model, ModelSource(ref, slug(f"hf-{label}"), "pretrained", sha,
                              {"scheme": "hf", "task": task, "name": name, "model_type": config.model_type})


# ------------------------------------------------------------------------- fitting a track
def model_requirements(model: nn.Module) -> dict[str, Any]:
    """What the model declares it needs: ``model.requirements``, then the matching keys of its factory
    ``spec`` and its checkpoint's ``domain`` (so the project's own checkpoints declare theirs)."""
    need = dict(getattr(model, "requirements", None) or {})
    spec = getattr(model, "spec", None) or {}
    for k in REQUIREMENT_KEYS:
        if k in spec and spec[k] is not None:
            need.setdefault(k, spec[k])
    domain = (getattr(model, "checkpoint_config", None) or {}).get("domain")
    if domain:
        need.setdefault("domain", domain)
    return need


def check_requirements(model: nn.Module, track, meta: Mapping[str, Any], name: str | None = None) -> None:
    """The declared part of :func:`check_compatible`: needs only the track's dataset metadata, so it runs
    before the model's own preprocessing (a tokenizer given images would fail with a less clear error)."""
    name = name or getattr(getattr(model, "source", None), "spec", None) or type(model).__name__
    have = {"domain": track.domain, **{k: meta.get(k) for k in REQUIREMENT_KEYS[1:]}}
    bad = []
    for key, want in model_requirements(model).items():
        if key not in have:
            continue
        got = have[key]
        if got is None or _norm(got) != _norm(want):
            bad.append(f"{key} {want} (the track: {got if got is not None else 'none'})")
    if bad:
        raise UserError(f"model {name!r} does not fit track {track.id!r}: {', '.join(bad)}")


def check_compatible(model: TaskModel, track, data, device: str | torch.device = "cpu",
                     name: str | None = None) -> None:
    """Fail in one line (:class:`UserError`) when ``model`` cannot run on ``track``, before any attack.

    Declared requirements (:func:`model_requirements`) are compared with the track's domain and
    its dataset's metadata (``in_channels``, ``image_size``, ``sample_rate``, ``num_classes``,
    ``num_tokens``); then two examples of ``data`` (already prepared for the model) are run, and
    the outputs must have one logit per class (or per CTC token) of the track.
    """
    from bench.data import check_inputs, take, to_device

    name = name or getattr(getattr(model, "source", None), "spec", None) or type(model).__name__
    check_requirements(model, track, data.meta, name)
    have = {k: data.meta.get(k) for k in REQUIREMENT_KEYS[1:]}
    check_inputs(model, data, device, f"model {name!r} on track {track.id!r}")
    key = "num_tokens" if getattr(model, "objective", "ce") == "ctc" else "num_classes"
    want = have.get(key)
    if want is None:
        return
    head = to_device(take(data.inputs, torch.arange(min(2, len(data)))), device)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            z, ctx = model.encode(head)
            out = model(z, ctx.to(device))
    finally:
        model.train(was)
    if isinstance(out, torch.Tensor) and out.shape[-1] != int(want):
        raise UserError(f"model {name!r} does not fit track {track.id!r}: {out.shape[-1]} outputs per "
                        f"{'frame' if key == 'num_tokens' else 'example'}, the track has {key} {want}")


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and len(v) == 2 and v[0] == v[1]:
        return int(v[0])  # a square image size
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def load_model(spec: str, device: str | torch.device = "cpu", root: str | Path | None = None,
               results: str | Path | None = None, *, track: Any = None) -> TaskModel:
    """Any model by name, ready for :func:`bench.evaluate` (eval mode, preprocessing inside).

    Args:
        spec: ``zoo:<track>/<defense>`` (or the bare ``<track>/<defense>``), ``hf:...``, ``timm:...``,
            ``torchvision:...``, ``robustbench:...`` or ``module:object`` (see :mod:`bench.resolve`).
        root, results: the zoo and the published results (``zoo:`` only; defaults: the repository's).
        track: a track (or its id): the model is checked to fit it (:func:`check_compatible`).
    """
    if track is None:
        return resolve(spec, device, root=root, results=results)
    from bench.tracks import Track, get_track

    track = track if isinstance(track, Track) else get_track(track)
    data, _ = track.eval_data()
    model = resolve(spec, device, hints=data.meta, root=root, results=results)
    check_requirements(model, track, data.meta, spec)
    prep = getattr(model, "prepare", None)
    check_compatible(model, track, prep(data) if callable(prep) else data, device, spec)
    return model
