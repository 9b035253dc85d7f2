"""Image classifiers from other libraries, named through the model resolver (``bench.resolve``).

Every wrapper takes raw pixels in [0, 1] and does the library's preprocessing inside, in
differentiable torch, so attacks perturb pixels:

* ``hf:`` image classification — ``AutoModelForImageClassification`` + its ``AutoImageProcessor``
  (Wolf et al. 2020, "Transformers"): resize (bilinear/bicubic with antialiasing; PIL's kernels
  are not reproduced bit for bit), center crop, rescale, normalize. ConvNeXt's ``crop_pct``
  resizing is not applied.
* ``timm:<name>[@weights]`` — timm (Wightman 2019, "PyTorch Image Models"), mean/std from the
  model's ``pretrained_cfg``.
* ``torchvision:<name>[@weights]`` — torchvision classifiers (Marcel & Rodriguez 2010), mean/std
  from the weights enum's transforms, or ImageNet's.
* ``robustbench:<dataset>/<threat>/<name>`` — RobustBench (Croce et al. 2021, "RobustBench: a
  standardized adversarial robustness benchmark"); its models already take [0, 1] inputs.

A weights file (``@file``) is read with safetensors or ``torch.load(weights_only=True)``; the
number of classes and input channels are read from its classifier and first-conv shapes, and a
safetensors file's metadata may carry ``mean`` / ``std`` (JSON lists) for its normalisation.
A model whose channel count differs from its pretrained statistics (e.g. 1-channel timm) gets
their average per channel, as timm sums the first conv's kernels over channels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.checkpoint import sha256_file
from bench.errors import UserError
from bench.registry import HF_TASKS, SCHEMES
from bench.resolve import (HFTask, ModelSource, load_state, load_weights, require, slug, state_sha256,
                           weights_only_loads)
from bench.task import TaskModel
from domains.image.models import ImageClassifier

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(mean: Sequence[float], std: Sequence[float], channels: int, meta: Mapping[str, str]):
    """Per-channel mean/std: the weights file's metadata first, then the library's, fitted to ``channels``."""
    if "mean" in meta and "std" in meta:
        mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != channels:
        mean, std = [sum(mean) / len(mean)] * channels, [sum(std) / len(std)] * channels
    return mean, std


def _wrap(net: nn.Module, mean, std, requirements: dict[str, Any]) -> ImageClassifier:
    model = ImageClassifier(net, mean, std, {"mean": list(mean), "std": list(std)})
    model.requirements = {"domain": "image", **requirements}
    return model


def _weights_ids(scheme: str, name: str, weights: str) -> tuple[str, str]:
    return slug(f"{scheme}-{name}"), slug(Path(weights).stem) if weights else "pretrained"


# ------------------------------------------------------------------------------ Hugging Face
class HFImagePreprocess(nn.Module):
    """An image processor's resize / center crop / rescale / normalize as differentiable torch ops."""

    MODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}

    def __init__(self, processor: Any) -> None:
        super().__init__()
        get = lambda k, d=None: getattr(processor, k, d)  # noqa: E731
        size = get("size") if get("do_resize", False) else None
        crop = get("crop_size") if get("do_center_crop", False) else None
        self.size = self._hw(size, "size")
        self.crop = self._hw(crop, "crop_size") if crop is not None else None
        self.mode = self.MODES.get(int(get("resample", 2) or 2), "bilinear")
        self.scale = 255.0 * float(get("rescale_factor", 1 / 255)) if get("do_rescale", True) else 255.0
        normalize = get("do_normalize", False)
        mean = get("image_mean") if normalize else None
        std = get("image_std") if normalize else None
        self.register_buffer("mean", torch.tensor(list(mean or [0.0])).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std or [1.0])).view(1, -1, 1, 1), persistent=False)

    @staticmethod
    def _hw(size: Any, what: str):
        """``(h, w)``, ``("short", s)`` or ``None``."""
        if size is None:
            return None
        get = size.get if hasattr(size, "get") else (lambda k: getattr(size, k, None))
        if get("height") and get("width"):
            return (int(get("height")), int(get("width")))
        if get("shortest_edge") and not get("longest_edge"):
            return ("short", int(get("shortest_edge")))
        raise UserError(f"image processor {what} {size} is not supported (height/width or shortest_edge)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None:
            h, w = x.shape[-2:]
            if self.size[0] == "short":
                s = self.size[1]
                size = (s, max(1, round(w * s / h))) if h <= w else (max(1, round(h * s / w)), s)
            else:
                size = self.size
            if tuple(size) != (h, w):
                aa = self.mode in ("bilinear", "bicubic")
                x = F.interpolate(x, size=size, mode=self.mode, antialias=aa,
                                  **({} if self.mode == "nearest" else {"align_corners": False}))
        if self.crop is not None:
            ch, cw = self.crop
            h, w = x.shape[-2:]
            top, left = max(0, (h - ch) // 2), max(0, (w - cw) // 2)
            x = x[..., top:top + ch, left:left + cw]
        return (x * self.scale - self.mean) / self.std


class HFImageNet(nn.Module):
    def __init__(self, model: nn.Module, pre: HFImagePreprocess) -> None:
        super().__init__()
        self.model, self.pre = model, pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.pre(x)).logits


def build_hf_image(ref: str, config: Any, local_only: bool, hints: Mapping[str, Any]) -> TaskModel:
    """``AutoModelForImageClassification`` + ``AutoImageProcessor`` on pixels in [0, 1]."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    net = AutoModelForImageClassification.from_pretrained(ref, local_files_only=local_only)
    processor = AutoImageProcessor.from_pretrained(ref, local_files_only=local_only)
    model = TaskModel(HFImageNet(net, HFImagePreprocess(processor)))
    model.requirements = {"domain": "image", "in_channels": int(getattr(config, "num_channels", 3)),
                          "num_classes": int(config.num_labels)}
    return model


HF_TASKS.register("image-classification", HFTask("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", build_hf_image))


# ------------------------------------------------------------------------------------ timm
@SCHEMES.register("timm")
def timm_model(ref: str, hints: Mapping[str, Any], **_) -> tuple[TaskModel, ModelSource]:
    """``timm:<name>[@weights]``; without a file, timm's pretrained weights (through the HF hub cache)."""
    timm = require("timm", "models", "timm")
    name, _, weights = ref.partition("@")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:4]}*")[:5] if name else []
        raise UserError(f"unknown timm model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    meta: dict[str, str] = {}
    if weights:
        state, meta = load_weights(weights)
        cfg = timm.create_model(name, pretrained=False).pretrained_cfg
        head, first = cfg.get("classifier"), cfg.get("first_conv")
        head = head[0] if isinstance(head, (list, tuple)) else head
        first = first[0] if isinstance(first, (list, tuple)) else first
        kw = {}
        if head and f"{head}.weight" in state:
            kw["num_classes"] = int(state[f"{head}.weight"].shape[0])
        if first and f"{first}.weight" in state:
            kw["in_chans"] = int(state[f"{first}.weight"].shape[1])
        net = timm.create_model(name, pretrained=False, **kw)
        load_state(net, state, f"timm model {name!r}")
        sha = sha256_file(weights)
    else:
        try:
            net = timm.create_model(name, pretrained=True)
        except Exception as exc:  # hub errors have many types; the first line says which
            raise UserError(f"cannot load timm's pretrained {name!r}: {str(exc).splitlines()[0]}") from None
        sha = state_sha256(net)
    data_cfg = timm.data.resolve_model_data_config(net)
    channels = int(getattr(net, "in_chans", None) or _first_conv_channels(net) or data_cfg["input_size"][0])
    mean, std = _stats(data_cfg["mean"], data_cfg["std"], channels, meta)
    req = {"in_channels": channels, "num_classes": int(net.num_classes)}
    if net.pretrained_cfg.get("fixed_input_size"):
        req["image_size"] = tuple(int(s) for s in data_cfg["input_size"][1:])
    model_id, defense = _weights_ids("timm", name, weights)
    return _wrap(net, mean, std, req), ModelSource(ref, model_id, defense, sha,
                                                   {"scheme": "timm", "name": name, "timm": timm.__version__})


def _first_conv_channels(net: nn.Module) -> int | None:
    conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


# ----------------------------------------------------------------------------- torchvision
@SCHEMES.register("torchvision")
def torchvision_model(ref: str, hints: Mapping[str, Any], **_) -> tuple[TaskModel, ModelSource]:
    """``torchvision:<name>[@weights]``; without a file, the weights enum's DEFAULT (torch hub cache)."""
    import torchvision

    name, _, weights = ref.partition("@")
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=3)
        raise UserError(f"unknown torchvision classifier {name!r}"
                        + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        default = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        default = None
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if default is not None:
        tf = default.transforms()
        mean, std = getattr(tf, "mean", mean), getattr(tf, "std", std)
    meta: dict[str, str] = {}
    if weights:
        state, meta = load_weights(weights)
        heads = [n for n, m in torchvision.models.get_model(name, weights=None).named_modules()
                 if isinstance(m, nn.Linear)]
        kw = {}
        if heads and f"{heads[-1]}.weight" in state:
            kw["num_classes"] = int(state[f"{heads[-1]}.weight"].shape[0])
        net = torchvision.models.get_model(name, weights=None, **kw)
        load_state(net, state, f"torchvision model {name!r}")
        sha = sha256_file(weights)
    else:
        if default is None:
            raise UserError(f"torchvision has no pretrained weights for {name!r}: give a file, "
                            f"torchvision:{name}@weights.safetensors")
        try:
            net = torchvision.models.get_model(name, weights="DEFAULT")
        except Exception as exc:  # download errors have many types
            raise UserError(f"cannot load torchvision's {default}: {str(exc).splitlines()[0]}") from None
        sha = state_sha256(net)
    channels = _first_conv_channels(net) or 3
    mean, std = _stats(mean, std, channels, meta)
    heads = [m for m in net.modules() if isinstance(m, nn.Linear)]
    req = {"in_channels": channels}
    if heads:
        req["num_classes"] = heads[-1].out_features
    model_id, defense = _weights_ids("torchvision", name, weights)
    return _wrap(net, mean, std, req), ModelSource(ref, model_id, defense, sha,
                                                   {"scheme": "torchvision", "name": name,
                                                    "torchvision": torchvision.__version__})


# ----------------------------------------------------------------------------- RobustBench
#: RobustBench's datasets -> (classes, the image side its models were trained and evaluated at)
ROBUSTBENCH_DATA = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet": (1000, 224)}


def robustbench_dir() -> Path:
    """RobustBench's model folder (``<dir>/<dataset>/<threat>/<name>.pt``): ``$XROBUST_ROBUSTBENCH_DIR``, else
    ``<xrobust cache>/robustbench``."""
    from bench.wheeldata import cache_dir

    env = os.environ.get("XROBUST_ROBUSTBENCH_DIR")
    return Path(env) if env else cache_dir() / "robustbench"


def _import_robustbench():
    """``import robustbench``, or one line on why not.

    robustbench 1.1.1 (PyPI) declares ``pyautoattack`` but imports ``autoattack`` and
    ``autoattack.state``, which only fra31/auto-attack installed from GitHub provides.
    """
    try:
        import robustbench
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "autoattack":
            raise UserError("robustbench 1.1.1 imports the module 'autoattack' (fra31/auto-attack from GitHub), "
                            "which PyPI's pyautoattack does not provide: pip install "
                            "git+https://github.com/fra31/auto-attack, then the robustbench: scheme works") from None
        return require("robustbench", "robustbench", "robustbench")
    return robustbench


@SCHEMES.register("robustbench")
def robustbench_model(ref: str, hints: Mapping[str, Any], **_) -> tuple[TaskModel, ModelSource]:
    """``robustbench:<dataset>/<threat>/<name>`` through ``robustbench.utils.load_model``.

    Reads ``<robustbench_dir()>/<dataset>/<threat>/<name>.pt`` when present; otherwise RobustBench
    downloads it, unless ``HF_HUB_OFFLINE`` or ``XROBUST_NO_FETCH`` is set. Its ``torch.load``
    runs under ``weights_only=True`` (:func:`bench.resolve.weights_only_loads`).
    """
    parts = ref.split("/")
    if len(parts) != 3 or not all(parts):
        raise UserError(f"malformed robustbench spec {ref!r}: expected <dataset>/<threat>/<model-name>, "
                        f"e.g. robustbench:cifar10/Linf/Standard")
    dataset, threat, name = parts
    _import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    from robustbench.utils import load_model

    try:
        ds, tm = BenchmarkDataset(dataset), ThreatModel(threat)
    except ValueError:
        raise UserError(f"unknown RobustBench dataset/threat {dataset}/{threat}: datasets "
                        f"{', '.join(d.value for d in BenchmarkDataset)}, threats "
                        f"{', '.join(t.value for t in ThreatModel)}") from None
    zoo = model_dicts.get(ds, {}).get(tm, {})
    if name not in zoo:
        import difflib

        close = difflib.get_close_matches(name, list(zoo), n=3)
        raise UserError(f"RobustBench has no model {name!r} for {dataset}/{threat}"
                        + (f"; did you mean {', '.join(close)}?" if close else ""))
    folder = robustbench_dir()
    path = folder / ds.value / tm.value / f"{name}.pt"
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("XROBUST_NO_FETCH")
    if not path.is_file() and offline:
        raise UserError(f"RobustBench model {name!r} is not in the cache ({path}) and downloads are off")
    try:
        with weights_only_loads():
            net = load_model(name, model_dir=str(folder), dataset=ds.value, threat_model=tm.value)
    except Exception as exc:  # RobustBench raises plain Exceptions, RuntimeErrors and download errors
        raise UserError(f"RobustBench could not load {ref!r}: {str(exc).splitlines()[0]}") from None
    classes, side = ROBUSTBENCH_DATA.get(ds.value, (None, None))
    model = TaskModel(net)  # RobustBench models normalise inside: inputs in [0, 1]
    model.requirements = {"domain": "image", "in_channels": 3, "num_classes": classes, "image_size": side}
    model.requirements = {k: v for k, v in model.requirements.items() if v is not None}
    sha = sha256_file(path) if path.is_file() else state_sha256(net)
    return model, ModelSource(ref, slug(name), "robustbench", sha,
                              {"scheme": "robustbench", "dataset": ds.value, "threat": tm.value, "name": name})
