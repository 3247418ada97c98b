"""End to end: the `autocompress search` command on the tiny space and a Fashion-MNIST subset."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from autocompress.data import load_dataset
from autocompress.runtime import ort_accuracy
from tests.helpers import ROOT, cli, slow_tiny_space, tiny_mid_budget_us

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SUBSET = "1500"


def _search(run_dir: Path, *extra: str, budget: str | None = None, trials: str = "6"):
    budget = budget or f"{tiny_mid_budget_us():.1f}us"
    return cli("search", "--space", "tiny", "--target", "cpu", "--budget", budget, "--subset", SUBSET,
               "--trials", trials, "--run-dir", str(run_dir), *extra)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory, fashion_dir):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    proc = _search(run_dir, "--sampler", "random")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir, proc


def test_run_directory_holds_everything(run) -> None:
    run_dir, proc = run
    for name in ("config.yaml", "study.db", "trials.parquet", "pareto.csv", "pareto.png", "report.md"):
        assert (run_dir / name).is_file(), name
    trials = pd.read_parquet(run_dir / "trials.parquet")
    assert (trials["state"] == "COMPLETE").sum() == 6
    for col in ("resolution", "s0_depth", "s1_kernel", "s0_precision", "s0_prune", "kd_alpha",
                "val_accuracy", "test_accuracy", "latency_ms", "size_bytes", "params", "feasible", "pareto"):  # fmt: skip
        assert col in trials, col
    assert all(Path(p).is_file() for p in trials["model_path"])
    assert "Accuracy–latency front on" in proc.stdout and "measured" in proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]  # e.g. none of Optuna's about heartbeats
    assert "report.md" in (run_dir / "report.md").read_text() or "Pareto" in (run_dir / "report.md").read_text()
    assert not list(run_dir.rglob("*.tmp"))
    # the budget (half-way between the smallest and largest network) binds: nothing says otherwise
    import yaml

    assert yaml.safe_load((run_dir / "config.yaml").read_text())["latency_range"]["binds"] is True
    # the shipped CPU table was profiled on another machine: every figure's label says it was
    # re-calibrated here, not only config.yaml's latency_host
    label = yaml.safe_load((run_dir / "config.yaml").read_text())["target_label"]
    assert "re-calibrated to this machine" in label and label in (run_dir / "report.md").read_text()
    assert "does not bind" not in proc.stdout and "does not bind" not in (run_dir / "report.md").read_text()


def test_the_search_is_followed_by_the_finalize_phase(run) -> None:
    """On by default: the teacher and the tiny space's top 2 front candidates trained longer; what
    is deployed is never worse on validation than what the search measured."""
    run_dir, proc = run
    import yaml

    fin = yaml.safe_load((run_dir / "config.yaml").read_text())["finalize"]
    assert fin["state"] == "done" and fin["top"] == 2 and fin["plan"][0] == {"trial": 0, "role": "teacher"}
    trials = pd.read_parquet(run_dir / "trials.parquet").set_index("number")
    done = trials.loc[[p["trial"] for p in fin["plan"]]]
    assert set(done["final_state"]) <= {"finalized", "kept"} and done["final_val_accuracy"].notna().all()
    assert (done["val_accuracy"] >= done["search_val_accuracy"]).all()
    assert "finalized trial   0 (teacher)" in proc.stdout
    assert not list((run_dir / "finalize").glob("*.pt"))  # checkpoints go once a candidate is done


def test_budget_is_a_hard_constraint(run) -> None:
    run_dir, _ = run
    import yaml

    budget = yaml.safe_load((run_dir / "config.yaml").read_text())["budget_ms"]
    trials = pd.read_parquet(run_dir / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert (done["feasible"] == (done["latency_ms"] <= budget)).all()
    # the first two trials are the largest and smallest networks: the budget (half-way between
    # them) rejects the first and admits the second
    seeded = done.set_index("seeded")
    assert not seeded.loc["largest", "feasible"] and seeded.loc["smallest", "feasible"]
    assert not seeded.loc["largest", "pareto"]
    front = pd.read_csv(run_dir / "pareto.csv")
    assert len(front) >= 1
    assert (front["latency_ms"] <= budget).all()
    assert set(front["number"]) <= set(done[done["feasible"]]["number"])
    # the front is non-dominated among feasible trials
    feas = done[done["feasible"]]
    for _, p in front.iterrows():
        dominated = (
            (feas["val_accuracy"] >= p["val_accuracy"]) & (feas["latency_ms"] <= p["latency_ms"])
            & (feas["size_bytes"] <= p["size_bytes"])
            & ((feas["val_accuracy"] > p["val_accuracy"]) | (feas["latency_ms"] < p["latency_ms"])
               | (feas["size_bytes"] < p["size_bytes"]))
        )  # fmt: skip
        assert not dominated.any()


def test_the_accuracy_latency_front_comes_first(run) -> None:
    """The CLI's first table, report.md's first table and pareto.csv's first rows are the
    accuracy–latency front; the Pareto set stays whole in pareto.csv (warm start reads it)."""
    run_dir, proc = run
    trials = pd.read_parquet(run_dir / "trials.parquet")
    front = trials[trials["front"]].sort_values("latency_ms")
    assert len(front) >= 1 and trials.loc[trials["front"] | trials["far_below"], "pareto"].all()
    best = trials[trials["pareto"]]["val_accuracy"].max()
    assert front["val_accuracy"].max() == best and not (trials["front"] & trials["far_below"]).any()
    out = proc.stdout
    first = out.index("Accuracy–latency front on")
    assert "Pareto set" not in out[:first] and first < out.index("latency source")
    rows = [ln for ln in out[first:out.index("latency source")].splitlines()
            if ln.startswith("│") and ln.split("│")[1].strip()]  # a wrapped cell continues on a row of its own
    assert [int(r.split("│")[1]) for r in rows[:len(front)]] == list(front["number"])
    report = (run_dir / "report.md").read_text()
    assert report.index("## Accuracy–latency front") < report.index(f"| {front['number'].iloc[0]} |")
    csv = pd.read_csv(run_dir / "pareto.csv")
    assert set(csv["number"]) == set(trials.loc[trials["pareto"], "number"])
    assert list(csv["number"][:len(front)]) == list(front["number"]) and csv["front"][:len(front)].all()


def test_pareto_accuracy_is_onnxruntime_on_the_exported_file(run) -> None:
    run_dir, _ = run
    front = pd.read_csv(run_dir / "pareto.csv")
    data = load_dataset("fashion-mnist", subset=int(SUBSET), seed=0)
    for _, p in front.iterrows():
        path = Path(p["model_path"])
        x, y = data.split("test", int(p["resolution"]))
        assert ort_accuracy(path, x, y) == pytest.approx(p["test_accuracy"], abs=1e-9)
        xv, yv = data.split("val", int(p["resolution"]))
        assert ort_accuracy(path, xv, yv) == pytest.approx(p["val_accuracy"], abs=1e-9)
        assert path.stat().st_size == p["size_bytes"]


def test_latency_of_the_searchs_own_files_is_the_searchs_figure(run, tmp_path) -> None:
    """`autocompress latency` on a file the search wrote, on the CPU table it was searched on
    (measured on another machine, its layers.csv lacking the tiny space's layer families): it was
    refused; now priced by the candidate's blocks as the search priced it, the same figure, for the
    run's own files, a finalized one and an exported copy. A changed file is refused as before."""
    import shutil

    run_dir, _ = run
    trials = pd.read_parquet(run_dir / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    files = [(Path(r["model_path"]), r["latency_ms"]) for _, r in done.iterrows()]
    assert any(p.name.startswith("final_") for p, _ in files)
    for path, searched in files:
        proc = cli("latency", str(run_dir / "models" / path.name), "--target", "cpu", "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        doc = json.loads(proc.stdout)
        assert doc["unit"] == "block" and doc["latency_ms"] == pytest.approx(searched, rel=1e-9), path
        assert "as the search priced it" in doc["notes"][0]
    best = tmp_path / "best"
    exported = cli("export", str(run_dir), "--best", "--format", "onnx", "--out", str(best))
    assert exported.returncode == 0, exported.stderr[-2000:]
    card = json.loads((best / "model_card.json").read_text())
    onnx_file = next(best.glob("*.onnx"))
    shown = cli("latency", str(onnx_file), "--target", "cpu", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    doc = json.loads(shown.stdout)
    assert doc["unit"] == "block" and doc["latency_ms"] == pytest.approx(card["predicted"]["latency_ms"], rel=1e-5)
    table = cli("latency", str(onnx_file), "--target", "cpu")
    assert "per-block latency, as the search priced it" in table.stdout
    changed = tmp_path / "changed"
    shutil.copytree(best, changed)
    import onnx

    model = onnx.load(str(next(changed.glob("*.onnx"))))
    onnx.helper.set_model_props(model, {"edited": "by hand"})  # no longer the file the card describes
    onnx.save(model, str(next(changed.glob("*.onnx"))))
    refused = cli("latency", str(next(changed.glob("*.onnx"))), "--target", "cpu", "--json")
    assert refused.returncode == 2 and "has no layer-table rows like" in refused.stderr


def test_second_search_reuses_the_cached_supernet_and_says_a_loose_budget_does_not_bind(run, tmp_path) -> None:
    proc = _search(tmp_path / "again", budget="1s", trials="2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reused from cache" in proc.stdout
    # 1 s is far above every candidate of the tiny space: CLI, report and config say so
    import yaml

    entry = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())["latency_range"]
    assert entry["binds"] is False and 0 < entry["min_ms"] < entry["max_ms"] < 1000
    assert "budget 1000 ms does not bind on x86-cpu-onnxruntime" in proc.stdout
    report = (tmp_path / "again" / "report.md").read_text()
    assert "budget 1000 ms does not bind" in report.split("## Pareto set")[0]  # near the top


def test_a_budget_below_every_candidate_is_refused_before_training(tmp_path, fashion_dir) -> None:
    # every candidate of the tiny space is priced: 1 us fits none, so nothing is trained (exit 2)
    proc = _search(tmp_path / "inf", budget="1us", trials="2")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no candidate of this space is predicted under 0.001 ms" in proc.stderr and "raise --budget" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "inf").exists()


def test_existing_run_is_not_overwritten(run) -> None:
    run_dir, _ = run
    proc = _search(run_dir)
    assert proc.returncode == 2 and "already holds a search" in proc.stderr


def test_sigkill_then_resume_keeps_completed_trials(tmp_path, fashion_dir) -> None:
    run_dir = tmp_path / "killed"
    budget = f"{tiny_mid_budget_us():.1f}us"
    args = [sys.executable, "-m", "autocompress", "search", "--space", "tiny", "--target", "cpu",
            "--budget", budget, "--subset", SUBSET, "--trials", "6", "--run-dir", str(run_dir)]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 300
    before = pd.DataFrame()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            before = pd.read_parquet(run_dir / "trials.parquet")
        except (OSError, ValueError):
            continue
        if (before["state"] == "COMPLETE").sum() >= 2:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_parquet(run_dir / "trials.parquet")
    kept = before[before["state"] == "COMPLETE"].set_index("number")
    assert len(kept) >= 2

    # as report.md's "Next" command gives it: without --subset, the run's own subset is kept (it
    # once loaded the whole data set and trained another supernet for it)
    resumed = cli("search", "--space", "tiny", "--target", "cpu", "--budget", budget,
                  "--trials", "6", "--run-dir", str(run_dir), "--resume")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "training supernet" not in resumed.stdout
    import yaml

    assert yaml.safe_load((run_dir / "config.yaml").read_text())["dataset"]["subset"] == int(SUBSET)
    after = pd.read_parquet(run_dir / "trials.parquet")
    done = after[after["state"] == "COMPLETE"].set_index("number")
    assert len(done) == 6
    assert after["number"].is_unique
    for n, row in kept.iterrows():  # nothing completed before the kill was lost or changed
        # (the finalize phase after the resumed search may deploy a better file: the search's
        # numbers stay in the search_* columns)
        for col in ("val_accuracy", "model_path"):
            now = done.loc[n, f"search_{col}"] if f"search_{col}" in done else done.loc[n, col]
            assert now == row[col]
    interrupted = after[after["state"] == "FAIL"]["number"].tolist()
    assert str(after["retry_of"].dtype) == "Int64"  # trial numbers, not 3.0
    failed = after[after["state"] == "FAIL"]
    assert failed["error"].str.startswith("its worker stopped (killed or crashed)").all()
    retried = after["retry_of"].dropna().astype(int).tolist()
    assert sorted(retried) == sorted(interrupted)
    assert (after["state"] == "RUNNING").sum() == 0


def test_the_headline_command_on_an_estimated_jetson_writes_its_results(tmp_path, fashion_dir) -> None:
    """`search --target jetson --budget 10ms` (the README's first command) on the tiny space: it
    once died at its first results write when an error band lay wholly on one side of zero (the
    Orin Nano's fp32 band), because the plot drew intervals as bars around the prediction. Every
    result file is written, every latency is labelled an estimate, and the intervals drawn are
    the ones recorded."""
    run_dir = tmp_path / "jetson"
    proc = cli("search", "--space", "tiny", "--target", "jetson", "--budget", "10ms", "--subset", "600",
               "--trials", "3", "--run-dir", str(run_dir), "--sampler", "random")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("config.yaml", "trials.parquet", "pareto.csv", "pareto.png", "report.md"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    assert "ESTIMATED" in (run_dir / "report.md").read_text() and "(est.)" in proc.stdout
    trials = pd.read_parquet(run_dir / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) == 3 and done["latency_lo_ms"].notna().all()
    assert (done["latency_lo_ms"] < done["latency_hi_ms"]).all()
    assert "does not bind" in proc.stdout  # 10 ms is far above the tiny space on the Orin Nano
    # `latency` on the search's own files gives the search's figures: the layers the file holds
    # (the input's normalisation, the classifier after the pool, residual adds) priced by the
    # roofline's kernel convention, as the block table prices the blocks (they once read 20-34% apart)
    from autocompress.hardware.file_latency import file_latency

    for _, r in done.iterrows():
        assert file_latency(Path(r["model_path"]), "jetson").latency_ms == pytest.approx(r["latency_ms"], rel=0.02)
    # the Orin Nano's calibration holds depthwise-heavy classifiers: no "outside the families" line
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["latency_family_note"] is None
    assert cfg["latency_host"]["status"] == "estimated (nothing to re-calibrate)"  # not "measured here"
    assert "holds no figure of this family" not in proc.stdout
    # the winner exports, and its card describes the interval by its own precisions' bands only
    exported = cli("export", str(run_dir), "--best", "--format", "onnx", "--out", str(tmp_path / "best"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    card = json.loads((tmp_path / "best" / "model_card.json").read_text())
    assert card["predicted"]["source"] == "estimated"
    row = done.set_index("number").loc[card["run"]["trial"]]
    used = set(row["latency_band"].split("+"))
    assert used and used <= {"fp32", "fp16", "int8"}
    line = card["predicted"]["latency_interval"]
    assert [p for p in ("fp32", "fp16", "int8") if f"{p}: " in line] == [p for p in ("fp32", "fp16", "int8") if p in used]
    assert card["predicted"]["latency_interval_ms"] == [row["latency_lo_ms"], row["latency_hi_ms"]]
    md = (tmp_path / "best" / "model_card.md").read_text()
    assert "## Measure it on the device (TensorRT)" in md and "| the run's budget | 10.00 ms on the predicted latency: met |" in md


def test_ctrl_c_during_the_teacher_then_resume_still_has_its_teacher(tmp_path, fashion_dir) -> None:
    """Ctrl-C while the first trial (the seeded fp32 teacher) runs: the trial is queued again, and
    ``--resume`` runs it as the teacher (it was once lost, and the run had no teacher)."""
    import optuna

    run_dir = tmp_path / "interrupted"
    budget = f"{tiny_mid_budget_us():.1f}us"
    space = slow_tiny_space(tmp_path)  # the Ctrl-C once landed after trial 0 had finished
    args = [sys.executable, "-m", "autocompress", "search", "--space", str(space), "--target", "cpu", "--budget", budget,
            "--subset", SUBSET, "--trials", "3", "--finalize", "0", "--run-dir", str(run_dir)]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())  # fmt: skip
    storage = f"sqlite:///{run_dir / 'study.db'}"
    deadline = time.monotonic() + 300
    running = False
    while time.monotonic() < deadline and proc.poll() is None and not running:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name="autocompress", storage=storage).get_trials(deepcopy=False)
        except Exception:  # not created yet
            continue
        running = any(t.number == 0 and t.state == optuna.trial.TrialState.RUNNING for t in trials)
    if not running:
        proc.kill()
        raise AssertionError(f"trial 0 never ran (exit {proc.wait()}): {proc.communicate()[1][-2000:]}")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    states = {t.number: t.state.name for t in optuna.load_study(study_name="autocompress", storage=storage).trials}
    assert states[0] == "FAIL", states  # the Ctrl-C landed in trial 0

    resumed = cli("search", "--space", str(space), "--target", "cpu", "--budget", budget, "--trials", "3",
                  "--finalize", "0", "--run-dir", str(run_dir), "--resume")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = pd.read_parquet(run_dir / "trials.parquet")
    teacher = after[(after["seeded"] == "largest") & (after["state"] == "COMPLETE")]
    assert len(teacher) == 1 and int(teacher["retry_of"].iloc[0]) == 0
    assert after.set_index("number").loc[0, "error"] == "interrupted (Ctrl-C); queued again"
    assert (after["state"] == "COMPLETE").sum() == 3


def test_a_copied_run_directory_resumes_its_own_study(run, tmp_path) -> None:
    """config.yaml records the study's SQLite file by its absolute path: a copy of a run
    directory, resumed, once wrote its trials into the original's study.db."""
    import shutil

    import optuna

    run_dir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)

    def count(folder: Path) -> int:
        return len(optuna.load_study(study_name="autocompress", storage=f"sqlite:///{folder / 'study.db'}").trials)

    before = count(run_dir)
    proc = _search(copy, "--resume", "--finalize", "0", trials=str(before + 1))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert count(run_dir) == before and count(copy) == before + 1
    # --storage naming another study on --resume once moved the run onto it: refused
    other = _search(copy, "--resume", "--finalize", "0", "--storage", f"sqlite:///{run_dir / 'study.db'}",
                    trials=str(before + 2))  # fmt: skip
    assert other.returncode == 2 and f"its study is in sqlite:///{(copy / 'study.db').resolve()}" in other.stderr
    assert count(run_dir) == before and count(copy) == before + 1


def test_an_estimate_outside_the_calibrated_families_says_so_in_every_result(tmp_path, fashion_dir) -> None:
    """The Orin NX's calibration holds no depthwise-heavy classifier (the tiny space is one): the
    search's output, report.md and the model card carry the line `space` and `latency` print."""
    run_dir = tmp_path / "orin-nx"
    proc = cli("search", "--space", "tiny", "--target", "orin-nx", "--budget", "10ms", "--subset", "600",
               "--trials", "2", "--finalize", "0", "--run-dir", str(run_dir), "--sampler", "random")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    note = "its calibration holds no figure of this family"
    assert note in proc.stdout and note in (run_dir / "report.md").read_text()
    exported = cli("export", str(run_dir), "--trial", "0", "--out", str(tmp_path / "card"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert note in (tmp_path / "card" / "model_card.md").read_text()
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert "depthwise-heavy classifier" in cfg["latency_family_note"]


def test_a_validation_split_too_small_to_choose_by_is_warned_about(tmp_path, fashion_dir) -> None:
    """50 validation images move every accuracy in 2-point steps: the search says its choices are
    mostly noise before its trials (the e2e runs' 1,500 say nothing)."""
    proc = cli("search", "--space", "tiny", "--target", "cpu", "--budget", "1ms", "--subset", "50", "--trials", "1",
               "--finalize", "0", "--run-dir", str(tmp_path / "small"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: the validation split holds 50 images: accuracies move in steps of 2.0 points" in proc.stdout
