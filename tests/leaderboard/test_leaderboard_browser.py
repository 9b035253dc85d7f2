"""The built site in a real headless Chromium: tables, sorting by a click, images, no console errors, XSS."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from leaderboard.build import build
from leaderboard.site import track_html

pytestmark = pytest.mark.browser

TRACK = "image-digits-linf-0.2"


@pytest.fixture(scope="module")
def site(digits_results, tmp_path_factory):
    return build(digits_results, tmp_path_factory.mktemp("site"), markdown=tmp_path_factory.mktemp("md") / "L.md")


def _only_local(requests: list[str], base: str) -> list[str]:
    return [u for u in requests if not (u.startswith(base) or u.startswith("data:"))]


def test_index_renders_cross_domain_table_and_plots(browser, site, serve):
    base = serve(site.site)
    browser.goto(base + "index.html")
    df = site.collection.frame
    rows = browser.js("Array.from(document.querySelectorAll('#cross-domain tbody tr'))"
                      ".map(r => Array.from(r.cells).map(c => c.textContent.trim()))")
    assert [r[0] for r in rows] == ["pgd-at", "erm"] == list(df.sort_values("rank")["defense"])
    pgd = df[df["defense"] == "pgd-at"].iloc[0]
    assert rows[0][1] == f"{100 * pgd['robust']:.1f} ({100 * pgd['clean']:.1f})"
    assert browser.js("document.querySelectorAll('#tracks tbody tr').length") == 1
    widths = browser.js("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert {w[0] for w in widths} == {"plots/clean-vs-robust.png", "plots/cost-vs-robust.png"}
    assert all(complete and width > 0 for _, complete, width in widths), widths
    assert browser.errors() == []
    assert _only_local(browser.requests(), base) == []
    shots = Path(os.environ.get("XROBUST_SCREENSHOTS") or tempfile.mkdtemp(prefix="xrobust-shot-"))
    shots.mkdir(parents=True, exist_ok=True)
    png = browser.screenshot(shots / "index.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    print(f"screenshot of the index: {png}")


def test_track_page_sorts_on_header_click(browser, site, serve):
    base = serve(site.site)
    browser.goto(base + "index.html")
    browser.click(f'#tracks a[href="track-{TRACK}.html"]')
    browser.wait_event("Page.loadEventFired")
    assert browser.js("location.pathname") == f"/track-{TRACK}.html"
    headers = browser.js("Array.from(document.querySelectorAll('#results thead th')).map(h => h.textContent)")
    robust_col = headers.index("robust %")
    read = ("Array.from(document.querySelectorAll('#results tbody tr'))"
            f".map(r => [r.cells[2].textContent, Number(r.cells[{robust_col}].dataset.sort)])")
    assert [d for d, _ in browser.js(read)] == ["pgd-at", "erm"]  # rank order
    browser.click(f"#results thead th:nth-child({robust_col + 1})")
    asc = browser.js(read)
    assert [v for _, v in asc] == sorted(v for _, v in asc) and asc[0][0] == "erm"
    assert browser.js(f"document.querySelectorAll('#results thead th')[{robust_col}].getAttribute('aria-sort')") \
        == "ascending"
    browser.click(f"#results thead th:nth-child({robust_col + 1})")
    desc = browser.js(read)
    assert [v for _, v in desc] == sorted((v for _, v in desc), reverse=True) and desc[0][0] == "pgd-at"
    # provenance per row: commit, seed, checkpoint hash, device
    prov = browser.js("document.querySelector('#results tbody tr .prov').textContent")
    ck = site.collection.frame.iloc[0]["checkpoint_sha256"]
    assert ck[:12] in prov and "seed 0" in prov and "cpu" in prov
    img = browser.js("Array.from(document.images).map(i => i.naturalWidth)")
    assert len(img) == 1 and img[0] > 0
    assert browser.errors() == []


def test_hostile_strings_render_as_text(browser, serve, xss_frame, tmp_path):
    df = xss_frame
    (tmp_path / "xss.html").write_text(track_html(df, TRACK, None))
    base = serve(tmp_path)
    browser.goto(base + "xss.html")
    assert browser.js("document.querySelector('#results tbody tr').cells[1].textContent") == "<script>alert(1)</script>"
    assert browser.js("document.scripts.length") == 1
    assert browser.js("document.querySelectorAll('#results img, #results b').length") == 0
    # every badge's title (a dirty working tree adds a `dirty` badge before the flag's)
    titles = browser.js("Array.from(document.querySelectorAll('.badge')).map(b => b.title)")
    assert any(t.startswith("</span><script>alert(3)</script>") for t in titles), titles
    assert not any(ev.get("method") == "Page.javascriptDialogOpening" for ev in browser.events)
    assert browser.errors() == []


def test_corruption_boards_render_from_the_committed_results(browser, serve, tmp_path):
    """The published results/ hold corruption results on three domains: the index shows the cross-domain
    corruption table and one board per corruption track, with the numbers of the files."""
    from leaderboard.corruption import collect_corruptions

    results = Path(__file__).resolve().parents[2] / "results"
    cdf, bad = collect_corruptions(results)
    assert bad == [] and set(cdf["domain"]) == {"image", "speech", "text"}
    built = build(results, tmp_path / "site", markdown=tmp_path / "L.md")
    base = serve(built.site)
    browser.goto(base + "index.html")
    rows = browser.js("Array.from(document.querySelectorAll('#corruption-cross-domain tbody tr'))"
                      ".map(r => Array.from(r.cells).map(c => c.textContent.trim()))")
    assert sorted(r[0] for r in rows) == sorted(set(cdf["defense"]))
    n_boards = browser.js("document.querySelectorAll('table[id^=\"corruption-\"]:not(#corruption-cross-domain)').length")
    assert n_boards == cdf["track"].nunique()
    first = browser.js("Array.from(document.querySelectorAll('#corruption-0 tbody tr')[0].cells).map(c => c.textContent)")
    top = cdf[cdf["track"] == cdf["track"].iloc[0]].iloc[0]
    assert first[2] == top["defense"] and first[4] == f"{100 * top['corruption']:.1f}"
    titles = browser.js("Array.from(document.querySelectorAll('#corruption-0 tbody tr')[0].cells).map(c => c.title)")
    assert titles[3].startswith("95% CI") and titles[8:] and all(t.startswith("95% CI") for t in titles[8:])
    cross = browser.js("Array.from(document.querySelectorAll('#corruption-cross-domain tbody td[data-sort]'))"
                       ".filter(c => c.textContent.trim() !== '–').map(c => c.title)")
    assert cross and all("95% CI" in t for t in cross if t) and any("95% CI" in t for t in cross)
    assert browser.errors() == []
