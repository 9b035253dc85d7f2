"""Build everything from results/: Markdown leaderboard, CSV, static site with plots."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.checkpoint import atomic_write_bytes
from bench.samples import kind_of
from leaderboard import plots
from leaderboard.aggregate import Collection, collect, tracks, training_costs
from leaderboard.audio import audio_html, audio_page, copy_samples
from leaderboard.certified import certified_html, certified_markdown, certified_plots, collect_certified
from leaderboard.corruption import collect_corruptions, corruption_html, corruption_markdown, corruption_mean_ranks
from leaderboard.examples import examples_html, examples_page
from leaderboard.markdown import leaderboard_markdown
from leaderboard.site import index_html, track_html, track_page


@dataclass(frozen=True)
class Built:
    site: Path
    markdown: Path
    csv: Path
    pages: tuple[Path, ...]
    images: tuple[Path, ...]
    collection: Collection


def default_site(results: str | Path) -> Path:
    """``site/`` next to the results folder (``results/`` -> ``./site``)."""
    return Path(results).resolve().parent / "site"


def default_markdown(results: str | Path) -> Path:
    """The committed Markdown leaderboard: ``<results>/LEADERBOARD.md``."""
    return Path(results) / "LEADERBOARD.md"


def _write(path: Path, text: str) -> Path:
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def build(results: str | Path = "results", out: str | Path | None = None,
          markdown: str | Path | None = None, user: str | Path | None = None) -> Built:
    """Aggregate ``results`` and write the site under ``out`` and the Markdown leaderboard at ``markdown``.

    ``user``: a folder of the user's own results, shown beside the published ones and marked
    (see :func:`leaderboard.aggregate.collect`); the site and Markdown then default to that
    folder's side, so building them never touches the published ``results``.
    Files of earlier builds that this build does not produce (pages, plots and audio samples
    of tracks that are gone) are removed, so the site is a function of results/.
    Valid evidence samples beside result files (:mod:`bench.samples`) are copied under ``samples/``
    and listed on one audio page (:mod:`leaderboard.audio`) or text examples page (:mod:`leaderboard.examples`)
    per track, linked from the track's page.
    """
    col = collect(results, user)
    df = col.frame
    home = user if user is not None else results
    site = Path(out) if out is not None else default_site(home)
    site.mkdir(parents=True, exist_ok=True)
    for stale in list(site.glob("track-*.html")) + list(site.glob("audio-*.html")) + \
            list(site.glob("examples-*.html")) + \
            list((site / "plots").glob("*.png")):
        stale.unlink()
    if (site / "samples").is_dir():
        shutil.rmtree(site / "samples")
    cdf, cbad = collect_corruptions(results, user)
    sdf, sbad = collect_certified(results, user)
    if cbad or sbad:
        col = Collection(col.frame, col.problems + tuple(cbad) + tuple(sbad), col.files)
    ranks = corruption_mean_ranks(cdf)
    md_text = leaderboard_markdown(df, col.problems, training_costs(results), ranks) + \
        ("\n" + corruption_markdown(cdf) if not cdf.empty else "") + \
        ("\n" + certified_markdown(sdf) if not sdf.empty else "")
    md_path = _write(Path(markdown) if markdown is not None else default_markdown(home), md_text)
    _write(site / "LEADERBOARD.md", md_text)
    csv_path = _write(site / "leaderboard.csv", df.to_csv(index=False, lineterminator="\n"))
    images: list[Path] = []
    index_plots: dict[str, str] = {}
    pages: list[Path] = []
    if not df.empty:
        for alt, name, fn in (("clean vs robust accuracy", "clean-vs-robust.png", plots.clean_vs_robust),
                              ("training cost vs robust accuracy", "cost-vs-robust.png", plots.cost_vs_robust)):
            p = fn(df, site / "plots" / name)
            if p is not None:
                images.append(p)
                index_plots[alt] = f"plots/{name}"
        for _domain, track, _metric in tracks(df):
            name = f"eps-{track}.png"
            p = plots.eps_curve(df, track, site / "plots" / name)
            if p is not None:
                images.append(p)
            copied = copy_samples(df[df["track"] == track], results, site)
            heard = [c for c in copied if kind_of(c.manifest) == "audio"]
            read = [c for c in copied if kind_of(c.manifest) == "text"]
            if heard:
                pages.append(_write(site / audio_page(track), audio_html(track, heard, track_page(track))))
            if read:
                pages.append(_write(site / examples_page(track), examples_html(track, read, track_page(track))))
            pages.append(_write(site / track_page(track), track_html(df, track, f"plots/{name}" if p else None,
                                                                     audio_page(track) if heard else None,
                                                                     examples_page(track) if read else None)))
    certified_pngs = certified_plots(sdf, site / "plots")
    images.extend(certified_pngs.values())
    extra = corruption_html(cdf) + "\n" + certified_html(sdf, {d: f"plots/{p.name}" for d, p in certified_pngs.items()})
    pages.insert(0, _write(site / "index.html", index_html(df, index_plots, col.problems, col.files,
                                                       extra=extra.strip("\n"), corruption_ranks=ranks)))
    return Built(site, md_path, csv_path, tuple(pages), tuple(images), col)
