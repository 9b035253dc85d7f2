"""``xrobust perf``: how fast our attacks are, against the hardware limit and the peers.

All timings are taken interleaved in one process (round r runs every
measurement once, then round r+1, ...; the median over rounds is kept), so
a change of machine load hits every row alike. For a track's model and one
batch of its evaluation subset:

* ``limit ratio`` = time(our PGD-K) / (K × time of one forward+backward w.r.t.
  the input). 1.0 means the attack costs nothing beyond its gradients.
* our PGD-K against torchattacks' PGD and ART's ``ProjectedGradientDescentPyTorch``
  at equal K, eps, step and random start;
* our APGD-CE against torchattacks' APGD (same steps, one restart);
* our PGD under bf16 autocast, and with channels_last memory format (4-D inputs).

Rounds alternate the order of the rows (forward, then reversed), and the
medians are reported, so that a shared machine's load drifts cancel out as
far as they can; the load average is recorded with the machine.

Robust accuracy on the batch is recorded for every attack, so a faster
variant that got weaker (e.g. bf16) shows. Peers are optional (extra
``peers``); their rows are left out with a note when they are not installed.
The result goes to ``results/perf/<track>.json`` with the machine description.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from bench.attacks.apgd import APGD
from bench.attacks.pgd import PGD
from bench.provenance import device_description, package_version
from bench.results import USER_RESULTS
from bench.task import Context, TaskModel
from bench.threat import ThreatModel


@dataclass
class Row:
    name: str
    fn: Callable[[], torch.Tensor | None]
    seconds: list[float]
    accuracy: float | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> dict[str, Any]:
    """A hostname-free description of where the numbers were taken."""
    d = {"device": device_description(device), "torch_threads": torch.get_num_threads(),
         "cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
         "torch": torch.__version__}
    try:
        d["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                d["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "cuda":
        d["gpu"] = torch.cuda.get_device_name(device)
    return d


class _Logits(torch.nn.Module):
    """The task model as a plain ``x -> logits`` module for the peers (they call ``model(x)``)."""

    def __init__(self, tm: TaskModel) -> None:
        super().__init__()
        self.tm = tm

    def forward(self, x):
        return self.tm(x, Context())


def run_perf(model: TaskModel, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int = 10,
             apgd_steps: int = 10, step_size: float | None = None, repeats: int = 3,
             device: torch.device | str = "cpu", peers: bool = True, bf16: bool = True,
             channels_last: bool = True, standard: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time every row ``repeats`` times, interleaved; returns the perf document."""
    device = torch.device(device)
    model = model.to(device).eval()
    x, y = x.to(device), y.to(device)
    ctx = Context(index=torch.arange(len(y), device=device))
    if threat.scale != "absolute" or threat.norm != "linf":
        raise ValueError("perf compares with the peers on absolute Linf threats")
    eps = threat.eps
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    notes: list[str] = []
    plain = _Logits(model).eval()

    def acc(xa) -> float:
        with torch.no_grad():
            return float((model(xa, ctx).argmax(1) == y).float().mean())

    def fwd_bwd(autocast=False, xin=None):
        def f():
            xi = (x if xin is None else xin).detach().requires_grad_(True)
            with (torch.autocast(device.type, dtype=torch.bfloat16) if autocast else nullcontext()):
                loss = F.cross_entropy(model(xi, ctx).float(), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, xi)
            return None
        return f

    ours_pgd = PGD(steps=steps, step_size=alpha)
    rows: list[Row] = [
        Row("fwd+bwd", fwd_bwd(), []),
        Row(f"ours PGD-{steps}", lambda: ours_pgd.run(model, x, ctx, y, threat), []),
        Row(f"ours APGD-CE-{apgd_steps}",
            lambda: APGD(steps=apgd_steps, loss="ce").run(model, x, ctx, y, threat), []),
    ]
    if bf16:
        def ours_bf16():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return ours_pgd.run(model, x, ctx, y, threat)
        rows += [Row("fwd+bwd bf16", fwd_bwd(True), []), Row(f"ours PGD-{steps} bf16", ours_bf16, [])]
    if channels_last and x.dim() == 4:
        xcl = x.contiguous(memory_format=torch.channels_last)
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)

        def ours_cl():
            return ours_pgd.run(model_cl, xcl, ctx, y, threat)
        rows.append(Row(f"ours PGD-{steps} channels_last", ours_cl, []))
    if peers:
        try:
            import torchattacks

            ta_pgd = torchattacks.PGD(plain, eps=eps, alpha=alpha, steps=steps, random_start=True)
            ta_apgd = torchattacks.APGD(plain, norm="Linf", eps=eps, steps=apgd_steps, n_restarts=1, loss="ce",
                                        seed=0)
            rows += [Row(f"torchattacks PGD-{steps}", lambda: ta_pgd(x, y), []),
                     Row(f"torchattacks APGD-{apgd_steps}", lambda: ta_apgd(x, y), [])]
        except ImportError:
            notes.append("torchattacks not installed (pip install --no-deps torchattacks==3.5.1)")
        try:
            import numpy as np
            from art.attacks.evasion import ProjectedGradientDescentPyTorch
            from art.estimators.classification import PyTorchClassifier

            lo, hi = threat.bounds if threat.bounds is not None else (-np.inf, np.inf)
            est = PyTorchClassifier(plain, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                    nb_classes=int(model(x[:1], Context()).shape[1]), clip_values=(lo, hi),
                                    device_type="gpu" if device.type == "cuda" else "cpu")
            art_pgd = ProjectedGradientDescentPyTorch(est, norm=np.inf, eps=eps, eps_step=alpha, max_iter=steps,
                                                      num_random_init=1, batch_size=len(y), verbose=False)
            xn, yn = x.cpu().numpy(), y.cpu().numpy()
            rows.append(Row(f"ART PGD-{steps}", lambda: torch.from_numpy(art_pgd.generate(xn, yn)).to(device), []))
        except ImportError:
            notes.append("adversarial-robustness-toolbox not installed (extra 'peers')")

    for r in range(repeats + 1):  # round 0 warms up (allocator, lazy init) and is not kept
        # alternate the order so that drifts of machine load hit every row alike
        for row in (rows if r % 2 == 0 else rows[::-1]):
            _sync(device)
            t = time.perf_counter()
            out = row.fn()
            _sync(device)
            dt = time.perf_counter() - t
            if r > 0:
                row.seconds.append(dt)
            if r == 0 and out is not None:
                row.accuracy = acc(out.to(device))
        log(f"  round {r}/{repeats} done")

    med = {row.name: statistics.median(row.seconds) for row in rows}
    get = lambda k: next((v for n, v in med.items() if n.startswith(k)), None)  # noqa: E731
    ratios: dict[str, float] = {}

    def ratio(name, num, den):
        if num is not None and den is not None and den > 0:
            ratios[name] = num / den

    t_pgd = get(f"ours PGD-{steps}")
    ratio("limit_ratio", t_pgd, steps * med["fwd+bwd"])
    ratio("speedup_vs_torchattacks_pgd", get("torchattacks PGD"), t_pgd)
    ratio("speedup_vs_art_pgd", get("ART PGD"), t_pgd)
    ratio("speedup_vs_torchattacks_apgd", get("torchattacks APGD"), get("ours APGD"))
    if bf16:
        ratio("limit_ratio_bf16", get(f"ours PGD-{steps} bf16"), steps * med["fwd+bwd bf16"])
        ratio("bf16_speedup_vs_ours_fp32", t_pgd, get(f"ours PGD-{steps} bf16"))
        ratio("bf16_speedup_vs_torchattacks_fp32", get("torchattacks PGD"), get(f"ours PGD-{steps} bf16"))
    ratio("channels_last_speedup", t_pgd, get(f"ours PGD-{steps} channels_last"))
    if standard:
        standard_vs_autoattack(model, x, y, threat, device, notes, ratios, log)
    return {
        "machine": machine(device), "xrobust_version": package_version(),
        "batch_size": len(y), "threat": threat.id, "steps": steps, "apgd_steps": apgd_steps, "step_size": alpha,
        "repeats": repeats,
        "rows": [{"name": row.name, "seconds": med[row.name], "all_seconds": row.seconds,
                  "robust_accuracy": row.accuracy} for row in rows],
        "ratios": ratios, "notes": notes,
    }


def standard_vs_autoattack(model, x, y, threat, device, notes: list[str], ratios: dict[str, float],
                           log: Callable[[str], None]) -> None:
    """Our ``standard`` cascade against the official AutoAttack's ``run_standard_evaluation`` at the
    same strength (APGD-CE, APGD-T, FAB-T, Square-5000), each timed once on the same batch in one
    process (a full run is minutes, so no repeats): seconds, robust accuracies and their ratio."""
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        notes.append("pyautoattack not installed (extra 'peers'): no standard-suite comparison")
        return
    from bench.evaluate import evaluate
    from bench.suites import STANDARD

    plain = _Logits(model).eval()
    norm = {"linf": "Linf", "l2": "L2"}[threat.norm]
    out: dict[str, tuple[float, float]] = {}
    for name in ("ours", "autoattack"):
        _sync(device)
        t = time.perf_counter()
        if name == "ours":
            acc = evaluate(model, x, y, threat, STANDARD, cascade=True, device=device, flags=False).metrics()[
                "robust_accuracy"]
        else:
            aa = AutoAttack(plain, norm=norm, eps=threat.eps, version="standard", seed=0, device=device)
            with torch.no_grad():
                adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(y))
                acc = float((plain(adv).argmax(1) == y).float().mean())
        _sync(device)
        out[name] = (time.perf_counter() - t, acc)
        log(f"  standard suite, {name}: {out[name][0]:.1f} s, robust accuracy {acc:.3f}")
    ratios["speedup_standard_vs_autoattack"] = out["autoattack"][0] / out["ours"][0]
    ratios["standard_robust_accuracy_ours"] = out["ours"][1]
    ratios["standard_robust_accuracy_autoattack"] = out["autoattack"][1]


def table(doc: dict[str, Any]) -> str:
    """The perf document as a plain-text table."""
    lines = [f"{'measurement':34s} {'seconds':>9s} {'robust acc':>10s}"]
    for r in doc["rows"]:
        acc = "" if r["robust_accuracy"] is None else f"{r['robust_accuracy']:.3f}"
        lines.append(f"{r['name']:34s} {r['seconds']:9.3f} {acc:>10s}")
    lines.append("")
    for k, v in doc["ratios"].items():
        lines.append(f"{k:34s} {v:9.3f}")
    m = doc["machine"]
    lines.append(f"\n{m['device']}, {m.get('cpu', m['machine'])}, load {m.get('load_average_1m', '?')}, "
                 f"batch {doc['batch_size']}, {doc['threat']}, K={doc['steps']}")
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


def perf_track(track, *, checkpoint: str | Path | None = None, batch_size: int | None = None, steps: int = 10,
               apgd_steps: int = 10, repeats: int = 3, device: str | None = None, peers: bool = True,
               standard: bool = False, out: str | Path | None = None, results: str | Path = USER_RESULTS,
               log: Callable[[str], None] = print) -> tuple[dict[str, Any], Path]:
    """Run :func:`run_perf` on a track's model and first evaluation batch; write the JSON."""
    from bench.checkpoint import load_checkpoint
    from bench.pipeline import build_model, prepare
    from bench.training.loop import pick_device

    dev = pick_device(device)
    data, _ = track.eval_data()
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, device=dev)
    else:
        model = build_model(track, track.dataset_split("train"))
        log("  no --checkpoint: timing an untrained model of the track's family (accuracies are not meaningful)")
    data = prepare(model, data)
    bs = batch_size or track.eval_batch_size
    x, y = data.inputs[:bs], data.y[:bs]
    doc = run_perf(model, x, y, track.threat, steps=steps, apgd_steps=apgd_steps, repeats=repeats, device=dev,
                   peers=peers, standard=standard and peers, log=log)
    doc["track"] = track.id
    doc["checkpoint"] = str(checkpoint) if checkpoint else None
    path = Path(out) if out else Path(results) / "perf" / f"{track.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return doc, path
