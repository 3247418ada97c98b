"""The finalize phase's long distillation fine-tune: epochs over the train split, cosine LR, a checkpoint per epoch.

``distill_epochs`` trains a candidate's network by a ``FinalizeSpec`` with the same
distillation loss as the search's short fine-tune (``distill.kd_loss``). After every epoch it
writes a checkpoint (weights, optimizer, LR schedule, epochs done) atomically, and it starts from
that checkpoint when one is there: a run killed with ``kill -9`` loses at most the epoch it was
in. Each epoch's order of samples depends only on the seed and the epoch, so a resumed training
sees the samples an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from autocompress._io import atomic_path
from autocompress.compress.distill import kd_loss
from autocompress.device import autocast, clipped_step, grad_scaler, resolve_device, to_device
from autocompress.schedule import FinalizeSpec


def steps_per_epoch(n_images: int, spec: FinalizeSpec) -> int:
    return max(1, math.ceil(n_images / spec.batch_size))


def read_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path`` (None when there is none, or it is unreadable: start over)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a file from another torch, or damaged: the training restarts from the search's weights
        return None


def distill_epochs(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    spec: FinalizeSpec,
    teacher_logits: torch.Tensor | None,
    seed: int = 0,
    checkpoint: Path | None = None,
    on_step: Callable[[int, int], None] | None = None,
    channels_last: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, int]:
    """Train ``model`` for ``spec.epochs`` epochs, distilling from ``teacher_logits`` (the
    largest network's outputs for ``images``, row for row) with ``spec.kd_alpha``.

    Returns the trained network (in eval mode) and the epoch it resumed from (0: a fresh start).
    ``on_step(done, total)`` reports progress in optimizer steps over the whole schedule.
    ``device``: where the steps run (mixed precision on CUDA, see :mod:`autocompress.device`);
    checkpoints hold CPU tensors, so a run interrupted on a GPU resumes anywhere.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    if teacher_logits is not None and teacher_logits.shape[0] != images.shape[0]:
        raise ValueError(f"teacher_logits has {teacher_logits.shape[0]} rows for {images.shape[0]} images")
    per_epoch = steps_per_epoch(images.shape[0], spec)
    total = spec.epochs * per_epoch
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dev = resolve_device(device)
    model = model.to(dev, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=0.9, nesterov=True, weight_decay=spec.weight_decay)
    if spec.schedule == "cosine":
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    start = 0
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None and state.get("total_steps") == total:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])  # moves its state to the parameters' device
        sched.load_state_dict(state["scheduler"])
        start = int(state["epoch"])
    teacher = teacher_logits if (teacher_logits is not None and spec.kd_alpha > 0) else None
    scaler = grad_scaler(dev)
    for epoch in range(start, spec.epochs):
        model.train()
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed * 1009 + epoch))
        for i in range(per_epoch):
            idx = order[i * spec.batch_size : (i + 1) * spec.batch_size]
            if idx.numel() == 0:  # a last, empty batch (n a multiple of the batch size)
                idx = order[: spec.batch_size]
            x = to_device(images[idx].contiguous(memory_format=fmt), dev)
            with autocast(dev):
                out = model(x)
            loss = kd_loss(out.float(), to_device(teacher[idx], dev) if teacher is not None else None,
                           to_device(labels[idx], dev), alpha=spec.kd_alpha, temperature=spec.kd_temperature)  # fmt: skip
            if not torch.isfinite(loss):
                raise FloatingPointError(f"finalize loss became {loss.item()} in epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            clipped_step(opt, scaler, model.parameters())
            sched.step()
            if on_step is not None:
                on_step(epoch * per_epoch + i + 1, total)
        if checkpoint is not None:
            with atomic_path(checkpoint) as tmp:
                torch.save({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "epoch": epoch + 1, "total_steps": total}, tmp)  # fmt: skip
    return model.to("cpu", memory_format=torch.contiguous_format).eval(), start
