"""Text examples pages: the text evidence samples beside result files (:mod:`bench.samples`, kind ``text``).

:func:`leaderboard.audio.copy_samples` copies each valid samples folder's manifest to the site (text
samples have no other file); :func:`examples_html` renders one page per track listing, per result, the
original and the adversarial text of every sample with the changed words highlighted (``<del>`` in the
original, ``<ins>`` in the adversarial text, at the offsets the manifest records and validation
re-checked), the true label, the predictions and true-class probabilities before and after, the words
changed of the budget and the sentence similarity. Every string from a manifest is escaped, piece by piece.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from bench.samples import MANIFEST
from leaderboard.audio import Listening
from leaderboard.markdown import DASH
from leaderboard.site import _page, _table, _td, e


def examples_page(track: str) -> str:
    """File name of a track's text examples page (track ids are validated segments; quoted to be sure)."""
    return f"examples-{quote(track, safe='_.-')}.html"


def highlighted(text: str, spans: list[tuple[int, str]], tag: str) -> str:
    """``text`` as HTML with each ``(offset, word)`` of ``spans`` wrapped in ``<tag>``; every piece escaped.
    A span that is not at its offset (a manifest that skipped validation) is left unmarked, never trusted."""
    out, at = [], 0
    for start, word in sorted(spans):
        if start < at or text[start:start + len(word)] != word:
            continue
        out += [e(text[at:start]), f'<{tag} class="chg">{e(word)}</{tag}>']
        at = start + len(word)
    out.append(e(text[at:]))
    return "".join(out)


def _prob(v: Any) -> str:
    return f"{100 * float(v):.1f}%" if isinstance(v, (int, float)) else DASH


def _result_html(item: Listening, k: int) -> str:
    r, m = item.row, item.manifest
    header = [("index", ""), ("attack", "t"), ("original", "t"), ("adversarial", "t"), ("label", "t"),
              ("clean prediction (P true)", "t"), ("adversarial prediction (P true)", "t"),
              ("words changed", ""), ("similarity", "")]
    rows = []
    for s in m["samples"]:
        orig = highlighted(s["original"], [(c["start"], c["old"]) for c in s["changes"]], "del")
        adv = highlighted(s["adversarial"], [(c["adv_start"], c["new"]) for c in s["changes"]], "ins")
        n = len(s["changes"])
        budget = "" if s.get("budget") is None else f" of {s['budget']} allowed"
        changed = f"{n}{budget}" + (f" ({sum(c.get('edits', 0) for c in s['changes'])} characters)"
                                    if s.get("unit") == "character" else "")
        sim = s.get("sentence_similarity")
        rows.append('<tr class="sample-row">' + _td(str(s["index"]), sort=s["index"]) + _td(s["attack"], cls="t")
                    + _td(orig, cls="t text", raw=True) + _td(adv, cls="t text", raw=True) + _td(s["label"], cls="t")
                    + _td(f"{s['clean_prediction']} ({_prob(s['clean_true_prob'])})", cls="t")
                    + _td(f"{s['adversarial_prediction']} ({_prob(s['adversarial_true_prob'])})", cls="t")
                    + _td(changed, sort=n, title=f"of {s['words']} words")
                    + _td(DASH if sim is None else f"{float(sim):.3f}", sort="" if sim is None else repr(float(sim)))
                    + "</tr>")
    note = f'<p class="note">{e(m["note"])}</p>' if m.get("note") else ""
    return (f'<h2 id="r{k}">{e(r["model"])} · {e(r["defense"])}</h2>'
            f'<p class="sub">{len(m["samples"])} sample(s) · threat {e(m["threat"])} · '
            f'<a href="{e(quote(item.href, safe="/"))}/{MANIFEST}">manifest</a></p>' + note
            + (_table(f"samples-{k}", header, rows) if rows else ""))


STYLE = ("<style>del.chg{background:#fdd;text-decoration:line-through} ins.chg{background:#dfd;text-decoration:none;"
         "font-weight:600} td.text{max-width:28rem;white-space:pre-wrap}</style>")


def examples_html(track: str, items: list[Listening], track_href: str) -> str:
    """A track's text examples page: per result with text samples, a table of original vs adversarial texts."""
    body = [STYLE, f'<nav><a href="index.html">← leaderboard</a> <a href="{e(track_href)}">← {e(track)}</a></nav>',
            f"<h1>{e(track)}: adversarial texts</h1>",
            '<p class="note">A few adversarial examples the worst case kept per result (<code>xrobust eval '
            "--samples K</code>), from the discrete attacks only (an embedding-space example has no text): the "
            "original with the replaced words struck through, the adversarial text with their substitutes "
            "highlighted, the true label, what the model predicted on each with its probability of the true "
            "class, the words changed of the attack's budget and the sentence similarity when the attack "
            "measured it.</p>"]
    body += [_result_html(item, k) for k, item in enumerate(items)]
    return _page(f"{track} · adversarial texts · xrobust leaderboard", "\n".join(body))
