import torch

from bench.evaluate import evaluate
from bench.suites import AttackSpec
from bench.threat import ThreatModel

SUITE = [AttackSpec("fgsm", "fgsm"), AttackSpec("pgd-10", "pgd", {"steps": 10})]


def test_eps_zero_gives_clean_accuracy(digits_model, digits_data):
    _, test = digits_data
    m = evaluate(digits_model, test.inputs, test.y, ThreatModel("linf", 0.0), SUITE).metrics()
    assert m["robust_accuracy"] == m["clean_accuracy"]
    assert m["clean_accuracy"] > 0.9


def test_robust_accuracy_monotone_in_eps(digits_model, digits_data):
    _, test = digits_data
    accs = [evaluate(digits_model, test.inputs, test.y, ThreatModel("linf", e), SUITE).metrics()["robust_accuracy"]
            for e in (0.0, 0.03, 0.06, 0.1, 0.2)]
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < 0.3


def test_worst_case_per_example_not_min_of_averages(digits_model, digits_data):
    _, test = digits_data
    rep = evaluate(digits_model, test.inputs, test.y, ThreatModel("linf", 0.05), SUITE)
    m = rep.metrics()
    union = torch.stack([e > 0 for e in rep.attack_errors.values()]).any(0) | (rep.clean_errors > 0)
    assert m["robust_accuracy"] == float((~union).double().mean())
    assert m["robust_accuracy"] <= min(m["per_attack"].values())


def test_cascade_agrees_on_robust_accuracy(digits_model, digits_data):
    _, test = digits_data
    threat = ThreatModel("linf", 0.05)
    full = evaluate(digits_model, test.inputs, test.y, threat, SUITE)
    casc = evaluate(digits_model, test.inputs, test.y, threat, SUITE, cascade=True)
    assert torch.equal(full.robust_errors, casc.robust_errors)
    assert casc.metrics()["per_attack_mode"] == "cumulative"


def test_any_nn_module_classifier(digits_data):
    _, test = digits_data
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    m = evaluate(net, test.inputs[:20], test.y[:20], ThreatModel("l2", 0.5), "pgd").metrics()
    assert 0 <= m["robust_accuracy"] <= m["clean_accuracy"] <= 1


def test_union_is_worst_case_over_threat_models(digits_model, digits_data):
    from bench.evaluate import evaluate_union

    _, test = digits_data
    threats = [ThreatModel("linf", 0.05), ThreatModel("l2", 0.5)]
    worst, reports = evaluate_union(digits_model, test.inputs, test.y, threats, SUITE)
    assert set(reports) == {"linf-0.05", "l2-0.5"}
    union = float((worst == 0).double().mean())
    assert union <= min(r.metrics()["robust_accuracy"] for r in reports.values())
    assert torch.equal(worst > 0, (reports["linf-0.05"].robust_errors > 0) | (reports["l2-0.5"].robust_errors > 0))


def test_evaluation_subset_prefixes_are_random_subsets():
    """The fixed subset keeps its permutation order: a prefix (``--n``, the sweep's ``sweep_n``) is a
    uniform random subset, not the first classes of a split stored class by class."""
    import dataclasses

    from bench.tracks import get_track

    track = dataclasses.replace(get_track("image-digits-linf-0.2"), n_eval=100)
    idx = track.eval_indices(1000)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert not bool((idx[1:] > idx[:-1]).all()), "the subset must not be sorted"
    # a split stored class by class (100 per class, like MNIST-5k's test split): the first 40 cover every class
    labels = torch.arange(1000) // 100
    assert len(set(labels[idx[:40]].tolist())) == 10
    assert torch.equal(track.eval_indices(1000), idx)  # fixed: seed 0
    assert torch.equal(dataclasses.replace(track, n_eval=5000).eval_indices(1000).sort().values, torch.arange(1000))
