"""FreeLB: accumulated gradients over K ascent steps, through the shared loop."""

import torch

from bench.registry import RECIPES
from bench.training.common import adversarial_loss
from domains.text import datasets as tds
from domains.text.models import tiny_bert
from bench.threat import ThreatModel

torch.set_num_threads(1)


def _model_and_batch():
    torch.manual_seed(0)
    model = tiny_bert(hidden=32, layers=1, heads=2, intermediate=64, vocab_size=600, dropout=0.0)
    data = model.prepare(tds.rotten_tomatoes("train").subset(torch.arange(200)))
    x = {k: v[:8] for k, v in data.inputs.items() if k != "text"}
    return model.train(), x, data.y[:8]


def _grads(model, recipe, x, y, threat):
    model.zero_grad(set_to_none=True)
    z, ctx = model.encode(x)
    ctx = type(ctx)(mask=ctx.mask, eps_scale=ctx.eps_scale, index=torch.arange(len(y)), extras=ctx.extras)
    z_adv = recipe.inner(model, z.detach(), ctx, y, threat, {"step": 0})
    state = {"step": 0, "threat": threat} if recipe.name == "freelb" else {"step": 0}
    loss = recipe.loss(model, z, z_adv, ctx, y, state)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_freelb_with_one_step_and_no_start_equals_erm():
    model, x, y = _model_and_batch()
    threat = ThreatModel.from_id("emb-l2-0.05")
    l1, g1 = _grads(model, RECIPES.get("freelb")(steps=1, random_start=False), x, y, threat)
    l0, g0 = _grads(model, RECIPES.get("erm")(), x, y, threat)
    assert abs(l1 - l0) < 1e-6
    assert "net.bert.embeddings.word_embeddings.weight" in g1  # z carries gradients to the embeddings
    for n in g0:
        assert torch.allclose(g1[n], g0[n], atol=1e-6), n


def test_freelb_gradient_is_the_mean_over_its_ascent_points():
    model, x, y = _model_and_batch()
    threat = ThreatModel.from_id("emb-l2-0.5")
    recipe = RECIPES.get("freelb")(steps=3, rel_step=0.5)
    loss, g = _grads(model, recipe, x, y, threat)
    # recompute by hand: the three iterates, each contributing 1/3 of its gradient
    z, ctx = model.encode(x)
    ctx = type(ctx)(mask=ctx.mask, eps_scale=ctx.eps_scale, index=torch.arange(len(y)), extras=ctx.extras)
    z0 = z.detach()
    pts = [threat.random_init(z0, ctx, seed="freelb/0")]
    for _ in range(2):
        d = (pts[-1] - z0).requires_grad_(True)
        lt = torch.nn.functional.cross_entropy(model(z0 + d, ctx), y)
        (gd,) = torch.autograd.grad(lt, d)
        alpha = threat._expand(threat.radius(z0, ctx), z0) * 0.5
        pts.append(threat.project(pts[-1] + alpha * threat.steepest(gd, ctx), z0, ctx).detach())
    assert all(bool(threat.contains(p, z0, ctx).all()) for p in pts)
    assert float((pts[2] - pts[0]).abs().max()) > 0
    model.zero_grad(set_to_none=True)
    total = 0.0
    for p in pts:
        state = {}
        z, _ = model.encode(x)
        li = adversarial_loss(model, z, p, ctx, y, state) / 3
        li.backward()
        total += float(li.detach())
    assert abs(total - loss) < 1e-5
    for n, p in model.named_parameters():
        if n in g:
            assert torch.allclose(p.grad, g[n], atol=1e-5), n
