"""Named checks that flag evaluations that look broken (gradient masking, randomness, bugs).

Each check measures one number and raises its flag when the number crosses a
documented threshold. The result file stores every flag as
``name -> {"value": number | null, "raised": bool}`` (``null`` when the check
does not apply, e.g. no eps sweep). The checks follow the warning signs of
Athalye, Carlini & Wagner 2018 ("Obfuscated gradients give a false sense of
security", §3.1) and Carlini et al. 2019 ("On evaluating adversarial
robustness", §5 checklist):

``robust-above-clean``
    max(robust accuracies in the file) − clean accuracy; raised if > 0.
    A worst-case evaluation can never beat the clean model.
``non-monotone-in-eps``
    largest rise of robust accuracy as eps grows along the eps sweep (plus
    the headline point); raised if > 0.005 (half a point). A bigger ball can
    only contain more adversarial examples.
``blackbox-beats-whitebox``
    share of examples fooled by a black-box attack (Square) that every
    gradient attack of the suite missed; raised if > 0.01. Gradients that
    mislead the white-box attacks are the usual cause.
``more-steps-weaker`` / ``not-converged``
    the suite's multi-step gradient attack with the most steps (the first of
    equals), with its own settings (e.g. APGD-CE-100), against the same attack
    with 4x the steps, on up to
    ``n_check`` examples. ``more-steps-weaker`` = robust accuracy with 4K steps
    minus with K (more steps must not help the model); ``not-converged`` = the
    reverse (the suite's attack had not converged: a stronger run finds more).
    Both raised above 0.01 (for WER tracks the difference of WER).
``zero-gradients``
    share of examples whose input gradient of the model's objective at the
    clean point is all-zero or non-finite; raised if > 0.05 (input
    quantization, saturated softmax, non-differentiable layers). Measured
    before the attacks too: with a declared transform it switches the
    evaluation to BPDA (``bench.defenses``).
``randomized-forward``
    share of examples whose outputs differ between two identical forward
    passes in eval mode (beyond 1e-4 relative); raised if > 0. A randomized
    defense needs EOT attacks: measured before the attacks, it switches the
    evaluation to AutoAttack's rand protocol (``bench.defenses``).
``single-step-gap``
    accuracy under the suite's single-step attacks (FGSM) minus accuracy
    under its multi-step attacks, both alone; raised if > 0.3. The signature
    of catastrophic overfitting in single-step adversarial training (Wong,
    Rice & Kolter 2020, §4.1): FGSM no longer finds the examples PGD finds.
``eps0-differs-from-clean``
    share of examples whose error after the suite's first attack at eps = 0
    differs from the clean error; raised if > 0 (a buggy projection or
    randomness).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

import torch

from bench.attacks.base import loss_and_grad, model_errors, resolve_loss
from bench.data import ArrayData, to_device
from bench.threat import ThreatModel

#: name -> (threshold, one-line description); a flag is raised when value > threshold
CHECKS: dict[str, tuple[float, str]] = {
    "robust-above-clean": (0.0, "a robust accuracy in the file is above the clean accuracy"),
    "non-monotone-in-eps": (0.005, "robust accuracy rises as eps grows (eps sweep)"),
    "blackbox-beats-whitebox": (0.01, "share of examples only a black-box attack fooled"),
    "more-steps-weaker": (0.01, "the suite's gradient attack with 4x the steps gives a higher robust accuracy"),
    "not-converged": (0.01, "the suite's gradient attack with 4x the steps gives a lower robust accuracy"),
    "zero-gradients": (0.05, "share of examples with an all-zero or NaN input gradient"),
    "randomized-forward": (0.0, "share of examples whose outputs differ between two identical forwards"),
    "eps0-differs-from-clean": (0.0, "share of examples whose error at eps=0 differs from clean"),
    "single-step-gap": (0.3, "FGSM accuracy minus PGD accuracy (catastrophic overfitting)"),
    "one-class": (0.98, "share of clean outcomes that predicting one class for every input explains"),
}

EPS = 1e-9


@dataclass(frozen=True)
class Flag:
    name: str
    value: float | None

    @property
    def raised(self) -> bool:
        return self.value is not None and self.value > CHECKS[self.name][0] + EPS

    def to_dict(self) -> dict[str, Any]:
        return {"value": None if self.value is None else float(self.value), "raised": self.raised}


# ---------------------------------------------------------------- from numbers
def one_class(clean_errors, y) -> Flag:
    """A classifier that ignores its input and predicts one class ``c`` is right exactly on the examples of
    ``c``: the value is, over classes, the largest share of examples whose clean outcome matches that
    (right where ``y == c``, wrong elsewhere). For two classes 1.0 means every prediction was ``c``; its
    robust accuracy is then ``c``'s share, which no attack can lower and which says nothing of robustness
    (a collapsed adversarial training). ``None`` when ``y`` are not class labels (e.g. transcripts)."""
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype.is_floating_point or not len(y):
        return Flag("one-class", None)
    right = torch.as_tensor(clean_errors).reshape(-1).cpu() == 0
    y = y.reshape(-1).cpu()
    if len(right) != len(y):
        return Flag("one-class", None)
    best = max(float(((right & (y == c)) | (~right & (y != c))).float().mean()) for c in y.unique().tolist())
    return Flag("one-class", best)


def robust_above_clean(clean: float, robust: Iterable[float]) -> Flag:
    robust = list(robust)
    return Flag("robust-above-clean", max(robust) - clean if robust else None)


def non_monotone_in_eps(points: Iterable[tuple[float, float]]) -> Flag:
    """``points`` = (eps, robust accuracy) pairs; value = largest rise along growing eps."""
    pts = sorted(points)
    if len(pts) < 2:
        return Flag("non-monotone-in-eps", None)
    worst, lowest = 0.0, pts[0][1]
    for _, acc in pts[1:]:
        worst = max(worst, acc - lowest)
        lowest = min(lowest, acc)
    return Flag("non-monotone-in-eps", worst)


def blackbox_beats_whitebox(report, whitebox: dict[str, bool]) -> Flag:
    """From an :class:`~bench.evaluate.EvalReport`: share of examples fooled only by black-box attacks."""
    names = list(report.attack_errors)
    if not any(whitebox.get(k, True) for k in names) or all(whitebox.get(k, True) for k in names):
        return Flag("blackbox-beats-whitebox", None)
    fooled_wb = torch.zeros(report.n, dtype=torch.bool)
    fooled_bb = torch.zeros(report.n, dtype=torch.bool)
    prev = report.clean_errors
    for k in names:
        e = report.attack_errors[k]
        new = e > prev
        if whitebox.get(k, True):
            fooled_wb |= new
        else:
            fooled_bb |= new
        if report.cascade:
            prev = torch.maximum(prev, e)  # cumulative: what this attack added over the previous ones
    only_bb = fooled_bb & ~fooled_wb
    return Flag("blackbox-beats-whitebox", float(only_bb.float().mean()) if report.n else None)


def single_step_gap(report) -> Flag:
    """From an :class:`~bench.evaluate.EvalReport` run without cascade: single-step minus multi-step accuracy."""
    if report.cascade:
        return Flag("single-step-gap", None)
    acc = {k: float((e == 0).double().mean()) for k, e in report.attack_errors.items()}
    single = [s.name for s in report.suite if s.attack == "fgsm" or dict(s.params).get("steps") == 1]
    multi = [s.name for s in report.suite if s.name not in single and dict(s.params).get("steps", 2) > 1
             and s.attack != "square"]
    if not single or not multi:
        return Flag("single-step-gap", None)
    return Flag("single-step-gap", min(acc[k] for k in single) - min(acc[k] for k in multi))


# ---------------------------------------------------------------- from the model
def _batches(x, y, n: int, batch: int, device, index):
    data = ArrayData(x, y)
    data = data.subset(torch.arange(min(n, len(data))))
    idx = index if index is not None else torch.arange(len(data))
    for pos, xb, yb in data.batches(batch):
        yield to_device(xb, device), to_device(yb, device), idx[pos]


def zero_gradients(tm, x, y, *, n: int, batch: int, device, index=None) -> Flag:
    loss_fn = resolve_loss(None, tm)
    bad = total = 0
    for xb, yb, ib in _batches(x, y, n, batch, device, index):
        z, ctx = tm.encode(xb)
        ctx = replace(ctx, index=ib.to(device))
        _, _, g = loss_and_grad(tm, z.detach(), ctx, yb, loss_fn)
        flat = g.flatten(1)
        bad += int(((flat == 0).all(1) | ~torch.isfinite(flat).all(1)).sum())
        total += flat.shape[0]
    return Flag("zero-gradients", bad / total if total else None)


@torch.no_grad()
def randomized_forward(tm, x, y, *, n: int, batch: int, device, index=None) -> Flag:
    diff = total = 0
    for xb, yb, ib in _batches(x, y, n, batch, device, index):
        z, ctx = tm.encode(xb)
        a, b = tm(z, ctx).float(), tm(z, ctx).float()
        d = ((a - b).abs() > 1e-4 * (1 + a.abs())).flatten(1).any(1)
        diff += int(d.sum())
        total += d.numel()
    return Flag("randomized-forward", diff / total if total else None)


@torch.no_grad()
def eps0_differs(tm, x, y, threat: ThreatModel, attack, *, n: int, batch: int, device, index=None) -> Flag:
    # a zero budget: eps = 0, or for dB-scaled threats (where 0 dB is the signal's own size) 400 dB
    t0 = threat.with_eps(400.0) if threat.scale == "snr-db" else threat.with_eps(0.0)
    diff = total = 0
    for xb, yb, ib in _batches(x, y, n, batch, device, index):
        z, ctx = tm.encode(xb)
        ctx = replace(ctx, index=ib.to(device))
        e_clean = model_errors(tm, tm(z, ctx), yb).float()
        z_adv = attack.run(tm, z.detach(), ctx, yb, t0)
        e_adv = model_errors(tm, tm(z_adv, ctx), yb).float()
        diff += int((e_adv != e_clean).sum())
        total += e_clean.numel()
    return Flag("eps0-differs-from-clean", diff / total if total else None)


def _step_attack(suite) -> Any:
    """The suite's multi-step gradient attack with the most steps (the first of equals; its spec), or None.

    The longest one is the suite's own answer to convergence (e.g. the KWS suite's APGD-CE-1000 after
    AutoAttack's standard four): 4x *its* steps is the run that could still find more."""
    best = None
    for spec in suite:
        attack = spec.build()
        steps = int(dict(spec.params).get("steps", 1))
        if getattr(attack, "whitebox", True) and not getattr(attack, "discrete", False) \
                and steps > 1 and hasattr(attack, "steps") \
                and (best is None or steps > int(dict(best.params)["steps"])):
            best = spec
    return best


@torch.no_grad()
def step_checks(tm, x, y, threat: ThreatModel, suite, *, n: int, batch: int, device, index=None,
                seed: int = 0) -> list[Flag]:
    """``more-steps-weaker`` and ``not-converged`` from the suite's own gradient attack at K and 4K steps."""
    spec = _step_attack(suite)
    if spec is None:
        return [Flag("more-steps-weaker", None), Flag("not-converged", None)]
    from bench.evaluate import _units
    from bench.suites import AttackSpec

    rates = []
    for factor in (1, 4):
        params = {**dict(spec.params), "steps": int(dict(spec.params)["steps"]) * factor}
        attack = AttackSpec(spec.name, spec.attack, params).build(seed)
        errs = units = 0.0
        for xb, yb, ib in _batches(x, y, n, batch, device, index):
            z, ctx = tm.encode(xb)
            ctx = replace(ctx, index=ib.to(device))
            z_adv = attack.run(tm, z.detach(), ctx, yb, threat)
            e = torch.maximum(model_errors(tm, tm(z, ctx), yb).float(), model_errors(tm, tm(z_adv, ctx), yb).float())
            errs += float(e.sum())
            units += float(_units(tm, yb).sum())
        rates.append(errs / max(units, 1.0))
    k, k4 = rates
    return [Flag("more-steps-weaker", k - k4), Flag("not-converged", k4 - k)]


def compute_flags(model, x, y, threat: ThreatModel, report, *, eps_sweep: list | None = None,
                  device=None, index: torch.Tensor | None = None, seed: int = 0, n_check: int = 100,
                  batch_size: int = 250) -> dict[str, dict[str, Any]]:
    """Every check of :data:`CHECKS` for one evaluation; returns the result file's ``flags``.

    Model-based checks use the first ``n_check`` examples (with their global
    ``index``, so random starts match the evaluation's). The model's train/eval
    mode is restored afterwards.
    """
    from bench.task import as_task_model

    tm = as_task_model(model)
    was_training = tm.training
    tm.eval()
    try:
        return _compute_flags(tm, x, y, threat, report, eps_sweep=eps_sweep, device=device, index=index,
                              seed=seed, n_check=n_check, batch_size=batch_size)
    finally:
        tm.train(was_training)


def _compute_flags(tm, x, y, threat, report, *, eps_sweep, device, index, seed, n_check, batch_size):
    if device is None:
        device = next((p.device for p in tm.parameters()), torch.device("cpu"))
    m = report.metrics()
    robust = [m["robust_accuracy"], *m["per_attack"].values()]
    points = [(threat.eps, m["robust_accuracy"])]
    if eps_sweep:
        # a sweep on a subset is compared with the clean accuracy of that subset
        robust += [p["robust_accuracy"] + m["clean_accuracy"] - p.get("clean_accuracy", m["clean_accuracy"])
                   for p in eps_sweep]
        points = [(p["eps"], p["robust_accuracy"]) for p in eps_sweep]
        if all(abs(p[0] - threat.eps) > 1e-12 for p in points):
            points.append((threat.eps, m["robust_accuracy"]))
    if threat.scale == "snr-db":  # a larger dB value is a smaller ball
        points = [(-e, a) for e, a in points]
    # a discrete attack (word substitution) works in another threat model: what it finds beyond
    # the embedding attacks is no sign of gradient masking, so it is not counted as black-box here
    built = {s.name: s.build(seed) for s in report.suite}
    whitebox = {k: bool(getattr(a, "whitebox", True)) or bool(getattr(a, "discrete", False)) for k, a in built.items()}
    kw = dict(n=n_check, batch=batch_size, device=device, index=index)
    # the first attack that moves z (a discrete attack such as word substitution has no budget to zero)
    first = next((a for a in built.values() if not getattr(a, "discrete", False)), None)
    flags = [
        robust_above_clean(m["clean_accuracy"], robust),
        non_monotone_in_eps(points),
        blackbox_beats_whitebox(report, whitebox),
        *step_checks(tm, x, y, threat, report.suite, seed=seed, **kw),
        zero_gradients(tm, x, y, **kw),
        randomized_forward(tm, x, y, **kw),
        eps0_differs(tm, x, y, threat, first, **kw) if first is not None else Flag("eps0-differs-from-clean", None),
        single_step_gap(report),
        one_class(report.clean_errors, y),
    ]
    return {f.name: f.to_dict() for f in flags}


def raised(flags: dict[str, dict[str, Any]]) -> list[str]:
    """Names of the raised flags of a result file's ``flags``."""
    return sorted(k for k, v in flags.items() if v.get("raised"))
