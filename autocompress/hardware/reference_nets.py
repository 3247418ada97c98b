"""Layer lists of well-known networks, written by hand from their papers' architecture tables
(and, for the Ultralytics YOLO detectors, from the model YAML files), so that published
latencies of these networks can calibrate a device's roofline model.

Every network is a flat list of :class:`Layer` s, the unit the roofline model prices: one
fused kernel each (conv + batch-norm + activation is one layer; a residual add is folded into
the convolution that precedes it, as TensorRT and ONNX Runtime fuse it; concatenation and
channel split are free, as both runtimes write into / read from slices of one buffer). A
layer with ``launches=0`` is part of the kernel before it (its work is priced, its launch is
not): a squeeze-excite's two small fully connected layers and its channel scale run in the
kernel of its pooling, a classifier's linear layer in the kernel of its global pooling.

``published_gmacs`` gives each network's multiply-add count as its authors published it; the
tests check that the hand-written layer lists reproduce it within a few per cent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

LAYER_KINDS = ("conv", "dwconv", "linear", "pool", "eltwise", "matmul")
COUNTED_KINDS = ("conv", "dwconv", "linear")  # what papers (and thop) count as MACs


@dataclass(frozen=True)
class Layer:
    """One kernel: its kind, multiply-accumulates, weight elements and activation traffic.

    ``in_elems``/``out_elems`` are the activation elements read and written (for the memory
    side of the roofline); ``weights`` the parameter elements read (bias included). A dense
    (or grouped) convolution runs as an implicit GEMM of ``gemm_m`` rows (output pixels per
    image) by ``gemm_n`` columns (output channels per group); 0 for every other kernel.
    """

    kind: str
    macs: int
    weights: int
    in_elems: int
    out_elems: int
    name: str = ""
    launches: int = 1  # kernel launches: 0 when fused into the kernel before it
    gemm_m: int = 0
    gemm_n: int = 0

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer kind {self.kind!r} is not one of {LAYER_KINDS}")


def conv_out(size: int, kernel: int, stride: int, pad: int | None = None, ceil: bool = False) -> int:
    """Output size of a convolution or pooling window (PyTorch's rule; ``pad`` defaults to
    ``kernel // 2``, i.e. 'same' padding for odd kernels)."""
    p = kernel // 2 if pad is None else pad
    span = size + 2 * p - kernel
    return (math.ceil(span / stride) if ceil else span // stride) + 1


def conv_layer(
    h: int,
    w: int,
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    *,
    groups: int = 1,
    pad: int | None = None,
    residual: bool = False,
    name: str = "",
) -> tuple[Layer, int, int]:
    """A (grouped) convolution with bias; depthwise when ``groups == cin == cout > 1``.

    ``residual`` adds the read of a residual input of the output's size (the add is fused).
    Returns the layer and the output height and width.
    """  # fmt: skip
    oh, ow = conv_out(h, kernel, stride, pad), conv_out(w, kernel, stride, pad)
    per_out = (cin // groups) * kernel * kernel
    kind = "dwconv" if groups > 1 and groups == cin == cout else "conv"
    out = oh * ow * cout
    layer = Layer(
        kind=kind,
        macs=out * per_out,
        weights=cout * per_out + cout,
        in_elems=h * w * cin + (out if residual else 0),
        out_elems=out,
        name=name,
        gemm_m=oh * ow if kind == "conv" else 0,
        gemm_n=cout // groups if kind == "conv" else 0,
    )
    return layer, oh, ow


def linear_layer(cin: int, cout: int, name: str = "", launches: int = 1) -> Layer:
    """A fully connected layer with bias (``launches=0``: fused into the kernel before it)."""
    return Layer("linear", cin * cout, cin * cout + cout, cin, cout, name, launches)


def global_pool_layer(h: int, w: int, c: int, name: str = "") -> Layer:
    """Global average pooling (``h * w * c`` additions, counted as MACs like ``BlockSpec``)."""
    return Layer("pool", h * w * c, 0, h * w * c, c, name)


def pool_layer(
    h: int,
    w: int,
    c: int,
    kernel: int,
    stride: int,
    *,
    pad: int | None = None,
    ceil: bool = False,
    name: str = "",
) -> tuple[Layer, int, int]:
    """A max-pooling window (no multiply-adds: memory- and launch-bound)."""  # fmt: skip
    oh, ow = conv_out(h, kernel, stride, pad, ceil), conv_out(w, kernel, stride, pad, ceil)
    return Layer("pool", 0, 0, h * w * c, oh * ow * c, name), oh, ow


def eltwise_layer(in_elems: int, out_elems: int, name: str = "", launches: int = 1) -> Layer:
    """An element-wise kernel (upsample, unfused add/multiply, softmax, box decoding)."""
    return Layer("eltwise", 0, 0, in_elems, out_elems, name, launches)


def se_layers(h: int, w: int, c: int, squeezed: int) -> list[Layer]:
    """Squeeze-excite on an ``h x w x c`` map as one kernel: global pool (the launch), then the
    two fully connected layers and the channel scale fused into it."""
    return [
        global_pool_layer(h, w, c, "se.pool"),
        linear_layer(c, squeezed, "se.reduce", launches=0),
        linear_layer(squeezed, c, "se.expand", launches=0),
        eltwise_layer(h * w * c + c, h * w * c, "se.scale", launches=0),
    ]


def matmul_layer(batch: int, m: int, n: int, k: int, name: str = "") -> Layer:
    """A batched activation-activation matrix product ``[b, m, k] @ [b, k, n]``."""
    return Layer("matmul", batch * m * n * k, 0, batch * (m * k + k * n), batch * m * n, name)


@dataclass(frozen=True)
class ReferenceNet:
    """A published network at one input size, as the list of kernels a runtime executes."""

    name: str
    input_size: int
    layers: tuple[Layer, ...]

    def macs(self, counted_only: bool = True) -> int:
        """Multiply-adds; by default only those papers count (conv, depthwise conv, linear)."""
        kinds = COUNTED_KINDS if counted_only else LAYER_KINDS
        return sum(layer.macs for layer in self.layers if layer.kind in kinds)

    def params(self) -> int:
        return sum(layer.weights for layer in self.layers)

    def kernels(self) -> int:
        return len(self.layers)


@dataclass
class _Builder:
    """Tracks the current feature map while appending layers."""

    h: int
    w: int
    c: int
    layers: list[Layer] = field(default_factory=list)

    def conv(self, cout: int, kernel: int, stride: int = 1, *, groups: int = 1, pad: int | None = None,
             residual: bool = False, name: str = "") -> None:  # fmt: skip
        layer, self.h, self.w = conv_layer(
            self.h, self.w, self.c, cout, kernel, stride, groups=groups, pad=pad, residual=residual, name=name
        )
        self.layers.append(layer)
        self.c = cout

    def dw(self, kernel: int, stride: int = 1, name: str = "") -> None:
        self.conv(self.c, kernel, stride, groups=self.c, name=name)

    def maxpool(self, kernel: int, stride: int, *, pad: int | None = None, ceil: bool = False) -> None:
        layer, self.h, self.w = pool_layer(self.h, self.w, self.c, kernel, stride, pad=pad, ceil=ceil)
        self.layers.append(layer)

    def head(self, classes: int = 1000) -> None:
        """Global pool + classifier: one kernel (the linear layer fused into the pool's)."""
        self.layers.append(global_pool_layer(self.h, self.w, self.c, "avgpool"))
        self.layers.append(linear_layer(self.c, classes, "fc", launches=0))
        self.h = self.w = 1
        self.c = classes


# --------------------------------------------------------------------------- classification


def resnet(depth: int, size: int = 224, *, v15: bool = True, classes: int = 1000) -> ReferenceNet:
    """ResNet-18/34/50 (He et al. 2016, Table 1). ``v15``: the torchvision variant that puts the
    stride of a bottleneck's downsampling on its 3x3 convolution (what torchvision ships)."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    bottleneck = depth >= 50
    b = _Builder(size, size, 3)
    b.conv(64, 7, 2, pad=3, name="conv1")
    b.maxpool(3, 2, pad=1)
    for stage, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            h, w, cin = b.h, b.w, b.c
            cout = width * 4 if bottleneck else width
            if stride != 1 or cin != cout:  # projection shortcut
                ds, _, _ = conv_layer(h, w, cin, cout, 1, stride, name="downsample")
                b.layers.append(ds)
            if bottleneck:
                b.conv(width, 1, 1 if v15 else stride)
                b.conv(width, 3, stride if v15 else 1)
                b.conv(cout, 1, residual=True)
            else:
                b.conv(width, 3, stride)
                b.conv(cout, 3, residual=True)
    b.head(classes)
    return ReferenceNet(f"resnet{depth}" + ("" if v15 or not bottleneck else "_v1"), size, tuple(b.layers))


def squeezenet(version: str = "1_0", size: int = 224) -> ReferenceNet:
    """SqueezeNet 1.0 (Iandola et al. 2016, Table 1) and 1.1 (the authors' v1.1 release), as
    torchvision builds them (max-pooling with ceil mode, 1x1 conv classifier)."""
    b = _Builder(size, size, 3)
    if version == "1_0":
        b.conv(96, 7, 2, pad=0, name="conv1")
        plan: list[tuple[int, int] | str] = ["M", (16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192),
                                             (48, 192), (64, 256), "M", (64, 256)]  # fmt: skip
    elif version == "1_1":
        b.conv(64, 3, 2, pad=0, name="conv1")
        plan = ["M", (16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256),
                (64, 256)]  # fmt: skip
    else:
        raise ValueError(f"unknown SqueezeNet version {version!r}")
    for item in plan:
        if item == "M":
            b.maxpool(3, 2, pad=0, ceil=True)
            continue
        squeeze, expand = item  # type: ignore[misc]
        b.conv(squeeze, 1, name="fire.squeeze")
        h, w, c = b.h, b.w, b.c
        e1, _, _ = conv_layer(h, w, c, expand, 1, name="fire.expand1x1")
        e3, _, _ = conv_layer(h, w, c, expand, 3, name="fire.expand3x3")
        b.layers += [e1, e3]
        b.c = 2 * expand  # concatenated in place
    b.conv(1000, 1, name="classifier")
    b.layers.append(global_pool_layer(b.h, b.w, b.c, "avgpool"))
    return ReferenceNet(f"squeezenet{version}", size, tuple(b.layers))


def mobilenet_v1(size: int = 224, classes: int = 1000) -> ReferenceNet:
    """MobileNetV1 1.0 (Howard et al. 2017, Table 1): depthwise-separable stack."""
    b = _Builder(size, size, 3)
    b.conv(32, 3, 2, name="conv1")
    for cout, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
                         (1024, 2), (1024, 1)]:  # fmt: skip
        b.dw(3, stride)
        b.conv(cout, 1)
    b.head(classes)
    return ReferenceNet("mobilenet_v1", size, tuple(b.layers))


def _inverted_residual(
    b: _Builder, cout: int, expand: int, kernel: int, stride: int, se: float = 0.0
) -> None:
    """MobileNetV2 / EfficientNet block; ``se`` is the squeeze-excite ratio of the block's input
    channels (0: none)."""
    cin = b.c
    if expand != 1:
        b.conv(cin * expand, 1, name="expand")
    b.dw(kernel, stride, name="depthwise")
    if se:
        b.layers += se_layers(b.h, b.w, b.c, max(1, int(cin * se)))
    b.conv(cout, 1, residual=stride == 1 and cin == cout, name="project")


def mobilenet_v2(size: int = 224, classes: int = 1000) -> ReferenceNet:
    """MobileNetV2 1.0 (Sandler et al. 2018, Table 2): inverted residual bottlenecks."""
    b = _Builder(size, size, 3)
    b.conv(32, 3, 2, name="conv1")
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]:  # fmt: skip
        for i in range(n):
            _inverted_residual(b, c, t, 3, s if i == 0 else 1)
    b.conv(1280, 1, name="conv_last")
    b.head(classes)
    return ReferenceNet("mobilenet_v2", size, tuple(b.layers))


def efficientnet_b0(size: int = 224, classes: int = 1000) -> ReferenceNet:
    """EfficientNet-B0 (Tan & Le 2019, Table 1): MBConv with squeeze-excite (ratio 0.25)."""
    b = _Builder(size, size, 3)
    b.conv(32, 3, 2, name="stem")
    for t, k, s, c, n in [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]:  # fmt: skip
        for i in range(n):
            _inverted_residual(b, c, t, k, s if i == 0 else 1, se=0.25)
    b.conv(1280, 1, name="head_conv")
    b.head(classes)
    return ReferenceNet("efficientnet_b0", size, tuple(b.layers))


# MobileNetV3 (Howard et al., Searching for MobileNetV3, ICCV 2019, Tables 1 and 2):
# (kernel, expanded width, out, squeeze-excite, stride); activations fuse into the convs
_MNV3 = {
    "large": ([(3, 16, 16, False, 1), (3, 64, 24, False, 2), (3, 72, 24, False, 1), (5, 72, 40, True, 2),
               (5, 120, 40, True, 1), (5, 120, 40, True, 1), (3, 240, 80, False, 2), (3, 200, 80, False, 1),
               (3, 184, 80, False, 1), (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1),
               (5, 672, 160, True, 2), (5, 960, 160, True, 1), (5, 960, 160, True, 1)], 960, 1280),
    "small": ([(3, 16, 16, True, 2), (3, 72, 24, False, 2), (3, 88, 24, False, 1), (5, 96, 40, True, 2),
               (5, 240, 40, True, 1), (5, 240, 40, True, 1), (5, 120, 48, True, 1), (5, 144, 48, True, 1),
               (5, 288, 96, True, 2), (5, 576, 96, True, 1), (5, 576, 96, True, 1)], 576, 1024),
}  # fmt: skip


def _tv_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: nearest multiple of ``divisor``, never 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def mobilenet_v3(variant: str, size: int = 224, classes: int = 1000) -> ReferenceNet:
    """MobileNetV3-Large/Small 1.0 as torchvision builds them (squeeze channels
    ``_make_divisible(expanded / 4, 8)``; the classifier's two linear layers after the pool)."""
    blocks, last, hidden = _MNV3[variant]
    b = _Builder(size, size, 3)
    b.conv(16, 3, 2, name="stem")
    for kernel, exp, out, se, stride in blocks:
        cin = b.c
        if exp != cin:
            b.conv(exp, 1, name="expand")
        b.dw(kernel, stride, name="depthwise")
        if se:
            b.layers += se_layers(b.h, b.w, b.c, _tv_divisible(exp / 4))
        b.conv(out, 1, residual=stride == 1 and cin == out, name="project")
    b.conv(last, 1, name="conv_last")
    b.layers.append(global_pool_layer(b.h, b.w, b.c, "avgpool"))
    b.layers.append(linear_layer(last, hidden, "classifier.0", launches=0))
    b.layers.append(linear_layer(hidden, classes, "classifier.3"))
    return ReferenceNet(f"mobilenet_v3_{variant}", size, tuple(b.layers))


# --------------------------------------------------------------------------- Ultralytics YOLO

# [from, repeats, module, args] as in ultralytics/cfg/models/{v8/yolov8,11/yolo11}.yaml
_YOLOV8 = [
    (-1, 1, "Conv", (64, 3, 2)), (-1, 1, "Conv", (128, 3, 2)), (-1, 3, "C2f", (128, True)),
    (-1, 1, "Conv", (256, 3, 2)), (-1, 6, "C2f", (256, True)), (-1, 1, "Conv", (512, 3, 2)),
    (-1, 6, "C2f", (512, True)), (-1, 1, "Conv", (1024, 3, 2)), (-1, 3, "C2f", (1024, True)),
    (-1, 1, "SPPF", (1024, 5)),
    (-1, 1, "Upsample", ()), ((-1, 6), 1, "Concat", ()), (-1, 3, "C2f", (512, False)),
    (-1, 1, "Upsample", ()), ((-1, 4), 1, "Concat", ()), (-1, 3, "C2f", (256, False)),
    (-1, 1, "Conv", (256, 3, 2)), ((-1, 12), 1, "Concat", ()), (-1, 3, "C2f", (512, False)),
    (-1, 1, "Conv", (512, 3, 2)), ((-1, 9), 1, "Concat", ()), (-1, 3, "C2f", (1024, False)),
    ((15, 18, 21), 1, "Detect", ()),
]  # fmt: skip
_YOLO11 = [
    (-1, 1, "Conv", (64, 3, 2)), (-1, 1, "Conv", (128, 3, 2)), (-1, 2, "C3k2", (256, False, 0.25)),
    (-1, 1, "Conv", (256, 3, 2)), (-1, 2, "C3k2", (512, False, 0.25)), (-1, 1, "Conv", (512, 3, 2)),
    (-1, 2, "C3k2", (512, True)), (-1, 1, "Conv", (1024, 3, 2)), (-1, 2, "C3k2", (1024, True)),
    (-1, 1, "SPPF", (1024, 5)), (-1, 2, "C2PSA", (1024,)),
    (-1, 1, "Upsample", ()), ((-1, 6), 1, "Concat", ()), (-1, 2, "C3k2", (512, False)),
    (-1, 1, "Upsample", ()), ((-1, 4), 1, "Concat", ()), (-1, 2, "C3k2", (256, False)),
    (-1, 1, "Conv", (256, 3, 2)), ((-1, 13), 1, "Concat", ()), (-1, 2, "C3k2", (512, False)),
    (-1, 1, "Conv", (512, 3, 2)), ((-1, 10), 1, "Concat", ()), (-1, 2, "C3k2", (1024, True)),
    ((16, 19, 22), 1, "Detect", ()),
]  # fmt: skip
# scale: (depth multiple, width multiple, max channels)
_SCALES = {
    "yolov8": {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768),
               "l": (1.00, 1.00, 512), "x": (1.00, 1.25, 512)},
    "yolo11": {"n": (0.50, 0.25, 1024), "s": (0.50, 0.50, 1024), "m": (0.50, 1.00, 512),
               "l": (1.00, 1.00, 512), "x": (1.00, 1.50, 512)},
}  # fmt: skip


def _make_divisible(x: float, divisor: int = 8) -> int:
    return math.ceil(x / divisor) * divisor


class _YoloBuilder:
    """Builds the kernels of an Ultralytics detection model the way ``parse_model`` does."""

    def __init__(self, size: int) -> None:
        self.layers: list[Layer] = []
        self.size = size

    def conv(self, h: int, w: int, cin: int, cout: int, k: int, s: int = 1, *, groups: int = 1,
             residual: bool = False, name: str = "") -> tuple[int, int]:  # fmt: skip
        layer, oh, ow = conv_layer(h, w, cin, cout, k, s, groups=groups, residual=residual, name=name)
        self.layers.append(layer)
        return oh, ow

    def bottleneck(self, h: int, w: int, c1: int, c2: int, e: float, shortcut: bool = True) -> None:
        hid = int(c2 * e)
        self.conv(h, w, c1, hid, 3, name="bottleneck.cv1")
        self.conv(h, w, hid, c2, 3, residual=shortcut and c1 == c2, name="bottleneck.cv2")

    def c2f(self, h: int, w: int, c1: int, c2: int, n: int, shortcut: bool, *, e: float = 0.5,
            c3k: bool | None = None) -> None:  # fmt: skip
        """C2f (YOLOv8, ``c3k=None``) or C3k2 (YOLO11: bottlenecks with e=0.5, or C3k)."""
        c = int(c2 * e)
        self.conv(h, w, c1, 2 * c, 1, name="c2f.cv1")
        for _ in range(n):
            if c3k is None:
                self.bottleneck(h, w, c, c, 1.0, shortcut)
            elif c3k:  # C3k(c, c, n=2, e=0.5, k=3)
                hid = int(c * 0.5)
                self.conv(h, w, c, hid, 1, name="c3k.cv1")
                self.conv(h, w, c, hid, 1, name="c3k.cv2")
                for _ in range(2):
                    self.bottleneck(h, w, hid, hid, 1.0, True)
                self.conv(h, w, 2 * hid, c, 1, name="c3k.cv3")
            else:
                self.bottleneck(h, w, c, c, 0.5, True)
        self.conv(h, w, (2 + n) * c, c2, 1, name="c2f.cv2")

    def sppf(self, h: int, w: int, c1: int, c2: int, k: int) -> None:
        hid = c1 // 2
        self.conv(h, w, c1, hid, 1, name="sppf.cv1")
        for _ in range(3):
            self.layers.append(pool_layer(h, w, hid, k, 1)[0])
        self.conv(h, w, 4 * hid, c2, 1, name="sppf.cv2")

    def c2psa(self, h: int, w: int, c1: int, n: int) -> None:
        c = int(c1 * 0.5)
        heads = max(1, c // 64)
        head_dim = c // heads
        key_dim = int(head_dim * 0.5)
        tokens = h * w
        self.conv(h, w, c1, 2 * c, 1, name="c2psa.cv1")
        for _ in range(n):
            self.conv(h, w, c, c + 2 * key_dim * heads, 1, name="attn.qkv")
            self.layers.append(matmul_layer(heads, tokens, tokens, key_dim, "attn.qk"))
            self.layers.append(
                eltwise_layer(heads * tokens * tokens, heads * tokens * tokens, "attn.softmax")
            )
            self.layers.append(matmul_layer(heads, head_dim, tokens, tokens, "attn.av"))
            self.conv(h, w, c, c, 3, groups=c, residual=True, name="attn.pe")
            self.conv(h, w, c, c, 1, residual=True, name="attn.proj")
            self.conv(h, w, c, 2 * c, 1, name="ffn.cv1")
            self.conv(h, w, 2 * c, c, 1, residual=True, name="ffn.cv2")
        self.conv(h, w, 2 * c, c1, 1, name="c2psa.cv2")

    def detect(
        self, maps: list[tuple[int, int, int]], v11: bool, classes: int = 80, reg_max: int = 16
    ) -> None:
        ch0 = maps[0][2]
        c2, c3 = max(16, ch0 // 4, reg_max * 4), max(ch0, min(classes, 100))
        anchors = 0
        for h, w, c in maps:
            anchors += h * w
            self.conv(h, w, c, c2, 3, name="detect.box1")
            self.conv(h, w, c2, c2, 3, name="detect.box2")
            self.conv(h, w, c2, 4 * reg_max, 1, name="detect.box3")
            if v11:
                self.conv(h, w, c, c, 3, groups=c, name="detect.cls.dw1")
                self.conv(h, w, c, c3, 1, name="detect.cls.pw1")
                self.conv(h, w, c3, c3, 3, groups=c3, name="detect.cls.dw2")
                self.conv(h, w, c3, c3, 1, name="detect.cls.pw2")
            else:
                self.conv(h, w, c, c3, 3, name="detect.cls1")
                self.conv(h, w, c3, c3, 3, name="detect.cls2")
            self.conv(h, w, c3, classes, 1, name="detect.cls3")
        # distribution focal loss (a 1x1 conv over 16 bins) and box decoding
        self.layers.append(
            Layer("conv", 4 * anchors * reg_max, reg_max, 4 * reg_max * anchors, 4 * anchors, "dfl")
        )
        self.layers.append(eltwise_layer((4 + classes) * anchors, (4 + classes) * anchors, "decode"))


def yolo(version: str, scale: str, size: int = 640) -> ReferenceNet:
    """Ultralytics YOLOv8 / YOLO11 detection model (80 classes) at ``size`` x ``size``."""
    spec = {"yolov8": _YOLOV8, "yolo11": _YOLO11}[version]
    depth, width, max_ch = _SCALES[version][scale]
    v11 = version == "yolo11"
    b = _YoloBuilder(size)
    outs: list[tuple[int, int, int]] = []  # (h, w, c) of each entry's output
    for i, (src, repeats, module, args) in enumerate(spec):
        if isinstance(src, int):
            h, w, c1 = outs[src] if i else (size, size, 3)
        n = max(round(repeats * depth), 1) if repeats > 1 else repeats
        if module in ("Conv", "C2f", "C3k2", "SPPF", "C2PSA"):
            c2 = _make_divisible(min(args[0], max_ch) * width, 8)
        if module == "Conv":
            oh, ow = b.conv(h, w, c1, c2, args[1], args[2], name="conv")
            outs.append((oh, ow, c2))
        elif module == "C2f":
            b.c2f(h, w, c1, c2, n, args[1])
            outs.append((h, w, c2))
        elif module == "C3k2":
            c3k = bool(args[1]) or scale in "mlx"
            b.c2f(h, w, c1, c2, n, True, e=args[2] if len(args) > 2 else 0.5, c3k=c3k)
            outs.append((h, w, c2))
        elif module == "SPPF":
            b.sppf(h, w, c1, c2, args[1])
            outs.append((h, w, c2))
        elif module == "C2PSA":
            b.c2psa(h, w, c1, n)
            outs.append((h, w, c1))
        elif module == "Upsample":
            b.layers.append(eltwise_layer(h * w * c1, 4 * h * w * c1, "upsample"))
            outs.append((2 * h, 2 * w, c1))
        elif module == "Concat":
            parts = [outs[j] for j in src]  # type: ignore[union-attr]
            outs.append((parts[0][0], parts[0][1], sum(p[2] for p in parts)))
        elif module == "Detect":
            b.detect([outs[j] for j in src], v11)  # type: ignore[union-attr]
            outs.append((1, 1, 0))
    return ReferenceNet(f"{version}{scale}", size, tuple(b.layers))


# --------------------------------------------------------------------------- YOLOX

# scale: (depth multiple, width multiple), as in Megvii-BaseDetection/YOLOX exps/default
_YOLOX_SCALES = {"s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


def yolox(scale: str, size: int = 640, classes: int = 80) -> ReferenceNet:
    """YOLOX (Ge et al. 2021; Megvii-BaseDetection/YOLOX ``yolox/models``): Focus stem,
    CSPDarknet with SPP, PAFPN and the decoupled head (stem, 2 cls + 2 reg 3x3 convs, cls/reg/obj
    predictions per level), then box decoding."""
    depth, width = _YOLOX_SCALES[scale]
    b = _YoloBuilder(size)
    base, bd = int(width * 64), max(round(depth * 3), 1)
    n_fpn = round(3 * depth)

    def csp(h: int, w: int, cin: int, cout: int, n: int, shortcut: bool) -> None:
        hid = int(cout * 0.5)
        b.conv(h, w, cin, hid, 1, name="csp.conv1")
        b.conv(h, w, cin, hid, 1, name="csp.conv2")
        for _ in range(n):
            b.conv(h, w, hid, hid, 1, name="csp.m.conv1")
            b.conv(h, w, hid, hid, 3, residual=shortcut, name="csp.m.conv2")
        b.conv(h, w, 2 * hid, cout, 1, name="csp.conv3")

    h = size // 2  # Focus: space-to-depth (a copy), then a 3x3 conv
    b.layers.append(eltwise_layer(size * size * 3, h * h * 12, "focus"))
    b.conv(h, h, 12, base, 3, name="stem")
    c, outs = base, []
    for i, n in enumerate((bd, bd * 3, bd * 3, bd)):
        h, _ = b.conv(h, h, c, c * 2, 3, 2, name="dark.conv")
        c *= 2
        if i == 3:  # SPP bottleneck (max pools 5, 9, 13), then a CSP layer without shortcut
            hid = c // 2
            b.conv(h, h, c, hid, 1, name="spp.conv1")
            for k in (5, 9, 13):
                b.layers.append(pool_layer(h, h, hid, k, 1)[0])
            b.conv(h, h, 4 * hid, c, 1, name="spp.conv2")
        csp(h, h, c, c, n, shortcut=i < 3)
        outs.append((h, c))
    (h3, c3), (h4, c4), (h5, c5) = outs[1:]
    b.conv(h5, h5, c5, c4, 1, name="lateral_conv0")
    b.layers.append(eltwise_layer(h5 * h5 * c4, h4 * h4 * c4, "upsample"))
    csp(h4, h4, 2 * c4, c4, n_fpn, False)
    b.conv(h4, h4, c4, c3, 1, name="reduce_conv1")
    b.layers.append(eltwise_layer(h4 * h4 * c3, h3 * h3 * c3, "upsample"))
    csp(h3, h3, 2 * c3, c3, n_fpn, False)
    b.conv(h3, h3, c3, c3, 3, 2, name="bu_conv2")
    csp(h4, h4, 2 * c3, c4, n_fpn, False)
    b.conv(h4, h4, c4, c4, 3, 2, name="bu_conv1")
    csp(h5, h5, 2 * c4, c5, n_fpn, False)
    hc, anchors = int(256 * width), 0
    for hh, cc in ((h3, c3), (h4, c4), (h5, c5)):
        anchors += hh * hh
        b.conv(hh, hh, cc, hc, 1, name="head.stem")
        for branch in ("cls", "reg"):
            for _ in range(2):
                b.conv(hh, hh, hc, hc, 3, name=f"head.{branch}_conv")
        b.conv(hh, hh, hc, classes, 1, name="head.cls_pred")
        b.conv(hh, hh, hc, 4, 1, name="head.reg_pred")
        b.conv(hh, hh, hc, 1, 1, name="head.obj_pred")
    b.layers.append(eltwise_layer((5 + classes) * anchors, (5 + classes) * anchors, "decode"))
    return ReferenceNet(f"yolox_{scale}", size, tuple(b.layers))


# --------------------------------------------------------------------------- registry

BUILDERS: dict[str, Callable[..., ReferenceNet]] = {  # (input size, classes=published default)
    "resnet18": lambda s, classes=1000: resnet(18, s, classes=classes),
    "resnet34": lambda s, classes=1000: resnet(34, s, classes=classes),
    "resnet50": lambda s, classes=1000: resnet(50, s, classes=classes),
    "resnet50_v1": lambda s, classes=1000: resnet(50, s, v15=False, classes=classes),
    "squeezenet1_0": lambda s: squeezenet("1_0", s),
    "squeezenet1_1": lambda s: squeezenet("1_1", s),
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_large": lambda s, classes=1000: mobilenet_v3("large", s, classes),
    "mobilenet_v3_small": lambda s, classes=1000: mobilenet_v3("small", s, classes),
    "efficientnet_b0": efficientnet_b0,
    **{f"yolov8{sc}": (lambda s, sc=sc: yolo("yolov8", sc, s)) for sc in "nsmlx"},
    **{f"yolo11{sc}": (lambda s, sc=sc: yolo("yolo11", sc, s)) for sc in "nsmlx"},
    **{f"yolox_{sc}": (lambda s, classes=80, sc=sc: yolox(sc, s, classes)) for sc in "smlx"},
}

_YOLO_NOTE = "GFLOPs of the unfused model at 640 (thop: 2 x multiply-adds, batch-norm included) -> / 2"
# name: (published GMACs, input size it refers to, where it was published)
PUBLISHED_GMACS: dict[str, tuple[float, int, str]] = {
    "resnet18": (1.8, 224, "He et al., Deep Residual Learning for Image Recognition (CVPR 2016), Table 1: 1.8e9 FLOPs (multiply-adds)"),
    "resnet34": (3.6, 224, "He et al. 2016, Table 1: 3.6e9 FLOPs (multiply-adds)"),
    "resnet50_v1": (3.8, 224, "He et al. 2016, Table 1: 3.8e9 FLOPs (multiply-adds)"),
    "resnet50": (4.09, 224, "torchvision ResNet50_Weights documentation: 4.09 GFLOPS (multiply-adds; v1.5, stride on the 3x3 conv)"),
    "squeezenet1_0": (0.82, 224, "torchvision SqueezeNet1_0_Weights documentation: 0.82 GFLOPS (multiply-adds)"),
    "squeezenet1_1": (0.35, 224, "torchvision SqueezeNet1_1_Weights documentation: 0.35 GFLOPS (multiply-adds)"),
    "mobilenet_v1": (0.569, 224, "Howard et al., MobileNets (2017), Table 8: 569 million mult-adds"),
    "mobilenet_v2": (0.300, 224, "Sandler et al., MobileNetV2 (CVPR 2018), Table 4: 300M multiply-adds"),
    "mobilenet_v3_large": (0.219, 224, "Howard et al., Searching for MobileNetV3 (ICCV 2019), Table 3: V3-Large 1.0, 219M MAdds"),
    "mobilenet_v3_small": (0.056, 224, "Howard et al., Searching for MobileNetV3 (ICCV 2019), Table 3: V3-Small 1.0, 56M MAdds"),
    "yolox_s": (26.8 / 2, 640, "Megvii-BaseDetection/YOLOX README, standard models: YOLOX-s 26.8 GFLOPs at 640 (thop multiply-adds x 2) -> / 2"),
    "yolox_m": (73.8 / 2, 640, "Megvii-BaseDetection/YOLOX README, standard models: YOLOX-m 73.8 GFLOPs at 640 (thop multiply-adds x 2) -> / 2"),
    "yolox_l": (155.6 / 2, 640, "Megvii-BaseDetection/YOLOX README, standard models: YOLOX-l 155.6 GFLOPs at 640 (thop multiply-adds x 2) -> / 2"),
    "efficientnet_b0": (0.39, 224, "Tan & Le, EfficientNet (ICML 2019), Table 2: 0.39B FLOPs (multiply-adds)"),
    "yolov8n": (8.9 / 2, 640, f"ultralytics/cfg/models/v8/yolov8.yaml, scale n summary: 8.9 GFLOPs; {_YOLO_NOTE}"),
    "yolov8s": (28.8 / 2, 640, f"ultralytics/cfg/models/v8/yolov8.yaml, scale s summary: 28.8 GFLOPs; {_YOLO_NOTE}"),
    "yolov8m": (79.3 / 2, 640, f"ultralytics/cfg/models/v8/yolov8.yaml, scale m summary: 79.3 GFLOPs; {_YOLO_NOTE}"),
    "yolov8l": (165.7 / 2, 640, f"ultralytics/cfg/models/v8/yolov8.yaml, scale l summary: 165.7 GFLOPs; {_YOLO_NOTE}"),
    "yolov8x": (258.5 / 2, 640, f"ultralytics/cfg/models/v8/yolov8.yaml, scale x summary: 258.5 GFLOPs; {_YOLO_NOTE}"),
    "yolo11n": (6.6 / 2, 640, f"ultralytics/cfg/models/11/yolo11.yaml, scale n summary: 6.6 GFLOPs; {_YOLO_NOTE}"),
    "yolo11s": (21.7 / 2, 640, f"ultralytics/cfg/models/11/yolo11.yaml, scale s summary: 21.7 GFLOPs; {_YOLO_NOTE}"),
    "yolo11m": (68.5 / 2, 640, f"ultralytics/cfg/models/11/yolo11.yaml, scale m summary: 68.5 GFLOPs; {_YOLO_NOTE}"),
    "yolo11l": (87.6 / 2, 640, f"ultralytics/cfg/models/11/yolo11.yaml, scale l summary: 87.6 GFLOPs; {_YOLO_NOTE}"),
    "yolo11x": (196.0 / 2, 640, f"ultralytics/cfg/models/11/yolo11.yaml, scale x summary: 196.0 GFLOPs; {_YOLO_NOTE}"),
}  # fmt: skip


def reference_net(name: str, input_size: int, classes: int | None = None) -> ReferenceNet:
    """The layer list of reference network ``name`` at ``input_size`` x ``input_size`` (with
    ``classes`` outputs where the network takes it; None: as published).

    Raises:
        KeyError: unknown network name (the message lists the known ones).
    """
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise KeyError(f"unknown reference network {name!r}; known: {', '.join(sorted(BUILDERS))}") from None
    if classes is None:
        return builder(input_size)
    try:
        return builder(input_size, classes=classes)
    except TypeError:
        raise KeyError(f"reference network {name!r} has a fixed number of classes") from None
