"""results/ -> pandas DataFrames: a pure, deterministic function of the result files.

One row per result file. Every file is validated first (schema, consistency,
canonical path); invalid files are left out and reported, never silently
mixed in. Rows are sorted by domain, track, rank, model and defense, so the
same files always give the same frame (and the same site).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.results import is_attack, result_files, problems
from bench.samples import SUFFIX as SAMPLES_SUFFIX
from bench.samples import kind_of, read_manifest, sample_problems, samples_dir
from leaderboard.flags import explain

#: what ASR (WER) results may report besides WER (NaN / None when a file does not): character error rate
#: clean and robust (worst case per utterance) with intervals, per attack (JSON), the achieved SNR of the
#: adversarial audio the worst case kept (dB, higher = quieter), and a targeted attack's outcome
ASR_COLUMNS = [
    "clean_cer", "robust_cer", "clean_cer_lo", "clean_cer_hi", "robust_cer_lo", "robust_cer_hi", "per_attack_cer",
    "snr_db_mean", "snr_db_median", "snr_db_n",
    "targeted_attack", "targeted_rule", "targeted_n", "targeted_success", "target_wer", "target_cer",
    "targeted_snr_db_mean",
]

#: what discrete (text) attacks report of their own quality in ``metrics.attack_stats[<attack>]`` (their
#: ``stats()``: pwws, deepwordbug, word-sub), in column order; flattened to ``quality:<attack>:<key>`` columns
#: that exist only when some result reports them
QUALITY_KEYS = ["attack_success_rate", "words_changed", "words_changed_median", "queries", "sentence_similarity",
                "chars_changed"]

#: columns every results frame has, in order (per-attack columns ``attack:<name>`` follow ``robust``)
BASE_COLUMNS = [
    "domain", "track", "dataset", "threat", "norm", "eps", "metric", "higher_is_better", "rank",
    "model", "defense", "n", "clean", "robust",
]
TAIL_COLUMNS = [
    "headline", "clean_accuracy", "robust_accuracy", "clean_wer", "robust_wer",
    "paper", "paper_url", "venue",
    "n_headline", "clean_lo", "clean_hi", "robust_lo", "robust_hi", "robust_bits", "robust_word_errors", "tie_p",
    *ASR_COLUMNS, "samples", "samples_kind",
    "train_seconds", "eval_seconds", "train_epochs", "official", "flags", "flag_details", "eps_sweep", "sweep_metric",
    "attack_metric", "protocol", "protocol_reasons",
    "version", "commit", "seed", "checkpoint_sha256", "device", "torch_version", "timestamp", "config_hash", "path",
    "source",
]

#: how a row from a user results folder (``xrobust run``'s default) is marked next to the published ones
USER_MARK = " (yours)"


@dataclass(frozen=True)
class Collection:
    """What :func:`collect` found: the frame of valid results and one line per problem of the others."""

    frame: pd.DataFrame
    problems: tuple[str, ...] = field(default_factory=tuple)
    files: int = 0


def metric_of(doc: dict[str, Any]) -> str:
    """The headline metric: the file's ``metric``, else ``wer`` when it reports WER, else ``accuracy``."""
    if doc.get("metric") in ("accuracy", "wer"):
        return doc["metric"]
    return "wer" if "robust_wer" in doc["metrics"] else "accuracy"


#: the badge of a result evaluated with another suite than its track's official one
UNOFFICIAL = "unofficial-suite"
#: the badge of a result made from a work tree with uncommitted code changes
DIRTY = "dirty-tree"


def official_suite(doc: dict[str, Any]) -> bool:
    """Whether the file's attack suite is its track's official suite (attack and parameters, in order).

    Tracks are declared data (``bench.tracks``); a file of a track this installation does not
    know is taken at its word. An evaluation the pre-attack checks switched to AutoAttack's ``rand``
    protocol (``bench.defenses``) has the rand suite as its official one.
    """
    track = _track(doc)
    if track is None:
        return True
    specs = track.attack_specs
    if "rand" in ((doc.get("protocol") or {}).get("name") or "").split("+"):
        from bench.defenses import RAND

        specs = RAND
    want = [(s.attack, dict(s.params)) for s in specs]
    have = [(s.get("attack"), dict(s.get("params") or {})) for s in doc.get("suite") or []]
    return have == want


def _track(doc: dict[str, Any]):
    from bench.errors import UserError
    from bench.registry import load_domains
    from bench.tracks import get_track

    load_domains()
    try:
        return get_track(doc["track"])
    except (UserError, KeyError):
        return None


def track_headline(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The headline keys the file's track declares, for files written before results recorded them
    (only when the file has those metrics)."""
    track = _track(doc)
    if track is None or track.headline is None:
        return None
    clean, robust = track.headline_keys
    if not all(isinstance(doc["metrics"].get(k), (int, float)) for k in (clean, robust)):
        return None
    return {"clean": clean, "robust": robust, "higher_is_better": track.metric != "wer"}


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def row_of(doc: dict[str, Any], rel_path: str) -> dict[str, Any]:
    """The flat leaderboard row of one (valid) result document."""
    m, cost, prov = doc["metrics"], doc["cost"], doc["provenance"]
    card = doc.get("card") or {}  # the model card (bench.cards), when the submitter attached one
    metric = metric_of(doc)
    wer = metric == "wer"
    head = doc.get("headline") or track_headline(doc)  # e.g. keyword-only accuracy for KWS
    attack_wer = wer and bool(m.get("per_attack_wer"))
    per_attack = m["per_attack_wer"] if attack_wer else m["per_attack"]
    flag_doc = dict(doc.get("flags") or {})
    if not official_suite(doc):
        flag_doc[UNOFFICIAL] = {"value": None, "raised": True}
    if prov.get("git_dirty"):
        flag_doc[DIRTY] = {"value": prov.get("git_commit"), "raised": True}
    raised = sorted(k for k, v in flag_doc.items() if v.get("raised"))
    points = m.get("eps_sweep") or []
    sweep_wer = wer and bool(points) and all(isinstance(p.get("robust_wer"), (int, float)) for p in points)
    sweep = sorted((float(p["eps"]), float(p["robust_wer"] if sweep_wer else p["robust_accuracy"])) for p in points)
    row = {
        "domain": doc["domain"], "track": doc["track"], "dataset": doc["dataset"], "threat": doc["threat"]["id"],
        "norm": doc["threat"]["norm"], "eps": float(doc["threat"]["eps"]), "metric": metric,
        "higher_is_better": not wer, "rank": 0, "model": doc["model"], "defense": doc["defense"],
        "n": int(doc["n"]),
        "clean": _num(m.get(head["clean"])) if head else (_num(m.get("clean_wer")) if wer else float(m["clean_accuracy"])),
        "robust": _num(m.get(head["robust"])) if head else (_num(m.get("robust_wer")) if wer else float(m["robust_accuracy"])),
        "headline": head["robust"] if head else ("robust_wer" if wer else "robust_accuracy"),
        "clean_accuracy": float(m["clean_accuracy"]), "robust_accuracy": float(m["robust_accuracy"]),
        "clean_wer": _num(m.get("clean_wer")), "robust_wer": _num(m.get("robust_wer")),
        "paper": card.get("paper"), "paper_url": card.get("paper_url"), "venue": card.get("venue"),
        "train_seconds": float(cost["train_seconds"]), "eval_seconds": float(cost["eval_seconds"]),
        "train_epochs": _num(cost.get("train_epochs")),
        "official": UNOFFICIAL not in flag_doc,
        "flags": ";".join(raised),
        "flag_details": json.dumps({k: {"value": flag_doc[k].get("value"),
                                        "explanation": explain(k, flag_doc[k])} for k in raised},
                                   sort_keys=True),
        "eps_sweep": json.dumps(sweep), "sweep_metric": "wer" if sweep_wer else "accuracy",
        "attack_metric": "wer" if attack_wer else "accuracy",
        "version": prov.get("xrobust_version"), "commit": prov.get("git_commit"),
        "seed": doc["seed"], "checkpoint_sha256": prov.get("checkpoint_sha256"), "device": prov.get("device"),
        "torch_version": prov.get("torch_version"), "timestamp": prov.get("timestamp"),
        "config_hash": prov.get("config_hash"), "path": rel_path,
        # the evaluation protocol (bench.defenses): "standard", or the adaptive one the checks switched to
        "protocol": (doc.get("protocol") or {}).get("name", "standard"),
        "protocol_reasons": "; ".join((doc.get("protocol") or {}).get("reasons", [])),
    }
    for name, v in per_attack.items():
        row[f"attack:{name}"] = float(v)
    row.update(_confidence(doc, row))
    row.update(asr_columns(m))
    row.update(quality_columns(m))
    return row


def quality_columns(m: dict[str, Any]) -> dict[str, float]:
    """``quality:<attack>:<key>`` of every :data:`QUALITY_KEYS` number in ``metrics.attack_stats``."""
    out = {}
    for attack, stats in sorted(_dict(m.get("attack_stats")).items()):
        for key in QUALITY_KEYS:
            v = _num(_dict(stats).get(key))
            if not math.isnan(v):
                out[f"quality:{attack}:{key}"] = v
    return out


def quality_columns_of(df: pd.DataFrame) -> list[str]:
    """The attack-quality columns that hold a number for at least one row of ``df`` (by attack, then in
    :data:`QUALITY_KEYS` order)."""
    cols = [c for c in df.columns if c.startswith("quality:") and df[c].notna().any()]
    return sorted(cols, key=lambda c: (quality_parts(c)[0], QUALITY_KEYS.index(quality_parts(c)[1])))


def quality_parts(column: str) -> tuple[str, str]:
    """``quality:<attack>:<key>`` -> ``(attack, key)``."""
    attack, key = column.split(":", 1)[1].rsplit(":", 1)
    return attack, key


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _interval(v: Any) -> tuple[float, float]:
    if isinstance(v, list) and len(v) == 2:
        return _num(v[0]), _num(v[1])
    return math.nan, math.nan


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def asr_columns(m: dict[str, Any]) -> dict[str, Any]:
    """The :data:`ASR_COLUMNS` of a result's ``metrics`` (every field optional: files written before they were
    stored, and accuracy tracks, get NaN / None)."""
    snr, tg, iv = _dict(m.get("achieved_snr_db")), _dict(m.get("targeted")), _dict(m.get("intervals"))
    per_attack = {str(k): float(v) for k, v in _dict(m.get("per_attack_cer")).items() if not math.isnan(_num(v))}
    out = {"clean_cer": _num(m.get("clean_cer")), "robust_cer": _num(m.get("robust_cer")),
           "per_attack_cer": json.dumps(per_attack, sort_keys=True) if per_attack else None,
           "snr_db_mean": _num(snr.get("mean")), "snr_db_median": _num(snr.get("median")),
           "snr_db_n": _num(snr.get("n")),
           "targeted_attack": _text(tg.get("attack")), "targeted_rule": _text(tg.get("rule")),
           "targeted_n": _num(tg.get("n")), "targeted_success": _num(tg.get("success_rate")),
           "target_wer": _num(tg.get("target_wer")), "target_cer": _num(tg.get("target_cer")),
           "targeted_snr_db_mean": _num(_dict(tg.get("achieved_snr_db")).get("mean"))}
    out["clean_cer_lo"], out["clean_cer_hi"] = _interval(iv.get("clean_cer"))
    out["robust_cer_lo"], out["robust_cer_hi"] = _interval(iv.get("robust_cer"))
    return out


#: a defense shares the rank of its group's leader unless the paired test on the per-example headline
#: outcomes (exact McNemar for accuracy, paired bootstrap for WER) says they differ at this level (two-sided)
ALPHA = 0.05


def _confidence(doc: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """Wilson intervals of the headline accuracies (over the examples the headline counts: all of them,
    or e.g. the keyword clips for KWS) and the outcome string the paired test uses (only when the
    headline is the all-example robust accuracy, whose outcomes the file stores). WER tracks get
    bootstrap intervals over utterances and the per-utterance robust word errors the paired bootstrap
    uses (:func:`wer_confidence`)."""
    from bench.stats import wilson_of

    m = doc["metrics"]
    n_head = int(m.get("n_keywords", doc["n"])) if row["headline"] == "robust_accuracy_keywords" else int(doc["n"])
    out: dict[str, Any] = {"n_headline": n_head, "robust_bits": None, "robust_word_errors": None, "tie_p": math.nan,
                           "clean_lo": math.nan, "clean_hi": math.nan, "robust_lo": math.nan, "robust_hi": math.nan}
    if row["metric"] == "wer":
        out.update(wer_confidence(doc, row))
        return out
    out["clean_lo"], out["clean_hi"] = wilson_of(row["clean"], n_head)
    out["robust_lo"], out["robust_hi"] = wilson_of(row["robust"], n_head)
    if row["headline"] == "robust_accuracy":
        out["robust_bits"] = (doc.get("per_example") or {}).get("robust")
    return out


def wer_confidence(doc: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """A WER row's 95% bootstrap intervals over utterances of the clean and robust WER
    (:func:`bench.stats.wer_bootstrap`, Bisani & Ney 2004) and its per-utterance robust word errors
    (:class:`bench.stats.UtteranceErrors`, for the paired bootstrap), from ``per_example``. Only when the
    headline is ``clean_wer`` / ``robust_wer``, whose corpus WER the lists sum to; files written before
    the lists were stored get nothing (NaN intervals, no test)."""
    from bench.stats import UtteranceErrors, wer_bootstrap

    pe = doc.get("per_example") or {}
    if "ref_words" not in pe or row["headline"] != "robust_wer":
        return {}
    refs = tuple(int(v) for v in pe["ref_words"])
    clean = UtteranceErrors(tuple(int(v) for v in pe["clean_word_errors"]), refs)
    robust = UtteranceErrors(tuple(int(v) for v in pe["robust_word_errors"]), refs)
    (clo, chi), (rlo, rhi) = (wer_bootstrap(u.errors, u.ref_words) for u in (clean, robust))
    return {"clean_lo": clo, "clean_hi": chi, "robust_lo": rlo, "robust_hi": rhi, "robust_word_errors": robust}


def paired_outcomes(df: pd.DataFrame) -> list[Any]:
    """Per row, what the paired test compares: the robust outcome string (accuracy), the per-utterance
    robust word errors (WER), or None."""
    words = df["robust_word_errors"] if "robust_word_errors" in df else pd.Series(None, index=df.index)
    bits = df["robust_bits"] if "robust_bits" in df else pd.Series(None, index=df.index)
    return [b if isinstance(b, str) else w for b, w in zip(bits, words)]


def chain_ranks(values: list[float], bits: list[Any], higher_is_better: bool = True) -> tuple[list[int], list[float]]:
    """Ranks of already sorted rows (best first). Rows form groups: a row joins the group above it when its
    headline number equals the group leader's (the group's first row), or when a paired test on their
    per-example outcomes (``bits``: outcome strings, exact McNemar; or :class:`bench.stats.UtteranceErrors`,
    the paired WER bootstrap; :func:`bench.stats.paired_p`) finds no significant difference from the
    leader (p >= :data:`ALPHA`);
    otherwise it leads a new group. Testing against the leader, not the row directly above, keeps a chain
    of small steps from tying rows that differ significantly (e.g. 67.0 vs 63.6 on 500 examples, p = 0.012).
    A group shares its leader's rank (competition ranking: 1, 1, 3). Returns the ranks and each row's
    p-value against the leader it was tested with (NaN where no test ran)."""
    from bench.stats import paired_p

    ranks: list[int] = []
    ps: list[float] = []
    lead = 0
    for i, v in enumerate(values):
        if i == 0:
            ranks.append(1)
            ps.append(math.nan)
            continue
        p = paired_p(bits[i], bits[lead])
        ps.append(math.nan if p is None else p)
        if v == values[lead] or (p is not None and p >= ALPHA):
            ranks.append(ranks[lead])
        else:
            lead = i
            ranks.append(i + 1)
    return ranks, ps


#: flags whose result is shown but never ranked ahead of a real model
UNRANKED_FLAGS = ("one-class",)


def unrankable(df: pd.DataFrame) -> pd.Series:
    """Rows whose raised flags say their robust number measures no robustness (:data:`UNRANKED_FLAGS`)."""
    if "flags" not in df or df.empty:
        return pd.Series(False, index=df.index)
    return df["flags"].fillna("").astype(str).str.split(";").apply(lambda fl: any(f in fl for f in UNRANKED_FLAGS))


def _rank(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Rank within each track: best robust number first (highest accuracy, lowest WER); equal numbers,
    and numbers not significantly different from their group's leader (:func:`chain_ranks`), share a rank.
    Returns the ranks and the p-values against the leader each row was tested with."""
    key = df["robust"].where(df["higher_is_better"], -df["robust"]).fillna(-math.inf)
    key = key.where(~unrankable(df), -math.inf)  # a one-class model's "robustness" is its class's share: last
    ranks = pd.Series(len(df), index=df.index, dtype=int)
    ps = pd.Series(math.nan, index=df.index, dtype=float)
    for _, sub in df.assign(_key=key).groupby("track"):
        sub = sub.sort_values(["_key", "model", "defense"], ascending=[False, True, True], kind="mergesort")
        r, p = chain_ranks(list(sub["_key"]), paired_outcomes(sub))
        ranks[sub.index], ps[sub.index] = r, p
    return ranks, ps


def _rows(root: Path, source: str) -> tuple[list[dict[str, Any]], list[str], int]:
    files = result_files(root)
    rows, bad = [], []
    for f in files:
        rel = f.relative_to(root).as_posix()
        shown = rel if source == "published" else f"{root.as_posix()}/{rel}"
        try:
            doc = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            bad.append(f"{shown}: not valid JSON ({exc})")
            continue
        if not is_attack(doc):
            continue  # the corruption and certified boards' (leaderboard.corruption, leaderboard.certified)
        errs = problems(doc, path=f)
        if errs:
            bad.extend(f"{shown}: {e}" for e in errs)
            continue
        row = row_of(doc, shown)
        row["source"] = source
        row["samples"] = row["samples_kind"] = None
        folder = samples_dir(f)
        if folder.is_dir():  # listenable evidence beside the result (bench.samples): shown only when valid
            where = shown[: -len(".json")] + SAMPLES_SUFFIX
            errs = sample_problems(folder, doc)
            bad.extend(f"{where}: {e}" for e in errs)
            row["samples"] = None if errs else where
            row["samples_kind"] = None if errs else kind_of(read_manifest(folder)[0])
        if source == "user":
            row["defense"] += USER_MARK
        rows.append(row)
    return rows, bad, len(files)


def collect(root: str | Path, user: str | Path | None = None) -> Collection:
    """Read and validate every ``*.json`` under ``root``; one frame row per valid result.

    ``user``: a second folder of the user's own results (``xrobust run`` writes to one by
    default); its rows are ranked with the published ones, with ``source`` "user" and the
    defense marked :data:`USER_MARK`, so they never pass for published numbers.
    """
    rows, bad, n = _rows(Path(root), "published")
    if user is not None and Path(user).resolve() != Path(root).resolve():
        more, more_bad, more_n = _rows(Path(user), "user")
        rows, bad, n = rows + more, bad + more_bad, n + more_n
    df = pd.DataFrame(rows)
    if df.empty:
        return Collection(pd.DataFrame(columns=BASE_COLUMNS + TAIL_COLUMNS), tuple(bad), n)
    df["rank"], df["tie_p"] = _rank(df)
    # the suites' order (a cascade's columns are cumulative, so their order is their meaning): first seen
    attacks = list(dict.fromkeys(c for r in rows for c in r if c.startswith("attack:")))
    quality = sorted(c for c in df.columns if c.startswith("quality:"))
    df = df[BASE_COLUMNS + attacks + TAIL_COLUMNS + quality]
    # within a shared rank, the headline order the paired tests ran in
    order = df["robust"].where(df["higher_is_better"], -df["robust"]).fillna(-math.inf)
    df = df.assign(_order=-order).sort_values(["domain", "track", "rank", "_order", "model", "defense"],
                                              kind="mergesort").drop(columns="_order").reset_index(drop=True)
    return Collection(df, tuple(bad), n)


def training_costs(root: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Track id -> rows of ``results/perf/<track>-training.json`` (``xrobust perf --training``).

    Only well-formed rows (a recipe name and finite, positive numbers) are kept;
    a file that is not JSON or not a training benchmark is skipped.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for f in sorted((Path(root) / "perf").glob("*-training.json")):
        try:
            doc = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "training" or not isinstance(doc.get("track"), str):
            continue
        rows = []
        for r in doc.get("rows") or []:
            try:
                sec, ratio = float(r["seconds_per_epoch"]), float(r["ratio_to_erm"])
            except (TypeError, KeyError, ValueError):
                continue
            if isinstance(r.get("recipe"), str) and math.isfinite(sec) and math.isfinite(ratio) and sec > 0:
                rows.append({"recipe": r["recipe"], "seconds_per_epoch": sec, "ratio_to_erm": ratio,
                             "replay": r.get("replay", 1)})
        if rows:
            out[doc["track"]] = rows
    return out


def attack_columns(df: pd.DataFrame) -> list[str]:
    """The per-attack columns that hold a number for at least one row of ``df``."""
    return [c for c in df.columns if c.startswith("attack:") and df[c].notna().any()]


def tracks(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(domain, track, metric)`` of every track in ``df``, ordered by domain then track."""
    seen = df[["domain", "track", "metric"]].drop_duplicates().sort_values(["domain", "track"])
    return [tuple(r) for r in seen.itertuples(index=False)]


def cross_domain(df: pd.DataFrame) -> pd.DataFrame:
    """Rows = defenses, columns = ``<track>:robust`` / ``<track>:clean`` (best model per defense), mean rank.

    The mean rank averages, over domains, the defense's mean rank among the
    defenses of that domain's tracks (ranks shared where the paired test finds no difference,
    :func:`chain_ranks`) (so a domain with many tracks does not
    outweigh the others); ``domains`` counts the domains it was ranked in. A
    track evaluated with one defense only shows its cells but ranks nothing
    (its single defense would come first there by default).
    """
    cols: dict[str, Any] = {}
    ranks: dict[str, dict[str, list[int]]] = {}
    defenses = sorted(df["defense"].unique()) if not df.empty else []
    for domain, track, metric in tracks(df):
        sub = df[df["track"] == track]
        better = metric != "wer"
        best = sub.sort_values(["robust", "clean"], ascending=[not better, not better], kind="mergesort") \
            .drop_duplicates("defense").set_index("defense")
        cols[f"{track}:robust"] = best["robust"]
        cols[f"{track}:clean"] = best["clean"]
        cols[f"{track}:official"] = best.get("official", True)
        cols[f"{track}:unranked"] = unrankable(best)
        if "robust_lo" in best:
            cols[f"{track}:robust_lo"], cols[f"{track}:robust_hi"] = best["robust_lo"], best["robust_hi"]
        best = best[~unrankable(best)]  # shown above, never ranked
        if len(best) < 2:
            continue
        r, _ = chain_ranks(list(best["robust"] if better else -best["robust"]), paired_outcomes(best))
        for d, rank in zip(best.index, r):
            ranks.setdefault(d, {}).setdefault(domain, []).append(int(rank))
    out = pd.DataFrame(cols, index=pd.Index(defenses, name="defense"))
    out["mean_rank"] = [
        sum(sum(v) / len(v) for v in ranks[d].values()) / len(ranks[d]) if d in ranks else math.nan for d in defenses
    ]
    out["domains"] = [len(ranks.get(d, {})) for d in defenses]
    out = out.reset_index().sort_values(["mean_rank", "defense"], kind="mergesort").reset_index(drop=True)
    return out
