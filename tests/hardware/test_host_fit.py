"""A measured table from another machine is re-calibrated here before it prices anything (once per
host and table, then reused), or, where it may not be, one line says so and how to profile; and
validate-latency records its error band where the table's predictions on this machine live."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from autocompress.hardware.host_fit import HostFit, apply_cached, measured_here, on_this_host
from autocompress.hardware.lut import load_device
from autocompress.hardware.profile import profile_space
from autocompress.hardware.targets import Target
from autocompress.space import load_space
from tests.hardware.test_validate import small_space
from tests.helpers import cli


@pytest.fixture(scope="module")
def here_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny table profiled on this machine (its host is this one)."""
    root = tmp_path_factory.mktemp("here")
    folder = root / "tiny-cpu"
    profile_space(load_space(small_space(root)), name="tiny-cpu", precisions=["fp32", "int8"], folder=folder,
                  reps=10, passes=2, networks=0)  # fmt: skip
    return folder


@pytest.fixture()
def other_table(here_table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same table as if it had been profiled on another machine; a cache of this test's own."""
    monkeypatch.setenv("AUTOCOMPRESS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tables" / "tiny-cpu"
    shutil.copytree(here_table, folder)
    raw = yaml.safe_load((folder / "device.yaml").read_text())
    raw["host"]["cpu"] = "Some Other CPU @ 3.0GHz"
    (folder / "device.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def _target(folder: Path) -> Target:
    return Target(folder=folder, device=load_device(folder / "device.yaml"))


def test_a_table_from_another_host_is_recalibrated_once_and_the_fit_reused(other_table: Path) -> None:
    space = load_space(small_space(other_table.parent))
    first = on_this_host(_target(other_table), space, networks=2)
    assert first.fit is not None and not first.cached
    assert "re-calibrated to this one" in (first.line or "") and "Some Other CPU" in (first.line or "")
    fitted = first.target.device
    assert fitted.block_scale == first.fit.block_scale and set(first.fit.block_scale) == {"fp32", "int8"}
    assert fitted.int8_entry is not None and fitted.int8_exit is not None  # measured here, not the table's
    assert first.fit.networks["fp32"] >= 1 and first.fit.networks["int8"] >= 1
    assert first.fit.path().is_file()
    saved = json.loads(first.fit.path().read_text())
    assert saved["block_scale"] == first.fit.block_scale and saved["host"]["cpu"] != "Some Other CPU @ 3.0GHz"
    assert first.to_config()["status"] == "re-calibrated"
    # the next search on this host: the cached fit, nothing timed again
    again = on_this_host(_target(other_table), space, networks=2)
    assert again.cached and again.fit is not None and again.fit.block_scale == first.fit.block_scale
    assert "cached" in (again.line or "")
    # a Ray worker or a report rebuilding the target gets the same pricing
    assert apply_cached(_target(other_table)).device.block_scale == first.fit.block_scale
    # the table itself is untouched (it may be a read-only installed one)
    assert "Some Other CPU" in (other_table / "device.yaml").read_text()


def test_no_recalibrate_says_in_one_line_where_the_figures_come_from(other_table: Path) -> None:
    space = load_space(small_space(other_table.parent))
    target = _target(other_table)
    check = on_this_host(target, space, recalibrate=False)
    assert check.fit is None and check.target is target
    assert check.line is not None and "\n" not in check.line
    assert "another machine" in check.line and "autocompress profile --space" in check.line
    assert HostFit.load(target) is None  # nothing was fitted or cached


def test_a_table_measured_here_is_used_as_it_is(here_table: Path) -> None:
    target = _target(here_table)
    check = on_this_host(target, load_space(small_space(here_table.parent)))
    assert check.line is None and check.fit is None and check.target is target
    assert measured_here(target.device)
    # the same CPU model on a machine the table does not name (another VM of the same type) is another machine
    other = target.device.model_copy(update={"host": {**target.device.host, "machine": "0123456789ab"}})
    assert not measured_here(other)


def test_validate_latency_writes_the_error_band(here_table: Path, other_table: Path, tmp_path: Path) -> None:
    space = str(small_space(tmp_path))
    args = ("validate-latency", "--target", "tiny-cpu", "-n", "16", "--space", space, "--reps", "10", "--passes", "1",
            "--precision", "int8")  # fmt: skip
    # measured here: into the table's device.yaml, with this host
    here = tmp_path / "here-tables"
    shutil.copytree(here_table, here / "tiny-cpu")
    proc = cli(*args, "--out", str(tmp_path / "v1"), env={"AUTOCOMPRESS_TABLES": str(here)})
    assert proc.returncode == 0, proc.stderr
    band = load_device(here / "tiny-cpu" / "device.yaml").error_band["int8"]
    assert band.n == 16 and band.lo_pct <= band.hi_pct and "10" in band.within
    assert band.host["cpu"] == json.loads((tmp_path / "v1" / "validation.json").read_text())["summary"]["cpu"]
    assert "error band int8 recorded in" in proc.stdout
    # from another machine: re-calibrated (here with 2 networks per mode, to keep the test short;
    # the command finds that fit in the cache), the band kept with this host's fit
    import os

    on_this_host(_target(other_table), load_space(space), networks=2)
    env = {"AUTOCOMPRESS_TABLES": str(other_table.parent), "AUTOCOMPRESS_CACHE": os.environ["AUTOCOMPRESS_CACHE"]}
    proc = cli(*args, "--out", str(tmp_path / "v2"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "re-calibrated to this one" in proc.stdout and "cached" in proc.stdout
    fit = HostFit.load(_target(other_table))
    assert fit is not None and fit.error_band["int8"]["n"] == 16
    assert "after re-calibration" in fit.error_band["int8"]["basis"]
    assert load_device(other_table / "device.yaml").error_band == {}
    saved = json.loads((tmp_path / "v2" / "validation.json").read_text())
    assert saved["summary"]["host_fit"] == "re-calibrated (cached)" and saved["error_band"]["n"] == 16
    # fewer candidates: the validation is reported, its band is not recorded
    few = cli(*args[:4], "5", *args[5:], "--out", str(tmp_path / "v3"), env=env)
    assert few.returncode == 0 and "error band not recorded: 5 candidates are too few" in few.stdout
    assert HostFit.load(_target(other_table)).error_band["int8"]["n"] == 16


def test_a_fit_cached_by_an_older_re_calibration_is_not_reused(other_table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autocompress.hardware.host_fit as host_fit

    target = _target(other_table)
    now = host_fit.table_digest(target)
    monkeypatch.setattr(host_fit, "FIT_VERSION", host_fit.FIT_VERSION - 1)
    assert host_fit.table_digest(target) != now  # another cache file: the old fit is not found


def test_the_per_inference_overhead_is_refitted_with_enough_fp32_networks(other_table: Path) -> None:
    check = on_this_host(_target(other_table), load_space("tiny"), networks=6)
    assert check.fit is not None and check.fit.networks["fp32"] >= 6
    assert check.fit.overhead_ms is not None and check.fit.overhead_ms >= 0
    assert check.target.device.overhead_ms == check.fit.overhead_ms  # what prices the search
    assert f"overhead {1000 * check.fit.overhead_ms:.1f} us" in (check.line or "")


@pytest.mark.parametrize(("after", "warned"), [(4.0, False), (18.0, True)])
def test_a_fit_that_misses_its_own_networks_warns_that_the_timings_were_unsteady(after: float, warned: bool) -> None:
    fit = HostFit(target="x86-cpu-onnxruntime", digest="d", host={"cpu": "Here", "logical_cpus": 2, "machine": "m1"},
                  table_host={"cpu": "There", "logical_cpus": 2}, block_scale={"fp32": 0.9}, int8_entry=None,
                  int8_exit=None, networks={"fp32": 16}, before_mape_pct={"fp32": 28.0},
                  after_mape_pct={"fp32": after}, seconds=21.0, space="fashion_mnist", date="2026-12-03",
                  not_repeated=3 if warned else 0)  # fmt: skip
    line = fit.line()
    assert ("3 of 16 timings did not repeat within 5%" in line) is warned
    assert ("WARNING: the fit still misses its own reference networks by 18%" in line) is warned
    assert ("quiet machine" in line) is warned and line.count("\n") == 0
