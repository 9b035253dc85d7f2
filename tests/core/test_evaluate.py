import pytest
import torch

from bench.evaluate import evaluate
from bench.sanity import CHECKS
from bench.suites import AttackSpec
from bench.threat import ThreatModel

SUITE = [AttackSpec("fgsm", "fgsm"), AttackSpec("pgd-10", "pgd", {"steps": 10})]


def _spy_searches(monkeypatch):
    """Record (attack name, batch size) of every ``search`` the attacks of SUITE run."""
    from bench.attacks.fgsm import FGSM
    from bench.attacks.pgd import PGD

    calls = []
    for cls in (FGSM, PGD):
        def spy(self, model, z, *args, _orig=cls.search, **kwargs):
            calls.append((self.name, int(z.shape[0])))
            return _orig(self, model, z, *args, **kwargs)
        monkeypatch.setattr(cls, "search", spy)
    return calls


def test_eps_zero_gives_clean_accuracy(digits_model, digits_data, monkeypatch):
    """At eps = 0 the outcome equals the clean one example by example, for every attack, although every
    clean-correct example really was attacked (a short-circuit would make the equality true by construction;
    a projection that moves points at eps = 0 breaks it)."""
    _, test = digits_data
    calls = _spy_searches(monkeypatch)
    rep = evaluate(digits_model, test.inputs, test.y, ThreatModel("linf", 0.0), SUITE, flags=False)
    m = rep.metrics()
    assert torch.equal(rep.robust_errors, rep.clean_errors)
    assert all(torch.equal(e, rep.clean_errors) for e in rep.attack_errors.values())
    assert m["robust_accuracy"] == m["clean_accuracy"] > 0.9
    n_correct = int(rep.clean_correct.sum())
    assert {name: sum(b for k, b in calls if k == name) for name in ("fgsm", "pgd")} == \
        {"fgsm": n_correct, "pgd": n_correct}, calls


def test_robust_accuracy_monotone_in_eps(digits_model, digits_data):
    """On an undefended model every larger eps is strictly lower (measured on the 359 test digits:
    0.978, 0.944, 0.827, 0.513, 0.014), and eps = 0 is exactly the clean accuracy."""
    _, test = digits_data
    reps = [evaluate(digits_model, test.inputs, test.y, ThreatModel("linf", e), SUITE, flags=False)
            for e in (0.0, 0.03, 0.06, 0.1, 0.2)]
    accs = [r.metrics()["robust_accuracy"] for r in reps]
    assert accs[0] == reps[0].metrics()["clean_accuracy"]
    assert all(a > b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] < 0.3


def test_worst_case_per_example_not_min_of_averages(digits_model, digits_data):
    _, test = digits_data
    rep = evaluate(digits_model, test.inputs, test.y, ThreatModel("linf", 0.05), SUITE)
    m = rep.metrics()
    union = torch.stack([e > 0 for e in rep.attack_errors.values()]).any(0) | (rep.clean_errors > 0)
    assert m["robust_accuracy"] == float((~union).double().mean())
    assert m["robust_accuracy"] <= min(m["per_attack"].values())


def test_cascade_agrees_on_robust_accuracy(digits_model, digits_data, monkeypatch):
    """The cascade gives the same per-example worst case as running every attack on everything, its
    per-attack numbers are the running per-example maximum of the stand-alone outcomes, and each attack
    only sees the examples that are still robust (that is the point of the cascade)."""
    _, test = digits_data
    threat = ThreatModel("linf", 0.05)
    full = evaluate(digits_model, test.inputs, test.y, threat, SUITE, flags=False)
    calls = _spy_searches(monkeypatch)
    casc = evaluate(digits_model, test.inputs, test.y, threat, SUITE, cascade=True, flags=False)
    assert torch.equal(full.robust_errors, casc.robust_errors)
    assert casc.metrics()["per_attack_mode"] == "cumulative"
    f_fgsm, f_pgd = full.attack_errors["fgsm"], full.attack_errors["pgd-10"]
    assert torch.equal(casc.attack_errors["fgsm"], f_fgsm)                      # the first attack sees all
    assert torch.equal(casc.attack_errors["pgd-10"], torch.maximum(f_fgsm, f_pgd))  # running maximum
    assert torch.equal(casc.attack_errors["pgd-10"], casc.robust_errors)
    still_robust = int((f_fgsm == 0).sum())
    assert sum(b for k, b in calls if k == "pgd") == still_robust and still_robust < int(full.clean_correct.sum())


def test_any_nn_module_classifier(digits_data):
    """A plain linear classifier (an ``nn.Module`` on raw inputs), where the truth is known: an example
    whose decision boundary is farther than eps (L2) from it cannot be broken by any valid attack, and the
    attacks do break some of the others."""
    train, test = digits_data
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):  # full-batch, 0.2 s
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(train.inputs), train.y).backward()
        opt.step()
    x, y = test.inputs[:40], test.y[:40]
    eps = 0.3
    rep = evaluate(net, x, y, ThreatModel("l2", eps), "pgd", flags=False)
    m = rep.metrics()
    with torch.no_grad():
        out = net(x)
        w = net[1].weight
        margin = out.gather(1, y[:, None]) - out                               # (n, classes)
        dist = margin / (w[y][:, None, :] - w[None]).norm(dim=2).clamp_min(1e-12)  # to each boundary
        dist[torch.arange(len(y)), y] = float("inf")
        certified = dist.min(1).values                                          # L2 distance to the boundary
    assert torch.equal(rep.clean_errors, (out.argmax(1) != y).float())
    assert m["clean_accuracy"] == 1.0  # measured; the next lines need clean-correct examples
    broken = rep.robust_errors > rep.clean_errors
    assert not bool((broken & (certified > eps)).any()), "an example beyond the boundary distance was 'broken'"
    # measured: 16 of 40 within eps of the boundary, 8 broken (pixel bounds block the others)
    assert int(broken.sum()) >= 4 and m["robust_accuracy"] < m["clean_accuracy"]
    assert m["robust_accuracy"] <= min(m["per_attack"].values())


def test_any_nn_module_on_rgb_32x32():
    """``bench.evaluate`` on a torchvision ResNet-18 (random init, 10 classes) with 3x32x32 inputs, far from
    the 8x8 digits: labels are the model's own predictions, so the clean accuracy is exactly 1; eps = 0
    changes nothing and 8/255 breaks some. The sanity checks run on it too."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        y = net(x).argmax(1)
    suite = [AttackSpec("fgsm", "fgsm"), AttackSpec("pgd-3", "pgd", {"steps": 3})]
    zero = evaluate(net, x, y, ThreatModel("linf", 0.0), suite, flags=False)
    assert torch.equal(zero.clean_errors, torch.zeros(4)) and torch.equal(zero.robust_errors, torch.zeros(4))
    rep = evaluate(net, x, y, ThreatModel("linf", 8 / 255), suite)  # with the sanity checks
    m = rep.metrics()
    assert m["clean_accuracy"] == 1.0 and m["robust_accuracy"] < 1.0  # measured 0.0
    assert rep.robust_errors.shape == (4,) and set(rep.flags) == set(CHECKS)
    assert rep.flags["eps0-differs-from-clean"]["value"] == 0.0
    assert rep.flags["randomized-forward"]["value"] == 0.0


def test_evaluate_gives_a_plain_module_back_in_eval_mode(digits_data):
    """The model's train/eval mode is restored on return: for a TaskModel (test_attacks_sanity.py) and for a
    plain ``nn.Module``, which is wrapped in a TaskModel that must take its mode (a new wrapper is in train
    mode, and "restoring" that handed an eval-mode module back in train mode)."""
    _, test = digits_data
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.BatchNorm1d(10)).eval()
    evaluate(net, test.inputs[:8], test.y[:8], ThreatModel("linf", 0.1), [AttackSpec("fgsm", "fgsm")], flags=False)
    assert not net.training and not net[2].training
    net.train()
    evaluate(net, test.inputs[:8], test.y[:8], ThreatModel("linf", 0.1), [AttackSpec("fgsm", "fgsm")], flags=False)
    assert net.training and net[2].training


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
