"""Result files in other benchmarks' formats: ``xrobust export --format robustbench RESULT``.

RobustBench (Croce et al. 2021) describes each leaderboard entry by a
``model_info/<dataset>/<threat>/<name>.json`` file whose numbers are strings
(``"clean_acc": "87.14"``, ``"eps": "8/255"``). Only a result that measures what
RobustBench measures is exported: an image classifier under an absolute Linf or
L2 ball, evaluated with AutoAttack's standard attacks (APGD-CE, APGD-T, FAB-T,
Square) at no less than their standard budgets, run as a cascade. Anything else
is refused with the reason.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Callable

from bench.errors import UserError
from bench.results import problems, read_json
from bench.threat import format_eps

#: AutoAttack's standard version (Croce & Hein 2020): attack -> (name shown, minimum of each budget parameter).
#: Budget parameters a suite entry leaves out take the attack's own default.
AUTOATTACK_STANDARD: dict[str, tuple[str, dict[str, int]]] = {
    "apgd": ("apgd-ce", {"steps": 100}),
    "apgd-t": ("apgd-t", {"steps": 100, "targets": 9}),
    "fab-t": ("fab-t", {"steps": 100, "targets": 9}),
    "square": ("square", {"queries": 5000}),
}


def _param(spec: dict[str, Any], key: str) -> Any:
    params = spec.get("params") or {}
    if key in params:
        return params[key]
    from bench.registry import ATTACKS

    default = inspect.signature(ATTACKS.get(spec["attack"])).parameters.get(key)
    return None if default is None else default.default


def _at_least(value: Any, minimum: int) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum


def _is_standard(spec: dict[str, Any], attack: str) -> bool:
    """Whether a suite entry is ``attack`` as AutoAttack runs it (APGD-CE: the cross-entropy loss)."""
    if spec.get("attack") != attack:
        return False
    return attack != "apgd" or _param(spec, "loss") in ("ce", None)  # None: the classifier's objective, CE


def standard_suite_problem(doc: dict[str, Any]) -> str | None:
    """Why ``doc``'s suite is not AutoAttack-standard run as a cascade (None when it is)."""
    suite = doc.get("suite") or []
    for attack, (name, minimum) in AUTOATTACK_STANDARD.items():
        found = [s for s in suite if _is_standard(s, attack)]
        if not found:
            return (f"the suite lacks {name} (AutoAttack standard: "
                    f"{', '.join(n for n, _ in AUTOATTACK_STANDARD.values())})")
        shortfalls = [[(k, _param(s, k), v) for k, v in minimum.items() if not _at_least(_param(s, k), v)]
                      for s in found]
        if all(shortfalls):  # no entry of this attack has the whole standard budget
            key, have, want = shortfalls[0][0]
            return f"{name} runs with {key}={have}, fewer than AutoAttack standard's {want}"
    if (doc.get("metrics") or {}).get("per_attack_mode") != "cumulative":
        return "the attacks were not run as a cascade (metrics.per_attack_mode is not 'cumulative')"
    return None


def robustbench_eps(eps: float) -> str:
    """eps as RobustBench writes it: ``"8/255"`` for k/255 (the threat id's own rule), else ``"0.3"``."""
    return format_eps(eps).replace("_255", "/255")


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def robustbench_model_info(doc: dict[str, Any]) -> dict[str, Any]:
    """RobustBench's ``model_info`` entry for a valid result, or a :class:`UserError` saying why not."""
    errs = problems(doc)
    if errs:
        raise UserError(f"invalid result: {errs[0]}" + (f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""))
    threat = doc["threat"]
    if doc["domain"] != "image":
        raise UserError(f"RobustBench covers image classifiers; this result is domain {doc['domain']!r}")
    if threat["norm"] not in ("linf", "l2") or threat["space"] != "input" or threat["scale"] != "absolute":
        raise UserError(f"RobustBench's threats are absolute Linf / L2 balls in input space; this result's is "
                        f"{threat['id']!r}")
    why = standard_suite_problem(doc)
    if why:
        raise UserError(f"not an AutoAttack-standard evaluation: {why}")
    m, card = doc["metrics"], doc.get("card")
    notes = [f"Evaluated with xrobust (track {doc['track']}): AutoAttack-standard cascade, worst case per example, "
             f"on n={doc['n']} examples of {doc['dataset']}."]
    raised = sorted(k for k, v in (doc.get("flags") or {}).items() if v.get("raised"))
    if raised:
        notes.append(f"Sanity flags raised: {', '.join(raised)}.")
    if card is None:
        notes.append("No model card attached (xrobust submit --paper ...): paper fields are empty and "
                     "additional_data is assumed false.")
        card = {}
    elif isinstance(card.get("extra_data"), str):
        notes.append(f"Extra training data: {card['extra_data']}")
    reported = card.get("reported_robust_accuracy")
    return {
        "link": card.get("paper_url", ""),
        "name": card.get("paper", f"{doc['model']} + {doc['defense']}"),
        "authors": ", ".join(card.get("authors") or []),
        "additional_data": card.get("extra_data", False) is not False,
        "number_forward_passes": 1,
        "dataset": doc["dataset"],
        "venue": card.get("venue", ""),
        "architecture": card.get("architecture", doc["model"]),
        "eps": robustbench_eps(float(threat["eps"])),
        "clean_acc": _pct(m["clean_accuracy"]),
        "reported": "" if reported is None else _pct(reported),
        "autoattack_acc": _pct(m["robust_accuracy"]),
        "footnote": " ".join(notes),
        "unreliable": bool(raised),
    }


#: export format -> function of a valid result document
FORMATS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"robustbench": robustbench_model_info}


def export_result(path: str | Path, fmt: str = "robustbench") -> dict[str, Any]:
    """The result file ``path`` in format ``fmt``; a :class:`UserError` naming the file when it cannot be."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    p = Path(path)
    doc = read_json(p)
    try:
        return FORMATS[fmt](doc)
    except UserError as exc:
        raise UserError(f"{p}: cannot export to {fmt}: {exc}") from None


def dumps(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, ensure_ascii=False) + "\n"
