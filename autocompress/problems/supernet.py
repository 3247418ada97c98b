"""The supernet problem: candidates are subnets of our trained elastic MBConv supernet, compressed.

Candidate -> subnet -> structured pruning -> KD fine-tune -> ONNX -> the one deploy step (PTQ,
then QAT when PTQ loses too much, keep the better; accuracy by the target's runtime: OpenVINO
for OpenVINO targets, else ONNX Runtime) -> size, parameters, MACs, predicted latency and
energy on the target from its block table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autocompress import compress
from autocompress.arch import block_precisions, plan, unpruned
from autocompress.budget import LatencyRange, space_latency_range
from autocompress.data import ImageDataset, load_dataset
from autocompress.device import describe as describe_device
from autocompress.device import resolve_device
from autocompress.exceptions import AutoCompressError
from autocompress.hardware.host_fit import HostCheck, apply_cached, on_this_host
from autocompress.hardware.interval import band_key, interval
from autocompress.hardware.predict import predict
from autocompress.hardware.pricing import Prediction
from autocompress.hardware.targets import Target, check_precisions, get_target
from autocompress.problems.base import Problem, ProblemHooks, RunDescriber, TrialResult
from autocompress.runtime import accuracy, accuracy_runtime, export_onnx
from autocompress.schedule import FinalizeSpec
from autocompress.space import Candidate, SearchSpace, load_space, resolve_space_path, space_from_dict
from autocompress.supernet import Supernet, extract_calibrated, load_or_train, teacher_logits

TAYLOR_SAMPLES = 256  # training samples whose gradients score channels for ``taylor`` pruning
QAT_LR_FACTOR = 0.25  # QAT starts from a fine-tuned network: a quarter of the fine-tune's rate


class SupernetDescriber(RunDescriber):
    """Rows of a supernet run: MBConv candidates of the run's recorded space."""

    kind = "supernet"

    def __init__(self, config: dict[str, Any], space: SearchSpace | None = None) -> None:
        super().__init__(config)
        self.space = space or space_from_dict(config.get("space"), where="the run's config.yaml: space")

    def dimensions(self) -> dict[str, list[Any]]:
        return self.space.dimensions()

    def candidate(self, flat: dict[str, Any]) -> Candidate:
        return Candidate.from_flat(flat)

    def input_shape(self, cand: Candidate) -> tuple[int, int, int]:
        channels = int((self.config.get("dataset") or {}).get("channels", 1))
        return channels, cand.resolution, cand.resolution

    def parts(self, cand: Candidate) -> list[dict[str, Any]]:
        return [
            {"part": f"stage {i}", "depth": st.depth, "width": st.width, "kernel": st.kernel,
             "expand": st.expand, "prune ratio": pr, "precision": prec}
            for i, (st, pr, prec) in enumerate(zip(cand.stages, cand.prune, cand.precision))
        ]  # fmt: skip

    def breakdown(self, cand: Candidate) -> tuple[Prediction, list[tuple[str, str]]]:
        """Predicted latency per fused block on the run's target (same table, same pruned
        geometry as the search), and each block's (label, precision)."""
        ds = self.config.get("dataset") or {}
        blocks = plan(cand, self.space, int(ds.get("channels", 1)), len(ds.get("classes") or []) or 10)
        precisions = block_precisions(cand, self.space, blocks)
        target = apply_cached(get_target(str(self.config.get("target"))))  # as the search priced it
        labels = [b.op + (f" s{b.stage}.{b.index}" if b.is_mbconv else "") for b in blocks]
        return predict(target.table, blocks, precisions), list(zip(labels, precisions))


class SupernetProblem(Problem, SupernetDescriber):
    """Holds what every trial shares: data, the trained supernet, the teacher and the target."""

    def __init__(self, *, space: str | Path | None, target: str, dataset: str | None = None,
                 data_dir: Path | None = None, subset: int | None = None, seed: int = 0,
                 retrain: bool = False, batch: int = 1, device: str = "auto",
                 recalibrate: bool = True) -> None:  # fmt: skip
        self.device_spec = device  # where training runs (--device); workers resolve it on their machine
        self.device = resolve_device(device)
        self.space_spec = space
        self.space = load_space(space)
        self.target: Target = apply_cached(get_target(target))  # a Ray worker: the fit its driver made
        self.recalibrate = recalibrate
        self._host: HostCheck | None = None
        self.dataset_spec = dataset or self.space.model.dataset
        self.data_dir = data_dir
        self.subset = subset
        self.seed = seed
        self.retrain = retrain
        self.batch = batch
        self.data: ImageDataset = load_dataset(self.dataset_spec, data_dir=data_dir, subset=subset, seed=seed)
        self.supernet: Supernet | None = None
        self.supernet_key = ""
        self.models_dir = Path("models")
        self._teacher_logits: torch.Tensor | None = None
        self._report: dict[str, Any] = {}
        SupernetDescriber.__init__(self, {"dataset": self.data.describe(), "target": self.target.name}, self.space)

    @classmethod
    def from_parts(cls, *, space: SearchSpace, data: ImageDataset, supernet: Supernet, target: Target,
                   models_dir: Path, supernet_key: str, seed: int = 0, batch: int = 1) -> SupernetProblem:  # fmt: skip
        """A prepared problem over objects already in memory (tests, benchmarks)."""
        self = cls.__new__(cls)
        self.space_spec, self.space, self.target, self.data = space.path, space, target, data
        self.dataset_spec, self.data_dir, self.subset = space.model.dataset, None, None
        self.seed, self.retrain, self.batch = seed, False, batch
        self.device_spec, self.device = "cpu", resolve_device("cpu")
        self.supernet, self.supernet_key, self.models_dir = supernet, supernet_key, models_dir
        self._teacher_logits, self._report = None, {}
        SupernetDescriber.__init__(self, {"dataset": data.describe(), "target": target.name}, space)
        return self

    # ------------------------------------------------------------------ set-up

    def fingerprint(self) -> str:
        return f"{self.space.arch_fingerprint()}-{self.space.size()}"

    def check(self, hooks: ProblemHooks | None = None) -> None:
        table = self.target.table  # validates the whole table now, not mid-search
        compress.check_supported(self.space, table.device.runtime)
        check_precisions(self.space, table.device)
        hooks = hooks or ProblemHooks()
        self._host = on_this_host(self.target, self.space, channels=self.data.channels, classes=self.data.num_classes,
                                  recalibrate=getattr(self, "recalibrate", True), on_progress=hooks.host_fit_step)  # fmt: skip
        self.target = self._host.target
        if self._host.line and hooks.note:
            hooks.note(self._host.line)

    def prepare(self, models_dir: Path, hooks: ProblemHooks | None = None) -> dict[str, Any]:
        hooks = hooks or ProblemHooks()
        self.models_dir = models_dir
        if hooks.train_start:
            hooks.train_start(False)
        t0 = time.perf_counter()
        self.supernet, report, cached = load_or_train(
            self.space, self.data, seed=self.seed, retrain=self.retrain, on_step=hooks.train_step,
            device=self.device,
        )
        self.supernet_key = report.key
        self._report = {**report.__dict__, "cached": cached, "seconds": round(time.perf_counter() - t0, 1)}
        return {"supernet": self._report}

    def attach(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.supernet, report, cached = load_or_train(self.space, self.data, seed=self.seed)
        if not cached:  # the driver trained it before the workers started; a miss means another cache
            raise AutoCompressError(
                "a worker found no cached supernet: set AUTOCOMPRESS_CACHE to a folder every node shares"
            )
        self.supernet_key = report.key

    def config_entries(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "space_path": str(resolve_space_path(self.space_spec)),
            "space_fingerprint": self.fingerprint(),
            "space": self.space.to_dict(),
            "dataset": {**self.data.describe(), "spec": self.dataset_spec, "subset": self.subset},
            "device": describe_device(self.device_spec, self.device),
            **({"latency_host": self._host.to_config()} if getattr(self, "_host", None) is not None else {}),
        }

    def recipe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "space": str(resolve_space_path(self.space_spec).resolve()),
            "target": self.target.name,
            "dataset": self.dataset_spec,
            "data_dir": str(Path(self.data_dir).resolve()) if self.data_dir else None,
            "subset": self.subset,
            "seed": self.seed,
            "batch": self.batch,
            "device": self.device_spec,
        }

    # ------------------------------------------------------------------ candidates

    def contains(self, cand: Any) -> bool:
        return isinstance(cand, Candidate) and self.space.contains(cand)

    def teacher_logits(self) -> torch.Tensor:
        """The largest subnet's outputs on the train split (computed once, cached on disk)."""
        if self._teacher_logits is None:
            self._teacher_logits = teacher_logits(self._net(), self.data, self.supernet_key)
        return self._teacher_logits

    def _net(self) -> Supernet:
        if self.supernet is None:
            raise RuntimeError("SupernetProblem.prepare() must run before candidates are built")
        return self.supernet

    def predict(self, cand: Candidate) -> Prediction:
        blocks = plan(cand, self.space, self.data.channels, self.data.num_classes)
        return predict(
            self.target.table, blocks, block_precisions(cand, self.space, blocks), batch=self.batch
        )

    def family_note(self) -> str | None:
        from autocompress.hardware.families import uncovered_blocks_note

        return uncovered_blocks_note(self.target.device, plan(self.space.largest(), self.space, self.data.channels,
                                                               self.data.num_classes))  # fmt: skip

    def latency_range(self) -> LatencyRange:
        """Every candidate's network priced where the space has few enough, else its extremes
        searched for (``budget.space_latency_range``; table lookups only)."""
        cached = getattr(self, "_latency_range", None)
        if cached is None or cached[0] is not self.target.table or cached[1] != self.batch:  # up to seconds
            rng = space_latency_range(self.space, self.target.table, channels=self.data.channels,
                                      classes=self.data.num_classes, batch=self.batch, target=self.target.name,
                                      estimated=self.target.estimated)  # fmt: skip
            cached = self._latency_range = (self.target.table, self.batch, rng)
        return cached[2]

    def evaluate(self, cand: Candidate, number: int) -> TrialResult:
        """Score one candidate for real; writes ``models/trial_NNNN.onnx``.

        The subnet is sliced from the supernet unpruned, pruned per stage (its BatchNorm
        statistics re-estimated afterwards), fine-tuned with distillation from the largest
        subnet, exported, and deployed by ``compress.deploy`` (PTQ per stage; when the candidate
        allows QAT and PTQ loses more than ``compression.qat_threshold_pp`` of validation
        accuracy, a fake-quantized fine-tune whose file is kept if it scores better) and run by
        the target's runtime.
        """
        cfg = self.space.model.training
        prediction = self.predict(cand)  # fails fast on a target that cannot price it
        t0 = time.perf_counter()
        model = self._pruned(cand)
        x_train, y_train = self.data.split("train", cand.resolution)
        use_kd = cand.kd_alpha > 0
        model = compress.finetune(
            model, x_train, y_train,
            steps=cand.finetune_steps,
            teacher_logits=self.teacher_logits() if use_kd and cand.finetune_steps > 0 else None,
            alpha=cand.kd_alpha, temperature=cand.kd_temperature,
            lr=cfg.finetune_lr, batch_size=cfg.finetune_batch_size, seed=self.seed + number, device=self.device,
        )  # fmt: skip
        t1 = time.perf_counter()
        path = self.models_dir / f"trial_{number:04d}.onnx"
        return self._deploy(model, cand, number, path, prediction, finetune_s=t1 - t0)

    def finalize_spec(self) -> FinalizeSpec:
        return self.space.model.finalize

    def finalize(self, cand: Candidate, number: int, *, checkpoint: Path,
                 on_step: Callable[[int, int], None] | None = None) -> tuple[TrialResult, int]:  # fmt: skip
        """The search's network of ``cand`` (sliced, pruned), trained by the space's finalize
        schedule with distillation from the largest subnet, then deployed as ``evaluate``
        deploys; writes ``models/final_NNNN.onnx``."""
        spec = self.finalize_spec()
        prediction = self.predict(cand)
        t0 = time.perf_counter()
        model = self._pruned(cand)
        x_train, y_train = self.data.split("train", cand.resolution)
        model, resumed = compress.distill_epochs(
            model, x_train, y_train, spec=spec, teacher_logits=self.teacher_logits() if spec.kd_alpha > 0 else None,
            seed=self.seed + number, checkpoint=checkpoint, on_step=on_step, device=self.device,
        )  # fmt: skip
        t1 = time.perf_counter()
        path = self.models_dir / f"final_{number:04d}.onnx"
        return self._deploy(model, cand, number, path, prediction, finetune_s=t1 - t0), resumed

    def _pruned(self, cand: Candidate) -> torch.nn.Module:
        """The candidate's subnet sliced from the supernet, pruned by its ratios (BatchNorm
        statistics re-estimated)."""
        model = extract_calibrated(self._net(), unpruned(cand), self.data, device=self.device)
        x_train, y_train = self.data.split("train", cand.resolution)
        x_cal, _ = self.data.split("calib", cand.resolution)
        return compress.prepare(
            model, cand, self.space,
            images=x_train[:TAYLOR_SAMPLES], labels=y_train[:TAYLOR_SAMPLES],
            calibration=torch.cat([x_cal, x_train[:4096]]) if any(cand.prune) else None, device=self.device,
        )  # fmt: skip

    def _deploy(self, model: torch.nn.Module, cand: Candidate, number: int, path: Path, prediction: Prediction,
                *, finetune_s: float) -> TrialResult:  # fmt: skip
        """The one deploy step (PTQ, QAT if PTQ lost too much, keep the better) into ``path``,
        and the deployed file's accuracy by the target's runtime."""
        cfg = self.space.model.training
        comp = self.space.model.compression
        t1 = time.perf_counter()
        x_train, y_train = self.data.split("train", cand.resolution)
        x_cal, _ = self.data.split("calib", cand.resolution)
        use_kd = cand.kd_alpha > 0
        device_runtime = self.target.table.device.runtime
        runtime = accuracy_runtime(device_runtime)
        x_val, y_val = self.data.split("val", cand.resolution)
        x_test, y_test = self.data.split("test", cand.resolution)
        int8 = compress.int8_modules(cand, self.space)

        def qat(net: torch.nn.Module) -> torch.nn.Module:
            return compress.qat_finetune(
                net, int8, x_train, y_train,
                steps=comp.qat_steps, teacher_logits=self.teacher_logits() if use_kd else None,
                alpha=cand.kd_alpha, temperature=cand.kd_temperature,
                lr=cfg.finetune_lr * QAT_LR_FACTOR, batch_size=cfg.finetune_batch_size,
                seed=self.seed + number, calibration=x_cal, device=self.device,
            )  # fmt: skip

        quant = compress.deploy(
            model, path,
            export=lambda net, out: export_onnx(compress.for_export(net, cand, self.space), out,
                                                channels=self.data.channels, resolution=cand.resolution),
            quantization=lambda _: compress.quantization(cand, self.space, runtime=device_runtime),
            calibration=x_cal.numpy(),
            val_accuracy=lambda f: accuracy(f, x_val, y_val, runtime=runtime),
            qat=qat if cand.qat and int8 else None,
            threshold_pp=comp.qat_threshold_pp,
        )  # fmt: skip
        blocks = plan(cand, self.space, self.data.channels, self.data.num_classes)  # the pruned geometry
        precisions = block_precisions(cand, self.space, blocks)
        splits = {"val": (x_val, y_val), "test": (x_test, y_test)}
        return TrialResult.of_deployed(
            path, accuracy=lambda f, split: accuracy(f, *splits[split], runtime=runtime), runtime=runtime,
            prediction=prediction, params=sum(b.params() for b in blocks), macs=sum(b.macs() for b in blocks),
            finetune_s=finetune_s, eval_start=t1, quant=quant,
            interval=interval(self.target.table.device, precisions, prediction.latency_ms), band=band_key(precisions),
        )  # fmt: skip
