"""Reading the result documents of one kind (corruption, certified) for their boards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from bench.results import problems, result_files

#: appended to the shown path of a document from a user results folder (boards mark those rows)
USER_TAG = "\0user"


def _docs(root: Path, source: str, keep: Callable[[Any], bool]) -> tuple[list[tuple[dict[str, Any], str]], list[str]]:
    out, bad = [], []
    for f in result_files(root):
        rel = f.relative_to(root).as_posix()
        shown = rel if source == "published" else f"{root.as_posix()}/{rel}"
        try:
            doc = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # reported by the attack board's collect()
        if not keep(doc):
            continue
        errs = problems(doc, path=f)
        if errs:
            bad.extend(f"{shown}: {e}" for e in errs)
            continue
        out.append((doc, shown))
    return out, bad


def kind_documents(root: str | Path, user: str | Path | None,
                   keep: Callable[[Any], bool]) -> tuple[list[tuple[dict[str, Any], str]], list[str]]:
    """The valid documents ``keep`` selects under ``root`` (published) and ``user`` (their shown path ends in
    :data:`USER_TAG`), with one line per problem of the invalid ones."""
    docs, bad = _docs(Path(root), "published", keep)
    if user is not None and Path(user).resolve() != Path(root).resolve():
        more, more_bad = _docs(Path(user), "user", keep)
        docs, bad = docs + [(d, s + USER_TAG) for d, s in more], bad + more_bad
    return docs, bad
