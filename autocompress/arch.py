"""Network geometry: the one place that says which blocks a candidate's network has.

The supernet builds subnets from this plan, the latency predictor prices it block by block,
and the profiler enumerates every block a space can produce from it. The network is
``normalize -> stem (conv+bn+act) -> stages of MBConv blocks -> global pool + linear``; an
MBConv block may carry squeeze-excite (op ``mbconv_se``) and hard-swish (``act``), both part of
the block's latency-table key.

Structured pruning is part of the geometry: a stage's prune ratio removes that share of the
hidden (expanded) channels of every MBConv block in the stage (``compress/prune.py`` does it
with torch-pruning), so ``plan`` gives each pruned block the hidden width it will really have,
written as its effective expand ratio ``hidden / in_c``. The latency table keys blocks by that
ratio, so a pruned block is priced (and profiled) as the smaller block it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autocompress.space import Candidate, SearchSpace


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv: ceil(size / stride)."""
    return (size + stride - 1) // stride


MBCONV_OPS = ("mbconv", "mbconv_se")
SE_RATIO = 0.25  # squeeze-excite channels per block input channel (EfficientNet's rule)
# Multiply-add equivalents per output element of an activation that is not a plain clamp
# (hard-swish: add, clamp, multiply, divide; what the roofline charges a layer for it).
ACT_MAC_EQUIV = {"relu": 0, "none": 0, "hswish": 2}


def se_channels(in_c: int) -> int:
    """Squeeze-excite bottleneck width of a block with ``in_c`` inputs: ``int(in_c * 0.25)``
    (EfficientNet's rule: from the block's input, so pruning its hidden channels keeps it)."""
    return max(1, int(in_c * SE_RATIO))


def hidden_channels(in_c: int, expand: float) -> int:
    """Hidden (expanded) channels of an MBConv block with ``in_c`` inputs."""
    return max(1, round(in_c * expand))


def pruned_channels(channels: int, ratio: float, round_to: int = 1) -> int:
    """Channels left after structured pruning of ``ratio`` of ``channels``.

    torch-pruning's rule for a local ratio, ``keep = int(channels * (1 - ratio))``, then rounded
    down to a multiple of ``round_to``; never below ``min(channels, round_to)`` or 1. Ratio 0
    keeps every channel. ``compress.prune`` and :func:`plan` both call this, so the pruned
    network and the geometry the latency predictor prices cannot disagree.
    """
    if not 0 <= ratio < 1:
        raise ValueError(f"prune ratio must be within [0, 1), got {ratio}")
    if ratio == 0:
        return channels
    keep = max(1, int(channels * (1 - ratio)))
    if round_to > 1:
        keep = min(channels, max(round_to, keep - keep % round_to))
    return keep


def pruned_expand(in_c: int, expand: float, ratio: float, round_to: int = 1) -> float:
    """The effective expand ratio (``hidden / in_c``) of a block after pruning its hidden
    channels; ``expand`` itself when nothing is pruned. ``hidden_channels(in_c, result)``
    gives back the pruned hidden width exactly."""
    hidden = hidden_channels(in_c, expand)
    keep = pruned_channels(hidden, ratio, round_to)
    return expand if keep == hidden else keep / in_c


def unpruned(cand: Candidate) -> Candidate:
    """``cand`` with every stage's prune ratio set to 0: the subnet before pruning."""
    return replace(cand, prune=tuple(0.0 for _ in cand.prune))


@dataclass(frozen=True)
class BlockSpec:
    """One fused block of a concrete network (what a runtime runs as one or a few kernels).

    ``op`` is ``stem`` (conv+bn+act), ``mbconv`` (1x1 expand, kxk depthwise, 1x1 project,
    residual add when ``stride == 1 and in_c == out_c``), ``mbconv_se`` (the same with
    squeeze-excite after the depthwise conv: global pool, 1x1 to :func:`se_channels`, relu,
    1x1 back, hard-sigmoid, multiply) or ``head`` (global pool + linear). ``act`` is the
    activation of the stem or of the block's expand and depthwise convs: ``relu`` or ``hswish``.
    ``expand`` is the block's effective expand ratio: ``hidden / in_c`` after structured
    pruning (e.g. 1.5 for expand 2 with a quarter of the hidden channels pruned).
    """

    op: str
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int
    stride: int
    expand: float
    act: str
    stage: int  # -1 for the stem, num_stages for the head
    index: int = 0  # position within the stage

    @property
    def is_mbconv(self) -> bool:
        return self.op in MBCONV_OPS

    @property
    def se(self) -> bool:
        return self.op == "mbconv_se"

    @property
    def se_c(self) -> int:
        """Squeeze-excite bottleneck channels (0 without squeeze-excite)."""
        return se_channels(self.in_c) if self.se else 0

    @property
    def hidden(self) -> int:
        return hidden_channels(self.in_c, self.expand) if self.is_mbconv else self.out_c

    @property
    def residual(self) -> bool:
        return self.is_mbconv and self.stride == 1 and self.in_c == self.out_c

    @property
    def out_h(self) -> int:
        return conv_out(self.in_h, self.stride) if self.op != "head" else 1

    @property
    def out_w(self) -> int:
        return conv_out(self.in_w, self.stride) if self.op != "head" else 1

    def macs(self) -> int:
        """Multiply-accumulates of the block (BN folded away, as after export)."""
        oh, ow = self.out_h, self.out_w
        if self.op == "stem":
            return oh * ow * self.out_c * self.in_c * self.kernel**2
        if self.op == "head":
            return self.in_c * self.out_c + self.in_h * self.in_w * self.in_c
        hid = self.hidden
        return (
            self.in_h * self.in_w * self.in_c * hid
            + oh * ow * hid * self.kernel**2
            + oh * ow * hid * self.out_c
            + (oh * ow * hid + 2 * hid * self.se_c + oh * ow * hid if self.se else 0)  # pool, fcs, scale
        )

    def params(self) -> int:
        if self.op == "stem":
            return self.out_c * self.in_c * self.kernel**2 + self.out_c
        if self.op == "head":
            return self.in_c * self.out_c + self.out_c
        hid = self.hidden
        se = 2 * hid * self.se_c + self.se_c + hid if self.se else 0
        return self.in_c * hid + hid + hid * self.kernel**2 + hid + hid * self.out_c + self.out_c + se

    def activation_elems(self) -> int:
        """Elements read and written between kernels (for the memory side of a roofline)."""
        if self.op == "head":
            return self.in_h * self.in_w * self.in_c + self.out_c
        oh, ow = self.out_h, self.out_w
        if self.op == "stem":
            return self.in_h * self.in_w * self.in_c + oh * ow * self.out_c
        hid = self.hidden
        return (
            self.in_h * self.in_w * (self.in_c + hid)  # expand reads in, writes hidden
            + (self.in_h * self.in_w + oh * ow) * hid  # depthwise
            + oh * ow * (hid + self.out_c)  # project
            + (2 * oh * ow * self.out_c if self.residual else 0)
            + (3 * oh * ow * hid if self.se else 0)  # pool reads hidden; scale reads and writes it
        )

    def kernels(self) -> int:
        """Kernel launches after fusion as TensorRT builds them (the stem: the input's normalisation,
        one pointwise kernel, and conv+bn+act, one; the residual add fuses into project;
        squeeze-excite (pool, two 1x1 convs, scale) is one kernel; the head's linear layer runs in
        its global pooling's kernel)."""
        return {"stem": 2, "mbconv": 3, "mbconv_se": 4, "head": 1}[self.op]


def plan(cand: Candidate, space: SearchSpace, in_channels: int, num_classes: int) -> list[BlockSpec]:
    """The blocks of ``cand``'s network, in execution order, after its structured pruning.

    Stage ``s``'s ratio ``cand.prune[s]`` prunes the hidden channels of each of its MBConv
    blocks (:func:`pruned_channels`, with the space's ``compression.prune_round_to``); block
    inputs and outputs, and so the residual connections, keep their widths. Use
    ``plan(unpruned(cand), ...)`` for the network as sliced from the supernet.
    """
    stem = space.model.stem
    round_to = space.model.compression.prune_round_to
    h = w = cand.resolution
    blocks = [
        BlockSpec("stem", h, w, in_channels, cand.stem_width, stem.kernel, stem.stride, 1.0, stem.act, -1)
    ]
    h, w = conv_out(h, stem.stride), conv_out(w, stem.stride)
    c = cand.stem_width
    for s, (choice, spec) in enumerate(zip(cand.stages, space.model.stages)):
        for j in range(choice.depth):
            stride = spec.stride if j == 0 else 1
            expand = pruned_expand(c, choice.expand, cand.prune[s], round_to)
            op = "mbconv_se" if choice.se else "mbconv"
            blocks.append(BlockSpec(op, h, w, c, choice.width, choice.kernel, stride, expand, choice.act, s, j))
            h, w, c = conv_out(h, stride), conv_out(w, stride), choice.width
    blocks.append(BlockSpec("head", h, w, c, num_classes, 1, 1, 1.0, "none", len(cand.stages)))
    return blocks


def stem_head_precisions(cand: Candidate, space: SearchSpace) -> tuple[str, str]:
    """The space's first/last-layer policy: fp32, or the precision of the adjacent stage."""
    if space.model.compression.first_last == "fp32":
        return "fp32", "fp32"
    return cand.precision[0], cand.precision[-1]


def block_precisions(cand: Candidate, space: SearchSpace, blocks: list[BlockSpec]) -> list[str]:
    """The precision each block runs in: its stage's, with the space's first/last-layer policy."""
    stem, head = stem_head_precisions(cand, space)
    by_op = {"stem": stem, "head": head}
    return [by_op.get(b.op) or cand.precision[b.stage] for b in blocks]


def all_blocks(space: SearchSpace, in_channels: int, num_classes: int) -> set[BlockSpec]:
    """Every distinct block any candidate of ``space`` can contain (ignoring stage/index),
    including the pruned geometries its stages' prune ratios produce."""
    m = space.model
    dims = space.dimensions()
    round_to = m.compression.prune_round_to
    found: set[BlockSpec] = set()

    def add(b: BlockSpec) -> None:
        found.add(BlockSpec(b.op, b.in_h, b.in_w, b.in_c, b.out_c, b.kernel, b.stride, b.expand,
                            b.act, 0, 0))  # fmt: skip

    for r in m.input.resolution:
        h = r
        for sw in m.stem.width:
            add(BlockSpec("stem", r, r, in_channels, sw, m.stem.kernel, m.stem.stride, 1.0, m.stem.act, -1))
        h = conv_out(r, m.stem.stride)
        in_widths = set(m.stem.width)
        for s, spec in enumerate(m.stages):
            ratios = dims[f"s{s}_prune"]
            kinds = [("mbconv_se" if se else "mbconv", act) for se in spec.se for act in spec.act]
            h2 = conv_out(h, spec.stride)
            # (input width, output width, side, stride): the stage's first block, then its repeats
            shapes = [(c_in, wd, h, spec.stride) for c_in in in_widths for wd in spec.width]
            if max(spec.depth) > 1:
                shapes += [(wd, wd, h2, 1) for wd in spec.width]
            for c_in, wd, size, stride in shapes:
                for k in spec.kernel:
                    for e in spec.expand:
                        for ratio in ratios:
                            pe = pruned_expand(c_in, e, ratio, round_to)
                            for op, act in kinds:
                                add(BlockSpec(op, size, size, c_in, wd, k, stride, pe, act, 0))
            h, in_widths = h2, set(spec.width)
        for c_in in in_widths:
            add(BlockSpec("head", h, h, c_in, num_classes, 1, 1, 1.0, "none", 0))
    return found
