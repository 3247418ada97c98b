"""Knowledge-distillation fine-tune: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from autocompress.device import autocast, clipped_step, grad_scaler, resolve_device, to_device


def kd_loss(
    student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor, *,
    alpha: float, temperature: float,
) -> torch.Tensor:  # fmt: skip
    """Hinton distillation loss; with ``alpha == 0`` (or no teacher) it is plain cross-entropy."""
    ce = F.cross_entropy(student, labels)
    if alpha == 0 or teacher is None:
        return ce
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
        reduction="batchmean", log_target=True,
    )  # fmt: skip
    return alpha * (t * t) * kl + (1 - alpha) * ce


def finetune(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    teacher_logits: torch.Tensor | None = None,
    alpha: float = 0.0,
    temperature: float = 4.0,
    lr: float = 0.005,
    batch_size: int = 128,
    seed: int = 0,
    freeze_bn: bool = False,
    channels_last: bool = True,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Fine-tune ``model`` for ``steps`` SGD steps, distilling with weight ``alpha`` from
    ``teacher_logits`` (the teacher's outputs for ``images``, row for row, computed once per
    search so that no step pays for a teacher forward pass). ``freeze_bn`` keeps BatchNorm
    statistics as they are (quantization-aware fine-tuning).

    ``channels_last=False`` trains in the default memory format: user models (bring your own
    model) do, since torch 2.13's CPU backward of some small channels_last convs with in-place
    ReLU corrupts the heap (a ResNet basic block at 4 channels aborts with 'double free').

    ``device``: where the steps run (mixed precision on CUDA, see :mod:`autocompress.device`);
    the model comes back on the CPU.

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    if steps <= 0:
        return model.eval()
    if teacher_logits is not None and teacher_logits.shape[0] != images.shape[0]:
        raise ValueError(f"teacher_logits has {teacher_logits.shape[0]} rows for {images.shape[0]} images")
    gen = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    dev = resolve_device(device)
    model = model.to(dev, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    scaler = grad_scaler(dev)
    order = torch.empty(0, dtype=torch.long)
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    for step in range(steps):
        if order.numel() < batch_size:
            order = torch.cat([order, torch.randperm(images.shape[0], generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        x = to_device(images[idx].contiguous(memory_format=fmt), dev)
        t_logits = to_device(teacher_logits[idx], dev) if (teacher_logits is not None and alpha > 0) else None
        with autocast(dev):
            out = model(x)
        loss = kd_loss(out.float(), t_logits, to_device(labels[idx], dev), alpha=alpha, temperature=temperature)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tune loss became {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        clipped_step(opt, scaler, model.parameters())
        sched.step()
    return model.to("cpu", memory_format=torch.contiguous_format).eval()
