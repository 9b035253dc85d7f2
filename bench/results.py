"""Result files: one JSON per (track, model, defense), schema-versioned, written atomically.

Layout: ``results/<domain>/<dataset>/<threat-id>/<model>__<defense>.json``.
The schema lives in ``bench/schema/result.schema.json``; :func:`validate`
checks it plus the consistency rules a leaderboard relies on.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from bench.checkpoint import atomic_write_bytes
from bench.errors import UserError

SCHEMA_VERSION = 1
#: the published results (committed; written only when asked for explicitly: ``--results results``)
PUBLISHED_RESULTS = "results"
#: where ``xrobust run`` / ``eval`` / ``perf`` write by default: the user's own results, beside runs/
USER_RESULTS = "runs/results"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("bench").joinpath("schema/result.schema.json").read_text())


def _merged_schema(name: str) -> dict[str, Any]:
    """``schema/<name>`` merged over the attack result schema: its properties replace the base ones, its
    ``drop`` removes base properties, its ``required`` replaces the base list."""
    import copy

    part = json.loads(resources.files("bench").joinpath(f"schema/{name}").read_text())
    out = copy.deepcopy(schema())
    out["title"] = part["title"]
    out["required"] = list(part["required"])
    for key in part["drop"]:
        out["properties"].pop(key, None)
    out["properties"].update(part["properties"])
    return out


@lru_cache(maxsize=1)
def corruption_schema() -> dict[str, Any]:
    """The schema of corruption results (``kind: corruption``): ``schema/corruption.schema.json`` merged
    over the attack result schema (shared ids, provenance, cost, card; its own metrics and outcomes)."""
    return _merged_schema("corruption.schema.json")


@lru_cache(maxsize=1)
def certified_schema() -> dict[str, Any]:
    """The schema of certified results (``kind: certified``, randomized smoothing: :mod:`bench.certify_eval`):
    ``schema/certified.schema.json`` merged over the attack result schema."""
    return _merged_schema("certified.schema.json")


def is_corruption(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "corruption"


def is_certified(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "certified"


def is_attack(doc: Any) -> bool:
    """An attack result (no ``kind``): what the attack board reads."""
    return not is_corruption(doc) and not is_certified(doc)


def schema_for(doc: Any) -> dict[str, Any]:
    """The schema a document is checked against (by its ``kind``)."""
    if is_certified(doc):
        return certified_schema()
    return corruption_schema() if is_corruption(doc) else schema()


def bits(mask: torch.Tensor) -> str:
    """A bool tensor as a '0'/'1' string (1 = the model was right)."""
    return "".join("1" if b else "0" for b in mask.bool().tolist())


#: the path components a result's ids become; each must stay one plain path segment
PATH_IDS = ("domain", "dataset", "threat.id", "model", "defense")


def set_id(doc: dict[str, Any]) -> Any:
    """The folder a result lives in below its dataset: the threat's id, a corruption track's set id, or a
    certification's id (``smooth-<sigma>``)."""
    holder = doc.get("corruption_set") if is_corruption(doc) else \
        doc.get("certification") if is_certified(doc) else doc.get("threat")
    return holder.get("id") if isinstance(holder, dict) else None


def _id_value(doc: dict[str, Any], key: str) -> Any:
    return set_id(doc) if key == "threat.id" else doc.get(key)


def unsafe_ids(doc: Any) -> list[str]:
    """Ids that would not be a single safe path segment (``..``, slashes, hidden names, empty)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("threat", {}), dict) \
            or not isinstance(doc.get("corruption_set", {}), dict) or not isinstance(doc.get("certification", {}), dict):
        return []
    out = []
    for key in PATH_IDS:
        v = _id_value(doc, key)
        if v is None:
            continue
        if not isinstance(v, str) or not v or v.startswith(".") or "/" in v or "\\" in v or "\0" in v:
            out.append(f"{key}: {v!r} is not a safe path segment (would escape the results folder)")
    return out


#: folders under results/ that hold other JSON (benchmark timings), not result files
NON_RESULT_DIRS = ("perf",)


def result_files(root: str | Path) -> list[Path]:
    """Every result file under ``root`` (sorted), leaving out ``perf/`` and other non-result folders, and the
    evidence samples beside result files (``<stem>.samples/manifest.json``, :mod:`bench.samples`)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((f for f in root.rglob("*.json") if f.relative_to(root).parts[0] not in NON_RESULT_DIRS
                   and not any(p.endswith(".samples") for p in f.relative_to(root).parts[:-1])),
                  key=lambda f: f.relative_to(root).as_posix())


def result_path(root: str | Path, doc: dict[str, Any]) -> Path:
    """The canonical path of a result under ``root``.

    Raises :class:`UserError` when an id is not a single plain path segment, so
    no result can be placed outside ``root`` (path traversal).
    """
    bad = unsafe_ids(doc)
    if bad:
        raise UserError(f"refusing result: {bad[0]}")
    return (Path(root) / doc["domain"] / doc["dataset"] / set_id(doc)
            / f"{doc['model']}__{doc['defense']}.json")


def path_problems(doc: dict[str, Any], path: str | Path) -> list[str]:
    """Where ``path`` differs from the canonical ``<domain>/<dataset>/<threat-id>/<model>__<defense>.json``."""
    parts = Path(path).parts
    want = (str(doc["domain"]), str(doc["dataset"]), str(set_id(doc)), f"{doc['model']}__{doc['defense']}.json")
    have = tuple(parts[-4:])
    if have == want:
        return []
    return [f"path: {Path(path)} does not match the ids; expected .../{'/'.join(want)}"]


def _flag_raised(doc: dict[str, Any], name: str) -> bool:
    return bool(((doc.get("flags") or {}).get(name) or {}).get("raised"))


def problems(doc: Any, path: str | Path | None = None) -> list[str]:
    """Every problem with a result document (empty when valid), one line each: schema, then consistency.

    Consistency rules (what a leaderboard relies on): robust <= clean (or the
    ``robust-above-clean`` flag raised), every per-attack accuracy >= the
    worst-case robust accuracy, WER under attack >= clean WER, the eps sweep
    monotone (or ``non-monotone-in-eps`` raised), per-example bitmaps of
    length n that agree with the metrics, the threat id equal to the id of
    the threat's parameters, finite numbers, per-utterance word errors that
    agree with the WER metrics (:func:`word_error_problems`), and, when ``path``
    is given, the path equal to the canonical one for the ids.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema_for(doc))
    out = list(unsafe_ids(doc))
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
    if out or not isinstance(doc, dict):
        return out
    from bench.seeds import seed_problems

    if is_corruption(doc) or is_certified(doc):
        if is_corruption(doc):
            from bench.corruption_eval import corruption_problems as kind_problems
        else:
            from bench.certify_eval import certified_problems as kind_problems

        out = kind_problems(doc) + seed_problems(doc)
        out += [f"{k}: not a finite number" for k, v in _numbers(doc) if isinstance(v, float) and not math.isfinite(v)]
        if path is not None:
            out.extend(path_problems(doc, path))
        return out
    out.extend(seed_problems(doc))
    m = doc["metrics"]
    tol = 1e-9
    if m["robust_accuracy"] > m["clean_accuracy"] + tol and not _flag_raised(doc, "robust-above-clean"):
        out.append(f"metrics: robust_accuracy {m['robust_accuracy']} > clean_accuracy {m['clean_accuracy']}")
    for name, v in m["per_attack"].items():
        if v + tol < m["robust_accuracy"]:
            out.append(f"metrics/per_attack/{name}: {v} < robust_accuracy {m['robust_accuracy']}"
                       " (the worst case over the suite cannot beat a single attack)")
    for role, key in (doc.get("headline") or {}).items():
        if role in ("clean", "robust") and not isinstance(m.get(key), (int, float)):
            out.append(f"headline/{role}: metrics has no number {key!r}")
    if doc.get("metric") == "wer" and not ("clean_wer" in m and "robust_wer" in m):
        out.append("metrics: metric is wer but clean_wer / robust_wer are missing")
    if "clean_wer" in m and "robust_wer" in m and m["robust_wer"] + tol < m["clean_wer"]:
        out.append(f"metrics: robust_wer {m['robust_wer']} < clean_wer {m['clean_wer']}")
    for name, v in (m.get("per_attack_wer") or {}).items():
        if "robust_wer" in m and v > m["robust_wer"] + tol:
            out.append(f"metrics/per_attack_wer/{name}: {v} > robust_wer {m['robust_wer']}")
    sweep = m.get("eps_sweep") or []
    pts = sorted((p["eps"], p["robust_accuracy"]) for p in sweep)
    decreasing_budget = doc["threat"]["scale"] == "snr-db"  # larger dB = smaller budget
    for (e0, a0), (e1, a1) in zip(pts, pts[1:]):
        worse = a1 > a0 + tol if not decreasing_budget else a1 + tol < a0
        if worse and not _flag_raised(doc, "non-monotone-in-eps"):
            out.append(f"metrics/eps_sweep: robust accuracy not monotone in eps ({e0}: {a0}, {e1}: {a1})"
                       " and flag non-monotone-in-eps not raised")
            break
    try:
        from bench.threat import ThreatModel

        tid = ThreatModel.from_dict(doc["threat"]).id
        if tid != doc["threat"]["id"]:
            out.append(f"threat/id: {doc['threat']['id']!r} does not match its parameters (expected {tid!r})")
        if doc["threat"].get("space") == "words":  # the declared word budget is the one every attack ran with
            for spec in doc.get("suite") or []:
                frac = (spec.get("params") or {}).get("max_frac")
                if frac != doc["threat"]["eps"]:
                    out.append(f"suite/{spec.get('name')}: max_frac {frac} is not the threat's word budget "
                               f"{doc['threat']['eps']}")
    except UserError as exc:
        out.append(f"threat: {exc}")
    pe = doc.get("per_example") or {}
    for key, val in list(pe.items()):
        vals = val.values() if isinstance(val, dict) else [val]
        for v in vals:
            if isinstance(v, str) and len(v) != doc["n"]:
                out.append(f"per_example/{key}: {len(v)} outcomes for n={doc['n']}")
                break
    for key, metric in (("clean", "clean_accuracy"), ("robust", "robust_accuracy")):
        v = pe.get(key)
        if isinstance(v, str) and len(v) == doc["n"] and abs(v.count("1") / doc["n"] - m[metric]) > 1e-6:
            out.append(f"per_example/{key}: {v.count('1')}/{doc['n']} correct does not match metrics/{metric} "
                       f"{m[metric]}")
    out.extend(word_error_problems(doc))
    out.extend(detail_problems(doc))
    out.extend(protocol_problems(doc))
    for k, v in _numbers(doc):
        if isinstance(v, float) and not math.isfinite(v):
            out.append(f"{k}: not a finite number")
    if path is not None:
        out.extend(path_problems(doc, path))
    return out


def protocol_problems(doc: dict[str, Any]) -> list[str]:
    """An inference-time defense (bench.defenses) must say so in its id and be evaluated adaptively where it
    declares it needs to be: a transform that is not differentiable needs BPDA, a randomized one EOT, unless
    the evaluation was forced plain (then the leaderboard marks it as not adaptive)."""
    t, p = doc.get("transform"), doc.get("protocol")
    out = []
    if t is not None:
        if f"+{t['name']}" not in doc["defense"]:
            out.append(f"defense: {doc['defense']!r} hides its transform {t['name']!r} (expected <recipe>+{t['name']}...)")
        if p is None:
            out.append("protocol: missing for a result with a transform")
    if p is not None and p["name"] != "plain":
        if t is not None and not t["differentiable"] and t.get("stage", "z") == "z" and not p["bpda"]:
            out.append(f"protocol: transform {t['name']} is not differentiable but the evaluation ran without BPDA")
        if t is not None and t["randomized"] and p["eot"] <= 1:
            out.append(f"protocol: transform {t['name']} is randomized but the evaluation ran without EOT")
        if ("rand" in p["name"].split("+")) != (p["eot"] > 1) or ("bpda" in p["name"].split("+")) != p["bpda"]:
            out.append(f"protocol: name {p['name']!r} disagrees with eot {p['eot']} / bpda {p['bpda']}")
    return out


#: the per-utterance lists of a WER result (``per_example``), and the metrics each one's corpus WER must equal
WORD_ERRORS = (("clean_word_errors", ("clean_error_rate", "clean_wer")),
               ("robust_word_errors", ("robust_error_rate", "robust_wer")))


def word_error_problems(doc: dict[str, Any]) -> list[str]:
    """Consistency of the per-utterance word errors of a (schema-valid) WER result, when it has them:
    n entries each; ``sum(errors) / sum(ref_words)`` equal to the error rate and the WER the metrics
    report (1e-9); no utterance with fewer word errors under attack than clean (the robust errors are
    the worst case over the suite, clean included); and an utterance counted exactly right
    (``per_example.clean`` / ``robust``) exactly when it has no word errors. Files written before
    the lists were stored have none, and nothing is checked."""
    pe, m, n = doc.get("per_example") or {}, doc["metrics"], doc["n"]
    if "ref_words" not in pe:
        return []
    out = []
    lists = {key: pe[key] for key in ("ref_words", *(k for k, _ in WORD_ERRORS))}
    for key, vals in lists.items():
        if len(vals) != n:
            out.append(f"per_example/{key}: {len(vals)} utterances for n={n}")
    if out:
        return out
    words = sum(lists["ref_words"])
    for key, metric_keys in WORD_ERRORS:
        rate = sum(lists[key]) / max(words, 1)  # as the evaluator divides (bench.evaluate.EvalReport.metrics)
        checked = [k for k in metric_keys if isinstance(m.get(k), (int, float))]
        if not checked:
            out.append(f"per_example/{key}: metrics has neither {' nor '.join(metric_keys)} to check it against")
        for k in checked:
            if abs(rate - m[k]) > 1e-9:
                out.append(f"per_example/{key}: {sum(lists[key])} word errors / {words} reference words = "
                           f"{rate!r} does not match metrics/{k} {m[k]!r}")
    worse = next((i for i, (c, r) in enumerate(zip(lists["clean_word_errors"], lists["robust_word_errors"]))
                  if r < c), None)
    if worse is not None:
        out.append(f"per_example/robust_word_errors: utterance {worse} has {lists['robust_word_errors'][worse]} "
                   f"word errors under attack, fewer than its {lists['clean_word_errors'][worse]} clean ones "
                   "(the worst case includes the clean hypothesis)")
    for bits_key, key in (("clean", "clean_word_errors"), ("robust", "robust_word_errors")):
        b = pe.get(bits_key)
        if isinstance(b, str) and len(b) == n:
            i = next((i for i, (bit, e) in enumerate(zip(b, lists[key])) if (bit == "1") != (e == 0)), None)
            if i is not None:
                out.append(f"per_example/{key}: utterance {i} has {lists[key][i]} word errors but "
                           f"per_example/{bits_key} marks it {'right' if b[i] == '1' else 'wrong'}")
    return out


def _rate_problem(where: str, errors: list, units: list, metric: str, value: Any) -> list[str]:
    if not isinstance(value, (int, float)):
        return []
    rate = sum(errors) / max(sum(units), 1)
    if abs(rate - value) > 1e-9:
        return [f"{where}: {sum(errors)} errors / {sum(units)} units = {rate!r} does not match {metric} {value!r}"]
    return []


def _achieved_problems(where: str, values: list, n: int, threat: dict, summary: Any) -> list[str]:
    """An achieved-SNR list: n entries, none louder than the budget allows, the summary its mean/median."""
    out = []
    if len(values) != n:
        return [f"{where}: {len(values)} entries for n={n}"]
    finite = [v for v in values if v is not None]
    if threat.get("scale") == "snr-db":
        loud = next((i for i, v in enumerate(values) if v is not None and v < threat["eps"] - 1e-3), None)
        if loud is not None:
            out.append(f"{where}: example {loud} has an SNR of {values[loud]:.3f} dB, below the {threat['eps']} dB "
                       "budget (outside the threat model)")
    if isinstance(summary, dict):
        if summary.get("n") != len(finite):
            out.append(f"{where}: {len(finite)} values but the summary counts {summary.get('n')}")
        elif finite and (summary.get("mean") is None or abs(sum(finite) / len(finite) - summary["mean"]) > 1e-6):
            out.append(f"{where}: mean {sum(finite) / len(finite)!r} does not match the summary's {summary.get('mean')!r}")
    return out


def detail_problems(doc: dict[str, Any]) -> list[str]:
    """Consistency of a result's character errors (CER), achieved SNRs and targeted block, when present:
    the per-example lists have n entries and sum to the rates the metrics report (1e-9), no achieved SNR
    is below the budget, and a target counts as hit exactly when it has no errors against it."""
    pe, m, n, threat = doc.get("per_example") or {}, doc["metrics"], doc["n"], doc.get("threat") or {}
    out: list[str] = []
    if "ref_chars" in pe:
        lens = {k: len(pe[k]) for k in ("clean_char_errors", "robust_char_errors", "ref_chars")}
        bad = [k for k, v in lens.items() if v != n]
        if bad:
            return [f"per_example/{k}: {lens[k]} utterances for n={n}" for k in bad]
        for role in ("clean", "robust"):
            out += _rate_problem(f"per_example/{role}_char_errors", pe[f"{role}_char_errors"], pe["ref_chars"],
                                 f"metrics/{role}_cer", m.get(f"{role}_cer"))
    if "achieved_snr_db" in pe:
        out += _achieved_problems("per_example/achieved_snr_db", pe["achieved_snr_db"], n, threat,
                                  m.get("achieved_snr_db"))
    t, tm = pe.get("targeted"), m.get("targeted")
    if (t is None) != (tm is None):
        out.append("targeted: metrics/targeted and per_example/targeted must come together")
    elif t is not None:
        k = tm["n"]
        lens = {key: len(v) for key, v in t.items() if isinstance(v, (list, str))}
        bad = [key for key, v in lens.items() if v != k]
        if bad:
            return out + [f"per_example/targeted/{key}: {lens[key]} entries for n={k}" for key in bad]
        hits = t["success"].count("1")
        if abs(hits / k - tm["success_rate"]) > 1e-9:
            out.append(f"metrics/targeted/success_rate {tm['success_rate']!r} is not {hits}/{k} hits")
        i = next((i for i, (b, e) in enumerate(zip(t["success"], t["target_errors"])) if (b == "1") != (e == 0)), None)
        if i is not None:
            out.append(f"per_example/targeted: example {i} has {t['target_errors'][i]} errors against its target "
                       f"but is marked {'hit' if t['success'][i] == '1' else 'missed'}")
        out += _rate_problem("per_example/targeted/target_errors", t["target_errors"], t["target_units"],
                             "metrics/targeted/target_wer", tm.get("target_wer"))
        if "target_chars" in t:
            out += _rate_problem("per_example/targeted/target_char_errors", t.get("target_char_errors", []),
                                 t["target_chars"], "metrics/targeted/target_cer", tm.get("target_cer"))
        out += _achieved_problems("per_example/targeted/achieved", t["achieved"], k, threat, tm.get("achieved_snr_db"))
    return out


def _numbers(obj: Any, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}/{i}")
    else:
        yield prefix, obj


def validate(doc: Any) -> dict[str, Any]:
    """Raise :class:`UserError` naming the first problem; return the doc when valid."""
    errs = problems(doc)
    if errs:
        raise UserError(f"invalid result: {errs[0]}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""))
    return doc


def read_json(path: Path) -> Any:
    """A JSON file's content, or a :class:`UserError` naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"result file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def load_result(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    doc = read_json(p)
    try:
        return validate(doc)
    except UserError as exc:
        raise UserError(f"{p}: {exc}") from None


def submit_result(source: str | Path, root: str | Path = "results", *, checkpoint: str | Path | None = None,
                  replace: bool = False, card: dict[str, Any] | None = None) -> Path:
    """Validate a result file and place it at its canonical path under ``root``.

    With ``checkpoint``, its sha256 is recomputed: it must equal
    ``provenance.checkpoint_sha256`` when the file names one, and is filled in
    when the file leaves it null. With ``card``, its fields are merged over the
    file's model card (:func:`bench.cards.attach_card`). Refuses ids that would
    leave ``root``, an existing other file unless ``replace`` (the source itself
    may be updated in place), and never leaves a partial file (the write is a
    temp file + rename). Returns the placed path.
    """
    src = Path(source)
    doc = read_json(src)
    bad = unsafe_ids(doc)
    if bad:
        raise UserError(f"{src}: refusing to submit: {bad[0]}")
    errs = problems(doc)
    if errs:
        raise UserError(f"{src}: invalid result: {errs[0]}" + (f" (+{len(errs) - 1} more; run xrobust validate)"
                                                              if len(errs) > 1 else ""))
    if checkpoint is not None:
        from bench.checkpoint import sha256_file

        ck = Path(checkpoint)
        ck = ck / "model.safetensors" if ck.is_dir() else ck
        if not ck.is_file():
            raise UserError(f"checkpoint not found: {checkpoint}")
        digest = sha256_file(ck)
        claimed = doc["provenance"].get("checkpoint_sha256")
        if claimed is not None and claimed != digest:
            raise UserError(f"checkpoint sha256 {digest[:12]}... does not match the result's "
                            f"provenance.checkpoint_sha256 {claimed[:12]}...")
        doc["provenance"]["checkpoint_sha256"] = digest
    if card:
        from bench.cards import attach_card

        doc = attach_card(doc, card)
    root_dir = Path(root).resolve()
    target = result_path(root, doc)
    if not target.resolve().is_relative_to(root_dir):  # e.g. a symlinked folder pointing outside
        raise UserError(f"refusing to submit: {target} resolves outside {root}")
    if target.exists() and not replace and target.resolve() != src.resolve():
        raise UserError(f"{target} exists; pass --replace to overwrite it")
    return write_result(doc, path=target)


def write_result(doc: dict[str, Any], root: str | Path = "results", path: str | Path | None = None) -> Path:
    """Validate, then write atomically (temp file + rename) at the canonical path."""
    validate(doc)
    target = Path(path) if path is not None else result_path(root, doc)
    atomic_write_bytes(target, (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode())
    return target
