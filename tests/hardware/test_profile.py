from pathlib import Path

import numpy as np
import onnx

from autocompress.arch import BlockSpec
from autocompress.hardware.lut import BlockKey, load_table
from autocompress.hardware.profile import block_onnx, copies_onnx, profile_blocks, profile_space
from autocompress.runtime import runner

BLOCKS = [
    BlockSpec("stem", 16, 16, 1, 8, 3, 1, 1.0, "relu", -1),
    BlockSpec("mbconv", 16, 16, 8, 16, 3, 2, 2.0, "relu", 0),
    BlockSpec("head", 8, 8, 16, 10, 1, 1, 1.0, "none", 1),
]


def test_profile_measures_fp32_and_int8_blocks(tmp_path: Path) -> None:
    overhead, transition, rows = profile_blocks(BLOCKS, ["fp32", "int8"], reps=20, workdir=tmp_path)
    assert overhead > 0 and transition >= 0
    assert len(rows) == 6
    assert all(r.latency_ms > 0 and r.source == "measured" for r in rows)
    assert {r.key.precision for r in rows} == {"fp32", "int8"}


def _calib(spec: BlockSpec) -> np.ndarray:
    return np.abs(np.random.default_rng(0).standard_normal((8, spec.in_c, spec.in_h, spec.in_w), dtype=np.float32))


def test_copies_are_independent_so_no_runtime_merges_them(tmp_path: Path) -> None:
    """The slope method needs k real copies: identical weights would let ONNX Runtime's
    common-subexpression elimination fold them into one."""
    spec = BLOCKS[1]
    path = copies_onnx(block_onnx(spec, "fp32", tmp_path, "b", _calib(spec)), 4)
    graph = onnx.load(str(path)).graph
    assert len(graph.output) == 4
    assert sum(n.op_type == "Conv" for n in graph.node) == 4 * 3
    x = _calib(spec)[:1]
    outs = runner_all(path)(x)
    assert len(outs) == 4 and not np.allclose(outs[0], outs[1])
    assert outs[0].shape == (1, 16, 8, 8)


def test_int8_copies_share_the_input_quantization(tmp_path: Path) -> None:
    spec = BLOCKS[1]
    one = block_onnx(spec, "int8", tmp_path, "b", _calib(spec))
    many = onnx.load(str(copies_onnx(one, 4))).graph
    reads_input = [n for n in many.node if "input" in n.input]
    assert [n.op_type for n in reads_input] == ["QuantizeLinear"]
    convs = sum(n.op_type == "Conv" for n in many.node)
    assert convs == 4 * sum(n.op_type == "Conv" for n in onnx.load(str(one)).graph.node)


def runner_all(path: Path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"input": x})


def test_bigger_block_costs_more(tmp_path: Path) -> None:
    small = BlockSpec("mbconv", 14, 14, 16, 16, 3, 1, 2.0, "relu", 0)
    big = BlockSpec("mbconv", 14, 14, 96, 96, 5, 1, 4.0, "relu", 0)  # ~60x the MACs
    _, _, rows = profile_blocks([small, big], ["fp32"], reps=30, workdir=tmp_path)
    by = {r.key: r.latency_ms for r in rows}
    assert by[BlockKey.of(big, "fp32")] > 3 * by[BlockKey.of(small, "fp32")]


def micro_space():
    """The tiny space cut to one choice per dimension: a handful of blocks, quick to profile."""
    import yaml

    from autocompress.space import SPACES_DIR, space_from_dict

    raw = yaml.safe_load((SPACES_DIR / "tiny.yaml").read_text())
    raw["input"]["resolution"] = [12]
    for stage in raw["stages"]:
        for key in ("depth", "width", "kernel", "expand"):
            stage[key] = stage[key][:1]
    raw["compression"]["prune_ratio"] = [0.0]
    return space_from_dict(raw)


def test_profile_space_writes_a_loadable_measured_table(tmp_path: Path) -> None:
    space = micro_space()
    folder = tmp_path / "mine"
    table = profile_space(space, name="mine", precisions=["fp32"], folder=folder, reps=10, networks=0)
    loaded = load_table(folder)
    assert loaded.device.source == "measured" and loaded.device.host["threads"] == 1
    assert loaded.device.host["pinned_cpus"] == [], "not pinned unless asked"
    assert loaded.device.runtime == "onnxruntime" and loaded.device.runtime_version
    assert set(loaded.rows) == set(table.rows)
    assert all(k.precision == "fp32" for k in loaded.rows)
    # a second pass adding int8 keeps the fp32 rows (merge)
    assert loaded.device.scale("fp32") == 1.0
    profile_space(space, name="mine", precisions=["int8"], folder=folder, reps=10, pin=True, networks=3)
    merged = load_table(folder)
    assert {k.precision for k in merged.rows} == {"fp32", "int8"}
    assert merged.device.precisions == ["fp32", "int8"]
    assert len(merged.device.host["pinned_cpus"]) == 1, "pinned to one CPU per thread, and recorded"
    # whole networks timed end to end fit the factor on the sum of blocks, recorded with its source
    scales = merged.device.block_scale
    assert isinstance(scales, dict) and set(scales) == {"fp32", "int8"}
    assert all(0.5 <= v <= 2.0 for v in scales.values()) and scales != {"fp32": 1.0, "int8": 1.0}
    assert "fitted on" in merged.device.host["block_scale_fit"]
    assert isinstance(next(iter(merged.rows)), BlockKey)


def test_a_profile_interrupted_in_its_fit_leaves_the_table_as_it_was(tmp_path: Path, monkeypatch) -> None:
    """The fit of the block scale takes minutes after the rows are timed: Ctrl-C there once left a
    table with new rows and an unfitted scale that searches used."""
    import pytest

    from autocompress.hardware import profile as prof

    space = micro_space()
    folder = tmp_path / "mine"
    profile_space(space, name="mine", precisions=["fp32"], folder=folder, reps=10, networks=0)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prof, "fit_table_scale", interrupted)
    with pytest.raises(KeyboardInterrupt):
        profile_space(space, name="mine", precisions=["int8"], folder=folder, reps=10, networks=3)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no work folder left beside it


def test_openvino_runs_the_same_model_as_onnxruntime(tmp_path: Path) -> None:
    path = block_onnx(BLOCKS[1], "fp32", tmp_path, "b", _calib(BLOCKS[1]))
    x = np.random.default_rng(0).random((2, 8, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(runner(path, runtime="openvino")(x), runner(path)(x), rtol=1e-4, atol=1e-5)


def test_profile_with_openvino_writes_its_own_table(tmp_path: Path) -> None:
    folder = tmp_path / "ov"
    profile_space(micro_space(), precisions=["fp32", "int8"], folder=folder, reps=10, runtime="openvino", networks=0)
    table = load_table(folder)
    assert table.device.name == "x86-cpu-openvino" and table.device.runtime == "openvino"
    assert table.device.host["openvino"] == table.device.runtime_version
    assert {k.precision for k in table.rows} == {"fp32", "int8"}


def test_profiling_a_shipped_tables_name_says_it_now_takes_its_place(tmp_path: Path) -> None:
    """A table of the same name in the user's folder is searched first: --target NAME then prices
    with it alone (its one space's blocks), and the command says so."""
    from tests.helpers import cli

    proc = cli("profile", "--space", "tiny", "--precision", "fp32", "--reps", "5", "--passes", "1", "--networks", "0",
               "--out", str(tmp_path / "x86-cpu-onnxruntime"), env={"AUTOCOMPRESS_TABLES": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: --target x86-cpu-onnxruntime now reads this table, not" in proc.stdout
    assert "--name x86-cpu-onnxruntime --merge" in proc.stdout


def _table_of_another_machine(tmp_path: Path) -> Path:
    """A copy of the shipped CPU table whose device.yaml names a CPU this machine does not have."""
    import shutil

    import yaml

    from autocompress.hardware.targets import get_target

    folder = tmp_path / "cpu-elsewhere"
    shutil.copytree(get_target("x86-cpu-onnxruntime").folder, folder)
    doc = yaml.safe_load((folder / "device.yaml").read_text())
    doc["host"]["cpu"] = "Some Other CPU 9000"
    (folder / "device.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def test_profile_refuses_to_merge_rows_timed_here_into_another_machines_table(tmp_path: Path) -> None:
    """``autocompress profile --space tiny`` (default --merge) on the shipped table, profiled on
    another machine, once kept that machine's rows and relabelled the whole table as measured
    here: searches here then trusted them without re-calibration. Now: one line, exit 2, before
    any timing, and the table untouched."""
    from tests.helpers import assert_one_line_error, cli

    folder = _table_of_another_machine(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    proc = cli("profile", "--space", "tiny", "--networks", "0", "--out", str(folder), timeout=120)
    assert_one_line_error(proc, 2, "measured on another machine", "Some Other CPU 9000", "--replace",
                          "--name x86-cpu-onnxruntime-here")  # fmt: skip
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpu-elsewhere"]


def test_missing_only_refuses_another_machines_table(tmp_path: Path) -> None:
    """``profile --missing-only`` added rows timed here to a table whose device.yaml names another
    machine (its re-calibration then scaled them as that machine's)."""
    import pytest

    from autocompress.exceptions import BadInputError
    from autocompress.hardware.profile_add import profile_missing
    from autocompress.space import load_space

    folder = _table_of_another_machine(tmp_path)
    with pytest.raises(BadInputError, match="measured on another machine"):
        profile_missing(load_space("tiny"), folder, precisions=["fp32"], runtime="onnxruntime")


def test_the_command_a_search_suggests_for_another_machines_table_is_not_refused(tmp_path: Path) -> None:
    """A search on a table from another machine (--no-recalibrate) says how to measure this one;
    that command must replace the other machine's rows, not merge with them (refused)."""
    from autocompress.hardware.host_fit import other_machine_line
    from autocompress.hardware.lut import load_device
    from autocompress.space import load_space

    device = load_device(_table_of_another_machine(tmp_path) / "device.yaml")
    line = other_machine_line(device, load_space("tiny"), "--no-recalibrate")
    assert line.endswith("--name x86-cpu-onnxruntime --replace'"), line
