"""The GPU checks, in one run of about 10 minutes on a machine with an NVIDIA GPU.

    OUT=/some/folder python benchmarks/gpu_check.py     # from the repository root

1. environment: torch, CUDA, the GPU, TensorRT (if importable);
2. one supernet epoch of the default space (``fashion_mnist``; 422 steps of 128 images, one
   Fashion-MNIST epoch) with ``device="cuda"`` (bf16/fp16 autocast) and with ``device="cpu"``;
   Fashion-MNIST when it is on the machine, else scikit-learn's digits for as many steps (the
   step's cost depends on the network and the resolution, not on the pictures);
3. ``autocompress search --device cuda`` on the tiny space, one trial (and the same on the CPU);
4. with TensorRT: ``autocompress profile --runtime tensorrt`` of the tiny space (fp32, fp16,
   int8) into ``$OUT/tables/gpu-tensorrt``, then ``validate-latency -n 100`` of that table.

Every step has a time cap and all of them stop within ``GPU_CHECK_BUDGET_S`` (560 s by
default), so a device command of 600 s returns. Writes ``$OUT/gpu_check.json`` after every step (a step cut short by its time limit leaves what
the earlier ones measured), and each command's output in ``$OUT/logs/``. Every number in it is
measured on the machine it ran on; nothing is estimated.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = Path(os.environ.get("OUT") or ROOT / "runs" / "gpu_check")
LOGS = OUT / "logs"
FASHION_EPOCH_STEPS = math.ceil(53_976 / 128)  # train split of Fashion-MNIST at batch 128
RESULTS: dict[str, object] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
BUDGET_S = float(os.environ.get("GPU_CHECK_BUDGET_S", 560))  # every step stops by then
START = time.monotonic()


def left(cap: float) -> float:
    """Seconds a step may take: its own cap, or what is left of the budget (at least 5)."""
    return max(5.0, min(cap, BUDGET_S - (time.monotonic() - START)))


def save() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(RESULTS, indent=2, default=str) + "\n")
    tmp.replace(OUT / "gpu_check.json")


def step(name: str):  # noqa: ANN201 - a decorator
    def wrap(fn):  # noqa: ANN001, ANN202
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            print(f"== {name}", flush=True)
            t0 = time.perf_counter()
            try:
                RESULTS[name] = {**(fn(*args, **kwargs) or {}), "step_seconds": round(time.perf_counter() - t0, 1)}
            except Exception as exc:  # noqa: BLE001 - record it, go on with the next check
                RESULTS[name] = {"error": f"{type(exc).__name__}: {exc}", "step_seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(RESULTS[name], default=str), flush=True)
            save()

        return run

    return wrap


def run(log: str, argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``python argv`` from the repository root, at most ``timeout`` seconds (and never past
    the budget); its output goes to ``$OUT/logs/<log>.log``."""
    LOGS.mkdir(parents=True, exist_ok=True)
    timeout = left(timeout)
    t0 = time.perf_counter()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})}
    try:
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=full_env)  # fmt: skip
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        stdout = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        code, stderr = "timeout", f"stopped after {timeout:.0f} s"
    (LOGS / f"{log}.log").write_text(f"$ python {' '.join(argv)}\n{stdout}\n--- stderr\n{stderr}\n")
    return {"command": " ".join(argv), "exit": code, "wall_s": round(time.perf_counter() - t0, 1),
            "stdout_tail": stdout[-400:], "stderr_tail": stderr[-600:]}  # fmt: skip


def cli(log: str, *args: str, timeout: float, env: dict[str, str] | None = None) -> dict[str, object]:
    return run(log, ["-m", "autocompress", *args], timeout=timeout, env=env)


@step("environment")
def environment() -> dict[str, object]:
    import torch

    info: dict[str, object] = {"python": platform.python_version(), "torch": torch.__version__,
                               "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                               "cpus": len(os.sched_getaffinity(0))}  # fmt: skip
    if torch.cuda.is_available():
        from autocompress.device import amp_dtype

        info["gpu"] = torch.cuda.get_device_name(0)
        info["amp_dtype"] = str(amp_dtype(torch.device("cuda")))
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def _data():  # noqa: ANN202
    from autocompress.data import load_dataset
    from autocompress.data_files import find_fashion_mnist

    spec = "fashion-mnist" if find_fashion_mnist() is not None else "digits"
    return spec, load_dataset(spec, seed=0)


def epoch(device: str) -> None:
    """One supernet epoch on ``device`` (run in its own process by the step below): prints JSON."""
    import torch
    import yaml

    from autocompress.space import load_space
    from autocompress.supernet import train_supernet

    spec, data = _data()
    n_train = data.split("train")[0].shape[0]
    raw = yaml.safe_load((ROOT / "search_spaces" / "fashion_mnist.yaml").read_text())
    raw["training"]["epochs"] = FASHION_EPOCH_STEPS * raw["training"]["batch_size"] / n_train
    path = OUT / "fashion_mnist_one_epoch.yaml"
    path.write_text(yaml.safe_dump(raw))
    if device == "cuda":  # CUDA context and cuDNN start-up outside the timed epoch
        torch.zeros(1, device="cuda").sum().item()
    _, report = train_supernet(load_space(str(path)), data, seed=0, device=device)
    print(json.dumps({"data": spec, "train_images": n_train, "steps": report.steps,
                      "train_seconds": report.train_seconds, "largest_test_acc": report.largest_test_acc,
                      "smallest_test_acc": report.smallest_test_acc, "threads": torch.get_num_threads()}))  # fmt: skip


@step("supernet_epoch")
def supernet_epoch() -> dict[str, object]:
    out: dict[str, object] = {}
    for device, cap in (("cuda", 120), ("cpu", 150)):
        res = run(f"epoch-{device}", [str(Path(__file__).resolve()), "--epoch", device], timeout=cap)
        lines = str(res["stdout_tail"]).strip().splitlines()
        out[device] = json.loads(lines[-1]) if res["exit"] == 0 and lines else res
    cpu, gpu = out["cpu"], out["cuda"]
    if isinstance(cpu, dict) and isinstance(gpu, dict) and "train_seconds" in cpu and "train_seconds" in gpu:
        out["speedup_cuda_over_cpu"] = round(cpu["train_seconds"] / gpu["train_seconds"], 2)
    return out


@step("search_trial")
def search_trial() -> dict[str, object]:
    import pandas as pd

    spec, _ = _data()
    out: dict[str, object] = {"data": spec}
    for device in ("cuda", "cpu"):
        run = OUT / f"search-{device}"
        res = cli(f"search-{device}", "search", "--space", "tiny", "--target", "cpu", "--budget", "1s",
                  "--trials", "1", "--sampler", "random", "--dataset", spec, "--device", device,
                  "--run-dir", str(run), "--retrain-supernet", timeout=90)  # fmt: skip
        if (run / "trials.parquet").is_file():
            t = pd.read_parquet(run / "trials.parquet").iloc[0]
            res.update(val_accuracy=float(t["val_accuracy"]), finetune_s=float(t["finetune_s"]),
                       eval_s=float(t["eval_s"]), candidate=str(t["candidate"]))  # fmt: skip
        if (run / "config.yaml").is_file():
            import yaml

            cfg = yaml.safe_load((run / "config.yaml").read_text())
            res.update(device_recorded=cfg.get("device"), supernet_train_seconds=cfg["supernet"]["train_seconds"])
        out[device] = res
    return out


@step("tensorrt_profile")
def tensorrt_profile() -> dict[str, object]:
    if RESULTS["environment"].get("tensorrt") is None:  # type: ignore[union-attr]
        return {"skipped": "tensorrt is not importable"}
    res = cli("profile-tensorrt", "profile", "--space", "tiny", "--runtime", "tensorrt", "--name", "gpu-tensorrt",
              "--out", str(OUT / "tables" / "gpu-tensorrt"), "--reps", "30", "--passes", "1", "--networks", "8",
              timeout=240)  # fmt: skip
    device = OUT / "tables" / "gpu-tensorrt" / "device.yaml"
    if device.is_file():
        import yaml

        d = yaml.safe_load(device.read_text())
        res.update(runtime=f"{d['runtime']} {d['runtime_version']}", host=d["host"], overhead_ms=d["overhead_ms"],
                   block_scale=d.get("block_scale"), rows=(device.parent / "blocks.csv").read_text().count("\n") - 1)  # fmt: skip
    return res


@step("tensorrt_validate")
def tensorrt_validate() -> dict[str, object]:
    if not (OUT / "tables" / "gpu-tensorrt" / "device.yaml").is_file():
        return {"skipped": "no TensorRT table was written"}
    res = cli("validate-tensorrt", "validate-latency", "--target", "gpu-tensorrt", "--space", "tiny", "-n", "100",
              "--reps", "30", "--passes", "1", "--out", str(OUT / "validate-tensorrt"),
              timeout=150, env={"AUTOCOMPRESS_TABLES": str(OUT / "tables")})  # fmt: skip
    summary = OUT / "validate-tensorrt" / "validation.json"
    if summary.is_file():
        res["summary"] = json.loads(summary.read_text())["summary"]
    return res


def main() -> None:
    os.environ.setdefault("AUTOCOMPRESS_CACHE", str(OUT / "cache"))  # never reuse another run's supernet
    environment()
    if not RESULTS["environment"].get("cuda_available"):  # type: ignore[union-attr]
        print("torch sees no CUDA GPU: nothing else to check here", file=sys.stderr)
        sys.exit(2)
    supernet_epoch()
    search_trial()
    tensorrt_profile()
    tensorrt_validate()
    RESULTS["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    print(f"wrote {OUT / 'gpu_check.json'}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--epoch":
        epoch(sys.argv[2])
    else:
        main()
