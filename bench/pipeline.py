"""Train a recipe on a track, evaluate a checkpoint on a track, write the result file.

This is what ``xrobust train | eval | run`` call; everything is looked up in
the registries, so a new domain, recipe or track needs no change here.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from bench.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint, sha256_file
from bench.data import ArrayData
from bench.errors import UserError
from bench.evaluate import EvalReport, evaluate
from bench.provenance import config_hash, git_state, provenance
from bench.registry import MODELS, RECIPES
from bench.results import SCHEMA_VERSION, USER_RESULTS, bits, write_result
from bench.rng import seed_everything
from bench.sanity import compute_flags
from bench.task import TaskModel
from bench.threat import ThreatModel
from bench.tracks import Track
from bench.training.loop import TrainConfig, pick_device, train

DEFAULT_RUNS = Path("runs")


def build_model(track: Track, data: ArrayData) -> TaskModel:
    """A fresh model of the track's family, sized from the dataset's metadata."""
    hints = {k: v for k, v in data.meta.items() if k not in ("name", "source")}
    return MODELS.get(track.model)(**{**hints, **dict(track.model_kwargs)})


def prepare(model: TaskModel, data: ArrayData) -> ArrayData:
    """The model's own preprocessing of raw data (e.g. tokenization); identity by default."""
    fn = getattr(model, "prepare", None)
    return fn(data) if callable(fn) else data


def checkpoint_path(track: Track, recipe: str, seed: int, runs: str | Path | None = None) -> Path:
    return Path(runs or DEFAULT_RUNS) / track.id / f"{recipe.replace(':', '_')}-s{seed}" / "model.safetensors"


def make_recipe(track: Track, name: str, overrides: dict[str, Any] | None = None):
    params = {**dict(track.train.recipe_params.get(name, {})), **(overrides or {})}
    try:
        return RECIPES.get(name)(**params), params
    except TypeError as exc:
        raise UserError(f"bad parameters for recipe {name!r}: {exc}") from None


def train_track(track: Track, recipe: str, *, epochs: float | None = None, seed: int = 0,
                out: str | Path | None = None, runs: str | Path | None = None, device: str | None = None,
                bf16: bool = False, recipe_params: dict[str, Any] | None = None, progress: bool = True,
                log: Callable[[str], None] = print, checkpoint_every: int = 0, resume: bool = False,
                channels_last: bool = False, compile: str | None = None) -> Path:
    """Train ``recipe`` under the track's budget; returns the checkpoint's path."""
    rec, params = make_recipe(track, recipe, recipe_params)
    data = track.dataset_split("train")
    seed_everything(seed)
    model = build_model(track, data)
    data = prepare(model, data)
    log(f"[{track.id}] training {rec.name} on {len(data)} examples (seed {seed})")
    spec = track.train
    path = Path(out) if out else checkpoint_path(track, rec.name, seed, runs)
    state_path = path.with_name(path.stem + ".train_state.pt")
    cfg = TrainConfig(epochs=epochs if epochs is not None else spec.epochs_for(rec.name), batch_size=spec.batch_size,
                      lr=spec.lr, optimizer=spec.optimizer, schedule=spec.schedule,
                      weight_decay=spec.weight_decay, eps_ramp_epochs=spec.eps_ramp_epochs,
                      grad_clip=spec.grad_clip, seed=seed, bf16=bf16, device=device,
                      channels_last=channels_last, compile=compile,
                      checkpoint_every=checkpoint_every, resume=resume,
                      state_path=str(state_path) if (checkpoint_every or resume) else None)
    if resume and state_path.exists():
        log(f"[{track.id}] resuming {rec.name} from {state_path}")
    t0 = time.perf_counter()
    history = train(model, data, rec, track.training_threat, cfg, progress=progress,
                    on_epoch=lambda s: log(f"  [{track.id} {rec.name}] epoch {s['epoch']}: loss {s['loss']:.4f} "
                                           f"train-acc {s['train_accuracy']:.3f} ({s['seconds']:.1f}s)"))
    seconds = time.perf_counter() - t0
    from bench.training.loop import init_distributed

    rank, _ = init_distributed(pick_device(device))
    config = {
        "model": track.model, "track": track.id, "domain": track.domain, "dataset": track.dataset,
        "recipe": rec.name, "recipe_params": {**rec.params, **params}, "seed": seed, "train_config": cfg.to_dict(),
        "threat": track.training_threat.to_dict(), "history": history, "train_seconds": seconds,
        "device": str(pick_device(device)), "n_train": len(data),
    }
    if rank == 0:  # only rank 0 writes checkpoints and results
        save_checkpoint(path, model, config)
    _barrier()
    return path.with_suffix(".safetensors")


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _sweep(model, x, y, idx, track: Track, suite, seed: int, device, headline: EvalReport) -> list[dict[str, Any]]:
    """The robust accuracy (and WER) at every eps of the track's sweep, on the first ``sweep_n`` examples.

    Budgets are visited from the smallest up and outcomes are carried per example: an example
    broken at one eps is broken at every larger eps (the smaller ball lies inside the larger one),
    so it is not attacked again, and the curve is monotone by construction. The headline eps
    reuses the headline outcome when the suite is the headline's; examples broken at a smaller
    sweep eps are then also counted as broken in the headline report itself (with a note), and
    when the headline keeps its adversarial examples, the example found at the smaller eps is kept
    for them (it lies inside the headline ball too).
    """
    from bench.data import length, take
    from bench.evaluate import _binary
    from bench.suites import resolve_suite

    n = min(track.sweep_n or length(y), length(y))
    pos = torch.arange(n)
    xs, ys, ids = take(x, pos), take(y, pos), idx[:n]
    binary = _binary(model)
    same_suite = tuple(resolve_suite(suite)) == tuple(headline.suite)
    clean, units = headline.clean_errors[:n], headline.units[:n]
    smaller_first = sorted(track.eps_sweep, reverse=track.threat.scale == "snr-db")
    worst: torch.Tensor | None = None
    keep = headline.adversarial is not None
    carried = {}  # position -> the adversarial example found at a smaller eps (the most errors)
    points = []
    for eps in smaller_first:
        t = track.threat.with_eps(float(eps))
        if t == headline.threat and same_suite:
            e = headline.robust_errors[:n].clone()
            if worst is not None:
                more = int((torch.maximum(e, worst) > e).sum())
                if more:
                    if keep:
                        for p in (worst > e).nonzero().squeeze(1).tolist():
                            if p in carried:
                                headline.adversarial[p] = carried[p]
                        headline.adversarial = dict(sorted(headline.adversarial.items()))
                    headline.robust_errors[:n] = torch.maximum(e, worst)
                    headline.notes.append(f"{more} example(s) broken at a smaller eps of the sweep counted as "
                                          f"broken at {t.id} (the smaller ball lies inside)")
        else:
            e = clean.clone()
            active = ((clean == 0) & (worst == 0 if worst is not None else True)) if binary else \
                torch.ones(n, dtype=torch.bool)
            sel = active.nonzero().squeeze(1)
            if len(sel):
                rep = evaluate(model, take(xs, sel), take(ys, sel), t, suite, batch_size=track.eval_batch_size,
                               cascade=track.cascade, seed=seed, device=device, index=ids[sel], flags=False,
                               keep_adv=keep)
                e[sel] = rep.robust_errors
                for ex in (rep.adversarial or {}).values():
                    ex.position, ex.threat = int(sel[ex.position]), t.id
                    if ex.position not in carried or ex.errors > carried[ex.position].errors:
                        carried[ex.position] = ex
        if worst is not None:
            e = torch.maximum(e, worst)
        worst = e
        point = {"threat": t.id, "eps": float(eps), "n": n, "clean_accuracy": float((clean == 0).double().mean()),
                 "robust_accuracy": float((e == 0).double().mean())}
        if not binary:
            point["robust_wer"] = float(e.double().sum() / units.double().sum().clamp_min(1))
        points.append(point)
    return points


def accuracy_intervals(metrics: dict[str, Any], n: int, headline: tuple[str, str]) -> dict[str, list[float]]:
    """95% Wilson intervals (:func:`bench.stats.wilson_of`) of the accuracies a result reports: clean and
    robust over all ``n`` examples, and the headline ones over the examples they count (``n_keywords``
    for keyword-only accuracy). WER gets its bootstrap interval in :func:`word_errors`."""
    from bench.stats import wilson_of

    out = {}
    for key in ("clean_accuracy", "robust_accuracy", *headline):
        v = metrics.get(key)
        if not isinstance(v, (int, float)) or key.endswith("_wer"):
            continue
        count = int(metrics.get("n_keywords", n)) if key.endswith("_keywords") else n
        out[key] = [float(x) for x in wilson_of(float(v), count)]
    return out


def _counts(errors: torch.Tensor, what: str) -> list[int]:
    counts = errors.double().round()
    if not torch.equal(counts, errors.double()) or bool((counts < 0).any()):
        raise UserError(f"{what} must be whole numbers >= 0 to be stored per utterance")
    return [int(v) for v in counts.long().tolist()]


def word_errors(report: EvalReport) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
    """A WER evaluation's per-utterance word errors, clean and robust (the worst case over the suite
    that the metrics count, :attr:`EvalReport.robust_errors`), and its reference words, as stored in
    ``per_example``; and the 95% percentile bootstrap intervals over utterances of the clean and robust
    WER (:func:`bench.stats.wer_bootstrap`, Bisani & Ney 2004) for ``metrics.intervals``."""
    from bench.stats import wer_bootstrap

    lists = {"clean_word_errors": _counts(report.clean_errors, "clean word errors"),
             "robust_word_errors": _counts(report.robust_errors, "robust word errors"),
             "ref_words": _counts(report.units, "reference word counts")}
    intervals = {f"{role}_wer": [float(x) for x in wer_bootstrap(lists[f"{role}_word_errors"], lists["ref_words"])]
                 for role in ("clean", "robust")}
    d = report.details
    if "units/char" in d:  # the same hypotheses' character errors (CER)
        lists.update({"clean_char_errors": _counts(d["clean/char"], "clean character errors"),
                      "robust_char_errors": _counts(d["robust/char"], "robust character errors"),
                      "ref_chars": _counts(d["units/char"], "reference character counts")})
        intervals.update({f"{role}_cer": [float(x) for x in wer_bootstrap(lists[f"{role}_char_errors"],
                                                                           lists["ref_chars"])]
                          for role in ("clean", "robust")})
    return lists, intervals


def achieved_list(report: EvalReport) -> list[float | None]:
    """Per example, the worst case's achieved budget in eps units (dB SNR), None where no attack changed
    the outcome (or the input is untouched)."""
    return [float(v) if math.isfinite(v) else None for v in report.achieved().tolist()]


def result_document(track: Track, report: EvalReport, *, model: str, defense: str, seed: int,
                    ckpt_config: dict[str, Any], checkpoint_sha256: str | None, eval_seconds: float,
                    device: Any, eps_sweep: list | None = None, flags: dict | None = None,
                    extra_metrics: dict | None = None, git: dict | None = None,
                    targeted: Any = None) -> dict[str, Any]:
    """Assemble a schema-valid result document from an evaluation (``git``: the
    :func:`bench.provenance.git_state` taken when the run started; ``targeted``: the track's
    :class:`bench.targeted.TargetedReport`, if it has a targeted evaluation)."""
    metrics = report.metrics()
    if eps_sweep:
        metrics["eps_sweep"] = eps_sweep
    if extra_metrics:
        metrics.update(extra_metrics)
    clean_key, robust_key = track.headline_keys
    metrics["intervals"] = accuracy_intervals(metrics, report.n, (clean_key, robust_key))
    per_utterance: dict[str, list[int]] = {}
    if track.metric == "wer":  # the WER interval and the leaderboard's paired test need the word errors
        per_utterance, wer_intervals = word_errors(report)
        metrics["intervals"].update(wer_intervals)
    if "achieved_snr_db" in metrics:
        per_utterance["achieved_snr_db"] = achieved_list(report)
    if targeted is not None:
        from bench.targeted import targeted_per_example

        metrics["targeted"] = targeted.metrics()
        per_utterance["targeted"] = targeted_per_example(targeted)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "track": track.id,
        "metric": track.metric,
        "headline": {"clean": clean_key, "robust": robust_key, "higher_is_better": track.metric != "wer"},
        "domain": track.domain,
        "dataset": track.dataset,
        "threat": report.threat.to_dict(),
        "model": model,
        "defense": defense,
        "defense_params": ckpt_config.get("recipe_params", {}),
        "n": report.n,
        "seed": seed,
        "suite": [s.to_dict() for s in report.suite],
        "metrics": metrics,
        "per_example": {
            "clean": bits(report.clean_correct),
            "robust": bits(report.robust_correct),
            "attacks": {k: bits(v == 0) for k, v in report.attack_errors.items()},
            **per_utterance,
        },
        "flags": flags or {},
        "notes": list(report.notes),
        **cost_and_provenance(track, ckpt_config, eval_seconds=eval_seconds, device=device, seed=seed,
                              checkpoint_sha256=checkpoint_sha256, git=git),
    }
    return doc


def cost_and_provenance(track: Track, ckpt_config: dict[str, Any], *, eval_seconds: float, device: Any, seed: int,
                        checkpoint_sha256: str | None, git: dict | None) -> dict[str, Any]:
    """The ``cost`` and ``provenance`` blocks every result file has (attack and corruption results alike)."""
    return {
        "cost": {
            "train_seconds": float(ckpt_config.get("train_seconds", 0.0)),
            "eval_seconds": float(eval_seconds),
            "train_epochs": ckpt_config.get("train_config", {}).get("epochs"),
            "train_device": ckpt_config.get("device"),
        },
        "provenance": provenance(device=device, seed=seed,
                                 config={"track": track.to_dict(), "checkpoint": {k: v for k, v in ckpt_config.items()
                                                                                   if k not in ("history", "train_seconds")}},
                                 checkpoint_sha256=checkpoint_sha256, git=git),
    }


def eval_track(track: Track, checkpoint: str | Path | None = None, *, model_spec: str | None = None,
               suite: Any = None, seed: int = 0, results: str | Path = USER_RESULTS, n: int | None = None,
               device: str | None = None, eps_sweep: bool = True, progress: bool = True,
               out: str | Path | None = None, flags: bool = True, cascade: bool | None = None,
               compile: str | None = None, batch_size: int | None = None,
               save_adv: str | Path | None = None, transform: str | None = None,
               protocol: str = "auto", samples: int = 0, extend: str | Path | None = None) -> Path:
    """Evaluate a checkpoint, or a model named by the resolver (``model_spec``, :mod:`bench.resolve`), on
    the track's fixed subset and write the result file atomically.

    The model is checked to fit the track (:func:`bench.resolve.check_compatible`) before any attack.
    ``batch_size`` (default: the track's ``eval_batch_size``) only bounds memory: outcomes are seeded
    per example, so the result does not depend on it. ``save_adv``: a folder (absent or empty) that
    receives the adversarial examples the worst case kept (:mod:`bench.adversarial`), written
    after the result file. ``transform``: an inference-time defense in front of the model
    (``name[:k=v,...]``, :mod:`bench.defenses`), recorded in the defense id (``<recipe>+<transform>``).
    ``protocol``: ``auto`` switches the suite to BPDA / EOT when the pre-attack checks or the transform
    call for it (:func:`bench.defenses.choose_protocol`); ``plain`` never does (a naive evaluation, for
    comparison). ``samples``: write that many listenable adversarial examples beside the result file
    (``<stem>.samples/``, :mod:`bench.samples`; at most 10). ``extend``: a result file of this checkpoint
    whose suite is a prefix of this one: its attacks' per-example outcomes are read from it and only the
    new attacks run, on the examples it left robust (:mod:`bench.extend`; exact, since outcomes are seeded
    per example); the sweep and flags are computed afresh.
    """
    from bench.defenses import TransformedModel, apply_protocol, choose_protocol, parse_transform
    from bench.resolve import check_compatible, check_requirements, resolve
    from bench.sanity import randomized_forward, zero_gradients

    git = git_state()  # the code that makes the number: taken before anything runs
    if (checkpoint is None) == (model_spec is None):
        raise UserError("evaluate either a checkpoint or a model spec, not both or neither")
    if n is not None:
        if n < 1:
            raise UserError(f"--n must be >= 1, got {n}")
        track = replace(track, n_eval=n)
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    bs = batch_size or track.eval_batch_size
    if save_adv is not None:
        from bench.adversarial import check_output_dir

        check_output_dir(save_adv)  # before any attack
    if samples:  # evidence samples (bench.samples): a bad count or track fails before any attack
        from bench.samples import check_samples

        check_samples(samples, track)
    if extend is not None and (save_adv is not None or samples or transform):
        raise UserError("--extend cannot be combined with --save-adv, --samples or --transform: the extended "
                        "file's adversarial examples are not in it")
    tform = parse_transform(transform, track.domain) if transform else None  # bad specs fail before any work
    if protocol not in ("auto", "plain"):
        raise UserError(f"--protocol must be auto or plain, got {protocol!r}")
    if checkpoint is not None:
        ckpt_config = read_checkpoint_config(checkpoint)
        if ckpt_config.get("model") != track.model:
            raise UserError(f"checkpoint model {ckpt_config.get('model')!r} is not the track's model {track.model!r}")
    dev = pick_device(device)
    data, idx = track.eval_data()
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, device=dev)
        weights = Path(checkpoint)
        weights = weights / "model.safetensors" if weights.is_dir() else weights.with_suffix(".safetensors")
        ckpt_sha = sha256_file(weights)
        model_id, defense = track.model, ckpt_config["recipe"]
        partial = weights.with_name(weights.stem + f".eval-{track.threat.id}.partial.json")
    else:
        model = resolve(model_spec, device=dev, hints=data.meta)
        src = model.source
        ckpt_config = {**dict(src.config), "model_spec": src.spec}
        ckpt_sha, model_id, defense = src.sha256, src.model_id, src.defense
        # beside the results (not a .json, so never read as one), since a hub model has no folder of its own
        partial = Path(results) / ".partial" / f"{track.id}__{model_id}__{defense}.eval-{track.threat.id}.partial"
    if compile:
        from bench.task import compile_model

        compile_model(model, compile)
    name = model_spec or str(checkpoint)
    if tform is not None:
        model = TransformedModel(model, tform[0], tform[1], seed=seed)
        defense = f"{defense}+{tform[0].ident(tform[1])}"
        partial = partial.with_name(partial.name.replace(".eval-", f".{tform[0].ident(tform[1])}.eval-"))
    check_requirements(model, track, data.meta, name)
    raw = data
    data = prepare(model, data)
    check_compatible(model, track, data, dev, name)
    if track.kind == "corruption":
        if save_adv is not None:
            raise UserError(f"{track.id} is a corruption track: there are no adversarial examples to save")
        from bench.corruption_eval import eval_corruption_track

        return eval_corruption_track(track, model, raw, idx, prepare=prepare, ckpt_config=ckpt_config,
                                     ckpt_sha=ckpt_sha, model_id=model_id, defense=defense, seed=seed, device=dev,
                                     batch_size=bs, progress=progress, results=results, out=out, git=git)
    if track.kind == "certified":
        if save_adv is not None:
            raise UserError(f"{track.id} is a certification track: there are no adversarial examples to save")
        from bench.certify_eval import eval_certified_track

        return eval_certified_track(track, model, data, idx, ckpt_config=ckpt_config, ckpt_sha=ckpt_sha,
                                    model_id=model_id, defense=defense, seed=seed, device=dev, progress=progress,
                                    results=results, out=out, git=git)
    suite = suite if suite is not None else track.suite
    t0 = time.perf_counter()
    # the checks that decide the protocol run before any attack, as AutoAttack's do
    kw = dict(n=100, batch=bs, device=dev, index=idx)
    model.eval()
    checks = {} if protocol == "plain" else {
        "zero-gradients": zero_gradients(model, data.inputs, data.y, **kw).value,
        "randomized-forward": randomized_forward(model, data.inputs, data.y, **kw).value}
    proto = choose_protocol(model, checks, mode=protocol)
    model, suite = apply_protocol(model, suite, proto)
    if isinstance(model, TransformedModel):
        model.reseed()  # the evaluation's random draws do not depend on how many checks ran
    # a transformed or adaptive evaluation never resumes from another protocol's outcomes
    resume_key = f"{ckpt_sha}/{track.id}" + ("" if proto.name == "standard" else f"/{defense}/{proto.name}")
    prior = None
    if extend is not None:
        from bench.extend import extend_report, mark_extended, read_prior

        if proto.name != "standard" or cascade is False:
            raise UserError("--extend needs the standard protocol and the track's cascade")
        prior = read_prior(extend, track=track, suite=suite, ckpt_sha=ckpt_sha, n=len(idx), seed=seed)
        report, attacked = extend_report(prior, model, data.inputs, data.y, track.threat, suite, batch_size=bs,
                                         seed=seed, device=dev, index=idx, progress=progress)
    else:
        report = evaluate(model, data.inputs, data.y, track.threat, suite, batch_size=bs,
                          cascade=track.cascade if cascade is None else cascade, seed=seed, device=dev, index=idx,
                          progress=progress, resume_file=partial, resume_key=resume_key, flags=False,
                          keep_adv=save_adv is not None or bool(samples))
    if model_spec is not None and partial.parent.is_dir() and not any(partial.parent.iterdir()):
        partial.parent.rmdir()  # the finished evaluation removed its partial file
    targeted = None
    if track.targeted is not None:  # what a chosen output costs, beside the worst case (bench.targeted)
        from bench.targeted import evaluate_targeted

        targeted = evaluate_targeted(model, data.inputs, data.y, track.threat, track.targeted, track.target_rule,
                                     meta=dict(data.meta or {}), batch_size=bs, seed=seed, device=dev, index=idx,
                                     progress=progress)
    sweep_suite = suite if proto.eot > 1 else (track.sweep_suite or suite)
    sweep = _sweep(model, data.inputs, data.y, idx, replace(track, eval_batch_size=bs), sweep_suite,
                   seed, dev, headline=report) if eps_sweep and track.eps_sweep else None
    flag_doc = compute_flags(model, data.inputs, data.y, track.threat, report, eps_sweep=sweep, device=dev,
                             index=idx, seed=seed, batch_size=bs) if flags else {}
    seconds = time.perf_counter() - t0
    from bench.evaluate import _rank_world

    if _rank_world()[0] != 0:
        return Path(out) if out else Path(results)  # only rank 0 writes results
    hook = getattr(model, "extra_metrics", None)  # e.g. WER for ASR, keyword-only accuracy for KWS
    extra = hook(report, data.y) if callable(hook) else None
    doc = result_document(track, report, model=model_id, defense=defense, seed=seed,
                          ckpt_config=ckpt_config, checkpoint_sha256=ckpt_sha,
                          eval_seconds=seconds, device=dev, eps_sweep=sweep, flags=flag_doc, extra_metrics=extra,
                          git=git, targeted=targeted)
    if prior is not None:
        mark_extended(doc, prior, attacked)
    if isinstance(model, TransformedModel) or proto.name != "standard" or proto.forced:
        doc["protocol"] = proto.to_dict()
        if isinstance(model, TransformedModel):
            doc["transform"] = model.describe()
    path = write_result(doc, root=results, path=out)
    if save_adv is not None:
        from bench.adversarial import save_adversarial

        save_adversarial(report, save_adv, track=track, model=name, model_id=model_id, defense=defense,
                         checkpoint_sha256=ckpt_sha, seed=seed, y=data.y, result=path)
    if samples:  # evidence samples beside the result file (bench.samples)
        from bench.samples import write_samples

        write_samples(report, path, samples, track=track, model=model, inputs=data.inputs, y=data.y,
                      meta=data.meta, index=idx, device=dev)
    return path
