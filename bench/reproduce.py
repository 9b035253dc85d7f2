"""Re-evaluate the published checkpoints (``zoo/``) and check them against the published results.

This is the README's main job (``xrobust run quick``), in the spirit of RobustBench's quick start
(``load_model`` + ``benchmark`` on a few images): every published checkpoint of every quick track
is evaluated with the track's official suite on the first ``track.zoo_n`` examples of the fixed
evaluation subset (a uniform random subset, see :meth:`bench.tracks.Track.eval_indices`). Random
starts are seeded per example (:mod:`bench.rng`), so each example's outcome does not depend on
which other examples are evaluated with it: the per-example outcomes must equal the published
file's on the same examples, and :func:`compare` counts the examples where they do. Retraining
everything is ``xrobust run quick --train``.

Jobs run in worker processes, one torch thread each (as the published files were made), longest
first, so two cores finish a set of unequal jobs in about half the summed time.
"""

from __future__ import annotations

import json
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from bench.errors import UserError
from bench.results import PUBLISHED_RESULTS, USER_RESULTS, result_path


@dataclass(frozen=True)
class Job:
    track: str
    defense: str
    n: int
    #: published eval seconds scaled to n: only used to start the longest jobs first
    estimate: float = 0.0


def published_result(track, defense: str, root: str | Path | None = None) -> dict[str, Any] | None:
    """The published result document of (track, track's model, defense), or ``None``."""
    from bench.zoo import zoo_root

    base = Path(root) if root is not None else zoo_root().parent / PUBLISHED_RESULTS
    path = result_path(base, {**track.result_ids(), "defense": defense})
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def jobs_for(tracks, zoo: str | Path | None = None, results: str | Path | None = None) -> list[Job]:
    """One job per published checkpoint of each track that has a published result there, longest first."""
    from bench.zoo import published

    names = published(zoo)
    jobs = []
    for track in tracks:
        for name in names:
            tid, defense = name.split("/", 1)
            if tid != (track.checkpoints_from or track.id):  # a corruption track: its attack track's checkpoints
                continue
            n = min(track.zoo_n, track.n_eval)
            doc = published_result(track, defense, results)
            if doc is None:  # nothing published on this track to check it against (e.g. only a corruption result)
                continue
            est = float(doc.get("cost", {}).get("eval_seconds", 0.0)) * n / max(1, int(doc.get("n", n)))
            jobs.append(Job(track.id, defense, n, est))
    return sorted(jobs, key=lambda j: -j.estimate)


def compare(doc: dict[str, Any], published: dict[str, Any] | None) -> dict[str, Any]:
    """Outcome by outcome: ours against the published file's first ``n`` examples."""
    out: dict[str, Any] = {"n": doc["n"], "metric": doc["metric"], "clean": doc["metrics"][doc["headline"]["clean"]],
                           "robust": doc["metrics"][doc["headline"]["robust"]]}
    if published is None:
        return {**out, "published": None}
    n = doc["n"]
    mine, theirs = _outcomes(doc, n), _outcomes(published, n)
    agree = sum(a == b for a, b in zip(mine["robust"], theirs["robust"]))
    agree_clean = sum(a == b for a, b in zip(mine["clean"], theirs["clean"]))
    words = {}
    ours_we, theirs_we = doc["per_example"].get("robust_word_errors"), published["per_example"].get("robust_word_errors")
    if ours_we is not None and theirs_we is not None:  # WER: the worst-case word errors, utterance by utterance
        words = {"word_errors_agree": sum(a == b for a, b in zip(ours_we[:n], theirs_we[:n])),
                 "word_errors_compared": len(ours_we[:n])}
    ours_t, theirs_t = (d["per_example"].get("targeted") for d in (doc, published))
    if ours_t is not None and theirs_t is not None:  # the targeted attack: target and hit, example by example
        pairs = list(zip(zip(ours_t["targets"], ours_t["success"]), zip(theirs_t["targets"], theirs_t["success"])))[:n]
        words.update(targeted_agree=sum(a == b for a, b in pairs), targeted_compared=len(pairs))
    return {**out, "published": {
        "n": published["n"],
        "clean": published["metrics"][published["headline"]["clean"]],
        "robust": published["metrics"][published["headline"]["robust"]],
        # the published outcomes on the same n examples (accuracy: the share robust)
        "robust_accuracy_same_examples": theirs["robust"].count("1") / len(theirs["robust"]),
        "robust_accuracy_ours": mine["robust"].count("1") / len(mine["robust"]),
        "robust_agree": agree, "clean_agree": agree_clean, "outcomes": len(mine["robust"]), **words,
    }}


def _outcomes(doc: dict[str, Any], n: int) -> dict[str, str]:
    """The first ``n`` examples' clean and robust outcomes; for a corruption result "robust" is every cell's
    outcomes on those examples, cell after cell (so agreement counts example-cells)."""
    pe = doc["per_example"]
    if doc.get("kind") == "corruption":
        return {"clean": pe["clean"][:n], "robust": "".join(pe["cells"][k][:n] for k in sorted(pe["cells"]))}
    return {"clean": pe["clean"][:n], "robust": pe["robust"][:n]}


def _run_job(job: Job, results: str, seed: int, device: str | None, zoo: str | None) -> dict[str, Any]:
    """One worker: evaluate one published checkpoint; returns the comparison (runs in a child process)."""
    import torch

    torch.set_num_threads(1)
    from bench.pipeline import eval_track
    from bench.tracks import get_track
    from bench.zoo import load_model, zoo_path

    track = get_track(job.track)
    home = track.checkpoints_from or track.id  # a corruption track evaluates its attack track's checkpoints
    load_model(f"{home}/{job.defense}", root=zoo)  # refuses weights whose sha256 differs from the result's
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    path = eval_track(track, zoo_path(home, track.model, job.defense, zoo), seed=seed, results=results,
                      n=job.n, device=device, eps_sweep=False, progress=False, flags=False)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    doc = json.loads(Path(path).read_text())
    return {"track": job.track, "defense": job.defense, "path": str(path),
            "seconds": time.perf_counter() - t0, "cpu_seconds": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
            **compare(doc, published_result(track, job.defense))}


def reproduce(tracks, *, results: str | Path = USER_RESULTS, seed: int = 0, device: str | None = None,
              workers: int | None = None, zoo: str | Path | None = None,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Evaluate every published checkpoint of ``tracks`` (see the module docstring); returns one row each."""
    if Path(results).resolve() == (Path(__file__).resolve().parents[1] / PUBLISHED_RESULTS).resolve():
        raise UserError("refusing to write a reproduction over the published results: pick another --results")
    jobs = jobs_for(tracks, zoo)
    from bench.zoo import unpublished_weights

    ids = {t.id for t in tracks}
    for name, w in unpublished_weights(zoo):
        if name.split("/")[0] in ids:
            log(f"not re-evaluated: {name} (weights not in the repository: {w.get('why', 'too large for git')}; "
                f"sha256 {str(w.get('sha256', '?'))[:12]}...; re-make with `{w.get('remake', 'xrobust train')}`)")
    if not jobs:
        raise UserError("no published checkpoints for these tracks under zoo/")
    workers = max(1, min(workers or (os.cpu_count() or 1), len(jobs)))
    log(f"re-evaluating {len(jobs)} published checkpoints with the official suites on {workers} worker(s) "
        f"(--train retrains instead)")
    rows = []
    if workers == 1:
        for j in jobs:
            rows.append(_run_job(j, str(results), seed, device, None if zoo is None else str(zoo)))
            log(summary_line(rows[-1]))
        return rows
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futs = [pool.submit(_run_job, j, str(results), seed, device, None if zoo is None else str(zoo)) for j in jobs]
        for f in as_completed(futs):
            rows.append(f.result())
            log(summary_line(rows[-1]))
    order = {(j.track, j.defense): i for i, j in enumerate(jobs)}
    return sorted(rows, key=lambda r: order[(r["track"], r["defense"])])


def summary_line(row: dict[str, Any]) -> str:
    p = row.get("published")
    head = f"[{row['track']}] {row['defense']}: n={row['n']} clean {row['clean']:.3f} robust {row['robust']:.3f}"
    if not p:
        return head + " (no published result to compare)"
    same = "" if row.get("metric") == "wer" else \
        f"; published on the same examples {p['robust_accuracy_same_examples']:.3f}"
    words = f", word errors agree {p['word_errors_agree']}/{p['word_errors_compared']}" \
        if "word_errors_agree" in p else ""
    if "targeted_agree" in p:
        words += f", targeted hits agree {p['targeted_agree']}/{p['targeted_compared']}"
    return (head + same + f", per-example outcomes agree {p['robust_agree']}/{p.get('outcomes', row['n'])}{words}; "
            f"published on n={p['n']}: robust {p['robust']:.3f} "
            f"({row['seconds']:.0f} s)")
