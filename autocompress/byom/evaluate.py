"""Score one compression of a user's model: prune (torch-pruning DepGraph) -> BatchNorm
re-estimated -> KD fine-tune from the user's model -> ONNX export -> int8 per part (ONNX
Runtime static QDQ; when the candidate allows QAT and PTQ loses more than ``qat_threshold_pp``
of validation accuracy, a fake-quantized fine-tune and a second quantization, kept if better on
validation) -> accuracy by ONNX Runtime on val and test -> size, params, MACs -> latency and
energy from the target's generic layer table."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from autocompress import compress
from autocompress._io import atomic_path
from autocompress.byom.model import UserModel
from autocompress.byom.space import ModelCandidate, ModelSpace, prune_model
from autocompress.compress.quantize import quantize_int8
from autocompress.data import ImageDataset
from autocompress.evaluate import QAT_LR_FACTOR, TrialResult, onnx_params
from autocompress.exceptions import CompressionUnavailableError, UnpricedLayersError
from autocompress.hardware.layer_predict import layer_precisions, predict_layers, unpriced
from autocompress.hardware.layer_table import LayerSpec, LayerTable, load_layers
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.hardware.pricing import Prediction
from autocompress.hardware.targets import Target
from autocompress.runtime import export_onnx, model_size, ort_accuracy
from autocompress.supernet import recalibrate_bn

TAYLOR_SAMPLES = 256
_NOT_IN_TABLES = "no layer table has rows for their op"


class ModelEvaluator:
    """What every trial of a model search shares: the user's model (the teacher), the data,
    the derived space and the target."""

    def __init__(self, *, user: UserModel, space: ModelSpace, data: ImageDataset, target: Target,
                 models_dir: Path, seed: int = 0, batch: int = 1) -> None:  # fmt: skip
        self.user = user
        self.space = space
        self.data = data
        self.target = target
        self.models_dir = models_dir
        self.seed = seed
        self.batch = batch
        self.resolution = user.input_shape[1]
        self.layer_table: LayerTable = load_layers(target.folder, target.device)
        self._teacher: torch.Tensor | None = None

    # ------------------------------------------------------------------ helpers

    def example(self) -> torch.Tensor:
        return torch.zeros(2, *self.user.input_shape)

    def teacher_logits(self) -> torch.Tensor:
        """The user's model's logits on the train split (computed once per search)."""
        if self._teacher is None:
            x, _ = self.data.split("train", self.resolution)
            with torch.no_grad():
                self._teacher = torch.cat([self.user.module(x[i : i + 512]) for i in range(0, len(x), 512)])
        return self._teacher

    def prune(self, cand: ModelCandidate, *, calibrate: bool = True) -> nn.Module:
        x_train, y_train = self.data.split("train", self.resolution)
        model = prune_model(self.user.module, self.space, cand.ratios, self.example(),
                            images=x_train[:TAYLOR_SAMPLES], labels=y_train[:TAYLOR_SAMPLES])  # fmt: skip
        if calibrate and any(cand.ratios.values()):
            x_cal, _ = self.data.split("calib", self.resolution)
            recalibrate_bn(model, torch.cat([x_cal, x_train[:4096]]), self.space.spec.recalib_batches)
        return model.eval()

    def export(self, model: nn.Module, path: Path) -> Path:
        return export_onnx(model, path, channels=self.user.input_shape[0], resolution=self.resolution)

    def prefixes(self, cand: ModelCandidate) -> dict[str, str]:
        parts = {p.name: p for p in self.space.parts}
        return {parts[name].onnx_prefix: prec for name, prec in cand.precision}

    def layers_of(self, fp32_path: Path) -> list[LayerSpec]:
        layers, unknown = extract_layers(fp32_path)
        if unknown:
            raise UnpricedLayersError(
                f"target {self.target.name} cannot price {len(unknown)} node(s) of {self.user.spec}: "
                f"{'; '.join(unknown[:8])} ({_NOT_IN_TABLES}: conv, linear, pooling, add, mul, activations)"
            )
        return layers

    def price(self, layers: list[LayerSpec], cand: ModelCandidate) -> Prediction:
        precisions = layer_precisions(layers, self.prefixes(cand))
        missing = unpriced(self.target.device, self.layer_table, layers, precisions, self.batch)
        if missing:
            raise UnpricedLayersError(
                f"target {self.target.name} has no layer-table rows for {len(missing)} layer(s) of "
                f"{self.user.spec}: {'; '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; profile them "
                f"with: {profile_command(self.user, self.target)}"
            )
        return predict_layers(self.target.device, self.layer_table, layers, precisions, batch=self.batch)

    def predict(self, cand: ModelCandidate) -> Prediction:
        """Predicted latency of ``cand`` (prunes and exports it; no fine-tune)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.export(self.prune(cand, calibrate=False), Path(tmp) / "m.onnx")
            return self.price(self.layers_of(path), cand)

    # ------------------------------------------------------------------ a trial

    def evaluate(self, cand: ModelCandidate, number: int) -> TrialResult:
        """Score ``cand`` for real; writes ``models/trial_NNNN.onnx``."""
        if any(p == "fp16" for _, p in cand.precision):
            raise CompressionUnavailableError(
                "fp16 parts of a user's model are not exported yet; use fp32 or int8 in --space precisions"
            )
        spec = self.space.spec
        t0 = time.perf_counter()
        model = self.prune(cand)
        x_train, y_train = self.data.split("train", self.resolution)
        use_kd = cand.finetune_steps > 0 and cand.kd_alpha > 0
        model = compress.finetune(
            model, x_train, y_train, steps=cand.finetune_steps,
            teacher_logits=self.teacher_logits() if use_kd else None, alpha=cand.kd_alpha,
            temperature=cand.kd_temperature, lr=spec.finetune_lr, batch_size=spec.finetune_batch_size,
            seed=self.seed + number, channels_last=False,
        )  # fmt: skip
        t1 = time.perf_counter()
        path = self.models_dir / f"trial_{number:04d}.onnx"
        x_val, y_val = self.data.split("val", self.resolution)
        x_test, y_test = self.data.split("test", self.resolution)
        calib, _ = self.data.split("calib", self.resolution)
        prefixes = self.prefixes(cand)
        quant: dict = {}
        with tempfile.TemporaryDirectory(dir=self.models_dir, prefix=f".trial_{number:04d}") as tmp:
            tmp_dir = Path(tmp)

            def deploy(net: nn.Module, name: str) -> Path:
                fp32, out = tmp_dir / f"{name}.float.onnx", tmp_dir / f"{name}.onnx"
                self.export(net, fp32)
                return finalize_model(fp32, out, prefixes, calib.numpy())

            best = deploy(model, "ptq")
            layers = self.layers_of(tmp_dir / "ptq.float.onnx")
            prediction = self.price(layers, cand)
            params = onnx_params(tmp_dir / "ptq.float.onnx")
            int8 = [m for p in self.space.parts if cand.precisions.get(p.name) == "int8" for m in p.modules]
            if int8:
                float_val = ort_accuracy(tmp_dir / "ptq.float.onnx", x_val, y_val)
                best_val = ort_accuracy(best, x_val, y_val)
                drop = 100 * (float_val - best_val)
                quant = {"float_val_accuracy": float_val, "ptq_drop_pp": round(drop, 3)}
                if cand.qat and drop > spec.qat_threshold_pp:
                    qmodel = compress.qat_finetune(
                        model, int8, x_train, y_train,
                        steps=spec.qat_steps, teacher_logits=self.teacher_logits() if cand.kd_alpha > 0 else None,
                        alpha=cand.kd_alpha, temperature=cand.kd_temperature,
                        lr=spec.finetune_lr * QAT_LR_FACTOR, batch_size=spec.finetune_batch_size,
                        seed=self.seed + number, calibration=calib, inputs=True,
                    )  # fmt: skip
                    qat_file = deploy(qmodel, "qat")
                    qat_val = ort_accuracy(qat_file, x_val, y_val)
                    quant["qat_val_accuracy"] = qat_val
                    if qat_val > best_val:
                        best, quant["qat_applied"] = qat_file, True
            with atomic_path(path) as out:
                shutil.copyfile(best, out)
        return TrialResult(
            val_accuracy=ort_accuracy(path, x_val, y_val),
            test_accuracy=ort_accuracy(path, x_test, y_test),
            latency_ms=prediction.latency_ms,
            energy_mj=prediction.energy_mj,
            size_bytes=model_size(path),
            params=params,
            macs=sum(layer.key.macs() for layer in layers),
            interpolated_blocks=prediction.interpolated,
            model_path=str(path),
            finetune_s=round(t1 - t0, 2),
            eval_s=round(time.perf_counter() - t1, 2),
            accuracy_runtime="onnxruntime",
            **quant,
        )


def finalize_model(src: Path, dst: Path, prefixes: dict[str, str], calibration) -> Path:  # noqa: ANN001
    """Quantize the nodes under int8 prefixes (everything else stays float); copy when none."""
    import onnx

    int8 = tuple(p for p, prec in prefixes.items() if prec == "int8")
    if not int8:
        with atomic_path(dst) as tmp:
            tmp.write_bytes(src.read_bytes())
        return dst
    names = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node]
    keep_float = [n for n in names if n and not n.startswith(int8)]
    return quantize_int8(src, dst, calibration, exclude_prefixes=keep_float)


def profile_command(user: UserModel, target: Target) -> str:
    shape = ",".join(str(d) for d in user.input_shape)
    runtime = target.device.runtime if target.device.runtime in ("onnxruntime", "openvino") else "onnxruntime"
    return (f"autocompress profile --layers --model {user.spec} --weights {user.weights} --input-shape {shape} "
            f"--runtime {runtime} --name {target.name}")  # fmt: skip
