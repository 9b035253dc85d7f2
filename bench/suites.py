"""Attack suites as declared data: a suite is a list of :class:`AttackSpec`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.registry import ATTACKS, SUITES


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: a display name, a registered attack and its parameters."""

    name: str
    attack: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def build(self, seed: int = 0):
        params = dict(self.params)
        params.setdefault("seed", seed)
        eot = int(params.pop("eot", 1))  # any gradient attack: averaged over eot forwards (bench.defenses)
        attack = ATTACKS.get(self.attack)(**params)
        return attack.with_eot(eot) if eot != 1 else attack

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "attack": self.attack, "params": dict(self.params)}


def resolve_suite(suite: str | list | tuple) -> tuple[AttackSpec, ...]:
    """A suite name, a list of specs, or a list of attack names -> specs."""
    if isinstance(suite, str):
        return tuple(SUITES.get(suite))
    out = []
    for s in suite:
        out.append(s if isinstance(s, AttackSpec) else AttackSpec(str(s), str(s)))
    return tuple(out)


SUITES.register("pgd", (AttackSpec("fgsm", "fgsm"),
                        AttackSpec("pgd-20", "pgd", {"steps": 20, "restarts": 1})))
#: AutoAttack's "fast" subset: the two gradient attacks that find almost everything.
SUITES.register("fast", (AttackSpec("apgd-ce", "apgd", {"steps": 100, "loss": "ce"}),
                         AttackSpec("apgd-t", "apgd-t", {"steps": 100, "targets": 9, "loss": "dlr"})))
#: AutoAttack's standard version (Croce & Hein 2020): APGD-CE, APGD-T (targeted DLR, 9 target
#: classes), FAB-T (9 target classes), Square with 5,000 queries; run as a cascade by the tracks.
STANDARD = (AttackSpec("apgd-ce", "apgd", {"steps": 100, "loss": "ce"}),
            AttackSpec("apgd-t", "apgd-t", {"steps": 100, "targets": 9, "loss": "dlr"}),
            AttackSpec("fab-t", "fab-t", {"steps": 100, "targets": 9}),
            AttackSpec("square", "square", {"queries": 5000, "p_init": 0.8}))
SUITES.register("standard", STANDARD)
SUITES.register("pgd-restarts", (AttackSpec("pgd-50x5", "pgd", {"steps": 50, "restarts": 5}),))
