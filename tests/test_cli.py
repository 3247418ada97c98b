from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, cli


@pytest.mark.parametrize("budget", ["10", "abc", "-1ms", "0ms", "ten ms", "1e999ms"])
def test_bad_budget_is_one_line_and_exit_2(budget: str) -> None:
    proc = cli("search", "--target", "jetson", "--budget", budget)
    assert_one_line_error(proc, 2, "budget must be", "10ms, 0.5ms, 800us, 1s", repr(budget))


def test_unknown_target_suggests_names() -> None:
    proc = cli("search", "--target", "jetsn-orin", "--budget", "10ms")
    assert_one_line_error(proc, 2, "unknown target 'jetsn-orin'", "did you mean", "jetson-orin-nano")


def test_bad_space_file(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\ninput: {resolution: [28]}\nstem: {width: [8]}\nstages: [{depth: [], width: [8], kernel: [3], expand: [2]}]\n")
    proc = cli("search", "--target", "jetson", "--budget", "10ms", "--space", str(bad))
    assert_one_line_error(proc, 2, "s.yaml: stages.0: depth needs at least one choice")


def test_space_precision_the_target_cannot_run_is_refused(tmp_path: Path) -> None:
    src = (Path(__file__).parent.parent / "search_spaces" / "tiny.yaml").read_text()
    spec = tmp_path / "fp16.yaml"
    spec.write_text(src.replace("precision: [fp32, int8]", "precision: [fp32, fp16]"))
    proc = cli("search", "--target", "cpu", "--budget", "10ms", "--space", str(spec), "--run-dir", str(tmp_path / "r"))
    assert_one_line_error(proc, 2, "uses fp16 but target x86-cpu-onnxruntime runs fp32, int8")
    assert not (tmp_path / "r").exists()


def test_missing_dataset_says_how_to_install(tmp_path: Path) -> None:
    proc = cli("search", "--target", "jetson", "--budget", "10ms", "--space", "tiny", "--data-dir", str(tmp_path),
               "--run-dir", str(tmp_path / "run"))  # fmt: skip
    assert_one_line_error(proc, 2, "Fashion-MNIST not found", "apt-get install dataset-fashion-mnist")
    proc = cli("data", "check", "--data-dir", str(tmp_path))
    assert_one_line_error(proc, 2, "Fashion-MNIST not found")


def test_resume_without_a_run(tmp_path: Path) -> None:
    proc = cli("search", "--target", "jetson", "--budget", "10ms", "--space", "tiny", "--resume",
               "--run-dir", str(tmp_path / "nothing"))  # fmt: skip
    assert_one_line_error(proc, 2, "cannot resume", "study.db is missing")


def test_targets_lists_sources() -> None:
    proc = cli("targets")
    assert proc.returncode == 0, proc.stderr
    assert "jetson-orin-nano" in proc.stdout and "x86-cpu-onnxruntime" in proc.stdout
    assert "estimated" in proc.stdout and "measured" in proc.stdout


def test_version_and_help() -> None:
    assert cli("--version").stdout.startswith("autocompress ")
    out = cli("search", "--help").stdout
    assert "--budget" in out and "--resume" in out and "--sampler" in out


_WITHOUT_TORCH = """
import sys
from autocompress.cli import run
sys.argv = ["autocompress", *sys.argv[1:]]
try:
    run()
finally:
    print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED", file=sys.stderr)
"""


@pytest.mark.parametrize(("args", "fragment"), [
    (["--seed", "-1"], "--seed must be between"),
    (["--sampler", "bogus"], "unknown sampler 'bogus'"),
    (["--resume", "--run-dir", "{tmp}/none"], "cannot resume"),
    (["--run-dir", "{tmp}/existing"], "already holds a search; pass --resume"),
    (["--model", "tests/byom_models.py"], "--model must be FILE.py:FUNCTION"),
    (["--model", "tests/byom_models.py:resnet_tiny", "--input-shape", "1,28"], "--input-shape must be C,H,W"),
    (["--dataset", "cifar"], "unknown data set 'cifar'"),
    (["--data-dir", "{tmp}/none"], "Fashion-MNIST not found (looked in {tmp}/none)"),
    (["--dataset", "imagefolder:{tmp}/existing"], "needs one sub-folder per class"),
])  # fmt: skip
def test_a_mistyped_search_is_refused_before_torch_is_loaded(tmp_path: Path, args: list[str], fragment: str) -> None:
    """What a user mistypes is refused before torch, the data and the latency re-calibration are
    loaded (seconds, not half a minute); nothing is written."""
    import subprocess
    import sys

    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "config.yaml").write_text("target: x86-cpu-onnxruntime\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = ["search", "--target", "cpu", "--budget", "5ms", "--space", "tiny",
            *(a.replace("{tmp}", str(tmp_path)) for a in args)]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert fragment.replace("{tmp}", str(tmp_path)) in proc.stderr and "Traceback" not in proc.stderr
    assert "TORCH_NOT_IMPORTED" in proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_backend_ray_without_ray_is_refused_before_the_data_and_the_supernet(tmp_path: Path) -> None:
    """Without the ``ray`` extra, ``--backend ray`` loaded the data, trained (or loaded) the supernet
    and made the run directory before saying Ray was missing; now it is one line, exit 2, before
    torch, like a --storage whose driver is missing."""
    import os
    import subprocess
    import sys

    no_ray = 'sys.modules["ray"] = None  # as if the extra were not installed\n'
    script = _WITHOUT_TORCH.replace("from autocompress.cli import run\n", "from autocompress.cli import run\n" + no_ray)
    argv = ["search", "--target", "cpu", "--budget", "5ms", "--space", "tiny", "--subset", "200", "--trials", "1",
            "--backend", "ray", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "AUTOCOMPRESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "TORCH_" not in ln]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines == ["error: --backend ray needs Ray Tune: pip install 'autocompress[ray]'"], lines
    assert "TORCH_NOT_IMPORTED" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_validate_latency_on_openvino_without_openvino_is_one_line(tmp_path: Path) -> None:
    """Without the ``openvino`` extra, ``validate-latency --target openvino`` printed a line
    suggesting a profile (which fails the same way), exported the candidates, warned, and only then
    said OpenVINO was missing; now that is its one line, before anything else."""
    import os
    import subprocess
    import sys

    no_ov = 'sys.modules["openvino"] = None  # as if the extra were not installed\n'
    script = _WITHOUT_TORCH.replace("from autocompress.cli import run\n", "from autocompress.cli import run\n" + no_ov)
    argv = ["validate-latency", "--target", "openvino", "-n", "3", "--space", "tiny", "--out", str(tmp_path / "v")]
    env = {**os.environ, "AUTOCOMPRESS_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "TORCH_" not in ln]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines == ["error: OpenVINO is not installed; install it with: pip install 'autocompress[openvino]'"], lines
    assert proc.stdout == "" and "TORCH_NOT_IMPORTED" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "fragment"), [
    (["{tmp}/none.onnx", "--target", "cpu"], "model file {tmp}/none.onnx does not exist"),
    (["{tmp}/m.onnx", "--target", "cpu", "--precision", "bf16"], "--precision must be one of fp32, fp16, int8, mixed"),
    (["{tmp}/m.onnx", "--target", "jetson-nanoo"], "unknown target 'jetson-nanoo'"),
    (["{tmp}/m.onnx", "--target", "cpu", "--precision", "fp16"], "has no fp16 table rows (it runs fp32, int8)"),
    (["validate-latency", "--target", "jetson", "--out", "{tmp}/v"], "is estimated, not measured here"),
    (["validate-latency", "--precision", "fp64", "--out", "{tmp}/v"], "--precision must be one of fp32, fp16, int8"),
    (["validate-latency", "--target", "x86-cpu-onnxrt", "--out", "{tmp}/v"], "did you mean x86-cpu-onnxruntime"),
    (["validate-latency", "--space", "{tmp}/none.yaml", "--out", "{tmp}/v"], "does not exist"),
    (["profile", "--runtime", "tflite", "--out", "{tmp}/v"], "--runtime must be one of onnxruntime, openvino"),
    (["profile", "--space", "tiny", "--precision", "fp16", "--out", "{tmp}/v"], "runs fp32, int8; got fp16"),
    (["profile", "--space", "{tmp}/none.yaml", "--out", "{tmp}/v"], "does not exist"),
])  # fmt: skip
def test_a_mistyped_latency_or_validation_is_refused_before_torch(tmp_path: Path, args: list[str],
                                                                  fragment: str) -> None:  # fmt: skip
    """`autocompress latency` checks the file, the target and the precision before it loads the
    pricing path (a quarter of a second, not two), and `validate-latency` its target, precision
    mode and space before the timing path, and `profile` its runtime, precisions and space before
    the profiler."""
    import subprocess
    import sys

    (tmp_path / "m.onnx").write_bytes(b"x")
    verb = [] if args[0] in ("validate-latency", "profile") else ["latency"]
    argv = [*verb, *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert fragment.replace("{tmp}", str(tmp_path)) in proc.stderr and "Traceback" not in proc.stderr
    assert "TORCH_NOT_IMPORTED" in proc.stderr
    assert not (tmp_path / "v").exists()  # nothing written


def test_a_trial_over_max_size_is_not_reported_ok() -> None:
    """With --max-size, a trial within the latency budget but over the size limit was printed
    ``ok`` in its progress line (only the latency constraint was read), though it is infeasible
    (trials.parquet, the Pareto set); now its line says which limit it breaks."""
    import optuna

    from autocompress.cli import _trial_status
    from autocompress.search.config import Hooks
    from autocompress.search.trial import report_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    for latency, size in [(-0.1, 3000.0), (0.2, -1.0), (0.2, 5.0), (-0.1, -1.0)]:
        trial = study.ask()
        trial.set_user_attr("result", {"val_accuracy": 0.5, "latency_ms": 0.4, "size_bytes": 15000})
        trial.set_constraint("latency", latency)
        trial.set_constraint("size", size)
        study.tell(trial, [0.5, 0.4, 15000])
    seen: list[dict] = []
    hooks = Hooks(trial_done=lambda done, number, best, info: seen.append(info))
    for frozen in study.trials:
        report_trial(study, frozen, hooks)
    assert [r["feasible"] for r in seen] == [False, False, False, True]
    assert [_trial_status(r) for r in seen] == ["OVER MAX SIZE", "OVER BUDGET", "OVER BUDGET, OVER MAX SIZE", "ok"]


def test_resume_keeps_the_runs_max_size_and_refuses_another(tmp_path: Path) -> None:
    """The resume command a search prints leaves --max-size out; following it dropped the run's
    size limit (config.yaml max_size_bytes: null, the new trials unconstrained in size). Now an
    omitted --max-size is the run's, as --subset is, and another one is refused."""
    import yaml

    from autocompress.exceptions import RunDirError
    from autocompress.search.config import SearchConfig
    from autocompress.search.study import with_recorded_data

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"dataset": {"spec": "fashion-mnist", "subset": 1500}, "max_size_bytes": 12000}))  # fmt: skip
    cfg = with_recorded_data(SearchConfig(target="cpu", budget_ms=1.0, resume=True), tmp_path)
    assert (cfg.max_size_bytes, cfg.subset) == (12000, 1500)
    assert with_recorded_data(SearchConfig(target="cpu", budget_ms=1.0, max_size_bytes=12000), tmp_path) \
        .max_size_bytes == 12000  # fmt: skip
    with pytest.raises(RunDirError, match="started with --max-size 12000B, not --max-size 20000B"):
        with_recorded_data(SearchConfig(target="cpu", budget_ms=1.0, max_size_bytes=20000), tmp_path)


def test_a_typed_resume_keeps_the_runs_sampler_and_fidelity(tmp_path: Path) -> None:
    """`--sampler` and `--fidelity` had defaults: a resume typed without them switched a random,
    halving run to tpe and full fidelity, saying nothing. Left out, they are now the run's; given,
    they are what the command says; --eta without halving anywhere is refused."""
    import yaml

    from autocompress.exceptions import BadInputError
    from autocompress.search.config import SearchConfig
    from autocompress.search.study import with_recorded_data

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(
        {"dataset": {"spec": "fashion-mnist", "subset": 1500}, "sampler": "random",
         "fidelity": {"mode": "halving", "eta": 2}}))  # fmt: skip
    left_out = frozenset({"sampler", "fidelity", "eta"})
    cfg = with_recorded_data(SearchConfig(target="cpu", budget_ms=1.0, resume=True, defaulted=left_out), tmp_path)
    assert (cfg.sampler, cfg.fidelity, cfg.eta) == ("random", "halving", 2)
    typed = SearchConfig(target="cpu", budget_ms=1.0, resume=True, sampler="tpe", fidelity="full")
    assert (with_recorded_data(typed, tmp_path).sampler, with_recorded_data(typed, tmp_path).fidelity) == ("tpe", "full")
    # through the command: --eta with a resumed halving run is its rate; with a full run it is refused
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.yaml").write_text(yaml.safe_dump({"dataset": {"spec": "digits"}, "fidelity": {"mode": "full"}}))
    eta_only = SearchConfig(target="cpu", budget_ms=1.0, resume=True, eta=4, defaulted=frozenset({"sampler", "fidelity"}))
    assert with_recorded_data(eta_only, tmp_path).eta == 4
    with pytest.raises(BadInputError, match="this resume runs --fidelity full"):
        with_recorded_data(eta_only, tmp_path / "full")
    proc = cli("search", "--target", "cpu", "--budget", "1ms", "--space", "tiny", "--eta", "2", "--run-dir",
               str(tmp_path / "nothing"))  # fmt: skip
    assert proc.returncode == 2 and "pass --fidelity halving too" in proc.stderr


def test_the_printed_resume_command_is_one_line_with_the_options_it_needs(tmp_path: Path, monkeypatch) -> None:
    """The 'next:' resume command left out --seed (a resume with another seed is refused),
    --sampler, --fidelity halving and --finalize 0 (so following it ran a finalize phase the
    search had turned off), and rich wrapped it at the terminal's width: pasted, two commands."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from autocompress import cli

    buf = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buf, width=80))
    run = tmp_path / "runs" / "jetson-orin-nano-0.5ms-20261207-232149"
    config = {"target": "jetson-orin-nano", "budget_ms": 0.5, "space_path": "tiny", "trials": 6, "seed": 3,
              "sampler": "random", "fidelity": {"mode": "halving", "eta": 3}, "budget_on": "point",
              "storage": {"url": f"sqlite:///{(run / 'study.db').resolve()}"}}  # fmt: skip
    cli._print_next(SimpleNamespace(run_dir=run, config=config), 0)
    lines = buf.getvalue().splitlines()
    resume = [ln for ln in lines if "--resume" in ln]
    assert len(resume) == 1 and resume[0].startswith("  autocompress search --target jetson-orin-nano"), lines
    for flag in ("--seed 3", "--sampler random", "--fidelity halving --eta 3", "--finalize 0", f"--run-dir {run} "):
        assert flag in resume[0], (flag, resume[0])
    assert all(ln.startswith(("next:", "  autocompress ", "  less ")) for ln in lines), lines


def test_help_says_what_an_option_left_out_does() -> None:
    """``profile`` and ``validate-latency`` without --space use fashion_mnist, which their help did
    not say; ``search --seed`` and ``data check --data-dir`` had no help at all."""
    for args, fragments in [
        (("profile", "--help"), ("default: fashion_mnist",)),
        (("validate-latency", "--help"), ("default: fashion_mnist",)),
        (("search", "--help"), ("Seeds the data splits", "--resume must give the run's")),
        (("data", "check", "--help"), ("Look only in this folder",)),
    ]:
        proc = cli(*args)
        text = " ".join(proc.stdout.replace("│", " ").split())
        assert proc.returncode == 0 and all(f in text for f in fragments), (args, proc.stdout[-3000:])
