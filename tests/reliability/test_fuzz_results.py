"""Property-based: random and mutated result files are accepted when valid, or rejected with the
project's own error (UserError) — never another exception, never a partial write."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings, strategies as st

from bench.errors import UserError
from bench.results import load_result, problems, validate, write_result
from bench.threat import ThreatModel

BASE = {
    "schema_version": 1, "track": "image-digits-linf-0.2", "domain": "image", "dataset": "digits",
    "threat": ThreatModel("linf", 0.2).to_dict(), "model": "smallcnn", "defense": "erm", "n": 4, "seed": 0,
    "metrics": {"clean_accuracy": 0.75, "robust_accuracy": 0.25, "per_attack": {"pgd": 0.25},
                "eps_sweep": [{"threat": "linf-0.1", "eps": 0.1, "robust_accuracy": 0.5},
                              {"threat": "linf-0.2", "eps": 0.2, "robust_accuracy": 0.25}]},
    "per_example": {"clean": "1101", "robust": "0100", "attacks": {"pgd": "0100"}},
    "flags": {"zero-gradients": {"value": 0.0, "raised": False}},
    "cost": {"train_seconds": 1.0, "eval_seconds": 2.0},
    "provenance": {"xrobust_version": "0.1.0", "torch_version": "2.11.0", "device": "cpu: x86_64 2 threads",
                   "timestamp": "2026-11-25T10:00:00Z", "config_hash": "abc", "checkpoint_sha256": "0" * 64},
}

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), c, max_size=3)),
                          max_leaves=8)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(BASE) if p]


def _set(doc, path, value, delete=False):
    cur = doc
    for k in path[:-1]:
        cur = cur[k]
    if delete:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value


def test_base_document_is_valid():
    assert problems(BASE) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ALL_PATHS), value=json_value, delete=st.booleans())
def test_mutated_documents_are_valid_or_userror(path, value, delete, tmp_path_factory):
    doc = copy.deepcopy(BASE)
    _set(doc, path, value, delete)
    errs = problems(doc)  # must not raise
    assert isinstance(errs, list) and all(isinstance(e, str) and e for e in errs)
    root = tmp_path_factory.mktemp("w")
    if errs:
        try:
            write_result(doc, root=root)
        except UserError:
            pass
        else:
            raise AssertionError("write_result accepted a document with problems")
        assert [p for p in root.rglob("*") if p.is_file()] == [], "no partial file on refusal"
    else:
        validate(doc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=200), json_value.map(lambda v: json.dumps(v).encode()),
                      st.just(json.dumps(BASE).encode()[:150])))
def test_random_files_load_or_raise_userror(data, tmp_path_factory):
    p = tmp_path_factory.mktemp("r") / "r.json"
    p.write_bytes(data)
    try:
        doc = load_result(p)
    except UserError as exc:
        assert str(p) in str(exc)
    else:
        assert problems(doc) == []
