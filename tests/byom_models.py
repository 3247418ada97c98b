"""Two networks the project does not define, written the way a user would write them: what the
bring-your-own-model tests and ``benchmarks/byom.py`` compress.

- :func:`resnet`: a small ResNet (basic blocks, identity and 1x1-projection shortcuts, ``relu(x + y)``).
- :func:`mobilenet`: a small MobileNetV2/V3-style net (inverted residuals with depthwise convs,
  squeeze-and-excite with a hard-sigmoid gate, hard-swish).

Both take ``[0, 1]`` images of shape (C, 28, 28) and return logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64),
                 blocks: int = 2) -> None:  # fmt: skip
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))  # fmt: skip
        layers = []
        cin = widths[0]
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(*(BasicBlock(cin if b == 0 else w, w, 2 if (b == 0 and i > 0) else 1)
                                          for b in range(blocks))))  # fmt: skip
            cin = w
        self.layers = len(layers)
        for i, layer in enumerate(layers):
            self.add_module(f"layer{i + 1}", layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(self.layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduce: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, max(8, channels // reduce), 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(max(8, channels // reduce), channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, se: bool) -> None:
        super().__init__()
        hid = cin * expand
        self.expand = nn.Sequential(nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid),
                                nn.Hardswish())  # fmt: skip
        self.se = SqueezeExcite(hid) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class MobileNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish())  # fmt: skip
        # (in, out, stride, expand, se)
        cfg = [(16, 16, 1, 2, False), (16, 24, 2, 3, False), (24, 24, 1, 3, True), (24, 40, 2, 3, True),
               (40, 40, 1, 3, True)]  # fmt: skip
        self.blocks = nn.Sequential(*(InvertedResidual(*c) for c in cfg))
        self.head = nn.Sequential(nn.Conv2d(40, 96, 1, bias=False), nn.BatchNorm2d(96), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(96, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def resnet(num_classes: int = 10) -> nn.Module:
    return ResNet(num_classes=num_classes)


def resnet_tiny(num_classes: int = 10) -> nn.Module:
    return ResNet(num_classes=num_classes, widths=(8, 16), blocks=1)


def mobilenet(num_classes: int = 10) -> nn.Module:
    return MobileNet(num_classes=num_classes)


def resnet_wrong_head() -> nn.Module:
    """A ResNet with 12 outputs: does not match a 10-class data set."""
    return ResNet(num_classes=12, widths=(8, 16), blocks=1)


class _NumpyDetour(nn.Module):
    """Its forward leaves torch (through numpy), so autograd, hence torch-pruning, cannot follow it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = torch.from_numpy(y.detach().numpy().copy())
        return self.fc(y.mean((2, 3)))


def untraceable() -> nn.Module:
    return _NumpyDetour()


def not_a_module() -> object:
    return {"conv": 1}


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, steps: int, lr: float = 0.05,
          batch_size: int = 128, seed: int = 0) -> nn.Module:  # fmt: skip
    """A brief SGD training run (what a user's 'trained model' is in the tests and the benchmark)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


class _Gelu(nn.Module):
    """A conv net with GELU, an activation the layer tables have no rows for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.GELU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.act(self.conv(x))), 1))


def gelu_net() -> nn.Module:
    return _Gelu()


class _WideKernel(nn.Module):
    """Standard layers only, but a 7x7 conv no table row was profiled for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 7, padding=3)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def wide_kernel() -> nn.Module:
    return _WideKernel()
