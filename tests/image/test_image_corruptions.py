"""MNIST-C corruptions on real MNIST-5k digits: shape, range, determinism, and what each one does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.corruptions import domain_corruptions, get_corruption
from bench.registry import load_domains
from bench.tracks import get_track
from domains.image.corruptions import MNIST_C, canny_edges, plasma

load_domains()
NAMES = sorted(f"mnistc-{n}" for n, _, _ in MNIST_C)


@pytest.fixture(scope="module")
def digits():
    data, _ = get_track("image-mnist5k-linf-0.3").eval_data()
    return data.inputs[:32]


def test_fifteen_registered_single_severity():
    cs = [c for c in domain_corruptions("image") if c.name.startswith("mnistc-")]
    assert [c.name for c in cs] == NAMES and len(cs) == 15
    assert all(c.severities == (1,) for c in cs)
    with pytest.raises(ValueError):
        get_corruption("image/mnistc-fog")(torch.zeros(1, 1, 28, 28), 2)


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_determinism_and_change(digits, name):
    c = get_corruption(f"image/{name}")
    y = c(digits, 1, seed=0)
    assert y.shape == digits.shape and y.dtype == digits.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(y, c(digits, 1, seed=0))
    changed = (y - digits).abs().flatten(1).amax(1) > 0.05
    assert changed.float().mean() >= 0.9, name


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("mnistc-brightness", "mnistc-canny-edges")])
def test_random_ones_depend_on_the_seed(digits, name):
    c = get_corruption(f"image/{name}")
    assert not torch.equal(c(digits, 1, seed=0), c(digits, 1, seed=1))


def test_brightness_and_stripe_exact(digits):
    b = get_corruption("image/mnistc-brightness")(digits, 1, seed=0)
    assert torch.allclose(b, (digits + 0.4).clamp(0, 1))
    s = get_corruption("image/mnistc-stripe")(digits, 1, seed=0)
    full = (s == 1.0).all(dim=2).squeeze(1)  # columns that are white from top to bottom
    assert (full.sum(1) >= 3).all() and (full[:, :9].sum() == 0) and (full[:, 19:].sum() == 0)


def test_geometry_moves_mass_the_way_it_says(digits):
    x = digits

    def centroid(im):
        m = im.squeeze(1)
        ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        tot = m.sum((1, 2)).clamp_min(1e-6)
        return torch.stack([(m * ys).sum((1, 2)) / tot, (m * xs).sum((1, 2)) / tot], 1)

    sc = get_corruption("image/mnistc-scale")(x, 1, seed=0)
    assert (sc.sum((1, 2, 3)) < 0.7 * x.sum((1, 2, 3))).all()  # 45-65% of the size: about a third of the ink
    tr = get_corruption("image/mnistc-translate")(x, 1, seed=0)
    inside = (tr.sum((1, 2, 3)) > 0.9 * x.sum((1, 2, 3)))
    shift = (centroid(tr) - centroid(x)).norm(dim=1)
    assert ((shift[inside] > 4.0) & (shift[inside] < 7.6)).all()


def test_rotation_angle_is_in_range():
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 14, 22] = 1.0  # a point 8 px right of the centre (13.5, 13.5)... (14, 22)
    rot = get_corruption("image/mnistc-rotate")(img.repeat(16, 1, 1, 1), 1, seed=0)
    for r in rot:
        yy, xx = np.unravel_index(int(r.squeeze().argmax()), (28, 28))
        ang = abs(math.degrees(math.atan2(-(yy - 13.5), xx - 13.5)) - math.degrees(math.atan2(-(14 - 13.5), 22 - 13.5)))
        assert 25 <= ang <= 65


def test_canny_is_binary_edges_of_a_square():
    img = np.zeros((28, 28))
    img[8:20, 8:20] = 1.0
    e = canny_edges(img, None)
    assert set(np.unique(e)) <= {0.0, 1.0}
    assert e[14, 14] == 0.0 and e[0, 0] == 0.0  # not the inside, not the background
    assert e[7:10, 8:20].any(axis=0).all()  # the top edge is found along its length


def test_plasma_is_a_normalised_fractal():
    p = plasma(np.random.default_rng(0), 32)
    assert p.shape == (32, 32) and p.min() == 0.0 and p.max() == 1.0
    assert abs(np.corrcoef(p[:, :-1].ravel(), p[:, 1:].ravel())[0, 1]) > 0.5  # smooth, not white noise


@pytest.mark.parametrize("name", NAMES)
def test_a_prefix_of_the_batch_is_corrupted_the_same(digits, name):
    c = get_corruption(f"image/{name}")
    assert torch.equal(c(digits[:5], 1, seed=0), c(digits, 1, seed=0)[:5])
