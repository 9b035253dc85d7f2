"""Leaderboard plots (matplotlib, Agg backend, PNG): robust vs eps, clean vs robust, cost vs robust.

Labels come from result files; :func:`label` neutralizes matplotlib's
mathtext (``$...$``) so an odd model name cannot break or restyle a plot.
PNGs are written without a software/version stamp, so the same frame gives
the same bytes on the same matplotlib.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

_META = {"Software": None}


def label(text) -> str:
    return str(text).replace("\\", "\\\\").replace("$", r"\$")


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata=_META)
    plt.close(fig)
    return path


def eps_curve(df: pd.DataFrame, track: str, path: Path) -> Path | None:
    """Robust accuracy vs eps for every result of ``track`` that has an eps sweep; None when none has."""
    sub = df[df["track"] == track]
    curves = [(r["model"], r["defense"], json.loads(r["eps_sweep"])) for r in sub.to_dict("records")]
    what = "WER" if (sub["sweep_metric"] == "wer").all() else "robust accuracy"
    curves = [c for c in curves if c[2]]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, defense, pts in curves:
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=label(f"{defense} ({model})"))
    ax.axvline(float(sub["eps"].iloc[0]), color="grey", linestyle=":", label="track eps")
    ax.set_xlabel("eps" + (" (dB SNR; larger = weaker attack)" if str(sub["threat"].iloc[0]).endswith("db") else ""))
    ax.set_ylabel("WER under attack (%)" if what == "WER" else "robust accuracy (%)")
    if what != "WER":  # WER may exceed 100 %
        ax.set_ylim(-2, 102)
    ax.set_title(label(f"{track}: {what} vs eps"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _by_defense(ax, df: pd.DataFrame, x: str, y: str) -> None:
    markers = "osD^v<>P*Xh"
    for i, (defense, sub) in enumerate(sorted(df.groupby("defense"), key=lambda kv: kv[0])):
        ax.scatter(sub[x] * (100 if x in ("clean", "robust") else 1), 100 * sub[y], marker=markers[i % len(markers)],
                   s=50, label=label(defense))


def clean_vs_robust(df: pd.DataFrame, path: Path) -> Path | None:
    """Every accuracy-metric result: clean (x) vs robust (y) accuracy, one marker per defense."""
    acc = df[df["higher_is_better"]]
    if acc.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    _by_defense(ax, acc, "clean", "robust")
    ax.plot([0, 100], [0, 100], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title("clean vs robust accuracy (all accuracy tracks)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def cost_vs_robust(df: pd.DataFrame, path: Path) -> Path | None:
    """Training seconds (log x) vs robust accuracy: what a defense's robustness costs."""
    acc = df[df["higher_is_better"] & (df["train_seconds"] > 0)]
    if acc.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    _by_defense(ax, acc, "train_seconds", "robust")
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale; device in the provenance)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_title("training cost vs robust accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def certified_curve(sub: pd.DataFrame, domain: str, path: Path) -> Path | None:
    """Certified accuracy vs radius (Cohen et al. 2019's plot), one line per certified result of a domain
    (rows of :func:`leaderboard.certified.collect_certified`); None when there is none. In dB SNR a larger
    value is a smaller radius, so that axis is reversed: the radius grows to the right on every plot."""
    if sub.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    units = sorted(set(sub["units"]))
    db = all(u.startswith("snr-") for u in units)
    for r in sub.to_dict("records"):
        pts = json.loads(r["curve"])
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o",
                label=label(f"{r['defense']} ({r['model']}), σ {r['sigma']:g}"))
        ax.axvline(float(r["headline_radius"]), color="grey", linestyle=":", linewidth=1)
    if db:
        ax.invert_xaxis()
    ax.set_xlabel("radius: " + ("dB SNR per utterance (larger radius to the right)" if db else
                                "L2" if all(u.startswith("l2-") for u in units) else ", ".join(units)))
    ax.set_ylabel("certified accuracy (%)" + (", keywords" if sub["keywords"].any() else ""))
    ax.set_ylim(-2, 102)
    ax.set_title(label(f"{domain}: certified accuracy vs radius (randomized smoothing)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
