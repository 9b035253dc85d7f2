"""One generic registry for everything that is looked up by name.

Datasets, models, attacks, losses, recipes, suites, tracks, domains and the
model resolver's schemes all live in a :class:`Registry`. Entries are added
with a decorator, or lazily as ``"module:object"`` strings so that plug-ins
(and domains) are imported only when first used. A name of the form
``"pkg.mod:Obj"`` that is not registered is imported on the fly, which is how
a third-party recipe such as ``--recipe mypkg.mod:MyRecipe`` plugs in without
any edit here.

Domains are found through the ``xrobust.domains`` entry-point group
(see ``pyproject.toml``); :func:`load_domains` imports them once, and every
registry lookup triggers it, so ``bench`` never imports ``domains`` by name.
"""

from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from bench.errors import UserError

T = TypeVar("T")

_DOMAINS_LOADED = False


def _import_object(spec: str):
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def load_domains() -> list[str]:
    """Import every package registered under the ``xrobust.domains`` entry points.

    Returns the names loaded. Idempotent.
    """
    global _DOMAINS_LOADED
    if _DOMAINS_LOADED:
        return sorted(DOMAINS.names())
    _DOMAINS_LOADED = True
    for ep in metadata.entry_points(group="xrobust.domains"):
        if ep.name not in DOMAINS._items:
            DOMAINS.add_lazy(ep.name, ep.value)
    for name in list(DOMAINS.names()):
        DOMAINS.get(name)
    return sorted(DOMAINS.names())


class Registry(Generic[T]):
    """Name -> object map with lazy entries and a did-you-mean error."""

    def __init__(self, kind: str, *, load_plugins: bool = True) -> None:
        self.kind = kind
        self._items: dict[str, T | str] = {}
        self._load_plugins = load_plugins

    def register(self, name: str, obj: T | None = None, *, replace: bool = False):
        """Register ``obj`` under ``name``; usable as ``@REG.register("name")``."""

        def add(o: T) -> T:
            if not replace and name in self._items and self._items[name] is not o:
                existing = self._items[name]
                if not (isinstance(existing, str)):
                    raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o

        if obj is not None:
            return add(obj)
        return add

    def add_lazy(self, name: str, spec: str) -> None:
        """Register ``"module:object"``, imported the first time ``name`` is looked up."""
        if ":" not in spec and "." not in spec:
            raise ValueError(f"lazy {self.kind} entry must look like 'module:object', got {spec!r}")
        self._items.setdefault(name, spec)

    def _ensure_plugins(self) -> None:
        if self._load_plugins:
            load_domains()

    def get(self, name: str) -> T:
        self._ensure_plugins()
        if name not in self._items and ":" in name:
            try:
                obj = _import_object(name)
            except (ImportError, AttributeError) as exc:
                raise UserError(f"cannot import {self.kind} {name!r}: {exc}") from None
            self._items[name] = obj
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise UserError(f"unknown {self.kind} {name!r}{hint} (known: {known})")
        obj = self._items[name]
        if isinstance(obj, str):
            obj = _import_object(obj)
            self._items[name] = obj
        return obj  # type: ignore[return-value]

    def __contains__(self, name: str) -> bool:
        self._ensure_plugins()
        return name in self._items

    def names(self) -> list[str]:
        if self is not DOMAINS:
            self._ensure_plugins()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} entries)"


DOMAINS: Registry = Registry("domain", load_plugins=False)
DATASETS: Registry = Registry("dataset")
MODELS: Registry = Registry("model")
ATTACKS: Registry = Registry("attack")
LOSSES: Registry = Registry("loss")
SUITES: Registry = Registry("suite")
RECIPES: Registry = Registry("recipe")
TRACKS: Registry = Registry("track")
#: model resolver schemes (``zoo``, ``hf``, ``timm``, ...): ``scheme:reference`` -> a TaskModel (bench.resolve)
SCHEMES: Registry = Registry("model scheme")
#: Hugging Face task kinds the ``hf:`` scheme can wrap (image/audio classification, CTC, text), by domains
HF_TASKS: Registry = Registry("Hugging Face task")
#: extra, human-facing formats of saved adversarial examples, by domain (speech: WAV), see bench.adversarial
ADV_WRITERS: Registry = Registry("adversarial-example writer")
#: listenable / readable evidence beside a result file (speech: clean and adversarial WAVs), by domain (bench.samples)
SAMPLE_WRITERS: Registry = Registry("evidence-sample writer")
#: common corruptions of the corruption tracks, ``<domain>/<name>`` -> bench.corruptions.Corruption
CORRUPTIONS: Registry = Registry("corruption")
#: inference-time input transformations (bench.defenses), ``<domain>/<name>``
TRANSFORMS: Registry = Registry("transform")
#: how a targeted evaluation draws each example's target (bench.targeted), ``<domain>/<name>``:
#: ``rule(y, meta, index, seed) -> (targets shaped like y, their texts)``
TARGET_RULES: Registry = Registry("target rule")

Factory = Callable[..., T]
