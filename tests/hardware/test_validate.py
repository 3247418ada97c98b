"""validate-latency: random candidates built, timed on this machine, compared with the table."""

import json
from pathlib import Path

import numpy as np
import pytest

from autocompress.hardware.profile import profile_space
from autocompress.hardware.targets import Target, get_target
from autocompress.hardware.validate import candidates, validate_latency, write_validation
from autocompress.space import load_space
from tests.helpers import assert_one_line_error, cli


def small_space(tmp_path: Path) -> Path:
    """The tiny space without pruning and with one resolution, as a file the CLI can read."""
    import yaml

    from autocompress.space import SPACES_DIR

    raw = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    raw["input"]["resolution"] = [12]
    raw["compression"]["prune_ratio"] = [0.0]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tables")
    folder = root / "tiny-cpu"
    space = load_space(small_space(root))
    profile_space(space, name="tiny-cpu", precisions=["fp32", "int8"], folder=folder, reps=10, networks=0)
    return folder


def test_candidates_are_distinct_and_follow_the_precision_mode() -> None:
    space = load_space("fashion_mnist")
    fp32 = candidates(space, 20, "fp32", ["fp32", "int8"], seed=0)
    assert len(fp32) == 20 and len(set(fp32)) == 20
    assert all(set(c.precision) == {"fp32"} for c in fp32)
    assert all(set(c.precision) == {"int8"} for c in candidates(space, 5, "int8", ["fp32", "int8"], seed=0))
    assert candidates(space, 5, "mixed", ["fp32", "int8"], seed=3) == candidates(space, 5, "mixed", ["fp32", "int8"], seed=3)


def test_validation_compares_prediction_with_measurement(tiny_table: Path, tmp_path: Path) -> None:
    from autocompress.hardware.lut import load_device

    target = Target(folder=tiny_table, device=load_device(tiny_table / "device.yaml"))
    report = validate_latency(target, load_space(small_space(tiny_table.parent)), n=6, precision="mixed", reps=10)
    assert len(report.points) == 6
    for p in report.points:
        assert p.measured_ms > 0 and p.predicted_ms > 0 and p.interpolated_blocks == 0
        assert p.timed_passes >= report.passes  # more where its fastest pass was not repeated
    assert 0 <= report.within <= 1 and np.isfinite(report.mape) and -1 <= report.spearman <= 1
    paths = write_validation(report, tmp_path / "out")
    saved = json.loads(paths["json"].read_text())
    assert saved["summary"]["candidates"] == 6
    assert saved["summary"]["within_10pct"] == round(report.within, 4)
    assert len(saved["points"]) == 6
    assert saved["summary"]["not_repeated"] == sum(not p["repeated"] for p in saved["points"])
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    assert paths["csv"].read_text().count("\n") == 7


def test_cli_validate_latency_writes_results(tiny_table: Path, tmp_path: Path) -> None:
    proc = cli("validate-latency", "--target", "tiny-cpu", "-n", "4", "--space", str(small_space(tmp_path)), "--reps", "10",
               "--precision", "fp32", "--out", str(tmp_path / "v"), env={"AUTOCOMPRESS_TABLES": str(tiny_table.parent)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "within ±10%" in proc.stdout and "Spearman" in proc.stdout
    assert (tmp_path / "v" / "validation.png").is_file()


def test_estimated_tables_cannot_be_validated_here(tmp_path: Path) -> None:
    assert get_target("jetson").estimated
    proc = cli("validate-latency", "--target", "jetson", "-n", "5", "--out", str(tmp_path / "v"))
    assert_one_line_error(proc, 2, "estimated", "profile")
    assert not (tmp_path / "v").exists()


def test_bad_precision_mode_is_one_line(tmp_path: Path) -> None:
    proc = cli("validate-latency", "--target", "cpu", "-n", "5", "--precision", "int4", "--out", str(tmp_path / "v"))
    assert_one_line_error(proc, 2, "--precision")


def test_the_share_within_10pct_is_also_given_over_the_timings_that_repeated() -> None:
    from autocompress.hardware.validate import Point, Validation

    report = Validation(target="t", runtime="onnxruntime", runtime_version="1", table_cpu="c", cpu="c", threads=1,
                        precision="fp32", space="s", seed=0, reps=50, passes=3)  # fmt: skip
    for i, (predicted, measured, repeated) in enumerate([(1.0, 1.0, True), (1.1, 1.05, True), (0.98, 1.02, True),
                                                            (1.2, 1.8, False)]):  # fmt: skip
        report.points.append(Point(f"c{i}", "fp32", 1, predicted, measured, measured, measured, 0, 4, repeated))
    s = report.summary()
    assert s["within_10pct"] == 0.75  # the slow, unrepeated timing counts against the table...
    assert s["not_repeated"] == 1 and s["within_10pct_repeated"] == 1.0  # ...and is set apart here


def _report(pairs: list[tuple[float, float]]):
    from autocompress.hardware.validate import Point, Validation

    report = Validation(target="t", runtime="onnxruntime", runtime_version="1", table_cpu="c", cpu="c", threads=1,
                        precision="fp32", space="s", seed=0, reps=50, passes=3)  # fmt: skip
    for i, (predicted, measured) in enumerate(pairs):
        report.points.append(Point(f"c{i}", "fp32", 1, predicted, measured, measured, measured, 0, 3, True))
    return report


def test_a_shift_of_the_whole_level_is_told_apart_from_a_wrong_table() -> None:
    """A steady-day run on the Xeon VM: every network measured 7-14% slower than minutes
    earlier, the ranking intact. The user is told the level moved, not that the table is wrong."""
    truth = [0.02 + 0.001 * i for i in range(40)]
    shape = [1.0 + 0.06 * ((i * 7) % 5 - 2) / 2 for i in range(40)]  # the table's own misses: -6%..+6%
    slowed = _report([(t * s, t * 1.12) for t, s in zip(truth, shape, strict=True)])  # the machine 12% slower
    assert slowed.within < 0.5 and slowed.within_level_removed == 1.0
    note = slowed.level_shift_note()
    assert note and "about 11% slower than predicted (median) while the ranking held" in note and "100% are within" in note
    assert slowed.summary()["within_10pct_level_removed"] == 1.0
    steady = _report([(t * s, t) for t, s in zip(truth, shape, strict=True)])
    assert steady.level_shift_note() is None and steady.within == 1.0
    scrambled = _report([(t, truth[(i * 17) % 40] * 1.12) for i, t in enumerate(truth)])  # wrong in shape too
    assert scrambled.spearman < 0.98 and scrambled.level_shift_note() is None
