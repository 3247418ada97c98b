"""The finalize phase: long distillation fine-tune after the search, resumable, never worse on validation.

Fast tests: the epoch trainer resumes an interrupted training exactly where an uninterrupted one
would be; the picker spreads its choices along the front. The end-to-end test (slow) runs a tiny
search with ``--finalize 0`` (today's behaviour: nothing finalized), then ``autocompress
finalize`` in a subprocess killed with SIGKILL mid-way, then again: finished candidates are not
redone, the interrupted one resumes from its checkpoint, no file is half-written, what is
deployed is never worse on validation than the search's, and export ships the finalized file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn as nn
import yaml

from autocompress.compress.longtrain import distill_epochs, steps_per_epoch
from autocompress.schedule import FinalizeSpec
from autocompress.search.finalize import pick
from tests.helpers import ROOT, cli, tiny_mid_budget_us

SPEC = FinalizeSpec(epochs=3, lr=0.05, batch_size=32, kd_alpha=0.5)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))  # fmt: skip


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(100, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) * 3).long().clamp(0, 2)
    return x, y, torch.randn(100, 3, generator=g)


class _Killed(Exception):
    pass


def test_an_interrupted_training_resumes_from_its_last_epoch_to_the_same_weights(tmp_path: Path) -> None:
    x, y, teacher = _data()
    whole, start = distill_epochs(_net(), x, y, spec=SPEC, teacher_logits=teacher, seed=3)
    assert start == 0
    ckpt = tmp_path / "c.pt"
    per_epoch = steps_per_epoch(len(x), SPEC)

    def die(done: int, total: int) -> None:  # killed in the middle of the third epoch
        if done == 2 * per_epoch + 1:
            raise _Killed

    with pytest.raises(_Killed):
        distill_epochs(_net(), x, y, spec=SPEC, teacher_logits=teacher, seed=3, checkpoint=ckpt, on_step=die)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    steps: list[int] = []
    resumed, start = distill_epochs(_net(), x, y, spec=SPEC, teacher_logits=teacher, seed=3, checkpoint=ckpt,
                                    on_step=lambda d, t: steps.append(d))  # fmt: skip
    assert start == 2 and steps[0] == 2 * per_epoch + 1 and steps[-1] == 3 * per_epoch
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
    # and the training did something: the weights moved away from the initial ones
    assert any(not torch.equal(a, b) for a, b in zip(_net().state_dict().values(), whole.state_dict().values()))


def test_picks_spread_along_the_front_from_fastest_to_most_accurate() -> None:
    rows = [(0, 0.92, 5.0, "largest")] + [(n, 0.80 + 0.01 * n, 0.5 * n, None) for n in range(1, 8)]
    trials = pd.DataFrame([{"number": n, "state": "COMPLETE", "val_accuracy": a, "latency_ms": ms, "size_bytes": 1000,
                            "feasible": True, "pareto": True, "seeded": s} for n, a, ms, s in rows])  # fmt: skip
    assert pick(trials, 3, window_pp=20) == [1, 4, 7]  # both ends and the middle; the teacher apart
    assert pick(trials, 1, window_pp=20) == [7]  # the most accurate
    assert pick(trials, 10, window_pp=20) == [1, 2, 3, 4, 5, 6, 7]
    assert pick(trials, 3, window_pp=10) == [2, 4, 7]  # far-below points (more than 10 pp) are not


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def unfinalized(tmp_path_factory, fashion_dir) -> Path:
    """A tiny search (the e2e tests' subset and seed: one supernet per session) with --finalize 0."""
    run_dir = tmp_path_factory.mktemp("fin") / "tiny"
    proc = cli("search", "--space", "tiny", "--target", "cpu", "--budget", f"{tiny_mid_budget_us():.1f}us",
               "--subset", "1500", "--trials", "6", "--sampler", "random", "--run-dir", str(run_dir),
               "--finalize", "0", timeout=1800)  # fmt: skip  (a shared 2-core machine is slow)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


@pytest.mark.e2e
@pytest.mark.slow
def test_finalize_0_leaves_the_search_as_it_was(unfinalized: Path) -> None:
    trials = pd.read_parquet(unfinalized / "trials.parquet")
    assert not any(c.startswith(("final_", "search_")) for c in trials.columns)
    assert not (unfinalized / "finalize").exists() and not list((unfinalized / "models").glob("final_*"))
    assert "finalize" not in yaml.safe_load((unfinalized / "config.yaml").read_text())
    assert "Finalized" not in (unfinalized / "report.md").read_text()


@pytest.mark.e2e
@pytest.mark.slow
def test_finalize_survives_kill_9_and_never_deploys_worse(unfinalized: Path, tmp_path: Path) -> None:
    run_dir = unfinalized
    fin = run_dir / "finalize"
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "autocompress", "finalize", str(run_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip

    def teacher_done() -> bool:
        try:
            return json.loads((fin / "trial_0000.json").read_text())["state"] in ("finalized", "kept")
        except (OSError, ValueError, KeyError):
            return False

    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if teacher_done() and list(fin.glob("trial_*.pt")):  # the next one is between two epochs
            break
        time.sleep(0.02)
    assert proc.poll() is None, "finalize ended before it could be killed mid-way:\n" + proc.communicate()[0][-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    teacher_state = (fin / "trial_0000.json").read_text()
    for path in fin.glob("trial_*.json"):  # whole files only: each parses
        json.loads(path.read_text())
    pd.read_parquet(run_dir / "trials.parquet")

    again = cli("finalize", str(run_dir), timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "already finished, skipped" in again.stdout
    assert "resumed at epoch 1" in again.stdout
    assert (fin / "trial_0000.json").read_text() == teacher_state  # the finished teacher was not redone
    assert not list(run_dir.rglob("*.tmp")) and not list(fin.glob("*.pt"))

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["finalize"]["state"] == "done"
    plan = [p["trial"] for p in config["finalize"]["plan"]]
    assert plan[0] == 0 and len(plan) >= 2  # the teacher, then the chosen candidates
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("number")
    done = trials.loc[plan]
    assert set(done["final_state"]) <= {"finalized", "kept"}
    # never worse on validation than what the search deployed; a finalized file is better
    assert (done["val_accuracy"] >= done["search_val_accuracy"]).all()
    better = done[done["final_state"] == "finalized"]
    assert (better["final_val_accuracy"] > better["search_val_accuracy"]).all()
    assert (better["val_accuracy"] == better["final_val_accuracy"]).all()
    kept = done[done["final_state"] == "kept"]
    assert (kept["val_accuracy"] == kept["search_val_accuracy"]).all()
    assert not better.empty, "no candidate improved: " + done[["search_val_accuracy", "final_val_accuracy"]].to_string()
    assert "## Finalized" in (run_dir / "report.md").read_text()

    # export ships the finalized file and reproduces the table's finalized accuracy
    number = int(better.index[0])
    out = tmp_path / "exp"
    exp = cli("export", str(run_dir), "--trial", str(number), "--out", str(out))
    assert exp.returncode == 0, exp.stdout[-2000:] + exp.stderr[-2000:]
    card = json.loads((out / "model_card.json").read_text())
    assert card["accuracy"]["test"] == pytest.approx(float(better.loc[number, "final_test_accuracy"]), abs=1e-12)
    assert card["finalize"]["deployed"] == "finalized"
    assert (out / f"trial_{number:04d}.onnx").read_bytes() == (run_dir / "models" / f"final_{number:04d}.onnx").read_bytes()
    assert "**finalized**" in (out / "model_card.md").read_text()


@pytest.mark.e2e
@pytest.mark.slow
def test_a_plain_rerun_finishes_the_candidate_an_interrupted_finalize_left(unfinalized: Path, tmp_path: Path) -> None:
    """``finalize RUN --trials N`` stopped mid-way, then ``finalize RUN``: trial N is finished, not
    left "running" in its state file, the trials table and the report."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(unfinalized, run_dir)
    fin = run_dir / "finalize"
    fin.mkdir(exist_ok=True)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    trials = pd.read_parquet(run_dir / "trials.parquet")
    planned = {p["trial"] for p in (config.get("finalize") or {}).get("plan", [])}
    others = [int(n) for n, s, seeded in zip(trials["number"], trials["state"], trials["seeded"])
              if s == "COMPLETE" and seeded != "largest" and int(n) not in planned]  # fmt: skip
    assert others, "every completed trial was finalized already"
    number = others[0]
    teacher = json.loads((fin / "trial_0000.json").read_text()) if (fin / "trial_0000.json").is_file() else None
    schedule = teacher["schedule"] if teacher else None
    if schedule is None:  # the teacher was never finalized: the space's schedule, as finalize records it
        from autocompress.space import load_space

        spec = load_space("tiny").model.finalize
        schedule = spec.model_dump(mode="json", exclude={"top"})
    (fin / f"trial_{number:04d}.json").write_text(json.dumps(
        {"number": number, "role": "candidate", "state": "running", "schedule": schedule}))  # fmt: skip
    config["finalize"] = {**(config.get("finalize") or {}), "state": "running", "requested": [number]}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    again = cli("finalize", str(run_dir), timeout=1800)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    state = json.loads((fin / f"trial_{number:04d}.json").read_text())
    assert state["state"] in ("finalized", "kept")
    after = pd.read_parquet(run_dir / "trials.parquet").set_index("number")
    assert after.loc[number, "final_state"] in ("finalized", "kept")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["finalize"]["state"] == "done"
