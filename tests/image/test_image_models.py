import pytest
import torch

from bench.registry import MODELS


@pytest.mark.parametrize("name,shape", [("smallcnn", (2, 1, 28, 28)), ("smallcnn", (2, 1, 8, 8)),
                                        ("lenet", (2, 1, 28, 28)), ("preact-resnet18", (2, 3, 32, 32))])
def test_models_take_raw_pixels_and_give_logits(name, shape):
    torch.manual_seed(0)
    m = MODELS.get(name)(in_channels=shape[1], image_size=shape[-1]).eval()
    x = torch.rand(shape, requires_grad=True)
    out = m(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_normalization_is_inside_the_model():
    m = MODELS.get("smallcnn")(mean=(0.5,), std=(0.25,)).eval()
    x = torch.full((1, 1, 28, 28), 0.5)
    assert torch.allclose(m.normalize(x), torch.zeros_like(x))


@pytest.mark.slow
def test_wrn_34_10_builds():
    m = MODELS.get("wrn-34-10")()
    assert sum(p.numel() for p in m.parameters()) > 40_000_000
