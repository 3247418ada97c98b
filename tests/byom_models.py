"""Networks the project does not define, written the way a user would write them: what the
bring-your-own-model tests and ``benchmarks/byom.py`` compress.

- :func:`resnet`: a small ResNet (basic blocks, identity and 1x1-projection shortcuts, ``relu(x + y)``).
- :func:`mobilenet`: a small MobileNetV2/V3-style net (inverted residuals with depthwise convs,
  squeeze-and-excite with a hard-sigmoid gate, hard-swish).
- :func:`densenet`: DenseNet-style dense blocks (pre-activation BN -> ReLU -> grouped 1x1 ->
  BN -> ReLU -> 3x3, each layer's features concatenated to its input), transitions with
  squeeze-and-excite.
- :func:`preact_resnet`: a pre-activation ResNet (ResNet-v2: BN -> ReLU -> conv, the BN of a
  block normalising the residual stream the previous block wrote).
- :func:`unet`: a U-Net-style encoder-decoder (max-pool down, nearest upsampling, skip
  concatenations) with a classification head on the decoder's output.
- :func:`yolo_neck`: a YOLOv8-style backbone and neck (conv-BN-SiLU, C2f split/concat blocks,
  SPPF chained max-pools, upsample + concat FPN) with a classification head.

All take ``[0, 1]`` images of shape (C, 28, 28) and return logits.
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


# ----------------------------------------------------------------------------- concat families


class DenseLayer(nn.Module):
    """Pre-activation bottleneck: BN -> ReLU -> 1x1 (grouped when ``groups`` > 1) -> BN -> ReLU
    -> 3x3; the output is the input with ``growth`` new channels concatenated."""

    def __init__(self, cin: int, growth: int, groups: int = 1) -> None:
        super().__init__()
        mid = 2 * growth
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, growth, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.relu(self.bn1(x)))
        y = self.conv2(self.relu(self.bn2(y)))
        return torch.cat([x, y], 1)


class Transition(nn.Module):
    """BN -> ReLU -> 1x1 conv -> squeeze-and-excite -> 2x2 average pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.se = SqueezeExcite(cout)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.se(self.conv(self.relu(self.bn(x)))))


class DenseNet(nn.Module):
    """Two dense blocks (the first with grouped 1x1 convs, the second with plain ones) around a
    transition; pre-activation BN -> ReLU before the pool and classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, growth: int = 8, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, 2, 1, bias=False)  # 14x14: dense blocks at 28x28 train slowly
        c = 16
        self.block1 = nn.Sequential(*(DenseLayer(c + i * growth, growth, groups=2) for i in range(layers)))
        c += layers * growth
        self.trans1 = Transition(c, c // 2)
        c //= 2
        self.block2 = nn.Sequential(*(DenseLayer(c + i * growth, growth) for i in range(layers)))
        c += layers * growth
        self.norm = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.trans1(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(self.relu(self.norm(x))), 1))


class PreActBlock(nn.Module):
    """ResNet-v2 block: ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``, the shortcut a 1x1 conv of
    the pre-activated input when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        skip = self.shortcut(a) if self.shortcut is not None else x
        y = self.conv2(self.relu(self.bn2(self.conv1(a))))
        return y + skip


class PreActResNet(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (12, 24, 32),
                 blocks: int = 1) -> None:  # fmt: skip
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(*(PreActBlock(cin if b == 0 else w, w, 2 if (b == 0 and i > 0) else 1)
                                          for b in range(blocks))))  # fmt: skip
            cin = w
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(self.relu(self.norm(x))), 1))


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))  # fmt: skip


class UNet(nn.Module):
    """Two levels down (28 -> 14 -> 7), two up with nearest upsampling, each up concatenated
    with the encoder's features of its size; a 1x1 conv, global pool and linear classify."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, c: int = 8) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(conv_bn_relu(in_channels, c), conv_bn_relu(c, c))
        self.enc2 = nn.Sequential(conv_bn_relu(c, 2 * c), conv_bn_relu(2 * c, 2 * c))
        self.bottom = nn.Sequential(conv_bn_relu(2 * c, 4 * c), conv_bn_relu(4 * c, 4 * c))
        self.down = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = conv_bn_relu(4 * c + 2 * c, 2 * c)
        self.dec1 = conv_bn_relu(2 * c + c, c)
        self.head = conv_bn_relu(c, 4 * c, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.down(e1))
        b = self.bottom(self.down(e2))
        d2 = self.dec2(torch.cat([self.up(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], 1))
        return self.fc(torch.flatten(self.pool(self.head(d1)), 1))


class ConvBnSiLU(nn.Module):
    """YOLO's ``Conv``: conv -> BN -> SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = ConvBnSiLU(c, c, 3)
        self.cv2 = ConvBnSiLU(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """YOLOv8's C2f: 1x1 conv, ``chunk`` in two halves, ``n`` bottlenecks on the second half each
    appending its output, every piece concatenated into a 1x1 conv. (Ultralytics'
    ``forward_split``, ``split((c, c), 1)``, is refused: torch-pruning 1.6 cannot trace a split
    with sizes that feeds a concat.)"""

    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBnSiLU(cin, 2 * self.c, 1)
        self.cv2 = ConvBnSiLU((2 + n) * self.c, cout, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools, all four maps concatenated."""

    def __init__(self, cin: int, cout: int, k: int = 5) -> None:
        super().__init__()
        hid = cin // 2
        self.cv1 = ConvBnSiLU(cin, hid, 1)
        self.cv2 = ConvBnSiLU(hid * 4, cout, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class YoloNeck(nn.Module):
    """Backbone (28 -> 14 -> 7 with C2f), SPPF, a top-down FPN (upsample the 7x7 map, concatenate
    with the 14x14 one, C2f), a classification head on the fused map."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBnSiLU(in_channels, 16, 3, 2)  # 14x14
        self.c2 = C2f(16, 16, 1)
        self.down = ConvBnSiLU(16, 32, 3, 2)  # 7x7
        self.c3 = C2f(32, 32, 1)
        self.sppf = SPPF(32, 32)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fpn = C2f(32 + 16, 32, 1, shortcut=False)
        self.head = ConvBnSiLU(32, 64, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.c2(self.stem(x))
        p4 = self.sppf(self.c3(self.down(p3)))
        y = self.fpn(torch.cat([self.up(p4), p3], 1))
        return self.fc(torch.flatten(self.pool(self.head(y)), 1))


def densenet(num_classes: int = 10) -> nn.Module:
    return DenseNet(num_classes=num_classes)


def preact_resnet(num_classes: int = 10) -> nn.Module:
    return PreActResNet(num_classes=num_classes)


def unet(num_classes: int = 10) -> nn.Module:
    return UNet(num_classes=num_classes)


def yolo_neck(num_classes: int = 10) -> nn.Module:
    return YoloNeck(num_classes=num_classes)


CONCAT_FAMILIES = ("densenet", "preact_resnet", "unet", "yolo_neck")


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
