"""Known phenomena the suite must reproduce (slow): catastrophic overfitting of single-step
training, and TRADES' β trading clean for robust accuracy."""

from __future__ import annotations

import pytest
import torch

from bench.evaluate import evaluate
from bench.pipeline import build_model
from bench.registry import RECIPES
from bench.suites import AttackSpec
from bench.tracks import get_track
from bench.training import TrainConfig, train

SUITE = [AttackSpec("fgsm", "fgsm"), AttackSpec("pgd-20", "pgd", {"steps": 20})]


def _train_eval(track, recipe, epochs, n_eval, **cfg):
    tr = track.dataset_split("train")
    te, _ = track.eval_data()
    te = te.subset(torch.arange(n_eval))
    torch.manual_seed(0)
    model = build_model(track, tr)
    train(model, tr, recipe, track.threat, TrainConfig(epochs=epochs, seed=0, **cfg), progress=False)
    return evaluate(model, te.inputs, te.y, track.threat, SUITE)


@pytest.mark.slow
def test_fgsm_training_overfits_catastrophically_on_mnist5k():
    """Plain FGSM-AT (zero init, step ε, no ε ramp) at ε = 0.3: Wong et al. 2020, Sec. 4.1.

    Measured here on a random 300 of the evaluation subset: after 3 epochs FGSM accuracy 0.49 while
    PGD-20 accuracy is far lower (before the subset kept its permutation order, the first 300 were
    mostly 0s, 1s and 2s: 0.85 vs 0.08).
    """
    track = get_track("image-mnist5k-linf-0.3")
    rep = _train_eval(track, RECIPES.get("fgsm")(rel_step=1.0), 3, 300, batch_size=128, lr=1e-3)
    m = rep.metrics()
    print(m["per_attack"])
    assert m["per_attack"]["fgsm"] > 0.4
    assert m["per_attack"]["pgd-20"] < 0.15
    from bench.sanity import single_step_gap

    flag = single_step_gap(rep)
    assert flag.raised and flag.value > 0.3


@pytest.mark.slow
def test_trades_beta_trades_clean_for_robust():
    """Zhang et al. 2019, Table 5: larger β, lower clean and higher robust accuracy.

    Measured here on the digits track (10 epochs, 5-step inner): β=0.5 0.989 / 0.393, β=8 0.972 / 0.554.
    """
    track = get_track("image-digits-linf-0.2")
    res = {b: _train_eval(track, RECIPES.get("trades")(beta=b, steps=5), 10, 359, batch_size=64, lr=2e-3,
                          eps_ramp_epochs=2).metrics() for b in (0.5, 8.0)}
    assert res[0.5]["clean_accuracy"] > res[8.0]["clean_accuracy"]
    assert res[8.0]["robust_accuracy"] > res[0.5]["robust_accuracy"] + 0.08
