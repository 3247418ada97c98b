"""Quantization-aware fine-tuning: fake-quantized weights on the int8 grid, and the evaluator
running QAT only when post-training quantization loses more than the space's threshold."""

from dataclasses import replace

import onnx
import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from autocompress.compress.qat import fake_quantized, qat_finetune
from autocompress.data import load_dataset
from autocompress.runtime import ort_accuracy
from autocompress.space import load_space, space_from_dict
from autocompress.supernet import extract_calibrated, load_or_train


@pytest.fixture(scope="module")
def trained(fashion_dir):
    space = load_space("tiny")
    data = load_dataset("fashion-mnist", subset=2000, seed=0)
    net, _, _ = load_or_train(space, data, seed=0)
    return space, data, net


def _on_int8_grid(w: torch.Tensor) -> bool:
    """Every output channel's weights are integer multiples of max|w|/127."""
    scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
    q = w / scale
    return bool(torch.allclose(q, q.round(), atol=1e-3)) and bool(q.abs().max() <= 127.001)


def test_fake_quantized_bakes_int8_weights_into_the_chosen_parts_only(trained) -> None:
    space, data, net = trained
    model = extract_calibrated(net, space.largest(), data)
    x = data.split("val", space.largest().resolution)[0][:32]
    with fake_quantized([model.stages[1]]) as quantizers:
        assert quantizers, "no activation fake-quant inserted"
        model(x)
        assert all(q.scale.item() > 0 for q in quantizers)  # the observers saw the data
    convs = dict(model.named_modules())
    for name, m in convs.items():
        if isinstance(m, nn.Conv2d):
            assert not parametrize.is_parametrized(m)
            assert _on_int8_grid(m.weight.detach()) == name.startswith("stages.1."), name
    assert all(not m._forward_hooks for m in model.modules())  # a plain float module again


@pytest.mark.slow
def test_qat_finetune_leaves_the_original_and_returns_an_int8_grid_model(trained) -> None:
    space, data, net = trained
    cand = space.largest()
    model = extract_calibrated(net, cand, data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data.split("train", cand.resolution)
    out = qat_finetune(model, ["stages.0", "stages.1"], x, y, steps=10, teacher_logits=None, alpha=0.0,
                       temperature=4.0, lr=0.005, batch_size=64, seed=0,
                       calibration=data.split("calib", cand.resolution)[0])  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for name, m in out.named_modules():
        if isinstance(m, nn.Conv2d) and name.startswith("stages."):
            assert _on_int8_grid(m.weight.detach()), name
    with torch.no_grad():
        assert out(x[:8]).shape == (8, 10)


def _qat_space(space, threshold: float):
    raw = space.to_dict()
    raw["compression"].update(qat=[False, True], qat_threshold_pp=threshold, qat_steps=20)
    return space_from_dict(raw)


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [-100.0, 100.0])
def test_evaluator_runs_qat_only_above_the_ptq_loss_threshold(trained, tmp_path, threshold) -> None:
    from autocompress.hardware.targets import get_target
    from autocompress.problems.supernet import SupernetProblem
    from autocompress.supernet import supernet_key

    space, data, net = trained
    qspace = _qat_space(space, threshold)
    ev = SupernetProblem.from_parts(space=qspace, data=data, supernet=net, target=get_target("jetson"), models_dir=tmp_path,
                   supernet_key=supernet_key(space, data, 0))  # fmt: skip
    cand = replace(qspace.largest(), precision=("int8", "int8"), qat=True, kd_alpha=0.5, finetune_steps=10)
    r = ev.evaluate(cand, 0)
    assert r.float_val_accuracy is not None and r.ptq_drop_pp is not None
    if threshold < 0:  # always: QAT ran, and its file is kept only if it scored better on val
        assert r.qat_val_accuracy is not None
        assert r.qat_applied == (r.qat_val_accuracy > r.float_val_accuracy - r.ptq_drop_pp / 100 + 1e-9)
    else:
        assert r.qat_val_accuracy is None and not r.qat_applied
    ops = {n.op_type for n in onnx.load(r.model_path).graph.node}
    assert "QuantizeLinear" in ops
    # what the trials table will hold is what ONNX Runtime measures on the deployed file
    assert ort_accuracy(r.model_path, *data.split("test", cand.resolution)) == r.test_accuracy
    assert ort_accuracy(r.model_path, *data.split("val", cand.resolution)) == r.val_accuracy
    assert [p.name for p in tmp_path.iterdir()] == ["trial_0000.onnx"]  # no temporary left behind


def test_fp32_candidates_record_no_quantization_columns(trained, tmp_path) -> None:
    from autocompress.hardware.targets import get_target
    from autocompress.problems.supernet import SupernetProblem
    from autocompress.supernet import supernet_key

    space, data, net = trained
    ev = SupernetProblem.from_parts(space=space, data=data, supernet=net, target=get_target("jetson"), models_dir=tmp_path,
                   supernet_key=supernet_key(space, data, 0))  # fmt: skip
    r = ev.evaluate(replace(space.smallest(), qat=True), 0)
    assert (r.float_val_accuracy, r.ptq_drop_pp, r.qat_val_accuracy, r.qat_applied) == (None, None, None, False)
