"""OFA-style elastic supernet: one set of full-size weights, any candidate's subnet sliced out.

Elastic layers keep the largest weights and use the active slice (first ``c`` channels, the
centre ``k x k`` of the kernel). ``extract`` copies a candidate's slice into a standalone
``SubNet`` of plain ``nn.Conv2d``/``nn.BatchNorm2d`` layers. The supernet is trained once with
the sandwich rule (largest on labels; smallest and random subnets distilled from the largest,
"in-place distillation") and cached on disk by a hash of (space, data, seed).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from autocompress._io import atomic_torch_save, atomic_write_text
from autocompress.arch import BlockSpec, hidden_channels, plan, se_channels, unpruned
from autocompress.data import ImageDataset, augment_for, batches, endless_batches, resize
from autocompress.data_files import cache_dir
from autocompress.device import autocast, clipped_step, grad_scaler, resolve_device, to_device
from autocompress.exceptions import SpaceError
from autocompress.space import Candidate, SearchSpace
from autocompress.units import format_bytes

CL = torch.channels_last

# --------------------------------------------------------------------------- standalone subnet


class Normalize(nn.Module):
    """(x - mean) / std with the training split's statistics, so deployed models take [0, 1]."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": lambda: nn.ReLU(inplace=True), "hswish": nn.Hardswish}
ACT_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "hswish": F.hardswish}


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool | str = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(ACTIVATIONS["relu" if act is True else str(act)]())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-excite as in MobileNetV3: global average pool, 1x1 conv to ``squeezed`` channels,
    relu, 1x1 conv back, hard-sigmoid gate on the input's channels."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, [squeeze-excite,] 1x1 project, residual
    when shapes match; relu or hard-swish after expand and depthwise (``spec.act``)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        hid = spec.hidden
        self.expand = ConvBNAct(spec.in_c, hid, 1, 1, act=spec.act)
        self.dw = ConvBNAct(hid, hid, spec.kernel, spec.stride, groups=hid, act=spec.act)
        self.se = SqueezeExcite(hid, spec.se_c) if spec.se else None
        self.project = ConvBNAct(hid, spec.out_c, 1, 1, act=False)
        self.residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.expand(x))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class SubNet(nn.Module):
    """A candidate's network as a plain module: what is fine-tuned, pruned and exported."""

    def __init__(self, blocks: list[BlockSpec], mean: list[float], std: list[float]) -> None:
        super().__init__()
        stem, *body, head = blocks
        self.normalize = Normalize(mean, std)
        self.stem = ConvBNAct(stem.in_c, stem.out_c, stem.kernel, stem.stride, act=stem.act)
        n_stages = head.stage
        self.stages = nn.ModuleList(
            nn.Sequential(*(MBConv(b) for b in body if b.stage == s)) for s in range(n_stages)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head.in_c, head.out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.normalize(x))
        for stage in self.stages:
            x = stage(x)
        return self.classifier(torch.flatten(self.pool(x), 1))


# --------------------------------------------------------------------------- elastic layers


class ElasticConvBN(nn.Module):
    """Conv + BN at full size; ``forward`` runs the first ``out_c`` filters at kernel ``k``."""

    def __init__(self, max_in: int, max_out: int, max_k: int, stride: int, depthwise: bool = False):
        super().__init__()
        self.depthwise = depthwise
        self.stride = stride
        self.max_k = max_k
        groups = max_in if depthwise else 1
        self.conv = nn.Conv2d(max_in, max_out, max_k, stride, max_k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(max_out)

    def active_weight(self, in_c: int, out_c: int, k: int) -> torch.Tensor:
        w = self.conv.weight[:in_c] if self.depthwise else self.conv.weight[:out_c, :in_c]
        if k < self.max_k:
            off = (self.max_k - k) // 2
            w = w[:, :, off : off + k, off : off + k]
        return w

    def forward(self, x: torch.Tensor, out_c: int, k: int) -> torch.Tensor:
        in_c = x.shape[1]
        if self.depthwise:
            out_c = in_c
        w = self.active_weight(in_c, out_c, k)
        y = F.conv2d(x, w, None, self.stride, k // 2, groups=in_c if self.depthwise else 1)
        bn = self.bn
        return F.batch_norm(
            y,
            bn.running_mean[:out_c],
            bn.running_var[:out_c],
            bn.weight[:out_c],
            bn.bias[:out_c],
            self.training,
            bn.momentum if bn.momentum is not None else 0.1,
            bn.eps,
        )

    def copy_into(self, target: nn.Sequential, in_c: int, out_c: int, k: int) -> None:
        """Copy the active slice into ``target`` = (Conv2d, BatchNorm2d[, act])."""
        conv, bn = target[0], target[1]
        if self.depthwise:
            out_c = in_c
        with torch.no_grad():
            conv.weight.copy_(self.active_weight(in_c, out_c, k))
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(self.bn, name)[:out_c])
            bn.num_batches_tracked.copy_(self.bn.num_batches_tracked)


class ElasticSqueezeExcite(nn.Module):
    """Squeeze-excite at full size; ``forward`` uses the first ``squeezed`` bottleneck channels
    and the first ``x.shape[1]`` gated channels."""

    def __init__(self, max_channels: int, max_squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(max_channels, max_squeezed, 1)
        self.expand = nn.Conv2d(max_squeezed, max_channels, 1)

    def forward(self, x: torch.Tensor, squeezed: int) -> torch.Tensor:
        c = x.shape[1]
        s = x.mean(dim=(2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, self.reduce.weight[:squeezed, :c], self.reduce.bias[:squeezed]))
        s = F.conv2d(s, self.expand.weight[:c, :squeezed], self.expand.bias[:c])
        return x * F.hardsigmoid(s)

    def copy_into(self, target: SqueezeExcite, channels: int, squeezed: int) -> None:
        with torch.no_grad():
            target.reduce.weight.copy_(self.reduce.weight[:squeezed, :channels])
            target.reduce.bias.copy_(self.reduce.bias[:squeezed])
            target.expand.weight.copy_(self.expand.weight[:channels, :squeezed])
            target.expand.bias.copy_(self.expand.bias[:channels])


class ElasticMBConv(nn.Module):
    def __init__(self, max_in: int, max_out: int, max_k: int, max_expand: float, stride: int,
                 se: bool = False) -> None:  # fmt: skip
        super().__init__()
        max_hid = hidden_channels(max_in, max_expand)
        self.expand = ElasticConvBN(max_in, max_hid, 1, 1)
        self.dw = ElasticConvBN(max_hid, max_hid, max_k, stride, depthwise=True)
        # only where the stage offers squeeze-excite (a grey space's weights stay as they were)
        self.se = ElasticSqueezeExcite(max_hid, se_channels(max_in)) if se else None
        self.project = ElasticConvBN(max_hid, max_out, 1, 1)

    def forward(self, x: torch.Tensor, out_c: int, k: int, expand: float, se: bool = False,
                act: str = "relu") -> torch.Tensor:  # fmt: skip
        in_c = x.shape[1]
        hid = hidden_channels(in_c, expand)
        fn = ACT_FUNCTIONS[act]
        y = fn(self.expand(x, hid, 1))
        y = fn(self.dw(y, hid, k))
        if se:
            if self.se is None:
                raise ValueError("squeeze-excite asked of a block whose stage does not offer it")
            y = self.se(y, se_channels(in_c))
        y = self.project(y, out_c, 1)
        return x + y if (self.dw.stride == 1 and in_c == out_c) else y


class Supernet(nn.Module):
    """The weight-sharing network of a space; ``forward(x, cand)`` runs ``cand``'s subnet."""

    def __init__(self, space: SearchSpace, in_channels: int, num_classes: int,
                 mean: list[float], std: list[float]) -> None:  # fmt: skip
        super().__init__()
        m = space.model
        self.space = space
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.normalize = Normalize(mean, std)
        self.stem = ElasticConvBN(in_channels, max(m.stem.width), m.stem.kernel, m.stem.stride)
        self.stem_act = ACT_FUNCTIONS[m.stem.act]
        self.stages = nn.ModuleList()
        c_in = max(m.stem.width)
        for spec in m.stages:
            blocks = nn.ModuleList()
            for j in range(max(spec.depth)):
                blocks.append(
                    ElasticMBConv(c_in if j == 0 else max(spec.width), max(spec.width),
                                  max(spec.kernel), max(spec.expand), spec.stride if j == 0 else 1,
                                  se=True in spec.se)
                )  # fmt: skip
            self.stages.append(blocks)
            c_in = max(spec.width)
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor, cand: Candidate) -> torch.Tensor:
        x = self.stem_act(self.stem(self.normalize(x), cand.stem_width, self.space.model.stem.kernel))
        for blocks, choice in zip(self.stages, cand.stages):
            for j in range(choice.depth):
                x = blocks[j](x, choice.width, choice.kernel, choice.expand, choice.se, choice.act)
        x = x.mean(dim=(2, 3))
        return F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)

    def plan(self, cand: Candidate) -> list[BlockSpec]:
        return plan(cand, self.space, self.in_channels, self.num_classes)

    def extract(self, cand: Candidate) -> SubNet:
        """A standalone copy of ``cand``'s subnet (weights copied, nothing shared afterwards)."""
        blocks = self.plan(unpruned(cand))  # pruning comes after extraction
        net = SubNet(blocks, self.normalize.mean.flatten().tolist(), self.normalize.std.flatten().tolist())
        stem_kernel = self.space.model.stem.kernel
        self.stem.copy_into(net.stem, self.in_channels, cand.stem_width, stem_kernel)
        for s, choice in enumerate(cand.stages):
            in_c = cand.stem_width if s == 0 else cand.stages[s - 1].width
            for j in range(choice.depth):
                src: ElasticMBConv = self.stages[s][j]
                dst: MBConv = net.stages[s][j]
                hid = hidden_channels(in_c, choice.expand)
                src.expand.copy_into(dst.expand, in_c, hid, 1)
                src.dw.copy_into(dst.dw, hid, hid, choice.kernel)
                if dst.se is not None and src.se is not None:
                    src.se.copy_into(dst.se, hid, se_channels(in_c))
                src.project.copy_into(dst.project, hid, choice.width, 1)
                in_c = choice.width
        with torch.no_grad():
            net.classifier.weight.copy_(self.classifier.weight[:, :in_c])
            net.classifier.bias.copy_(self.classifier.bias)
        return net


# --------------------------------------------------------------------------- training


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, images: torch.Tensor, batches_: int, batch_size: int = 256, *, device: str | torch.device = "cpu"
) -> None:  # fmt: skip
    """Re-estimate BN running statistics of a subnet on training images (OFA's BN calibration),
    on ``device`` (the model comes back to the CPU).

    Shared BN statistics are averaged over every subnet trained; a subnet's own are needed for
    its accuracy to mean anything.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns or batches_ <= 0:
        return
    dev = resolve_device(device)
    model.to(dev)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    for i, start in enumerate(range(0, images.shape[0], batch_size)):
        if i >= batches_:
            break
        model(to_device(images[start : start + batch_size], dev))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.to("cpu").train(was_training)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of a torch model (used for the supernet report; trials use ONNX Runtime)."""
    model.eval()
    correct = 0
    for x, y in batches(images, labels, batch_size):
        correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, labels.numel())


@dataclass(frozen=True)
class SupernetReport:
    """What training produced, stored beside the cached weights."""

    key: str
    steps: int
    epochs: float
    train_seconds: float
    largest_val_acc: float
    largest_test_acc: float
    smallest_test_acc: float
    largest: dict[str, object]


# Bump when a code change makes cached weights mean something else.
SUPERNET_FORMAT = 1


def supernet_key(space: SearchSpace, data: ImageDataset, seed: int) -> str:
    """The cache file name of a supernet: the space's name as a file name (a name with "/" or
    "../" in a space file would otherwise put the weights in another folder, even outside the cache)."""
    name = re.sub(r"[^\w.-]+", "_", space.name)
    return f"{name}-v{SUPERNET_FORMAT}-{space.arch_fingerprint()}-{data.fingerprint}-s{seed}"


def train_supernet(
    space: SearchSpace,
    data: ImageDataset,
    *,
    seed: int = 0,
    on_step: Callable[[int, int, float], None] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Supernet, SupernetReport]:
    """Train a supernet with the sandwich rule and in-place distillation, on ``device`` (mixed
    precision on CUDA, see :mod:`autocompress.device`); the result is on the CPU.

    Each step trains the largest subnet on the labels, then the smallest and
    ``sandwich_random`` random subnets on the largest's soft predictions. With
    ``largest_first_epochs`` the largest subnet is first trained alone (the first phase of
    Once-for-All's progressive shrinking): the teacher every subnet distils from is better
    before the subnets start, at roughly half the cost per step. Measured on the default
    space (``benchmarks/supernet_schedule.py``) it did not earn its minutes: the same number of
    plain sandwich steps gave a better teacher and better subnets, so the shipped spaces leave it at 0. One one-cycle LR schedule
    spans both phases.
    """
    dev = resolve_device(device)
    cfg = space.model.training
    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    mean, std = data.mean_std()
    # channels_last: depthwise and 1x1 convs train ~1.5x faster on CPU (oneDNN) in this layout
    net = Supernet(space, data.channels, data.num_classes, mean, std).to(dev, memory_format=CL)
    x_train, y_train = data.split("train")
    first = math.ceil(cfg.largest_first_epochs * x_train.shape[0] / cfg.batch_size)
    steps = first + max(1, math.ceil(cfg.epochs * x_train.shape[0] / cfg.batch_size))
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)  # fmt: skip
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    largest, smallest = space.largest(), space.smallest()
    max_res = largest.resolution
    stream = endless_batches(x_train, y_train, cfg.batch_size, gen)
    scaler = grad_scaler(dev)
    start = time.perf_counter()
    net.train()
    for step in range(steps):
        x, y = next(stream)
        x = (augment_for(x, gen, cfg.augment_kind) if cfg.augment else x).contiguous(memory_format=CL)
        x, y = to_device(x, dev), to_device(y, dev)
        opt.zero_grad(set_to_none=True)
        with autocast(dev):
            logits = net(resize(x, max_res), largest)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        scaler.scale(loss).backward()
        soft = logits.detach().float().softmax(1)
        others = [] if step < first else [smallest] + [space.random(rng, architecture_only=True)
                                                       for _ in range(cfg.sandwich_random)]  # fmt: skip
        for cand in others:
            with autocast(dev):
                out = net(resize(x, cand.resolution).contiguous(memory_format=CL), cand)
            scaler.scale(F.cross_entropy(out.float(), soft)).backward()
        clipped_step(opt, scaler, net.parameters())
        sched.step()
        if on_step is not None:
            on_step(step + 1, steps, loss.item())
    train_seconds = time.perf_counter() - start
    net = net.to("cpu", memory_format=torch.contiguous_format).eval()
    report = SupernetReport(
        key=supernet_key(space, data, seed),
        steps=steps,
        epochs=cfg.epochs + cfg.largest_first_epochs,
        train_seconds=round(train_seconds, 1),
        largest_val_acc=subnet_accuracy(net, largest, data, "val"),
        largest_test_acc=subnet_accuracy(net, largest, data, "test"),
        smallest_test_acc=subnet_accuracy(net, smallest, data, "test"),
        largest=largest.to_flat(),
    )
    return net, report


def subnet_accuracy(net: Supernet, cand: Candidate, data: ImageDataset, split: str) -> float:
    """Accuracy of ``cand``'s extracted, BN-recalibrated subnet on one split (torch)."""
    sub = extract_calibrated(net, cand, data)
    x, y = data.split(split, cand.resolution)
    return round(accuracy(sub, x, y), 5)


def extract_calibrated(
    net: Supernet, cand: Candidate, data: ImageDataset, *, device: str | torch.device = "cpu"
) -> SubNet:  # fmt: skip
    sub = net.extract(cand)
    x_cal, _ = data.split("calib", cand.resolution)
    x_tr, _ = data.split("train", cand.resolution)
    images = torch.cat([x_cal, x_tr[:4096]])
    recalibrate_bn(sub, images, net.space.model.training.recalib_batches, device=device)
    sub.eval()
    return sub


# --------------------------------------------------------------------------- cache


# how torch says an allocation failed (CPU: "DefaultCPUAllocator: can't allocate memory"; CUDA: "CUDA out of memory")
_OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory", re.IGNORECASE)


def load_or_train(
    space: SearchSpace,
    data: ImageDataset,
    *,
    seed: int = 0,
    cache: Path | None = None,
    retrain: bool = False,
    on_step: Callable[[int, int, float], None] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Supernet, SupernetReport, bool]:
    """The trained supernet for (space, data, seed): from the cache, or trained and cached.

    Returns:
        (supernet, report, was_cached). The weights are written to a temporary file and renamed,
        so a run killed while saving never leaves a cache entry that looks complete.
    """
    folder = (cache or cache_dir()) / "supernets"
    key = supernet_key(space, data, seed)
    weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
    mean, std = data.mean_std()
    if not retrain and weights.is_file() and meta.is_file():
        try:
            report = SupernetReport(**json.loads(meta.read_text()))
            net = Supernet(space, data.channels, data.num_classes, mean, std)
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            net.eval()
            return net, report, True
        except (OSError, ValueError, TypeError, RuntimeError, KeyError):
            pass  # unreadable or stale entry: retrain and overwrite it
    try:
        net, report = train_supernet(space, data, seed=seed, on_step=on_step, device=device)  # cached whatever the device
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and not _OUT_OF_MEMORY.search(str(exc)):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(exc))
        size = f"; it asked for {format_bytes(int(asked.group(1)))} at once" if asked else ""
        cfg = space.model.training
        raise SpaceError(f"out of memory training the supernet of space {space.name} (largest network at "
                         f"{max(space.model.input.resolution)} px, batch {cfg.batch_size}{size}): lower "
                         "input.resolution, the widths or training.batch_size, or use a machine with more "
                         "memory") from exc  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(net.state_dict(), weights)
    atomic_write_text(meta, json.dumps(asdict(report), indent=2))
    return net, report, False


@torch.no_grad()
def teacher_logits(
    net: Supernet, data: ImageDataset, key: str, *, cache: Path | None = None, batch_size: int = 512
) -> torch.Tensor:
    """The largest subnet's logits for every training image (at its own resolution), computed
    once and cached beside the supernet: every candidate's distillation reads from it."""
    path = (cache or cache_dir()) / "supernets" / f"{key}.teacher.pt"
    x, _ = data.split("train", net.space.largest().resolution)
    if path.is_file():
        try:
            logits = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(logits, torch.Tensor) and logits.shape == (x.shape[0], data.num_classes):
                return logits
        except (OSError, RuntimeError, ValueError):
            pass
    teacher = extract_calibrated(net, net.space.largest(), data)
    logits = torch.cat([teacher(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(logits, path)
    return logits
