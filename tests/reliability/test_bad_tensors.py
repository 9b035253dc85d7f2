"""Bad data through the Python API: one UserError line, before any attack or training step runs."""

from __future__ import annotations

import pytest
import torch

from bench.data import ArrayData
from bench.errors import UserError
from bench.evaluate import evaluate
from bench.registry import MODELS, RECIPES
from bench.threat import ThreatModel
from bench.training import TrainConfig, train

LINF = ThreatModel("linf", 0.1)
LONG = torch.long


def _model():
    torch.manual_seed(0)
    return MODELS.get("smallcnn")(image_size=8)


@pytest.mark.parametrize("x,y,msg", [
    (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=LONG), "evaluate: the dataset is empty"),
    (torch.zeros(4, 3, 5), torch.zeros(4, dtype=LONG), "evaluate: the model cannot run on inputs of shape (3, 5)"),
    (torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=LONG), "inputs (4) and labels (3) differ in length"),
    (torch.zeros(4, 1, 8, 8), torch.zeros(4), "class labels must be a 1-D integer tensor, got float32"),
    (torch.zeros(4, 1, 8, 8), torch.zeros(4, 2, dtype=LONG), "got int64 of shape (4, 2)"),
])
def test_evaluate_rejects_bad_tensors(x, y, msg):
    with pytest.raises(UserError) as err:
        evaluate(_model(), x, y, LINF, "pgd")
    assert msg in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("x,y,msg", [
    (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=LONG), "train: the dataset is empty"),
    (torch.zeros(8, 3, 5), torch.zeros(8, dtype=LONG), "train: the model cannot run on inputs of shape (3, 5)"),
])
def test_train_rejects_bad_tensors_and_leaves_the_model_alone(x, y, msg):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        train(model, ArrayData(x, y), RECIPES.get("erm")(), LINF, TrainConfig(epochs=1), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_probe_draws_no_random_numbers():
    """The shape probe runs in eval mode: training from the same seed is unchanged by it."""
    model = _model()
    model.train()
    data = ArrayData(torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=LONG))
    state = torch.get_rng_state()
    from bench.data import check_inputs

    check_inputs(model, data, "cpu", "train")
    assert torch.equal(state, torch.get_rng_state()) and model.training
