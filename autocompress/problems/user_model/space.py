"""The search space of a user's model, derived from torch-pruning's dependency graph.

- **Pruning**: ``DependencyGraph.get_all_groups`` lists every set of coupled channels that can
  be removed together (a conv's filters with its BatchNorm and the next layers' input channels;
  the channels of a residual stream, shared by every conv that writes into the same ``add``,
  form one group). Each group gets one ratio dimension ``prune.<name>``; when there are more
  than ``max_prune_groups`` groups they are merged by module path (``layer2.0.conv1`` and
  ``layer2.0.shortcut.0`` become ``layer2.0``, then ``layer2``) so that a stage or block shares
  one ratio. The classifier's outputs are never pruned.
- **Precision**: the weighted layers (conv, linear) are split the same way into at most
  ``max_precision_groups`` parts by module path, one dimension ``precision.<part>`` each; by
  default the first and the last part stay fp32 (``first_last: fp32``).
- **Distillation**: ``kd_alpha``, ``kd_temperature``, ``finetune_steps``, the teacher being the
  user's model as loaded.
- **QAT**: ``qat`` (when some part may be int8): a candidate that allows it gets ``qat_steps`` of
  fake-quantized fine-tuning when int8 post-training quantization loses more than
  ``qat_threshold_pp`` of validation accuracy (as for our own space).

A ``--space`` YAML (:class:`ModelSpaceSpec`) can fix (one-element list) or narrow any of it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn
import torch_pruning as tp
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autocompress._io import load_yaml, yaml_problem
from autocompress.arch import pruned_channels
from autocompress.compress.prune import _accumulate_gradients, importance
from autocompress.exceptions import ModelError, SpaceError
from autocompress.schedule import FinalizeSpec

PruneImportance = Literal["l1", "l2", "taylor", "bn_scale"]
Precision = Literal["fp32", "fp16", "int8"]
DEFAULT_PRUNE = [0.0, 0.25, 0.5]
KD_DIMS = ("kd_alpha", "kd_temperature", "finetune_steps")


class ModelSpaceSpec(BaseModel):
    """``--space`` for a user's model: every key optional; a one-element list fixes a dimension."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    name: str = ""
    prune_ratio: list[float] = Field(default_factory=lambda: list(DEFAULT_PRUNE),
                                     description="ratios every pruning group chooses from")  # fmt: skip
    prune: dict[str, list[float]] = Field({}, description="per group name (or prefix): its ratios")
    prune_importance: PruneImportance = "l2"
    prune_round_to: int = Field(1, ge=1)
    max_prune_groups: int = Field(8, ge=1)
    precision: list[Precision] | None = Field(None, description="default: fp32 and int8, as the target runs")
    precisions: dict[str, list[Precision]] = Field({}, description="per part name (or prefix): its precisions")
    first_last: Literal["fp32", "follow"] = "fp32"
    max_precision_groups: int = Field(6, ge=1)
    kd_alpha: list[float] = [0.0, 0.5, 0.9]
    kd_temperature: list[float] = [2.0, 4.0]
    finetune_steps: list[int] = [0, 100, 300]
    finetune_lr: float = Field(0.005, gt=0)
    finetune_batch_size: int = Field(128, ge=1)
    recalib_batches: int = Field(20, ge=0)
    qat: list[bool] = Field([False, True], description="searched when some part may be int8")
    qat_threshold_pp: float = Field(0.5, description="QAT runs when int8 PTQ loses more val accuracy than this")
    qat_steps: int = Field(200, ge=1)
    finalize: FinalizeSpec = FinalizeSpec()  # the long fine-tune after the search (schedule.py)

    @field_validator("prune_ratio", "kd_alpha", "kd_temperature", "finetune_steps", "qat")
    @classmethod
    def _nonempty(cls, v: list[Any]) -> list[Any]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"needs at least one choice, each once; got {v}")
        return v

    @field_validator("prune_ratio")
    @classmethod
    def _ratios(cls, v: list[float]) -> list[float]:
        if any(not 0 <= r < 1 for r in v):
            raise ValueError(f"pruning ratios must be within [0, 1); got {v}")
        return v

    @field_validator("prune")
    @classmethod
    def _group_ratios(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for k, rs in v.items():
            if not rs or any(not 0 <= r < 1 for r in rs):
                raise ValueError(f"prune.{k}: ratios must be a non-empty list within [0, 1); got {rs}")
        return v

    @field_validator("kd_alpha")
    @classmethod
    def _alpha(cls, v: list[float]) -> list[float]:
        if any(not 0 <= a <= 1 for a in v):
            raise ValueError(f"kd_alpha must be within [0, 1]; got {v}")
        return v

    @field_validator("kd_temperature")
    @classmethod
    def _temp(cls, v: list[float]) -> list[float]:
        if any(t <= 0 for t in v):
            raise ValueError(f"kd_temperature must be > 0; got {v}")
        return v

    @field_validator("finetune_steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v):
            raise ValueError(f"finetune_steps must be >= 0; got {v}")
        return v


def load_model_space_spec(path: str | Path | None) -> ModelSpaceSpec:
    """The ``--space`` YAML of a model search (safe loader), or the defaults."""
    if path is None:
        return ModelSpaceSpec()
    path = Path(path).expanduser()
    try:
        raw = load_yaml(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"search space {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpaceError(f"search space {path} is not readable YAML ({type(exc).__name__}{yaml_problem(exc)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpaceError(f"{path} must be a YAML mapping (keys: {', '.join(ModelSpaceSpec.model_fields)})")
    try:
        return ModelSpaceSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise SpaceError(f"{path}: {loc}: {err['msg'].removeprefix('Value error, ')}") from None


# --------------------------------------------------------------------------- dependency graph


@dataclass(frozen=True)
class RawGroup:
    """One torch-pruning group: channels coupled across layers, removed together."""

    root: str  # the module whose output channels root the group
    channels: int
    members: tuple[str, ...]  # every conv/linear/norm module the group touches
    channel_groups: int = 1  # cut in this many equal blocks, the same positions in each (grouped convs)


@dataclass(frozen=True)
class PruneGroup:
    """A pruning dimension: one or more raw groups sharing a ratio."""

    name: str
    groups: tuple[RawGroup, ...]

    @property
    def channels(self) -> int:
        return sum(g.channels for g in self.groups)


@dataclass(frozen=True)
class PrecisionPart:
    """A precision dimension: the layers under a module path, by exported ONNX node-name prefix."""

    name: str
    modules: tuple[str, ...]

    @property
    def onnx_prefix(self) -> str:
        """``layer2.0`` -> ``/layer2/layer2.0/`` (the TorchScript exporter names nodes by module path)."""
        parts = self.name.split(".")
        return "/" + "/".join(".".join(parts[: i + 1]) for i in range(len(parts))) + "/"


def _weighted(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear)


def execution_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the conv/linear modules in the order a forward pass runs them."""
    names = {m: n for n, m in model.named_modules()}
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(names[mod]))
             for m in model.modules() if _weighted(m)]  # fmt: skip
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    seen: dict[str, None] = {}
    for n in order:
        seen.setdefault(n, None)
    return list(seen)


def build_graph(model: nn.Module, example: torch.Tensor, fn_name: str = "the model") -> tp.DependencyGraph:
    """torch-pruning's dependency graph of ``model`` (which needs gradients enabled on its weights).

    Raises:
        ModelError: the trace fails, or it does not reach every conv/linear layer (the forward
            leaves autograd: numpy, ``.detach()``, ``torch.no_grad()`` inside it).
    """
    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    except Exception as exc:
        raise ModelError(
            f"torch-pruning cannot trace {fn_name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    names = {m: n for n, m in model.named_modules()}
    lost = [names[m] for m in model.modules() if _weighted(m) and m not in graph.module2node]
    if lost:
        raise ModelError(
            f"torch-pruning cannot trace {fn_name}: autograd does not reach {', '.join(lost[:4])} from the "
            f"output (its forward leaves torch: numpy, .detach() or no_grad inside forward)"
        )
    return graph


def trainable_copy(model: nn.Module) -> nn.Module:
    out = copy.deepcopy(model)
    for p in out.parameters():
        p.requires_grad_(True)
    return out.eval()


def find_groups(model: nn.Module, example: torch.Tensor, fn_name: str = "the model") -> tuple[list[RawGroup], str]:
    """Every prunable group torch-pruning finds, and the output layer's name (never pruned)."""
    work = trainable_copy(model)
    order = execution_order(work, example)
    if not order:
        raise ModelError(f"{fn_name} has no conv or linear layer to compress")
    head = order[-1]
    modules = dict(work.named_modules())
    graph = build_graph(work, example, fn_name)
    names = {m: n for n, m in work.named_modules()}
    groups = []
    for group in graph.get_all_groups(ignored_layers=[modules[head]], root_module_types=(nn.Conv2d, nn.Linear)):
        root = group[0].dep.target.module
        channels = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
        members = sorted({names[d.target.module] for d, _ in group if d.target.module in names})
        if channels >= 2:
            groups.append(RawGroup(names[root], int(channels), tuple(members), _cut_groups(graph, root, group)))
    rank = {n: i for i, n in enumerate(order)}
    groups.sort(key=lambda g: rank.get(g.root, len(rank)))
    return groups, head


def _channel_groups(module: nn.Module) -> int:
    """Groups of a grouped (not depthwise) conv, whose output channels must be cut evenly; else 1."""
    if isinstance(module, nn.Conv2d) and 1 < module.groups != module.out_channels:
        return int(module.groups)
    return 1


def _cut_groups(graph: tp.DependencyGraph, root: nn.Module, group: Any) -> int:
    """In how many equal blocks the group's channels are cut (the same positions in each): the
    groups of a grouped conv that is the root, or that reads exactly the root's channels as its
    input (a ResNeXt 1x1 conv feeding a grouped 3x3); 1 otherwise."""
    n = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
    blocks = _channel_groups(root)
    for item in group:
        conv = item.dep.target.module
        if (isinstance(conv, nn.Conv2d) and _channel_groups(conv) > 1
                and not graph.is_out_channel_pruning_fn(item.dep.handler)
                and list(item.idxs) == list(item.root_idxs) == list(range(conv.in_channels))):  # fmt: skip
            blocks = math.lcm(blocks, conv.groups)
    return blocks if n % blocks == 0 else 1


def _prefix(name: str, depth: int) -> str:
    return ".".join(name.split(".")[:depth])


def _merge(names: list[str], limit: int) -> dict[str, str]:
    """Map each name to the deepest module-path prefix that leaves at most ``limit`` distinct prefixes."""
    depth_max = max(len(n.split(".")) for n in names)
    best = {n: _prefix(n, 1) for n in names}
    for depth in range(1, depth_max + 1):
        mapping = {n: _prefix(n, depth) for n in names}
        if len(set(mapping.values())) <= limit:
            best = mapping
        else:
            break
    return best


# --------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class ModelCandidate:
    """One compression of the user's model: a ratio per pruning group, a precision per part, KD."""

    prune: tuple[tuple[str, float], ...]
    precision: tuple[tuple[str, str], ...]
    kd_alpha: float
    kd_temperature: float
    finetune_steps: int
    qat: bool = False  # a default: runs from before QAT load as they were

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {f"prune.{k}": v for k, v in self.prune}
        flat.update({f"precision.{k}": v for k, v in self.precision})
        flat.update(kd_alpha=self.kd_alpha, kd_temperature=self.kd_temperature, finetune_steps=self.finetune_steps,
                    qat=self.qat)  # fmt: skip
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> ModelCandidate:
        try:
            return cls(
                prune=tuple((k.removeprefix("prune."), float(v)) for k, v in flat.items() if k.startswith("prune.")),
                precision=tuple((k.removeprefix("precision."), str(v)) for k, v in flat.items()
                                if k.startswith("precision.")),  # fmt: skip
                kd_alpha=float(flat["kd_alpha"]),
                kd_temperature=float(flat["kd_temperature"]),
                finetune_steps=int(flat["finetune_steps"]),
                qat=bool(flat.get("qat", False)),
            )
        except KeyError as exc:
            raise SpaceError(f"candidate is missing the choice {exc.args[0]!r}") from None

    @property
    def ratios(self) -> dict[str, float]:
        return dict(self.prune)

    @property
    def precisions(self) -> dict[str, str]:
        return dict(self.precision)

    def describe(self) -> str:
        """e.g. ``p 0/.25/.5/0 | fp32,int8,int8,fp32 | kd0.5/T4 ft100``."""
        pr = "/".join(f"{r:g}" for _, r in self.prune)
        prec = ",".join(p for _, p in self.precision)
        qat = " qat" if self.qat and "int8" in prec else ""
        return f"p {pr} | {prec} | kd{self.kd_alpha:g}/T{self.kd_temperature:g} ft{self.finetune_steps}{qat}"


class ModelSpace:
    """The derived space. Same surface as :class:`autocompress.space.SearchSpace` where the
    shared search loop needs it: ``dimensions``, ``sample``, ``largest``, ``smallest``, ``size``."""

    def __init__(self, *, name: str, groups: list[PruneGroup], parts: list[PrecisionPart], head: str,
                 spec: ModelSpaceSpec, dims: dict[str, list[Any]], notes: list[str]) -> None:  # fmt: skip
        self.name = name
        self.groups = groups
        self.parts = parts
        self.head = head
        self.spec = spec
        self._dims = dims
        self.notes = notes

    def dimensions(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in self._dims.items()}

    def sample(self, trial: Any) -> ModelCandidate:
        flat = {n: trial.suggest_categorical(n, c) if len(c) > 1 else c[0] for n, c in self._dims.items()}
        return ModelCandidate.from_flat(flat)

    def largest(self) -> ModelCandidate:
        """Nothing pruned, everything fp32 where allowed: the user's model as it is (plus KD)."""
        flat: dict[str, Any] = {}
        for n, c in self._dims.items():
            if n.startswith("prune."):
                flat[n] = min(c)
            elif n.startswith("precision."):
                flat[n] = "fp32" if "fp32" in c else c[0]
            else:
                flat[n] = c[0] if n != "finetune_steps" else max(c)
        return ModelCandidate.from_flat(flat)

    def smallest(self) -> ModelCandidate:
        """Everything pruned as far as allowed, in the cheapest precision allowed."""
        flat: dict[str, Any] = {}
        for n, c in self._dims.items():
            if n.startswith("prune."):
                flat[n] = max(c)
            elif n.startswith("precision."):
                flat[n] = "int8" if "int8" in c else ("fp16" if "fp16" in c else c[0])
            elif n == "finetune_steps":
                flat[n] = max(c)
            else:
                flat[n] = c[-1] if n == "kd_alpha" else c[0]
        return ModelCandidate.from_flat(flat)

    def size(self) -> int:
        n = 1
        for c in self._dims.values():
            n *= len(c)
        return n

    def fingerprint(self, weights_sha256: str) -> str:
        # the finalize schedule runs after the search: changing it must not refuse --resume
        spec = self.spec.model_dump(mode="json", exclude={"finalize"})
        blob = json.dumps({"dims": self._dims, "spec": spec, "w": weights_sha256},
                          sort_keys=True).encode()  # fmt: skip
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "model",
            "prune_groups": [{"name": g.name, "channels": g.channels, "roots": [r.root for r in g.groups],
                              "members": sorted({m for r in g.groups for m in r.members})} for g in self.groups],
            "precision_parts": [{"name": p.name, "modules": list(p.modules)} for p in self.parts],
            "head": self.head,
            "dimensions": self.dimensions(),
            "settings": self.spec.model_dump(mode="json"),
            "notes": self.notes,
        }


def _override(name: str, table: dict[str, list[Any]]) -> list[Any] | None:
    """The override for ``name``: an exact key, else the longest key that is a path prefix of it."""
    if name in table:
        return table[name]
    keys = [k for k in table if name.startswith(k + ".")]
    return table[max(keys, key=len)] if keys else None


def derive_space(
    model: nn.Module, example: torch.Tensor, spec: ModelSpaceSpec, *, precisions: list[str],
    name: str = "model", fn_name: str = "the model",
) -> ModelSpace:  # fmt: skip
    """Derive the search space of ``model`` (see the module docstring).

    Args:
        example: an input batch of the model's shape.
        precisions: what the target runs (fp16 is offered only when listed here).

    Raises:
        ModelError: torch-pruning cannot trace the model.
        SpaceError: ``spec`` names a group or part the model does not have, or a precision the
            target does not run.
    """
    raw, head = find_groups(model, example, fn_name)
    notes: list[str] = []
    dims: dict[str, list[Any]] = {}
    groups: list[PruneGroup] = []
    most = max([*spec.prune_ratio, *(r for rs in spec.prune.values() for r in rs)])
    fixed = inexact_groups(model, example, raw, most) if most > 0 else {}
    for root, why in fixed.items():
        notes.append(f"group {root} is not pruned: {why}")
    prunable = [g for g in raw if g.root not in fixed]
    if prunable:
        mapping = _merge([g.root for g in prunable], spec.max_prune_groups)
        by_name: dict[str, list[RawGroup]] = {}
        for g in prunable:
            by_name.setdefault(mapping[g.root], []).append(g)
        groups = [PruneGroup(n, tuple(gs)) for n, gs in by_name.items()]
    known = [g.name for g in groups] + list(fixed)
    for key in spec.prune:
        if not any(g == key or g.startswith(key + ".") or key.startswith(g + ".") for g in known):
            raise SpaceError(f"--space: prune.{key} names no pruning group of this model (groups: {', '.join(known)})")
    if raw and not groups:
        raise ModelError(f"{fn_name}: no group can be pruned without changing what the rest of the model computes")
    for g in groups:
        choices = _override(g.name, spec.prune) or list(spec.prune_ratio)
        dims[f"prune.{g.name}"] = sorted(choices)

    work = trainable_copy(model)
    order = execution_order(work, example)
    mapping = _merge(order, spec.max_precision_groups)
    part_names: list[str] = []
    for n in order:
        if mapping[n] not in part_names:
            part_names.append(mapping[n])
    parts = [PrecisionPart(p, tuple(n for n in order if mapping[n] == p)) for p in part_names]
    default = list(spec.precision) if spec.precision else [p for p in ("fp32", "fp16", "int8") if p in precisions]
    for key in spec.precisions:
        if not any(p == key or p.startswith(key + ".") for p in part_names):
            raise SpaceError(f"--space: precisions.{key} names no part of this model (parts: {', '.join(part_names)})")
    for i, p in enumerate(parts):
        choices = _override(p.name, spec.precisions)
        if choices is None:
            edge = i in (0, len(parts) - 1) and len(parts) > 2
            choices = ["fp32"] if (edge and spec.first_last == "fp32") else default
        bad = [c for c in choices if c not in precisions]
        if bad:
            raise SpaceError(
                f"--space: precision {', '.join(bad)} for {p.name}, but the target runs {', '.join(precisions)}"
            )
        dims[f"precision.{p.name}"] = list(choices)
    dims["kd_alpha"] = list(spec.kd_alpha)
    dims["kd_temperature"] = list(spec.kd_temperature)
    dims["finetune_steps"] = list(spec.finetune_steps)
    int8_possible = any("int8" in c for k, c in dims.items() if k.startswith("precision."))
    dims["qat"] = list(spec.qat) if int8_possible else [False]
    space = ModelSpace(name=spec.name or name, groups=groups, parts=parts, head=head, spec=spec, dims=dims,
                       notes=notes)  # fmt: skip
    _check_prunable(model, example, space, fn_name)
    return space


def _check_prunable(model: nn.Module, example: torch.Tensor, space: ModelSpace, fn_name: str) -> None:
    """Prune every group as far as the space allows and run the result; a group whose pruning
    breaks the forward (a hard-coded ``view(-1, 64)``) is fixed at ratio 0, with a note."""
    most = {g.name: max(space._dims[f"prune.{g.name}"]) for g in space.groups}
    if not any(most.values()):
        return
    try:
        with torch.no_grad():
            prune_model(model, space, most, example)(example)
        return
    except Exception:  # find the groups that break it, one at a time
        pass
    for g in space.groups:
        if most[g.name] == 0:
            continue
        try:
            with torch.no_grad():
                prune_model(model, space, {g.name: most[g.name]}, example)(example)
        except Exception as exc:
            space._dims[f"prune.{g.name}"] = [0.0]
            space.notes.append(f"group {g.name} is not pruned: the pruned model fails ({type(exc).__name__})")
    if all(v == [0.0] for k, v in space._dims.items() if k.startswith("prune.")) and space.groups:
        raise ModelError(f"{fn_name}: no group can be pruned without breaking its forward pass")


# --------------------------------------------------------------------------- pruning


_SPLIT = "Split"  # torch-pruning's op node of split/chunk (``_SplitOp``)


@dataclass(frozen=True)
class _Cut:
    """The channels one raw group loses: the root's output indices, and the input indices each
    conv/linear reading them loses (both found on the unpruned graph)."""

    root: nn.Module
    drop: list[int]
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    ops: frozenset[str]  # torch-pruning's op nodes in the group (``_SplitOp``, ``_ConcatOp``, ...)
    uneven: tuple[str, ...]  # grouped (not depthwise) convs whose groups would lose different inputs


def _drop(scores: torch.Tensor, n: int, keep: int, channel_groups: int) -> list[int]:
    """The ``n - keep`` lowest-scoring channels; over a grouped root, the same positions in each
    of its ``channel_groups`` groups (their scores summed), so every group keeps as many."""
    if channel_groups == 1:
        return torch.argsort(scores, stable=True)[: n - keep].sort().values.tolist()
    per = n // channel_groups
    cut = per - max(1, keep // channel_groups)
    positions = torch.argsort(scores.view(channel_groups, per).sum(0), stable=True)[:cut].tolist()
    return sorted(b * per + j for b in range(channel_groups) for j in positions)


def _plan(work: nn.Module, graph: tp.DependencyGraph, cuts: list[tuple[RawGroup, float]], criterion: str,
          round_to: int) -> list[_Cut]:  # fmt: skip
    """What each raw group loses at its ratio, scored on the unpruned network."""
    scorer = importance(criterion)
    modules = dict(work.named_modules())
    names = {m: n for n, m in modules.items()}
    out: list[_Cut] = []
    for raw, ratio in cuts:
        if ratio == 0:
            continue
        root = modules[raw.root]
        n = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
        keep = pruned_channels(n, ratio, round_to)
        if raw.channel_groups > 1:
            keep = max(raw.channel_groups, keep // raw.channel_groups * raw.channel_groups)
        if keep >= n:
            continue
        fn = graph.get_pruner_of_module(root).prune_out_channels
        scores = scorer(graph.get_pruning_group(root, fn, idxs=list(range(n))))
        if scores is None or scores.numel() != n:
            raise RuntimeError(f"importance {criterion} gave no score for group {raw.root}")
        drop = _drop(torch.nan_to_num(scores.float(), nan=0.0), n, keep, raw.channel_groups)
        inputs, ops, uneven = [], set(), []
        for item in graph.get_pruning_group(root, fn, idxs=drop):
            target = item.dep.target.module
            if target not in names:
                ops.add(type(target).__name__)
            elif isinstance(target, nn.Conv2d | nn.Linear) and not graph.is_out_channel_pruning_fn(item.dep.handler):
                idxs = tuple(int(i) for i in item.idxs)
                inputs.append((names[target], idxs))
                if isinstance(target, nn.Conv2d) and not _even(target, idxs):
                    uneven.append(names[target])
        out.append(_Cut(root, drop, tuple(inputs), frozenset(ops), tuple(uneven)))
    return out


def _even(conv: nn.Conv2d, idxs: tuple[int, ...]) -> bool:
    """Whether cutting inputs ``idxs`` of ``conv`` cuts the same positions in each of its groups
    (torch-pruning slices a grouped conv's weight as if it did; a depthwise conv is cut whole)."""
    if _channel_groups(conv) == 1:
        return True
    per = conv.in_channels // conv.groups
    blocks = [{i % per for i in idxs if i // per == b} for b in range(conv.groups)]
    return all(b == blocks[0] for b in blocks)


def _prune(work: nn.Module, graph: tp.DependencyGraph, plan: list[_Cut]) -> nn.Module:
    for cut in plan:  # a root's output indices are its own: earlier cuts only shrink its inputs
        fn = graph.get_pruner_of_module(cut.root).prune_out_channels
        graph.get_pruning_group(cut.root, fn, idxs=cut.drop).prune()
    return work.eval()


def _masked(model: nn.Module, plan: list[_Cut]) -> nn.Module:
    """A copy of ``model`` whose conv/linear layers ignore the channels ``plan`` cuts (their input
    weights zeroed): what the pruned network must compute, if pruning is exact."""
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for cut in plan:
            for name, idxs in cut.inputs:
                layer = out.get_submodule(name)
                w = layer.weight
                if isinstance(layer, nn.Linear):
                    w[:, list(idxs)] = 0
                    continue
                per_in, per_out = layer.in_channels // layer.groups, layer.out_channels // layer.groups
                for i in idxs:  # a grouped conv reads input i only in the outputs of i's group
                    b = i // per_in
                    w[b * per_out : (b + 1) * per_out, i % per_in] = 0
    return out


def _why(plan: list[_Cut]) -> str:
    grouped = sorted({g for cut in plan for g in cut.uneven})
    if grouped:
        return (f"it feeds the grouped conv {', '.join(grouped[:3])} unevenly across its groups "
                f"(torch-pruning would mix them up)")  # fmt: skip
    if any(_SPLIT in op for cut in plan for op in cut.ops):
        return "its channels pass a split that torch-pruning maps wrongly (pruning would mix channels up)"
    return "the pruned model computes something else than the kept channels of the original"


def _exact(model: nn.Module, example: torch.Tensor, cuts: list[tuple[RawGroup, float]]) -> str | None:
    """None when cutting ``cuts`` removes exactly those channels (the pruned network computes
    what the original computes with their readers' weights zeroed), else why not."""
    work = trainable_copy(model)
    try:
        graph = build_graph(work, example)
        plan = _plan(work, graph, cuts, "l2", 1)
        if not plan:
            return None
        if any(cut.uneven for cut in plan):
            return _why(plan)
        masked = _masked(model, plan)
        x = torch.rand(example.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            want = masked(x)
            got = _prune(work, graph, plan)(x)
    except Exception as exc:
        split = any(_splits(graph, work, raw) for raw, _ in cuts) if "graph" in locals() else False
        if split:
            return f"its channels pass a split that torch-pruning cannot map ({type(exc).__name__})"
        return f"the pruned model fails ({type(exc).__name__})"
    finally:
        for p in work.parameters():
            p.grad = None
    tol = 1e-5 * (1.0 + float(want.abs().max()))  # float32 rounding of reordered sums, not a lost channel
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=tol):
        return _why(plan)
    return None


def _splits(graph: tp.DependencyGraph, work: nn.Module, raw: RawGroup) -> bool:
    """Whether ``raw``'s channels pass a split/chunk/unbind."""
    try:
        root = work.get_submodule(raw.root)
        fn = graph.get_pruner_of_module(root).prune_out_channels
        group = graph.get_pruning_group(root, fn, idxs=list(range(raw.channels)))
    except Exception:
        return False
    return any(_SPLIT in type(item.dep.target.module).__name__ for item in group)


def inexact_groups(model: nn.Module, example: torch.Tensor, groups: list[RawGroup], ratio: float) -> dict[str, str]:
    """The raw groups whose pruning at ``ratio`` would not remove exactly their channels (a
    grouped conv reading them unevenly, a split torch-pruning maps wrongly, a forward that
    breaks), by root, with the reason. All groups are checked at once, then one by one when
    that fails."""
    if not groups or _exact(model, example, [(g, ratio) for g in groups]) is None:
        return {}
    out = {}
    for g in groups:
        why = _exact(model, example, [(g, ratio)])
        if why is not None:
            out[g.root] = why
    return out


def prune_model(
    model: nn.Module, space: ModelSpace, ratios: dict[str, float], example: torch.Tensor, *,
    images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
) -> nn.Module:  # fmt: skip
    """A pruned copy of ``model`` (``model`` itself is left alone): each group of ``space`` loses
    ``ratio`` of its channels (:func:`autocompress.arch.pruned_channels`; over a grouped conv,
    as many from each of its groups), the least important ones by ``space.spec.prune_importance``
    scored on the unpruned network. Coupled layers shrink together, so residual adds and
    concatenations keep matching shapes."""
    work = trainable_copy(model)
    cuts = [(raw, ratios.get(g.name, 0.0)) for g in space.groups for raw in g.groups]
    if not any(r for _, r in cuts):
        return work.eval()
    criterion = space.spec.prune_importance
    graph = build_graph(work, example)
    try:
        if criterion == "taylor":
            with torch.enable_grad():
                _accumulate_gradients(work, images, labels)
        plan = _plan(work, graph, cuts, criterion, space.spec.prune_round_to)
    finally:
        for p in work.parameters():
            p.grad = None
    return _prune(work, graph, plan)
