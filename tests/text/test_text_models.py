"""Text models in embedding space: masks, relative eps per model, checkpoints with their tokenizer."""

import pytest
import torch

from bench.attacks.pgd import PGD
from bench.checkpoint import load_checkpoint, save_checkpoint
from bench.threat import ThreatModel
from domains.text import datasets as tds
from domains.text.models import minilm_l6, tiny_bert

torch.set_num_threads(1)
THREAT = ThreatModel.from_id("emb-l2-0.05")


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    train = tds.rotten_tomatoes("train").subset(torch.arange(400))
    model = tiny_bert(hidden=32, layers=1, heads=2, intermediate=64, vocab_size=800)
    data = model.prepare(train)
    return model.eval(), data


def test_threat_id_is_relative_per_token_without_bounds():
    assert (THREAT.space, THREAT.scale, THREAT.per, THREAT.bounds) == ("embedding", "relative", "token", None)


def test_prepare_trains_wordpiece_and_marks_specials(small):
    model, data = small
    tok = model.tokenizer
    assert 300 < len(tok) <= 800  # trained on the 400 training texts
    ids, am = data.inputs["input_ids"], data.inputs["attention_mask"]
    assert ids.shape == (400, 64) and int(am.sum(1).min()) >= 3
    first = tok.convert_ids_to_tokens(ids[0, : int(am[0].sum())].tolist())
    assert first[0] == "[CLS]" and first[-1] == "[SEP]"


def test_pgd_never_moves_padding_or_special_tokens(small):
    model, data = small
    x = {k: v[:16] for k, v in data.inputs.items() if k != "text"}
    z, ctx = model.encode(x)
    z = z.detach()
    specials = torch.isin(x["input_ids"][:, : z.shape[1]], torch.tensor(model.special_ids))
    frozen = specials | (x["attention_mask"][:, : z.shape[1]] == 0)
    assert frozen[:, 0].all() and frozen.any(1).all() and (~frozen).any()
    z_adv = PGD(steps=5, rel_step=0.5).run(model, z, ctx, data.y[:16], THREAT)
    moved = (z_adv - z).norm(dim=-1)
    assert float(moved[frozen].abs().max()) == 0.0
    assert float(moved[~frozen].min()) > 0  # every real token moves, within its own ball:
    assert float(moved.max()) <= 0.05 * ctx.eps_scale * (1 + 1e-5)
    assert ctx.mask.shape == (16, z.shape[1], 1)
    random_start = THREAT.random_init(z, ctx, seed=1)
    assert float((random_start - z).norm(dim=-1)[frozen].max()) == 0.0


def test_relative_eps_uses_each_models_own_embedding_norm(small):
    model, data = small
    x = {k: v[:4] for k, v in data.inputs.items() if k != "text"}
    z, ctx = model.encode(x)
    rows = model.net.get_input_embeddings().weight.detach().norm(dim=1)
    assert ctx.eps_scale == pytest.approx(float(rows.mean()), rel=1e-6)
    assert torch.allclose(THREAT.radius(z, ctx), torch.full(z.shape[:2], 0.05 * float(rows.mean())))
    with torch.no_grad():
        model.net.get_input_embeddings().weight.mul_(3.0)
    try:
        _, ctx3 = model.encode(x)
        assert ctx3.eps_scale == pytest.approx(3 * ctx.eps_scale, rel=1e-5)
    finally:
        with torch.no_grad():
            model.net.get_input_embeddings().weight.div_(3.0)
    big = minilm_l6()
    zb, ctxb = big.encode(big.tokenize(["a fine film"]))
    assert ctxb.eps_scale == pytest.approx(float(big.net.get_input_embeddings().weight.detach().norm(dim=1).mean()), rel=1e-6)
    assert 0.5 < ctxb.eps_scale < 2.0 and abs(ctxb.eps_scale - ctx.eps_scale) > 0.1  # per model, not global


def test_checkpoint_round_trip_keeps_the_tokenizer(small, tmp_path):
    model, data = small
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"model": "tiny-bert"})
    back = load_checkpoint(path)
    x = {k: v[:8] for k, v in data.inputs.items() if k != "text"}
    assert back.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    assert torch.allclose(back.predict(x), model.predict(x), atol=1e-6)
    assert torch.equal(back.tokenize(["A very fine film."])["input_ids"], model.tokenize(["A very fine film."])["input_ids"])


def test_hf_model_from_a_local_folder(tmp_path, small):
    from transformers import BertConfig, BertForSequenceClassification

    from bench.errors import UserError
    from bench.registry import MODELS

    model, _ = small
    cfg = BertConfig(vocab_size=len(model.tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "clf")
    model.tokenizer.save_pretrained(tmp_path / "clf")
    hf = MODELS.get("hf")(path=str(tmp_path / "clf"), max_len=32)
    x = hf.tokenize(["a fine film", "a dull film"])
    z, ctx = hf.encode(x)
    assert z.shape[-1] == 32 and hf(z, ctx).shape == (2, 2)
    ref = BertForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    assert torch.allclose(hf.eval().predict(x), ref(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits,
                          atol=1e-5)
    back = load_checkpoint(save_checkpoint(tmp_path / "ck" / "m.safetensors", hf, {"model": "hf"}))
    assert torch.allclose(back.predict(x), hf.predict(x), atol=1e-6)
    with pytest.raises(UserError, match="local checkpoint folder"):
        MODELS.get("hf")(path=str(tmp_path / "missing"))


def test_wordpiece_vocabulary_is_reproducible():
    from domains.text.models import SPECIALS, train_wordpiece

    texts = list(tds.rotten_tomatoes("train").inputs[:300])
    a, b = train_wordpiece(texts, 500), train_wordpiece(texts, 500)
    assert a.get_vocab() == b.get_vocab()
    assert [a.convert_ids_to_tokens(i) for i in range(5)] == SPECIALS
    assert a("a fine film")["input_ids"] == b("a fine film")["input_ids"]
