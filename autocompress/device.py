"""Where training runs (``--device auto|cpu|cuda``): resolve the choice, mixed precision on CUDA,
data-loader settings per device.

Only training touches the device: supernet training, the candidates' fine-tune with
distillation, QAT and BatchNorm re-estimation. Models come back to the CPU afterwards; export,
quantization and accuracy stay on the CPU, measured by the target's runtime.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from autocompress.exceptions import BadInputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``spec`` names: ``auto`` is the first CUDA GPU when torch sees one, else
    the CPU; ``cuda`` (or ``cuda:N``) needs a GPU torch can use.

    Raises:
        BadInputError: an unknown name, or ``cuda`` on a machine without a usable GPU.
    """
    if isinstance(spec, torch.device):
        return spec
    name = (spec or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA" if torch.version.cuda is None
                   else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")  # fmt: skip
            raise BadInputError(f"--device {name}: no CUDA GPU is usable here ({why}); use --device cpu or auto")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise BadInputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", index)
    raise BadInputError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N); got {spec!r}")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type training uses on ``device``: bf16 on GPUs that have it (no loss
    scaling needed), else fp16; None on the CPU (training stays fp32 there)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """``torch.autocast`` with :func:`amp_dtype` on CUDA; nothing at all on the CPU."""
    dtype = amp_dtype(device)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for fp16 autocast (bf16 and fp32 need none). Disabled, its
    ``scale``/``unscale_``/``step``/``update`` are plain pass-throughs, so one loop serves both."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)


def clipped_step(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params: Any, clip: float = 5.0) -> None:
    """The optimizer step after the (scaled) losses were backpropagated: unscale, clip the
    gradient norm to ``clip``, step, update the scaler."""
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(params, clip)
    scaler.step(opt)
    scaler.update()


def loader_kwargs(device: torch.device, *, cpus: int | None = None) -> dict[str, Any]:
    """``torch.utils.data.DataLoader`` settings for training on ``device``.

    CUDA: pinned host memory (asynchronous copies) and persistent workers, up to 8 of them.
    CPU: the training itself needs the cores, so at most 2 workers and none on a machine with
    2 cores or fewer (a 2-core CI runner would only lose time to worker processes).
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        workers = max(1, min(8, cpus - 1))
        return {"num_workers": workers, "pin_memory": True, "persistent_workers": True}
    workers = 0 if cpus <= 2 else min(2, cpus // 4)
    return {"num_workers": workers, "pin_memory": False, "persistent_workers": workers > 0}


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device`` (the same tensor when it is already there)."""
    return x.to(device, non_blocking=device.type == "cuda")


def describe(spec: str, device: torch.device) -> dict[str, Any]:
    """The ``device`` entry of a run's ``config.yaml``: what was asked, what it resolved to on this
    machine, the GPU's name and the mixed precision used. Not part of a study's identity: a run
    resumed on another machine records that machine's."""
    out: dict[str, Any] = {"requested": spec, "resolved": str(device)}
    if device.type == "cuda":
        dtype = amp_dtype(device)
        out["gpu"] = torch.cuda.get_device_name(device)
        out["amp"] = str(dtype).removeprefix("torch.") if dtype is not None else None
    return out
