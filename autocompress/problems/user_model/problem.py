"""The user-model problem: candidates are compressions of a user's trained PyTorch network.

Prune (torch-pruning DepGraph) -> BatchNorm re-estimated -> KD fine-tune from the user's model
-> ONNX export -> the one deploy step (int8 per part by the target's runtime's quantizer: ONNX
Runtime static QDQ, or NNCF for OpenVINO targets; QAT when PTQ loses more than
``qat_threshold_pp``, kept if better on validation) -> accuracy by the target's runtime on val
and test -> size, params, MACs -> latency and energy from the target's generic layer table.
Parts a candidate runs in fp16 are exported in half precision with casts at their edges
(``half.py``) and priced with fp16 rows. On a measured table timed on this machine, ``prepare``
fits the table's ``layer_scale`` to the user's original timed end to end (``run_scale.py``) and
every trial is priced with it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import shlex
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from autocompress import compress
from autocompress.budget import MAX_MIXES, LatencyRange
from autocompress.data import ImageDataset, load_dataset
from autocompress.data_files import DEFAULT_DATASET
from autocompress.device import describe as describe_device
from autocompress.device import resolve_device
from autocompress.exceptions import ModelError, UnpricedLayersError
from autocompress.hardware.interval import band_key, interval
from autocompress.hardware.layer_fill import fill_layers
from autocompress.hardware.layer_predict import layer_precisions, predict_layers, unpriced
from autocompress.hardware.layer_table import OPS, LayerSpec, LayerTable, load_layers
from autocompress.hardware.onnx_layers import extract_layers
from autocompress.hardware.pricing import Prediction
from autocompress.hardware.targets import Target, get_target
from autocompress.model_spec import parse_input_shape
from autocompress.problems.base import Problem, ProblemHooks, RunDescriber, TrialResult
from autocompress.problems.user_model.half import half_parts
from autocompress.problems.user_model.loader import UserModel, load_user_model
from autocompress.problems.user_model.run_scale import Network, RunScale, fit_run_scale, why_not_here
from autocompress.problems.user_model.space import (
    ModelCandidate,
    ModelSpace,
    derive_space,
    load_model_space_spec,
    prune_model,
)
from autocompress.runtime import accuracy, accuracy_runtime, export_onnx, model_size, onnx_params
from autocompress.schedule import FinalizeSpec
from autocompress.supernet import recalibrate_bn

log = logging.getLogger(__name__)

TAYLOR_SAMPLES = 256
QAT_LR_FACTOR = 0.25  # QAT starts from a fine-tuned network: a quarter of the fine-tune's rate
_NOT_IN_TABLES = "no layer table has rows for their op"


class UserModelDescriber(RunDescriber):
    """Rows of a user-model run, from its config alone (the user's code is not imported)."""

    kind = "model"

    def dimensions(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in ((self.config.get("space") or {}).get("dimensions") or {}).items()}

    def candidate(self, flat: dict[str, Any]) -> ModelCandidate:
        dims = self.dimensions()
        return ModelCandidate.from_flat({k: v for k, v in flat.items() if k in dims or not dims})

    def input_shape(self, cand: ModelCandidate) -> tuple[int, int, int]:
        c, h, w = (self.config.get("model") or {}).get("input_shape") or (1, 28, 28)
        return int(c), int(h), int(w)

    def parts(self, cand: ModelCandidate) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{"part": f"prune {name}", "prune ratio": r} for name, r in cand.prune]
        rows += [{"part": f"precision {name}", "precision": p} for name, p in cand.precision]
        return rows


CHANCE_FACTOR = 1.5  # an original scoring at most this many times chance is taken for untrained or mismatched


class UserModelProblem(Problem, UserModelDescriber):
    """What every trial of a model search shares: the user's model (the teacher), the data,
    the derived space and the target. Loading checks that model, weights and data fit together
    (``ModelError``, before anything is written)."""

    def __init__(self, *, model: str, weights: Path | None, target: str, space: str | Path | None = None,
                 input_shape: str | None = None, dataset: str | None = None, data_dir: Path | None = None,
                 subset: int | None = None, seed: int = 0, batch: int = 1, device: str = "auto") -> None:  # fmt: skip
        self.device_spec = device  # where fine-tunes run (--device); workers resolve it on their machine
        self.device = resolve_device(device)
        if weights is None:
            raise ModelError("--model needs --weights (a state dict saved with torch.save(model.state_dict(), path))")
        self.target: Target = get_target(target)
        self.dataset_spec = dataset or DEFAULT_DATASET
        self.data_dir, self.subset, self.seed, self.batch = data_dir, subset, seed, batch
        self.space_spec = space
        self.shape_spec = input_shape
        self.data: ImageDataset = load_dataset(self.dataset_spec, data_dir=data_dir, subset=subset, seed=seed)
        shape = parse_input_shape(input_shape) if input_shape else None
        data = self.data
        self.user: UserModel = load_user_model(model, weights, input_shape=shape,
                                               default_shape=(data.channels, data.image_size, data.image_size))  # fmt: skip
        user = self.user
        if user.num_outputs != data.num_classes:
            raise ModelError(
                f"data set {data.name} has {data.num_classes} classes but {user.function}() outputs "
                f"{user.num_outputs} logits; pass the data set the model was trained on"
            )
        if user.input_shape[0] != data.channels:
            raise ModelError(
                f"data set {data.name} has {data.channels}-channel images but the model takes "
                f"{user.input_shape[0]} channels (--input-shape)"
            )
        spec = load_model_space_spec(space)
        name = Path(user.source).stem if user.source.endswith(".py") else user.source
        self.space: ModelSpace = derive_space(
            user.module, self.example(), spec, precisions=list(self.target.device.precisions),
            name=f"{name}:{user.function}", fn_name=f"{user.function}()",
        )  # fmt: skip
        self.resolution = user.input_shape[1]
        self.layer_table: LayerTable = load_layers(self.target.folder, self.target.device)
        self.models_dir = Path("models")
        self._teacher: torch.Tensor | None = None
        self._baseline: dict[str, Any] = {}
        UserModelDescriber.__init__(self, {"space": self.space.to_dict(), "model": user.describe()})

    @classmethod
    def from_parts(cls, *, user: UserModel, space: ModelSpace, data: ImageDataset, target: Target,
                   models_dir: Path, seed: int = 0, batch: int = 1) -> UserModelProblem:  # fmt: skip
        """A problem over objects already in memory (tests, benchmarks)."""
        self = cls.__new__(cls)
        self.user, self.space, self.data, self.target = user, space, data, target
        self.dataset_spec, self.data_dir, self.subset, self.seed, self.batch = data.name, None, None, seed, batch
        self.space_spec, self.shape_spec = None, None
        self.device_spec, self.device = "cpu", resolve_device("cpu")
        self.resolution = user.input_shape[1]
        self.layer_table = load_layers(target.folder, target.device)
        self.models_dir, self._teacher, self._baseline = models_dir, None, {}
        UserModelDescriber.__init__(self, {"space": space.to_dict(), "model": user.describe()})
        return self

    # ------------------------------------------------------------------ set-up

    def fingerprint(self) -> str:
        return f"{self.space.fingerprint(self.user.weights_sha256)}-{self.space.size()}"

    def check(self, hooks: ProblemHooks | None = None) -> None:
        """Every layer priced before any training: the unpruned model and the most compressed one.

        On a table measured on this machine, the layers of both whose family has no row (at every
        precision the space may give them) are profiled first and merged into the table
        (``hooks.profile_step(done, total)`` reports progress); a table measured elsewhere is
        refused with the command that profiles them there, before anything is written.
        """
        cands = [self.largest(), self.smallest()]
        with tempfile.TemporaryDirectory() as tmp:
            layers = [self.layers_of(self.export(self.prune(c, calibrate=False), Path(tmp) / f"m{i}.onnx"))
                      for i, c in enumerate(cands)]  # fmt: skip
        precisions = {"fp32"} | {p for k, v in self.space.dimensions().items() if k.startswith("precision.") for p in v}
        keys = [layer.at(p, self.batch) for ls in layers for layer in ls for p in sorted(precisions)]
        self.layer_table, _ = fill_layers(self.target, self.layer_table, keys,
                                          command=profile_command(self.user, self.target),
                                          on_progress=hooks.profile_step if hooks else None)  # fmt: skip
        self._baseline_prediction = self.price(layers[0], cands[0])
        self._smallest_prediction = self.price(layers[1], cands[1])
        self._end_layers = layers  # the range prices both at every precision mix
        from autocompress.hardware.families import uncovered_note
        from autocompress.hardware.layer_estimate import roofline_layer

        self._family_note = uncovered_note(self.target.device, [roofline_layer(layer.at("fp32", self.batch))
                                                                for layer in layers[0]])  # fmt: skip

    def family_note(self) -> str | None:
        return getattr(self, "_family_note", None)

    def prepare(self, models_dir: Path, hooks: ProblemHooks | None = None) -> dict[str, Any]:
        """Export the original (``models/original.onnx``), fit the layer table's scale to it on
        this machine (measured tables timed here; reused from ``models/latency_scale.json`` on
        ``--resume``), and measure its accuracy."""
        self.models_dir = models_dir
        original = models_dir / "original.onnx"
        if not original.is_file():
            self.export(self.user.module, original)
        before = getattr(self, "_baseline_prediction", None) or self.predict(self.largest())
        scale = self._run_scale(original)
        baseline = self.predict(self.largest()) if scale is not None else before
        runtime = self.runtime
        x_val, y_val = self.data.split("val", self.resolution)
        x_test, y_test = self.data.split("test", self.resolution)
        self._baseline = {
            "val_accuracy": accuracy(original, x_val, y_val, runtime=runtime),
            "test_accuracy": accuracy(original, x_test, y_test, runtime=runtime),
            "accuracy_runtime": runtime,
            "latency_ms": baseline.latency_ms,
            "energy_mj": baseline.energy_mj,
            "size_bytes": model_size(original),
            "model_path": str(original),
            "latency_scale": self._scale_entry(scale, before.latency_ms),
        }
        chance = 1 / self.data.num_classes
        if hooks and hooks.note and self._baseline["val_accuracy"] <= CHANCE_FACTOR * chance:
            hooks.note(f"warning: your model {self.user.function}() scores {100 * self._baseline['val_accuracy']:.1f}% "
                       f"on {self.data.name}'s validation split, about chance ({100 * chance:.0f}% for "
                       f"{self.data.num_classes} classes): are --weights trained on this data set, at this input "
                       "size? Every candidate is compared with it")  # fmt: skip
        return {"baseline": self._baseline}

    def _run_scale(self, original: Path) -> RunScale | None:
        """The run's layer scale: the one a previous start of this run fitted, else fitted now
        (None where the table cannot be timed here). Applied to ``self.target``."""
        device = self.target.device
        why = why_not_here(device)
        if why is not None:
            self._scale_why = why
            return None
        scale = RunScale.load(self.models_dir)
        if scale is None:
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(dir=self.models_dir, prefix=".scale") as tmp:
                scale = fit_run_scale(device, self.layer_table, self._scale_networks(original, Path(tmp)),
                                      batch=self.batch)  # fmt: skip
            scale.save(self.models_dir)
            log.info("layer scale fitted on the original in %.1f s: %s", time.perf_counter() - t0, scale.layer_scale)
        self.target = dataclasses.replace(self.target, device=scale.apply(device))
        return scale

    def _scale_networks(self, original: Path, tmp: Path) -> list[Network]:
        """The original in fp32 and, where the space allows int8, with every int8-able part
        quantized (as a trial's deploy step would)."""
        layers = self.layers_of(original)
        shape = (self.batch, *self.user.input_shape)
        nets = [Network("fp32", layers, ["fp32"] * len(layers), original, shape)]
        int8 = {p.onnx_prefix: "int8" for p in self.space.parts
                if "int8" in self.space.dimensions()[f"precision.{p.name}"]}  # fmt: skip
        if int8 and "int8" in self.target.device.precisions:
            calib, _ = self.data.split("calib", self.resolution)
            quant = compress.Quantization(int8=True, keep_float=compress.float_nodes_outside(original, list(int8)),
                                          runtime=self.target.device.runtime)  # fmt: skip
            path = compress.ptq(original, tmp / "original.int8.onnx", calib.numpy(), quant)
            nets.append(Network("int8", layers, layer_precisions(layers, int8), path, shape))
        return nets

    def _scale_entry(self, scale: RunScale | None, before_ms: float) -> dict[str, Any]:
        """What config.yaml records of the run's scale."""
        if scale is None:
            return {"fitted": False, "why": getattr(self, "_scale_why", ""), "predicted_ms": round(before_ms, 5),
                    "layer_scale": self.target.device.layer_scale}  # fmt: skip
        return {"fitted": True, **scale.to_dict()}

    # pruning changes the layers (a candidate's are known once it is pruned and exported): a range
    # over every candidate would export each ratio combination, so it is not claimed
    range_final_after_check = False  # prepare fits the run's layer scale: every price may move

    def latency_range(self) -> LatencyRange:
        """The original model and the most compressed one, each at every precision mix the space
        offers (every mix priced up to ``MAX_MIXES``, else one precision everywhere): int8 entries
        cost, so a mix can be slower than both ends. Partly pruned candidates are not priced
        (``exact`` False: the range is the fastest and slowest found). Priced again once ``prepare``
        has fitted the run's scale to this machine."""
        ends = [(self.largest(), 0), (self.smallest(), 1)]
        layers = getattr(self, "_end_layers", None)
        if layers is None:
            with tempfile.TemporaryDirectory() as tmp:
                layers = [self.layers_of(self.export(self.prune(c, calibrate=False), Path(tmp) / f"m{i}.onnx"))
                          for c, i in ends]  # fmt: skip
            self._end_layers = layers
        dims = {k: v for k, v in self.space.dimensions().items() if k.startswith("precision.")}
        if math.prod(len(v) for v in dims.values()) <= MAX_MIXES:
            mixes = [dict(zip(dims, m)) for m in itertools.product(*dims.values())]
        else:  # one precision everywhere it is offered (fp32 where it is not)
            precs = sorted({p for v in dims.values() for p in v})
            mixes = [{k: (p if p in v else v[0]) for k, v in dims.items()} for p in precs]
        priced = []
        for cand, i in ends:
            for mix in mixes:
                c = ModelCandidate.from_flat({**cand.to_flat(), **mix})
                priced.append((self.price(layers[i], c).latency_ms, c.describe()))
        (lo, fastest), (hi, slowest) = min(priced), max(priced)
        return LatencyRange(min_ms=lo, max_ms=hi, target=self.target.name, estimated=self.target.estimated,
                            fastest=fastest, slowest=slowest, exact=False)  # fmt: skip

    def attach(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        scale = RunScale.load(models_dir)
        if scale is not None and why_not_here(self.target.device) is None:
            self.target = dataclasses.replace(self.target, device=scale.apply(self.target.device))

    def config_entries(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "space_path": str(self.space_spec) if self.space_spec else None,
            "space_fingerprint": self.fingerprint(),
            "space": self.space.to_dict(),
            "dataset": {**self.data.describe(), "spec": self.dataset_spec, "subset": self.subset},
            "model": self.user.describe(),
            "device": describe_device(self.device_spec, self.device),
        }

    def recipe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            # a worker runs in another folder: the builder's file by its absolute path
            "model": f"{self.user.source}:{self.user.function}" if self.user.source.endswith(".py") else self.user.spec,
            "weights": str(Path(self.user.weights).resolve()),
            "target": self.target.name,
            "space": str(Path(self.space_spec).resolve()) if self.space_spec else None,
            "input_shape": self.shape_spec,
            "dataset": self.dataset_spec,
            "data_dir": str(Path(self.data_dir).resolve()) if self.data_dir else None,
            "subset": self.subset,
            "seed": self.seed,
            "batch": self.batch,
            "device": self.device_spec,
        }

    @property
    def runtime(self) -> str:
        """The runtime that measures accuracy: the target's (OpenVINO for OpenVINO targets)."""
        return accuracy_runtime(self.target.device.runtime)

    # ------------------------------------------------------------------ candidates

    def contains(self, cand: Any) -> bool:
        if not isinstance(cand, ModelCandidate):
            return False
        dims = self.space.dimensions()
        flat = cand.to_flat()
        return set(flat) == set(dims) and all(flat[k] in v for k, v in dims.items())

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
            recalibrate_bn(model, torch.cat([x_cal, x_train[:4096]]), self.space.spec.recalib_batches,
                           device=self.device)  # fmt: skip
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
                f"{'; '.join(unknown[:8])} ({_NOT_IN_TABLES}: {', '.join(OPS)})"
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
        spec = self.space.spec
        t0 = time.perf_counter()
        model = self.prune(cand)
        x_train, y_train = self.data.split("train", self.resolution)
        use_kd = cand.finetune_steps > 0 and cand.kd_alpha > 0
        model = compress.finetune(
            model, x_train, y_train, steps=cand.finetune_steps,
            teacher_logits=self.teacher_logits() if use_kd else None, alpha=cand.kd_alpha,
            temperature=cand.kd_temperature, lr=spec.finetune_lr, batch_size=spec.finetune_batch_size,
            seed=self.seed + number, channels_last=False, device=self.device,
        )  # fmt: skip
        t1 = time.perf_counter()
        return self._deploy(model, cand, number, self.models_dir / f"trial_{number:04d}.onnx", finetune_s=t1 - t0)

    def finalize_spec(self) -> FinalizeSpec:
        return self.space.spec.finalize

    def finalize(self, cand: ModelCandidate, number: int, *, checkpoint: Path,
                 on_step: Callable[[int, int], None] | None = None) -> tuple[TrialResult, int]:  # fmt: skip
        """The candidate's pruned network trained by the finalize schedule, distilled from the
        user's model, then deployed as ``evaluate`` deploys; writes ``models/final_NNNN.onnx``."""
        fin = self.finalize_spec()
        t0 = time.perf_counter()
        model = self.prune(cand)
        x_train, y_train = self.data.split("train", self.resolution)
        model, resumed = compress.distill_epochs(
            model, x_train, y_train, spec=fin, teacher_logits=self.teacher_logits() if fin.kd_alpha > 0 else None,
            seed=self.seed + number, checkpoint=checkpoint, on_step=on_step, device=self.device, channels_last=False,
        )  # fmt: skip
        t1 = time.perf_counter()
        path = self.models_dir / f"final_{number:04d}.onnx"
        return self._deploy(model, cand, number, path, finetune_s=t1 - t0), resumed

    def _deploy(self, model: nn.Module, cand: ModelCandidate, number: int, path: Path, *,
                finetune_s: float) -> TrialResult:  # fmt: skip
        """The one deploy step into ``path``, priced and measured (the search's and finalize's)."""
        spec = self.space.spec
        t1 = time.perf_counter()
        x_train, y_train = self.data.split("train", self.resolution)
        runtime = self.runtime
        x_val, y_val = self.data.split("val", self.resolution)
        x_test, y_test = self.data.split("test", self.resolution)
        calib, _ = self.data.split("calib", self.resolution)
        prefixes = self.prefixes(cand)
        int8_prefixes = [p for p, prec in prefixes.items() if prec == "int8"]
        int8 = [m for p in self.space.parts if cand.precisions.get(p.name) == "int8" for m in p.modules]
        fp16 = [p.name for p in self.space.parts if cand.precisions.get(p.name) == "fp16"]
        priced: dict[str, Any] = {}

        def export(net: nn.Module, out: Path) -> Path:
            self.export(net, out)
            if not priced:  # the deployed network's layers: pruned geometry, fp32, before quantization
                layers = self.layers_of(out)
                prediction = self.price(layers, cand)
                precisions = layer_precisions(layers, self.prefixes(cand))
                priced.update(prediction=prediction, params=onnx_params(out),
                              interval=interval(self.target.device, precisions, prediction.latency_ms),
                              band=band_key(precisions),
                              macs=sum(layer.key.macs() for layer in layers))  # fmt: skip
            if fp16:  # the file deployed: those parts stored and computed in half precision
                self.export(half_parts(net, fp16), out)
            return out

        def quantization(float_file: Path) -> compress.Quantization:
            if not int8_prefixes:
                return compress.Quantization(int8=False)
            keep = compress.float_nodes_outside(float_file, int8_prefixes)
            return compress.Quantization(int8=True, keep_float=keep, runtime=self.target.device.runtime)

        def qat(net: nn.Module) -> nn.Module:
            return compress.qat_finetune(
                net, int8, x_train, y_train,
                steps=spec.qat_steps, teacher_logits=self.teacher_logits() if cand.kd_alpha > 0 else None,
                alpha=cand.kd_alpha, temperature=cand.kd_temperature,
                lr=spec.finetune_lr * QAT_LR_FACTOR, batch_size=spec.finetune_batch_size,
                seed=self.seed + number, calibration=calib, inputs=True, device=self.device,
            )  # fmt: skip

        quant = compress.deploy(
            model, path, export=export, quantization=quantization, calibration=calib.numpy(),
            val_accuracy=lambda f: accuracy(f, x_val, y_val, runtime=runtime),
            qat=qat if cand.qat and int8 else None, threshold_pp=spec.qat_threshold_pp,
        )  # fmt: skip
        prediction: Prediction = priced["prediction"]
        splits = {"val": (x_val, y_val), "test": (x_test, y_test)}
        return TrialResult.of_deployed(
            path, accuracy=lambda f, split: accuracy(f, *splits[split], runtime=runtime), runtime=runtime,
            prediction=prediction, params=priced["params"], macs=priced["macs"],
            finetune_s=finetune_s, eval_start=t1, quant=quant, interval=priced["interval"],
            band=priced["band"],
        )  # fmt: skip


def profile_command(user: UserModel, target: Target) -> str:
    """The ``profile --layers`` command that measures this model's layers on this machine."""
    shape = ",".join(str(d) for d in user.input_shape)
    runtime = target.device.runtime if target.device.runtime in ("onnxruntime", "openvino") else "onnxruntime"
    return (f"autocompress profile --layers --model {shlex.quote(str(user.spec))} --weights {shlex.quote(str(user.weights))} "
            f"--input-shape {shape} "
            f"--runtime {runtime} --name {target.name}")  # fmt: skip
