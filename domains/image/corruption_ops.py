"""Building blocks shared by the image corruption sets (MNIST-C, CIFAR-10-C).

Hendrycks & Dietterich (ICLR 2019) made ImageNet-C / CIFAR-10-C with scikit-image, OpenCV and
ImageMagick (through Wand); Mu & Gilmer (2019) reused the same operations for MNIST-C. These are the
operations whose behaviour is not a single library call, written here from their definitions so that
no ImageMagick or OpenCV install is needed:

- :func:`plasma_fractal`: the diamond-square height map (Fournier, Fussell & Carpenter 1982) on a
  torus, as the fog corruption uses it (random offsets scaled by ``wibble``, which starts at 100 and
  is divided by ``wibbledecay`` at every level), normalised to [0, 1];
- :func:`motion_blur`: ImageMagick's ``MotionBlurImage`` (``-motion-blur radius x sigma + angle``):
  a one-sided Gaussian kernel of ``2 * ceil(radius) + 1`` taps laid along the direction ``angle``,
  pixels outside the image taken from the nearest edge (ImageMagick's default virtual pixels);
- :func:`glass_blur`: blur, local pixel swaps with a random neighbour, blur again.

All take and return float arrays in [0, 1]: ``[H, W]`` (grey) or ``[H, W, C]``; every random draw
comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.filters import gaussian


def plasma_fractal(rng: np.random.Generator, mapsize: int = 256, wibbledecay: float = 3.0) -> np.ndarray:
    """A ``mapsize`` x ``mapsize`` plasma fractal in [0, 1] (``mapsize`` a power of two).

    Diamond-square on a periodic grid: each level sets the centres of the current squares to the mean
    of their four corners plus noise, then the edge midpoints to the mean of their four diamond
    neighbours plus noise; the noise is ``wibble * U(-wibble, wibble)`` with ``wibble`` 100 at the top
    level, divided by ``wibbledecay`` per level (larger decay: smoother haze)."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    a = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4.0 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = a[0::step, 0::step]
        # squares: centre = mean of the four corners (the grid wraps around)
        s = corners + np.roll(corners, -1, axis=0)
        s = s + np.roll(s, -1, axis=1)
        a[half::step, half::step] = noisy_mean(s)
        centres = a[half::step, half::step]
        # diamonds: a midpoint = mean of its two corners and the two centres beside it
        corners = a[0::step, 0::step]
        a[0::step, half::step] = noisy_mean(centres + np.roll(centres, 1, axis=0)
                                            + corners + np.roll(corners, -1, axis=1))
        a[half::step, 0::step] = noisy_mean(centres + np.roll(centres, 1, axis=1)
                                            + corners + np.roll(corners, -1, axis=0))
        step, wibble = half, wibble / wibbledecay
    a = a - a.min()
    return a / max(float(a.max()), 1e-12)


def motion_kernel(radius: float, sigma: float) -> np.ndarray:
    """ImageMagick's motion-blur weights: ``2 * ceil(radius) + 1`` taps of a one-sided Gaussian,
    normalised to sum 1 (tap 0 is the pixel itself)."""
    width = int(2 * math.ceil(radius) + 1)
    t = np.arange(width, dtype=np.float64)
    k = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return k / k.sum()


def motion_blur(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick ``MotionBlurImage``: each output pixel is the weighted sum of the pixels at integer
    offsets ``round(i * (cos a, sin a))``, i = 0 .. width - 1, along the direction ``angle`` (degrees;
    0 is along +x), outside pixels replaced by the nearest edge pixel."""
    k = motion_kernel(radius, sigma)
    h, w = img.shape[:2]
    rad = math.radians(angle)
    out = np.zeros_like(img, dtype=np.float64)
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    for i, wt in enumerate(k):
        dx = math.ceil(i * math.cos(rad) - 0.5)
        dy = math.ceil(i * math.sin(rad) - 0.5)
        out += wt * img[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
    return out


def glass_blur(img: np.ndarray, rng: np.random.Generator, sigma: float, delta: int, iterations: int,
               swap: bool = True, coin: bool = True) -> np.ndarray:
    """Glass blur (Hendrycks & Dietterich 2019): Gaussian blur, quantise to 8 bits, then ``iterations``
    passes over the interior (bottom-right to top-left) in which each pixel, with probability 1/2, is
    swapped with the pixel at a random offset in ``[-delta, delta)`` on each axis; blur again.

    ``coin=False`` moves every pixel (no coin flip, one fewer draw per pixel): the ImageNet-C and
    CIFAR-10-C code (``make_cifar_c.py``) has no coin; MNIST-C's added it.

    ``swap=False`` copies the neighbour's value instead of swapping: what the reference code does on
    colour images (its tuple assignment swaps two array *views*, so both pixels end up with the
    neighbour's value), hence what the published CIFAR-10-C / ImageNet-C files contain; on grey images
    (scalar pixels) the reference swaps.

    The blurs treat the last axis as channels, as the reference's ``gaussian(..., multichannel=True)``
    does for every image: on a 2-D grey image (MNIST-C) that blurs along axis 0 (vertically) only, a
    quirk of the published MNIST-C set that is kept."""
    channel_axis = -1
    x = np.floor(gaussian(img, sigma=sigma, channel_axis=channel_axis) * 255.0) / 255.0
    h, w = x.shape[:2]
    for _ in range(iterations):
        for yy in range(h - delta, delta, -1):
            for xx in range(w - delta, delta, -1):
                if not coin or rng.random() < 0.5:
                    dx, dy = rng.integers(-delta, delta, size=2)
                    y2, x2 = yy + dy, xx + dx
                    tmp = x[yy, xx].copy()
                    x[yy, xx] = x[y2, x2]
                    if swap:
                        x[y2, x2] = tmp
    return np.clip(gaussian(x, sigma=sigma, channel_axis=channel_axis), 0.0, 1.0)
