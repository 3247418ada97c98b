from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the autocompress command as a user would, in a subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "autocompress", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env,
    )  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


def cpu_table_as_searched():
    """The measured CPU table as ``autocompress search --target cpu`` prices with it on this
    machine: re-calibrated here when it was profiled on another one (the fit is cached in the
    session's cache, so the searches the tests start reuse exactly this fit)."""
    from autocompress.hardware.host_fit import on_this_host
    from autocompress.hardware.targets import get_target
    from autocompress.space import load_space

    return on_this_host(get_target("cpu"), load_space("tiny")).target.table


def tiny_latency_ms(cand, space, table) -> float:
    """Predicted latency (ms) of a tiny-space candidate on ``table`` (Fashion-MNIST shape)."""
    from autocompress.arch import block_precisions, plan
    from autocompress.hardware.predict import predict

    blocks = plan(cand, space, 1, 10)
    return predict(table, blocks, block_precisions(cand, space, blocks)).latency_ms


def tiny_mid_budget_us() -> float:
    """A latency budget (µs) half-way between the tiny space's smallest and largest network on
    the measured CPU table, as a search prices them on this machine."""
    from autocompress.space import load_space

    space, table = load_space("tiny"), cpu_table_as_searched()
    smallest, largest = (tiny_latency_ms(c, space, table) for c in (space.smallest(), space.largest()))
    assert smallest < largest, (smallest, largest)
    return 1000 * (smallest + largest) / 2


def micro_space_text() -> str:
    """The tiny space trained for two epochs (10 steps on a 300-image subset), fine-tune off:
    its supernet trains in seconds and a trial takes about one (crash and bad-input tests)."""
    text = (ROOT / "search_spaces" / "tiny.yaml").read_text()
    for old, new in (("epochs: 3", "epochs: 2"), ("finetune_steps: [0, 20]", "finetune_steps: [0]"),
                     ("name: tiny", "name: micro")):  # fmt: skip
        assert old in text, old
        text = text.replace(old, new)
    return text


def slow_tiny_space(folder: Path, steps: int = 300) -> Path:
    """The tiny space with every trial fine-tuned ``steps`` steps (1-3 s a trial here), written to
    ``folder``. The tiny space's own trials take a quarter second once its supernet is cached: tests
    that signal a search while a trial runs missed that window now and then."""
    text = (ROOT / "search_spaces" / "tiny.yaml").read_text()
    assert "finetune_steps: [0, 20]" in text
    path = folder / "slow_tiny.yaml"
    path.write_text(text.replace("finetune_steps: [0, 20]", f"finetune_steps: [{steps}]"))
    return path


def label_as_this_machine(folder: Path) -> None:
    """Record this machine as the host of the measured table copied to ``folder``, as
    `autocompress profile` here would leave it. For tests whose subject is what a table
    profiled here does (rows added by timing on this machine), not another machine's table,
    which a search refuses to extend (tests/hardware/test_layer_ops.py tests that refusal)."""
    import os

    import yaml

    from autocompress.hardware.host import cpu_model, machine_id

    path = folder / "device.yaml"
    dev = yaml.safe_load(path.read_text())
    dev["host"] = {**(dev.get("host") or {}), "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                   "machine": machine_id()}  # fmt: skip
    path.write_text(yaml.safe_dump(dev, sort_keys=False))
