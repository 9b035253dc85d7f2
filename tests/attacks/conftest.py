"""Shared fixtures of the attack tests: a small model trained on real data (scikit-learn digits)."""

from __future__ import annotations

import pytest
import torch

import domains.image  # noqa: F401  (registers datasets, models, tracks)
from bench.checkpoint import load_checkpoint
from bench.pipeline import train_track
from bench.tracks import get_track


@pytest.fixture(scope="session")
def digits_track():
    return get_track("image-digits-linf-0.2")


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory, digits_track):
    """SmallCNN trained with ERM on digits for 4 epochs (a few seconds)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("digits") / "erm" / "model.safetensors"
    return train_track(digits_track, "erm", epochs=4, out=out, progress=False, log=lambda s: None)


@pytest.fixture(scope="session")
def digits_model(digits_ckpt):
    return load_checkpoint(digits_ckpt).eval()


@pytest.fixture(scope="session")
def digits_batch(digits_track):
    """The first 48 examples of the track's fixed evaluation subset."""
    x, y = digits_track.test_data()
    return x[:48], y[:48]
