"""End to end in a real browser: `autocompress explore RUN --port P` on loopback, opened in
headless Chromium (the Debian package) driven by Playwright; the Pareto chart and the table
render, a filter changes the table, and a screenshot is saved."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml

from autocompress.units import format_ms
from tests.helpers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent (Debian package 'chromium'; .ci/run installs it)"),
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Explorer:
    """`autocompress explore RUN --port P` in a subprocess, stopped on close."""

    def __init__(self, run_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autocompress", "explore", str(run_dir), "--port", str(self.port)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"explorer did not start: {self.proc.stdout.read()[-2000:]}")
            time.sleep(0.5)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def explorer(small_run):
    app = Explorer(small_run)
    yield app.url, app.port
    app.close()


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1500, "height": 1800})
        finally:
            browser.close()


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as the kernel writes them) with a socket listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hex_port = local.rsplit(":", 1)
                if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                    found.append(addr)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_explorer_binds_to_loopback_only(explorer) -> None:
    _, port = explorer
    assert _listening(port) == ["0100007F"]  # 127.0.0.1 only: no 0.0.0.0, no IPv6 wildcard


def test_pareto_chart_table_and_filter_in_chromium(explorer, small_run, tmp_path) -> None:
    from playwright.sync_api import expect

    url, _ = explorer
    trials = pd.read_parquet(small_run / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    accs = sorted(100 * done["val_accuracy"])
    cut = round((accs[len(accs) // 2 - 1] + accs[len(accs) // 2]) / 2, 2)  # splits the candidates
    expected = int((100 * done["val_accuracy"] >= cut).sum())
    assert 0 < expected < len(done)

    with chromium() as page:
        page.goto(url, timeout=120_000)
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        expect(chart).to_be_visible(timeout=120_000)
        expect(chart.locator(".scatterlayer .point").first).to_be_visible(timeout=60_000)
        assert chart.locator(".scatterlayer .point").count() >= len(done)
        budget = yaml.safe_load((small_run / "config.yaml").read_text())["budget_ms"]
        expect(page.get_by_text(f"budget {format_ms(budget)}").first).to_be_visible()
        expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
        caption = page.get_by_text(re.compile(r"\d+ of \d+ candidates match the filters"))
        expect(caption).to_have_text(re.compile(rf"^{len(done)} of {len(done)} candidates"), timeout=60_000)
        page.screenshot(path=str(tmp_path / "explorer-before.png"), full_page=True)

        box = page.get_by_role("spinbutton", name="Min accuracy (%)")
        box.fill(str(cut))
        box.press("Enter")
        expect(caption).to_have_text(re.compile(rf"^{expected} of {len(done)} candidates"), timeout=60_000)
        shot = tmp_path / "explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        if os.environ.get("AUTOCOMPRESS_SCREENSHOT"):  # how docs/explorer.png is made
            shutil.copy(tmp_path / "explorer-before.png", os.environ["AUTOCOMPRESS_SCREENSHOT"])


def test_page_follows_a_search_that_is_still_writing(small_run, tmp_path) -> None:
    from playwright.sync_api import expect

    run = tmp_path / "growing"
    run.mkdir()
    shutil.copy(small_run / "config.yaml", run / "config.yaml")  # a search that has just started
    app = Explorer(run)
    try:
        with chromium() as page:
            page.goto(app.url, timeout=120_000)
            expect(page.get_by_text("no trial has finished yet")).to_be_visible(timeout=120_000)
            trials = pd.read_parquet(small_run / "trials.parquet")
            trials.iloc[:2].to_parquet(run / ".trials.tmp", index=False)
            os.replace(run / ".trials.tmp", run / "trials.parquet")  # as the search writes it: atomically
            caption = page.get_by_text(re.compile(r"\d+ of \d+ candidates match the filters"))
            expect(caption).to_have_text(re.compile(r"^2 of 2 candidates"), timeout=60_000)  # no reload
            trials.to_parquet(run / ".trials.tmp", index=False)
            os.replace(run / ".trials.tmp", run / "trials.parquet")
            expect(caption).to_have_text(re.compile(rf"^{len(trials)} of {len(trials)} candidates"), timeout=60_000)
            expect(page.locator('[data-testid="stException"]')).to_have_count(0)
    finally:
        app.close()
