"""Quantization-aware fine-tuning with torch's fake quantization.

When int8 post-training quantization of a candidate loses more than the space's
``qat_threshold_pp`` of validation accuracy, the evaluator fine-tunes the network with the int8
arithmetic simulated in the forward pass, then quantizes it again:

- every conv / linear weight of an int8 part goes through
  ``torch.fake_quantize_per_channel_affine`` (symmetric int8, one scale per output channel, as
  the exporters use). Per-channel symmetric scales are unchanged by folding BatchNorm into the
  conv (each output channel is multiplied by one factor), so the grid trained on is the grid the
  deployed, BN-folded file stores;
- the activations the QDQ file quantizes (the output of every conv-BN-ReLU unit and of every
  block of an int8 part; for a user's model, whose modules we do not know, the input of every
  int8 conv / linear, which is where a QDQ file puts its QuantizeLinear) go through
  ``torch.ao.quantization.FakeQuantize`` (per-tensor asymmetric int8, moving-average min/max
  observer);
- BatchNorm statistics are frozen during the short fine-tune (its batches are small).

Afterwards the weights are left on the int8 grid (the parametrization is baked in) and the
model is exported and quantized by the same ``quantize_int8``/NNCF path as PTQ, so the int8
weights are those the fine-tune saw and the activation ranges are recalibrated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from autocompress.compress.distill import finetune
from autocompress.device import resolve_device, to_device

QMIN, QMAX = -128, 127


class WeightFakeQuant(nn.Module):
    """Parametrization: per-output-channel symmetric int8 fake quantization of a weight."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        amax = w.detach().abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(1e-12)
        scale = (amax / QMAX).float()
        zero = torch.zeros(w.shape[0], dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, QMIN, QMAX)


def activation_fake_quant() -> nn.Module:
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver

    return FakeQuantize(
        observer=MovingAverageMinMaxObserver,
        quant_min=QMIN,
        quant_max=QMAX,
        dtype=torch.qint8,
        qscheme=torch.per_tensor_affine,
    )


def _activation_points(part: nn.Module) -> Iterator[nn.Module]:
    """Modules whose output the deployed QDQ file quantizes: conv-BN(-ReLU) units and blocks."""
    from autocompress.supernet import ConvBNAct, MBConv

    for m in part.modules():
        if isinstance(m, (ConvBNAct, MBConv)):
            yield m


@contextmanager
def fake_quantized(parts: Iterable[nn.Module], *, inputs: bool = False) -> Iterator[list[nn.Module]]:
    """Simulate int8 inside ``parts`` (modules of one model) while the block runs.

    ``inputs``: fake-quantize the input of every conv / linear (any model) instead of the
    output of our conv-BN-act units and blocks.

    On exit the fake-quantized weights are baked in (they stay on their int8 grid) and every
    hook is removed, so the model is a plain float module again.
    """
    hooks, quantizers, weighted = [], [], []
    for part in parts:
        for m in part.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not parametrize.is_parametrized(m, "weight"):
                parametrize.register_parametrization(m, "weight", WeightFakeQuant())
                weighted.append(m)
                if inputs:
                    fq = activation_fake_quant()
                    quantizers.append(fq)
                    hooks.append(m.register_forward_pre_hook(lambda _m, args, fq=fq: (fq(args[0]), *args[1:])))
        for m in () if inputs else _activation_points(part):
            fq = activation_fake_quant()
            quantizers.append(fq)
            hooks.append(m.register_forward_hook(lambda _m, _i, out, fq=fq: fq(out)))
    try:
        yield quantizers
    finally:
        for h in hooks:
            h.remove()
        for m in weighted:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


def qat_finetune(
    model: nn.Module,
    int8_parts: list[str],
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    teacher_logits: torch.Tensor | None,
    alpha: float,
    temperature: float,
    lr: float,
    batch_size: int,
    seed: int,
    calibration: torch.Tensor,
    inputs: bool = False,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """A copy of ``model`` fine-tuned for ``steps`` with the ``int8_parts`` (attribute paths
    such as ``stages.1`` or ``stem``) fake-quantized; the original is left untouched.

    ``calibration`` images set the activation observers before the first step. ``inputs``: see
    :func:`fake_quantized` (a user's model; it also trains in the default memory format, see
    :func:`~autocompress.compress.distill.finetune`). ``device``: where observers are set and the
    steps run; the copy comes back on the CPU.
    """
    dev = resolve_device(device)
    student = copy.deepcopy(model).eval()
    parts = [student.get_submodule(name) for name in int8_parts]
    with fake_quantized(parts, inputs=inputs) as quantizers:
        student.to(dev)
        for fq in quantizers:  # held by hooks, not by the model: moved one by one
            fq.to(dev)
        with torch.no_grad():
            for chunk in calibration.split(256):
                student(to_device(chunk, dev))
        student = finetune(
            student, images, labels,
            steps=steps, teacher_logits=teacher_logits, alpha=alpha, temperature=temperature,
            lr=lr, batch_size=batch_size, seed=seed, freeze_bn=True, channels_last=not inputs, device=dev,
        )  # fmt: skip
    return student.to("cpu").eval()
