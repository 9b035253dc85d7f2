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
