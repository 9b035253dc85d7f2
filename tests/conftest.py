"""Shared fixtures: small real data (scikit-learn digits) and a briefly trained model."""

from __future__ import annotations

import pytest
import torch

import bench
from bench.pipeline import build_model
from bench.tracks import get_track
from bench.training import TrainConfig, train
from bench.registry import RECIPES


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def digits_track():
    return get_track("image-digits-linf-0.2")


@pytest.fixture(scope="session")
def digits_data(digits_track):
    train_data = digits_track.dataset_split("train")
    test_data, idx = digits_track.eval_data()
    return train_data, test_data


@pytest.fixture(scope="session")
def digits_model(digits_track, digits_data):
    """A SmallCNN trained with ERM for a few epochs on the 8x8 digits (about 3 s)."""
    train_data, _ = digits_data
    torch.manual_seed(0)
    model = build_model(digits_track, train_data)
    train(model, train_data, RECIPES.get("erm")(), digits_track.threat,
          TrainConfig(epochs=8, batch_size=64, lr=2e-3, seed=0), progress=False)
    return model.eval()


# ----------------------------------------------------------------- tiny models for the model resolver
#: reduced budgets of the official suites' attacks: the suites themselves (names, order, losses) are kept
SMALL_BUDGET = {"steps": 3, "restarts": 1, "targets": 2, "queries": 20}


@pytest.fixture(scope="session")
def small_suite():
    """``small_suite(suite)``: the same attacks as a track's official suite, with a few steps each."""
    from dataclasses import replace

    from bench.suites import resolve_suite

    def reduce(suite):
        return tuple(replace(s, params={k: (min(v, SMALL_BUDGET[k]) if k in SMALL_BUDGET else v)
                                        for k, v in s.params.items()}) for s in resolve_suite(suite))

    return reduce


def build_tiny_hf(kind: str, folder, num_labels: int = 10, channels: int = 1, sampling_rate: int = 16000):
    """A random-initialised transformers model + its processor saved in ``folder`` (no hub is touched).

    ``kind``: ``image`` (ViT, 16x16 input), ``audio`` (wav2vec 2.0 classifier), ``ctc`` (wav2vec 2.0 CTC with
    a character vocabulary) or ``text`` (BERT with a WordPiece tokenizer trained by ``tokenizers``).
    """
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if kind == "image":
        from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

        cfg = ViTConfig(image_size=16, patch_size=4, num_channels=channels, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=num_labels)
        ViTForImageClassification(cfg).save_pretrained(folder)
        ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * channels,
                          image_std=[0.25] * channels).save_pretrained(folder)
    elif kind in ("audio", "ctc"):
        from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                                  Wav2Vec2ForSequenceClassification)

        vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "'": 5}
        vocab.update({c: 6 + i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")})
        cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                             conv_dim=(8, 8), conv_kernel=(10, 8), conv_stride=(5, 8), num_conv_pos_embeddings=16,
                             num_conv_pos_embedding_groups=2, vocab_size=len(vocab), pad_token_id=0,
                             num_labels=num_labels, classifier_proj_size=8, mask_time_prob=0.0)
        (Wav2Vec2ForCTC(cfg) if kind == "ctc" else Wav2Vec2ForSequenceClassification(cfg)).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sampling_rate, padding_value=0.0, do_normalize=True,
                                 return_attention_mask=False).save_pretrained(folder)
        if kind == "ctc":
            (folder / "vocab.json").write_text(json.dumps(vocab))
            Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                 word_delimiter_token="|").save_pretrained(folder)
    elif kind == "text":
        from transformers import BertConfig, BertForSequenceClassification

        from domains.text.models import train_wordpiece

        texts = ["a good film with a fine cast", "a bad film , dull and slow", "the plot is thin but the acting works",
                 "one of the best films this year", "the worst movie of the year"] * 4
        tok = train_wordpiece(texts, 200)
        tok.model_max_length = 32
        tok.save_pretrained(folder)
        cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64, num_labels=num_labels, pad_token_id=0)
        BertForSequenceClassification(cfg).save_pretrained(folder)
    else:
        raise ValueError(kind)
    return folder


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """``tiny_hf(kind, **kw)`` -> a folder holding a tiny random transformers model (built once per arguments)."""
    made = {}

    def make(kind: str, **kw):
        key = (kind, tuple(sorted(kw.items())))
        if key not in made:
            made[key] = build_tiny_hf(kind, tmp_path_factory.mktemp(f"hf-{kind}"), **kw)
        return made[key]

    return make
