"""The static leaderboard site: index (cross-domain table, plots, tracks) + one page per track.

Self-contained: inline CSS and a few lines of inline JS for sortable tables,
plots as local PNG files, and a Content-Security-Policy that forbids any
other request. Every string from a result file goes through :func:`e`
(``html.escape``), so it is shown as text and never interpreted as markup.
"""

from __future__ import annotations

import html
import json
import math
from urllib.parse import quote

import pandas as pd

from leaderboard.aggregate import attack_columns, cross_domain, quality_columns_of, quality_parts, tracks
from leaderboard.flags import FLAG_EXPLANATIONS
from leaderboard.markdown import (ASR_HEADER, ASR_NOTE, DASH, QUALITY_NOTE, asr_board, attack_unit, ci_cell,
                                  cross_cell, db, or_dash, pct, protocol_mark, quality_header, quality_value,
                                  rank_cell, row_ci, row_p, safe_url, seconds)

CSP = ("default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "base-uri 'none'; form-action 'none'")

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.3rem .55rem;text-align:right;vertical-align:top}
th{background:#f2f2f2;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
td.t,th.t{text-align:left} tr:nth-child(even) td{background:#fafafa}
.badge{display:inline-block;background:#c0392b;color:#fff;border-radius:.6rem;padding:0 .5rem;font-size:.8rem;
margin:0 .15rem .15rem 0;cursor:help;white-space:nowrap}
.prov{font-family:ui-monospace,monospace;font-size:.8rem;color:#444}
.plots img{max-width:48%;margin:.5rem 1% .5rem 0;border:1px solid #ddd}
.note{color:#555;font-size:.9rem;max-width:60rem} .bad{color:#c0392b}
dt{font-weight:600;margin-top:.4rem} nav a{margin-right:1rem}
"""

#: sortable tables: click a header to sort by that column (numbers numerically), click again to reverse
JS = """
(function(){
  function key(td){
    var v = td.getAttribute('data-sort'); if (v === null) v = td.textContent.trim();
    var n = Number(v); return (v !== '' && isFinite(n)) ? [0, n] : [1, v.toLowerCase()];
  }
  function sortBy(table, col, th){
    var asc = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('thead th').forEach(function(h){ h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = key(a.cells[col]), y = key(b.cells[col]);
      var c = x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('thead th').forEach(function(th, i){
      th.tabIndex = 0; th.title = 'sort by this column';
      th.addEventListener('click', function(){ sortBy(table, i, th); });
      th.addEventListener('keydown', function(ev){ if (ev.key === 'Enter') sortBy(table, i, th); });
    });
  });
})();
"""


def e(value) -> str:
    """An untrusted value as HTML text (also safe inside a quoted attribute)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(str(value), quote=True)


def track_page(track: str) -> str:
    """File name of a track's page (track ids are validated ``[a-z0-9_.+-]`` segments; quoted to be sure)."""
    return f"track-{quote(track, safe='_.-')}.html"


def _num_attr(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def _td(text: str, sort=None, cls: str = "", raw: bool = False, title: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    if title:
        attrs += ' title="' + e(title) + '"'
    if sort is not None:
        attrs += f' data-sort="{e(sort)}"'
    return f"<td{attrs}>{text if raw else e(text)}</td>"


def _page(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{e(title)}</title><style>{CSS}</style></head>
<body>
{body}
<script>{JS}</script>
</body></html>
"""


def badges(flag_details: str) -> str:
    details = json.loads(flag_details or "{}")
    out = []
    for name in sorted(details):
        d = details[name]
        value = d.get("value")
        tip = d["explanation"] + (f" (measured value: {value})" if value is not None else "")
        out.append(f'<span class="badge" title="{e(tip)}">{e(name)}</span>')
    return "".join(out)


def protocol_badge(r: dict) -> str:
    """A badge for an adaptive evaluation (BPDA / EOT, bench.defenses), with the checks that switched it."""
    mark = protocol_mark(r)
    if not mark:
        return ""
    return f'<span class="badge protocol" title="{e(r.get("protocol_reasons") or "")}">{e(mark)}</span>'


def model_html(r: dict) -> str:
    """The model column: the model id, then the card's venue linked to its paper (title on hover) when present."""
    cell = e(r["model"])
    venue, url = r.get("venue"), safe_url(r.get("paper_url"))
    if isinstance(venue, str) and venue:
        paper = r.get("paper") if isinstance(r.get("paper"), str) else ""
        inner = e(venue) if url is None else \
            f'<a class="paper" href="{e(url)}" title="{e(paper)}" rel="noopener noreferrer">{e(venue)}</a>'
        cell += f" <small>({inner})</small>"
    return cell


def _table(tid: str, header: list[tuple[str, str]], rows: list[str]) -> str:
    ths = "".join(f'<th class="{cls}">{text}</th>' if cls else f"<th>{text}</th>" for text, cls in header)
    return (f'<table id="{tid}" class="sortable"><thead><tr>{ths}</tr></thead><tbody>\n'
            + "\n".join(rows) + "\n</tbody></table>")


def cross_domain_html(df: pd.DataFrame, corruption_ranks: dict[str, float] | None = None) -> str:
    cd = cross_domain(df)
    trs = tracks(df)
    header = [("defense", "t")] + [
        (f'<a href="{e(track_page(t))}">{e(t)}</a><br><small>{e(dom)} · {"WER ↓" if metric == "wer" else "acc"}'
         "</small>", "") for dom, t, metric in trs] + [("mean rank", ""), ("domains", "")] \
        + ([('<a href="#corruptions">corruption mean rank</a>', "")] if corruption_ranks else [])
    rows = []
    for r in cd.to_dict("records"):
        cells = [_td(r["defense"], cls="t")]
        for _, t, _m in trs:
            rob, cl = r[f"{t}:robust"], r[f"{t}:clean"]
            ci = ci_cell(r.get(f"{t}:robust_lo"), r.get(f"{t}:robust_hi"))
            cells.append(_td(cross_cell(rob, cl, r[f"{t}:official"], r.get(f"{t}:unranked", False)), sort=_num_attr(rob),
                             title=f"robust 95% CI {ci}" if ci else ""))
        cells += [_td(rank_cell(r["mean_rank"]), sort=_num_attr(r["mean_rank"])), _td(str(r["domains"]))]
        if corruption_ranks:
            cr = corruption_ranks.get(r["defense"], math.nan)
            cells.append(_td(rank_cell(cr), sort=_num_attr(cr)))
        rows.append('<tr class="result-row">' + "".join(cells) + "</tr>")
    return _table("cross-domain", header, rows)


def track_table_html(sub: pd.DataFrame) -> str:
    attacks = attack_columns(sub)
    wer = asr_board(sub)
    quality = quality_columns_of(sub)
    unit = "WER %" if sub["metric"].iloc[0] == "wer" else "%"
    header = [("rank", ""), ("model", "t"), ("defense", "t"), (f"clean {unit}", ""), (f"robust {unit}", ""),
              ("clean 95% CI", ""), ("robust 95% CI", ""), ("p vs leader", "")] \
        + ([(e(h), "") for h in ASR_HEADER] if wer else []) \
        + [(e(a.split(":", 1)[1] + attack_unit(sub)), "") for a in attacks] \
        + [(e(quality_header(c)), "") for c in quality] \
        + [("train s", ""), ("eval s", ""), ("flags", "t"), ("provenance", "t")]
    rows = []
    for i, r in enumerate(sub.to_dict("records")):
        commit = r["commit"] or ""
        ck = r["checkpoint_sha256"] or ""
        prov = (f'<span class="prov">v{e(r["version"])} · commit <span title="{e(commit)}">{e(commit[:10]) or "–"}'
                f'</span> · seed {e(r["seed"])} · ckpt <span title="{e(ck)}">{e(ck[:12]) or "–"}</span>'
                f' · {e(r["device"])} · {e(r["timestamp"])}</span>')
        cells = [_td(str(r["rank"]), sort=r["rank"]), _td(model_html(r), sort=r["model"], cls="t", raw=True),
                 _td(r["defense"], cls="t"), _td(pct(r["clean"]), sort=_num_attr(r["clean"])),
                 _td(pct(r["robust"]), sort=_num_attr(r["robust"])),
                 _td(row_ci(r, "clean"), sort=_num_attr(r.get("clean_lo"))),
                 _td(row_ci(r, "robust"), sort=_num_attr(r.get("robust_lo"))),
                 _td(row_p(r, first=i == 0), sort=_num_attr(r.get("tie_p")))]
        if wer:
            cells += asr_tds(r)
        cer = json.loads(r["per_attack_cer"]) if wer and isinstance(r.get("per_attack_cer"), str) else {}
        cells += [_td(pct(r[a]), sort=_num_attr(r[a]), title=_attack_ci(r[a], r["n"], sub) or _attack_cer(a, cer))
                  for a in attacks]
        cells += [_td(or_dash(quality_value(quality_parts(c)[1], r.get(c))), sort=_num_attr(r.get(c)))
                  for c in quality]
        cells += [_td(seconds(r["train_seconds"]), sort=_num_attr(r["train_seconds"])),
                  _td(seconds(r["eval_seconds"]), sort=_num_attr(r["eval_seconds"])),
                  _td(protocol_badge(r) + badges(r["flag_details"]), sort=r["flags"], cls="t", raw=True),
                  _td(prov, sort=r["timestamp"], cls="t", raw=True)]
        rows.append('<tr class="result-row">' + "".join(cells) + "</tr>")
    return _table("results", header, rows)


def asr_tds(r: dict) -> list[str]:
    """The ASR cells (:data:`leaderboard.markdown.ASR_HEADER`), their details on hover: CER intervals, the
    targeted attack (name, rule, n, target CER, SNR) and the median SNR over how many utterances."""
    def ci(role: str) -> str:
        c = ci_cell(r.get(f"{role}_cer_lo"), r.get(f"{role}_cer_hi"))
        return f"95% CI {c}" if c else ""

    tip = ""
    if r.get("targeted_attack") or not _nan(r.get("targeted_success")):
        parts = [f"targeted attack {r.get('targeted_attack') or '?'}"]
        if r.get("targeted_rule"):
            parts.append(f"targets: {r['targeted_rule']}")
        if not _nan(r.get("targeted_n")):
            parts.append(f"n {int(r['targeted_n'])}")
        if not _nan(r.get("target_wer")):
            parts.append(f"target WER {pct(r['target_wer'])}%")
        if not _nan(r.get("target_cer")):
            parts.append(f"target CER {pct(r['target_cer'])}%")
        if not _nan(r.get("targeted_snr_db_mean")):
            parts.append(f"mean SNR {db(r['targeted_snr_db_mean'])} dB")
        tip = " · ".join(parts)
    snr = ""
    if not _nan(r.get("snr_db_median")) or not _nan(r.get("snr_db_n")):
        snr = f"median {db(r.get('snr_db_median')) or DASH} dB over " \
              f"{'?' if _nan(r.get('snr_db_n')) else int(r['snr_db_n'])} changed utterances"
    return [_td(or_dash(pct(r.get("clean_cer"))), sort=_num_attr(r.get("clean_cer")), title=ci("clean")),
            _td(or_dash(pct(r.get("robust_cer"))), sort=_num_attr(r.get("robust_cer")), title=ci("robust")),
            _td(or_dash(pct(r.get("targeted_success"))), sort=_num_attr(r.get("targeted_success")), title=tip),
            _td(or_dash(pct(r.get("target_wer"))), sort=_num_attr(r.get("target_wer")), title=tip),
            _td(or_dash(db(r.get("snr_db_mean"))), sort=_num_attr(r.get("snr_db_mean")), title=snr)]


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _attack_cer(column: str, cer: dict) -> str:
    """Tooltip of a per-attack WER: that attack's CER, when the file reports it."""
    v = cer.get(column.split(":", 1)[1])
    return f"CER {pct(v)}%" if isinstance(v, (int, float)) else ""


def _attack_ci(v, n, sub) -> str:
    """Tooltip of a per-attack accuracy: its Wilson interval over the n examples (accuracy columns only)."""
    from bench.stats import wilson_of

    if sub["metric"].iloc[0] == "wer" or v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    lo, hi = wilson_of(float(v), int(n))
    return f"95% CI {ci_cell(lo, hi)}"


def flag_legend() -> str:
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in FLAG_EXPLANATIONS.items())
    return f'<h2 id="flags">Sanity flags</h2><p class="note">A red badge marks a result whose evaluation looks ' \
           f"broken; hover it for the measured value.</p><dl>{items}</dl>"


def index_html(df: pd.DataFrame, plots: dict[str, str], problems: tuple[str, ...], n_files: int,
               extra: str = "", corruption_ranks: dict[str, float] | None = None) -> str:
    """The site's index; ``extra``: more boards (HTML) after the attack tracks (the corruption boards)."""
    trs = tracks(df)
    domains = sorted(df["domain"].unique()) if not df.empty else []
    body = ["<h1>xrobust leaderboard</h1>",
            f'<p class="sub">{len(df)} results · {len(trs)} tracks · domains: {e(", ".join(domains)) or "none"}'
            ' · <a href="leaderboard.csv">CSV</a> · <a href="LEADERBOARD.md">Markdown</a></p>',
            '<p class="note">Robust accuracy is the worst case per example over the track\'s whole attack suite '
            "(an example counts as robust only if every attack fails on it). Click a column header to sort.</p>"]
    if df.empty:
        body.append("<p>No valid result files yet.</p>")
    else:
        body += ["<h2>Cross-domain</h2>",
                 '<p class="note">Cells: robust (clean) accuracy in %, best model per defense; WER tracks (↓) show '
                 "robust (clean) word error rate, lower is better. Mean rank: per domain, the defense's mean rank "
                 "over that domain's tracks, averaged over the domains it was evaluated on.</p>",
                 cross_domain_html(df, corruption_ranks), "<h2>Plots</h2>", '<div class="plots">']
        body += [f'<img src="{e(src)}" alt="{e(alt)}">' for alt, src in sorted(plots.items())]
        body.append("</div><h2>Tracks</h2>")
        rows = []
        for dom, t, metric in trs:
            sub = df[df["track"] == t]
            best = sub.iloc[0]
            rows.append('<tr class="result-row">' + _td(f'<a href="{e(track_page(t))}">{e(t)}</a>', sort=t, cls="t",
                                                         raw=True)
                        + _td(dom, cls="t") + _td(best["threat"], cls="t") + _td(metric, cls="t")
                        + _td(str(len(sub)), sort=len(sub)) + _td(best["defense"], cls="t")
                        + _td(pct(best["robust"]), sort=_num_attr(best["robust"])) + "</tr>")
        body.append(_table("tracks", [("track", "t"), ("domain", "t"), ("threat", "t"), ("metric", "t"),
                                      ("results", ""), ("best defense", "t"), ("best robust %", "")], rows))
    if extra:
        body.append(extra)
    body.append(flag_legend())
    if problems:
        body.append(f'<h2 class="bad">Files left out ({len(problems)} problems in {n_files} files)</h2><ul>'
                    + "".join(f"<li>{e(p)}</li>" for p in problems) + "</ul>")
    return _page("xrobust leaderboard", "\n".join(body))


def track_html(df: pd.DataFrame, track: str, plot: str | None, audio: str | None = None,
               examples: str | None = None) -> str:
    """A track's page; ``audio`` / ``examples``: its audio page (:mod:`leaderboard.audio`) and its text examples
    page (:mod:`leaderboard.examples`), linked when there is one."""
    sub = df[df["track"] == track]
    first = sub.iloc[0]
    body = ['<nav><a href="index.html">← leaderboard</a></nav>', f"<h1>{e(track)}</h1>",
            f'<p class="sub">domain {e(first["domain"])} · dataset {e(first["dataset"])} · threat {e(first["threat"])}'
            f' · metric {e(first["metric"])} · n {e(int(first["n"]))}</p>']
    if audio:
        body.append(f'<p><a class="audio-link" href="{e(audio)}">Listen to adversarial examples</a> '
                    "(clean and adversarial audio, transcripts, SNR)</p>")
    if examples:
        body.append(f'<p><a class="examples-link" href="{e(examples)}">Read adversarial examples</a> '
                    "(original and adversarial texts, the changed words highlighted, predictions before and after)</p>")
    body += ['<p class="note">Per-attack columns: accuracy (or WER, when marked) under that attack alone; robust = '
             "worst case per example over all of them. Provenance: package version, git commit, seed, checkpoint sha256, device, time.</p>",
             track_table_html(sub)]
    if asr_board(sub):
        body.append(f'<p class="note">{e(ASR_NOTE)} Hover a cell for its interval or details.</p>')
    if quality_columns_of(sub):
        body.append(f'<p class="note">{e(QUALITY_NOTE)}</p>')
    if plot:
        body.append(f'<div class="plots"><img src="{e(plot)}" alt="{e(track)}: robust accuracy vs eps"></div>')
    else:
        body.append('<p class="note">No eps sweep in these results.</p>')
    body.append(flag_legend())
    return _page(f"{track} · xrobust leaderboard", "\n".join(body))
