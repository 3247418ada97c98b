"""Candidate -> subnet -> structured pruning -> KD fine-tune -> ONNX -> quantization -> accuracy
(ONNX Runtime), size, parameters, MACs, predicted latency and energy on the target.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from autocompress import compress
from autocompress.arch import block_precisions, unpruned
from autocompress.data import ImageDataset
from autocompress.hardware.predict import Prediction, predict
from autocompress.hardware.targets import Target
from autocompress.runtime import export_onnx, model_size, ort_accuracy
from autocompress.space import Candidate, SearchSpace
from autocompress.supernet import Supernet, extract_calibrated, teacher_logits

TAYLOR_SAMPLES = 256  # training samples whose gradients score channels for ``taylor`` pruning


@dataclass(frozen=True)
class TrialResult:
    """What one evaluated candidate scored. Accuracies are ONNX Runtime's on the exported file;
    ``params`` (weights with BatchNorm folded, whatever their precision) and ``macs`` are those of
    the final, pruned network."""

    val_accuracy: float
    test_accuracy: float
    latency_ms: float
    energy_mj: float | None
    size_bytes: int
    params: int
    macs: int
    interpolated_blocks: int
    model_path: str
    finetune_s: float
    eval_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator:
    """Holds what every trial shares: data, the trained supernet, the teacher and the target."""

    def __init__(
        self,
        *,
        space: SearchSpace,
        data: ImageDataset,
        supernet: Supernet,
        target: Target,
        models_dir: Path,
        supernet_key: str,
        seed: int = 0,
        batch: int = 1,
    ) -> None:
        self.space = space
        self.data = data
        self.supernet = supernet
        self.target = target
        self.models_dir = models_dir
        self.seed = seed
        self.batch = batch
        self.supernet_key = supernet_key
        self._teacher_logits: torch.Tensor | None = None

    def teacher_logits(self) -> torch.Tensor:
        """The largest subnet's outputs on the train split (computed once, cached on disk)."""
        if self._teacher_logits is None:
            self._teacher_logits = teacher_logits(self.supernet, self.data, self.supernet_key)
        return self._teacher_logits

    def predict(self, cand: Candidate) -> Prediction:
        blocks = self.supernet.plan(cand)
        return predict(
            self.target.table, blocks, block_precisions(cand, self.space, blocks), batch=self.batch
        )

    def evaluate(self, cand: Candidate, number: int) -> TrialResult:
        """Score one candidate for real; writes ``models/trial_NNNN.onnx``.

        The subnet is sliced from the supernet unpruned, pruned per stage (its BatchNorm
        statistics re-estimated afterwards), fine-tuned with distillation from the largest
        subnet, exported, quantized per stage and run by ONNX Runtime.
        """
        cfg = self.space.model.training
        prediction = self.predict(cand)  # fails fast on a target that cannot price it
        t0 = time.perf_counter()
        model = extract_calibrated(self.supernet, unpruned(cand), self.data)
        x_train, y_train = self.data.split("train", cand.resolution)
        x_cal, _ = self.data.split("calib", cand.resolution)
        model = compress.prepare(
            model, cand, self.space,
            images=x_train[:TAYLOR_SAMPLES], labels=y_train[:TAYLOR_SAMPLES],
            calibration=torch.cat([x_cal, x_train[:4096]]) if any(cand.prune) else None,
        )  # fmt: skip
        use_kd = cand.finetune_steps > 0 and cand.kd_alpha > 0
        model = compress.finetune(
            model, x_train, y_train,
            steps=cand.finetune_steps, teacher_logits=self.teacher_logits() if use_kd else None,
            alpha=cand.kd_alpha, temperature=cand.kd_temperature,
            lr=cfg.finetune_lr, batch_size=cfg.finetune_batch_size, seed=self.seed + number,
        )  # fmt: skip
        t1 = time.perf_counter()
        path = self.models_dir / f"trial_{number:04d}.onnx"
        fp32 = self.models_dir / f".trial_{number:04d}.fp32.onnx"
        try:
            export_onnx(compress.for_export(model, cand, self.space), fp32, channels=self.data.channels,
                        resolution=cand.resolution)  # fmt: skip
            calib, _ = self.data.split("calib", cand.resolution)
            compress.finalize(fp32, path, cand, self.space, calib.numpy())
        finally:
            fp32.unlink(missing_ok=True)
        x_val, y_val = self.data.split("val", cand.resolution)
        x_test, y_test = self.data.split("test", cand.resolution)
        blocks = self.supernet.plan(cand)  # the pruned geometry; prepare checked the model has it
        result = TrialResult(
            val_accuracy=ort_accuracy(path, x_val, y_val),
            test_accuracy=ort_accuracy(path, x_test, y_test),
            latency_ms=prediction.latency_ms,
            energy_mj=prediction.energy_mj,
            size_bytes=model_size(path),
            params=sum(b.params() for b in blocks),
            macs=sum(b.macs() for b in blocks),
            interpolated_blocks=prediction.interpolated,
            model_path=str(path),
            finetune_s=round(t1 - t0, 2),
            eval_s=round(time.perf_counter() - t1, 2),
        )
        return result


def onnx_params(path: str | Path) -> int:
    """Number of weights stored in an ONNX file (its initializers)."""
    model = onnx.load(str(path), load_external_data=False)
    total = 0
    for init in model.graph.initializer:
        n = 1
        for d in init.dims:
            n *= d
        total += n
    return total
