"""Price any CNN ONNX file on a target (the ``autocompress latency`` verb): latency with its
interval, energy, the per-layer (fused kernel) breakdown and where each number came from.

The file's layers are read by ``onnx_layers`` and priced by the one path (``layer_predict`` /
``pricing``), as a user's model is in a search. Precisions:

- ``fp32`` / ``fp16`` / ``int8``: every layer at that precision, whatever the file stores;
- ``mixed`` (as stored): int8 where the file quantizes (QDQ: a conv or matmul whose weight is
  dequantized, any other layer whose every activation input is), fp16 where it computes in half
  precision (float16 weights or input), fp32 elsewhere; a plain float file is all fp32.

A QDQ file is priced from its float equivalent: each ``QuantizeLinear -> DequantizeLinear`` pair
is bypassed and each dequantized weight stored as the float it stands for, so the layers are
those of the float network. On a measured table whose layer family has no row, the layers are
profiled on this machine and added to the table when asked (``profile_missing``) and the table was
measured here (as a search does, ``layer_fill``); otherwise the command is refused, saying how.
"""

from __future__ import annotations

import shlex
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from autocompress._io import check_regular_file
from autocompress.exceptions import AutoCompressError, BadInputError, RunDirError, UnpricedLayersError
from autocompress.hardware.families import uncovered_note
from autocompress.hardware.host_fit import apply_cached, measured_here
from autocompress.hardware.interval import describe_band, network_band
from autocompress.hardware.layer_estimate import roofline_layer
from autocompress.hardware.layer_fill import fill_layers, missing_families, same_host
from autocompress.hardware.layer_predict import predict_layers, unpriced
from autocompress.hardware.layer_table import OPS, LayerSpec, LayerTable, load_layers
from autocompress.hardware.lut import BlockKey, ErrorBand
from autocompress.hardware.onnx_layers import extract_layers, graph_inputs
from autocompress.hardware.targets import Target, check_file_precision, get_target

SCHEMA = 1  # of the --json output


@dataclass(frozen=True)
class LayerLine:
    """One priced layer (fused kernel) of the file."""

    index: int
    label: str
    op: str
    precision: str
    latency_ms: float
    energy_mj: float | None
    priced_by: str  # "table (measured)" / "table (estimated)" / "interpolated (family fit)" / "estimated (roofline)"
    # / "estimated (roofline, in the kernel before it)": its work, no launch (layer_predict.launch_free)
    estimate: bool  # priced by an estimate rather than a measured or published table row
    nodes: tuple[str, ...]


@dataclass
class FileLatency:
    """The prediction for one file on one target, as the command shows it."""

    model: str
    target: str
    source: str
    estimated: bool
    precision: str
    layer_precisions: dict[str, int]
    latency_ms: float
    interval_ms: tuple[float, float] | None
    band: ErrorBand | None
    energy_mj: float | None
    energy_interval_mj: tuple[float, float] | None
    power_w: float | None
    overhead_ms: float
    transitions_ms: float
    layers: list[LayerLine]
    profiled: int = 0
    file_batch: int = 1  # the batch the file's input fixes; the figures are for batch 1
    notes: list[str] = field(default_factory=list)
    unit: str = "layer"  # "block": priced by the blocks of the search that wrote it (``priced_as_searched``)

    @property
    def estimate_layers(self) -> int:
        return sum(line.estimate for line in self.layers)

    @property
    def interval_note(self) -> str:
        return describe_band(self.band)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (the same numbers as the table)."""
        return {
            "schema": SCHEMA,
            "model": self.model,
            "target": self.target,
            "source": self.source,
            "estimated": self.estimated,
            "precision": self.precision,
            "layer_precisions": self.layer_precisions,
            "batch": 1,
            "file_batch": self.file_batch,
            "latency_ms": self.latency_ms,
            "interval_ms": list(self.interval_ms) if self.interval_ms else None,
            "interval": self.band.model_dump(mode="json", exclude_none=True) if self.band else None,
            "interval_note": self.interval_note,
            "energy_mj": self.energy_mj,
            "energy_interval_mj": list(self.energy_interval_mj) if self.energy_interval_mj else None,
            "energy_estimated": self.energy_mj is not None and self.estimated,
            "power_w": self.power_w,
            "overhead_ms": self.overhead_ms,
            "transitions_ms": self.transitions_ms,
            "estimate_layers": self.estimate_layers,
            "profiled_layers": self.profiled,
            "unit": self.unit,
            "layers": [{**asdict(line), "nodes": list(line.nodes)} for line in self.layers],
            "notes": self.notes,
        }


def read_model(path: Path) -> onnx.ModelProto:
    """The ONNX file at ``path``, checked.

    Raises:
        BadInputError: a missing file, a folder or FIFO, or a file that is not an ONNX model.
    """
    check_regular_file(path, "model file", BadInputError)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError, others for garbage
        raise BadInputError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise BadInputError(f"{path} is not an ONNX model (no graph nodes)")
    return model


WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def _runs_int8(node: onnx.NodeProto, dequantized: set[str], inits: dict[str, Any], requantized: set[str]) -> bool:
    """Whether a runtime runs ``node`` in int8 (ONNX Runtime's QDQ node units): a conv or matmul
    whose weight is quantized (one that only reads a dequantized activation, e.g. the first layer
    after an int8 region, computes in float); any other op when every activation it reads is
    dequantized and its output is quantized again (``DQ -> op -> Q``; a pool that only reads an
    int8 region's exit runs in float)."""
    if node.op_type in WEIGHTED:
        return len(node.input) > 1 and node.input[1] in dequantized
    acts = [i for i in node.input if i and i not in inits]
    return bool(acts) and all(i in dequantized for i in acts) and any(o in requantized for o in node.output)


def float_equivalent(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """The float network a QDQ file stands for, and the names of the nodes that run in int8
    (``_runs_int8``). A file without DequantizeLinear comes back as is."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    rename: dict[str, str] = {}
    new_inits: list[onnx.TensorProto] = []
    drop: set[int] = set()
    for node in g.node:
        if node.op_type != "DequantizeLinear":
            continue
        x = node.input[0]
        consts = [i for i in node.input[1:] if i]
        if x in inits and all(i in inits for i in consts):  # a quantized weight: store the float it stands for
            w = numpy_helper.to_array(inits[x]).astype(np.float32)
            scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
            zp = (numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
                  if len(node.input) > 2 and node.input[2] in inits else np.zeros_like(scale))  # fmt: skip
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            if scale.ndim == 1 and w.ndim > 1:
                shape = [1] * w.ndim
                shape[axis % w.ndim] = -1
                scale, zp = scale.reshape(shape), zp.reshape(shape)
            new_inits.append(numpy_helper.from_array((w - zp) * scale, node.output[0]))
            drop.add(id(node))
            continue
        q = producers.get(x)
        if q is not None and q.op_type == "QuantizeLinear":  # fake-quantized activation: bypass the pair
            rename[node.output[0]] = q.input[0]
            drop.update((id(node), id(q)))
    if not drop:
        return model, set()
    dequantized = set(rename) | {t.name for t in new_inits}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    og = out.graph
    keep = [n for n, orig in zip(og.node, g.node, strict=True) if id(orig) not in drop]
    requantized = {n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    int8_nodes = {n.name for n in keep if _runs_int8(n, dequantized, inits, requantized)}
    for n in keep:
        for k, i in enumerate(n.input):
            while i in rename:
                i = rename[i]
            n.input[k] = i
    for o in og.output:
        while o.name in rename:
            o.name = rename[o.name]
    del og.node[:]
    og.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept_inits = [i for i in og.initializer if i.name in used and i.name not in dequantized]
    del og.initializer[:]
    og.initializer.extend([*kept_inits, *(t for t in new_inits if t.name in used)])
    del og.value_info[:]  # stale shapes of removed tensors; shape inference redoes them
    return out, int8_nodes


def _half_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that compute in float16 (their first input or weight is float16)."""
    half = onnx.TensorProto.FLOAT16
    types = {i.name: i.data_type for i in model.graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    for vi in [*inferred.input, *inferred.value_info, *inferred.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    return {n.name for n in model.graph.node if any(types.get(i) == half for i in n.input[:2] if i)}


_DIM_NAMES = {1: "channels", 2: "height", 3: "width"}  # of a rank-4 (N, C, H, W) input


def input_batch(path: Path, model: onnx.ModelProto) -> int:
    """The batch the file's inputs fix (1 when their batch axis is dynamic).

    Raises:
        BadInputError: an input with a dynamic size past its batch axis (channels, height,
            width): the layers' sizes, so their latency, depend on it.
    """
    batch = 1
    for name, dims in graph_inputs(model):
        dynamic = [i for i, d in enumerate(dims) if i > 0 and isinstance(d, str)]
        if dynamic:
            what = "/".join(_DIM_NAMES.get(i, f"dim {i}") if len(dims) == 4 else f"dim {i}" for i in dynamic)
            raise BadInputError(
                f"{path}: input '{name}' has dynamic {what} ({', '.join(str(dims[i]) for i in dynamic)}); "
                "export it with a fixed input size (a dynamic batch axis is fine)"
            )
        if dims and isinstance(dims[0], int):
            batch = max(batch, dims[0])
    return batch


def file_layers(path: Path) -> tuple[list[LayerSpec], list[str], int]:
    """The file's layers (of its float equivalent), each one's stored precision and the batch
    its input fixes (1 when dynamic)."""
    model = read_model(path)
    batch = input_batch(path, model)
    try:
        float_model, int8_nodes = float_equivalent(model)
        half = _half_nodes(float_model)
    except Exception as exc:  # noqa: BLE001 - a malformed graph (shape inference, tensors)
        raise BadInputError(f"{path}: cannot read its layers ({type(exc).__name__}: {exc})") from None
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "float.onnx"
        onnx.save(float_model, str(f))
        try:
            layers, unknown = extract_layers(f)
        except Exception as exc:  # noqa: BLE001 - shape inference on a malformed graph
            raise BadInputError(f"{path}: cannot read its layers ({type(exc).__name__}: {exc})") from None
    if unknown:
        raise UnpricedLayersError(
            f"{path}: {len(unknown)} node(s) no layer table can price: {'; '.join(unknown[:8])}"
            f"{' ...' if len(unknown) > 8 else ''} (tables price: {', '.join(OPS)})"
        )
    if not layers:
        raise BadInputError(f"{path} holds no layer a table can price (no conv, linear, pool, ...)")
    stored = []
    for layer in layers:
        if any(n in int8_nodes for n in layer.nodes):
            stored.append("int8")
        elif layer.node in half:
            stored.append("fp16")
        else:
            stored.append("fp32")
    return layers, stored, batch


def _precisions(stored: list[str], precision: str, target: Target) -> list[str]:
    """Each layer's precision: ``precision`` throughout (already checked against the target by
    :func:`file_latency`), or for mixed the file's own, each one the target must run."""
    runs = target.device.precisions
    if precision != "mixed":
        return [precision] * len(stored)
    lacking = sorted({p for p in stored if p not in runs})
    if lacking:
        n = sum(p in lacking for p in stored)
        raise BadInputError(
            f"the file computes {n} layer(s) in {', '.join(lacking)}, which target {target.name} does not run "
            f"(it runs {', '.join(runs)}); pass --precision {runs[0]} to price them in it"
        )
    return stored


def _priced_by(table: LayerTable, key: Any, interpolated: bool, roofline: bool) -> tuple[str, bool]:
    if not interpolated:
        row = table.get(key)
        source = row.source if row is not None else "?"
        return f"table ({source})", source == "estimated"
    return ("estimated (roofline)", True) if roofline else ("interpolated (family fit)", True)


def file_latency(path: Path, target_name: str, precision: str = "mixed", *, profile_missing: bool = False,
                 on_profile: Callable[[int, int], None] | None = None) -> FileLatency:  # fmt: skip
    """Price ``path`` on the target (see the module docstring).

    Raises:
        BadInputError: missing or non-ONNX file, a precision the target does not run.
        TargetError: unknown target or unreadable table.
        UnpricedLayersError: a node no table prices, or a measured table measured elsewhere that
            lacks a layer family.
    """
    target = apply_cached(get_target(target_name))  # a band validated on this host, when there is one
    check_file_precision(precision, target)  # before the file is read
    layers, stored, batch = file_layers(path)
    precisions = _precisions(stored, precision, target)
    device = target.device
    table = load_layers(target.folder, device)
    keys = [layer.at(p) for layer, p in zip(layers, precisions, strict=True)]
    todo = missing_families(table, keys, device.precisions) if device.source == "measured" else []
    if todo and not profile_missing and precision == "mixed":
        searched = priced_as_searched(path, target, todo)
        if searched is not None:
            return searched
    if todo and not profile_missing:
        here = ("pass --profile-missing to measure them on this machine (where the table was measured) and add "
                "them to its layers.csv") if same_host(device) else (
                f"the table was measured on another machine ({device.host.get('cpu', '?')}), so rows timed here "
                f"would not be its machine's: measure them there with 'autocompress latency {shlex.quote(str(path))} --target "
                f"{target.name} --profile-missing', or price the file on a table of this machine: 'autocompress "
                f"profile --runtime {device.runtime} --name {target.name}-here --space tiny --networks 0' (seconds), "
                f"then 'autocompress latency {shlex.quote(str(path))} --target {target.name}-here --profile-missing'")  # fmt: skip
        raise UnpricedLayersError(
            f"target {target.name} has no layer-table rows like {len(todo)} layer(s) of {path} "
            f"({'; '.join(k.label() for k in todo[:4])}{' ...' if len(todo) > 4 else ''}); {here}"
        )
    there = f"autocompress latency {shlex.quote(str(path))} --target {target.name} --profile-missing (on that machine)"
    table, profiled = fill_layers(target, table, keys, on_progress=on_profile, command=there)
    missing = unpriced(device, table, layers, precisions)
    if missing:
        raise UnpricedLayersError(f"target {target.name} cannot price {len(missing)} layer(s): {'; '.join(missing[:6])}")
    pred = predict_layers(device, table, layers, precisions)
    roofline = device.roofline is not None
    power = device.power_w
    lines = []
    for i, (key, cost, layer) in enumerate(zip(keys, pred.breakdown, layers, strict=True)):
        by, est = _priced_by(table, key, cost.interpolated, roofline)
        if cost.fused:
            by = "estimated (roofline, in the kernel before it)"
        lines.append(LayerLine(i, cost.label, key.op, key.precision, cost.latency_ms,
                               None if power is None else cost.latency_ms * power, by, est, layer.nodes))  # fmt: skip
    notes = []
    if profiled:
        notes.append(f"{len(profiled)} layer(s) had no row in the table: profiled on this machine and added to "
                     f"{target.folder / 'layers.csv'}")  # fmt: skip
    if batch > 1:
        notes.append(f"the figures are for batch 1 (as the layer tables are), while the file's input fixes "
                     f"batch {batch}: they are not the latency of a batch of {batch}")  # fmt: skip
    if power is None:
        notes.append(f"no energy: {target.folder.name}/device.yaml records no power_w")
    if device.source == "measured" and not measured_here(device):
        notes.append(f"the layer rows of {target.name} were measured on another machine "
                     f"({device.host.get('cpu', 'unknown')!r}, {device.host.get('logical_cpus', '?')} logical CPUs, machine "
                     f"{device.host.get('machine') or 'unrecorded'}) and are used as they are; measure this one with "
                     f"'autocompress profile --runtime {device.runtime} --name {target.name}-here', then "
                     f"'autocompress latency {shlex.quote(str(path))} --target {target.name}-here --profile-missing'")  # fmt: skip
    uncovered = uncovered_note(device, [roofline_layer(key) for key in keys])
    if uncovered:
        notes.append(uncovered)
    return _result(path, target, precision, precisions, pred, lines, notes, profiled=len(profiled), file_batch=batch)


def _result(path: Path, target: Target, precision: str, precisions: list[str], pred: Any, lines: list[LayerLine],
            notes: list[str], **extra: Any) -> FileLatency:  # fmt: skip
    """The prediction as the command shows it: the interval from the band of ``precisions``, and
    energy (with its interval) where the device records a power figure."""
    band = network_band(target.device, precisions)
    power = target.device.power_w
    iv = band.interval(pred.latency_ms) if band else None
    return FileLatency(
        model=str(path), target=target.name, source=target.source_label, estimated=target.estimated,
        precision=precision, layer_precisions=dict(Counter(precisions)), latency_ms=pred.latency_ms,
        interval_ms=iv, band=band, energy_mj=None if power is None else pred.latency_ms * power,
        energy_interval_mj=None if iv is None or power is None else (iv[0] * power, iv[1] * power),
        power_w=power, overhead_ms=pred.overhead_ms, transitions_ms=pred.transitions_ms, layers=lines,
        notes=notes, **extra,
    )  # fmt: skip


def search_record(path: Path) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """(the run's config, the candidate's choices (a trials row), which trial) of a file a supernet search wrote:
    a run's ``models/trial_NNNN.onnx`` or ``final_NNNN.onnx`` (the trials row naming it, at the
    size it records), or an exported file beside its ``model_card.json`` (at the sha256 the card
    records; the space from its run's config.yaml). None for any other file, a changed one, or a
    run of the user's own model (its files are priced by their layers, as its search did)."""
    import json

    import pandas as pd

    from autocompress._io import file_sha256
    from autocompress.results import read_config

    def config_of(run: Path) -> dict[str, Any] | None:
        try:
            cfg = read_config(run)
        except (RunDirError, ValueError):  # ValueError: a config.yaml that is not UTF-8
            return None
        ok = isinstance(cfg, dict) and cfg.get("kind", "supernet") == "supernet" and isinstance(cfg.get("space"), dict)
        return cfg if ok else None

    card_path = path.parent / "model_card.json"
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
            recorded = card["files"][path.name]["sha256"]
            choices, run = card["candidate"]["choices"], Path(card["run"]["dir"])
            trial = f"trial {card['run']['trial']} of {card['run']['name']}"
        except (OSError, ValueError, KeyError, TypeError):
            return None
        cfg = config_of(run)
        if cfg is None or card["candidate"].get("problem", "supernet") != "supernet" or file_sha256(path) != recorded:
            return None
        return cfg, choices, trial
    run = path.parent.parent
    if path.parent.name != "models" or not (run / "trials.parquet").is_file():
        return None
    cfg = config_of(run)
    if cfg is None:
        return None
    try:
        trials = pd.read_parquet(run / "trials.parquet")
    except (OSError, ValueError):
        return None
    size = path.stat().st_size
    for col, size_col in (("model_path", "size_bytes"), ("search_model_path", "search_size_bytes"),
                          ("final_model_path", "final_size_bytes")):  # fmt: skip
        if col not in trials or size_col not in trials:
            continue
        for _, row in trials.iterrows():
            if isinstance(row[col], str) and Path(row[col]).name == path.name and row[size_col] == size:
                plain = {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
                return cfg, plain, f"trial {int(row['number'])} of {run.name}"
    return None


def priced_as_searched(path: Path, target: Target, missing: list[Any]) -> FileLatency | None:
    """A file of our own search on a measured table whose layers.csv lacks some of its layer
    families: priced by the candidate's blocks from the table's blocks.csv, as the search priced
    it (the same figure), instead of refused. None when the file is not one (``search_record``)."""
    from autocompress.arch import block_precisions, plan
    from autocompress.hardware.predict import predict
    from autocompress.space import Candidate, space_from_dict

    record = search_record(path)
    if record is None:
        return None
    cfg, choices, trial = record
    try:
        space = space_from_dict(cfg["space"])
        cand = Candidate.from_flat({k: choices[k] for k in space.dimensions() if k in choices})
        ds = cfg.get("dataset") or {}
        classes = ds.get("classes")
        blocks = plan(cand, space, int(ds.get("channels", 1)), len(classes) if isinstance(classes, list) else int(classes))
    except (AutoCompressError, KeyError, TypeError, ValueError):
        return None
    precisions = block_precisions(cand, space, blocks)
    device = target.device
    pred = predict(target.table, blocks, precisions)
    power = device.power_w
    lines = []
    for i, (cost, prec, block) in enumerate(zip(pred.breakdown, precisions, blocks, strict=True)):
        row = None if cost.interpolated else target.table.get(BlockKey.of(block, prec))
        by = ("interpolated (family fit)" if cost.interpolated else f"blocks.csv ({row.source if row else '?'})")
        lines.append(LayerLine(i, cost.label, block.op, prec, cost.latency_ms,
                               None if power is None else cost.latency_ms * power, by,
                               cost.interpolated or (row is not None and row.source == "estimated"), ()))  # fmt: skip
    labels = "; ".join(k.label() for k in missing[:3]) + (" ..." if len(missing) > 3 else "")
    notes = [f"priced by its blocks, as the search priced it ({trial}): {target.name}'s layers.csv has no row "
             f"like {len(missing)} of its layers ({labels}), while its blocks.csv holds the blocks it is built of"]
    if power is None:
        notes.append(f"no energy: {target.folder.name}/device.yaml records no power_w")
    return _result(path, target, "mixed", precisions, pred, lines, notes, unit="block")
