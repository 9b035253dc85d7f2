"""Where a number came from: versions, commit, device, hashes, time."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("xrobust")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _git(*args: str, cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit(cwd: str | Path | None = None) -> str | None:
    out = _git("rev-parse", "HEAD", cwd=cwd)
    return out.strip() if out is not None else None


#: paths whose changes do not change a number: the outputs themselves (result files, published
#: checkpoints, the built site) and prose
OUTPUT_PATHS = ("results/**", "zoo/**", "site/**", "runs/**", "**/*.md")


def git_dirty(cwd: str | Path | None = None) -> bool | None:
    """Whether the work tree has uncommitted changes (tracked or untracked, not ignored) that can
    change a number, i.e. outside :data:`OUTPUT_PATHS`; None outside a git checkout."""
    top = _git("rev-parse", "--show-toplevel", cwd=cwd)
    if top is None:
        return None
    out = _git("status", "--porcelain", "--", ".", *(f":(exclude,glob){p}" for p in OUTPUT_PATHS), cwd=top.strip())
    return None if out is None else bool(out.strip())


def git_state(cwd: str | Path | None = None) -> dict[str, Any]:
    """``{"git_commit", "git_dirty"}`` now: take it when a run starts, so a commit made while it
    runs is not recorded as the code that made the number."""
    return {"git_commit": git_commit(cwd), "git_dirty": git_dirty(cwd)}


def device_description(device: torch.device | str | None = None) -> str:
    """Hostname-free hardware description, e.g. ``cpu: x86_64 2 threads`` or the GPU name."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    return f"cpu: {platform.machine()} {torch.get_num_threads()} threads"


def config_hash(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(*, device: Any = None, seed: int | None = None, config: Any = None,
               checkpoint_sha256: str | None = None, git: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance block of a result; ``git`` is :func:`git_state` taken at the start of the run
    (default: now)."""
    git = git if git is not None else git_state()
    return {
        "xrobust_version": package_version(),
        "git_commit": git["git_commit"],
        "git_dirty": git["git_dirty"],
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda if torch.cuda.is_available() else None,
        "python_version": platform.python_version(),
        "device": device_description(device),
        "seed": seed,
        "config_hash": config_hash(config) if config is not None else None,
        "checkpoint_sha256": checkpoint_sha256,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
