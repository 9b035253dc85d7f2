"""Model cards: who made a result's defense, where its paper and its weights are.

A card is an optional block ``card`` of a result file (schema ``$defs/card``, like
RobustBench's ``model_info``): ``paper`` (title), ``paper_url``, ``venue``,
``architecture``, ``extra_data`` (false, true or a description of the data),
``license``, ``checkpoint`` (an https:// URL or ``zoo:<track>/<defense>``), and
optionally ``authors`` and ``reported_robust_accuracy`` (what the paper claims).
Adding the block kept ``schema_version`` 1: the root of a result allows unknown
keys, so version-1 readers ignore it and every earlier file stays valid.

``xrobust submit RESULT --paper ... --venue ...`` (or ``--card card.json``) merges
the given fields over the file's card, validates the whole result, and writes it
atomically at its canonical path; on any problem nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.errors import UserError

#: the card's fields that :func:`card_from_options` takes from command-line options, in order
OPTION_FIELDS = ("paper", "paper_url", "venue", "architecture", "extra_data", "license", "checkpoint", "authors",
                 "reported_robust_accuracy")

_NO, _YES = ("no", "false", "none"), ("yes", "true")


def parse_extra_data(text: str) -> bool | str:
    """``--extra-data``: no/false/none -> False, yes/true -> True, anything else describes the extra data."""
    word = text.strip().lower()
    if word in _NO:
        return False
    if word in _YES:
        return True
    return text.strip()


def card_problems(card: Any) -> list[str]:
    """Every problem of a card against the schema's ``$defs/card``, one line each (empty when valid)."""
    import jsonschema

    from bench.results import schema

    defs = schema()["$defs"]
    validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/card", "$defs": defs})
    out, missing = [], []
    for err in sorted(validator.iter_errors(card), key=lambda e: [str(p) for p in e.absolute_path]):
        where = "/".join(str(p) for p in err.absolute_path)
        if err.validator == "required":
            missing.extend(f for f in err.validator_value if f not in err.instance and f not in missing)
            continue
        message = err.message
        if err.validator == "pattern":
            message = f"{err.instance!r} is not {_PATTERN_MEANS.get(where.split('/')[0], 'non-blank text')}"
        out.append(f"{where}: {message}" if where else message)
    if missing:
        out.insert(0, "missing " + ", ".join(missing) + " (give --" + ", --".join(m.replace("_", "-") for m in missing)
                   + " or a --card file)")
    return out


#: what a card field's schema pattern asks for, in words
_PATTERN_MEANS = {"paper_url": "an http(s):// URL (no spaces, quotes or brackets)",
                  "checkpoint": "an http(s):// URL or zoo:<track>/<defense>"}


def read_card(path: str | Path) -> dict[str, Any]:
    """A card file's JSON object, or a :class:`UserError` naming the file."""
    p = Path(path)
    try:
        card = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"card file not found: {p}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise UserError(f"{p}: a model card is a JSON object, not {type(card).__name__}")
    return card


def card_from_options(card_file: str | Path | None = None, **fields: Any) -> dict[str, Any]:
    """The card fields a user gave: those of ``card_file`` (if any), overridden by the non-None ``fields``.

    ``fields`` are raw option values: ``extra_data`` is parsed with :func:`parse_extra_data`,
    ``authors`` is a comma-separated string. Returns ``{}`` when nothing was given.
    """
    unknown = set(fields) - set(OPTION_FIELDS)
    if unknown:
        raise TypeError(f"unknown card fields {sorted(unknown)}")
    card = read_card(card_file) if card_file is not None else {}
    for key in OPTION_FIELDS:
        value = fields.get(key)
        if value is None:
            continue
        if key == "extra_data" and isinstance(value, str):
            value = parse_extra_data(value)
        elif key == "authors" and isinstance(value, str):
            value = [a.strip() for a in value.split(",") if a.strip()]
        card[key] = value
    return card


def attach_card(doc: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``card`` merged over its existing card (a new dict; ``doc`` is not changed).

    Raises :class:`UserError` (one line) when the merged card is malformed, or when a
    ``zoo:`` checkpoint names another track or defense than the result's.
    """
    merged = {**(doc.get("card") or {}), **card}
    errs = card_problems(merged)
    if errs:
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        raise UserError(f"invalid model card: {errs[0]}{more}")
    ck = merged["checkpoint"]
    want = f"zoo:{doc.get('track')}/{doc.get('defense')}"
    if ck.startswith("zoo:") and ck != want:
        raise UserError(f"invalid model card: checkpoint {ck!r} is not this result's weights (expected {want!r})")
    return {**doc, "card": merged}
