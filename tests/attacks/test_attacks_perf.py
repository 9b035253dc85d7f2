"""`xrobust perf` writes the ratios and the machine description (a functional test, not a timing)."""

from __future__ import annotations

import json
import re
import statistics

import pytest

from bench.cli import main


def test_perf_cli_writes_ratios(digits_ckpt, tmp_path, capsys):
    pytest.importorskip("torchattacks")
    pytest.importorskip("art")
    out = tmp_path / "perf.json"
    rc = main(["perf", "--track", "image-digits-linf-0.2", "--checkpoint", str(digits_ckpt), "--batch-size", "32",
               "--steps", "3", "--apgd-steps", "3", "--repeats", "1", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    names = [r["name"] for r in doc["rows"]]
    # every measurement present, ours first (the ratios pick rows by name prefix, so the order matters)
    assert names == ["fwd+bwd", "ours PGD-3", "ours APGD-CE-3", "fwd+bwd bf16", "ours PGD-3 bf16",
                     "ours PGD-3 channels_last", "torchattacks PGD-3", "torchattacks APGD-3", "ART PGD-3"], names
    assert doc["notes"] == [] and doc["batch_size"] == 32 and doc["steps"] == 3 and doc["repeats"] == 1
    rows = {r["name"]: r for r in doc["rows"]}
    for r in doc["rows"]:
        assert len(r["all_seconds"]) == 1 and r["seconds"] == statistics.median(r["all_seconds"]) > 0
        # an accuracy for every attack row, none for the bare gradient timings
        assert (r["robust_accuracy"] is None) == r["name"].startswith("fwd+bwd"), r
    sec = {k: r["seconds"] for k, r in rows.items()}
    # each ratio is the one its name says, from the timings in the same file
    expected = {
        "limit_ratio": sec["ours PGD-3"] / (3 * sec["fwd+bwd"]),
        "speedup_vs_torchattacks_pgd": sec["torchattacks PGD-3"] / sec["ours PGD-3"],
        "speedup_vs_art_pgd": sec["ART PGD-3"] / sec["ours PGD-3"],
        "speedup_vs_torchattacks_apgd": sec["torchattacks APGD-3"] / sec["ours APGD-CE-3"],
        "limit_ratio_bf16": sec["ours PGD-3 bf16"] / (3 * sec["fwd+bwd bf16"]),
        "bf16_speedup_vs_ours_fp32": sec["ours PGD-3"] / sec["ours PGD-3 bf16"],
        "bf16_speedup_vs_torchattacks_fp32": sec["torchattacks PGD-3"] / sec["ours PGD-3 bf16"],
        "channels_last_speedup": sec["ours PGD-3"] / sec["ours PGD-3 channels_last"],
    }
    assert set(doc["ratios"]) == set(expected)
    for key, value in expected.items():
        assert doc["ratios"][key] == pytest.approx(value, rel=1e-9), key
    # a PGD-K costs at least about K gradient evaluations
    assert doc["ratios"]["limit_ratio"] > 0.5
    assert doc["machine"]["device"].startswith("cpu")
    # same attack, same budget: every PGD/APGD variant lands in the same range on 32 examples
    accs = [r["robust_accuracy"] for r in doc["rows"] if r["robust_accuracy"] is not None]
    assert all(0 <= a <= 1 and (a * 32) == round(a * 32) for a in accs)
    printed = capsys.readouterr().out
    for key, value in doc["ratios"].items():  # the table shows the file's numbers
        assert f"{key:34s} {value:9.3f}" in printed


def test_perf_times_the_standard_cascade_against_autoattack(digits_ckpt, tmp_path, capsys):
    pytest.importorskip("pyautoattack")
    out = tmp_path / "perf.json"
    rc = main(["perf", "--track", "image-digits-linf-0.2", "--checkpoint", str(digits_ckpt), "--batch-size", "12",
               "--steps", "2", "--apgd-steps", "2", "--repeats", "1", "--standard", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())["ratios"]
    assert {"speedup_standard_vs_autoattack", "standard_robust_accuracy_ours",
            "standard_robust_accuracy_autoattack"} <= set(r)
    # the ratio is the logged autoattack seconds over ours (logged to 0.1 s: the bounds of that rounding)
    log = capsys.readouterr().err
    secs, accs = {}, {}
    for who in ("ours", "autoattack"):
        m = re.search(rf"standard suite, {who}: ([0-9.]+) s, robust accuracy ([0-9.]+)", log)
        assert m, log
        secs[who], accs[who] = float(m.group(1)), float(m.group(2))
        assert r[f"standard_robust_accuracy_{who}"] == pytest.approx(accs[who], abs=5e-4)
        assert round(r[f"standard_robust_accuracy_{who}"] * 12, 6).is_integer()  # a share of 12 examples
    lo = max(secs["autoattack"] - 0.05, 0) / (secs["ours"] + 0.05)
    hi = (secs["autoattack"] + 0.05) / max(secs["ours"] - 0.05, 1e-9)
    assert lo <= r["speedup_standard_vs_autoattack"] <= hi, (secs, r)
    # same strength: ours at most half a point above the official code (12 examples: no slack at all)
    assert r["standard_robust_accuracy_ours"] <= r["standard_robust_accuracy_autoattack"] + 1e-9


def test_perf_rejects_bad_steps(capsys):
    assert main(["perf", "--track", "image-digits-linf-0.2", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
