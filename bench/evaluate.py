"""Worst-case-per-example evaluation over an attack suite (as AutoAttack reports it).

An example counts as robust only if *every* attack of the suite fails on it;
the robust number comes from per-example outcomes, never from the minimum of
per-attack averages. With ``cascade=True`` each attack only sees the examples
still robust after the previous ones (AutoAttack's schedule; cheaper, and
``per_attack`` then holds the accuracy *after* each attack, cumulatively).
Otherwise every attack runs on every clean-correct example and ``per_attack``
is the accuracy under that attack alone.

Errors are per example: 0/1 for classification, word edits for ASR (the task
model's ``errors``/``error_units``), so the same loop serves every domain. A
task model may also give secondary per-example errors (``error_details(outputs,
y) -> {name: errors}`` with ``detail_units(y) -> {name: units}``, e.g. character
edits for the CER of speech recognition): they are kept for the clean input,
for each attack and for the worst case, whose example is the one the primary
errors chose (``EvalReport.details``). For every continuous attack the size of
the worst-case perturbation is kept too (``details["distance"]``, relative to
the radius; NaN where no attack raised the errors), so a result can state the
budget an attack used, e.g. the achieved SNR of adversarial audio.

Discrete attacks (e.g. word substitution in text) do not move ``z``: an
attack with ``discrete = True`` implements ``run_inputs(model, inputs, y) ->
adversarial raw inputs``, which are encoded and scored like any other, so
they enter the same worst case. An attack may define ``stats() -> dict`` of
numbers (e.g. words changed, queries); they are reported under
``metrics["attack_stats"][name]`` and, when no other key has the name, at
the top level of the metrics.

With ``keep_adv=True`` the report also holds the adversarial examples the
worst case rests on (:mod:`bench.adversarial`): per example, the input of the
first attack that raised its errors to their final value. A discrete attack
must then describe its examples (``describe(x_clean, x_adv) -> list[dict]``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.adversarial.examples import AdvExample, own_shape_corner
from bench.attacks.base import model_errors
from bench.errors import UserError
from bench.data import ArrayData, check_inputs, length, take, to_device
from bench.suites import AttackSpec, resolve_suite
from bench.task import TaskModel, as_task_model
from bench.threat import ThreatModel


def _units(model: TaskModel, y: Any) -> torch.Tensor:
    fn = getattr(model, "error_units", None)
    return fn(y).float() if callable(fn) else torch.ones(length(y))


@dataclass
class EvalReport:
    """Per-example outcomes of one evaluation. Errors are float tensors of shape ``(n,)``."""

    threat: ThreatModel
    suite: tuple[AttackSpec, ...]
    clean_errors: torch.Tensor
    attack_errors: dict[str, torch.Tensor]
    robust_errors: torch.Tensor
    units: torch.Tensor
    cascade: bool
    seconds: float
    attack_seconds: dict[str, float] = field(default_factory=dict)
    #: remarks of the attacks (e.g. "DLR needs >= 3 classes; used the margin loss")
    notes: list[str] = field(default_factory=list)
    attack_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    #: the sanity flags (:func:`bench.sanity.compute_flags`) when ``evaluate(..., flags=True)``
    flags: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: with ``evaluate(..., keep_adv=True)``: position -> the adversarial example its worst case kept
    adversarial: dict[int, AdvExample] | None = None
    #: per-example arrays: ``clean/<k>``, ``robust/<k>``, ``attack/<name>/<k>``, ``units/<k>`` for the model's
    #: secondary errors (``error_details``), and ``distance`` (the worst case's perturbation / radius)
    details: dict[str, torch.Tensor] = field(default_factory=dict)

    def achieved(self) -> torch.Tensor:
        """Per example, the size of the worst-case perturbation in the units of eps (dB SNR for ``snr-db``
        threats, :meth:`ThreatModel.achieved`); NaN where no attack raised the errors."""
        d = self.details.get("distance")
        if d is None:
            return torch.full((self.n,), float("nan"), dtype=torch.float64)
        out = self.threat.achieved(d.double())
        return torch.where(torch.isnan(d.double()), torch.full_like(out, float("nan")), out)

    @property
    def n(self) -> int:
        return int(self.clean_errors.numel())

    @property
    def clean_correct(self) -> torch.Tensor:
        return self.clean_errors == 0

    @property
    def robust_correct(self) -> torch.Tensor:
        return self.robust_errors == 0

    def metrics(self) -> dict[str, Any]:
        acc = lambda e: float((e == 0).double().mean()) if e.numel() else 0.0  # noqa: E731
        rate = lambda e: float(e.double().sum() / self.units.double().sum().clamp_min(1))  # noqa: E731
        m: dict[str, Any] = {
            "clean_accuracy": acc(self.clean_errors),
            "robust_accuracy": acc(self.robust_errors),
            "per_attack": {k: acc(v) for k, v in self.attack_errors.items()},
            "per_attack_mode": "cumulative" if self.cascade else "alone",
        }
        if not bool(((self.clean_errors == 0) | (self.clean_errors == 1)).all() and (self.units == 1).all()):
            m["clean_error_rate"] = rate(self.clean_errors)
            m["robust_error_rate"] = rate(self.robust_errors)
            m["per_attack_error_rate"] = {k: rate(v) for k, v in self.attack_errors.items()}
        if self.threat.scale == "snr-db" and self.threat.space == "input":
            m["achieved_snr_db"] = achieved_summary(self.achieved())
        if self.attack_stats:
            m["attack_stats"] = {k: dict(v) for k, v in self.attack_stats.items()}
            for stats in self.attack_stats.values():
                for k, v in stats.items():
                    m.setdefault(k, v)
        return m


def achieved_summary(values: torch.Tensor) -> dict[str, Any]:
    """Mean and median of the finite per-example values (NaN: not attacked, inf: untouched), and their count."""
    v = values.double()
    v = v[torch.isfinite(v)]
    if not v.numel():
        return {"mean": None, "median": None, "n": 0}
    return {"mean": float(v.mean()), "median": float(v.median()), "n": int(v.numel())}


def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(positions, clean, per, worst, units, kept, extra):
    """Combine every rank's share of the per-example outcomes (all ranks get the full arrays)."""
    import torch.distributed as dist

    mine = (positions, clean[positions], {k: v[positions] for k, v in per.items()}, worst[positions],
            units[positions], kept, {k: v[positions] for k, v in extra.items()})
    shares = [None] * dist.get_world_size()
    dist.all_gather_object(shares, mine)
    for pos, c, p, w, u, k_, x_ in shares:
        clean[pos], worst[pos], units[pos] = c, w, u
        for k in per:
            per[k][pos] = p[k]
        for k, v in x_.items():
            extra.setdefault(k, torch.full_like(worst, float("nan")))[pos] = v
        if kept is not None:
            kept.update(k_)
    return clean, per, worst, units, kept, extra


def _save_partial(path: Path, key: str, done, clean, per, worst, units, extra) -> None:
    from bench.checkpoint import atomic_write_bytes

    doc = {"key": key, "done": sorted(done), "clean": clean.tolist(), "worst": worst.tolist(),
           "units": units.tolist(), "per": {k: v.tolist() for k, v in per.items()},
           "extra": {k: v.tolist() for k, v in extra.items()}}
    atomic_write_bytes(path, json.dumps(doc).encode())


def _load_partial(path: Path, key: str) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged partial file only costs the work it held
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


def _details(model: TaskModel, outputs, y) -> dict[str, torch.Tensor]:
    fn = getattr(model, "error_details", None)
    return {k: v.float().cpu() for k, v in fn(outputs, y).items()} if callable(fn) else {}


def _detail_units(model: TaskModel, y) -> dict[str, torch.Tensor]:
    fn = getattr(model, "detail_units", None)
    return {k: v.float().cpu() for k, v in fn(y).items()} if callable(fn) else {}


def _binary(model: TaskModel) -> bool:
    return bool(getattr(model, "binary_errors", True))


@torch.no_grad()
def evaluate(model: nn.Module, x: Any, y: Any, threat: ThreatModel, suite: str | list = "pgd", *,
             batch_size: int = 256, cascade: bool = False, seed: int = 0,
             device: str | torch.device | None = None, index: torch.Tensor | None = None,
             progress: bool = False, resume_file: str | Path | None = None,
             resume_key: str | None = None, flags: bool = True, keep_adv: bool = False) -> EvalReport:
    """Attack ``model`` on ``(x, y)`` with every attack of ``suite`` and keep the worst case.

    Args:
        model: a :class:`~bench.task.TaskModel`, or any ``nn.Module`` classifier
            taking raw inputs (wrapped so that ``z`` is the input itself).
        x, y: raw inputs and labels (tensors, dicts of tensors or ``take``-ables).
        threat: the threat model.
        suite: a registered suite name, or a list of :class:`AttackSpec` / attack names.
        cascade: attack only examples still robust (AutoAttack's order).
        seed: seeds the attacks' random starts (per example, see :mod:`bench.rng`).
        index: global example ids (default ``0..n-1``), used to seed per example.
        resume_file: per-batch outcomes are saved there as they finish; a rerun with the
            same ``resume_key`` skips finished batches. Removed when the evaluation completes.
        flags: run the sanity checks of :mod:`bench.sanity` afterwards (as AutoAttack runs its
            checks) and store them in ``report.flags``; ``False`` skips them.
        keep_adv: keep the adversarial examples the worst case rests on in ``report.adversarial``
            (for :func:`bench.adversarial.save_adversarial`); a resume file is then written but
            never read, since it holds outcomes, not examples.

    The model's train/eval mode is restored on return.

    Under ``torchrun`` (an initialized process group) each rank attacks every
    WORLD-th example and the per-example outcomes are gathered, so the report
    equals the single-process one (random starts are seeded per example).
    """
    tm = as_task_model(model)
    was_training = tm.training
    try:
        report = _evaluate(tm, x, y, threat, suite, batch_size=batch_size, cascade=cascade, seed=seed,
                           device=device, index=index, progress=progress, resume_file=resume_file,
                           resume_key=resume_key, keep_adv=keep_adv)
        if flags:
            from bench.sanity import compute_flags

            report.flags = compute_flags(tm, x, y, threat, report, device=device, index=index, seed=seed,
                                         batch_size=batch_size)
        return report
    finally:
        tm.train(was_training)


def _keep(kept: dict[int, AdvExample], tm: TaskModel, threat: ThreatModel, name: str, attack, *, xb, pos, gidx,
          sel, raised, e_att, z, ctx, z_adv, x_adv, device) -> None:
    """Keep the examples of ``sel`` whose errors this attack raised (``raised``: positions within ``sel``)."""
    if not len(raised):
        return
    records = None
    if x_adv is not None:
        records = attack.describe(take(xb, sel[raised].to(device)), take(x_adv, raised.to(device)))
    for k, j in enumerate(raised.tolist()):
        i = int(sel[j])
        ex = AdvExample(position=int(pos[i]), index=int(gidx[pos[i]]), attack=name, errors=float(e_att[i]))
        if records is not None:
            ex.record = dict(records[k])
        else:
            own, _ = tm.encode(take(xb, torch.tensor([i], device=device)))  # the example's own shape
            ex.z = own_shape_corner(z_adv[j], tuple(own.shape[1:])).detach().cpu().clone()
            one = torch.tensor([i], device=device)
            ex.distance = float(threat.distance(z_adv[j:j + 1], z[one], ctx.select(one))[0])
        kept[ex.position] = ex


def _evaluate(tm: TaskModel, x, y, threat, suite, *, batch_size, cascade, seed, device, index, progress,
              resume_file, resume_key, keep_adv=False) -> EvalReport:
    specs = resolve_suite(suite)
    if device is None:
        device = next((p.device for p in tm.parameters()), torch.device("cpu"))
    tm.eval()
    data = ArrayData(x, y)
    check_inputs(tm, data, device, "evaluate")
    n = len(data)
    gidx = index if index is not None else torch.arange(n)
    clean = torch.zeros(n)
    per = {s.name: torch.zeros(n) for s in specs}
    worst = torch.zeros(n)
    units = torch.zeros(n)
    attacks = [(s.name, s.build(seed)) for s in specs]
    #: per-example secondary errors and the worst case's perturbation size (see the module docstring)
    extra: dict[str, torch.Tensor] = {"distance": torch.full((n,), float("nan"))}

    def put(key: str, where, values: torch.Tensor) -> None:
        extra.setdefault(key, torch.full((n,), float("nan")))[where] = values.float().cpu()

    kept: dict[int, AdvExample] | None = {} if keep_adv else None
    if keep_adv:
        for name, attack in attacks:
            if getattr(attack, "discrete", False) and not callable(getattr(attack, "describe", None)):
                raise UserError(f"attack {name!r} is discrete but cannot describe its examples (describe()), "
                                "so they cannot be kept")
    secs = {s.name: 0.0 for s in specs}
    t0 = time.perf_counter()
    rank, world = _rank_world()
    positions = torch.arange(n)[rank::world]
    done: set[int] = set()
    key = json.dumps({"k": resume_key, "threat": threat.id, "suite": [s.to_dict() for s in specs], "seed": seed,
                      "n": n, "cascade": cascade, "rank": rank, "world": world, "bs": batch_size}, sort_keys=True)
    resume_path = Path(f"{resume_file}.rank{rank}") if resume_file is not None and world > 1 else \
        (Path(resume_file) if resume_file is not None else None)
    if resume_path is not None and resume_path.exists() and not keep_adv:
        saved = _load_partial(resume_path, key)
        if saved is not None:
            done = set(saved["done"])
            clean, worst, units = (torch.tensor(saved[k]) for k in ("clean", "worst", "units"))
            per = {k: torch.tensor(v) for k, v in saved["per"].items()}
            extra = {k: torch.tensor(v) for k, v in saved.get("extra", {}).items()} or extra
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=len(positions) * len(attacks), desc=f"eval {threat.id}", unit="ex", leave=False)
    for b, (pos, xb, yb) in enumerate(data.batches(batch_size, indices=positions)):
        if b in done:
            if bar is not None:
                bar.update(len(pos) * len(attacks))
            continue
        xb, yb = to_device(xb, device), to_device(yb, device)
        z, ctx = tm.encode(xb)
        z = z.detach()
        ctx = replace(ctx, index=gidx[pos]).to(device)
        out = tm(z, ctx)
        e_clean = model_errors(tm, out, yb).float().cpu()
        clean[pos] = e_clean
        units[pos] = _units(tm, yb).cpu()
        e_worst = e_clean.clone()
        d_clean = _details(tm, out, yb)
        if d_clean:
            for k, v in _detail_units(tm, yb).items():
                put(f"units/{k}", pos, v)
            for k, v in d_clean.items():
                put(f"clean/{k}", pos, v)
        d_worst = {k: v.clone() for k, v in d_clean.items()}
        dist_worst = torch.full((len(pos),), float("nan"))
        for name, attack in attacks:
            if cascade:
                active = e_worst == 0
            else:
                active = e_clean == 0 if _binary(tm) else torch.ones_like(e_clean, dtype=torch.bool)
            e_att = e_clean.clone()
            d_att = {k: v.clone() for k, v in d_clean.items()}
            sel = active.nonzero().squeeze(1)
            if len(sel):
                t = time.perf_counter()
                sel_d = sel.to(device)
                x_adv = None
                if getattr(attack, "discrete", False):
                    x_adv = to_device(attack.run_inputs(tm, take(xb, sel_d), take(yb, sel_d)), device)
                    z_adv, ctx_adv = tm.encode(x_adv)
                    out_adv = tm(z_adv.detach(), replace(ctx_adv, index=gidx[pos][sel]).to(device))
                else:
                    z_adv = attack.run(tm, z[sel_d], ctx.select(sel_d), take(yb, sel_d), threat)
                    out_adv = tm(z_adv, ctx.select(sel_d))
                e_adv = model_errors(tm, out_adv, take(yb, sel_d)).float().cpu()
                e_att[sel] = torch.maximum(e_clean[sel], e_adv)
                counts = e_adv > e_clean[sel]  # where the attack's output is the one its errors describe
                if d_clean:
                    for k, v in _details(tm, out_adv, take(yb, sel_d)).items():
                        d_att[k][sel[counts]] = v[counts]
                raised_here = e_att[sel] > e_worst[sel]
                if raised_here.any():
                    for k, v in d_att.items():
                        d_worst[k][sel[raised_here]] = v[sel[raised_here]]
                    if x_adv is None:  # a perturbation of z: its size; discrete edits have none
                        dist = threat.distance(z_adv, z[sel_d], ctx.select(sel_d)).float().cpu()
                        dist_worst[sel[raised_here]] = dist[raised_here]
                    else:
                        dist_worst[sel[raised_here]] = float("nan")
                if kept is not None:  # the first attack that raised the errors to their final value
                    raised = (e_att[sel] > e_worst[sel]).nonzero().squeeze(1)
                    _keep(kept, tm, threat, name, attack, xb=xb, pos=pos, gidx=gidx, sel=sel, raised=raised,
                          e_att=e_att, z=z, ctx=ctx, z_adv=z_adv, x_adv=x_adv, device=device)
                secs[name] += time.perf_counter() - t
            for k, v in d_att.items():
                put(f"attack/{name}/{k}", pos, v)
            per[name][pos] = torch.maximum(e_att, e_worst) if cascade else e_att
            e_worst = torch.maximum(e_worst, e_att)
            if bar is not None:
                bar.update(len(pos))
        worst[pos] = e_worst
        for k, v in d_worst.items():
            put(f"robust/{k}", pos, v)
        put("distance", pos, dist_worst)
        if resume_path is not None:
            done.add(b)
            _save_partial(resume_path, key, done, clean, per, worst, units, extra)
    if bar is not None:
        bar.close()
    if world > 1:
        clean, per, worst, units, kept, extra = _gather(positions, clean, per, worst, units, kept, extra)
    if resume_path is not None and resume_path.exists():
        resume_path.unlink()
    notes = sorted({note for _, a in attacks for note in getattr(a, "notes", ())})
    stats = {name: {k: float(v) for k, v in attack.stats().items()}
             for name, attack in attacks if callable(getattr(attack, "stats", None))}
    report = EvalReport(threat, specs, clean, per, worst, units, cascade, time.perf_counter() - t0, secs, notes,
                        stats, details=extra)
    if kept is not None:
        report.adversarial = dict(sorted(kept.items()))
    return report


def evaluate_union(model: nn.Module, x: Any, y: Any, threats: list[ThreatModel], suite: str | list = "pgd",
                   **kwargs) -> tuple[torch.Tensor, dict[str, EvalReport]]:
    """Worst case per example over several threat models (Tramèr & Boneh 2019's union).

    Returns the per-example worst-case errors and each threat's report; the
    union's robust accuracy is ``(errors == 0).float().mean()``.
    """
    reports = {t.id: evaluate(model, x, y, t, suite, **kwargs) for t in threats}
    worst = torch.stack([r.robust_errors for r in reports.values()]).amax(0)
    return worst, reports
