"""Targeted evaluation: how often an attack makes the model output a chosen target.

Untargeted robustness asks whether *any* error can be forced; a targeted attack asks for a
specific output -- a chosen keyword, or a whole chosen transcript (Carlini & Wagner 2018) --
which is what an attacker of a voice interface wants. A track declares the targeted attack
(``Track.targeted``) and the rule that draws each example's target (``Track.target_rule``, a
:data:`~bench.registry.TARGET_RULES` entry of the domain: e.g. another digit string of the same
length). Targets are drawn per example from ``(seed, rule, example index)``, so they do not
depend on batching, and are recorded in the result file.

Per example: the target, success (the output equals the target exactly), the errors against the
target (word edits for a transcript, 0/1 for a class) and the model's secondary errors against
it (character edits), and the achieved budget of the adversarial input (dB SNR for audio).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from bench.attacks.base import model_errors
from bench.data import ArrayData, to_device
from bench.errors import UserError
from bench.evaluate import _detail_units, _details, _units, achieved_summary
from bench.registry import TARGET_RULES
from bench.suites import AttackSpec
from bench.task import as_task_model
from bench.threat import ThreatModel


@dataclass
class TargetedReport:
    """Per-example outcomes of a targeted evaluation (tensors of shape ``(n,)``)."""

    threat: ThreatModel
    attack: AttackSpec
    rule: str
    targets: list[str]
    errors: torch.Tensor          # errors of the adversarial output against the target (0 = hit)
    clean_errors: torch.Tensor    # errors of the clean output against the target
    units: torch.Tensor           # the target's units (words of a target transcript; 1 for a class)
    distance: torch.Tensor        # the adversarial perturbation / radius
    details: dict[str, torch.Tensor] = field(default_factory=dict)  # "adv/<k>", "units/<k>"
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(self.errors.numel())

    @property
    def success(self) -> torch.Tensor:
        return self.errors == 0

    def metrics(self) -> dict[str, Any]:
        rate = lambda e, u: float(e.double().sum() / u.double().sum().clamp_min(1))  # noqa: E731
        m: dict[str, Any] = {
            "attack": self.attack.name, "params": dict(self.attack.params), "rule": self.rule, "n": self.n,
            "success_rate": float(self.success.double().mean()) if self.n else 0.0,
            "clean_success_rate": float((self.clean_errors == 0).double().mean()) if self.n else 0.0,
        }
        if not bool(((self.errors == 0) | (self.errors == 1)).all() and (self.units == 1).all()):
            m["target_wer"] = rate(self.errors, self.units)
        if "units/char" in self.details:
            m["target_cer"] = rate(self.details["adv/char"], self.details["units/char"])
        if self.threat.scale == "snr-db" and self.threat.space == "input":
            m["achieved_snr_db"] = achieved_summary(self.threat.achieved(self.distance.double()))
        return m


def draw_targets(rule: str, y: Any, meta: dict, index: torch.Tensor, seed: int) -> tuple[Any, list[str]]:
    """The targets of ``rule`` for labels ``y``: ``(targets shaped like y, their texts)``."""
    return TARGET_RULES.get(rule)(y, meta, index, seed)


@torch.no_grad()
def evaluate_targeted(model: nn.Module, x: Any, y: Any, threat: ThreatModel, attack: AttackSpec, rule: str, *,
                      meta: dict | None = None, batch_size: int = 256, seed: int = 0,
                      device: str | torch.device | None = None, index: torch.Tensor | None = None,
                      progress: bool = False) -> TargetedReport:
    """Attack every example towards its target (drawn by ``rule``) and score the outputs against it."""
    tm = as_task_model(model)
    was_training = tm.training
    tm.eval()
    try:
        data = ArrayData(x, y)
        n = len(data)
        gidx = index if index is not None else torch.arange(n)
        targets, texts = draw_targets(rule, y, meta or {}, gidx, seed)
        tdata = ArrayData(x, targets)
        if device is None:
            device = next((p.device for p in tm.parameters()), torch.device("cpu"))
        built = attack.build(seed)
        if getattr(built, "discrete", False):
            raise UserError(f"targeted attack {attack.name!r} must be a continuous attack")
        errors, clean_errors, units = torch.zeros(n), torch.zeros(n), torch.zeros(n)
        distance = torch.full((n,), float("nan"))
        details: dict[str, torch.Tensor] = {}
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, desc=f"targeted {threat.id}", unit="ex", leave=False)
        for pos, xb, tb in tdata.batches(batch_size):
            xb, tb = to_device(xb, device), to_device(tb, device)
            z, ctx = tm.encode(xb)
            z = z.detach()
            ctx = replace(ctx, index=gidx[pos]).to(device)
            clean_errors[pos] = model_errors(tm, tm(z, ctx), tb).float().cpu()
            z_adv = built.run(tm, z, ctx, tb, threat)
            out = tm(z_adv, ctx)
            errors[pos] = model_errors(tm, out, tb).float().cpu()
            units[pos] = _units(tm, tb).cpu()
            distance[pos] = threat.distance(z_adv, z, ctx).float().cpu()
            for k, v in _details(tm, out, tb).items():
                details.setdefault(f"adv/{k}", torch.zeros(n))[pos] = v
            for k, v in _detail_units(tm, tb).items():
                details.setdefault(f"units/{k}", torch.zeros(n))[pos] = v
            if bar is not None:
                bar.update(len(pos))
        if bar is not None:
            bar.close()
        return TargetedReport(threat, attack, rule, texts, errors, clean_errors, units, distance, details,
                              time.perf_counter() - t0)
    finally:
        tm.train(was_training)


def targeted_per_example(report: TargetedReport) -> dict[str, Any]:
    """The result file's ``per_example.targeted`` block."""
    from bench.results import bits

    def counts(t: torch.Tensor) -> list[int]:
        return [int(v) for v in t.double().round().long().tolist()]

    snr = report.threat.achieved(report.distance.double())
    doc: dict[str, Any] = {"targets": list(report.targets), "success": bits(report.success),
                           "target_errors": counts(report.errors), "target_units": counts(report.units),
                           "achieved": [float(v) if math.isfinite(v) else None for v in snr.tolist()]}
    if "units/char" in report.details:
        doc["target_char_errors"] = counts(report.details["adv/char"])
        doc["target_chars"] = counts(report.details["units/char"])
    return doc
