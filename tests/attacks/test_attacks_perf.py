"""`xrobust perf` writes the ratios and the machine description (a functional test, not a timing)."""

from __future__ import annotations

import json

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
    assert names[:3] == ["fwd+bwd", "ours PGD-3", "ours APGD-CE-3"]
    assert {"torchattacks PGD-3", "torchattacks APGD-3", "ART PGD-3", "ours PGD-3 bf16",
            "ours PGD-3 channels_last"} <= set(names)
    for key in ("limit_ratio", "speedup_vs_torchattacks_pgd", "speedup_vs_art_pgd", "speedup_vs_torchattacks_apgd",
                "bf16_speedup_vs_torchattacks_fp32", "channels_last_speedup"):
        assert doc["ratios"][key] > 0
    # a PGD-K costs at least about K gradient evaluations
    assert doc["ratios"]["limit_ratio"] > 0.5
    assert doc["machine"]["device"].startswith("cpu") and doc["batch_size"] == 32
    assert all(0 <= r["robust_accuracy"] <= 1 for r in doc["rows"] if r["robust_accuracy"] is not None)
    assert "limit_ratio" in capsys.readouterr().out


def test_perf_times_the_standard_cascade_against_autoattack(digits_ckpt, tmp_path):
    pytest.importorskip("pyautoattack")
    out = tmp_path / "perf.json"
    rc = main(["perf", "--track", "image-digits-linf-0.2", "--checkpoint", str(digits_ckpt), "--batch-size", "12",
               "--steps", "2", "--apgd-steps", "2", "--repeats", "1", "--standard", "--out", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())["ratios"]
    assert r["speedup_standard_vs_autoattack"] > 0
    # same strength: ours at most half a point above the official code (12 examples: no slack at all)
    assert r["standard_robust_accuracy_ours"] <= r["standard_robust_accuracy_autoattack"] + 1e-9


def test_perf_rejects_bad_steps(capsys):
    assert main(["perf", "--track", "image-digits-linf-0.2", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
