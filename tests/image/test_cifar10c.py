"""CIFAR-10-C corruptions (domains.image.cifar10c) on small synthetic 32 x 32 RGB batches (CIFAR-10 is not
available offline): the batch contract for all 75 cells, and each corruption's parameters from
make_cifar_c.py (Hendrycks & Dietterich 2019) checked by a known answer. Frost reads a fixture wheel
written here, through the data cache, unless the test says it uses the real one."""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.corruption_eval import track_cells
from bench.corruptions import get_corruption
from bench.errors import DataMissingError, UserError
from bench.registry import load_domains
from bench.tracks import get_track
from bench.wheeldata import WheelSource, cache_dir
from domains.image import cifar10c
from domains.image.cifar10c import CIFAR10C, CIFAR10C_KEYS, FROST_WHEEL, frost_layers

load_domains()
NAMES = [name for name, *_ in CIFAR10C]
PARAMS = {name: params for name, _, params, _ in CIFAR10C}
REAL_CACHE = cache_dir()  # before any test points XROBUST_CACHE elsewhere


def corrupt(name: str, x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    return get_corruption(f"image/cifar10c-{name}")(x, severity, seed=seed)


def images(n: int, seed: int = 0, texture: bool = True) -> torch.Tensor:
    """Smooth colour fields (8 x 8 upsampled) plus, with ``texture``, 2-pixel colour blocks and a sharp
    rectangle: 8-bit values as the CIFAR-10 loader gives them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=32, mode="bilinear",
                                        align_corners=False)
    if texture:
        fine = torch.nn.functional.interpolate(torch.rand(n, 3, 16, 16, generator=g), size=32, mode="nearest")
        x = 0.6 * x + 0.4 * fine
        for i in range(n):
            r, c = torch.randint(0, 20, (2,), generator=g).tolist()
            x[i, :, r:r + 10, c:c + 12] = torch.rand(3, 1, 1, generator=g)
    return (x.clamp(0, 1) * 255).round() / 255


def grey(v: float, n: int = 8) -> torch.Tensor:
    return torch.full((n, 3, 32, 32), round(v * 255) / 255)


# ----------------------------------------------------------------------------- the frost fixture wheel
def _frost_photo(k: int) -> Image.Image:
    """Photo k: red identifies it, green the full-resolution row, blue the column (so a crop's position
    and the every-fifth-pixel shrink are visible); frost1 carries an alpha channel, as the real one."""
    h, w = 200 + 10 * k, 240 + 5 * k
    rows, cols = np.mgrid[0:h, 0:w]
    rgb = np.stack([np.full((h, w), 40 * k), rows % 256, cols % 256], -1).astype(np.uint8)
    if k == 1:
        alpha = np.random.default_rng(0).integers(0, 256, (h, w, 1), dtype=np.uint8)
        return Image.fromarray(np.concatenate([rgb, alpha], -1), mode="RGBA")
    return Image.fromarray(rgb)


def _write_fixture_wheel(folder: Path) -> WheelSource:
    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    path = folder / "wheels" / FROST_WHEEL.filename
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        for k, name in enumerate(names, 1):
            buf = io.BytesIO()
            _frost_photo(k).save(buf, "PNG" if name.endswith(".png") else "JPEG", quality=95)
            zf.writestr(f"imagecorruptions/frost/{name}", buf.getvalue())
    return WheelSource(dist=FROST_WHEEL.dist, version=FROST_WHEEL.version, filename=FROST_WHEEL.filename,
                       sha256=hashlib.sha256(path.read_bytes()).hexdigest(), fetch_hint=FROST_WHEEL.fetch_hint)


@pytest.fixture(scope="module", autouse=True)
def fixture_wheel(tmp_path_factory):
    """Every test here reads the fixture wheel from a fresh cache; nothing is fetched."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XROBUST_CACHE", str(root))
        mp.setenv("XROBUST_NO_FETCH", "1")
        source = _write_fixture_wheel(root)
        mp.setattr(cifar10c, "FROST_WHEEL", source)
        yield source


# ----------------------------------------------------------------------------- the batch contract
def test_fifteen_registered_in_the_reference_order_with_five_severities():
    assert NAMES == ["gaussian-noise", "shot-noise", "impulse-noise", "defocus-blur", "glass-blur", "motion-blur",
                     "zoom-blur", "snow", "frost", "fog", "brightness", "contrast", "elastic-transform", "pixelate",
                     "jpeg-compression"]
    for key in CIFAR10C_KEYS:
        assert get_corruption(key).severities == (1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="RGB 32x32"):
        corrupt("fog", torch.zeros(2, 1, 32, 32), 1)
    with pytest.raises(ValueError, match="RGB 32x32"):
        corrupt("fog", torch.zeros(2, 3, 28, 28), 1)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", NAMES)
def test_shape_range_8bit_and_prefix(name, severity):
    x = images(6)
    y = corrupt(name, x, severity)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.equal(y * 255, (y * 255).round())  # stored as uint8, as the published files
    assert torch.equal(corrupt(name, x[:3], severity), y[:3])  # deterministic, and a prefix is drawn the same
    assert float((y - x).abs().mean()) > 1e-3, "the corruption changes the images"


NO_RANDOMNESS = ("defocus-blur", "zoom-blur", "brightness", "contrast", "pixelate", "jpeg-compression")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_RANDOMNESS])
def test_random_ones_depend_on_the_seed_only(name):
    x = images(4)
    a = corrupt(name, x, 5, seed=0)
    assert torch.equal(a, corrupt(name, x, 5, seed=0))
    assert not torch.equal(a, corrupt(name, x, 5, seed=1))


#: severities whose parameters all grow (or shrink) together in make_cifar_c.py's tables
MONOTONE = ("gaussian-noise", "shot-noise", "impulse-noise", "defocus-blur", "zoom-blur", "fog", "brightness",
            "contrast", "jpeg-compression")


@pytest.mark.parametrize("name", MONOTONE)
def test_severity_is_monotone_in_mean_absolute_change(name):
    x = images(12, seed=3)
    change = [float((corrupt(name, x, s) - x).abs().mean()) for s in range(1, 6)]
    assert all(a < b for a, b in zip(change, change[1:])), change


def test_motion_blur_grows_except_where_the_reference_barely_changes():
    """(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5): severities 3 and 4 differ only in kernel taps that a
    sigma-2 Gaussian weighs below 1 %, so the random angles can order them either way."""
    x = images(12, seed=3)
    c = [float((corrupt("motion-blur", x, s) - x).abs().mean()) for s in range(1, 6)]
    assert c[0] < c[1] < c[2] < c[4] and c[3] < c[4] and abs(c[3] - c[2]) < 0.1 * c[2], c


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_noise_std_is_the_tables(severity):
    std = PARAMS["gaussian-noise"][severity - 1]
    x = grey(0.5)
    d = corrupt("gaussian-noise", x, severity) - x
    assert abs(float(d.std()) - std) < 0.03 * std
    assert abs(float(d.mean()) + 0.5 / 255) < 0.002  # np.uint8 truncates: half a level down on average


@pytest.mark.parametrize("severity", [1, 5])
def test_shot_noise_variance_is_x_over_photons(severity):
    photons = PARAMS["shot-noise"][severity - 1]
    x = grey(0.5)
    d = corrupt("shot-noise", x, severity) - x
    assert abs(float(d.std()) - math.sqrt(float(x[0, 0, 0, 0]) / photons)) < 0.04 * math.sqrt(0.5 / photons)


@pytest.mark.parametrize("severity", [1, 5])
def test_impulse_noise_flips_the_tables_share_of_every_channel(severity):
    amount = PARAMS["impulse-noise"][severity - 1]
    y = corrupt("impulse-noise", grey(0.5, 16), severity)
    for ch in range(3):
        salt, pepper = float((y[:, ch] == 1).float().mean()), float((y[:, ch] == 0).float().mean())
        tol = 0.25 * amount / 2 + 0.002
        assert abs(salt - amount / 2) < tol and abs(pepper - amount / 2) < tol


def test_defocus_kernel_support_follows_the_radius_table():
    """Radius 1 (severity 4) is a plus of 5 pixels, radius 1.5 (severity 5) a 3 x 3 square; the small
    anti-aliasing blur (sigma 0.2, 0.1) adds almost nothing."""
    x = torch.zeros(1, 3, 32, 32)
    x[..., 16, 16] = 1.0
    plus = corrupt("defocus-blur", x, 4)[0, 0] * 255
    square = corrupt("defocus-blur", x, 5)[0, 0] * 255
    plus_mask = torch.zeros(32, 32, dtype=torch.bool)
    plus_mask[15:18, 16] = plus_mask[16, 15:18] = True
    assert torch.equal(plus > 1, plus_mask) and float((plus[plus_mask] - 51).abs().max()) <= 1
    sq_mask = torch.zeros(32, 32, dtype=torch.bool)
    sq_mask[15:18, 15:18] = True
    assert torch.equal(square > 1, sq_mask) and float((square[sq_mask] - 255 / 9).abs().max()) <= 1


def test_glass_blur_copies_every_pixel_without_a_coin():
    """Severity 1 (sigma 0.05: the blurs do nothing) shows the pixel moves alone: every pixel is moved
    (offset (0, 0) with probability 1/4, so about a quarter stay; MNIST-C's coin would keep about 5/8),
    and moves copy (colours are duplicated, some lost) rather than swap."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 3, 32, 32, generator=g) * 255).round() / 255
    y = corrupt("glass-blur", x, 1)
    stayed = float((y == x).all(1)[:, 2:31, 2:31].float().mean())
    assert 0.15 < stayed < 0.4, stayed
    distinct = [len(np.unique((yi * 255).round().reshape(3, -1).T.numpy(), axis=0)) for yi in y]
    assert max(distinct) < 0.9 * 32 * 32, distinct


def test_motion_blur_runs_along_angles_near_the_x_axis():
    col = torch.arange(32).float()
    vertical = ((torch.sin(col * 0.8) * 0.4 + 0.5) * 255).round().div(255).expand(4, 3, 32, 32).contiguous()
    horizontal = vertical.transpose(2, 3).contiguous()
    along_x = float((corrupt("motion-blur", vertical, 5) - vertical).abs().mean())
    along_y = float((corrupt("motion-blur", horizontal, 5) - horizontal).abs().mean())
    assert along_x > 1.8 * along_y


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_snow_whitens_a_black_image_by_the_keep_factor(severity):
    """Off the flakes, black becomes ``(1 - keep) * max(0, 1.5 * grey + 0.5)``, truncated to 8 bits."""
    keep = PARAMS["snow"][severity - 1][6]
    y = corrupt("snow", torch.zeros(4, 3, 32, 32), severity) * 255
    values, counts = torch.unique(y.round(), return_counts=True)
    assert float(values[counts.argmax()]) == math.floor(255 * (1 - keep) * 0.5)
    assert float(y.min()) == math.floor(255 * (1 - keep) * 0.5)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_fog_range_on_a_flat_image_pins_strength_and_map_size(severity):
    """On a flat image v the fog ``(v + s * p) * v / (v + s)`` spans ``v^2 / (v + s)`` (p = 0) to ``v``
    (p = 1): the 32 x 32 plasma map is normalised to [0, 1] as a whole."""
    s = PARAMS["fog"][severity - 1][0]
    x = grey(0.6, 4)
    v = float(x[0, 0, 0, 0])
    y = corrupt("fog", x, severity) * 255
    for yi in y:
        assert abs(float(yi.min()) - 255 * v * v / (v + s)) <= 1.0
        assert abs(float(yi.max()) - 255 * v) <= 1.0


def test_brightness_adds_to_the_hsv_value():
    x = images(6)
    for severity, c in enumerate(PARAMS["brightness"], 1):
        y = corrupt("brightness", x, severity)
        assert float((y.amax(1) - (x.amax(1) + c).clamp(max=1)).abs().max()) <= 1.01 / 255


def test_contrast_scales_the_deviation_from_each_channels_mean():
    x = images(6)
    m = x.mean(dim=(2, 3), keepdim=True)
    for severity, c in enumerate(PARAMS["contrast"], 1):
        y = corrupt("contrast", x, severity)
        assert float((y - ((x - m) * c + m)).abs().max()) <= 1.01 / 255
    grey_mean = x.mean(dim=(1, 2, 3), keepdim=True)  # not the reference: one mean for all channels
    assert float((y - ((x - grey_mean) * c + grey_mean)).abs().max()) > 5 / 255


def _box(x: torch.Tensor, side: int) -> torch.Tensor:
    out = []
    for xi in x:
        img = Image.fromarray((xi.permute(1, 2, 0) * 255).round().byte().numpy())
        img = img.resize((side, side), Image.BOX).resize((32, 32), Image.BOX)
        out.append(torch.from_numpy(np.asarray(img).astype(np.float32) / 255).permute(2, 0, 1))
    return torch.stack(out)


def test_pixelate_resolution_is_int_32c():
    x = images(4)
    for severity, side in enumerate((30, 28, 27, 24, 20), 1):
        y = corrupt("pixelate", x, severity)
        assert torch.equal(y, _box(x, side))
        assert not torch.equal(y, _box(x, side - 1)) and not torch.equal(y, _box(x, side + 1))


def _blockiness(y: torch.Tensor) -> float:
    """Mean jump across the 8-pixel JPEG block borders over the mean jump inside blocks (columns and rows)."""
    d = (y[..., :, 1:] - y[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    e = (y[..., 1:, :] - y[..., :-1, :]).abs().mean(dim=(0, 1, 3))
    border = [7, 15, 23]
    inner = [i for i in range(31) if i not in border]
    return float((d[border].mean() + e[border].mean()) / (d[inner].mean() + e[inner].mean()))


def test_jpeg_quality_shows_as_blockiness():
    x = images(8, texture=False)
    b = [_blockiness(corrupt("jpeg-compression", x, s)) for s in range(1, 6)]
    assert b[4] > 1.5 > _blockiness(x) and b[0] < b[2] < b[4], b


def test_jpeg_is_a_pil_round_trip_at_the_tables_quality():
    x = images(2)
    for severity, quality in enumerate(PARAMS["jpeg-compression"], 1):
        img = Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy())
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        want = torch.from_numpy(np.asarray(Image.open(buf)).astype(np.float32) / 255).permute(2, 0, 1)
        assert torch.equal(corrupt("jpeg-compression", x, severity)[0], want)


def test_elastic_severity_1_is_the_affine_map_alone():
    """Alpha is 0 at severity 1: a linear ramp stays planar in the interior (bilinear sampling of an affine
    warp); from severity 3 the displacement field bends it."""
    col = torch.arange(32).float()
    ramp = torch.zeros(6, 3, 32, 32)
    ramp[:, 0], ramp[:, 1], ramp[:, 2] = col * 7 / 255, col[:, None] * 6 / 255, 0.5
    rows, cols = np.mgrid[10:22, 10:22]
    a = np.stack([rows.ravel(), cols.ravel(), np.ones(rows.size)], 1)

    def worst_plane_residual(y, agg):
        res = []
        for yi in y:
            for ch in (0, 1):
                b = yi[ch, 10:22, 10:22].numpy().ravel() * 255
                coef, *_ = np.linalg.lstsq(a, b, rcond=None)
                res.append(np.abs(a @ coef - b).max())
        return agg(res)

    assert worst_plane_residual(corrupt("elastic-transform", ramp, 1), max) < 1.0
    assert not torch.equal(corrupt("elastic-transform", ramp, 1), ramp)
    assert worst_plane_residual(corrupt("elastic-transform", ramp, 5), min) > 3.0


def test_zoom_blur_keeps_the_centre_of_a_radial_image():
    """Zooms about the centre leave a centred radial pattern's centre in place and blur outwards: the
    change grows with the distance from the centre."""
    r = torch.arange(32).float() - 15.5
    rad = torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
    x = ((torch.cos(rad) * 0.4 + 0.5) * 255).round().div(255).expand(2, 3, 32, 32).contiguous()
    d = (corrupt("zoom-blur", x, 5) - x).abs()[0, 0]
    assert float(d[rad < 3].mean()) < 0.5 * float(d[(rad > 8) & (rad < 14)].mean())


# ----------------------------------------------------------------------------- frost
def _frost_candidates(source: WheelSource) -> list[np.ndarray]:
    """Every 32 x 32 window of each fixture photo (frost1 .. frost6) shrunk the reference's way."""
    out = []
    with zipfile.ZipFile(source.path) as zf:
        for name in sorted(zf.namelist()):
            full = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))
            small = full[2::5, 2::5]
            win = np.lib.stride_tricks.sliding_window_view(small, (32, 32, 3))[:, :, 0]
            out.append(win[: small.shape[0] - 32, : small.shape[1] - 32].reshape(-1, 32, 32, 3))
    return out


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_frost_is_c0_x_plus_c1_crop_of_one_of_the_first_five_photos(fixture_wheel, severity):
    c0, c1 = PARAMS["frost"][severity - 1]
    x = images(40, seed=severity)
    y = (corrupt("frost", x, severity) * 255).round().permute(0, 2, 3, 1).numpy()
    xs = (x * 255).round().permute(0, 2, 3, 1).numpy().astype(np.float64)
    photos = _frost_candidates(fixture_wheel)
    used = set()
    for xi, yi in zip(xs, y):
        hits = []
        for k, wins in enumerate(photos, 1):
            top_left = np.clip(c0 * xi[0, 0] + c1 * wins[:, 0, 0], 0, 255).astype(np.uint8) == yi[0, 0]
            for j in np.flatnonzero(top_left.all(axis=1)):
                if (np.clip(c0 * xi + c1 * wins[j], 0, 255).astype(np.uint8) == yi).all():
                    hits.append((k, j))
        assert len(hits) == 1, hits
        used.add(hits[0][0])
    assert used == {1, 2, 3, 4, 5}  # frost6 is listed by the reference but never drawn


def test_frost_layers_are_a_fifth_of_the_photos_every_fifth_pixel(fixture_wheel):
    layers = frost_layers()
    assert [a.shape for a in layers] == [(42, 49, 3), (44, 50, 3), (46, 51, 3), (48, 52, 3), (50, 53, 3)]
    assert list(layers[0][:3, 0, 1]) == [2, 7, 12] and list(layers[0][0, :3, 2]) == [2, 7, 12]


def test_missing_or_altered_frost_wheel_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XROBUST_CACHE", str(tmp_path))
    missing = r"imagecorruptions-1\.1\.2-py3-none-any\.whl is not in .*; run: xrobust data fetch cifar10"
    with pytest.raises(DataMissingError, match=missing):
        corrupt("frost", images(1), 1)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / FROST_WHEEL.filename).write_bytes(b"not the wheel")
    with pytest.raises(UserError, match="does not match the pinned"):
        corrupt("frost", images(1), 1)


def test_the_real_frost_wheel_when_cached(monkeypatch):
    """The pinned imagecorruptions 1.1.2 wheel (only if it is already in the real cache: nothing is fetched)."""
    if not (REAL_CACHE / "wheels" / FROST_WHEEL.filename).exists():
        pytest.skip(f"{FROST_WHEEL.filename} is not cached (xrobust data fetch cifar10)")
    monkeypatch.setenv("XROBUST_CACHE", str(REAL_CACHE))
    layers = frost_layers(FROST_WHEEL)
    assert [a.shape for a in layers] == [(120, 180, 3), (63, 112, 3), (63, 112, 3), (70, 105, 3), (99, 132, 3)]
    assert all(a.dtype == np.uint8 and 100 < a.mean() < 255 for a in layers)  # pale ice


# ----------------------------------------------------------------------------- the track
def test_track_declares_75_cells_on_the_cifar10_checkpoints(capsys):
    from bench.cli import main

    t = get_track("image-cifar10-cifar10c")
    assert t.kind == "corruption" and t.corruption_set == "cifar-10-c" and not t.quick
    assert t.checkpoints_from == "image-cifar10-linf-8_255" and t.dataset == "cifar10"
    cells = track_cells(t)
    assert len(cells) == 75 and cells[:5] == [("image/cifar10c-gaussian-noise", s) for s in range(1, 6)]
    assert main(["ls", "tracks"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("image-cifar10-cifar10c"))
    assert "cifar-10-c (15 corruptions)" in line
