"""Structured channel pruning of an extracted subnet with torch-pruning's dependency graph.

What a stage's ratio prunes: the hidden (expanded) channels of every MBConv block in that
stage. One torch-pruning group per block, rooted at the block's 1x1 expand conv: the expand
conv's filters, its BatchNorm, the depthwise conv's filters and BatchNorm, and the matching
input channels of the 1x1 project conv all lose the same channels, so the tensors really
shrink (fewer parameters and MACs, not masks) and the model exports to ONNX as it is.

The block's input and output widths are left alone. They are the residual stream: in a stage
every block after the first adds its output to its input, so DepGraph couples the project
convs of the whole stage with the next stage's expand conv (and the classifier). Their width
is already the elastic ``width`` dimension of the space; pruning it too would duplicate that
dimension and make a stage's geometry depend on the previous stage's ratio. Each group is
checked to stay inside its block, so a residual dependency can never be cut by accident.

How many channels stay is :func:`autocompress.arch.pruned_channels` (torch-pruning's
``int(channels * (1 - ratio))``, rounded down to ``compression.prune_round_to``); which ones
is the space's ``compression.prune_importance``: ``l1``/``l2`` group weight magnitude,
``taylor`` (|weight x gradient| summed over a few labelled training batches) or ``bn_scale``
(|BatchNorm gamma|). Ties go to the lower channel index, so pruning is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from autocompress.arch import BlockSpec, plan
from autocompress.space import Candidate, SearchSpace
from autocompress.supernet import MBConv

IMPORTANCES: tuple[str, ...] = ("l1", "l2", "taylor", "bn_scale")
TAYLOR_BATCHES = 4
TAYLOR_BATCH_SIZE = 64


def importance(name: str) -> tp.importance.Importance:
    """The torch-pruning importance criterion called ``name`` (one of :data:`IMPORTANCES`).

    No normalizer: scores are only ranked within one group, and normalizing by the mean would
    turn an all-zero score (a Taylor score of dead channels) into NaN.
    """
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1, normalizer=None)
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance(normalizer=None)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=None)
    raise ValueError(f"unknown pruning importance {name!r}; expected one of {', '.join(IMPORTANCES)}")


def mbconv_blocks(model: nn.Module) -> list[list[MBConv]]:
    """The MBConv blocks of a ``SubNet``, stage by stage."""
    return [[b for b in stage if isinstance(b, MBConv)] for stage in model.stages]


def prune_subnet(
    model: nn.Module,
    cand: Candidate,
    space: SearchSpace,
    *,
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> nn.Module:
    """Prune ``model`` (``cand``'s unpruned subnet) in place to the geometry ``plan`` gives ``cand``.

    Args:
        model: the subnet extracted for ``unpruned(cand)``.
        cand: the candidate; ``cand.prune[s]`` is stage ``s``'s ratio.
        space: its space (importance criterion and ``prune_round_to``).
        images, labels: training samples, needed by the ``taylor`` criterion only.

    Returns:
        ``model``, pruned, in eval mode. It matches ``plan(cand, space, ...)`` block for block
        (checked), so the latency predictor prices the network that is exported.
    """
    in_c = model.stem[0].in_channels
    blocks = plan(cand, space, in_c, model.classifier.out_features)
    targets = _targets(model, blocks)
    if targets:
        example = torch.zeros(1, in_c, cand.resolution, cand.resolution)
        prune_hidden(
            model, targets, example_input=example,
            criterion=space.model.compression.prune_importance, images=images, labels=labels,
        )  # fmt: skip
    mismatches = geometry_mismatches(model, blocks)
    if mismatches:
        raise RuntimeError(f"pruned network differs from its plan: {'; '.join(mismatches)}")
    return model.eval()


def _targets(model: nn.Module, blocks: list[BlockSpec]) -> list[tuple[MBConv, int]]:
    specs = [b for b in blocks if b.is_mbconv]
    modules = [m for stage in mbconv_blocks(model) for m in stage]
    if len(specs) != len(modules):
        raise ValueError(f"model has {len(modules)} MBConv blocks, its plan {len(specs)}")
    targets = []
    for module, spec in zip(modules, specs):
        hidden = module.expand[0].out_channels
        if spec.hidden > hidden:
            raise ValueError(
                f"block {spec.stage}.{spec.index} has {hidden} hidden channels, plan asks {spec.hidden}"
            )
        if spec.hidden < hidden:
            targets.append((module, spec.hidden))
    return targets


def prune_hidden(
    model: nn.Module,
    targets: Sequence[tuple[MBConv, int]],
    *,
    example_input: torch.Tensor,
    criterion: str = "l2",
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> nn.Module:
    """Keep ``keep`` hidden channels of each ``(block, keep)`` in ``targets`` (in place).

    Builds torch-pruning's ``DependencyGraph`` once, takes each block's group rooted at its
    expand conv (``DG.get_pruning_group(conv, tp.prune_conv_out_channels, idxs)``), scores the
    channels with ``criterion`` and prunes the lowest-scoring ones with ``group.prune()``.

    Raises:
        ValueError: ``taylor`` without training samples, or a group that reaches outside its
            block (it would change a residual or the block's output width).
    """
    scorer = importance(criterion)
    was_training = model.training
    model.eval()  # trace (and take Taylor gradients) without touching BN running statistics
    with torch.enable_grad():  # DepGraph traces autograd's graph, even if called under no_grad
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
        if criterion == "taylor":
            _accumulate_gradients(model, images, labels)
    try:
        for block, keep in targets:
            conv = block.expand[0]
            hidden = conv.out_channels
            if not 1 <= keep <= hidden:
                raise ValueError(f"cannot keep {keep} of {hidden} hidden channels")
            if keep == hidden:
                continue
            group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(hidden)))
            _check_inside(group, block)
            scores = scorer(group)
            if scores is None or scores.numel() != hidden:
                raise RuntimeError(f"importance {criterion} gave no score for a group of {hidden} channels")
            scores = torch.nan_to_num(scores.float(), nan=0.0)
            drop = torch.argsort(scores, stable=True)[: hidden - keep].sort().values.tolist()
            graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop).prune()
    finally:
        for p in model.parameters():
            p.grad = None
        model.train(was_training)
    return model


def _check_inside(group: tp.dependency.Group, block: MBConv) -> None:
    inside = set(block.modules())
    for dep, _ in group:
        module = dep.target.module
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d | nn.Linear) and module not in inside:
            raise ValueError(
                "pruning the hidden channels of an MBConv block would also prune a layer outside "
                f"it ({type(module).__name__}); its residual/output width must stay intact"
            )


def _accumulate_gradients(model: nn.Module, images: torch.Tensor | None, labels: torch.Tensor | None) -> None:
    """Gradients of the cross-entropy over a few training batches, for Taylor importance."""
    if images is None or labels is None or len(images) == 0:
        raise ValueError("taylor pruning importance needs training images and labels")
    model.zero_grad(set_to_none=True)
    n = min(len(images), TAYLOR_BATCHES * TAYLOR_BATCH_SIZE)
    for start in range(0, n, TAYLOR_BATCH_SIZE):
        x, y = (
            images[start : min(n, start + TAYLOR_BATCH_SIZE)],
            labels[start : min(n, start + TAYLOR_BATCH_SIZE)],
        )
        F.cross_entropy(model(x), y, reduction="sum").backward()


def geometry_mismatches(model: nn.Module, blocks: list[BlockSpec]) -> list[str]:
    """Where the conv shapes of a ``SubNet`` differ from ``blocks`` (empty when they agree)."""
    specs = [b for b in blocks if b.is_mbconv]
    modules = [m for stage in mbconv_blocks(model) for m in stage]
    if len(specs) != len(modules):
        return [f"{len(modules)} MBConv blocks against {len(specs)} planned"]
    out = []
    for module, spec in zip(modules, specs):
        want = {
            "expand": (spec.hidden, spec.in_c, 1, 1),
            "dw": (spec.hidden, 1, spec.kernel, spec.kernel),
            "project": (spec.out_c, spec.hidden, 1, 1),
        }
        if spec.se:
            want["se.reduce"] = (spec.se_c, spec.hidden, 1, 1)
            want["se.expand"] = (spec.hidden, spec.se_c, 1, 1)
        if (module.se is not None) != spec.se:
            out.append(f"block {spec.stage}.{spec.index} squeeze-excite {module.se is not None} != {spec.se}")
            continue
        for name, shape in want.items():
            layer = module.get_submodule(name)
            got = tuple((layer if isinstance(layer, nn.Conv2d) else layer[0]).weight.shape)
            if got != shape:
                out.append(f"block {spec.stage}.{spec.index} {name} {got} != {shape}")
    return out
