"""Common corruptions: the non-adversarial distribution shifts of the corruption tracks.

Hendrycks & Dietterich (ICLR 2019, "Benchmarking neural network robustness to common
corruptions and perturbations") measure accuracy under fixed corruption types at five
severities and report the mean and the mean corruption error (mCE) relative to a baseline
model; Mu & Gilmer (2019, MNIST-C) give the single-severity set for digits. A corruption here is
a registered, seeded function of a whole batch of *raw* inputs (what the dataset loader
returns, before the model's own preprocessing), so it is deterministic given the seed and the
same for every model evaluated on the track:

- image: float tensor ``[N, C, H, W]`` in ``[0, 1]``;
- speech: float waveform tensor ``[N, T]`` in ``[-1, 1]`` at ``aux["sample_rate"]``;
- text: a list of strings (the domain's ``TextList``; return the same type).

Domains register their corruptions with :func:`register_corruption` under ``"<domain>/<name>"``;
the core never imports a domain. ``aux`` carries what a corruption may need besides the batch:
``sample_rate`` (speech), ``pool`` (raw training inputs of the track's dataset, e.g. for babble
noise made from other utterances), and is otherwise empty.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from bench.registry import CORRUPTIONS

#: ``fn(x, severity, rng, aux) -> corrupted x`` (same type and shape as ``x``)
CorruptionFn = Callable[[Any, int, np.random.Generator, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Corruption:
    """One corruption type.

    Attributes:
        name: short id, unique within its domain (``shot-noise``).
        domain: ``image``, ``speech`` or ``text``.
        fn: the corruption, see :data:`CorruptionFn`.
        severities: the severity levels it accepts (1..5, or ``(1,)`` for single-severity sets
            such as MNIST-C).
        description: one line: what it does and the source it follows.
        needs: keys of ``aux`` it reads (``("pool",)`` for babble noise).
    """

    name: str
    domain: str
    fn: CorruptionFn
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    description: str = ""
    needs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.domain}/{self.name}"

    def __call__(self, x: Any, severity: int, *, seed: int = 0, aux: Mapping[str, Any] | None = None) -> Any:
        if severity not in self.severities:
            raise ValueError(f"{self.key}: severity {severity} not in {self.severities}")
        missing = [k for k in self.needs if k not in (aux or {})]
        if missing:
            raise ValueError(f"{self.key} needs aux {missing}")
        return self.fn(x, severity, corruption_rng(seed, self.key, severity), aux or {})


def corruption_rng(seed: int, key: str, severity: int) -> np.random.Generator:
    """The generator of one (corruption, severity) cell: a function of the run seed and the cell only,
    so a cell's corrupted inputs do not depend on which other cells were evaluated, or in which order."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode()), int(severity)])


def register_corruption(c: Corruption) -> Corruption:
    CORRUPTIONS.register(c.key, c)
    return c


def get_corruption(key: str) -> Corruption:
    return CORRUPTIONS.get(key)


def domain_corruptions(domain: str) -> list[Corruption]:
    """Every registered corruption of a domain, sorted by name."""
    return [c for k, c in sorted(CORRUPTIONS.items()) if c.domain == domain]
