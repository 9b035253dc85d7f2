"""Re-score saved adversarial examples without trusting their writer (``xrobust verify-adv``).

Every saved example is checked against the *track's* threat model and the
model itself: a continuous example must lie in the threat's ball around the
clean example, which is encoded again from the track's data (radius,
positions that may move and bounds, with a 1e-5 relative tolerance), and a
discrete one must keep its attack's constraints as the track's suite declares
them; each must then raise the model's errors above its clean errors
(misclassified; for ASR, more word errors). The accuracy the examples imply
-- every example is robust unless it is clean-wrong or one of its saved
examples passes -- must equal the one the folder records (and the result
file's, when given; for a WER result file with per-utterance word errors,
utterance by utterance). This is how a third party checks a claim, as
RobustBench's external evaluations ship their adversarial images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from bench.attacks.base import model_errors
from bench.data import take, to_device
from bench.errors import UserError
from bench.task import as_task_model

#: relative tolerance of the ball check (the examples are stored exactly; this absorbs another device's rounding)
RTOL = 1e-5


@dataclass
class VerifyReport:
    """What :func:`verify_adversarial` found; ``ok`` when ``problems`` is empty.

    The accuracies are the ones the examples imply on the first ``n`` examples of the track.
    """

    n: int
    checked: int
    clean_accuracy: float
    robust_accuracy: float
    robust_error_rate: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: what was verified, or the first problem (and how many more)."""
        if self.ok:
            robust = round(self.robust_accuracy * self.n)
            return (f"verified {self.checked} adversarial example(s): inside the threat model and adversarial; "
                    f"robust accuracy {self.robust_accuracy:.4f} ({robust}/{self.n}) as recorded")
        more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
        return f"{self.problems[0]}{more}"


def _where(e: dict) -> str:
    return f"adversarial example of index {e.get('index')} ({e.get('attack')})"


def _outside(threat, z_adv, z, ctx, dist: float) -> str:
    """Why one example (a batch of one) is outside the threat model, in words."""
    if not bool(torch.isfinite(z_adv).all()):
        return "is not finite"
    if dist > 1 + RTOL:
        return f"lies outside the threat model {threat.id}: {dist:.6g} x the radius ({(dist - 1) * 100:.3g}% outside)"
    if threat.bounds is not None:
        lo, hi = threat.bounds
        if bool((z_adv < lo).any() or (z_adv > hi).any()):
            over = float(torch.maximum(lo - z_adv, z_adv - hi).amax())
            return f"lies outside the bounds [{lo:g}, {hi:g}] of {threat.id} by {over:.3g}"
    return f"changes positions that {threat.id} keeps fixed (padding or special tokens)"


def _continuous(tm, threat, chunk, tensors, inputs, y, gidx, device, problems) -> dict[int, float]:
    """Errors of the model on each example of ``chunk`` that lies inside the ball (position -> errors)."""
    rows = []
    for e in chunk:
        r = e.get("row")
        if not isinstance(r, int) or not 0 <= r < tensors["adv"].shape[0]:
            problems.append(f"{_where(e)}: row {r!r} is not in adv.safetensors")
        elif int(tensors["index"][r]) != e["index"] or int(tensors["position"][r]) != e["position"]:
            problems.append(f"{_where(e)}: row {r} of adv.safetensors belongs to another example")
        else:
            rows.append(e)
    if not rows:
        return {}
    pos = torch.tensor([e["position"] for e in rows])
    z, ctx = tm.encode(to_device(take(inputs, pos), device))
    z, ctx = z.detach(), replace(ctx, index=gidx[pos]).to(device)
    z_adv, fits = z.clone(), []
    for i, e in enumerate(rows):
        shape = tuple(int(v) for v in tensors["shape"][e["row"]])
        if len(shape) != z.dim() - 1 or any(a > b for a, b in zip(shape, z.shape[1:])):
            problems.append(f"{_where(e)}: has shape {shape}, the example's is {tuple(z.shape[1:])}")
            continue
        corner = tuple(slice(0, k) for k in shape)
        z_adv[i][corner] = tensors["adv"][e["row"]][corner].to(z.device, z.dtype)
        fits.append(i)
    inside = threat.contains(z_adv, z, ctx, rtol=RTOL).cpu()
    dist = threat.distance(z_adv, z, ctx).cpu()
    errors = model_errors(tm, tm(z_adv, ctx), to_device(take(y, pos), device)).float().cpu()
    out = {}
    for i in fits:
        e = rows[i]
        if not bool(inside[i]):
            one = torch.tensor([i], device=z.device)
            problems.append(f"{_where(e)} {_outside(threat, z_adv[one], z[one], ctx.select(one), float(dist[i]))}")
        else:
            out[e["position"]] = float(errors[i])
    return out


def _discrete(tm, attack, chunk, records, inputs, y, gidx, device, problems) -> dict[int, float]:
    """Errors of the model on each discrete example of ``chunk`` that keeps its attack's constraints."""
    recs = []
    for e in chunk:
        k = e.get("line")
        if not isinstance(k, int) or not 0 <= k < len(records):
            problems.append(f"{_where(e)}: line {k!r} is not in adv.jsonl")
        elif records[k].get("index") != e["index"] or records[k].get("position") != e["position"]:
            problems.append(f"{_where(e)}: line {k} of adv.jsonl belongs to another example")
        else:
            recs.append((e, records[k]))
    if not recs:
        return {}
    pos = torch.tensor([e["position"] for e, _ in recs])
    why = attack.violations(take(inputs, pos), [r for _, r in recs])
    x_adv = to_device(attack.restore(tm, [r for _, r in recs]), device)
    z_adv, ctx = tm.encode(x_adv)
    errors = model_errors(tm, tm(z_adv.detach(), replace(ctx, index=gidx[pos]).to(device)),
                          to_device(take(y, pos), device)).float().cpu()
    out = {}
    for i, (e, _) in enumerate(recs):
        if why[i]:
            problems.append(f"{_where(e)} breaks the constraints of {e['attack']}: it {why[i]}")
        else:
            out[e["position"]] = float(errors[i])
    return out


def _suite_attack(track, manifest: dict, name: str, seed: int):
    """The track's attack ``name`` (its constraints are the track's, never the folder's)."""
    specs = {s.name: s for s in track.attack_specs}
    if name not in specs:
        raise UserError(f"attack {name!r} is discrete and not in the suite of track {track.id}: its constraints "
                        "cannot be checked")
    recorded = next((s for s in manifest.get("suite", []) if s.get("name") == name), None)
    if recorded is not None and recorded != specs[name].to_dict():
        raise UserError(f"attack {name!r} ran with {recorded}, the track declares {specs[name].to_dict()}")
    attack = specs[name].build(seed)
    if not all(callable(getattr(attack, k, None)) for k in ("violations", "restore")):
        raise UserError(f"attack {name!r} cannot re-check saved examples (violations(), restore())")
    return attack


@torch.no_grad()
def verify_adversarial(folder: str | Path, model, track, *, result: str | Path | None = None,
                       device: str | torch.device | None = None, batch_size: int | None = None,
                       checkpoint_sha256: str | None = None) -> VerifyReport:
    """Re-score the adversarial examples saved in ``folder`` against ``model`` on ``track``.

    Args:
        folder: written by :func:`~bench.adversarial.save_adversarial` (``xrobust eval --save-adv``).
        model: the model the examples claim to fool (a :class:`~bench.task.TaskModel` or classifier).
        track: the :class:`~bench.tracks.Track`; its threat model and suite are the rules, and the
            folder's must equal them.
        result: a result file whose robust accuracy the examples must also reproduce.
        checkpoint_sha256: the weights' sha256 (default: ``model.source.sha256`` when the resolver
            loaded it); must equal the folder's when both are known.

    Returns a :class:`VerifyReport`; a folder that is malformed or made for another track or threat
    raises :class:`~bench.errors.UserError`.
    """
    from bench.adversarial.files import read_adversarial
    from bench.pipeline import prepare
    from bench.training.loop import pick_device

    manifest, tensors, records = read_adversarial(folder)
    if manifest["track"] != track.id:
        raise UserError(f"{folder}: the examples are for track {manifest['track']!r}, not {track.id!r}")
    if manifest["threat"] != track.threat.to_dict():
        raise UserError(f"{folder}: the examples are for threat {manifest['threat'].get('id')!r}, the track's is "
                        f"{track.threat.id!r}")
    tm = as_task_model(model)
    was_training = tm.training
    tm.eval()
    try:
        return _verify(folder, manifest, tensors, records, tm, track, result, pick_device(device),
                       batch_size or track.eval_batch_size, checkpoint_sha256, prepare)
    finally:
        tm.train(was_training)


def _verify(folder, manifest, tensors, records, tm, track, result, device, bs, sha, prepare) -> VerifyReport:
    problems: list[str] = []
    sha = sha or getattr(getattr(tm, "source", None), "sha256", None)
    if sha and manifest.get("checkpoint_sha256") and sha != manifest["checkpoint_sha256"]:
        problems.append(f"the examples were made for weights {manifest['checkpoint_sha256'][:12]}..., "
                        f"the model's are {sha[:12]}...")
    n = manifest["n"]
    data, gidx = track.eval_data()
    if not isinstance(n, int) or not 0 < n <= len(data):
        raise UserError(f"{folder}: n = {n!r} is not within the track's {len(data)} examples")
    data, gidx = prepare(tm, data.subset(torch.arange(n))), gidx[:n]
    # clean errors on all n: an example without a saved example is robust unless the model gets it wrong
    clean, units = torch.zeros(n), torch.zeros(n)
    for pos, xb, yb in data.batches(bs):
        z, ctx = tm.encode(to_device(xb, device))
        ctx = replace(ctx, index=gidx[pos]).to(device)
        clean[pos] = model_errors(tm, tm(z.detach(), ctx), to_device(yb, device)).float().cpu()
        fn = getattr(tm, "error_units", None)
        units[pos] = fn(yb).float().cpu() if callable(fn) else 1.0
    labels = data.y.tolist() if isinstance(data.y, torch.Tensor) and data.y.dim() == 1 else None
    entries, seen = [], set()
    for e in manifest["examples"]:
        p = e.get("position") if isinstance(e, dict) else None
        if not isinstance(p, int) or not 0 <= p < n or p in seen:
            where = _where(e if isinstance(e, dict) else {})
            problems.append(f"{where}: position {p!r} is not a new one of 0..{n - 1}")
        elif e.get("index") != int(gidx[p]):
            problems.append(f"{_where(e)}: position {p} holds index {int(gidx[p])} in the track's subset")
        elif labels is not None and "label" in e and e["label"] != labels[p]:
            problems.append(f"{_where(e)}: records label {e['label']!r}, the track's label is {labels[p]}")
        else:
            entries.append(e)
        seen.add(p)
    adv_errors: dict[int, float] = {}
    cont = [e for e in entries if "row" in e]
    need = {"adv", "shape", "index", "position"}
    if cont and not need <= set(tensors):
        raise UserError(f"{folder}: adv.safetensors is missing or lacks {', '.join(sorted(need - set(tensors)))}")
    for s in range(0, len(cont), bs):
        adv_errors.update(_continuous(tm, track.threat, cont[s:s + bs], tensors, data.inputs, data.y, gidx, device,
                                      problems))
    disc = [e for e in entries if "row" not in e]
    for name in sorted({e["attack"] for e in disc}):
        attack = _suite_attack(track, manifest, name, manifest.get("seed", 0))
        mine = [e for e in disc if e["attack"] == name]
        for s in range(0, len(mine), bs):
            adv_errors.update(_discrete(tm, attack, mine[s:s + bs], records, data.inputs, data.y, gidx, device,
                                        problems))
    worst = clean.clone()
    for e in entries:
        p = e["position"]
        if p not in adv_errors:
            continue
        got, before = adv_errors[p], float(clean[p])
        if got <= before:
            what = "is classified correctly" if before == 0 and got == 0 and labels is not None else \
                f"does not raise the model's errors ({got:g}, clean {before:g})"
            problems.append(f"{_where(e)} is not adversarial: it {what}")
        elif got < float(e.get("errors", got)):
            problems.append(f"{_where(e)}: records {e['errors']:g} errors, the model makes {got:g}")
        else:
            worst[p] = max(worst[p], got)
    report = VerifyReport(n=n, checked=len(manifest["examples"]), clean_accuracy=float((clean == 0).double().mean()),
                          robust_accuracy=float((worst == 0).double().mean()),
                          robust_error_rate=float(worst.double().sum() / units.double().sum().clamp_min(1)),
                          problems=problems)
    claims = [("the folder", manifest["metrics"])]
    doc = None
    if result is not None:
        try:
            doc = json.loads(Path(result).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"result file {result}: cannot be read ({exc})") from None
        if doc.get("track") != track.id or doc.get("n") != n:
            raise UserError(f"result file {result} is for track {doc.get('track')!r} with n = {doc.get('n')!r}, "
                            f"the examples for {track.id!r} with n = {n}")
        claims.append((f"the result file {Path(result).name}", doc.get("metrics", {})))
    implied = {"clean_accuracy": report.clean_accuracy, "robust_accuracy": report.robust_accuracy,
               "robust_error_rate": report.robust_error_rate}
    for who, metrics in claims:
        for key, value in implied.items():
            if key not in metrics or (key == "robust_error_rate" and "clean_error_rate" not in metrics):
                continue
            rec = metrics[key]
            same = round(rec * n) == round(value * n) if key.endswith("accuracy") else abs(rec - value) <= 1e-9
            if not same:
                problems.append(f"the examples imply {key.replace('_', ' ')} {value:.4f}, {who} records {rec:.4f}")
    if doc is not None:
        problems.extend(_word_error_problems(doc, clean, worst, Path(result).name))
    return report


def _word_error_problems(doc: dict, clean: torch.Tensor, worst: torch.Tensor, name: str) -> list[str]:
    """Utterance by utterance: the word errors the model makes (clean, and with the saved examples) against
    the ones a WER result file stores (``per_example.clean_word_errors`` / ``robust_word_errors``), so a
    file whose totals agree but whose utterances do not is caught too; the first mismatch of each list."""
    out = []
    pe = doc.get("per_example") or {}
    for key, mine in (("clean_word_errors", clean), ("robust_word_errors", worst)):
        stored = pe.get(key)
        if not isinstance(stored, list) or len(stored) != len(mine):
            continue
        bad = next((p for p, (a, b) in enumerate(zip(mine.tolist(), stored)) if a != b), None)
        if bad is not None:
            role = "clean" if key.startswith("clean") else "with the saved examples"
            out.append(f"utterance {bad}: the model makes {mine[bad]:g} word errors {role}, the result file {name} "
                       f"records {stored[bad]} (per_example/{key})")
    return out
