"""Latency lookup tables: ``device.yaml`` (the device and where its numbers came from) and
``blocks.csv`` (one row per fused block configuration), typed, versioned, validated on load.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from autocompress._io import atomic_write_text, check_regular_file, load_yaml, path_kind, yaml_problem
from autocompress.arch import BlockSpec
from autocompress.exceptions import TargetError

SCHEMA_VERSION = 1
COLUMNS = (
    "op", "in_h", "in_w", "in_c", "out_c", "kernel", "stride", "expand", "act",
    "precision", "batch", "latency_ms", "latency_std_ms", "energy_mj", "source",
)  # fmt: skip
KEY_COLUMNS = COLUMNS[:11]
OPS = ("stem", "mbconv", "mbconv_se", "head")
SOURCES = ("measured", "published", "estimated")
TableKind = Literal["blocks", "layers"]
SCALE_FIELDS: dict[str, str] = {"blocks": "block_scale", "layers": "layer_scale"}
INT8_TERMS = ("int8_link_ms", "int8_residual_ms", "int8_region_ms")  # DeviceSpec fields fitted by scale.fit_int8


class Reference(BaseModel):
    """A datasheet or published figure a device's numbers rest on, with where it was read."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    figure: str
    source: str


class CalibrationFigure(BaseModel):
    """One published whole-network latency a roofline is calibrated against.

    The input side (network .. notes) is written by hand from the source; ``family``,
    ``predicted_ms`` and the ``*_error_pct`` fields are written by
    ``autocompress.hardware.calibrate`` (the network's family, the model's prediction with every
    figure in the fit, and the error when this figure, its network family or its source is left
    out of the fit).
    """

    model_config = ConfigDict(extra="forbid")
    network: str = Field(description="a key of autocompress.hardware.reference_nets.BUILDERS")
    input_size: int = Field(gt=0, description="square input side, pixels")
    precision: Literal["fp32", "fp16", "int8"]
    batch: int = Field(1, ge=1)
    latency_ms: float = Field(gt=0, description="published batch latency, ms (converted as 'published' says)")
    published: str = Field(description="the figure exactly as published, and how it was converted to ms")
    includes_overhead: bool = Field(
        True, description="the figure includes the per-inference runtime overhead (overhead_ms)"
    )
    classes: int | None = Field(None, ge=1, description="classifier/detector outputs, when not the network's default")
    harness: str = Field(
        "", description="the measuring harness (a key of roofline.harness_overhead_ms: its fitted per-inference "
        "overhead is added instead of overhead_ms); '' for none"
    )
    cuda_graph: bool | None = Field(
        None, description="true: the harness replays the engine as a CUDA graph, so its kernels are not launched "
        "one by one and the per-kernel launch floor (kernel_overhead_ms) does not apply to this figure (the roofline "
        "work still does); estimates always pay the floor"
    )
    runtime: str = ""
    source: str = Field(description="URL (and revision) the figure was read from")
    title: str = ""
    notes: str = ""
    use_in_fit: bool = True
    family: str | None = Field(None, description="network family (autocompress.hardware.families)")
    predicted_ms: float | None = None
    loo_error_pct: float | None = Field(
        None, description="(prediction - published) / published, left out of the fit, %"
    )
    lofo_error_pct: float | None = Field(
        None, description="as loo_error_pct, with every figure of this network family left out of the fit"
    )
    loso_error_pct: float | None = Field(
        None, description="as loo_error_pct, with every figure of this source (URL) left out of the fit"
    )


class CalibrationFit(BaseModel):
    """What a calibration fitted, what it fixed by assumption, and how well it fits."""

    model_config = ConfigDict(extra="forbid")
    method: str = "least squares on log latency (scipy.optimize.least_squares)"
    figures: int = Field(ge=0)
    free: list[str] = Field([], description="parameters to fit (read by the calibration, hand-chosen)")
    assumptions: list[str] = Field([], description="why each parameter that is not fitted has its value")
    fixed: list[str] = Field([], description="parameters not fitted, with their values (written by the fit)")
    priors: dict[str, float] = Field(
        {}, description="free parameters pulled toward a value (weight prior_weight on log error), hand-chosen"
    )
    prior_weight: float = Field(0.3, ge=0)
    rms_error_pct: float | None = None
    loo_rms_error_pct: float | None = None
    held_out: dict[str, str] = Field(
        {}, description="held-out error summaries (leave-one-family-out, leave-one-source-out), written by the fit"
    )


class Roofline(BaseModel):
    """The analytical model behind an estimated table, per layer (kernel).

    A layer's latency is ``max(2 * MACs / (peak[precision] * efficiency * tile fill), bytes /
    (bandwidth * memory_efficiency)) + kernel_overhead_ms``; a fused block or a reference network
    is the sum of its layers. The efficiency of a layer is ``precision_efficiency[precision] *
    layer_efficiency[kind]`` when ``precision_efficiency`` is given (calibrated files), else the
    legacy per-block-op ``efficiency[op]`` (``default`` when the op is missing).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    peak_gops: dict[str, float] = Field(description="dense datasheet peak per precision, GOP/s")
    efficiency: dict[str, float] = Field({}, description="legacy: fraction of peak reached, per block op")
    precision_efficiency: dict[str, float] = Field(
        {}, description="fraction of the precision's peak reached by dense convolutions"
    )
    layer_efficiency: dict[str, float] = Field(
        {}, description="throughput of each layer kind relative to a dense convolution (conv = 1)"
    )
    memory_bandwidth_gbs: float = Field(gt=0)
    memory_efficiency: float = Field(0.6, gt=0, le=1)
    kernel_overhead_ms: float = Field(ge=0, description="launch floor per fused kernel")
    floor_mode: Literal["add", "max"] = Field(
        "add", description="add: a kernel costs its roofline time plus the floor (a CPU runtime dispatching "
        "ops one after another); max: the larger of the two (a GPU queue, where launches overlap the work "
        "of the kernel before)"
    )
    gemm_tile: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="rows x columns of the GEMM tile a convolution kernel computes at once (tensor-core "
        "implicit GEMM): a convolution whose output pixels or channels do not fill whole tiles reaches only "
        "the filled share of its efficiency; none: no tile quantisation"
    )
    harness_overhead_ms: dict[str, float] = Field(
        {}, description="per-inference overhead of each measuring harness in the calibration figures "
        "(e.g. a Python wrapper), fitted so that kernel_overhead_ms does not absorb it; not added to estimates"
    )
    harness_scale: dict[str, float] = Field(
        {}, description="factor on the kernel time of one harness's figures (a board run at other clocks than "
        "this file's power mode), fitted; not applied to estimates"
    )
    calibrated: bool = False
    calibration: list[CalibrationFigure] = []
    fit: CalibrationFit | None = None

    def calibration_figures(self) -> int:
        """How many published figures the current parameters were fitted to."""
        return sum(f.use_in_fit for f in self.calibration) if self.calibrated else 0


class ErrorBand(BaseModel):
    """How far a table's predictions fell from held-out truths, as ``actual = predicted x (1 + pct/100)``.

    ``lo_pct``/``hi_pct`` bound the relative error over ``n`` held-out cases (order statistics,
    ``interval.band_of``); ``coverage`` is the share of those cases that lie between them (at least
    0.8 for a band built here; bands written before claimed 0.8 without counting); ``basis`` says
    how they were held out (e.g. leave-one-family-out over published figures, or validate-latency on
    random candidates timed on ``host``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lo_pct: float
    hi_pct: float
    coverage: float = Field(0.8, gt=0, le=1)
    n: int = Field(ge=0)
    basis: str
    host: dict[str, Any] = {}
    within: dict[str, float] = Field({}, description="share of cases within +-X% (key: X as text)")
    median_abs_pct: float | None = None

    def interval(self, predicted_ms: float) -> tuple[float, float]:
        """The range a prediction of ``predicted_ms`` stands for."""
        return (predicted_ms * max(0.0, 1 + self.lo_pct / 100), predicted_ms * (1 + self.hi_pct / 100))


class EdgeCost(BaseModel):
    """What a QuantizeLinear (entering int8 from float) or a DequantizeLinear (leaving it) costs on
    one activation tensor of ``e`` elements: ``fixed_ms + per_kelem_ms * e / 1000``, fitted by
    least squares to the op timed alone on the table's activation shapes (``hardware/qdq.py``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    fixed_ms: float = Field(ge=0)
    per_kelem_ms: float = Field(ge=0)
    shapes: int = Field(0, ge=0, description="activation shapes it was fitted on")

    def ms(self, elems: float) -> float:
        return self.fixed_ms + self.per_kelem_ms * elems / 1000.0


TARGET_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]*"  # a table's name: its folder's name, so a plain one


class DeviceSpec(BaseModel):
    """``device.yaml``: the target and the provenance of every number in its table."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    schema_version: Literal[1] = 1
    # a folder and file name (host fits, run directories): no '/', no '../'
    name: str = Field(pattern=rf"^{TARGET_NAME}$")
    aliases: list[str] = []
    description: str
    source: Literal["measured", "published", "estimated"]
    runtime: str
    runtime_version: str = ""
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(min_length=1)
    batch: int = Field(1, ge=1)
    overhead_ms: float = Field(ge=0, description="per inference: runtime call, input/output copies")
    transition_ms: float = Field(
        0.0, ge=0, description="per entry into a reduced precision (fp16; int8 too where int8_entry is not fitted)"
    )
    int8_entry: EdgeCost | None = Field(
        None, description="quantizing the activation that enters an int8 region (once per region)"
    )
    int8_exit: EdgeCost | None = Field(
        None, description="dequantizing the activation that leaves an int8 region (once per region); "
        "an int8 row was timed with its own output DequantizeLinear, which inside a region is fused away",
    )
    int8_link_ms: dict[str, float] = Field(
        {}, description="per table kind (blocks, layers): per boundary between two consecutive int8 entries, "
        "fitted on networks timed end to end (what a row timed alone misses inside an int8 chain; may be < 0)",
    )
    int8_residual_ms: dict[str, float] = Field(
        {}, description="per table kind: per int8 entry with a residual add (an mbconv block keeping its shape), "
        "fitted end to end (what timing the block alone misses of its skip connection inside a network)",
    )
    int8_region_ms: dict[str, float] = Field(
        {}, description="per table kind: per int8 region on top of int8_entry/int8_exit, fitted end to end (may be < 0)"
    )
    block_scale: float | dict[str, float] = Field(
        1.0, description="factor on block rows (one, or per precision), fitted to end-to-end timings of networks"
    )
    layer_scale: float | dict[str, float] = Field(
        1.0, description="factor on layer rows (one, or per precision), fitted to end-to-end timings of networks"
    )
    power_w: float | None = Field(None, gt=0, description="typical power while inferring")
    power_note: str = ""
    host: dict[str, Any] = {}
    roofline: Roofline | None = None
    references: list[Reference] = []
    notes: str = ""
    error_band: dict[str, ErrorBand] = Field(
        {}, description="held-out error of this table's predictions, per precision ('all': any precision)"
    )

    def band(self, precision: str) -> ErrorBand | None:
        """The held-out error band for ``precision`` predictions (or the all-precision one), if recorded."""
        return self.error_band.get(precision) or self.error_band.get("all")

    def scale(self, precision: str, table: TableKind = "blocks") -> float:
        """The factor on a ``precision`` row of the ``table`` (1 where none was fitted)."""
        factor = self.block_scale if table == "blocks" else self.layer_scale
        if isinstance(factor, dict):
            return float(factor.get(precision, 1.0))
        return float(factor)


@dataclass(frozen=True)
class BlockKey:
    """The lookup key of a fused block at one precision (typed, not a concatenated string)."""

    op: str
    in_h: int
    in_w: int
    in_c: int
    out_c: int
    kernel: int
    stride: int
    expand: float
    act: str
    precision: str
    batch: int = 1

    @classmethod
    def of(cls, block: BlockSpec, precision: str, batch: int = 1) -> BlockKey:
        return cls(block.op, block.in_h, block.in_w, block.in_c, block.out_c, block.kernel,
                   block.stride, round(float(block.expand), 4), block.act, precision, batch)  # fmt: skip

    def spec(self) -> BlockSpec:
        return BlockSpec(self.op, self.in_h, self.in_w, self.in_c, self.out_c, self.kernel,
                         self.stride, self.expand, self.act, 0)  # fmt: skip

    def family(self) -> tuple[str, str, int]:
        """Rows a missing block may be interpolated from: same op, precision and batch."""
        return (self.op, self.precision, self.batch)

    def narrow(self) -> tuple[int, int]:
        """Within the family, the rows preferred when there are enough: same kernel and stride."""
        return (self.kernel, self.stride)

    def size(self) -> tuple[float, float]:
        spec = self.spec()
        return float(spec.macs()), float(spec.activation_elems())

    def residual(self) -> bool:
        """Whether the block adds its input to its output (an mbconv that keeps its shape)."""
        return self.op == "mbconv" and self.stride == 1 and self.in_c == self.out_c

    def edges(self) -> tuple[float, float]:
        """(input, output) activation elements: what entering int8 quantizes and leaving it dequantizes."""
        spec = self.spec()
        return float(self.in_h * self.in_w * self.in_c), float(spec.out_h * spec.out_w * self.out_c)

    def label(self) -> str:
        act = f" {self.act}" if self.act not in ("relu", "none") else ""
        if self.op in ("mbconv", "mbconv_se"):
            return (f"{self.op} {self.in_h}x{self.in_w} {self.in_c}->{self.out_c} k{self.kernel} "
                    f"s{self.stride} e{self.expand:g}{act} {self.precision}")  # fmt: skip
        return f"{self.op} {self.in_h}x{self.in_w} {self.in_c}->{self.out_c}{act} {self.precision}"


@dataclass(frozen=True)
class Row:
    key: BlockKey
    latency_ms: float
    latency_std_ms: float
    energy_mj: float | None
    source: str

    def to_csv(self) -> list[Any]:
        k = self.key
        return [k.op, k.in_h, k.in_w, k.in_c, k.out_c, k.kernel, k.stride, f"{k.expand:g}", k.act,
                k.precision, k.batch, f"{self.latency_ms:.6f}", f"{self.latency_std_ms:.6f}",
                "" if self.energy_mj is None else f"{self.energy_mj:.6f}", self.source]  # fmt: skip


class FamilyLookup:
    """What the pricing path asks of a table (blocks or layers): a key's row, and the rows of its
    family (``key.family()``), grouped once per family."""

    rows: dict[Any, Any]
    _families: dict[tuple[Any, ...], list[Any]]

    def get(self, key: Any) -> Any:
        return self.rows.get(key)

    def rows_like(self, key: Any) -> list[Any]:
        """Rows of ``key``'s family (see the key's ``family``)."""
        fam = key.family()
        if fam not in self._families:
            self._families[fam] = [r for k, r in self.rows.items() if k.family() == fam]
        return self._families[fam]


@dataclass
class LatencyTable(FamilyLookup):
    device: DeviceSpec
    rows: dict[BlockKey, Row]
    folder: Path | None = None
    _families: dict[tuple[Any, ...], list[Row]] = field(default_factory=dict, repr=False)
    kind: TableKind = field(default="blocks", init=False)

    def save(self, folder: Path, *, write_device: bool = True) -> None:
        """Write ``device.yaml`` (unless told not to: a hand-written one keeps its comments) and
        ``blocks.csv``, each atomically."""
        folder.mkdir(parents=True, exist_ok=True)
        if write_device:
            save_device(folder, self.device)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in sorted(self.rows.values(), key=lambda r: _sort_key(r.key)):
            writer.writerow(row.to_csv())
        atomic_write_text(folder / "blocks.csv", buf.getvalue())


def _sort_key(k: BlockKey) -> tuple[Any, ...]:
    return (OPS.index(k.op) if k.op in OPS else 99, k.precision, k.in_h, k.in_c, k.out_c,
            k.kernel, k.stride, k.expand, k.batch)  # fmt: skip


def save_device(folder: Path, device: DeviceSpec) -> None:
    """Write ``folder/device.yaml`` atomically (fields in model order; comments are not kept)."""
    data = device.model_dump(mode="json", exclude_none=True)
    for name in INT8_TERMS:  # fitted on measured tables only: other files stay as they were written
        if not data.get(name):
            data.pop(name, None)
    atomic_write_text(folder / "device.yaml", yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True))


def load_device(path: Path) -> DeviceSpec:
    if path_kind(path) not in (None, "a file"):  # a FIFO would block the read forever
        check_regular_file(path, "latency table file", TargetError)
    try:
        raw = load_yaml(path.read_text())
    except FileNotFoundError:
        raise TargetError(f"latency table {path.parent} has no device.yaml") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: not readable YAML ({type(exc).__name__}{yaml_problem(exc)})") from None
    if not isinstance(raw, dict):
        raise TargetError(f"{path}: must be a YAML mapping")
    try:
        return DeviceSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise TargetError(f"{path}: field {loc}: {err['msg']}") from None


def csv_records(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, column -> stripped value) for every non-blank row of a table CSV whose
    header must be ``columns``.

    Raises:
        TargetError: unreadable file, wrong header, or a row with the wrong number of columns.
    """
    if path_kind(path) not in (None, "a file"):  # a FIFO would block the read forever
        check_regular_file(path, "latency table file", TargetError)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: not readable ({type(exc).__name__})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != columns:
        raise TargetError(f"{path}: header must be {','.join(columns)}")
    for lineno, fields in enumerate(reader, start=2):
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(columns):
            raise TargetError(f"{path}: row {lineno} has {len(fields)} columns, expected {len(columns)}")
        yield lineno, dict(zip(columns, (f.strip() for f in fields)))


def load_table(folder: Path) -> LatencyTable:
    """Load and validate a table folder.

    Raises:
        TargetError: naming the file, and for ``blocks.csv`` the row and column, that broke a rule.
    """
    device = load_device(folder / "device.yaml")
    path = folder / "blocks.csv"
    if not path.exists():
        raise TargetError(f"latency table {folder} has no blocks.csv")
    rows: dict[BlockKey, Row] = {}
    for lineno, fields in csv_records(path, COLUMNS):
        row = _parse_row(path, lineno, fields, device)
        if row.key in rows:
            raise TargetError(f"{path}: row {lineno} repeats the block of an earlier row")
        rows[row.key] = row
    if not rows:
        raise TargetError(f"{path}: has no rows")
    return LatencyTable(device=device, rows=rows, folder=folder)


def _parse_row(path: Path, lineno: int, f: dict[str, str], device: DeviceSpec) -> Row:
    def num(col: str, kind: type, *, low: float = 0, allow_empty: bool = False) -> Any:
        text = f[col]
        if text == "" and allow_empty:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise TargetError(f"{path}: row {lineno}, column {col}: {text!r} is not a number") from None
        if isinstance(value, float) and not math.isfinite(value) or value < low:
            raise TargetError(f"{path}: row {lineno}, column {col}: must be finite and >= {low}, got {text}")
        return value

    if f["op"] not in OPS:
        raise TargetError(f"{path}: row {lineno}, column op: {f['op']!r} is not one of {OPS}")
    if f["precision"] not in device.precisions:
        raise TargetError(
            f"{path}: row {lineno}, column precision: {f['precision']!r} is not among the "
            f"device's precisions {device.precisions}"
        )
    if f["source"] not in SOURCES:
        raise TargetError(f"{path}: row {lineno}, column source: {f['source']!r} is not one of {SOURCES}")
    key = BlockKey(
        op=f["op"],
        in_h=num("in_h", int, low=1),
        in_w=num("in_w", int, low=1),
        in_c=num("in_c", int, low=1),
        out_c=num("out_c", int, low=1),
        kernel=num("kernel", int, low=1),
        stride=num("stride", int, low=1),
        expand=round(num("expand", float), 4),
        act=f["act"],
        precision=f["precision"],
        batch=num("batch", int, low=1),
    )
    latency = num("latency_ms", float)
    if latency <= 0:
        raise TargetError(f"{path}: row {lineno}, column latency_ms: must be > 0, got {f['latency_ms']}")
    return Row(
        key=key,
        latency_ms=latency,
        latency_std_ms=num("latency_std_ms", float),
        energy_mj=num("energy_mj", float, allow_empty=True),
        source=f["source"],
    )
