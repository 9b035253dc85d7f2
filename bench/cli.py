"""The ``xrobust`` command line: run | train | eval | verify-adv | ls | validate | submit | export | data (+ plug-in
verbs).

Bad input gives one line on stderr and exit code 2, never a traceback and
never a partial result file. Verbs from other packages (the leaderboard, perf)
register through the ``xrobust.commands`` entry-point group.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

from bench.errors import UserError
from bench.results import PUBLISHED_RESULTS, USER_RESULTS
from bench.training.loop import TrainingDiverged

EXAMPLES = """examples:
  xrobust run quick                                   # every quick track, default recipes
  xrobust run image-mnist5k-linf-0.3 --recipes erm,pgd-at
  xrobust train --track image-mnist5k-linf-0.3 --recipe pgd-at --epochs 10
  xrobust eval --track image-mnist5k-linf-0.3 --checkpoint runs/image-mnist5k-linf-0.3/pgd-at-s0/model.safetensors
  xrobust eval --track image-mnist5k-linf-0.3 --model zoo:image-mnist5k-linf-0.3/pgd-at --batch-size 100
  xrobust eval --track image-digits-linf-0.2 --model zoo:... --n 50 --save-adv adv/   # + the adversarial examples
  xrobust verify-adv adv/ --track image-digits-linf-0.2 --model zoo:...               # re-score them
  xrobust eval --track speech-asr-digits-snr-30db --model zoo:... --samples 3    # + 3 WAV pairs for the site
  xrobust zoo ls                                      # the published checkpoints and their numbers
  xrobust ls tracks
  xrobust validate results/
  xrobust submit my-result.json --checkpoint runs/.../model.safetensors
  xrobust submit my-result.json --card card.json --venue "ICLR 2018"   # attach a model card (fields or a file)
  xrobust export --format robustbench results/image/mnist5k/linf-0.3/smallcnn__pgd-at.json --out info.json
  xrobust perf --track image-mnist5k-linf-0.3 --checkpoint runs/image-mnist5k-linf-0.3/pgd-at-s0/model.safetensors
  xrobust perf --training --track image-mnist5k-linf-0.3
  xrobust run image-mnist5k-smooth-0.25                # gaussian-aug + randomized-smoothing certificate
  xrobust eval --track image-mnist5k-smooth-0.25 --model zoo:image-mnist5k-smooth-0.25/gaussian-aug
  xrobust leaderboard
"""

#: verb -> (help, add-arguments function, handler)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register a verb: decorate ``handler(args) -> exit code``; ``handler.add_arguments(parser)`` optional."""

    def deco(fn):
        COMMANDS[name] = (help, getattr(fn, "add_arguments", lambda p: None), fn)
        return fn

    return deco


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        self.exit(2, f"xrobust: error: {message}\n")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _track(name: str, eps: float | None = None):
    from bench.tracks import get_track

    track = get_track(name)
    if eps is not None:
        track = track.with_threat(track.threat.with_eps(eps))
    return track


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0; never the clock)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")
    p.add_argument("--results", default=USER_RESULTS,
                   help=f"results root (default: {USER_RESULTS}/, your own; '--results {PUBLISHED_RESULTS}' "
                        "writes the published files)")
    p.add_argument("--runs", default="runs", help="checkpoint root (default: runs/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--eps", type=float, default=None, help="override the track's eps (same norm and scale)")


# --------------------------------------------------------------------- verbs
def _args_run(p):
    p.add_argument("track", help="a track id, or 'quick' for every quick track")
    p.add_argument("--recipes", default=None, help="comma-separated recipes (default: the track's)")
    p.add_argument("--epochs", type=float, default=None, help="override the track's training epochs")
    p.add_argument("--n", type=int, default=None, help="evaluate on the first N of the fixed subset")
    p.add_argument("--suite", default=None, help="a registered attack suite instead of the track's")
    p.add_argument("--no-sweep", action="store_true", help="skip the eps sweep")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in training")
    p.add_argument("--publish", action="store_true",
                   help="copy each checkpoint into zoo/<track>/ and evaluate the published copy")
    p.add_argument("--train", action="store_true",
                   help="'quick': retrain every default recipe and evaluate it on the full subset, instead of "
                        "re-evaluating the published checkpoints (zoo/) on each track's zoo_n examples")
    p.add_argument("--seeds", default=None, metavar="S0,S1,...",
                   help="train each recipe with these seeds (the first is the result's own checkpoint; the others "
                        "are summarised in its 'seeds' block: mean and sd across seeds)")
    p.add_argument("--workers", type=int, default=None,
                   help="'quick' without --train: parallel worker processes (default: one per core)")
    _accel(p)
    _common(p)


def _headline(doc: dict) -> str:
    """The result's headline numbers in the track's own metric (accuracy, or WER for ASR tracks)."""
    m = doc["metrics"]
    if doc.get("metric") == "wer" and "clean_wer" in m:
        return f"clean WER {m['clean_wer']:.3f} robust WER {m['robust_wer']:.3f}"
    head = doc.get("headline") or {"clean": "clean_accuracy", "robust": "robust_accuracy"}
    if doc.get("kind") == "certified":
        return (f"clean {m[head['clean']]:.3f} certified {m[head['robust']]:.3f} at {doc['threat']['id']} "
                f"(randomized smoothing, sigma {doc['certification']['sigma']}, n {doc['certification']['n']})")
    if doc.get("kind") == "corruption":
        return f"clean {m[head['clean']]:.3f} corruption accuracy {m[head['robust']]:.3f} (mean over the cells)"
    label = "" if head["robust"] == "robust_accuracy" else f" ({head['robust'].removeprefix('robust_')})"
    return f"clean {m[head['clean']]:.3f} robust {m[head['robust']]:.3f}{label}"


def cmd_run(args) -> int:
    from bench.pipeline import checkpoint_path, eval_track, train_track
    from bench.registry import RECIPES, TRACKS

    if args.track == "quick":
        tracks = [t for _, t in TRACKS.items() if t.quick]
        if args.eps is not None:
            tracks = [t.with_threat(t.threat.with_eps(args.eps)) for t in tracks]
    else:
        tracks = [_track(args.track, args.eps)]
    recipes_arg = [r.strip() for r in args.recipes.split(",")] if args.recipes else None
    if recipes_arg is not None:
        if not all(recipes_arg):
            raise UserError(f"malformed --recipes {args.recipes!r}")
        for r in recipes_arg:
            RECIPES.get(r)  # fail before any training
    if args.suite:
        from bench.registry import SUITES

        SUITES.get(args.suite)
    if args.track == "quick" and not args.train:
        return _run_quick_zoo(args, tracks)
    seeds = _seeds(args)
    written = []
    for track in tracks:
        # a corruption track evaluates the checkpoints of its attack track (trained and published there)
        home = _track(track.checkpoints_from) if track.checkpoints_from else track
        for recipe in recipes_arg or list(track.recipes):
            ckpt = _published_checkpoint(home, recipe) if args.publish and home is not track else None
            trained = checkpoint_path(home, recipe, seeds[0], args.runs)
            if ckpt is not None:
                _log(f"[{track.id}] using the published checkpoint {ckpt}")
            elif home is not track and not args.publish and trained.exists():
                ckpt = trained
                _log(f"[{track.id}] using {home.id}'s checkpoint {ckpt}")
            else:
                ckpt = train_track(home, recipe, epochs=args.epochs, seed=seeds[0], runs=args.runs,
                                   device=args.device, bf16=args.bf16, progress=not args.quiet, log=_log,
                                   channels_last=args.channels_last, compile=args.compile)
                if args.publish:
                    from bench.zoo import publish

                    ckpt = publish(ckpt, home)
                    _log(f"[{home.id}] published {ckpt}")
            _log(f"[{track.id}] evaluating {recipe}")
            path = eval_track(track, ckpt, suite=args.suite, seed=args.seed, results=args.results, n=args.n,
                              device=args.device, eps_sweep=not args.no_sweep, progress=not args.quiet,
                              compile=args.compile)
            doc = json.loads(Path(path).read_text())
            _log(f"[{track.id}] {recipe}: {_headline(doc)} -> {path}")
            if len(seeds) > 1:
                _more_seeds(args, track, home, recipe, seeds, Path(path))
            written.append(path)
    print("\n".join(str(p) for p in written))
    if "leaderboard" in COMMANDS and args.track == "quick":  # the published results beside yours, marked
        mine = Path(args.results).resolve() != Path(PUBLISHED_RESULTS).resolve()
        COMMANDS["leaderboard"][2](argparse.Namespace(results=PUBLISHED_RESULTS, user=args.results if mine else None,
                                                      out=None, markdown=None, quiet=args.quiet))
    return 0


cmd_run.add_arguments = _args_run


def _seeds(args) -> list[int]:
    """``--seeds 0,1,2``: the training seeds (the first is the result's own checkpoint), else ``--seed``."""
    if not getattr(args, "seeds", None):
        return [args.seed]
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"malformed --seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"--seeds must be distinct non-negative integers, got {args.seeds!r}")
    if len(seeds) > 1 and args.track == "quick" and not args.train:
        raise UserError("--seeds trains: use it with a track id, or 'quick --train'")
    return seeds


def _more_seeds(args, track, home, recipe: str, seeds: list[int], path: Path) -> None:
    """Train and evaluate ``recipe`` with the other training seeds (checkpoints under runs/, never published;
    the evaluation seed stays ``--seed``), then record every seed's headline in the first seed's result
    file (:mod:`bench.seeds`), rewritten atomically after validation."""
    from bench.pipeline import checkpoint_path, eval_track, train_track
    from bench.results import write_result
    from bench.seeds import seed_summary

    docs = [json.loads(path.read_text())]
    for s in seeds[1:]:
        ckpt = train_track(home, recipe, epochs=args.epochs, seed=s, runs=args.runs, device=args.device,
                           bf16=args.bf16, progress=not args.quiet, log=_log, channels_last=args.channels_last,
                           compile=args.compile)
        out = checkpoint_path(home, recipe, s, args.runs).with_name(f"result-{track.id}.json")
        p = eval_track(track, ckpt, suite=args.suite, seed=args.seed, results=args.results, n=args.n,
                       device=args.device, eps_sweep=not args.no_sweep, progress=not args.quiet, out=out,
                       compile=args.compile)
        docs.append(json.loads(Path(p).read_text()))
        _log(f"[{track.id}] {recipe} (training seed {s}): {_headline(docs[-1])} -> {p}")
    doc = docs[0]
    doc["seeds"] = seed_summary(docs, seeds)
    write_result(doc, path=path)
    b = doc["seeds"]
    _log(f"[{track.id}] {recipe} over {len(seeds)} training seeds: clean {b['clean_mean']:.3f} ± {b['clean_sd']:.3f}"
         f", robust {b['robust_mean']:.3f} ± {b['robust_sd']:.3f}")


def _published_checkpoint(track, recipe: str) -> Path | None:
    """The zoo checkpoint of ``recipe`` on ``track`` (checked against its published result), if any."""
    from bench.zoo import checked_path, zoo_path

    if not zoo_path(track.id, track.model, recipe).exists():
        return None
    return checked_path(f"{track.id}/{recipe}")


def _run_quick_zoo(args, tracks) -> int:
    """``xrobust run quick``: every published checkpoint re-evaluated (bench.reproduce), then the leaderboard."""
    from bench.reproduce import reproduce

    if args.recipes or args.epochs is not None or args.publish or args.bf16 or args.eps is not None:
        raise UserError("--recipes/--epochs/--publish/--bf16/--eps train or change the track: add --train")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.n is not None:
        if args.n < 1:
            raise UserError(f"--n must be >= 1, got {args.n}")
        from dataclasses import replace

        tracks = [replace(t, zoo_n=args.n) for t in tracks]
    rows = reproduce(tracks, results=args.results, seed=args.seed, device=args.device, workers=args.workers,
                     log=_log)
    print("\n".join(r["path"] for r in rows))
    if "leaderboard" in COMMANDS:
        COMMANDS["leaderboard"][2](argparse.Namespace(results=PUBLISHED_RESULTS, user=args.results, out=None,
                                                      markdown=None, quiet=args.quiet))
    return 0


def _accel(p, training: bool = True) -> None:
    """CUDA-path switches shared by run/train/eval."""
    if training:
        p.add_argument("--channels-last", action="store_true", help="channels_last memory format for conv nets")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the model (default backend inductor; aot_eager needs no C++ compiler)")


def _args_train(p):
    p.add_argument("--track", required=True)
    p.add_argument("--recipe", required=True, help="a registered recipe or 'module:Factory'")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--out", default=None, help="checkpoint path (.safetensors)")
    p.add_argument("--bf16", action="store_true")
    _accel(p)
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="write a resumable training state every N steps (atomic)")
    p.add_argument("--resume", action="store_true", help="continue from the training state, if any")
    _common(p)


def cmd_train(args) -> int:
    from bench.pipeline import train_track

    track = _track(args.track, args.eps)
    path = train_track(track, args.recipe, epochs=args.epochs, seed=args.seed, out=args.out, runs=args.runs,
                       device=args.device, bf16=args.bf16, progress=not args.quiet, log=_log,
                       checkpoint_every=args.checkpoint_every, resume=args.resume,
                       channels_last=args.channels_last, compile=args.compile)
    print(path)
    return 0


cmd_train.add_arguments = _args_train


def _args_eval(p):
    p.add_argument("--track", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a checkpoint (.safetensors + .json) trained for the track")
    which.add_argument("--model", metavar="SPEC",
                       help="a model by name: zoo:<track>/<defense>, hf:<repo-or-folder>, timm:<name>[@file], "
                            "torchvision:<name>[@file], robustbench:<dataset>/<threat>/<name>, module:object")
    p.add_argument("--batch-size", type=int, default=None, help="examples per batch (default: the track's)")
    p.add_argument("--suite", default=None, help="a registered suite name (default: the track's)")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=None,
                   help="attack only examples still robust after the previous attacks (default: the track's)")
    p.add_argument("--no-flags", action="store_true", help="skip the sanity checks (bench.sanity)")
    p.add_argument("--publish", action="store_true",
                   help="copy the checkpoint into zoo/<track>/ first and evaluate the published copy")
    _accel(p, training=False)
    p.add_argument("--out", default=None, help="result path (default: the canonical path under --results)")
    p.add_argument("--save-adv", default=None, metavar="DIR",
                   help="also write the adversarial examples the worst case kept to DIR (absent or empty): "
                        "manifest.json, adv.safetensors, adv.jsonl (text), wav/ (speech); see docs/attacks.md")
    p.add_argument("--samples", type=int, default=0, metavar="K",
                   help="also write K (1-10) listenable adversarial examples beside the result file, "
                        "<result stem>.samples/ (speech: clean.wav + adv.wav, transcripts, SNR), shown on the "
                        "leaderboard's audio pages; see docs/leaderboard.md")
    p.add_argument("--transform", default=None, metavar="NAME[:K=V,...]",
                   help="an inference-time defense in front of the model, e.g. jpeg:quality=75, bit-depth:bits=3, "
                        "gaussian:sigma=0.3 (xrobust ls transforms); the defense id becomes <recipe>+<transform>")
    p.add_argument("--protocol", choices=("auto", "plain"), default="auto",
                   help="auto (default): BPDA / EOT when the checks or the transform call for it (docs/defenses.md); "
                        "plain: never switch (a naive evaluation, for comparison only)")
    p.add_argument("--extend", default=None, metavar="RESULT.json",
                   help="a result file of this checkpoint whose suite is a prefix of the track's: read its attacks' "
                        "per-example outcomes and run only the new attacks on the examples it left robust "
                        "(exact: outcomes are seeded per example); sweep and flags are computed afresh")
    _common(p)


def cmd_eval(args) -> int:
    from bench.pipeline import eval_track

    track = _track(args.track, args.eps)
    if args.suite:
        from bench.registry import SUITES

        SUITES.get(args.suite)
    if args.model and args.publish:
        raise UserError("--publish copies a --checkpoint into zoo/; a --model is evaluated where it is")
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    checkpoint = args.checkpoint
    if args.publish:
        from bench.zoo import publish

        home = _track(track.checkpoints_from) if track.checkpoints_from else track
        checkpoint = publish(checkpoint, home)
        _log(f"[{home.id}] published {checkpoint}")
    path = eval_track(track, checkpoint, model_spec=args.model, suite=args.suite, seed=args.seed,
                      results=args.results, n=args.n, device=args.device, eps_sweep=not args.no_sweep,
                      progress=not args.quiet, out=args.out, flags=not args.no_flags, cascade=args.cascade,
                      compile=args.compile, batch_size=args.batch_size, save_adv=args.save_adv,
                      transform=args.transform, protocol=args.protocol, samples=args.samples,
                      extend=args.extend)
    doc = json.loads(Path(path).read_text())
    _log(_headline(doc))
    if doc.get("protocol"):
        pr = doc["protocol"]
        _log(f"  protocol {pr['name']}" + (f" ({'; '.join(pr['reasons'])})" if pr["reasons"] else ""))
    if args.save_adv:
        _log(f"  adversarial examples -> {args.save_adv}")
    if args.samples:
        from bench.samples import samples_dir

        folder = samples_dir(path)
        _log(f"  samples -> {folder}" if folder.is_dir() else "  samples: none (no example was broken)")
    for name, acc in doc["metrics"].get("per_attack", {}).items():
        _log(f"  {name}: {acc:.3f} ({doc['metrics'].get('per_attack_mode', 'alone')})")
    for name, acc in doc["metrics"].get("per_corruption_mean", {}).items():
        _log(f"  {name}: {acc:.3f} (mean over severities)")
    up = [k for k, v in doc.get("flags", {}).items() if v.get("raised")]
    if up:
        _log("  flags raised: " + ", ".join(up) + " (see docs/attacks.md)")
    print(path)
    return 0


cmd_eval.add_arguments = _args_eval

def _args_verify_adv(p):
    p.add_argument("dir", help="a folder written by xrobust eval --save-adv")
    p.add_argument("--track", required=True, help="the track whose threat model and suite are the rules")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="the checkpoint (.safetensors + .json) the examples claim to fool")
    which.add_argument("--model", metavar="SPEC", help="the model by name (as for xrobust eval --model)")
    p.add_argument("--result", default=None, help="a result file whose robust accuracy the examples must reproduce")
    p.add_argument("--batch-size", type=int, default=None, help="examples per batch (default: the track's)")
    p.add_argument("--eps", type=float, default=None, help="the --eps the evaluation overrode the track's with")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")


def cmd_verify_adv(args) -> int:
    """Re-score saved adversarial examples; exit 2 with one line naming the first problem."""
    from bench.adversarial import verify_adversarial
    from bench.training.loop import pick_device

    track = _track(args.track, args.eps)
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not Path(args.dir).is_dir():
        raise UserError(f"not a folder: {args.dir}")
    dev, sha = pick_device(args.device), None
    if args.checkpoint:
        from bench.checkpoint import load_checkpoint, sha256_file

        if not Path(args.checkpoint).exists():
            raise UserError(f"checkpoint not found: {args.checkpoint}")
        model = load_checkpoint(args.checkpoint, device=dev)
        weights = Path(args.checkpoint)
        sha = sha256_file(weights / "model.safetensors" if weights.is_dir() else weights.with_suffix(".safetensors"))
    else:
        from bench.resolve import resolve

        model = resolve(args.model, device=dev, hints=track.eval_data()[0].meta)
    rep = verify_adversarial(args.dir, model, track, result=args.result, device=dev, batch_size=args.batch_size,
                             checkpoint_sha256=sha)
    if not rep.ok:
        raise UserError(f"{args.dir}: rejected: {rep.summary()}")
    print(rep.summary())
    return 0


cmd_verify_adv.add_arguments = _args_verify_adv


def _args_perf(p):
    p.add_argument("--track", required=True, help="the track whose model and evaluation batch are timed")
    p.add_argument("--checkpoint", default=None, help="trained weights (default: an untrained model of the family)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the track's evaluation batch size")
    p.add_argument("--steps", type=int, default=10, help="K of PGD-K (default 10)")
    p.add_argument("--apgd-steps", type=int, default=10, help="APGD iterations (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds after a warm-up (median kept)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-peers", action="store_true", help="skip torchattacks / ART / AutoAttack")
    p.add_argument("--standard", action="store_true",
                   help="also time our standard cascade against the official AutoAttack (pyautoattack), once each")
    p.add_argument("--out", default=None, help="default: results/perf/<track>.json")
    p.add_argument("--training", action="store_true",
                   help="instead: seconds per epoch of each recipe relative to ERM (interleaved)")
    p.add_argument("--recipes", default="erm,fgsm-rs,free,pgd-at,trades,mart",
                   help="with --training: recipes to time (default erm,fgsm-rs,free,pgd-at,trades,mart)")
    p.add_argument("--batches", type=int, default=8, help="with --training: minibatches timed per recipe and round")
    _common(p)


def _perf_training(args, track) -> int:
    from bench.checkpoint import atomic_write_bytes
    from bench.perf_training import training_costs
    from bench.provenance import device_description, provenance
    from bench.registry import RECIPES

    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    for r in recipes:
        RECIPES.get(r)
    rows = training_costs(track, recipes, batches=args.batches, rounds=args.repeats, seed=args.seed,
                          device=args.device)
    print(f"{'recipe':10s} {'s/epoch':>9s} {'x ERM':>7s}")
    for r in rows:
        print(f"{r['recipe']:10s} {r['seconds_per_epoch']:9.2f} {r['ratio_to_erm']:7.2f}")
    doc = {"track": track.id, "kind": "training", "rows": rows, "machine": device_description(args.device),
           "provenance": provenance(device=args.device, seed=args.seed)}
    path = Path(args.out) if args.out else Path(args.results) / "perf" / f"{track.id}-training.json"
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
    print(path)
    return 0


def cmd_perf(args) -> int:
    import torch

    from bench.perf import perf_track, table

    track = _track(args.track)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.training:
        if args.batches < 1 or args.repeats < 1:
            raise UserError("--batches and --repeats must be >= 1")
        return _perf_training(args, track)
    if args.steps < 1 or args.apgd_steps < 1 or args.repeats < 1:
        raise UserError("--steps, --apgd-steps and --repeats must be >= 1")
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    doc, path = perf_track(track, checkpoint=args.checkpoint, batch_size=args.batch_size, steps=args.steps,
                           apgd_steps=args.apgd_steps, repeats=args.repeats, device=args.device,
                           peers=not args.no_peers, standard=args.standard, out=args.out, results=args.results,
                           log=_log)
    print(table(doc))
    print(path)
    return 0


cmd_perf.add_arguments = _args_perf

LISTABLE = ("tracks", "recipes", "attacks", "suites", "models", "datasets", "domains", "losses", "corruptions", "transforms")


def _args_ls(p):
    p.add_argument("what", nargs="?", default="tracks", choices=LISTABLE)


def cmd_ls(args) -> int:
    from bench import registry

    reg = getattr(registry, args.what.upper())
    registry.load_domains()
    for name in reg.names():
        if args.what == "tracks":
            t = reg.get(name)
            what = t.threat.id if t.kind == "attack" else \
                f"{t.certify.id} (certified, {t.threat.id})" if t.kind == "certified" else \
                f"{t.corruption_set} ({len(t.corruptions)} corruptions)"
            print(f"{name:32s} {t.domain:7s} {t.dataset:16s} {t.model:16s} {what:12s}"
                  f"{' quick' if t.quick else ''}")
        else:
            print(name)
    return 0


cmd_ls.add_arguments = _args_ls


def _args_zoo(p):
    p.add_argument("action", choices=("ls",), help="ls: every published checkpoint with its published numbers")
    p.add_argument("--zoo", default=None, help="zoo root (default: the repository's zoo/ or $XROBUST_ZOO)")
    p.add_argument("--results", default=None, help="published results (default: results/ beside the zoo)")


def cmd_zoo(args) -> int:
    from bench.zoo import catalog

    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{'spec':48s} {'model':12s} {'defense':10s} {'clean':>6s} {'robust':>6s}  metric")
    for r in catalog(args.zoo, args.results):
        print(f"{r['spec']:48s} {r['model']:12s} {r['defense']:10s} {fmt(r['clean']):>6s} {fmt(r['robust']):>6s}  "
              f"{r['metric'] or 'no published result'}"
              + ("" if r.get("weights", True) else "  (training record only: weights not in the repository)"))
    return 0


cmd_zoo.add_arguments = _args_zoo


def _args_validate(p):
    p.add_argument("paths", nargs="+", help="result files or folders")
    p.add_argument("--no-path-check", dest="check_path", action="store_false",
                   help="do not require <domain>/<dataset>/<threat-id>/<model>__<defense>.json paths")


def cmd_validate(args) -> int:
    from bench.results import problems, result_files
    from bench.samples import is_samples_dir, result_of, sample_problems, samples_dir

    files: list[Path] = []
    folders: list[Path] = []  # evidence samples named directly, or with no result file beside them
    for p in map(Path, args.paths):
        if p.is_dir() and is_samples_dir(p):
            folders.append(p)
        elif p.is_dir():
            files.extend(result_files(p))
            folders.extend(d for d in sorted(p.rglob("*.samples")) if d.is_dir() and not result_of(d).exists())
        else:
            files.append(p)
    bad, checked = 0, len(folders)
    for d in folders:
        errs = [f"no result file {result_of(d).name} beside it"] if not result_of(d).exists() else []
        if not errs:
            try:
                doc = json.loads(result_of(d).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                doc = None
            errs = sample_problems(d, doc if isinstance(doc, dict) else None)
        for e in errs:
            print(f"{d}: {e}", file=sys.stderr)
        bad += bool(errs)
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except FileNotFoundError:
            print(f"{f}: file not found", file=sys.stderr)
            bad += 1
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            print(f"{f}: not valid JSON ({exc})", file=sys.stderr)
            bad += 1
            continue
        errs = problems(doc, path=f.resolve() if args.check_path else None)
        for e in errs:
            print(f"{f}: {e}", file=sys.stderr)
        folder = samples_dir(f)
        serrs = sample_problems(folder, doc if isinstance(doc, dict) else None) if folder.is_dir() else []
        checked += folder.is_dir()
        for e in serrs:
            print(f"{folder}: {e}", file=sys.stderr)
        bad += bool(errs or serrs)
    if bad:
        return 2
    print(f"{len(files)} result file(s) valid" + (f", {checked} samples folder(s) valid" if checked else ""))
    return 0


cmd_validate.add_arguments = _args_validate


def _args_submit(p):
    p.add_argument("file", help="a result file (e.g. written by xrobust eval --out)")
    p.add_argument("--checkpoint", default=None, help="the evaluated checkpoint; its sha256 is recomputed and checked")
    p.add_argument("--results", default="results", help="results root (default: results/)")
    p.add_argument("--replace", action="store_true", help="overwrite an existing result at the canonical path")
    card = p.add_argument_group("model card (merged over the file's card; see bench/cards.py)")
    card.add_argument("--card", default=None, metavar="CARD.json", help="a JSON card; the options below override it")
    card.add_argument("--paper", default=None, help="title of the paper that describes the defense")
    card.add_argument("--paper-url", default=None, help="https:// link to the paper")
    card.add_argument("--venue", default=None, help="e.g. 'ICLR 2018', 'arXiv 2024', 'unpublished'")
    card.add_argument("--architecture", default=None, help="e.g. SmallCNN, WideResNet-28-10")
    card.add_argument("--extra-data", default=None, help="training data beyond the track's: no, yes, or a description")
    card.add_argument("--license", default=None, help="license of the weights, e.g. MIT")
    card.add_argument("--checkpoint-url", default=None,
                      help="where others get the weights: an https:// URL or zoo:<track>/<defense> "
                           "(--checkpoint is the local file whose sha256 is checked)")
    card.add_argument("--authors", default=None, help="comma-separated author names")
    card.add_argument("--reported", type=float, default=None, metavar="FRACTION",
                      help="the robust accuracy the paper reports, in [0, 1]")


def cmd_submit(args) -> int:
    from bench.cards import card_from_options
    from bench.results import submit_result

    card = card_from_options(args.card, paper=args.paper, paper_url=args.paper_url, venue=args.venue,
                             architecture=args.architecture, extra_data=args.extra_data, license=args.license,
                             checkpoint=args.checkpoint_url, authors=args.authors,
                             reported_robust_accuracy=args.reported)
    print(submit_result(args.file, args.results, checkpoint=args.checkpoint, replace=args.replace, card=card))
    return 0


cmd_submit.add_arguments = _args_submit


def _args_export(p):
    p.add_argument("file", help="a result file")
    p.add_argument("--format", default="robustbench", choices=("robustbench",),
                   help="robustbench: its model_info JSON (image Linf/L2, AutoAttack-standard cascade only)")
    p.add_argument("--out", default=None, help="write here (atomically) instead of stdout")


def cmd_export(args) -> int:
    from bench.checkpoint import atomic_write_bytes
    from bench.export import dumps, export_result

    text = dumps(export_result(args.file, args.format))
    if args.out:
        atomic_write_bytes(Path(args.out), text.encode())
        print(args.out)
    else:
        print(text, end="")
    return 0


cmd_export.add_arguments = _args_export


def _args_data(p):
    p.add_argument("action", choices=("fetch",))
    p.add_argument("dataset")
    p.add_argument("--root", default=None)


def cmd_data(args) -> int:
    from bench.registry import DATASETS

    loader = DATASETS.get(args.dataset)
    fetch = getattr(loader, "fetch", None)
    if fetch is None:
        raise UserError(f"dataset {args.dataset!r} has nothing to fetch (it is generated or ships with a package)")
    print(fetch(args.root))
    return 0


cmd_data.add_arguments = _args_data

for _name, _help, _fn in (("run", "train + evaluate recipes on a track (or 'quick')", cmd_run),
                          ("train", "train one recipe on a track", cmd_train),
                          ("eval", "evaluate a checkpoint or a model by name on a track, write the result file", cmd_eval),
                          ("verify-adv", "re-score saved adversarial examples against a model and a track's "
                                         "threat model", cmd_verify_adv),
                          ("ls", "list tracks, recipes, attacks, models, datasets, ...", cmd_ls),
                          ("zoo", "list the published checkpoints (zoo:<track>/<defense>) and their numbers", cmd_zoo),
                          ("validate", "check result files against the schema and consistency rules", cmd_validate),
                          ("submit", "validate a result file, attach a model card, place it under results/",
                           cmd_submit),
                          ("export", "write a result in another benchmark's format (RobustBench model_info)",
                           cmd_export),
                          ("data", "fetch a dataset into the cache", cmd_data),
                          ("perf", "time our attacks against the gradient limit and the peers", cmd_perf)):
    command(_name, _help)(_fn)


def _load_plugin_commands() -> None:
    for ep in metadata.entry_points(group="xrobust.commands"):
        try:
            ep.load()
        except ImportError as exc:  # a broken plug-in must not take the CLI down
            _log(f"xrobust: warning: command plug-in {ep.name} failed to load: {exc}")


def build_parser() -> argparse.ArgumentParser:
    _load_plugin_commands()
    parser = _Parser(prog="xrobust", description="Cross-domain adversarial robustness benchmark.",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from bench.provenance import package_version

    parser.add_argument("--version", action="version", version=f"xrobust {package_version()}")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for name, (hlp, add_args, _) in COMMANDS.items():
        sp = sub.add_parser(name, help=hlp, description=hlp, epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_args(sp)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.verb][2](args)
    except UserError as exc:
        print(f"xrobust: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"xrobust: error: training diverged: {exc}; the last good training state (if any) was kept",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("xrobust: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
