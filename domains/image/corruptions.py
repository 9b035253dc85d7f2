"""MNIST-C: the common corruptions of handwritten digits (Mu & Gilmer, ICML 2019 workshop,
"MNIST-C: A Robustness Benchmark for Computer Vision", arXiv:1906.02337).

The fifteen corruptions of the paper, one severity each, on grayscale batches ``[N, 1, H, W]`` in
[0, 1] (MNIST: white digit on black): noise (shot, impulse), blur (glass, motion), affine
transformations (shear, scale, rotate, translate), brightness, and the digit-specific ones that
add structure the digit never has (stripe, fog, spatter, dotted line, zigzag) or replace it by
its edges (Canny). The parameters follow the paper's descriptions at MNIST's 28 x 28 scale; where
the paper's code used ImageMagick (motion blur) or scikit-image, the same operation is written with
torchvision, scipy.ndimage and PIL's ImageDraw (noted per function). Every random draw (angles,
positions, noise) comes from the cell's generator, one draw per image, so the set is the same for
every model and every batch size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageDraw
from scipy import ndimage

from bench.corruptions import Corruption, register_corruption


def _per_image(fn):
    """Apply ``fn(img: np.ndarray[H, W] in [0, 1], rng) -> np.ndarray`` to every channel-0 image."""

    def wrapped(x, severity, rng, aux):
        arr = x.detach().cpu().numpy()
        out = np.empty_like(arr)
        for i in range(arr.shape[0]):
            for ch in range(arr.shape[1]):
                out[i, ch] = fn(arr[i, ch].astype(np.float64), rng)
        return torch.from_numpy(np.clip(out, 0.0, 1.0)).to(x.dtype)

    wrapped.__doc__ = fn.__doc__
    return wrapped


def _per_image_torch(fn):
    """Apply ``fn(img: Tensor[C, H, W], rng) -> Tensor`` (torchvision geometry) to every image."""

    def wrapped(x, severity, rng, aux):
        return torch.stack([fn(img, rng) for img in x]).clamp(0.0, 1.0).to(x.dtype)

    wrapped.__doc__ = fn.__doc__
    return wrapped


def _sign(rng) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


# ----------------------------------------------------------------------------- noise
def shot_noise(img, rng, photons: float = 5.0):
    """Poisson (shot) noise with ``photons`` expected counts at full intensity (ImageNet-C's shot noise at
    its severity-4 rate, as MNIST-C)."""
    return rng.poisson(img * photons) / photons


def impulse_noise(img, rng, amount: float = 0.17):
    """Salt-and-pepper noise on a share ``amount`` of the pixels, half salt, half pepper."""
    out = img.copy()
    hit = rng.random(img.shape) < amount
    salt = rng.random(img.shape) < 0.5
    out[hit & salt], out[hit & ~salt] = 1.0, 0.0
    return out


# ----------------------------------------------------------------------------- blur
def glass_blur(img, rng, sigma: float = 0.7, delta: int = 1, iterations: int = 2):
    """Glass blur (ImageNet-C): Gaussian blur, then ``iterations`` passes swapping each pixel with a random
    neighbour within ``delta``, then blur again."""
    out = ndimage.gaussian_filter(img, sigma)
    h, w = out.shape
    for _ in range(iterations):
        for yy in range(h - delta - 1, delta - 1, -1):
            for xx in range(w - delta - 1, delta - 1, -1):
                dy, dx = rng.integers(-delta, delta + 1, size=2)
                out[yy, xx], out[yy + dy, xx + dx] = out[yy + dy, xx + dx], out[yy, xx]
    return ndimage.gaussian_filter(out, sigma)


def motion_blur(img, rng, length: int = 11, sigma: float = 2.0):
    """Motion blur along a random direction: the image convolved with a line kernel of ``length`` pixels,
    Gaussian-weighted along the line (ImageMagick's ``-motion-blur`` radius/sigma, written with
    scipy.ndimage instead of Wand)."""
    angle = rng.uniform(-45.0, 45.0)
    k = np.zeros((length, length))
    c = length // 2
    t = np.arange(length) - c
    weights = np.exp(-(t ** 2) / (2 * sigma ** 2))
    for ti, wt in zip(t, weights):
        y = int(round(c + ti * math.sin(math.radians(angle))))
        x = int(round(c + ti * math.cos(math.radians(angle))))
        k[y, x] += wt
    return ndimage.convolve(img, k / k.sum(), mode="constant")


# ----------------------------------------------------------------------------- affine
def shear(img, rng):
    """Shear by a random angle of 20-35 degrees, either sign (torchvision affine, bilinear)."""
    a = _sign(rng) * rng.uniform(20.0, 35.0)
    return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=[a, 0.0],
                     interpolation=TF.InterpolationMode.BILINEAR)


def scale(img, rng):
    """Shrink the digit to 45-65% of its size about the centre."""
    return TF.affine(img, angle=0.0, translate=[0, 0], scale=float(rng.uniform(0.45, 0.65)), shear=[0.0, 0.0],
                     interpolation=TF.InterpolationMode.BILINEAR)


def rotate(img, rng):
    """Rotate by a random angle of 30-60 degrees, either sign."""
    return TF.rotate(img, float(_sign(rng) * rng.uniform(30.0, 60.0)), interpolation=TF.InterpolationMode.BILINEAR)


def translate(img, rng):
    """Shift by 5-7 pixels in a random direction (part of the digit may leave the frame)."""
    r, phi = rng.uniform(5.0, 7.0), rng.uniform(0.0, 2 * math.pi)
    return TF.affine(img, angle=0.0, translate=[int(round(r * math.cos(phi))), int(round(r * math.sin(phi)))],
                     scale=1.0, shear=[0.0, 0.0], interpolation=TF.InterpolationMode.NEAREST)


# ----------------------------------------------------------------------------- photometric
def brightness(img, rng, delta: float = 0.4):
    """Brightness: add ``delta`` to every pixel (the black background turns grey), clipped."""
    return img + delta


# ----------------------------------------------------------------------------- structure
def stripe(img, rng, width: int = 3):
    """A white vertical stripe of ``width`` pixels through the middle third of the image (the paper's
    stripe corruption draws it over the digit)."""
    out = img.copy()
    w = img.shape[1]
    x0 = int(rng.integers(w // 3, 2 * w // 3 - width + 1))
    out[:, x0:x0 + width] = 1.0
    return out


def plasma(rng, size: int, roughness: float = 0.6) -> np.ndarray:
    """A plasma fractal (diamond-square; Fournier, Fussell & Carpenter 1982) on a ``size`` x ``size``
    grid (size = 2^k), normalised to [0, 1]: ImageNet-C's fog texture."""
    a = np.zeros((size + 1, size + 1))
    a[0, 0], a[0, -1], a[-1, 0], a[-1, -1] = rng.random(4)
    step, amp = size, 1.0
    while step > 1:
        h = step // 2
        for y in range(h, size, step):  # diamond
            for x in range(h, size, step):
                a[y, x] = (a[y - h, x - h] + a[y - h, x + h] + a[y + h, x - h] + a[y + h, x + h]) / 4 \
                    + rng.uniform(-amp, amp)
        for y in range(0, size + 1, h):  # square
            for x in range((y + h) % step, size + 1, step):
                nb = [a[yy, xx] for yy, xx in ((y - h, x), (y + h, x), (y, x - h), (y, x + h))
                      if 0 <= yy <= size and 0 <= xx <= size]
                a[y, x] = sum(nb) / len(nb) + rng.uniform(-amp, amp)
        step, amp = h, amp * roughness
    a = a[:size, :size]
    return (a - a.min()) / max(a.max() - a.min(), 1e-12)


def fog(img, rng, strength: float = 0.6):
    """Fog: a plasma-fractal haze of peak ``strength`` added over the image."""
    h, w = img.shape
    size = 1 << max(h, w - 1).bit_length()
    return img + strength * plasma(rng, size)[:h, :w]


def spatter(img, rng, density: float = 0.65, sigma: float = 1.0, thresh: float = 0.7):
    """Spatter (ImageNet-C's "spatter", simplified to grey splashes): Gaussian-smoothed noise above a
    threshold leaves blobs of random size that are added to the image."""
    n = ndimage.gaussian_filter(rng.normal(density, 0.3, img.shape), sigma)
    blobs = np.clip((n - thresh) / (1 - thresh), 0, 1)
    return img + blobs


def _draw(img, draw_fn) -> np.ndarray:
    h, w = img.shape
    canvas = Image.new("L", (w, h), 0)
    draw_fn(ImageDraw.Draw(canvas), w, h)
    return np.maximum(img, np.asarray(canvas, dtype=np.float64) / 255.0)


def dotted_line(img, rng, dot_every: int = 3):
    """A white dotted line between two random points on opposite borders (PIL ImageDraw)."""
    def draw(d, w, h):
        if rng.random() < 0.5:
            p, q = (0.0, rng.uniform(0, h - 1)), (w - 1.0, rng.uniform(0, h - 1))
        else:
            p, q = (rng.uniform(0, w - 1), 0.0), (rng.uniform(0, w - 1), h - 1.0)
        n = int(math.hypot(q[0] - p[0], q[1] - p[1]))
        for i in range(0, n + 1, dot_every):
            t = i / max(n, 1)
            d.point((round(p[0] + t * (q[0] - p[0])), round(p[1] + t * (q[1] - p[1]))), fill=255)
    return _draw(img, draw)


def zigzag(img, rng, segments: int = 5):
    """A white zigzag: a polyline of ``segments`` segments crossing the image left to right, alternating
    up and down (PIL ImageDraw, width 1)."""
    def draw(d, w, h):
        xs = np.linspace(0, w - 1, segments + 1)
        ys = [rng.uniform(0, h / 2) if i % 2 == 0 else rng.uniform(h / 2, h - 1) for i in range(segments + 1)]
        d.line(list(zip(xs.tolist(), ys)), fill=255, width=1)
    return _draw(img, draw)


def canny_edges(img, rng, sigma: float = 1.0, low: float = 0.1, high: float = 0.2):
    """Canny edges (Canny, IEEE TPAMI 1986): Gaussian smoothing, Sobel gradients, non-maximum suppression
    along the gradient direction, hysteresis between ``low`` and ``high`` (fractions of the largest
    gradient). The digit is replaced by its binary edge map."""
    s = ndimage.gaussian_filter(img, sigma)
    gx, gy = ndimage.sobel(s, axis=1), ndimage.sobel(s, axis=0)
    mag = np.hypot(gx, gy)
    if mag.max() <= 0:
        return np.zeros_like(img)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    nms = np.zeros_like(mag)
    h, w = mag.shape
    offsets = {0: (0, 1), 45: (1, 1), 90: (1, 0), 135: (1, -1)}
    q = (np.round(angle / 45.0) * 45.0) % 180.0
    for yy in range(1, h - 1):
        for xx in range(1, w - 1):
            dy, dx = offsets[int(q[yy, xx])]
            if mag[yy, xx] >= mag[yy + dy, xx + dx] and mag[yy, xx] >= mag[yy - dy, xx - dx]:
                nms[yy, xx] = mag[yy, xx]
    strong = nms >= high * mag.max()
    weak = nms >= low * mag.max()
    labels, _ = ndimage.label(weak, structure=np.ones((3, 3)))
    keep = np.unique(labels[strong])
    return np.isin(labels, keep[keep > 0]).astype(np.float64)


MNIST_C = (
    ("shot-noise", _per_image(shot_noise), "Poisson noise, 5 photons at full intensity"),
    ("impulse-noise", _per_image(impulse_noise), "salt-and-pepper noise on 17% of the pixels"),
    ("glass-blur", _per_image(glass_blur), "blur, local pixel shuffling (delta 1, 2 passes), blur"),
    ("motion-blur", _per_image(motion_blur), "11-pixel motion blur at a random angle in [-45, 45] degrees"),
    ("shear", _per_image_torch(shear), "horizontal shear by 20-35 degrees, random sign"),
    ("scale", _per_image_torch(scale), "shrink to 45-65% about the centre"),
    ("rotate", _per_image_torch(rotate), "rotation by 30-60 degrees, random sign"),
    ("brightness", _per_image(brightness), "+0.4 on every pixel"),
    ("translate", _per_image_torch(translate), "shift by 5-7 pixels in a random direction"),
    ("stripe", _per_image(stripe), "white vertical stripe, 3 pixels wide, in the middle third"),
    ("fog", _per_image(fog), "plasma-fractal haze of peak 0.6"),
    ("spatter", _per_image(spatter), "grey splashes from thresholded smooth noise"),
    ("dotted-line", _per_image(dotted_line), "white dotted line between two opposite borders"),
    ("zigzag", _per_image(zigzag), "white 5-segment zigzag across the image"),
    ("canny-edges", _per_image(canny_edges), "the digit replaced by its Canny edge map"),
)

for _name, _fn, _desc in MNIST_C:
    register_corruption(Corruption(f"mnistc-{_name}", "image", _fn, severities=(1,),
                                   description=f"MNIST-C (Mu & Gilmer 2019): {_desc}"))
