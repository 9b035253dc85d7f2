"""CUDA path (skipped without a GPU): bf16 autocast + channels_last training and evaluation."""

import pytest
import torch

from bench.evaluate import evaluate
from bench.registry import MODELS, RECIPES
from bench.threat import ThreatModel
from bench.training import TrainConfig, train


@pytest.mark.gpu
def test_pgd_at_bf16_channels_last_on_cuda(digits_data):
    train_data, test = digits_data
    model = MODELS.get("smallcnn")(image_size=8)
    hist = train(model, train_data, RECIPES.get("pgd-at")(steps=3), ThreatModel("linf", 0.1),
                 TrainConfig(epochs=2, batch_size=128, seed=0, bf16=True, channels_last=True, device="cuda"),
                 progress=False)
    assert next(model.parameters()).is_cuda
    assert hist[-1]["train_accuracy"] > 0.3
    m = evaluate(model, test.inputs.cuda(), test.y.cuda(), ThreatModel("linf", 0.1), "pgd").metrics()
    assert m["clean_accuracy"] > 0.5 and m["robust_accuracy"] <= m["clean_accuracy"]
