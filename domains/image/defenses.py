"""Inference-time image defenses (bench.defenses): the input transformations of the ICLR 2018 defenses
that Athalye, Carlini & Wagner (2018) evaluated, on pixel batches ``[N, C, H, W]`` in [0, 1].

- ``jpeg`` (Dziugaite et al. 2016; Guo et al. 2018): JPEG encode/decode at ``quality`` with
  torchvision's libjpeg (``torchvision.io.encode_jpeg`` / ``decode_jpeg``); not differentiable, BPDA
  identity.
- ``bit-depth`` (Xu, Evans & Qi 2018, feature squeezing): ``round(x (2^b - 1)) / (2^b - 1)``; not
  differentiable (zero gradient almost everywhere), BPDA identity.
- ``median`` (Xu et al. 2018): a ``size`` x ``size`` median filter (reflect padding); differentiable
  almost everywhere (the gradient flows to the median pixel).
- ``resize-pad`` (Xie et al. 2018): resize to a random side in ``[H, H (1 + ratio))``, pad at a random
  offset to ``H (1 + ratio)``, resize back to ``H`` (bilinear) so the model sees its own size;
  randomized, differentiable.
- ``gaussian``: additive Gaussian noise of std ``sigma``, clipped to [0, 1]; randomized, differentiable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from bench.defenses import InputTransform, register_transform


def _jpeg(z, params, gen):
    q = int(params["quality"])
    u8 = (z.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    out = decode_jpeg(encode_jpeg(list(u8), quality=q))
    return (torch.stack(out).to(z.device, z.dtype) / 255.0)


def _bit_depth(z, params, gen):
    levels = 2 ** int(params["bits"]) - 1
    return torch.round(z.clamp(0, 1) * levels) / levels


def _median(z, params, gen):
    k = int(params["size"])
    pad = k // 2
    n, c, h, w = z.shape
    padded = F.pad(z, (pad, pad, pad, pad), mode="reflect")
    patches = F.unfold(padded, k).view(n, c, k * k, h * w)
    return patches.median(dim=2).values.view(n, c, h, w)


def _resize_pad(z, params, gen):
    n, c, h, w = z.shape
    big, bigw = int(math.ceil(h * (1 + float(params["ratio"])))), int(math.ceil(w * (1 + float(params["ratio"]))))
    dev = gen.device if gen is not None else torch.device("cpu")

    def draw(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi, (1,), generator=gen, device=dev))

    out = []
    for i in range(n):  # one draw per image, in order
        side = draw(h, big)
        sidew = min(bigw, max(1, round(side * w / h)))
        top, left = draw(0, big - side + 1), draw(0, bigw - sidew + 1)
        r = F.interpolate(z[i:i + 1], size=(side, sidew), mode="bilinear", align_corners=False)
        r = F.pad(r, (left, bigw - sidew - left, top, big - side - top))
        out.append(F.interpolate(r, size=(h, w), mode="bilinear", align_corners=False))
    return torch.cat(out)


def _gaussian(z, params, gen):
    noise = torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
    return (z + float(params["sigma"]) * noise).clamp(0, 1)


for _t in (
    InputTransform("jpeg", "image", _jpeg, {"quality": 75}, differentiable=False,
                   description="JPEG encode/decode (torchvision libjpeg) at quality 75; BPDA identity"),
    InputTransform("bit-depth", "image", _bit_depth, {"bits": 3}, differentiable=False,
                   description="bit-depth reduction to 3 bits (Xu et al. 2018); BPDA identity"),
    InputTransform("median", "image", _median, {"size": 3},
                   description="3x3 median filter (Xu et al. 2018)"),
    InputTransform("resize-pad", "image", _resize_pad, {"ratio": 0.1}, randomized=True,
                   description="random resize and pad (Xie et al. 2018), back to the input size"),
    InputTransform("gaussian", "image", _gaussian, {"sigma": 0.1}, randomized=True,
                   description="additive Gaussian noise at inference, std 0.1, clipped to [0, 1]"),
):
    register_transform(_t)
