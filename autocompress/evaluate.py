"""Candidate -> subnet -> structured pruning -> KD fine-tune -> ONNX -> int8 quantization (PTQ,
then QAT when PTQ loses too much) -> accuracy (the target's runtime: OpenVINO for OpenVINO
targets, else ONNX Runtime), size, parameters, MACs, predicted latency and energy on the target.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from autocompress import compress
from autocompress._io import atomic_path
from autocompress.arch import block_precisions, unpruned
from autocompress.data import ImageDataset
from autocompress.hardware.predict import Prediction, predict
from autocompress.hardware.targets import Target
from autocompress.runtime import accuracy, accuracy_runtime, export_onnx, model_size
from autocompress.space import Candidate, SearchSpace
from autocompress.supernet import Supernet, extract_calibrated, teacher_logits

TAYLOR_SAMPLES = 256  # training samples whose gradients score channels for ``taylor`` pruning
QAT_LR_FACTOR = 0.25  # QAT starts from a fine-tuned network: a quarter of the fine-tune's rate


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
    accuracy_runtime: str = "onnxruntime"
    # int8 candidates: validation accuracy before int8 (the exported float file), the
    # post-training-quantization loss in percentage points, and whether QAT replaced PTQ
    float_val_accuracy: float | None = None
    ptq_drop_pp: float | None = None
    qat_val_accuracy: float | None = None
    qat_applied: bool = False

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
        subnet, exported, quantized per stage (PTQ; when the candidate allows QAT and PTQ loses
        more than ``compression.qat_threshold_pp`` of validation accuracy, a fake-quantized
        fine-tune follows and its file is kept if it scores better on validation) and run by
        the target's runtime.
        """
        cfg = self.space.model.training
        comp = self.space.model.compression
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
        use_kd = cand.kd_alpha > 0
        model = compress.finetune(
            model, x_train, y_train,
            steps=cand.finetune_steps,
            teacher_logits=self.teacher_logits() if use_kd and cand.finetune_steps > 0 else None,
            alpha=cand.kd_alpha, temperature=cand.kd_temperature,
            lr=cfg.finetune_lr, batch_size=cfg.finetune_batch_size, seed=self.seed + number,
        )  # fmt: skip
        t1 = time.perf_counter()
        device_runtime = self.target.table.device.runtime
        runtime = accuracy_runtime(device_runtime)
        x_val, y_val = self.data.split("val", cand.resolution)
        x_test, y_test = self.data.split("test", cand.resolution)
        path = self.models_dir / f"trial_{number:04d}.onnx"
        stem = f".trial_{number:04d}"
        quant = {}
        with tempfile.TemporaryDirectory(dir=self.models_dir, prefix=stem) as tmp:
            tmp_dir = Path(tmp)

            def deploy(net: torch.nn.Module, name: str) -> Path:
                fp32, out = tmp_dir / f"{name}.float.onnx", tmp_dir / f"{name}.onnx"
                export_onnx(compress.for_export(net, cand, self.space), fp32, channels=self.data.channels,
                            resolution=cand.resolution)  # fmt: skip
                compress.finalize(fp32, out, cand, self.space, x_cal.numpy(), runtime=device_runtime)
                return out

            best = deploy(model, "ptq")
            int8 = compress.int8_modules(cand, self.space)
            if int8:
                float_val = accuracy(tmp_dir / "ptq.float.onnx", x_val, y_val, runtime=runtime)
                best_val = accuracy(best, x_val, y_val, runtime=runtime)
                drop = 100 * (float_val - best_val)
                quant = {"float_val_accuracy": float_val, "ptq_drop_pp": round(drop, 3)}
                if cand.qat and drop > comp.qat_threshold_pp:
                    qmodel = compress.qat_finetune(
                        model, int8, x_train, y_train,
                        steps=comp.qat_steps, teacher_logits=self.teacher_logits() if use_kd else None,
                        alpha=cand.kd_alpha, temperature=cand.kd_temperature,
                        lr=cfg.finetune_lr * QAT_LR_FACTOR, batch_size=cfg.finetune_batch_size,
                        seed=self.seed + number, calibration=x_cal,
                    )  # fmt: skip
                    qat_file = deploy(qmodel, "qat")
                    qat_val = accuracy(qat_file, x_val, y_val, runtime=runtime)
                    quant["qat_val_accuracy"] = qat_val
                    if qat_val > best_val:
                        best, quant["qat_applied"] = qat_file, True
            with atomic_path(path) as out:
                shutil.copyfile(best, out)
        blocks = self.supernet.plan(cand)  # the pruned geometry; prepare checked the model has it
        result = TrialResult(
            val_accuracy=accuracy(path, x_val, y_val, runtime=runtime),
            test_accuracy=accuracy(path, x_test, y_test, runtime=runtime),
            latency_ms=prediction.latency_ms,
            energy_mj=prediction.energy_mj,
            size_bytes=model_size(path),
            params=sum(b.params() for b in blocks),
            macs=sum(b.macs() for b in blocks),
            interpolated_blocks=prediction.interpolated,
            model_path=str(path),
            finetune_s=round(t1 - t0, 2),
            eval_s=round(time.perf_counter() - t1, 2),
            accuracy_runtime=runtime,
            **quant,
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
