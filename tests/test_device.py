"""``--device auto|cpu|cuda``: resolution, mixed precision only on CUDA, loader settings, the search
command on the CPU paths; the CUDA paths run where a GPU is (skipped here with the reason)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import yaml

from autocompress.compress import finetune, qat_finetune
from autocompress.device import amp_dtype, autocast, describe, grad_scaler, loader_kwargs, resolve_device
from autocompress.exceptions import BadInputError
from autocompress.supernet import recalibrate_bn
from tests.helpers import assert_one_line_error, cli, micro_space_text

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the error a machine without a GPU gives")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))  # fmt: skip


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=gen)
    x = torch.rand(n, 1, 12, 12, generator=gen) * 0.2 + y[:, None, None, None] * 0.2  # learnable classes
    return x, y


def test_auto_is_cuda_exactly_when_torch_sees_a_gpu() -> None:
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_unknown_device_names_the_choices() -> None:
    with pytest.raises(BadInputError, match="auto, cpu, cuda"):
        resolve_device("tpu")


@needs_no_cuda
def test_cuda_without_a_gpu_says_what_is_missing() -> None:
    with pytest.raises(BadInputError, match="no CUDA GPU is usable here"):
        resolve_device("cuda")
    with pytest.raises(BadInputError, match="--device cuda:1"):
        resolve_device("cuda:1")


def test_autocast_and_scaler_change_nothing_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    net, (x, _) = _net().eval(), _data(8)
    plain = net(x)
    with autocast(cpu):
        inside = net(x)
        assert not torch.is_autocast_enabled("cpu")
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)
    assert amp_dtype(cpu) is None
    scaler = grad_scaler(cpu)
    loss = plain.sum()
    assert not scaler.is_enabled() and scaler.scale(loss) is loss


def test_cpu_finetune_is_the_same_whatever_the_device_argument() -> None:
    x, y = _data()
    a = finetune(_net(), x, y, steps=5, batch_size=32, seed=1)
    b = finetune(_net(), x, y, steps=5, batch_size=32, seed=1, device="auto" if not HAS_CUDA else "cpu")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_loader_kwargs_per_device() -> None:
    cpu_small = loader_kwargs(torch.device("cpu"), cpus=2)
    assert cpu_small == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    cpu_big = loader_kwargs(torch.device("cpu"), cpus=16)
    assert cpu_big["num_workers"] == 2 and cpu_big["persistent_workers"] and not cpu_big["pin_memory"]
    gpu = loader_kwargs(torch.device("cuda"), cpus=16)
    assert gpu == {"num_workers": 8, "pin_memory": True, "persistent_workers": True}
    assert loader_kwargs(torch.device("cuda"), cpus=1)["num_workers"] == 1
    # the CPU settings make a working loader on this machine
    x, y = _data(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16,
                                         **loader_kwargs(torch.device("cpu")))  # fmt: skip
    assert sum(len(b[0]) for b in loader) == 64


def test_describe_records_the_request_and_what_it_became() -> None:
    assert describe("auto", torch.device("cpu")) == {"requested": "auto", "resolved": "cpu"}


@needs_no_cuda
def test_search_with_device_cuda_and_no_gpu_is_one_line_exit_2(tmp_path) -> None:
    proc = cli("search", "--space", "tiny", "--target", "cpu", "--budget", "1ms", "--device", "cuda",
               "--run-dir", str(tmp_path / "r"))  # fmt: skip
    assert_one_line_error(proc, 2, "--device cuda", "no CUDA GPU")
    assert not (tmp_path / "r").exists()


def test_search_bad_device_name_is_one_line_exit_2(tmp_path) -> None:
    proc = cli("search", "--space", "tiny", "--target", "cpu", "--budget", "1ms", "--device", "gpu0",
               "--run-dir", str(tmp_path / "r"))  # fmt: skip
    assert_one_line_error(proc, 2, "--device must be one of auto, cpu, cuda")


def test_search_on_cpu_records_the_device_and_resumes_with_another(tmp_path, fashion_dir) -> None:
    """A run trained with --device cpu records it; resuming it with --device auto (as on another
    machine) continues the same study and records what auto became."""
    space = tmp_path / "micro.yaml"
    space.write_text(micro_space_text())
    run_dir = tmp_path / "run"
    common = ["search", "--space", str(space), "--target", "cpu", "--budget", "1s", "--subset", "300",
              "--sampler", "random", "--run-dir", str(run_dir)]  # fmt: skip
    first = cli(*common, "--trials", "2", "--device", "cpu")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["device"] == {"requested": "cpu", "resolved": "cpu"}
    # trained here: the line names the device; another test may have cached the same supernet
    assert ("trained in" in first.stdout and " on cpu" in first.stdout) or "reused from cache" in first.stdout
    again = cli(*common, "--trials", "3", "--device", "auto", "--resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["device"]["requested"] == "auto"
    assert config["device"]["resolved"] == ("cuda:0" if HAS_CUDA else "cpu")
    import pandas as pd

    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 3


# --------------------------------------------------------------------------- CUDA only


@needs_cuda
def test_cuda_finetune_with_amp_learns_and_returns_a_cpu_model() -> None:
    x, y = _data()
    start = _net()
    before = (start.eval()(x).argmax(1) == y).float().mean().item()
    gpu = finetune(copy.deepcopy(start), x, y, steps=60, batch_size=32, seed=1, device="cuda")
    cpu = finetune(copy.deepcopy(start), x, y, steps=60, batch_size=32, seed=1, device="cpu")
    assert all(p.device.type == "cpu" for p in gpu.parameters())
    acc_gpu = (gpu(x).argmax(1) == y).float().mean().item()
    acc_cpu = (cpu(x).argmax(1) == y).float().mean().item()
    assert acc_gpu > before + 0.2  # it learned, in mixed precision
    assert abs(acc_gpu - acc_cpu) < 0.1  # and about as well as on the CPU
    assert amp_dtype(resolve_device("cuda")) in (torch.bfloat16, torch.float16)


@needs_cuda
def test_cuda_qat_and_bn_recalibration_come_back_to_the_cpu() -> None:
    x, y = _data()
    net = nn.Sequential(_net())
    recalibrate_bn(net, x, 2, 64, device="cuda")
    assert next(net.parameters()).device.type == "cpu"
    out = qat_finetune(net, ["0"], x, y, steps=10, teacher_logits=None, alpha=0.0, temperature=4.0, lr=0.01,
                       batch_size=32, seed=0, calibration=x[:64], inputs=True, device="cuda")  # fmt: skip
    assert all(t.device.type == "cpu" for t in out.state_dict().values())
    assert torch.isfinite(out(x)).all()
