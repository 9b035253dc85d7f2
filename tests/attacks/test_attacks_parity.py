"""Differential tests against the peers (extra ``peers``: torchattacks, ART).

On one trained MNIST-5k checkpoint (LeNet, 3 epochs of PGD-AT, trained here)
and the track's first 500 evaluation images at Linf 0.3: our PGD, APGD-CE and
Square give a robust accuracy within 1.0 point of torchattacks' (PGD also of
ART's). The standard suite and FAB-T are compared with the official AutoAttack code in
``test_attacks_autoattack.py`` (torchattacks' AutoAttack runs APGD with 10 steps, not 100).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.pipeline import train_track
from bench.registry import ATTACKS
from bench.task import Context
from bench.threat import ThreatModel
from bench.tracks import get_track

torchattacks = pytest.importorskip("torchattacks")
pytest.importorskip("art")

pytestmark = pytest.mark.slow

EPS = 0.3
N = 500
TOL = 0.010  # one point


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    torch.set_num_threads(1)
    track = get_track("image-mnist5k-linf-0.3")
    track = replace(track, model="lenet", train=replace(track.train, epochs=3, eps_ramp_epochs=1))
    ckpt = train_track(track, "pgd-at", out=tmp_path_factory.mktemp("mnist") / "model.safetensors",
                       progress=False, log=lambda s: None)
    model = load_checkpoint(ckpt).eval()
    x, y = track.test_data()
    return model, x[:N], y[:N]


def _acc(model, xa, y) -> float:
    with torch.no_grad():
        return float((model(xa).argmax(1) == y).float().mean())


def _ours(model, x, y, name, **params) -> float:
    z = ATTACKS.get(name)(**params).run(model, x, Context(index=torch.arange(len(y))), y, ThreatModel("linf", EPS))
    return _acc(model, z, y)


def test_model_is_worth_attacking(mnist):
    model, x, y = mnist
    assert _acc(model, x, y) > 0.65  # 3 epochs of PGD-AT on LeNet: 0.718 on this random 500


def test_pgd_matches_torchattacks_and_art(mnist):
    """Same algorithm from the same point (no random start), so the three must agree. With random
    starts each tool draws its own, which alone moves PGD-20 by up to 2 points between the peers
    themselves on this model (measured: torchattacks 0.264, ART 0.244, ours 0.256)."""
    random_start = False
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    model, x, y = mnist
    steps, alpha = 20, 2.5 * EPS / 20
    ours = _ours(model, x, y, "pgd", steps=steps, step_size=alpha, random_start=random_start)
    torch.manual_seed(0)
    ta = _acc(model, torchattacks.PGD(model, eps=EPS, alpha=alpha, steps=steps, random_start=random_start)(x, y), y)
    est = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="cpu")
    np.random.seed(0)
    art = ProjectedGradientDescentPyTorch(est, norm=np.inf, eps=EPS, eps_step=alpha, max_iter=steps,
                                         num_random_init=int(random_start), batch_size=N, verbose=False)
    art_acc = _acc(model, torch.from_numpy(art.generate(x.numpy(), y.numpy())), y)
    print(f"PGD-{steps} random_start={random_start}: ours {ours:.3f} torchattacks {ta:.3f} ART {art_acc:.3f}")
    assert 0.05 < ours < 0.95
    assert abs(ours - ta) <= TOL + 1e-9
    assert abs(ours - art_acc) <= TOL + 1e-9


def test_apgd_ce_matches_torchattacks(mnist):
    model, x, y = mnist
    ours = _ours(model, x, y, "apgd", steps=25, loss="ce")
    ta = _acc(model, torchattacks.APGD(model, norm="Linf", eps=EPS, steps=25, n_restarts=1, loss="ce", seed=0)(x, y), y)
    print(f"APGD-CE-25: ours {ours:.3f} torchattacks {ta:.3f}")
    assert abs(ours - ta) <= TOL + 1e-9


def test_square_matches_torchattacks(mnist):
    """torchattacks draws one window and one sign pattern per query for the whole batch, so its
    batch accuracy swings by several points between seeds (0.32 to 0.40 measured at 300 queries);
    ours draws per example (batch == one by one) and varies less. We compare
    with torchattacks' mean over three seeds."""
    model, x, y = mnist
    ours = _ours(model, x, y, "square", queries=300, p_init=0.8)
    ta = [_acc(model, torchattacks.Square(model, norm="Linf", eps=EPS, n_queries=300, n_restarts=1, p_init=0.8,
                                          resc_schedule=False, seed=s)(x, y), y) for s in range(3)]
    print(f"Square-300: ours {ours:.3f} torchattacks {ta} mean {sum(ta) / 3:.3f}")
    assert abs(ours - sum(ta) / 3) <= TOL + 1e-9
