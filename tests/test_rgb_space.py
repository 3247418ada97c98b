"""The RGB space family (mobilenet_rgb): loads, builds, exports, is priced on every kind of
target, prices squeeze-excite and hard-swish, trains with photo augmentation, binds a budget."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.arch import all_blocks, block_precisions, plan, unpruned
from autocompress.data import augment_for, load_dataset, random_resized_crop
from autocompress.hardware.lut import BlockKey
from autocompress.hardware.predict import predict
from autocompress.hardware.targets import get_target
from autocompress.runtime import export_onnx
from autocompress.space import StageChoice, load_space, space_from_dict
from autocompress.supernet import Supernet, train_supernet
from tests.helpers import cli

TARGETS = ("jetson-orin-nano", "raspberry-pi-5", "x86-cpu-onnxruntime")


@pytest.fixture(scope="module")
def space():
    return load_space("mobilenet_rgb")


@pytest.fixture(scope="module")
def net(space):
    torch.manual_seed(0)
    return Supernet(space, 3, 10, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]).eval()


def _at96(cand):
    return replace(cand, resolution=96)


def _price(target: str, cand, space) -> tuple[float, int]:
    blocks = plan(cand, space, 3, 10)
    pred = predict(get_target(target).table, blocks, block_precisions(cand, space, blocks))
    return pred.latency_ms, pred.interpolated


def test_space_loads_as_an_rgb_mobilenet(space) -> None:
    m = space.model
    assert m.input.channels == 3 and min(m.input.resolution) <= 96 and max(m.input.resolution) >= 224
    assert 5 <= len(m.stages) <= 6
    assert max(m.stages[-1].width) >= 160 and m.stem.act == "hswish"
    dims = space.dimensions()
    assert any(dims[f"s{i}_se"] == [False, True] for i in range(len(m.stages)))
    assert any(dims[f"s{i}_act"] == ["relu", "hswish"] for i in range(len(m.stages)))
    assert dims["s3_prune"] == [0.0, 0.25, 0.5] and "int8" in dims["s3_precision"]
    # the largest network has squeeze-excite and hard-swish where offered, the smallest neither
    assert space.largest().stages[3].se and space.largest().stages[3].act == "hswish"
    assert not space.smallest().stages[3].se and space.smallest().stages[3].act == "relu"


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_subnet_forwards_exports_and_is_priced_everywhere(space, net, which, tmp_path) -> None:
    import onnxruntime as ort

    cand = _at96(getattr(space, which)())
    x = torch.rand(4, 3, 96, 96)
    sub = net.extract(cand).eval()
    with torch.no_grad():
        ref = net(x, cand)
        out = sub(x)
    assert out.shape == (4, 10) and torch.allclose(out, ref, atol=1e-4)
    path = export_onnx(sub, tmp_path / "m.onnx", channels=3, resolution=96)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, out.numpy(), atol=1e-3)
    if which == "largest":  # squeeze-excite and hard-swish survive the export as ONNX ops
        ops = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
        assert {"HardSwish", "HardSigmoid", "Mul"} <= ops
    for target in TARGETS:
        ms, interpolated = _price(target, cand, space)
        assert ms > 0
        assert interpolated == 0, f"{target} lacks rows for the {which} 96 px network"


def test_squeeze_excite_and_hardswish_change_the_price(space) -> None:
    base = _at96(space.smallest())
    stages = list(base.stages)
    with_se = replace(base, stages=tuple(replace(s, se=True) if i >= 2 else s for i, s in enumerate(stages)))
    with_hs = replace(base, stages=tuple(replace(s, act="hswish") if i >= 3 else s for i, s in enumerate(stages)))
    assert space.contains(with_se) and space.contains(with_hs)
    se_block = next(b for b in plan(with_se, space, 3, 10) if b.se)
    hs_block = next(b for b in plan(with_hs, space, 3, 10) if b.act == "hswish" and b.is_mbconv)
    plain = next(b for b in plan(base, space, 3, 10) if b.is_mbconv and b.stage == se_block.stage)
    # different table keys: a row of one never prices the other
    assert BlockKey.of(se_block, "fp32") != BlockKey.of(plain, "fp32")
    assert BlockKey.of(hs_block, "fp32") != BlockKey.of(replace(hs_block, act="relu"), "fp32")
    for target in TARGETS:
        plain_ms, _ = _price(target, base, space)
        se_ms, _ = _price(target, with_se, space)
        hs_ms, _ = _price(target, with_hs, space)
        assert se_ms > plain_ms * 1.02, f"{target}: squeeze-excite {se_ms:.4f} ms vs {plain_ms:.4f} ms"
        # every runtime here fuses hard-swish into the conv before it (ONNX Runtime's FusedConv,
        # TensorRT, OpenVINO): never cheaper than relu; the roofline charges its arithmetic, which
        # a memory-bound layer hides
        assert hs_ms >= plain_ms, f"{target}: hard-swish {hs_ms:.4f} ms cheaper than relu {plain_ms:.4f} ms"
    # measured on this machine's table: hard-swish blocks have their own, slower rows
    x86 = get_target("x86-cpu-onnxruntime").table
    hs_rows = [b for b in plan(with_hs, space, 3, 10) if b.act == "hswish" and b.is_mbconv]
    assert all(x86.get(BlockKey.of(b, "fp32")) is not None for b in hs_rows)
    assert _price("x86-cpu-onnxruntime", with_hs, space)[0] > _price("x86-cpu-onnxruntime", base, space)[0]
    # the roofline charges hard-swish where a layer is compute-bound
    from autocompress.hardware.roofline import block_latency_ms

    pi = get_target("raspberry-pi-5").device
    big = pi.roofline.model_copy(update={"memory_bandwidth_gbs": 1e6})  # a compute-bound device
    pi_fast_memory = pi.model_copy(update={"roofline": big})
    relu_block = replace(hs_block, act="relu")
    assert block_latency_ms(pi_fast_memory, hs_block, "fp32") > block_latency_ms(pi_fast_memory, relu_block, "fp32")


def test_pruning_a_squeeze_excite_subnet_matches_its_plan(space, net) -> None:
    from autocompress.compress.prune import geometry_mismatches, prune_subnet

    cand = _at96(space.largest())
    cand = replace(cand, resolution=64, prune=(0.0, 0.25, 0.5, 0.5, 0.25, 0.5))
    sub = net.extract(cand)
    prune_subnet(sub, cand, space)
    blocks = plan(cand, space, 3, 10)
    assert geometry_mismatches(sub, blocks) == []
    se = [b for b in blocks if b.se]
    assert se and all(b.hidden < plan(unpruned(cand), space, 3, 10)[i].hidden
                      for i, b in enumerate(blocks) if b.se and cand.prune[b.stage] > 0)  # fmt: skip
    with torch.no_grad():
        assert sub(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_grey_spaces_keep_their_networks_and_cache_keys() -> None:
    fm = load_space("fashion_mnist")
    assert all(d == [False] for k, d in fm.dimensions().items() if k.endswith("_se"))
    assert {b.op for b in all_blocks(fm, 1, 10)} == {"stem", "mbconv", "head"}
    assert {b.act for b in all_blocks(fm, 1, 10)} == {"relu", "none"}
    state = Supernet(fm, 1, 10, [0.5], [0.25]).state_dict()
    assert not any(".se." in k for k in state)
    # the supernet cache key ignores the new fields while they keep their defaults
    raw = fm.to_dict()
    plain = {k: v for k, v in raw.items()}
    plain["input"] = {"resolution": raw["input"]["resolution"]}
    plain["stem"] = {k: v for k, v in raw["stem"].items() if k != "act"}
    plain["stages"] = [{k: v for k, v in s.items() if k not in ("se", "act")} for s in raw["stages"]]
    assert space_from_dict(plain).arch_fingerprint() == fm.arch_fingerprint()
    changed = {**raw, "stages": [{**raw["stages"][0], "se": [False, True]}, *raw["stages"][1:]]}
    assert space_from_dict(changed).arch_fingerprint() != fm.arch_fingerprint()


def test_photo_augmentation_keeps_shape_and_is_random() -> None:
    x = torch.rand(8, 3, 48, 48)
    a = random_resized_crop(x, torch.Generator().manual_seed(1))
    b = random_resized_crop(x, torch.Generator().manual_seed(2))
    again = random_resized_crop(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.allclose(a, b) and torch.equal(a, again)
    assert not torch.allclose(a, x)
    # auto: crops for 3-channel images, the shift of the grey spaces for 1-channel ones
    grey = torch.rand(8, 1, 28, 28)
    g1 = augment_for(grey, torch.Generator().manual_seed(3), "auto")
    g2 = augment_for(grey, torch.Generator().manual_seed(3), "shift")
    assert torch.equal(g1, g2)
    assert torch.equal(augment_for(x, torch.Generator().manual_seed(1), "auto"), a)


def _tiny_rgb_space(augment: bool):
    d = load_space("mobilenet_rgb").to_dict()
    d["input"]["resolution"] = [32]
    d["stem"]["width"] = [8]
    d["stages"] = [
        {"depth": [1], "width": [8], "kernel": [3], "expand": [1], "stride": 1},
        {"depth": [1], "width": [16], "kernel": [3], "expand": [2], "stride": 2, "se": [False, True],
         "act": ["relu", "hswish"]},
    ]  # fmt: skip
    d["training"].update(epochs=2, batch_size=16, sandwich_random=1, augment=augment, recalib_batches=2)
    return space_from_dict(d)


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory, fashion_dir) -> Path:
    from benchmarks.rgb_folder import write_folder

    out = tmp_path_factory.mktemp("rgb") / "fashion_rgb"
    write_folder(out, 32, 3, data_dir=str(fashion_dir))
    return out


def test_rgb_folder_is_an_imagefolder_of_colour_images(rgb_folder) -> None:
    from PIL import Image

    classes = sorted(p.name for p in rgb_folder.iterdir())
    assert len(classes) == 10 and all(len(list((rgb_folder / c).glob("*.png"))) == 6 for c in classes)
    with Image.open(next((rgb_folder / classes[0]).glob("*.png"))) as img:
        assert img.mode == "RGB" and img.size == (32, 32)
    data = load_dataset(f"imagefolder:{rgb_folder}")
    assert data.channels == 3 and data.num_classes == 10 and data.image_size == 32
    # colourised: the three channels differ
    assert float((data.images[:, 0] - data.images[:, 1]).abs().mean()) > 0.01


def test_augmentation_is_random_in_training_only(rgb_folder) -> None:
    data = load_dataset(f"imagefolder:{rgb_folder}")
    plain, _ = train_supernet(_tiny_rgb_space(False), data, seed=0)
    augmented, _ = train_supernet(_tiny_rgb_space(True), data, seed=0)
    sp = _tiny_rgb_space(True)
    cand = sp.largest()
    x, _ = data.split("val", 32)
    w_plain = plain.stem.conv.weight
    assert not torch.allclose(w_plain, augmented.stem.conv.weight)  # training saw other images
    with torch.no_grad():  # evaluation is deterministic: no augmentation outside training
        assert torch.equal(augmented(x, cand), augmented(x, cand))


def test_space_command_shows_a_binding_range_on_jetson() -> None:
    proc = cli("space", "mobilenet_rgb", "--target", "jetson-orin-nano", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["channels"] == 3 and doc["estimated"] is True
    lo, hi = doc["range"]["min_ms"], doc["range"]["max_ms"]
    assert hi > 2 * lo  # a real range: budgets inside it trade accuracy for latency
    example = doc["range"]["binding_example_ms"]
    assert lo < example < hi
    proc = cli("space", "mobilenet_rgb", "--target", "jetson-orin-nano", "--budget", f"{example}ms", "--json")
    assert json.loads(proc.stdout)["budget"]["binds"] is True


def test_a_new_block_kind_is_estimated_on_every_estimated_target(space) -> None:
    """Generation covers the RGB space: every estimated table has rows for all its blocks."""
    from autocompress.hardware.targets import list_targets

    blocks = all_blocks(load_space("mobilenet_rgb"), 3, 10)
    for t in list_targets():
        if not t.estimated:
            continue
        missing = [b for b in blocks for p in t.device.precisions
                   if BlockKey.of(b, p, t.device.batch) not in t.table.rows]  # fmt: skip
        assert not missing, f"{t.name}: {len(missing)} blocks of mobilenet_rgb have no row"


def test_stage_choice_defaults_read_old_runs() -> None:
    from autocompress.space import Candidate

    sp = load_space("fashion_mnist")
    flat = sp.largest().to_flat()
    old = {k: v for k, v in flat.items() if not k.endswith(("_se", "_act"))}
    assert Candidate.from_flat(old) == sp.largest()
    assert sp.largest().stages[0] == StageChoice(2, 24, 5, 4.0)



def test_missing_only_profile_adds_rows_and_keeps_device_yaml(tmp_path) -> None:
    """``profile --missing-only``: the blocks a measured table lacks get measured rows, the rows it
    had and its device.yaml stay byte for byte."""
    import os
    import shutil

    import yaml

    from autocompress.hardware.host import cpu_model
    from autocompress.hardware.lut import load_table
    from autocompress.hardware.profile_add import missing_blocks, profile_missing

    folder = tmp_path / "x86"
    shutil.copytree(get_target("x86-cpu-onnxruntime").folder, folder)
    doc = yaml.safe_load((folder / "device.yaml").read_text())  # as profiled here (another machine's is refused)
    doc["host"].update(cpu=cpu_model(), logical_cpus=os.cpu_count())
    (folder / "device.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    device_before = (folder / "device.yaml").read_bytes()
    before = load_table(folder)
    d = load_space("mobilenet_rgb").to_dict()
    d["input"]["resolution"] = [12]
    d["stem"]["width"] = [8]
    d["stages"] = [{"depth": [1], "width": [8], "kernel": [3], "expand": [2], "stride": 1, "se": [True],
                    "act": ["hswish"]}]  # fmt: skip
    d["compression"]["prune_ratio"] = [0.0]
    micro = space_from_dict(d)
    todo = missing_blocks(before, micro, ["fp32"], 3, 10)
    assert {b.op for b, _ in todo} >= {"stem", "mbconv_se"}  # new kinds: no row yet
    table, added = profile_missing(micro, folder, precisions=["fp32"], runtime="onnxruntime", reps=5, passes=1,
                                   in_channels=3)  # fmt: skip
    assert added == len(todo)
    assert (folder / "device.yaml").read_bytes() == device_before
    after = load_table(folder)
    assert missing_blocks(after, micro, ["fp32"], 3, 10) == []
    assert all(after.rows[k] == r for k, r in before.rows.items())
    se_row = next(r for k, r in after.rows.items() if k.op == "mbconv_se")
    assert se_row.source == "measured" and se_row.latency_ms > 0
