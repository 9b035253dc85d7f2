"""Each recipe pins a property from its paper; every registered recipe trains through the one loop."""

from __future__ import annotations

import copy
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from bench.attacks.fgsm import FGSM
from bench.registry import RECIPES
from bench.task import Context
from bench.threat import ThreatModel
from bench.training import TrainConfig, train
from bench.training.mart import boosted_ce


@pytest.fixture
def batch(digits_data):
    _, test = digits_data
    return test.inputs[:32], test.y[:32], Context(index=torch.arange(32))


def test_trades_beta_zero_is_erm_loss(digits_model, batch):
    x, y, ctx = batch
    state = {"step": 0}
    rec0, erm = RECIPES.get("trades")(beta=0.0), RECIPES.get("erm")()
    z_adv = rec0.inner(digits_model, x, ctx, y, ThreatModel("linf", 0.2), state)
    l_trades = rec0.loss(digits_model, x, z_adv, ctx, y, state)
    l_erm = erm.loss(digits_model, x, None, ctx, y, {})
    assert torch.allclose(l_trades, l_erm)
    l6 = RECIPES.get("trades")(beta=6.0).loss(digits_model, x, z_adv, ctx, y, state)
    assert l6 > l_erm  # the KL term is positive at a non-trivial adversarial point


def test_trades_inner_stays_in_ball_and_raises_kl(digits_model, batch):
    x, y, ctx = batch
    threat = ThreatModel("linf", 0.2)
    z_adv = RECIPES.get("trades")().inner(digits_model, x, ctx, y, threat, {"step": 0})
    assert threat.contains(z_adv, x).all()
    from bench.training.common import kl_per_example

    with torch.no_grad():
        kl = kl_per_example(digits_model(x), digits_model(z_adv))
    assert kl.mean() > 0.05


def test_free_m1_is_one_fgsm_step_per_batch(digits_model, batch):
    x, y, ctx = batch
    threat = ThreatModel("linf", 0.1)
    rec = RECIPES.get("free")(replay=1)
    state = {"step": 0}
    z_adv = rec.inner(digits_model, x, ctx, y, threat, state)
    assert torch.equal(z_adv, x)  # starts from delta = 0
    z_adv = z_adv.clone().requires_grad_(True)
    loss = rec.loss(digits_model, x, z_adv, ctx, y, state)
    loss.backward()
    rec.on_input_grad(z_adv.grad, state)
    fgsm = FGSM().run(digits_model, x, ctx, y, threat)
    assert torch.allclose(x + state["free_delta"], fgsm, atol=1e-6)
    assert rec.replay == 1 and RECIPES.get("free")().replay == 4


def test_free_divides_epochs_by_replay(digits_data, digits_track):
    from bench.pipeline import build_model

    train_data, _ = digits_data
    steps = {}
    for m in (1, 4):
        model = build_model(digits_track, train_data)
        rec = RECIPES.get("free")(replay=m)
        calls = []
        orig = rec.loss
        rec = type(rec)(**{**rec.__dict__, "loss": lambda *a, _o=orig: calls.append(1) or _o(*a)})
        train(model, train_data.subset(torch.arange(256)), rec, digits_track.threat,
              TrainConfig(epochs=4, batch_size=64, seed=0), progress=False)
        steps[m] = len(calls)
    assert steps[1] == steps[4] == 16  # 4 batches x 4 epochs, or 4 batches x 1 epoch x 4 replays


def test_free_makes_fractional_passes_and_ramps_in_replay_epochs(digits_data, digits_track):
    """10 epochs at m=4 are 2.5 passes x 4 replays (not ceil(10/4) = 3 passes); a 3-epoch eps ramp
    ends after 0.75 passes, so full eps is reached at step 3 of 4 per pass, as Shafahi et al. count it."""
    from bench.pipeline import build_model

    train_data, _ = digits_data
    model = build_model(digits_track, train_data)
    rec = RECIPES.get("free")(replay=4)
    eps_seen = []
    orig = rec.inner
    rec = type(rec)(**{**rec.__dict__, "inner": lambda m, z, c, y, t, s: eps_seen.append(t.eps) or orig(m, z, c, y, t, s)})
    train(model, train_data.subset(torch.arange(256)), rec, digits_track.threat,
          TrainConfig(epochs=10, batch_size=64, seed=0, eps_ramp_epochs=3), progress=False)
    assert len(eps_seen) == 40  # 4 batches x 2.5 passes x 4 replays = ERM's 10 epochs x 4 batches
    per_step = eps_seen[::4]
    eps = digits_track.threat.eps
    assert per_step[2] == pytest.approx(eps) and per_step[1] == pytest.approx(eps * 2 / 3)


def test_awp_restores_weights_after_its_step(digits_model, batch):
    x, y, ctx = batch
    model = copy.deepcopy(digits_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = RECIPES.get("awp")(gamma=0.05)
    state = {"step": 0}
    z_adv = rec.inner(model, x, ctx, y, ThreatModel("linf", 0.1), state)
    loss = rec.loss(model, x, z_adv, ctx, y, state)
    moved = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert moved, "the loss must be taken at perturbed weights"
    loss.backward()
    rec.after_backward(model, state)
    for k, v in model.state_dict().items():
        assert torch.allclose(before[k], v, atol=1e-6), k


def test_multi_max_picks_the_worst_threat_per_example(digits_model, batch):
    x, y, ctx = batch
    rec = RECIPES.get("multi")(threats=["linf-0.1", "l2-1"], strategy="max", steps=5)
    state = {"step": 0}
    z_adv = rec.inner(digits_model, x, ctx, y, ThreatModel("linf", 0.1), state)
    advs, pick = state["multi_advs"], state["multi_pick"]
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(digits_model(a), y, reduction="none") for a in advs])
    assert torch.equal(pick, losses.argmax(0))
    for i in range(len(x)):
        assert torch.equal(z_adv[i], advs[int(pick[i])][i])
    chosen = torch.stack([losses[int(pick[i]), i] for i in range(len(x))])
    assert (chosen >= losses.amax(0) - 1e-6).all()


def test_mart_boosted_ce_bounds_ce(digits_model, batch):
    x, y, _ = batch
    with torch.no_grad():
        logits = digits_model(x)
    assert (boosted_ce(logits, y) >= F.cross_entropy(logits, y, reduction="none") - 1e-6).all()


def test_unknown_multi_strategy():
    with pytest.raises(ValueError, match="strategy must be 'max' or 'avg'"):
        RECIPES.get("multi")(strategy="min")


@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_trains_through_the_loop(name, digits_data, digits_track):
    from bench.pipeline import build_model

    train_data, _ = digits_data
    torch.manual_seed(0)
    model = build_model(digits_track, train_data)
    w0 = [p.clone() for p in model.parameters()]
    params = {"multi": {"threats": ["linf-0.1", "l2-1"], "steps": 3}}.get(name, {})
    hist = train(model, train_data.subset(torch.arange(128)), RECIPES.get(name)(**params), digits_track.threat,
                 TrainConfig(epochs=1, batch_size=64, seed=0), progress=False)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert any(not torch.equal(a, b) for a, b in zip(w0, model.parameters()))


def test_plugin_recipe_from_outside_the_package(tmp_path, monkeypatch, digits_data, digits_track):
    (tmp_path / "my_defense.py").write_text(textwrap.dedent('''
        from bench.training import Recipe
        from bench.training.common import adversarial_loss
        from bench.attacks.fgsm import FGSM

        def MyRecipe(scale=0.5):
            attack = FGSM()
            def inner(model, z, ctx, y, threat, state):
                return attack.run(model, z, ctx, y, threat.with_eps(threat.eps * scale))
            return Recipe("my-fgsm-half", inner=inner, loss=adversarial_loss, params={"scale": scale})
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from bench.pipeline import train_track

    ckpt = train_track(digits_track, "my_defense:MyRecipe", epochs=1, out=tmp_path / "ck" / "m.safetensors",
                       progress=False, log=lambda m: None)
    import json

    cfg = json.loads(ckpt.with_suffix(".json").read_text())
    assert cfg["recipe"] == "my-fgsm-half" and cfg["recipe_params"] == {"scale": 0.5}
    sys.modules.pop("my_defense", None)


def test_perf_training_writes_ratios(tmp_path, capsys):
    from bench.cli import main

    rc = main(["perf", "--training", "--track", "image-digits-linf-0.2", "--recipes", "fgsm-rs,free",
               "--batches", "1", "--repeats", "1", "--results", str(tmp_path)])
    assert rc == 0
    import json

    doc = json.loads((tmp_path / "perf" / "image-digits-linf-0.2-training.json").read_text())
    rows = {r["recipe"]: r for r in doc["rows"]}
    assert set(rows) == {"erm", "fgsm-rs", "free"}
    assert rows["erm"]["ratio_to_erm"] == 1.0
    assert rows["free"]["replay"] == 4
    assert all(r["seconds_per_epoch"] > 0 for r in rows.values())


def test_track_recipe_epochs_reach_the_trainer(tmp_path, digits_track):
    """TrainSpec.recipe_epochs gives one recipe its own nominal epochs (Free-AT on MNIST-5k: 19, the
    others 10); every other recipe keeps the track's, and the checkpoint records what ran."""
    from dataclasses import replace

    from bench.checkpoint import read_checkpoint_config
    from bench.pipeline import train_track

    track = replace(digits_track, train=replace(digits_track.train, epochs=0.25, recipe_epochs={"free": 0.5}))
    got = {}
    for recipe in ("free", "erm"):
        path = train_track(track, recipe, out=tmp_path / f"{recipe}.safetensors", progress=False, log=lambda s: None)
        got[recipe] = read_checkpoint_config(path)["train_config"]["epochs"]
    assert got == {"free": 0.5, "erm": 0.25}
    from bench.tracks import get_track

    mnist = get_track("image-mnist5k-linf-0.3").train
    assert mnist.epochs_for("free") == 19 and mnist.epochs_for("pgd-at") == mnist.epochs == 10
