"""MNIST-C corruptions on real MNIST-5k digits: shape, range, determinism, and that each one does what the
reference code (google-research/mnist-c) does at its default severity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.corruptions import domain_corruptions, get_corruption
from bench.registry import load_domains
from bench.tracks import get_track
from domains.image.corruption_ops import glass_blur as glass_blur_op, motion_blur as motion_blur_op, \
    motion_kernel, plasma_fractal
from domains.image.corruptions import MNIST_C, canny_edges

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


DETERMINISTIC = ("mnistc-brightness", "mnistc-canny-edges", "mnistc-scale", "mnistc-stripe")  # as in the reference


@pytest.mark.parametrize("name", [n for n in NAMES if n not in DETERMINISTIC])
def test_random_ones_depend_on_the_seed(digits, name):
    c = get_corruption(f"image/{name}")
    assert not torch.equal(c(digits, 1, seed=0), c(digits, 1, seed=1))


def test_brightness_and_stripe_exact(digits):
    b = get_corruption("image/mnistc-brightness")(digits, 1, seed=0)
    assert torch.allclose(b, (digits + 0.5).clamp(0, 1), atol=1e-6)  # +0.5 HSV value on grey
    s = get_corruption("image/mnistc-stripe")(digits, 1, seed=0)
    assert torch.allclose(s[..., :7], 1 - digits[..., :7]) and torch.allclose(s[..., 21:], 1 - digits[..., 21:])
    assert torch.equal(s[..., 7:21], digits[..., 7:21])


def test_noise_rates_are_the_reference_ones(digits):
    x = digits.repeat(8, 1, 1, 1)
    shot = get_corruption("image/mnistc-shot-noise")(x, 1, seed=0)
    assert set(torch.unique(shot * 3).round().tolist()) <= {0.0, 1.0, 2.0, 3.0}  # Poisson(3x) / 3, clipped
    ink = x > 0.99
    p = [math.exp(-3) * 3 ** k / math.factorial(k) for k in range(3)]  # Poisson(3): P(0), P(1), P(2)
    expected = (p[1] + 2 * p[2] + 3 * (1 - sum(p))) / 3  # E[min(N, 3)] / 3 on full-intensity pixels
    assert abs(float(shot[ink].mean()) - expected) < 0.01
    imp = get_corruption("image/mnistc-impulse-noise")(x, 1, seed=0)
    salted, peppered = float((imp[x == 0] == 1).float().mean()), float((imp[x == 1] == 0).float().mean())
    assert abs(salted - 0.085) < 0.01 and abs(peppered - 0.085) < 0.02  # 17 % hit, half salt, half pepper


def test_geometry_moves_mass_the_way_it_says(digits):
    x = digits

    def centroid(im):
        m = im.squeeze(1)
        ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        tot = m.sum((1, 2)).clamp_min(1e-6)
        return torch.stack([(m * ys).sum((1, 2)) / tot, (m * xs).sum((1, 2)) / tot], 1)

    sc = get_corruption("image/mnistc-scale")(x, 1, seed=0)
    ratio = sc.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert ((ratio > 0.4) & (ratio < 0.6)).all()  # 70 % of the size: about half of the ink
    tr = get_corruption("image/mnistc-translate")(x, 1, seed=0)
    inside = (tr.sum((1, 2, 3)) > 0.999 * x.sum((1, 2, 3)))  # nothing left the frame
    d = (centroid(tr) - centroid(x))[inside].abs()
    assert inside.sum() > 20 and ((d - 3).abs() < 1e-3).all()  # 3 px on each axis


def test_rotation_angle_is_the_reference_one():
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 13, 23] = img[0, 0, 14, 23] = 1.0  # 9.5 px right of the centre (13.5, 13.5)
    rot = get_corruption("image/mnistc-rotate")(img.repeat(16, 1, 1, 1), 1, seed=0)
    signs = set()
    for r in rot:
        m = r.squeeze().double()
        ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        cy, cx = float((m * ys).sum() / m.sum()), float((m * xs).sum() / m.sum())
        ang = math.atan2(cy - 13.5, cx - 13.5)
        assert abs(abs(ang) - 0.4) < 0.05, ang
        signs.add(ang > 0)
    assert signs == {True, False}


def test_motion_blur_is_imagemagicks_one_sided_kernel():
    k = motion_kernel(10, 3)
    assert len(k) == 21 and abs(k.sum() - 1) < 1e-12 and (np.diff(k) < 0).all()
    img = np.zeros((28, 28))
    img[14, 24] = 1.0
    out = motion_blur_op(img, 10, 3, 0.0)  # angle 0: each pixel averages the 21 pixels to its right
    assert np.allclose(out[14, 4:25], k[::-1]) and out[14, 25:].sum() == 0 and out[:14].sum() == 0
    diag = motion_blur_op(img, 10, 3, 45.0)
    assert diag[13, 23] > 0 and diag[14, 23] == 0  # along the diagonal, not the row


def test_glass_blur_swaps_or_copies():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(28, 28)) / 255.0
    swapped = glass_blur_op(img, np.random.default_rng(1), 1e-3, 1, 2, swap=True)
    copied = glass_blur_op(img, np.random.default_rng(1), 1e-3, 1, 2, swap=False)
    assert np.allclose(np.sort(swapped.ravel()), np.sort(img.ravel()), atol=1 / 255)  # a permutation
    assert not np.allclose(np.sort(copied.ravel()), np.sort(img.ravel()), atol=1 / 255)


def test_canny_is_binary_edges_of_a_square():
    img = np.zeros((28, 28))
    img[8:20, 8:20] = 1.0
    e = canny_edges(img, None)
    assert set(np.unique(e)) <= {0.0, 1.0}
    assert e[14, 14] == 0.0 and e[0, 0] == 0.0  # not the inside, not the background
    assert e[7:10, 8:20].any(axis=0).all()  # the top edge is found along its length


def test_plasma_is_a_normalised_fractal():
    p = plasma_fractal(np.random.default_rng(0), 32, 1.4)
    assert p.shape == (32, 32) and p.min() == 0.0 and p.max() == 1.0
    assert abs(np.corrcoef(p[:, :-1].ravel(), p[:, 1:].ravel())[0, 1]) > 0.5  # smooth, not white noise
    rough = plasma_fractal(np.random.default_rng(0), 32, 1.0)
    assert np.abs(np.diff(rough, axis=1)).mean() > np.abs(np.diff(p, axis=1)).mean()  # decay smooths
    with pytest.raises(ValueError):
        plasma_fractal(np.random.default_rng(0), 30)


def test_fog_keeps_the_digit_brightest_and_dims_it(digits):
    f = get_corruption("image/mnistc-fog")(digits, 1, seed=0)
    assert (f.flatten(1).amax(1) <= digits.flatten(1).amax(1) * 1.0 + 1e-6).all()
    assert (f.flatten(1).amax(1) >= 0.25 * digits.flatten(1).amax(1) - 1e-6).all()  # max / (max + 3) >= 1/4


@pytest.mark.parametrize("name", NAMES)
def test_a_prefix_of_the_batch_is_corrupted_the_same(digits, name):
    c = get_corruption(f"image/{name}")
    assert torch.equal(c(digits[:5], 1, seed=0), c(digits, 1, seed=0)[:5])


def test_fashion_mnist_corruption_track_uses_the_same_fifteen():
    from domains.image.datasets import DEBIAN_FASHION

    t = get_track("image-fashionmnist-mnistc")
    assert t.kind == "corruption" and t.checkpoints_from == "image-fashionmnist-linf-0.1"
    assert [c.split("/")[1] for c in t.corruptions] == NAMES
    if not DEBIAN_FASHION.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    data, _ = t.eval_data()
    x = data.inputs[:16]
    assert x.shape == (16, 1, 28, 28) and float(x.max()) <= 1.0
    for name in NAMES:
        y = get_corruption(f"image/{name}")(x, 1, seed=0)
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
