"""Image classifiers on raw pixels in [0, 1]; normalization happens inside.

* ``smallcnn``: the 4-conv MNIST CNN of the robustness literature (Carlini &
  Wagner 2017; the TRADES MNIST model, Zhang et al. 2019).
* ``lenet``: LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling.
* ``preact-resnet18``: pre-activation ResNet-18 (He et al. 2016), the
  CIFAR-10 model of Wong et al. 2020 and Rice et al. 2020.
* ``wrn-34-10``: Wide ResNet 34-10 (Zagoruyko & Komodakis 2016), Madry et al.'s CIFAR model.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from bench.registry import MODELS
from bench.task import TaskModel


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ImageClassifier(TaskModel):
    """z = pixels; forward = normalize -> network."""

    def __init__(self, net: nn.Module, mean, std, spec: dict) -> None:
        super().__init__(net)
        self.normalize = Normalize(mean, std)
        self.spec = spec

    def forward(self, z, ctx=None):
        return self.net(self.normalize(z))


def _flat_size(body: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, in_channels, image_size, image_size)).flatten(1).shape[1])


def _spec(**kw) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


@MODELS.register("smallcnn")
def smallcnn(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
             mean=(0.1307,), std=(0.3081,), assets_dir=None, **_) -> ImageClassifier:
    """conv32-conv32-pool-conv64-conv64-pool-fc200-fc200 (ReLU, dropout 0.5). Pads when images are small."""
    pad = 1 if image_size < 20 else 0
    body = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=pad), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=pad), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
    )
    flat = _flat_size(body, in_channels, image_size)
    net = nn.Sequential(body, nn.Flatten(), nn.Linear(flat, 200), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, num_classes))
    return ImageClassifier(net, mean, std, _spec(num_classes=num_classes, in_channels=in_channels,
                                                 image_size=image_size, mean=mean, std=std))


@MODELS.register("lenet")
def lenet(num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
          mean=(0.1307,), std=(0.3081,), assets_dir=None, **_) -> ImageClassifier:
    pad = 2 if image_size >= 28 else 2
    body = nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5, padding=0 if image_size >= 28 else 2), nn.ReLU(), nn.MaxPool2d(2))
    flat = _flat_size(body, in_channels, image_size)
    net = nn.Sequential(body, nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                        nn.Linear(84, num_classes))
    return ImageClassifier(net, mean, std, _spec(num_classes=num_classes, in_channels=in_channels,
                                                 image_size=image_size, mean=mean, std=std))


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class PreActResNet(nn.Module):
    def __init__(self, blocks: Sequence[int], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        layers, cin = [], 64
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
            for j in range(n):
                layers.append(PreActBlock(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


@MODELS.register("preact-resnet18")
def preact_resnet18(num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                    mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616), assets_dir=None, **_):
    net = PreActResNet((2, 2, 2, 2), num_classes, in_channels)
    return ImageClassifier(net, mean, std, _spec(num_classes=num_classes, in_channels=in_channels,
                                                 image_size=image_size, mean=mean, std=std))


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if (stride != 1 or cin != cout) else None

    def forward(self, x):
        o = F.relu(self.bn1(x))
        sc = self.shortcut(o) if self.shortcut is not None else x
        return self.conv2(F.relu(self.bn2(self.conv1(o)))) + sc


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers, cin = [], widths[0]
        for g, stride in zip(range(3), (1, 2, 2)):
            for j in range(n):
                layers.append(WideBlock(cin, widths[g + 1], stride if j == 0 else 1))
                cin = widths[g + 1]
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        o = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))


@MODELS.register("wrn-34-10")
def wrn_34_10(num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
              mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616), assets_dir=None, **_):
    net = WideResNet(34, 10, num_classes, in_channels)
    return ImageClassifier(net, mean, std, _spec(num_classes=num_classes, in_channels=in_channels,
                                                 image_size=image_size, mean=mean, std=std))
