import logging
import shutil
from pathlib import Path

import pytest

from autocompress.arch import BlockSpec
from autocompress.exceptions import TargetError
from autocompress.hardware.lut import BlockKey, load_table
from autocompress.hardware.predict import predict
from autocompress.hardware.targets import get_target


@pytest.fixture
def table_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "x86"
    shutil.copytree(get_target("cpu").folder, dst)
    return dst


def test_exact_lookup(table_copy: Path) -> None:
    table = load_table(table_copy)
    key, row = next(iter(table.rows.items()))
    assert table.get(key) is row and row.latency_ms > 0


def test_missing_block_is_interpolated_with_a_warning_never_zero(table_copy: Path, caplog) -> None:
    table = load_table(table_copy)
    # a width no shipped space has
    blocks = [
        BlockSpec("stem", 28, 28, 1, 16, 3, 2, 1.0, "relu", -1),
        BlockSpec("mbconv", 14, 14, 16, 40, 3, 2, 3.0, "relu", 0),
        BlockSpec("head", 7, 7, 40, 10, 1, 1, 1.0, "none", 1),
    ]
    assert table.get(BlockKey.of(blocks[1], "fp32")) is None
    with caplog.at_level(logging.WARNING):
        pred = predict(table, blocks, ["fp32"] * 3)
    assert pred.interpolated >= 1
    assert "interpolated" in caplog.text
    mid = [c for c in pred.breakdown if c.interpolated][0]
    assert mid.latency_ms > 0
    # more channels than any neighbour -> not cheaper than a smaller measured block
    smaller = table.get(BlockKey.of(BlockSpec("mbconv", 14, 14, 16, 24, 3, 1, 2.0, "relu", 0), "fp32"))
    if smaller is not None:
        assert mid.latency_ms > 0.5 * smaller.latency_ms


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("latency_ms", "latency", 1), "header must be"),
        (lambda t: t + "mbconv,14,14,16,16,3,1,2,relu,fp32,1,abc,0,,measured\n", r"row \d+, column latency_ms: 'abc' is not a number"),
        (lambda t: t + "conv9,14,14,16,16,3,1,2,relu,fp32,1,0.1,0,,measured\n", r"row \d+, column op"),
        (lambda t: t + "mbconv,14,14,16,16,3,1,2,relu,fp64,1,0.1,0,,measured\n", r"row \d+, column precision"),
        (lambda t: t + "mbconv,14,14,16,16,3,1,2,relu,fp32,1,-1,0,,measured\n", r"row \d+, column latency_ms"),
        (lambda t: t + "mbconv,14,14,16\n", r"row \d+ has 4 columns"),
        (lambda t: t.splitlines()[0] + "\n", "has no rows"),
    ],
)
def test_corrupt_table_names_file_row_and_column(table_copy: Path, edit, message: str) -> None:
    csv_path = table_copy / "blocks.csv"
    csv_path.write_text(edit(csv_path.read_text()))
    with pytest.raises(TargetError, match=message):
        load_table(table_copy)


def test_bad_device_yaml(table_copy: Path) -> None:
    (table_copy / "device.yaml").write_text("name: x\nsource: guessed\n")
    with pytest.raises(TargetError, match="device.yaml: field"):
        load_table(table_copy)
    (table_copy / "device.yaml").unlink()
    with pytest.raises(TargetError, match="has no device.yaml"):
        load_table(table_copy)


def test_a_fifo_in_a_table_folder_is_refused_not_read(tmp_path) -> None:
    """A table file that is a FIFO (or a device) would block every command that loads the
    table: it is named in one line instead, and never opened."""
    import os
    import shutil

    from autocompress.exceptions import TargetError
    from autocompress.hardware.lut import load_device, load_table
    from autocompress.hardware.targets import get_target

    folder = tmp_path / "fifo-target"
    shutil.copytree(get_target("cpu").folder, folder)
    (folder / "blocks.csv").unlink()
    os.mkfifo(folder / "blocks.csv")
    with pytest.raises(TargetError, match="blocks.csv is a FIFO"):
        load_table(folder)
    (folder / "device.yaml").unlink()
    os.mkfifo(folder / "device.yaml")
    with pytest.raises(TargetError, match="device.yaml is a FIFO"):
        load_device(folder / "device.yaml")
