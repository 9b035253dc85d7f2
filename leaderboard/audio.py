"""Audio pages: the evidence samples beside result files (:mod:`bench.samples`), listenable on the site
(text samples are copied here too and shown by :mod:`leaderboard.examples`).

:func:`copy_samples` copies each valid samples folder's manifest and audio files (only the files its
manifest lists; the folder was checked by :func:`leaderboard.aggregate.collect`) to
``site/samples/<published|user>/<domain>/<dataset>/<threat>/<stem>.samples/``; :func:`audio_html`
renders one page per track with an ``<audio controls>`` for the clean and the adversarial file of every
sample, what the model made of each and the achieved SNR. Every string from a manifest is escaped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from bench.checkpoint import atomic_write_bytes
from bench.samples import MANIFEST
from leaderboard.markdown import DASH, db
from leaderboard.site import _page, _table, _td, e

#: what the three text columns hold, per task
COLUMNS = {"asr": ("reference", "clean transcript", "adversarial transcript"),
           "kws": ("true class", "clean prediction", "adversarial prediction")}


@dataclass(frozen=True)
class Listening:
    """One result's samples on the site: its row, its manifest, and the folder they were copied to."""

    row: dict[str, Any]
    manifest: dict[str, Any]
    href: str  # the copied folder, relative to the site root


def audio_page(track: str) -> str:
    """File name of a track's audio page (track ids are validated segments; quoted to be sure)."""
    return f"audio-{quote(track, safe='_.-')}.html"


def _source_folder(row: dict[str, Any], results: Path) -> Path:
    # a published row's shown path is relative to the results root; a user row's starts with its folder
    return Path(row["samples"]) if row["source"] == "user" else results / row["samples"]


def copy_samples(sub: pd.DataFrame, results: str | Path, site: Path) -> list[Listening]:
    """Copy the samples of the rows of ``sub`` that have valid ones into ``site/samples/``."""
    out = []
    for r in sub.to_dict("records"):
        if not isinstance(r.get("samples"), str):
            continue
        src = _source_folder(r, Path(results))
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
        rel = "/".join(("samples", r["source"], *Path(r["samples"]).parts[-4:]))
        dest = site / rel
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest / MANIFEST, (src / MANIFEST).read_bytes())
        for s in manifest["samples"]:
            for f in s.get("files", {}).values():  # text samples have none
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / f, dest / f)
        out.append(Listening(r, manifest, rel))
    return out


def _audio(href: str, label: str) -> str:
    src = quote(href, safe="/")
    return (f'<audio controls preload="none" src="{e(src)}" aria-label="{e(label)}"></audio>'
            f'<br><a href="{e(src)}" download>wav</a>')


def _result_html(item: Listening, k: int) -> str:
    r, m = item.row, item.manifest
    ref, clean, adv = COLUMNS.get(m["task"], COLUMNS["asr"])
    header = [("index", ""), ("attack", "t"), ("SNR dB", ""), (e(ref), "t"), (e(clean), "t"), (e(adv), "t"),
              ("clean audio", "t"), ("adversarial audio", "t")]
    rows = []
    for s in m["samples"]:
        base = f"{item.href}/"
        rows.append('<tr class="sample-row">' + _td(str(s["index"]), sort=s["index"]) + _td(s["attack"], cls="t")
                    + _td(db(s["snr_db"]) or DASH, sort="" if s["snr_db"] is None else repr(float(s["snr_db"])))
                    + _td(s["reference"], cls="t") + _td(s["clean"], cls="t") + _td(s["adversarial"], cls="t")
                    + _td(_audio(base + s["files"]["clean"], f"clean audio of example {s['index']}"), cls="t",
                          raw=True)
                    + _td(_audio(base + s["files"]["adv"], f"adversarial audio of example {s['index']}"), cls="t",
                          raw=True)
                    + "</tr>")
    return (f'<h2 id="r{k}">{e(r["model"])} · {e(r["defense"])}</h2>'
            f'<p class="sub">{len(m["samples"])} sample(s) · threat {e(m["threat"])} · '
            f'{e(m["sample_rate"])} Hz · <a href="{e(quote(item.href, safe="/"))}/{MANIFEST}">manifest</a></p>'
            + _table(f"samples-{k}", header, rows))


def audio_html(track: str, items: list[Listening], track_href: str) -> str:
    """A track's audio page: per result with samples, a table of them with both files playable."""
    body = [f'<nav><a href="index.html">← leaderboard</a> <a href="{e(track_href)}">← {e(track)}</a></nav>',
            f"<h1>{e(track)}: adversarial audio</h1>",
            '<p class="note">A few adversarial examples the worst case kept per result (<code>xrobust eval '
            "--samples K</code>), as 16-bit WAV: the clean example and the adversarial one, what the model "
            "made of each, and the achieved SNR 20·log10(‖x‖ / ‖x<sub>adv</sub> − x‖) in dB "
            "(higher = quieter perturbation). The manifest lists each file's sha256.</p>"]
    body += [_result_html(item, k) for k, item in enumerate(items)]
    return _page(f"{track} · adversarial audio · xrobust leaderboard", "\n".join(body))
