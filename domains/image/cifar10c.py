"""CIFAR-10-C: fifteen common corruptions at five severities (Hendrycks & Dietterich, ICLR 2019,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", arXiv:1903.12261).

The published set was made by ``make_cifar_c.py`` (github.com/hendrycks/robustness,
``ImageNet-C/create_c``): every CIFAR-10 test image goes through torchvision's ``ToTensor`` and
``ToPILImage`` to an 8-bit RGB PIL image, is corrupted, and is stored as ``np.uint8(result)``. The
corruptions here follow that script: its parameter tables (copied as numbers, below), its order of
operations and its 8-bit quantisation points, written with numpy, scipy.ndimage, scikit-image, PIL and
torchvision instead of OpenCV and ImageMagick (Wand). ImageMagick's motion blur, the plasma fractal and
glass blur are shared with MNIST-C in :mod:`domains.image.corruption_ops`.

Quirks of the reference that shape the published set, kept here (each function's docstring says more):

- input: ``ToPILImage`` *truncates* ``x * 255`` to uint8 (exact for 8-bit data such as CIFAR-10's);
- output: ``np.uint8(result)`` *truncates* every float result (up to 1/255 darker than rounding would);
- glass blur copies instead of swapping (colour images) and quantises to uint8 between its passes;
- contrast moves each channel towards its own mean, not towards the grey mean;
- zoom blur's factor lists come from ``np.arange`` with float steps (severities 1 and 2 include the end);
- snow's flakes are quantised to uint8 and motion-blurred by ImageMagick (8-bit PNG in, 8-bit out);
- frost draws from the first five of the six frost photos only (``np.random.randint(5)``).

The random draws are ours (one ``numpy.random.Generator`` per (corruption, severity) cell, image by image,
in the reference's order within an image), so the set is the same for every model and every batch size,
and a prefix of the evaluation set is corrupted the same as in the whole set; it is not the published
CIFAR-10-C files, which were drawn with numpy's global state. The frost photos come from the
``imagecorruptions`` 1.1.2 wheel on PyPI (Michaelis et al. 2019), byte-identical to the reference's.
"""

from __future__ import annotations

import functools
import io
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from skimage import color, util
from skimage.filters import gaussian
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from bench.corruptions import Corruption, register_corruption
from bench.wheeldata import WheelSource
from domains.image.corruption_ops import glass_blur as _glass, motion_blur as _motion, plasma_fractal

#: the image side the reference's parameters are written for (its ``32`` / ``IMSIZE``)
SIZE = 32

FROST_WHEEL = WheelSource(
    dist="imagecorruptions", version="1.1.2", filename="imagecorruptions-1.1.2-py3-none-any.whl",
    sha256="d0e4bf529ba6fbb27d8aba1bde7c5db43bf2b969b2c767c11419e939e3e365b8",
    fetch_hint="xrobust data fetch cifar10",
)
#: the photos the reference draws from: ``np.random.randint(5)`` over a list of six, so frost6.jpg never
FROST_MEMBERS = tuple(f"imagecorruptions/frost/{n}"
                      for n in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"))

Img = Image.Image


def _unit(img: Img) -> np.ndarray:
    """``np.array(x) / 255.``: the reference's float64 view of the 8-bit image."""
    return np.asarray(img, dtype=np.float64) / 255.0


# ----------------------------------------------------------------------------- helpers
def clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor``: crop the central ``ceil(h / factor)`` square (top-left
    offset ``(h - crop) // 2``), enlarge it bilinearly (scipy.ndimage.zoom, order 1, the last axis
    untouched), trim back to ``h`` from offset ``(zoomed - h) // 2``. Factor 1 is the identity."""
    h = img.shape[0]
    crop = int(np.ceil(h / factor))
    top = (h - crop) // 2
    zoomed = ndimage.zoom(img[top:top + crop, top:top + crop], (factor, factor) + (1,) * (img.ndim - 2), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim:trim + h, trim:trim + h]


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's defocus kernel: the disk ``X^2 + Y^2 <= radius^2`` on a 17 x 17 grid (radius up
    to 8; ``2 radius + 1`` beyond), normalised, then anti-aliased by a 3 x 3 Gaussian of sigma
    ``alias_blur`` (5 x 5 beyond radius 8), OpenCV's ``GaussianBlur`` with its reflect-101 border."""
    if radius <= 8:
        grid, taps = np.arange(-8, 8 + 1), 1
    else:
        grid, taps = np.arange(-radius, radius + 1), 2
    xx, yy = np.meshgrid(grid, grid)
    k = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float32)
    k /= k.sum()
    return ndimage.gaussian_filter(k, alias_blur, radius=taps, mode="mirror")


def _grey(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``COLOR_RGB2GRAY`` (ITU-R BT.601 weights; scikit-image's rgb2gray uses others)."""
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _imagemagick_blur(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick motion blur of an 8-bit image written to and read back from an 8-bit PNG: the
    result rounded to 8 bits, as a float array in [0, 255]."""
    return np.round(np.clip(_motion(img, radius, sigma, angle), 0.0, 1.0) * 255.0)


def _shrink_fifth(a: np.ndarray) -> np.ndarray:
    """``cv2.resize(a, (0, 0), fx=0.2, fy=0.2)`` (bilinear, OpenCV's default): the output size is
    ``round(0.2 * side)`` and output pixel ``i`` samples source position ``(i + 0.5) * 5 - 0.5 = 5 i + 2``,
    an integer, so the bilinear weights are exactly 1 and 0: every fifth pixel from offset 2, no averaging."""
    h, w = a.shape[:2]
    return np.ascontiguousarray(a[2::5, 2::5][:int(round(h * 0.2)), :int(round(w * 0.2))])


@functools.lru_cache(maxsize=4)
def _decode_frost(source: WheelSource) -> tuple[np.ndarray, ...]:
    layers = []
    for member in FROST_MEMBERS:
        # cv2.imread(IMREAD_COLOR) drops a PNG's alpha channel without compositing; so does convert("RGB")
        rgb = np.asarray(Image.open(io.BytesIO(source.read(member))).convert("RGB"))
        layers.append(_shrink_fifth(rgb))
    return tuple(layers)


def frost_layers(source: WheelSource | None = None) -> tuple[np.ndarray, ...]:
    """The five frost photos as uint8 RGB arrays at a fifth of their size (frost1: 120 x 180), from the
    pinned ``imagecorruptions`` wheel in the data cache (fetched once; see :mod:`bench.wheeldata`)."""
    src = source or FROST_WHEEL
    src.ensure()  # every call: a missing or altered wheel is an error even after a decode was cached
    return _decode_frost(src)


# ----------------------------------------------------------------------------- noise
def gaussian_noise(img: Img, c: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of standard deviation ``c`` on [0, 1] pixels, clipped."""
    x = _unit(img)
    return np.clip(x + rng.normal(scale=c, size=x.shape), 0, 1) * 255


def shot_noise(img: Img, c: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: ``Poisson(c * x) / c`` (``c`` photons at full intensity), clipped."""
    x = _unit(img)
    return np.clip(rng.poisson(x * c) / c, 0, 1) * 255


def impulse_noise(img: Img, c: float, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise: each channel value independently set to 0 or 1 (half each) with
    probability ``c`` (scikit-image's ``random_noise(mode="s&p")``)."""
    return np.clip(util.random_noise(_unit(img), mode="s&p", amount=c, rng=rng), 0, 1) * 255


# ----------------------------------------------------------------------------- blur
def defocus_blur(img: Img, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Each channel correlated with :func:`disk_kernel` ``(radius, alias_blur) = c``, reflect-101 border
    (``cv2.filter2D``). Radius 0.3 to 0.5 is a single pixel (a 3 x 3 Gaussian only), 1 a plus, 1.5 a
    3 x 3 square."""
    x = _unit(img)
    k = disk_kernel(*c).astype(np.float64)
    out = np.stack([ndimage.correlate(x[..., ch], k, mode="mirror") for ch in range(x.shape[-1])], axis=-1)
    return np.clip(out, 0, 1) * 255


def glass_blur(img: Img, c: tuple[float, int, int], rng: np.random.Generator) -> np.ndarray:
    """Glass blur ``(sigma, delta, iterations) = c``: blur, quantise to uint8 (truncating), move every
    interior pixel to a random neighbour in ``[-delta, delta)`` (no coin flip, unlike MNIST-C's), blur.
    The reference's tuple "swap" of two RGB pixel views copies the neighbour instead of swapping
    (``swap=False``), so the shuffle duplicates pixels."""
    return np.clip(_glass(_unit(img), rng, c[0], c[1], c[2], swap=False, coin=False), 0, 1) * 255


def motion_blur(img: Img, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """ImageMagick ``MotionBlurImage`` with ``(radius, sigma) = c`` at an angle drawn from
    U(-45, 45) degrees, on the 8-bit image through PNG (so the result is rounded to 8 bits)."""
    return _imagemagick_blur(_unit(img), c[0], c[1], float(rng.uniform(-45, 45)))


def zoom_blur(img: Img, c: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
    """The mean of the image and its :func:`clipped_zoom` by every factor in ``c`` (float32, as the
    reference); factor 1 comes first, so the unzoomed image counts twice."""
    x = _unit(img).astype(np.float32)
    acc = np.zeros_like(x)
    for factor in c:
        acc += clipped_zoom(x, factor)
    return np.clip((x + acc) / (len(c) + 1), 0, 1) * 255


# ----------------------------------------------------------------------------- weather
def snow(img: Img, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """Snow ``(loc, scale, zoom, threshold, radius, sigma, keep) = c``.

    A flake layer ``N(loc, scale)`` (one value per pixel) is zoomed (:func:`clipped_zoom`), values
    under ``threshold`` zeroed, clipped and truncated to uint8, motion-blurred by ImageMagick (radius,
    sigma, angle U(-135, -45) degrees; 8-bit PNG in and out); the image is whitened to
    ``keep * x + (1 - keep) * max(x, 1.5 * grey(x) + 0.5)`` (float32; OpenCV's grey), and the layer is
    added twice, as drawn and rotated by 180 degrees."""
    loc, scale, zoom, threshold, radius, sigma, keep = c
    x = np.asarray(img, dtype=np.float32) / 255.0
    layer = rng.normal(loc=loc, scale=scale, size=x.shape[:2])
    layer = clipped_zoom(layer[..., np.newaxis], zoom)
    layer[layer < threshold] = 0
    flakes8 = (np.clip(layer.squeeze(-1), 0, 1) * 255).astype(np.uint8)
    flakes = _imagemagick_blur(flakes8 / 255.0, radius, sigma, float(rng.uniform(-135, -45)))[..., np.newaxis] / 255.0
    x = keep * x + (1 - keep) * np.maximum(x, _grey(x)[..., np.newaxis] * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


def frost(img: Img, c: tuple[float, float], rng: np.random.Generator,
          layers: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """Frost ``c0 * x + c1 * crop`` on [0, 255] values, clipped: ``crop`` a random 32 x 32 window of one
    of the five frost photos (drawn uniformly; rows first, then columns) at a fifth of its size
    (:func:`frost_layers`)."""
    layer = layers[int(rng.integers(len(layers)))]
    top = int(rng.integers(0, layer.shape[0] - SIZE))
    left = int(rng.integers(0, layer.shape[1] - SIZE))
    crop = layer[top:top + SIZE, left:left + SIZE].astype(np.float64)
    return np.clip(c[0] * np.asarray(img, dtype=np.float64) + c[1] * crop, 0, 255)


def fog(img: Img, c: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Fog ``(strength, decay) = c``: a 32 x 32 plasma fractal (one map for all three channels) times
    ``strength`` added, then the image scaled by ``max / (max + strength)`` (``max`` over all channels)."""
    x = _unit(img)
    peak = x.max()
    x = x + c[0] * plasma_fractal(rng, SIZE, c[1])[:SIZE, :SIZE][..., np.newaxis]
    return np.clip(x * peak / (peak + c[0]), 0, 1) * 255


# ----------------------------------------------------------------------------- digital
def brightness(img: Img, c: float, rng: np.random.Generator) -> np.ndarray:
    """``+c`` on the HSV value (scikit-image's rgb2hsv / hsv2rgb), clipped to 1."""
    hsv = color.rgb2hsv(_unit(img))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(color.hsv2rgb(hsv), 0, 1) * 255


def contrast(img: Img, c: float, rng: np.random.Generator) -> np.ndarray:
    """``(x - m) * c + m`` with ``m`` each channel's own mean over the image (the reference averages
    over axes (0, 1) of H x W x C, so colour balance shifts towards each channel's mean too)."""
    x = _unit(img)
    m = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - m) * c + m, 0, 1) * 255


def _invert_affine(m: np.ndarray) -> np.ndarray:
    """``cv2.invertAffineTransform`` of a 2 x 3 matrix."""
    d = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    d = 1.0 / d if d != 0 else 0.0
    a = np.array([[m[1, 1] * d, -m[0, 1] * d], [-m[1, 0] * d, m[0, 0] * d]])
    return np.hstack([a, -a @ m[:, 2:]])


def _fixed_point(row_part: np.ndarray, col_part: np.ndarray) -> np.ndarray:
    """A source coordinate as OpenCV's ``warpAffine`` (bilinear, before 4.11) computes it: the row and
    column terms rounded to 1/1024 separately, summed with half a step, floored to 1/32 pixel."""
    fixed = np.rint(row_part * 1024) + 16 + np.rint(col_part * 1024)
    return (fixed.astype(np.int64) >> 5) / 32.0


def elastic_transform(img: Img, c: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Elastic transform ``(alpha, sigma, affine) = 32 * c`` (Simard et al. 2003, after a random affine).

    The affine map sends the points (26, 26), (26, 6), (6, 6) to themselves plus U(-affine, affine)
    (float32), solved as ``cv2.getAffineTransform`` and applied as ``cv2.warpAffine`` did up to OpenCV
    4.10 (the reference's era): bilinear at source positions in OpenCV's fixed point (1/32 pixel, see
    :func:`_fixed_point`; matches OpenCV 4.10 to 1e-4 of a level), reflect-101 border. OpenCV 4.11+
    warps with float positions, which moves a quarter of the uint8 values by up to 4 levels. Then a displacement
    field ``alpha * gaussian(U(-1, 1), sigma, truncate 3, reflect)`` per axis (dx drawn first, along the
    columns; dy along the rows), sampled bilinearly with the half-sample reflect border
    (``map_coordinates(mode="reflect")``). Severity 1 has alpha 0: the affine map only."""
    alpha, sigma, affine = (SIZE * v for v in c)
    x = np.asarray(img, dtype=np.float32) / 255.0
    h, w = x.shape[:2]
    centre = np.float32((h, w)) // 2
    side = min(h, w) // 3
    src = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    dst = src + rng.uniform(-affine, affine, size=src.shape).astype(np.float32)
    fwd = np.linalg.solve(np.hstack([src, np.ones((3, 1), np.float32)]).astype(np.float64), dst.astype(np.float64)).T
    inv = _invert_affine(fwd)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    sx, sy = (_fixed_point(inv[k, 1] * rows + inv[k, 2], inv[k, 0] * cols) for k in (0, 1))
    warped = np.stack([ndimage.map_coordinates(x[..., ch], [sy, sx], order=1, mode="mirror")
                       for ch in range(x.shape[-1])], axis=-1)
    dx = (gaussian(rng.uniform(-1, 1, size=(h, w)), sigma=sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (gaussian(rng.uniform(-1, 1, size=(h, w)), sigma=sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    out = np.stack([ndimage.map_coordinates(warped[..., ch], [rows + dy, cols + dx], order=1, mode="reflect")
                    for ch in range(x.shape[-1])], axis=-1)
    return np.clip(out, 0, 1) * 255


def pixelate(img: Img, c: float, rng: np.random.Generator) -> Img:
    """Box-filter down to ``int(32 * c)`` pixels a side and back up to 32 (PIL's BOX through
    torchvision's resize): 30, 28, 27, 24, 20."""
    side = int(SIZE * c)
    small = TF.resize(img, [side, side], interpolation=InterpolationMode.BOX)
    return TF.resize(small, [SIZE, SIZE], interpolation=InterpolationMode.BOX)


def jpeg_compression(img: Img, c: int, rng: np.random.Generator) -> Img:
    """A PIL JPEG encode at quality ``c`` (PIL's defaults otherwise: 4:2:0 chroma subsampling), decoded
    again, in memory."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=c)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# ----------------------------------------------------------------------------- the set
#: (name, function, per-severity parameters, description), in the reference's order (``make_cifar_c.py``)
CIFAR10C: tuple[tuple[str, Callable, tuple, str], ...] = (
    ("gaussian-noise", gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10), "additive Gaussian noise, std 0.04-0.10"),
    ("shot-noise", shot_noise, (500, 250, 100, 75, 50), "Poisson noise, 500-50 photons at full intensity"),
    ("impulse-noise", impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07), "salt and pepper on 1-7% of the values"),
    ("defocus-blur", defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
     "anti-aliased disk kernel, radius 0.3-1.5"),
    ("glass-blur", glass_blur, ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
     "blur, local pixel moves, blur"),
    ("motion-blur", motion_blur, ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
     "ImageMagick motion blur, radius 6-9, sigma 1-2.5, angle in [-45, 45] degrees"),
    ("zoom-blur", zoom_blur, tuple(tuple(np.arange(1, end, 0.01).tolist()) for end in (1.06, 1.11, 1.16, 1.21, 1.26)),
     "mean of centre zooms up to 1.06-1.25"),
    ("snow", snow, ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
     "motion-blurred snow flakes over a whitened image"),
    ("frost", frost, ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
     "a crop of a frost photo blended in (imagecorruptions wheel)"),
    ("fog", fog, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)), "plasma-fractal fog"),
    ("brightness", brightness, (0.05, 0.1, 0.15, 0.2, 0.3), "+0.05-0.3 on the HSV value"),
    ("contrast", contrast, (0.75, 0.5, 0.4, 0.3, 0.15), "deviation from each channel's mean scaled by 0.75-0.15"),
    ("elastic-transform", elastic_transform, ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                                              (0.1, 0.03, 0.03)), "random affine map, then an elastic displacement"),
    ("pixelate", pixelate, (0.95, 0.9, 0.85, 0.75, 0.65), "box down to 30-20 pixels and back up"),
    ("jpeg-compression", jpeg_compression, (80, 65, 58, 50, 40), "PIL JPEG at quality 80-40"),
)

#: batch-level inputs a corruption needs besides the image, resolved once per call
_CONTEXT: dict[str, Callable[[], dict[str, Any]]] = {"frost": lambda: {"layers": frost_layers()}}


def _batched(fn: Callable, params: tuple, context: Callable[[], dict[str, Any]] | None):
    """The reference's per-image pipeline over a batch ``[N, 3, 32, 32]`` in [0, 1]: ``ToPILImage``
    (truncating ``x * 255``), the corruption with the severity's parameters, ``np.uint8`` (truncating),
    back to float ``v / 255`` as the CIFAR-10 loader makes it. Images are drawn in order."""

    def wrapped(x: torch.Tensor, severity: int, rng: np.random.Generator, aux) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, SIZE, SIZE):
            raise ValueError(f"CIFAR-10-C corruptions take RGB {SIZE}x{SIZE} batches [N, 3, {SIZE}, {SIZE}], "
                             f"got {tuple(x.shape)}")
        extra = context() if context else {}
        c = params[severity - 1]
        out = np.empty((x.shape[0], SIZE, SIZE, 3), dtype=np.uint8)
        for i, xi in enumerate(x.detach().cpu().float().clamp(0, 1)):
            out[i] = np.asarray(fn(TF.to_pil_image(xi), c, rng, **extra)).astype(np.uint8)
        y = torch.from_numpy(out.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()
        return y.to(device=x.device, dtype=x.dtype)

    wrapped.__doc__ = fn.__doc__
    return wrapped


#: registry keys, in the reference's order
CIFAR10C_KEYS = tuple(f"image/cifar10c-{name}" for name, *_ in CIFAR10C)

for _name, _fn, _params, _desc in CIFAR10C:
    register_corruption(Corruption(f"cifar10c-{_name}", "image", _batched(_fn, _params, _CONTEXT.get(_name)),
                                   description=f"CIFAR-10-C (Hendrycks & Dietterich 2019): {_desc}"))
