"""Search spaces: a validated YAML file, and the frozen ``Candidate`` a trial turns into.

A space lists, per stage, the architecture choices (depth, width, kernel, expand) and the
compression choices (pruning ratio, precision), plus input resolutions and distillation
settings. A one-element list fixes a dimension; the search only samples lists of two or more.
"""

from __future__ import annotations

import hashlib
import json
import random
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autocompress._io import load_yaml, path_kind, yaml_problem
from autocompress._resources import spaces_dir
from autocompress.exceptions import SpaceError
from autocompress.schedule import FinalizeSpec

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
Activation = Literal["relu", "hswish"]
# per-stage architecture dimensions
ARCH_SUFFIXES = ("_depth", "_width", "_kernel", "_expand", "_se", "_act")
SPACES_DIR = spaces_dir()  # the shipped spaces (see autocompress._resources)
DEFAULT_SPACE = SPACES_DIR / "fashion_mnist.yaml"
# Beyond these a supernet does not fit in memory or means a typo (a width of 100000).
MAX_WIDTH, MAX_EXPAND, MAX_KERNEL, MAX_DEPTH = 4096, 16, 15, 32


def _choices(values: list[Any], name: str) -> list[Any]:
    if len(values) == 0:
        raise ValueError(f"{name} needs at least one choice")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} choices must be unique, got {values}")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


class InputSpec(_Strict):
    resolution: list[int] = Field(description="input side lengths in pixels to choose from")
    channels: int = Field(
        1, ge=1, le=64, description="input channels of the images the space is meant for (1 grey, 3 RGB): "
        "the default of --channels, and what the latency tables are generated for"
    )

    @field_validator("resolution")
    @classmethod
    def _check(cls, v: list[int]) -> list[int]:
        _choices(v, "input.resolution")
        if min(v) < 4 or max(v) > 1024:
            raise ValueError(f"input.resolution must be within 4..1024, got {v}")
        return v


class StemSpec(_Strict):
    width: list[int] = Field(description="output channels of the first conv")
    kernel: int = 3
    stride: int = 1
    act: Activation = Field("relu", description="activation after the stem conv: relu or hswish")

    @field_validator("width")
    @classmethod
    def _check(cls, v: list[int]) -> list[int]:
        _choices(v, "stem.width")
        if min(v) < 1 or max(v) > MAX_WIDTH:
            raise ValueError(f"stem.width must be within 1..{MAX_WIDTH}, got {v}")
        return v

    @model_validator(mode="after")
    def _geometry(self) -> StemSpec:
        if self.kernel < 1 or self.kernel % 2 == 0 or self.kernel > MAX_KERNEL:
            raise ValueError(f"stem.kernel must be odd and within 1..{MAX_KERNEL}, got {self.kernel}")
        if self.stride not in (1, 2):
            raise ValueError(f"stem.stride must be 1 or 2, got {self.stride}")
        return self


class StageSpec(_Strict):
    depth: list[int]
    width: list[int]
    kernel: list[int]
    expand: list[float]
    stride: int = 2
    se: list[bool] = Field(
        [False], description="squeeze-excite in the stage's blocks (EfficientNet-style, a quarter of the "
        "block's input channels, hard-sigmoid gate); [false, true]: searched"
    )
    act: list[Activation] = Field(["relu"], description="the blocks' activation: relu or hswish (hard-swish)")
    prune_ratio: list[float] | None = Field(None, description="overrides compression.prune_ratio")
    precision: list[Precision] | None = Field(None, description="overrides compression.precision")

    @model_validator(mode="after")
    def _check(self) -> StageSpec:
        for name in ("depth", "width", "kernel", "expand", "se", "act"):
            _choices(getattr(self, name), name)
        if min(self.depth) < 1 or max(self.depth) > MAX_DEPTH:
            raise ValueError(f"depth must be within 1..{MAX_DEPTH}, got {self.depth}")
        if min(self.width) < 1 or max(self.width) > MAX_WIDTH:
            raise ValueError(f"width must be within 1..{MAX_WIDTH}, got {self.width}")
        if any(k < 1 or k % 2 == 0 or k > MAX_KERNEL for k in self.kernel):
            raise ValueError(f"kernel sizes must be odd and within 1..{MAX_KERNEL}, got {self.kernel}")
        if min(self.expand) <= 0 or max(self.expand) > MAX_EXPAND:
            raise ValueError(f"expand ratios must be > 0 and <= {MAX_EXPAND}, got {self.expand}")
        if self.stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {self.stride}")
        if self.prune_ratio is not None:
            _check_prune(self.prune_ratio)
        if self.precision is not None:
            _choices(self.precision, "precision")
        return self


def _check_prune(v: list[float]) -> list[float]:
    _choices(v, "prune_ratio")
    if any(r < 0 or r >= 1 for r in v):
        raise ValueError(f"prune_ratio must be within [0, 1), got {v}")
    return v


PruneImportance = Literal["l1", "l2", "taylor", "bn_scale"]
QuantCalibration = Literal["minmax", "entropy", "percentile"]


class CompressionSpec(_Strict):
    prune_ratio: list[float] = Field(
        [0.0], description="share of each MBConv block's hidden channels a stage prunes, in [0, 1)"
    )
    prune_importance: PruneImportance = Field(
        "l2",
        description="which channels go: l1/l2 (group weight magnitude), taylor (|weight x gradient| "
        "on a few training batches) or bn_scale (|BatchNorm gamma|)",
    )
    prune_round_to: int = Field(1, ge=1, description="kept hidden channels are a multiple of this")
    precision: list[Precision] = ["fp32"]
    first_last: Literal["fp32", "follow"] = Field(
        "fp32", description="fp32: stem and classifier stay fp32; follow: they take their stage's"
    )
    kd_alpha: list[float] = [0.0]
    kd_temperature: list[float] = [4.0]
    finetune_steps: list[int] = [0]
    calibration: list[QuantCalibration] = Field(
        ["minmax"],
        description="how int8 activation ranges are calibrated: minmax, entropy or percentile "
        "(ONNX Runtime); OpenVINO targets (NNCF) take minmax and percentile",
    )
    qat: list[bool] = Field(
        [False],
        description="true: when int8 post-training quantization loses more than qat_threshold_pp "
        "validation accuracy, fine-tune with fake quantization (QAT) and quantize again",
    )
    qat_threshold_pp: float = Field(
        0.5, ge=-100, le=100,
        description="PTQ loss of validation accuracy (percentage points) above which QAT runs; "
        "negative: QAT for every int8 candidate that allows it",
    )
    qat_steps: int = Field(200, ge=1, description="QAT fine-tune steps")

    @model_validator(mode="after")
    def _check(self) -> CompressionSpec:
        _check_prune(self.prune_ratio)
        _choices(self.precision, "compression.precision")
        _choices(self.kd_alpha, "compression.kd_alpha")
        _choices(self.kd_temperature, "compression.kd_temperature")
        _choices(self.finetune_steps, "compression.finetune_steps")
        _choices(self.calibration, "compression.calibration")
        _choices(self.qat, "compression.qat")
        if any(a < 0 or a > 1 for a in self.kd_alpha):
            raise ValueError(f"kd_alpha must be within [0, 1], got {self.kd_alpha}")
        if any(t <= 0 for t in self.kd_temperature):
            raise ValueError(f"kd_temperature must be > 0, got {self.kd_temperature}")
        if any(s < 0 for s in self.finetune_steps):
            raise ValueError(f"finetune_steps must be >= 0, got {self.finetune_steps}")
        return self


class TrainingSpec(_Strict):
    """How the supernet is trained once, and how each candidate is fine-tuned."""

    epochs: float = Field(4.0, gt=0, description="supernet epochs over the train split (sandwich phase)")
    largest_first_epochs: float = Field(
        0.0,
        ge=0,
        description="progressive shrinking: epochs that train the largest subnet alone before the "
        "sandwich phase (a step of it cost 38-56% of a sandwich step, measured on 2 cores)",
    )
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.05, gt=0, description="peak SGD learning rate (one-cycle)")
    weight_decay: float = Field(4e-5, ge=0)
    sandwich_random: int = Field(2, ge=0, description="random subnets per step besides min/max")
    augment: bool = Field(True, description="augment the images while training the supernet")
    augment_kind: Literal["auto", "shift", "crop"] = Field(
        "auto",
        description="shift: random shift + horizontal flip (small grey images); crop: random resized "
        "crop + horizontal flip (photos); auto: crop for 3-channel data, shift otherwise",
    )
    recalib_batches: int = Field(20, ge=0, description="BN recalibration batches per subnet")
    finetune_lr: float = Field(0.02, gt=0)
    finetune_batch_size: int = Field(128, ge=1)


class SpaceModel(_Strict):
    name: str
    description: str = ""
    dataset: str = "fashion-mnist"
    input: InputSpec
    stem: StemSpec
    stages: list[StageSpec] = Field(min_length=1, max_length=8)
    compression: CompressionSpec = CompressionSpec()
    training: TrainingSpec = TrainingSpec()
    finalize: FinalizeSpec = FinalizeSpec()  # the long fine-tune after the search (schedule.py)

    @model_validator(mode="after")
    def _shape(self) -> SpaceModel:
        """The strides must leave at least one pixel of the smallest input."""
        total = self.stem.stride
        for st in self.stages:
            total *= st.stride
        smallest = min(self.input.resolution)
        if total > smallest:
            raise ValueError(
                f"the stem and stage strides downsample {total}x, more than the smallest input "
                f"resolution {smallest} px allows (the feature map would be under 1 pixel); use larger "
                "resolutions or fewer stride-2 stages"
            )
        return self


def _as_bool(v: Any) -> bool:
    """A choice read back from a table or a YAML file: True/False, 1/0 or 'true'/'false'."""
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


@dataclass(frozen=True)
class StageChoice:
    depth: int
    width: int
    kernel: int
    expand: float
    se: bool = False
    act: str = "relu"


@dataclass(frozen=True)
class Candidate:
    """One point of the space: architecture plus compression. Frozen and hashable."""

    resolution: int
    stem_width: int
    stages: tuple[StageChoice, ...]
    prune: tuple[float, ...]
    precision: tuple[str, ...]
    kd_alpha: float
    kd_temperature: float
    finetune_steps: int
    calibration: str = "minmax"
    qat: bool = False

    def to_flat(self) -> dict[str, Any]:
        """One column per choice, as in the trials table and Optuna's params."""
        flat: dict[str, Any] = {"resolution": self.resolution, "stem_width": self.stem_width}
        for i, (st, pr, prec) in enumerate(zip(self.stages, self.prune, self.precision)):
            flat.update({f"s{i}_{k}": v for k, v in asdict(st).items()})
            flat[f"s{i}_prune"] = pr
            flat[f"s{i}_precision"] = prec
        flat.update(
            kd_alpha=self.kd_alpha,
            kd_temperature=self.kd_temperature,
            finetune_steps=self.finetune_steps,
            calibration=self.calibration,
            qat=self.qat,
        )
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> Candidate:
        n = 0
        while f"s{n}_depth" in flat:
            n += 1
        try:
            stages = tuple(
                StageChoice(
                    depth=int(flat[f"s{i}_depth"]),
                    width=int(flat[f"s{i}_width"]),
                    kernel=int(flat[f"s{i}_kernel"]),
                    expand=float(flat[f"s{i}_expand"]),
                    # spaces (and runs) without these choices have neither SE nor hard-swish
                    se=_as_bool(flat.get(f"s{i}_se", False)),
                    act=str(flat.get(f"s{i}_act", "relu")),
                )
                for i in range(n)
            )
            return cls(
                resolution=int(flat["resolution"]),
                stem_width=int(flat["stem_width"]),
                stages=stages,
                prune=tuple(float(flat[f"s{i}_prune"]) for i in range(n)),
                precision=tuple(str(flat[f"s{i}_precision"]) for i in range(n)),
                kd_alpha=float(flat["kd_alpha"]),
                kd_temperature=float(flat["kd_temperature"]),
                finetune_steps=int(flat["finetune_steps"]),
                # runs written before these choices existed used the defaults
                calibration=str(flat.get("calibration", "minmax")),
                qat=_as_bool(flat.get("qat", False)),
            )
        except KeyError as exc:
            raise SpaceError(f"candidate is missing the choice {exc.args[0]!r}") from None

    def describe(self) -> str:
        """A compact one-line summary, e.g. ``r28 s16 | d2w24k5e4 ... | fp32 p0 | kd0.5/T4 ft100``."""
        arch = " ".join(
            f"d{s.depth}w{s.width}k{s.kernel}e{s.expand:g}" + ("se" if s.se else "")
            + ("hs" if s.act == "hswish" else "")
            for s in self.stages
        )
        comp = ",".join(f"{p}/{r:g}" for p, r in zip(self.precision, self.prune))
        quant = ""
        if "int8" in self.precision:
            quant = f" {self.calibration}" + (" qat" if self.qat else "")
        return (
            f"r{self.resolution} s{self.stem_width} | {arch} | {comp}{quant} | "
            f"kd{self.kd_alpha:g}/T{self.kd_temperature:g} ft{self.finetune_steps}"
        )


class SearchSpace:
    """A loaded, validated space. Build candidates from trials, pick extremes, hash it."""

    def __init__(self, model: SpaceModel, path: Path | None = None) -> None:
        self.model = model
        self.path = path

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def num_stages(self) -> int:
        return len(self.model.stages)

    def dimensions(self) -> dict[str, list[Any]]:
        """Every dimension of the space with its choices, in a fixed order."""
        m, c = self.model, self.model.compression
        dims: dict[str, list[Any]] = {
            "resolution": list(m.input.resolution),
            "stem_width": list(m.stem.width),
        }
        for i, st in enumerate(m.stages):
            dims[f"s{i}_depth"] = list(st.depth)
            dims[f"s{i}_width"] = list(st.width)
            dims[f"s{i}_kernel"] = list(st.kernel)
            dims[f"s{i}_expand"] = list(st.expand)
            dims[f"s{i}_se"] = list(st.se)
            dims[f"s{i}_act"] = list(st.act)
            dims[f"s{i}_prune"] = list(st.prune_ratio if st.prune_ratio is not None else c.prune_ratio)
            dims[f"s{i}_precision"] = list(st.precision if st.precision is not None else c.precision)
        dims["kd_alpha"] = list(c.kd_alpha)
        dims["kd_temperature"] = list(c.kd_temperature)
        dims["finetune_steps"] = list(c.finetune_steps)
        dims["calibration"] = list(c.calibration)
        dims["qat"] = list(c.qat)
        return dims

    def sample(self, trial: Any) -> Candidate:
        """Ask an Optuna trial for every dimension with more than one choice."""
        flat = {}
        for name, choices in self.dimensions().items():
            flat[name] = trial.suggest_categorical(name, choices) if len(choices) > 1 else choices[0]
        return Candidate.from_flat(flat)

    def fixed_params(self) -> dict[str, Any]:
        return {k: v[0] for k, v in self.dimensions().items() if len(v) == 1}

    def contains(self, cand: Candidate) -> bool:
        dims = self.dimensions()
        return all(v in dims.get(k, []) for k, v in cand.to_flat().items())

    def largest(self) -> Candidate:
        """The biggest architecture, uncompressed: the supernet's teacher."""
        return self._extreme(max)

    def smallest(self) -> Candidate:
        return self._extreme(min)

    def _extreme(self, pick: Any) -> Candidate:
        flat = {}
        for name, choices in self.dimensions().items():
            if name.endswith("_prune"):
                flat[name] = 0.0 if 0.0 in choices else min(choices)
            elif name.endswith("_precision"):
                flat[name] = "fp32" if "fp32" in choices else choices[0]
            elif name == "qat":
                flat[name] = False if False in choices else choices[0]
            elif name in ("kd_alpha", "kd_temperature", "finetune_steps", "calibration"):
                flat[name] = choices[0]
            elif name.endswith("_se"):  # the largest network has squeeze-excite, the smallest none
                flat[name] = pick(choices)
            elif name.endswith("_act"):  # hard-swish is the larger network's (MobileNetV3)
                want = "hswish" if pick is max else "relu"
                flat[name] = want if want in choices else choices[0]
            else:
                flat[name] = pick(choices)
        return Candidate.from_flat(flat)

    def random(self, rng: random.Random, *, architecture_only: bool = False) -> Candidate:
        """A uniformly random candidate. ``architecture_only``: compression choices take their
        first value and draw nothing from ``rng`` (supernet training: its weights then depend
        on the architecture dimensions only, as its cache key says)."""
        flat = {}
        for name, choices in self.dimensions().items():
            arch = name in ("resolution", "stem_width") or name.endswith(ARCH_SUFFIXES)
            flat[name] = rng.choice(choices) if arch or not architecture_only else choices[0]
        return Candidate.from_flat(flat)

    def size(self) -> int:
        n = 1
        for choices in self.dimensions().values():
            n *= len(choices)
        return n

    def arch_fingerprint(self) -> str:
        """Hash of what the supernet's weights depend on: architecture and training settings."""
        m = self.model
        payload = {
            "input": _without_defaults(m.input.model_dump(), _NEW_DEFAULTS),
            "stem": _without_defaults(m.stem.model_dump(), _NEW_DEFAULTS),
            "stages": [
                _without_defaults(
                    {k: v for k, v in s.model_dump().items() if k not in ("prune_ratio", "precision")},
                    _NEW_DEFAULTS,
                )
                for s in m.stages
            ],
            # fine-tune settings are per candidate: changing them must not retrain the supernet
            "training": _without_defaults(
                m.training.model_dump(exclude={"finetune_lr", "finetune_batch_size"}), _NEW_DEFAULTS
            ),
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return self.model.model_dump(mode="json")


# Fields added after supernets were first cached: left out of the fingerprint while they keep
# their default, so a space that does not use them keeps its cached supernet.
_NEW_DEFAULTS: dict[str, Any] = {"channels": 1, "act": ("relu", ["relu"]), "se": [False], "augment_kind": "auto",
                                 "largest_first_epochs": 0.0}


def _without_defaults(d: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    def is_default(k: str, v: Any) -> bool:
        want = defaults[k]
        return v in want if isinstance(want, tuple) else v == want

    return {k: v for k, v in d.items() if not (k in defaults and is_default(k, v))}


def resolve_space_path(spec: str | Path | None) -> Path:
    """A path, or the name of a shipped space (``tiny`` -> the shipped ``tiny.yaml``)."""
    if spec is None:
        return DEFAULT_SPACE
    path = Path(spec).expanduser()
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in str(spec):
        return path
    shipped = SPACES_DIR / f"{spec}.yaml"
    return shipped if shipped.exists() else path


def space_arg(path: str | Path) -> str:
    """The ``--space`` argument that names ``path``: a shipped space by its name (its installed
    path is long and changes with every install), any other by its path (quoted for a shell)."""
    p = Path(path)
    return p.stem if p.parent == SPACES_DIR and p.suffix == ".yaml" else shlex.quote(str(path))


def load_space(spec: str | Path | None = None) -> SearchSpace:
    """Load and validate a search space from YAML (safe loader only).

    Raises:
        SpaceError: naming the file and, for schema errors, the field that broke the rule.
    """
    path = resolve_space_path(spec)
    kind = path_kind(path)  # before opening: a FIFO would block, /dev/zero never end
    if kind is None:
        shipped = ", ".join(sorted(p.stem for p in SPACES_DIR.glob("*.yaml")))
        raise SpaceError(f"search space {path} does not exist (shipped spaces: {shipped})")
    if kind != "a file":
        raise SpaceError(f"search space {path} is {kind}, not a YAML file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SpaceError(f"search space {path} is not a text file (not UTF-8)") from None
    except OSError as exc:
        raise SpaceError(f"cannot read search space {path}: {exc.strerror or exc}") from None
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SpaceError(f"search space {path} is not valid YAML{yaml_problem(exc)}") from None
    return space_from_dict(raw, path=path)


def space_from_dict(raw: Any, *, path: Path | None = None, where: str | None = None) -> SearchSpace:
    """``raw`` as a space; its errors name ``where`` (default: ``path``, else "search space")."""
    where = where or (str(path) if path else "search space")
    if not isinstance(raw, dict):
        raise SpaceError(f"{where} must be a YAML mapping with keys name, input, stem, stages")
    try:
        return SearchSpace(SpaceModel.model_validate(raw), path=path)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SpaceError(f"{where}: {loc}: {msg}{more}") from None
