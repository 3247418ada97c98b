"""Small networks with the layers real CNNs use beyond conv/linear/pool (DenseNet concat,
pre-activation BatchNorm, U-Net upsampling, SiLU/GELU, attention-style transpose + softmax), for
the layer-table tests and for ``profile --layers`` (``tests/hardware/layer_nets.py:dense_net``)."""

from __future__ import annotations

import torch
import torch.nn as nn


class DenseLayer(nn.Module):
    """Pre-activation BN -> ReLU -> grouped 1x1 conv -> BN -> SiLU -> 3x3 conv, concatenated."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(torch.relu(self.bn1(x)))
        y = self.conv2(nn.functional.silu(self.bn2(y)))
        return torch.cat([x, y], 1)


class DenseNet(nn.Module):
    """Stem, two dense layers, an SE gate, a U-Net-style upsample + skip concat, attention-style
    pooling (transpose, softmax) and a GELU head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, 2)
        self.d1 = DenseLayer(16, 8)
        self.d2 = DenseLayer(24, 8)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 8, 1), nn.ReLU(), nn.Conv2d(8, 32, 1),
                                nn.Sigmoid())  # fmt: skip
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.bn = nn.BatchNorm2d(48)
        self.attn = nn.Linear(48, 1)
        self.fc1 = nn.Linear(48, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)  # 14x14
        y = self.d2(self.d1(self.pool(s)))  # 7x7x32
        y = y * self.se(y)
        y = torch.cat([s, self.up(y)], 1)  # 14x14x48
        t = torch.relu(self.bn(y)).flatten(2).transpose(1, 2)  # N, 196, 48
        w = torch.softmax(self.attn(t), dim=1)  # N, 196, 1
        z = torch.matmul(w.transpose(1, 2), t).flatten(1)  # N, 48: attention-weighted pooling
        return self.fc2(nn.functional.gelu(self.fc1(z)))


def dense_net() -> nn.Module:
    return DenseNet()


class PlainNet(nn.Module):
    """Only conv / maxpool / linear: what an empty table cannot price without profiling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, padding=2)
        self.pool = nn.MaxPool2d(3, 3)
        self.fc = nn.Linear(8 * 9 * 9, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def plain_net() -> nn.Module:
    return PlainNet()


class Op(nn.Module):
    """One op after a 3x3 conv (so that it is not the graph's first node), for the per-op tests."""

    def __init__(self, fn: object, channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fn(self.conv(x))
        return y if isinstance(y, torch.Tensor) else torch.cat(list(y), 1)


F = nn.functional


class _CatThen(nn.Module):
    """``body`` after a concat (a BatchNorm there is not folded into a conv: pre-activation)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([y, y], 1))


def _beside(act: object) -> object:
    """``act`` as a stand-alone layer: its input is also read by something else (a concat)."""
    return lambda y: torch.cat([y, act(y)], 1)


# case -> (the op applied to the conv's output, the op the extracted key must have, its act or mode)
OP_CASES: dict[str, tuple[object, str, str]] = {
    "concat": (lambda y: torch.cat([y, y * 2.0, y + 1.0], 1), "concat", ""),
    "bn": (_CatThen(nn.BatchNorm2d(32)), "bn", ""),
    "bn_relu": (_CatThen(nn.Sequential(nn.BatchNorm2d(32), nn.ReLU())), "bn", "relu"),
    "upsample_nearest": (nn.Upsample(scale_factor=2), "resize", "nearest"),
    "upsample_bilinear": (nn.Upsample(scale_factor=2, mode="bilinear"), "resize", "bilinear"),
    "split": (lambda y: torch.split(y, 8, 1), "split", ""),
    "slice": (lambda y: y[:, :5], "slice", ""),
    "transpose": (lambda y: y.permute(0, 2, 3, 1), "transpose", ""),
    "conv_silu": (nn.SiLU(), "conv", "silu"),
    "silu": (_beside(F.silu), "act", "silu"),
    "sigmoid": (_beside(torch.sigmoid), "act", "sigmoid"),
    "hardswish": (_beside(F.hardswish), "act", "hardswish"),
    "gelu": (_beside(F.gelu), "act", "gelu"),
    "linear": (lambda y: F.linear(y, torch.ones(8, y.shape[-1])), "linear", ""),
    "matmul": (lambda y: torch.matmul(y, y.transpose(2, 3)), "matmul", ""),
    "softmax": (lambda y: torch.softmax(y, -1), "softmax", ""),
    "maxpool_k3s2p1": (nn.MaxPool2d(3, 2, 1), "maxpool", ""),
    "maxpool_k2s2": (nn.MaxPool2d(2, 2), "maxpool", ""),
    "avgpool_k2s2": (nn.AvgPool2d(2, 2), "avgpool", ""),
    "global_max": (nn.AdaptiveMaxPool2d(1), "globalpool", "max"),
    "reduce_mean": (lambda y: y.mean((2, 3), keepdim=True), "globalpool", ""),
}


class UpsampleNet(nn.Module):
    """A conv and a bicubic upsample (a resize mode no shipped table has rows for)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bicubic")
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.up(self.conv(x)), 1), 1))


def upsample_net() -> nn.Module:
    return UpsampleNet()
