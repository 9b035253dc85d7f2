"""What a speech-robustness researcher reads on an ASR board: CER, targeted success, achieved SNR (shown, "—"
when a file does not report them, escaped), and the listenable evidence samples on the site's audio pages."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.results import problems, result_files
from leaderboard.aggregate import collect
from leaderboard.build import build
from leaderboard.markdown import track_markdown
from leaderboard.site import track_table_html

ROOT = Path(__file__).resolve().parents[2]
ERM = ROOT / "results/speech/synth-digits/snr-30db/ctc-digits__erm.json"
TRACK = "speech-asr-digits-snr-30db"
XSS = "<script>alert(1)</script>"


def asr_doc(defense: str, *, extra: bool = True, attack: str = "pgd-ctc-targeted", rule: str = "next digit string") -> dict:
    """The committed ERM file under another defense, with (``extra``) the ASR fields a newer file reports."""
    doc = json.loads(ERM.read_text())
    doc["defense"] = defense
    # the committed file's own fields go first: this fixture puts made-up numbers in their place
    for key in ("clean_cer", "robust_cer", "per_attack_cer", "achieved_snr_db", "targeted"):
        doc["metrics"].pop(key, None)
    for key in ("clean_cer", "robust_cer"):
        doc["metrics"]["intervals"].pop(key, None)
    for key in ("clean_char_errors", "robust_char_errors", "ref_chars", "achieved_snr_db", "targeted"):
        doc["per_example"].pop(key, None)
    if extra:
        m = doc["metrics"]
        m.update(clean_cer=0.0412, robust_cer=0.9876, per_attack_cer={"apgd-ctc": 0.9876, "pgd-20": 0.71},
                 achieved_snr_db={"mean": 33.25, "median": 32.5, "n": 187},
                 targeted={"attack": attack, "params": {"steps": 50}, "rule": rule, "n": 200,
                           "success_rate": 0.315, "target_wer": 0.455, "target_cer": 0.2351,
                           "achieved_snr_db": {"mean": 31.0, "median": 31.0, "n": 200}})
        m["intervals"].update(clean_cer=[0.031, 0.052], robust_cer=[0.95, 1.02])
        # the per-example block validation checks the targeted metrics against: 63 hits of 200 two-word
        # targets, 182 word errors against them
        errors = [0] * 63 + [1] * 92 + [2] * 45
        doc["per_example"]["targeted"] = {"targets": ["one two"] * 200, "success": "1" * 63 + "0" * 137,
                                          "target_errors": errors, "target_units": [2] * 200,
                                          "achieved": [31.0] * 200}
    return doc


def place(root: Path, doc: dict) -> Path:
    path = root / "speech/synth-digits/snr-30db" / f"{doc['model']}__{doc['defense']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    assert problems(doc, path) == []
    return path


def write_samples_by_hand(result: Path, texts: list[tuple[str, str, str]]) -> Path:
    """A samples folder beside ``result`` as ``xrobust eval --samples`` writes it (bench.samples), made here
    from short tones so the board can be tested without a model."""
    import soundfile as sf

    doc = json.loads(result.read_text())
    folder = result.with_suffix(".samples")
    samples = []
    for k, (ref, clean, adv) in enumerate(texts):
        index = 100 + k
        (folder / str(index)).mkdir(parents=True)
        t = np.arange(1600) / 16000
        x = 0.3 * np.sin(2 * np.pi * (300 + 100 * k) * t)
        files, shas = {}, {}
        for role, wave in (("clean", x), ("adv", x + 0.01 * np.sin(2 * np.pi * 3000 * t))):
            rel = f"{index}/{role}.wav"
            sf.write(str(folder / rel), wave, 16000, subtype="PCM_16")
            files[role], shas[role] = rel, hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        samples.append({"index": index, "position": k, "attack": "apgd-ctc", "snr_db": 29.5 + k,
                        "reference": ref, "clean": clean, "adversarial": adv, "files": files, "sha256": shas})
    manifest = {"format": "xrobust-samples/1", "result": result.name, "track": doc["track"], "domain": "speech",
                "model": doc["model"], "defense": doc["defense"], "threat": doc["threat"]["id"],
                "checkpoint_sha256": doc["provenance"]["checkpoint_sha256"],
                "result_timestamp": doc["provenance"]["timestamp"], "task": "asr", "sample_rate": 16000,
                "samples": samples}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _row(text: str, defense: str) -> list[str]:
    line = next(line for line in text.splitlines() if f"| {defense} |" in line)
    return [c.strip() for c in line.strip("|").split("|")]


def test_asr_board_shows_cer_targeted_success_and_snr(tmp_path):
    root = tmp_path / "results"
    place(root, asr_doc("pgd-at"))
    place(root, asr_doc("erm", extra=False))  # a file written before the fields existed
    df = collect(root).frame
    text = track_markdown(df, TRACK)
    header = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    cols = {h: i for i, h in enumerate(header)}
    for h in ("clean WER %", "robust WER %", "clean CER %", "robust CER %", "targeted success %", "target WER %",
              "SNR dB"):
        assert h in cols, header
    new = _row(text, "pgd-at")
    assert [new[cols[h]] for h in ("clean CER %", "robust CER %", "targeted success %", "target WER %", "SNR dB")] \
        == ["4.1", "98.8", "31.5", "45.5", "33.2"]
    old = _row(text, "erm")
    assert [old[cols[h]] for h in ("clean CER %", "robust CER %", "targeted success %", "target WER %", "SNR dB")] \
        == ["—"] * 5
    assert old[cols["robust WER %"]] == "167.7"  # the WER columns are as they were
    html = track_table_html(df[df["track"] == TRACK])
    assert ">4.1</td>" in html and 'title="95% CI [3.1, 5.2]"' in html  # CER interval on hover
    assert "target WER 45.5%" in html and "target CER 23.5%" in html and "targets: next digit string" in html
    assert 'title="median 32.5 dB over 187 changed utterances"' in html
    assert 'title="CER 71.0%"' in html  # per-attack CER on the per-attack WER cell
    assert html.count(">—</td>") == 5
    csv = df.to_csv(index=False)
    assert "targeted_success" in csv.splitlines()[0] and "0.315" in csv


def test_accuracy_tracks_get_no_asr_columns(tmp_path):
    src = ROOT / "results/speech/synth-commands/snr-30db/melcnn__erm.json"  # keyword spotting: accuracy
    dest = tmp_path / "results" / src.relative_to(ROOT / "results")
    dest.parent.mkdir(parents=True)
    dest.write_text(src.read_text())
    df = collect(tmp_path / "results").frame
    text = track_markdown(df, "speech-kws-snr-30db")
    assert len(df) == 1 and "CER" not in text and "SNR" not in text and "CER" not in track_table_html(df)


def test_strings_from_asr_fields_are_escaped(tmp_path):
    root = tmp_path / "results"
    place(root, asr_doc("pgd-at", rule=XSS))  # the attack is an id (schema); the rule is free text
    html = track_table_html(collect(root).frame)
    assert XSS not in html and "targets: &lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_results_samples_folders_are_not_result_files(tmp_path):
    root = tmp_path / "results"
    path = place(root, asr_doc("pgd-at"))
    write_samples_by_hand(path, [("one two", "one two", "nine")])
    assert result_files(root) == [path]
    assert collect(root).problems == ()


@pytest.fixture
def board_with_samples(tmp_path):
    root = tmp_path / "results"
    path = place(root, asr_doc("pgd-at"))
    place(root, asr_doc("erm", extra=False))
    folder = write_samples_by_hand(path, [("one two", "one two", f"nine {XSS}"), ("three", "three", "")])
    built = build(root, tmp_path / "site", markdown=tmp_path / "L.md")
    return root, folder, built


def test_site_copies_samples_and_renders_an_audio_page(board_with_samples):
    root, folder, built = board_with_samples
    assert built.collection.problems == ()
    page = built.site / f"audio-{TRACK}.html"
    assert page in built.pages
    html = page.read_text()
    dest = "samples/published/speech/synth-digits/snr-30db/ctc-digits__pgd-at.samples"
    for index in (100, 101):
        for role in ("clean", "adv"):
            assert f'<audio controls preload="none" src="{dest}/{index}/{role}.wav"' in html
            assert (built.site / dest / f"{index}/{role}.wav").read_bytes() == \
                (folder / f"{index}/{role}.wav").read_bytes()
    assert html.count("<audio ") == 4 and "media-src 'self'" in html
    assert XSS not in html and "nine &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert ">29.5</td>" in html and "reference" in html
    track = (built.site / f"track-{TRACK}.html").read_text()
    assert f'href="audio-{TRACK}.html"' in track
    assert "ctc-digits\\_\\_pgd-at.samples" in built.markdown.read_text()  # Markdown-escaped
    # the samples folder is gone: so are its copy and the audio page
    import shutil

    shutil.rmtree(folder)
    again = build(root, built.site, markdown=built.markdown)
    assert not (again.site / f"audio-{TRACK}.html").exists() and not (again.site / "samples").exists()
    assert "audio-" not in (again.site / f"track-{TRACK}.html").read_text()


def test_tampered_or_missing_samples_are_left_out_and_reported(board_with_samples, capsys):
    root, folder, _ = board_with_samples
    wav = folder / "100/adv.wav"
    data = bytearray(wav.read_bytes())
    data[-2] ^= 0x40  # one sample of the adversarial audio changed after the manifest was written
    wav.write_bytes(bytes(data))
    (folder / "101/clean.wav").unlink()
    built = build(root, root.parent / "site2", markdown=root.parent / "L2.md")
    lines = built.collection.problems
    shown = "speech/synth-digits/snr-30db/ctc-digits__pgd-at.samples"
    assert any(p.startswith(f"{shown}: 100/adv.wav: sha256 ") and "does not match the manifest's" in p for p in lines)
    assert f"{shown}: 101/clean.wav: missing" in lines
    assert not (built.site / f"audio-{TRACK}.html").exists()
    assert len(built.collection.frame) == 2  # the result itself is still shown
    assert main(["validate", str(root)]) == 2
    err = capsys.readouterr().err
    assert "100/adv.wav: sha256" in err and "101/clean.wav: missing" in err


def test_validate_checks_samples_folders(board_with_samples, capsys):
    root, folder, _ = board_with_samples
    assert main(["validate", str(root)]) == 0
    assert "1 samples folder(s) valid" in capsys.readouterr().out
    manifest = json.loads((folder / "manifest.json").read_text())
    stale = json.loads(json.dumps(manifest))
    stale["result_timestamp"] = "2020-01-01T00:00:00Z"  # samples of an earlier evaluation of the same result
    (folder / "manifest.json").write_text(json.dumps(stale))
    assert main(["validate", str(root)]) == 2
    assert "manifest.json: result_timestamp is '2020-01-01T00:00:00Z'" in capsys.readouterr().err
    many = json.loads(json.dumps(manifest))
    many["samples"] = many["samples"] * 6  # 12 > 10
    (folder / "manifest.json").write_text(json.dumps(many))
    assert main(["validate", str(folder)]) == 2
    assert "manifest.json: samples: " in capsys.readouterr().err
    escape = json.loads(json.dumps(manifest))
    escape["samples"][0]["files"]["adv"] = "../../../../etc/passwd"
    (folder / "manifest.json").write_text(json.dumps(escape))
    assert main(["validate", str(folder)]) == 2
    assert "does not match" in capsys.readouterr().err
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "notes.txt").write_text("x")
    assert main(["validate", str(folder)]) == 2
    assert "notes.txt: not listed in manifest.json" in capsys.readouterr().err
    (folder / "notes.txt").unlink()
    result = root / "speech/synth-digits/snr-30db/ctc-digits__pgd-at.json"
    result.rename(result.with_suffix(".bak"))  # a samples folder with no result beside it
    assert main(["validate", str(root)]) == 2
    assert "no result file ctc-digits__pgd-at.json beside it" in capsys.readouterr().err


def test_tracks_of_files_without_the_fields_keep_their_table(tmp_path):
    """Files written before the new fields (the committed ASR files until they were re-evaluated) keep their
    table as it was (no column of dashes); one file with the fields brings the columns, dashes for the others."""
    root = tmp_path / "results"
    for defense in ("erm", "pgd-at"):
        place(root, asr_doc(defense, extra=False))
    df = collect(root).frame
    assert df["clean_cer"].isna().all() and df["targeted_success"].isna().all()
    assert all(math.isnan(v) for v in df["snr_db_mean"])
    assert "CER" not in track_markdown(df, TRACK) and "CER" not in track_table_html(df)
    place(root, asr_doc("trades"))
    text = track_markdown(collect(root).frame, TRACK)
    assert text.count("| — | — | — | — | — |") == len(df) and "| 4.1 | 98.8 | 31.5 | 45.5 | 33.2 |" in text


@pytest.mark.browser
def test_audio_page_plays_in_chromium(browser, board_with_samples, serve):
    """The audio page in headless Chromium: every <audio> loads its WAV (the CSP allows same-site media),
    no console error or outside request, and the track page links to it."""
    _, _, built = board_with_samples
    base = serve(built.site)
    browser.goto(base + f"track-{TRACK}.html")
    browser.click("a.audio-link")
    browser.wait_event("Page.loadEventFired")
    assert browser.js("location.pathname") == f"/audio-{TRACK}.html"
    durations = browser.js("""Promise.all(Array.from(document.querySelectorAll('audio')).map(a => new Promise(ok => {
        const done = () => ok([a.getAttribute('src'), a.duration, a.error ? a.error.code : 0]);
        a.addEventListener('loadedmetadata', done); a.addEventListener('error', done);
        setTimeout(done, 10000); a.preload = 'metadata'; a.load(); })))""")
    assert len(durations) == 4
    for src, duration, error in durations:
        assert error == 0 and duration == pytest.approx(0.1, abs=0.01), (src, duration, error)
    texts = browser.js("Array.from(document.querySelectorAll('tr.sample-row')).map(r => r.cells[5].textContent)")
    assert texts == [f"nine {XSS}", ""]  # shown as text, not run
    # a media element stops its download once it has what preload asks for: Chromium logs that as ERR_ABORTED
    assert [m for m in browser.errors() if m.strip() != "network: net::ERR_ABORTED"] == []
    # nothing from outside (Chromium's own media controls draw data: icons)
    assert [u for u in browser.requests() if not (u.startswith(base) or u.startswith("data:"))] == []
