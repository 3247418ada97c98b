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
from pathlib import Path

import pandas as pd
import pytest

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


@pytest.fixture
def explorer(small_run):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autocompress", "explore", str(small_run), "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"explorer did not start: {proc.stdout.read()[-2000:]}")
        time.sleep(0.5)
    yield url, port
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_explorer_binds_to_loopback_only(explorer) -> None:
    _, port = explorer
    addrs = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in addrs:  # the machine's other addresses must not answer
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((addr, port)) != 0, f"explorer answers on {addr}"


def test_pareto_chart_table_and_filter_in_chromium(explorer, small_run, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _ = explorer
    trials = pd.read_parquet(small_run / "trials.parquet")
    done = trials[trials["state"] == "COMPLETE"]
    accs = sorted(100 * done["val_accuracy"])
    cut = round((accs[len(accs) // 2 - 1] + accs[len(accs) // 2]) / 2, 2)  # splits the candidates
    expected = int((100 * done["val_accuracy"] >= cut).sum())
    assert 0 < expected < len(done)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1800})
            page.goto(url, timeout=120_000)
            chart = page.locator('[data-testid="stPlotlyChart"]').first
            expect(chart).to_be_visible(timeout=120_000)
            expect(chart.locator(".scatterlayer .point").first).to_be_visible(timeout=60_000)
            assert chart.locator(".scatterlayer .point").count() >= len(done)
            expect(page.get_by_text("budget 0.0", exact=False).first).to_be_visible()
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
        finally:
            browser.close()
