"""MNIST-C: the common corruptions of handwritten digits (Mu & Gilmer, ICML 2019 workshop,
"MNIST-C: A Robustness Benchmark for Computer Vision", arXiv:1906.02337).

The fifteen corruptions of the released set, on grayscale batches ``[N, 1, H, W]`` in [0, 1]
(MNIST: white digit on black), each at the single severity the reference code (google-research/
mnist-c, ``corruptions.py``) uses by default: shot noise (3 photons at full intensity), impulse noise
(17 % salt and pepper), glass blur (sigma 0.7, delta 1, 2 passes), motion blur (ImageMagick radius
10, sigma 3, angle in [-45, 45] degrees), shear (0.4, either sign), scale (to 70 %), rotate
(0.4 rad, either sign), brightness (+0.5 in HSV value), translate (3 px on each axis, random signs),
stripe (outer quarters inverted), fog (plasma fractal, strength 3, decay 1.4), spatter (mud blobs),
dotted line, zigzag and Canny edges. The parameters, constants and order of operations are the
reference's, so accuracies are comparable with published MNIST-C numbers up to sampling (the random
draws are ours: every draw comes from the cell's generator, image by image, so the set is the same
for every model and every batch size, and a prefix of the evaluation set is corrupted the same).
scikit-image does what it did in the reference (Gaussian filters, affine warps, salt-and-pepper noise,
HSV, Canny); ImageMagick's motion blur and the plasma fractal are in :mod:`domains.image.corruption_ops`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage import color, feature, transform, util
from skimage.filters import gaussian

from bench.corruptions import Corruption, register_corruption
from domains.image.corruption_ops import glass_blur as _glass, motion_blur as _motion, plasma_fractal


def _per_image(fn):
    """Apply ``fn(img: np.ndarray[H, W] in [0, 1], rng) -> np.ndarray`` to every channel of every image."""

    def wrapped(x, severity, rng, aux):
        arr = x.detach().cpu().numpy()
        out = np.empty_like(arr)
        for i in range(arr.shape[0]):
            for ch in range(arr.shape[1]):
                out[i, ch] = fn(arr[i, ch].astype(np.float64), rng)
        return torch.from_numpy(np.clip(out, 0.0, 1.0)).to(x.dtype)

    wrapped.__doc__ = fn.__doc__
    return wrapped


def _sign(rng) -> float:
    return float(rng.choice([-1.0, 1.0]))


# ----------------------------------------------------------------------------- noise
def shot_noise(img, rng, photons: float = 3.0):
    """Poisson (shot) noise: ``Poisson(x * photons) / photons`` (reference severity 5)."""
    return rng.poisson(img * photons) / photons


def impulse_noise(img, rng, amount: float = 0.17):
    """Salt-and-pepper noise on a share ``amount`` of the pixels, half salt, half pepper (scikit-image's
    ``random_noise(mode="s&p")``, reference severity 4)."""
    return util.random_noise(img, mode="s&p", amount=amount, rng=rng)


# ----------------------------------------------------------------------------- blur
def glass_blur(img, rng, sigma: float = 0.7, delta: int = 1, iterations: int = 2):
    """Glass blur (reference severity 1: sigma 0.7, delta 1, 2 passes)."""
    return _glass(img, rng, sigma, delta, iterations)


def motion_blur(img, rng, radius: float = 10.0, sigma: float = 3.0):
    """ImageMagick motion blur, radius 10, sigma 3, at a random angle in [-45, 45] degrees (reference
    severity 1), the result quantised to 8 bits as the reference's PNG round trip does."""
    out = _motion(np.round(img * 255.0) / 255.0, radius, sigma, float(rng.uniform(-45.0, 45.0)))
    return np.round(np.clip(out, 0.0, 1.0) * 255.0) / 255.0


# ----------------------------------------------------------------------------- affine
def _warp_about_centre(img, **params):
    """scikit-image ``warp`` with an affine map (output -> input coordinates) that keeps the image centre
    fixed, as the reference builds it (bilinear, zero outside)."""
    centre = (img.shape[1] - 1) / 2.0
    aff = transform.AffineTransform(**params)
    (a1, a2), (b1, b2) = aff.params[0, :2], aff.params[1, :2]
    shift = [centre * (1 - a1 - a2), centre * (1 - b1 - b2)]
    return transform.warp(img, inverse_map=transform.AffineTransform(**params, translation=shift))


def shear(img, rng, amount: float = 0.4):
    """Shear by 0.4 (reference severity 2), random sign, about the centre."""
    return _warp_about_centre(img, shear=_sign(rng) * amount)


def scale(img, rng, factor: float = 1 / 0.7):
    """Shrink to 70 % about the centre (reference severity 3: the inverse map scales by 1 / 0.7)."""
    return _warp_about_centre(img, scale=(factor, factor))


def rotate(img, rng, angle: float = 0.4):
    """Rotate by 0.4 rad (23 degrees; reference severity 2), random sign, about the centre."""
    return _warp_about_centre(img, rotation=_sign(rng) * angle)


def translate(img, rng, pixels: int = 3):
    """Shift by 3 pixels on each axis with random signs (reference severity 3)."""
    dx, dy = pixels * _sign(rng), pixels * _sign(rng)
    return transform.warp(img, inverse_map=transform.AffineTransform(translation=[dx, dy]))


# ----------------------------------------------------------------------------- photometric
def brightness(img, rng, delta: float = 0.5):
    """Brightness (reference severity 5): +0.5 on the HSV value channel, through scikit-image's colour
    conversions (for a grey image: ``clip(x + 0.5)``)."""
    hsv = color.rgb2hsv(color.gray2rgb(img))
    hsv[..., 2] = np.clip(hsv[..., 2] + delta, 0.0, 1.0)
    return color.rgb2gray(color.hsv2rgb(hsv))


# ----------------------------------------------------------------------------- structure
def stripe(img, rng):
    """Invert the outer quarters (columns 0-6 and 21-27 of 28), leaving a vertical stripe of the
    original in the middle half."""
    out = img.copy()
    q = img.shape[1] // 4
    out[:, :q] = 1.0 - out[:, :q]
    out[:, img.shape[1] - q:] = 1.0 - out[:, img.shape[1] - q:]
    return out


def fog(img, rng, strength: float = 3.0, decay: float = 1.4):
    """Fog (reference severity 5): a plasma fractal of weight 3 (decay 1.4) added, then the image rescaled
    by ``max / (max + 3)`` so the digit stays the brightest thing in it."""
    h, w = img.shape
    peak = img.max()
    out = img + strength * plasma_fractal(rng, 256, decay)[:h, :w]
    return out * peak / (peak + strength)


def spatter(img, rng, loc: float = 0.65, scale_: float = 0.3, sigma: float = 1.0, thresh: float = 0.65,
            mask_sigma: float = 1.5):
    """Mud spatter (reference severity 4): Gaussian noise N(0.65, 0.3) smoothed with sigma 1, kept above
    0.65, its mask smoothed with sigma 1.5 and kept above 0.8; masked pixels become mud grey 63/255."""
    liquid = gaussian(rng.normal(loc, scale_, img.shape), sigma=sigma)
    liquid[liquid < thresh] = 0
    m = gaussian((liquid > thresh).astype(np.float64), sigma=mask_sigma)
    m[m < 0.8] = 0
    return img * (1 - m) + 63 / 255.0 * m


def line_from_points(c0: float, r0: float, c1: float, r1: float, size: int = 28) -> np.ndarray:
    """An anti-aliased line from column ``c0`` (row ``r0``) to column ``c1`` (row ``r1``): intensity
    ``1 + log(1 - d / 2.3)`` at vertical distance ``d`` from the line (zero from d = 2.3 on), clipped
    to [0, 1] and to the columns between the end points."""
    if c1 == c0:
        return np.zeros((size, size))
    cc, rr = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), sparse=True)
    slope = (r1 - r0) / (c1 - c0)
    dist = np.clip(np.abs(rr - (slope * (cc - c0) + r0)), 0, 2.3 - 1e-10)
    out = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    out[:, :int(math.floor(c0))] = 0
    out[:, int(math.ceil(c1)):] = 0
    return out


def dotted_line(img, rng):
    """A line from the left border (random row) to the right border (random row), drawn in 2-pixel
    dashes (columns 0-1 off, 2-3 on, ...), added to the image."""
    size = img.shape[1]
    r0, r1 = rng.integers(0, size - 1, size=2)
    line = line_from_points(0, r0, size - 1, r1, size)
    for start in range(0, size, 4):
        line[:, start:start + 2] = 0
    return img + line


def zigzag(img, rng, a: float = 2.0, b: float = 2.0):
    """A zigzag of teeth ``a`` long and ``b`` high along a random line from column 2 to 25 (start row
    random, end row within 5 of it), drawn segment by segment with :func:`line_from_points`."""
    size = img.shape[1]
    c0, c1 = 2, 25
    r0 = int(rng.integers(0, size - 1))
    r1 = r0 + int(rng.integers(-5, 5))
    theta = math.atan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / math.cos(theta)
    pts = [(0.0, 0.0)]
    r_i = 0.0
    for i in range(int((d - a) // (2 * a)) + 1):
        r_i = (-1) ** i * b
        pts.append(((2 * i + 1) * a, r_i))
    last_full = (2 * a) * (d // (2 * a))
    if d != last_full:
        pts.append((d, r_i / (2 * (d - last_full))))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cs, rs = rot @ np.array(pts).T
    cs, rs = cs + c0, rs + r0
    out = img.copy()
    for i in range(1, len(cs)):
        out = np.clip(out + line_from_points(cs[i - 1], rs[i - 1], cs[i], rs[i], size), 0, 1)
    return out


def canny_edges(img, rng):
    """The digit replaced by its Canny edge map (Canny 1986; scikit-image's ``feature.canny`` with its
    defaults: sigma 1, hysteresis thresholds 0.1 / 0.2)."""
    return feature.canny(img).astype(np.float64)


MNIST_C = (
    ("shot-noise", shot_noise, "Poisson noise, 3 photons at full intensity"),
    ("impulse-noise", impulse_noise, "salt-and-pepper noise on 17% of the pixels"),
    ("glass-blur", glass_blur, "blur (sigma 0.7), local pixel swaps (delta 1, 2 passes), blur"),
    ("motion-blur", motion_blur, "ImageMagick motion blur radius 10, sigma 3, angle in [-45, 45] degrees"),
    ("shear", shear, "shear 0.4, random sign, about the centre"),
    ("scale", scale, "shrink to 70% about the centre"),
    ("rotate", rotate, "rotation by 0.4 rad, random sign"),
    ("brightness", brightness, "+0.5 on the HSV value"),
    ("translate", translate, "shift by 3 px on each axis, random signs"),
    ("stripe", stripe, "outer quarters inverted"),
    ("fog", fog, "plasma-fractal fog, strength 3, decay 1.4"),
    ("spatter", spatter, "mud-grey blobs from thresholded smooth noise"),
    ("dotted-line", dotted_line, "dashed line between the left and right borders"),
    ("zigzag", zigzag, "zigzag line across the image"),
    ("canny-edges", canny_edges, "the digit replaced by its Canny edge map"),
)

for _name, _fn, _desc in MNIST_C:
    register_corruption(Corruption(f"mnistc-{_name}", "image", _per_image(_fn), severities=(1,),
                                   description=f"MNIST-C (Mu & Gilmer 2019): {_desc}"))
