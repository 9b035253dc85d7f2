"""Markdown leaderboard: the cross-domain table, then one table per track.

Strings from result files are untrusted: :func:`md` HTML-escapes them and
backslash-escapes the characters that Markdown tables and emphasis use, so
a model named ``<script>alert(1)</script>`` is shown as text.
"""

from __future__ import annotations

import html
import math
import re

import pandas as pd

from leaderboard.aggregate import attack_columns, cross_domain, quality_columns_of, quality_parts, tracks

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")


def md(value) -> str:
    """One untrusted value as inert Markdown text (a single line)."""
    text = html.escape(str(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def pct(v: float) -> str:
    """A fraction as a percentage with one decimal ('' for a missing number)."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def seconds(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


#: a link target the leaderboard renders: http(s), and none of the characters that end a Markdown link or an
#: HTML attribute (the schema asks the same of a card's paper_url; checked again here because it is output)
_SAFE_URL = re.compile(r"^https?://[^\s<>\"'`()\[\]{}|\\^]+$")


def safe_url(url) -> str | None:
    """``url`` when it is a plain http(s) link that is safe to put in a Markdown or HTML link, else None."""
    return url if isinstance(url, str) and _SAFE_URL.match(url) else None


def model_cell(r: dict) -> str:
    """The model column: the model id, then the card's venue linked to its paper when the result has a card."""
    cell = md(r["model"])
    venue, url = r.get("venue"), safe_url(r.get("paper_url"))
    if isinstance(venue, str) and venue:
        cell += f" ([{md(venue)}]({url}))" if url else f" ({md(venue)})"
    return cell


#: marks a cross-domain cell whose result was evaluated with another suite than its track's official one
UNOFFICIAL_MARK = " †"


#: a cross-domain cell whose model predicts one class for every input (flag ``one-class``): shown, not ranked
UNRANKED_MARK = " ‡"


def cross_cell(robust: float, clean: float, official: object = True, unranked: object = False) -> str:
    if robust is None or (isinstance(robust, float) and math.isnan(robust)):
        return "–"
    return f"{pct(robust)} ({pct(clean)})" + (UNOFFICIAL_MARK if official in (False,) else "") \
        + (UNRANKED_MARK if unranked is True or unranked == 1 else "")


def rank_cell(mean_rank: float) -> str:
    """A mean rank with two decimals, or "–" for a defense ranked on no track (NaN)."""
    return "–" if mean_rank is None or math.isnan(mean_rank) else f"{mean_rank:.2f}"


def attack_unit(sub: pd.DataFrame) -> str:
    """Suffix for per-attack headers of WER tracks: " WER" when every row reports per-attack WER, else " acc"."""
    if not len(sub) or (sub["metric"] != "wer").any():
        return ""
    return " WER" if (sub["attack_metric"] == "wer").all() else " acc"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def cross_domain_markdown(df: pd.DataFrame, corruption_ranks: dict[str, float] | None = None) -> str:
    """The cross-domain table; ``corruption_ranks`` (defense -> mean rank on the corruption tracks,
    :func:`leaderboard.corruption.corruption_mean_ranks`) adds the corruption column next to it."""
    cd = cross_domain(df)
    trs = tracks(df)
    header = ["defense"] + [f"{md(dom)}: {md(t)}" + (" (WER ↓)" if metric == "wer" else "") for dom, t, metric in trs] \
        + ["mean rank", "domains"] + (["corruption mean rank"] if corruption_ranks else [])
    rows = []
    for r in cd.to_dict("records"):
        rows.append([md(r["defense"])] + [cross_cell(r[f"{t}:robust"], r[f"{t}:clean"], r[f"{t}:official"],
                                                     r.get(f"{t}:unranked", False))
                                          for _, t, _ in trs]
                    + [rank_cell(r["mean_rank"]), str(r["domains"])]
                    + ([rank_cell(corruption_ranks.get(r["defense"], math.nan))] if corruption_ranks else []))
    table = _table(header, rows)
    if any(r[f"{t}:official"] in (False,) for r in cd.to_dict("records") for _, t, _ in trs):
        table += ("\n\n† evaluated with another attack suite than the track's official one (badge "
                  "`unofficial-suite`): a stronger attack may lower the number.")
    if any(r.get(f"{t}:unranked", False) is True for r in cd.to_dict("records") for _, t, _ in trs):
        table += ("\n\n‡ the model predicts one class for every input (flag `one-class`): its robust accuracy is that "
                  "class's share, not robustness; shown, not ranked.")
    return table


#: an ASR number the result file does not report (written before it was stored)
DASH = "—"

#: ASR tracks' columns after the WER ones: header, and the cell of a row (:data:`ASR_NOTE` says what they are)
ASR_HEADER = ["clean CER %", "robust CER %", "targeted success %", "target WER %", "SNR dB"]


def or_dash(text: str) -> str:
    return text or DASH


def db(v) -> str:
    """A level in dB with one decimal ('' for a missing number)."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def asr_cells(r: dict) -> list[str]:
    """Clean / robust CER, targeted success rate, the targeted attack's WER against its targets, and the mean
    achieved SNR of the kept adversarial audio; :data:`DASH` where the file does not report one."""
    return [or_dash(pct(r.get("clean_cer"))), or_dash(pct(r.get("robust_cer"))),
            or_dash(pct(r.get("targeted_success"))), or_dash(pct(r.get("target_wer"))),
            or_dash(db(r.get("snr_db_mean")))]


#: under ASR track tables: what the extra columns are
ASR_NOTE = ("CER: character error rate, clean and under attack (worst case per utterance). Targeted success: share "
            "of utterances the targeted attack made transcribe exactly as its target; target WER: the word error "
            "rate of the hypotheses against those targets. SNR dB: mean signal-to-perturbation ratio of the "
            "adversarial audio the worst case kept, over the utterances an attack changed (higher = quieter). "
            f"{DASH} where the result file does not report it.")


def asr_board(sub: pd.DataFrame) -> bool:
    """Whether a track's table gets the ASR columns: a WER track where at least one result reports CER, a
    targeted attack or the achieved SNR (rows that do not show :data:`DASH`). Tables of files written before
    those fields existed stay as they were, so the committed leaderboard and doc tables need no rewrite
    until such a file arrives."""
    if not len(sub) or sub["metric"].iloc[0] != "wer":
        return False
    keys = ("clean_cer", "robust_cer", "targeted_success", "target_wer", "snr_db_mean")
    return any(k in sub and sub[k].notna().any() for k in keys)


#: attack-quality columns (``metrics.attack_stats``): header after the attack's name, and how a value is shown
QUALITY_HEADER = {"attack_success_rate": "success %", "words_changed": "words changed %",
                  "words_changed_median": "words changed % median", "queries": "queries",
                  "sentence_similarity": "similarity", "chars_changed": "chars changed"}


def quality_value(key: str, v) -> str:
    """One attack-quality number: rates and word fractions in %, queries and characters with one decimal, the
    sentence similarity with three; '' when missing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if key in ("attack_success_rate", "words_changed", "words_changed_median"):
        return pct(v)
    return f"{v:.3f}" if key == "sentence_similarity" else f"{v:.1f}"


def quality_header(column: str) -> str:
    attack, key = quality_parts(column)
    return f"{attack} {QUALITY_HEADER[key]}"


#: under tables with attack-quality columns
QUALITY_NOTE = ("Attack quality, as the discrete attacks report it (their own statistics over the examples each "
                "attacked): success %: share of the attacked examples it flipped; words changed %: mean (and median) "
                "share of the words changed in successful adversarial texts; queries: model calls per attacked "
                "example; similarity: mean sentence-embedding cosine of successful adversarial texts to their "
                "originals; chars changed: mean character edits of successes. "
                f"{DASH} where the result file does not report it.")


def track_markdown(df: pd.DataFrame, track: str) -> str:
    sub = df[df["track"] == track]
    attacks = attack_columns(sub)
    wer = asr_board(sub)
    quality = quality_columns_of(sub)
    unit = "WER %" if sub["metric"].iloc[0] == "wer" else "%"
    header = ["rank", "model", "defense", f"clean {unit}", f"robust {unit}", "robust 95% CI", "p vs leader"] \
        + (ASR_HEADER if wer else []) + [md(a.split(":", 1)[1]) + attack_unit(sub) for a in attacks] \
        + [md(quality_header(c)) for c in quality] + ["train s", "flags"]
    rows = []
    for i, r in enumerate(sub.to_dict("records")):
        rows.append([str(r["rank"]), model_cell(r), md(r["defense"]), pct(r["clean"]), pct(r["robust"]),
                     row_ci(r, "robust"), row_p(r, first=i == 0)] + (asr_cells(r) if wer else [])
                    + [pct(r[a]) for a in attacks]
                    + [or_dash(quality_value(quality_parts(c)[1], r.get(c))) for c in quality]
                    + [seconds(r["train_seconds"]),
                                                      ", ".join([protocol_mark(r)] * bool(protocol_mark(r))
                                                                + [md(f) for f in r["flags"].split(";") if f])])
    out = _table(header, rows) + "\n\n" + TIE_NOTE
    if wer:
        out += "\n\n" + ASR_NOTE
    if quality:
        out += "\n\n" + QUALITY_NOTE
    rows = [r for r in sub.to_dict("records") if isinstance(r.get("samples"), str)]
    for kind, what in SAMPLES_NOTE.items():
        with_samples = [r for r in rows if (r.get("samples_kind") or "audio") == kind]
        if with_samples:
            out += f"\n\n{what}, from: " + ", ".join(md(r["samples"]) for r in with_samples) + "."
    return out


#: the sentence under a track table whose results have evidence samples (bench.samples), by the samples' kind
SAMPLES_NOTE = {"audio": "Listenable adversarial examples (clean and adversarial WAV, transcripts, SNR) on the site's "
                         "audio page of this track",
                "text": "Adversarial texts (original and adversarial, the changed words highlighted, predictions "
                        "before and after) on the site's examples page of this track"}


def protocol_mark(r: dict) -> str:
    """``adaptive: bpda`` when the checks switched the suite (bench.defenses), ``plain (not adaptive)`` when an
    evaluation was forced to skip the switch, else empty."""
    p = r.get("protocol") or "standard"
    if not isinstance(p, str) or p == "standard":
        return ""
    return "plain (not adaptive)" if p == "plain" else f"adaptive: {md(p)}"


#: under every track table: what the interval and the shared ranks mean
TIE_NOTE = ("95% CI: Wilson score interval of the robust accuracy over the examples the headline counts. "
            "p vs leader: exact McNemar test on the per-example robust outcomes against the first row of the rank "
            "group above; with p >= 0.05 the row is not significantly different from that leader and shares its "
            "rank, marked (=); otherwise it starts a new group (cross-domain mean ranks use these shared ranks). "
            "WER tracks: percentile bootstrap interval of the corpus WER over utterances (Bisani & Ney 2004) and "
            "a paired bootstrap test of the WER difference (Koehn 2004), from the per-utterance word errors; "
            "– where the result file has none (written before they were stored).")


def ci_cell(lo, hi) -> str:
    """``[lo, hi]`` in percent, or '' when there is no interval."""
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _has_word_errors(r: dict) -> bool:
    from bench.stats import UtteranceErrors

    return isinstance(r.get("robust_word_errors"), UtteranceErrors)


def row_ci(r: dict, role: str) -> str:
    """A row's ``role`` ("clean" / "robust") 95% interval cell; "–" for a WER row whose file has no
    per-utterance word errors (written before they were stored), '' for any other row without one."""
    cell = ci_cell(r.get(f"{role}_lo"), r.get(f"{role}_hi"))
    return cell or ("–" if r.get("metric") == "wer" else "")


def row_p(r: dict, first: bool) -> str:
    """A row's "p vs leader" cell; on WER tracks "–" where no test could run because a file has no
    per-utterance word errors (the track's first row, the leader of all, is never tested)."""
    cell = p_cell(r.get("tie_p"))
    if cell or r.get("metric") != "wer" or (first and _has_word_errors(r)):
        return cell
    return "–"


def p_cell(p) -> str:
    """The McNemar p-value against the group leader ('' when none ran), with '=' when the rank is shared."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    from leaderboard.aggregate import ALPHA

    return f"{p:.2g}" + (" (=)" if p >= ALPHA else "")


def cost_markdown(rows: list[dict]) -> str:
    """Seconds per training epoch of each recipe and its ratio to ERM (from ``xrobust perf --training``)."""
    body = [[md(r["recipe"]), f"{r['seconds_per_epoch']:.1f}", f"{r['ratio_to_erm']:.2f}",
             str(r.get("replay", 1))] for r in rows]
    return _table(["recipe", "s / epoch", "× ERM", "replays"], body)


def leaderboard_markdown(df: pd.DataFrame, problems: tuple[str, ...] = (),
                         costs: dict[str, list[dict]] | None = None,
                         corruption_ranks: dict[str, float] | None = None) -> str:
    """The whole Markdown leaderboard for a results frame (``costs``: :func:`training_costs` per track)."""
    out = ["# xrobust leaderboard", "",
           "Generated by `xrobust leaderboard` from the result files under `results/`; do not edit by hand.", "",
           "Robust accuracy is the worst case per example over the track's whole attack suite (an example counts "
           "as robust only if every attack fails on it). Numbers are percentages.", ""]
    if df.empty:
        out += ["No valid result files yet.", ""]
    else:
        out += ["## Cross-domain", "",
                "Cells: robust (clean) accuracy of the best model per defense; for WER tracks (marked ↓) "
                "robust (clean) word error rate, lower is better. Mean rank: per domain, the defense's mean "
                "rank over that domain's tracks, averaged over the domains it was evaluated on.", "",
                cross_domain_markdown(df, corruption_ranks), "", "## Tracks", ""]
        for domain, track, metric in tracks(df):
            sub = df[df["track"] == track].iloc[0]
            out += [f"### {md(track)}", "",
                    f"domain {md(domain)} · dataset {md(sub['dataset'])} · threat {md(sub['threat'])} · "
                    f"metric {md(metric)} · n {int(sub['n'])}", "", track_markdown(df, track), ""]
            if costs and costs.get(track):
                out += ["Training cost per epoch (`xrobust perf --training`: every recipe timed on the same "
                        "minibatches, interleaved in one process; ratios are the comparable numbers):", "",
                        cost_markdown(costs[track]), ""]
    if problems:
        out += ["## Files left out (invalid)", ""] + [f"- {md(p)}" for p in problems] + [""]
    return "\n".join(out)
