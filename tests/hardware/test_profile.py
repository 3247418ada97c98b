from pathlib import Path

from autocompress.arch import BlockSpec
from autocompress.hardware.lut import BlockKey, load_table
from autocompress.hardware.profile import profile_blocks, profile_space
from autocompress.space import load_space


def test_profile_measures_fp32_and_int8_blocks(tmp_path: Path) -> None:
    blocks = [
        BlockSpec("stem", 16, 16, 1, 8, 3, 1, 1.0, "relu", -1),
        BlockSpec("mbconv", 16, 16, 8, 16, 3, 2, 2.0, "relu", 0),
        BlockSpec("head", 8, 8, 16, 10, 1, 1, 1.0, "none", 1),
    ]
    overhead, rows = profile_blocks(blocks, ["fp32", "int8"], reps=20, workdir=tmp_path)
    assert overhead > 0
    assert len(rows) == 6
    assert all(r.latency_ms > 0 and r.source == "measured" for r in rows)
    assert {r.key.precision for r in rows} == {"fp32", "int8"}


def test_profile_space_writes_a_loadable_measured_table(tmp_path: Path) -> None:
    space = load_space("tiny")
    folder = tmp_path / "mine"
    table = profile_space(space, name="mine", precisions=["fp32"], folder=folder, reps=10)
    loaded = load_table(folder)
    assert loaded.device.source == "measured" and loaded.device.host["threads"] == 1
    assert loaded.device.runtime == "onnxruntime" and loaded.device.runtime_version
    assert set(loaded.rows) == set(table.rows)
    assert all(k.precision == "fp32" for k in loaded.rows)
    # a second pass adding int8 keeps the fp32 rows (merge)
    profile_space(space, name="mine", precisions=["int8"], folder=folder, reps=10)
    merged = load_table(folder)
    assert {k.precision for k in merged.rows} == {"fp32", "int8"}
    assert merged.device.precisions == ["fp32", "int8"]
    assert isinstance(next(iter(merged.rows)), BlockKey)
