"""Confidence for WER tracks: bootstrap intervals over utterances, the paired bootstrap between defenses,
shared ranks from it, and validation of the per-utterance word errors a WER result file stores."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import problems
from bench.stats import UtteranceErrors, paired_wer_p, wer_bootstrap
from leaderboard.aggregate import collect, cross_domain
from leaderboard.markdown import track_markdown
from leaderboard.site import track_table_html

ROOT = Path(__file__).resolve().parents[2]
ASR = ROOT / "results/speech/synth-digits/snr-30db"
TRACK = "speech-asr-digits-snr-30db"

#: 200 utterances of 1 to 5 reference words; the base system makes 0, 1 or 2 word errors on each
REFS = [1 + i % 5 for i in range(200)]
BASE = [(0, 1, 0, 2, 1)[i % 5] for i in range(200)]


def _worse(errors: list[int], utterances: int, by: int) -> list[int]:
    """``errors`` with ``by`` more word errors on the first ``utterances`` utterances."""
    return [e + by if i < utterances else e for i, e in enumerate(errors)]


def wer_doc(defense: str, robust: list[int], refs: list[int] = REFS, clean: list[int] | None = None) -> dict:
    """A valid WER result document (the committed ERM file's ids and provenance) with these word errors."""
    doc = json.loads((ASR / "ctc-digits__erm.json").read_text())
    clean = [0] * len(robust) if clean is None else clean
    n, words = len(robust), sum(refs)
    cbits, rbits = ("".join("1" if e == 0 else "0" for e in errs) for errs in (clean, robust))
    cw, rw, racc = sum(clean) / words, sum(robust) / words, rbits.count("1") / n
    m = doc["metrics"]
    m.update(clean_accuracy=cbits.count("1") / n, robust_accuracy=racc, per_attack={k: racc for k in m["per_attack"]},
             clean_error_rate=cw, robust_error_rate=rw, per_attack_error_rate={k: rw for k in m["per_attack"]},
             clean_wer=cw, robust_wer=rw, per_attack_wer={k: rw for k in m["per_attack"]})
    m.pop("eps_sweep", None)
    for key in ("targeted", "clean_cer", "robust_cer", "per_attack_cer", "achieved_snr_db"):
        m.pop(key, None)  # their per-example lists are not made here
    for key in ("clean_cer", "robust_cer"):
        m["intervals"].pop(key, None)
    doc.update(defense=defense, n=n)
    doc["per_example"] = {"clean": cbits, "robust": rbits, "attacks": {k: rbits for k in m["per_attack"]},
                          "clean_word_errors": clean, "robust_word_errors": robust, "ref_words": list(refs)}
    return doc


def _write(root: Path, doc: dict) -> Path:
    path = root / "speech/synth-digits/snr-30db" / f"{doc['model']}__{doc['defense']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    assert problems(doc, path) == []
    return path


def test_wer_bootstrap_covers_the_estimate_and_narrows_with_more_utterances():
    wer = sum(BASE[:50]) / sum(REFS[:50])
    lo, hi = wer_bootstrap(BASE[:50], REFS[:50])
    assert lo < wer < hi
    lo4, hi4 = wer_bootstrap(BASE[:50] * 4, REFS[:50] * 4)  # the same utterances, four times as many
    assert lo4 < wer < hi4 and hi4 - lo4 < 0.7 * (hi - lo)  # about half as wide (1 / sqrt(4))
    assert wer_bootstrap(BASE[:50], REFS[:50]) == (lo, hi)  # seeded: a function of the data
    # every utterance has 1 error in 4 words: every resample's WER is 0.25, so is the interval
    assert wer_bootstrap([1] * 30, [4] * 30) == (0.25, 0.25)
    assert all(math.isnan(v) for v in wer_bootstrap([], []))


def test_paired_bootstrap_known_answers():
    base = UtteranceErrors(tuple(BASE), tuple(REFS))
    near = UtteranceErrors(tuple(_worse(BASE, 2, 1)), tuple(REFS))   # 2 utterances 1 word error worse
    far = UtteranceErrors(tuple(_worse(BASE, 40, 2)), tuple(REFS))   # 40 utterances 2 word errors worse
    p_near = paired_wer_p(base, near)
    # the difference vanishes in a resample that draws neither utterance: (198/200)^200 of them; twice that
    assert p_near == pytest.approx(2 * (198 / 200) ** 200, abs=0.02) and p_near > 0.05
    assert paired_wer_p(base, far) < 0.01
    assert paired_wer_p(near, base) == p_near and paired_wer_p(base, base) == 1.0
    assert paired_wer_p(base, UtteranceErrors(tuple(BASE), tuple(r + 1 for r in REFS))) is None  # not paired


def test_leaderboard_ranks_wer_defenses_by_the_paired_bootstrap(tmp_path):
    root = tmp_path / "results"
    docs = {"pgd-at": wer_doc("pgd-at", BASE), "trades": wer_doc("trades", _worse(BASE, 2, 1)),
            "erm": wer_doc("erm", _worse(BASE, 40, 2))}
    for d in docs.values():
        _write(root, d)
    df = collect(root).frame.set_index("defense")
    assert df.loc["pgd-at", "rank"] == 1
    assert df.loc["trades", "rank"] == 1 and df.loc["trades", "tie_p"] > 0.05  # within noise: shared rank
    assert df.loc["erm", "rank"] == 3 and df.loc["erm", "tie_p"] < 0.01       # tested against the leader
    lo, hi = df.loc["pgd-at", ["robust_lo", "robust_hi"]]
    assert (lo, hi) == pytest.approx(wer_bootstrap(BASE, REFS)) and lo < df.loc["pgd-at", "robust"] < hi
    text = track_markdown(collect(root).frame, TRACK)
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in text
    rows = {d: next(line for line in text.splitlines() if f"| {d} |" in line) for d in docs}
    assert "(=)" in rows["trades"] and "(=)" not in rows["erm"] and "–" not in text.split("\n\n")[0]
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in track_table_html(collect(root).frame)
    cd = cross_domain(collect(root).frame).set_index("defense")
    assert cd.loc["trades", "mean_rank"] == 1.0 and cd.loc["erm", "mean_rank"] == 3.0


def test_result_document_stores_the_worst_case_per_utterance():
    """The robust word errors stored are the per-utterance worst case over the suite (what the metrics count),
    not one attack's; with them come the bootstrap intervals of clean and robust WER."""
    import torch

    from bench.evaluate import EvalReport
    from bench.pipeline import result_document
    from bench.tracks import get_track

    track = get_track(TRACK)
    clean = torch.tensor([0.0, 1.0, 0.0, 2.0])
    attacks = {"apgd-ctc": torch.tensor([3.0, 1.0, 0.0, 4.0]), "pgd-20": torch.tensor([1.0, 2.0, 1.0, 2.0])}
    worst = torch.maximum(*attacks.values())
    units = torch.tensor([5.0, 2.0, 1.0, 4.0])
    report = EvalReport(track.threat, tuple(track.attack_specs), clean, attacks, worst, units, False, 1.0)
    rate = lambda e: float(e.double().sum() / units.double().sum())  # noqa: E731
    doc = result_document(track, report, model="ctc-digits", defense="erm", seed=0, ckpt_config={},
                          checkpoint_sha256=None, eval_seconds=1.0, device="cpu",
                          extra_metrics={"clean_wer": rate(clean), "robust_wer": rate(worst),
                                         "per_attack_wer": {k: rate(v) for k, v in attacks.items()}})
    assert problems(doc) == []
    pe = doc["per_example"]
    assert pe["robust_word_errors"] == [3, 2, 1, 4] and pe["clean_word_errors"] == [0, 1, 0, 2]
    assert pe["ref_words"] == [5, 2, 1, 4]
    lo, hi = doc["metrics"]["intervals"]["robust_wer"]
    assert lo < 10 / 12 < hi and (lo, hi) == wer_bootstrap([3, 2, 1, 4], [5, 2, 1, 4])


def test_old_wer_files_without_word_errors_show_a_dash(tmp_path):
    """Files written before the per-utterance lists were stored (the committed ASR files as they were until
    they were re-evaluated: no lists, no intervals): no interval, no test."""
    root = tmp_path / "results"
    folder = root / "speech/synth-digits/snr-30db"
    folder.mkdir(parents=True)
    for f in (ASR / "ctc-digits__erm.json", ASR / "ctc-digits__pgd-at.json"):
        doc = json.loads(f.read_text())
        for key in ("clean_word_errors", "robust_word_errors", "ref_words"):
            doc["per_example"].pop(key, None)
        doc["metrics"].pop("intervals", None)
        (folder / f.name).write_text(json.dumps(doc))
    df = collect(root).frame
    assert len(df) == 2 and df["robust_lo"].isna().all() and df["tie_p"].isna().all()
    assert list(df["rank"]) == [1, 2]  # different numbers, no test: ranked by the numbers
    table = track_markdown(df, TRACK).split("\n\n")[0]
    for line in table.splitlines()[2:]:
        assert line.split(" | ")[5:7] == ["–", "–"]  # robust 95% CI, p vs leader
    # beside a new file: the old one still has no interval, and no test can run against it
    _write(root, wer_doc("trades", BASE, refs=REFS))
    df = collect(root).frame
    assert len(df) == 3 and df["robust_lo"].notna().sum() == 1
    assert track_markdown(df, TRACK).count("–") >= 3


def test_validate_rejects_doctored_word_errors(tmp_path):
    doc = wer_doc("pgd-at", BASE, clean=[min(e, 1) for e in BASE])
    assert problems(doc) == []
    doctored = copy.deepcopy(doc)
    doctored["per_example"]["robust_word_errors"][7] += 1  # one more word error than the metrics count
    assert any(p.startswith("per_example/robust_word_errors: ") and "does not match metrics/robust_error_rate" in p
               for p in problems(doctored))
    path = _write(tmp_path / "ok", doc)
    assert main(["validate", str(path)]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doctored))
    assert main(["validate", "--no-path-check", str(bad)]) == 2


@pytest.mark.parametrize("doctor, message", [
    (lambda pe: pe["clean_word_errors"].pop(), "per_example/clean_word_errors: 199 utterances for n=200"),
    (lambda pe: pe.pop("ref_words"), "per_example: 'ref_words' is a dependency of 'clean_word_errors'"),
    (lambda pe: pe["ref_words"].__setitem__(0, -1), "per_example/ref_words/0: -1 is less than the minimum of 0"),
    (lambda pe: pe["clean_word_errors"].__setitem__(3, 2.5), "per_example/clean_word_errors/3: 2.5 is not of type"),
    # as many errors in all, but utterance 1 has fewer under attack than clean
    (lambda pe: (pe["clean_word_errors"].__setitem__(1, 2), pe["clean_word_errors"].__setitem__(3, 0)),
     "per_example/robust_word_errors: utterance 1 has 1 word errors under attack, fewer than its 2 clean ones"),
    # the same error totals, but utterance 0 is marked exactly right with an error
    (lambda pe: (pe["robust_word_errors"].__setitem__(0, 1), pe["robust_word_errors"].__setitem__(1, 0)),
     "per_example/robust_word_errors: utterance 0 has 1 word errors but per_example/robust marks it right"),
])
def test_validate_checks_each_word_error_rule(doctor, message):
    doc = wer_doc("pgd-at", BASE, clean=[min(e, 1) for e in BASE])
    doctor(doc["per_example"])
    assert any(p.startswith(message) for p in problems(doc)), problems(doc)


def test_committed_asr_results_have_intervals_and_a_paired_test(tmp_path):
    root = tmp_path / "results"
    folder = root / "speech/synth-digits/snr-30db"
    folder.mkdir(parents=True)
    for f in ASR.glob("*.json"):
        (folder / f.name).write_text(f.read_text())
    df = collect(root).frame
    committed = len(list(ASR.glob("*.json")))
    assert committed >= 3  # ERM, PGD-AT and the recipes that keep the clean WER usable
    assert len(df) == committed and df["robust_lo"].notna().all() and (df["robust_lo"] <= df["robust"]).all()
    assert df["tie_p"].notna().sum() == committed - 1  # every row after the first is tested against a leader
