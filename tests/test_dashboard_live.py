"""The dashboard beside a running study on one SQLite file, and the real app in a real browser."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st

from search.config import parse_config
from search.runner import StudyRunner
from search.store import Store
from tests.conftest import study_config
from tests.test_dashboard import OBJECTIVES, app_on, chart_keys, run_normal_study, texts

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_study_and_dashboard_share_one_sqlite_file(
    ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study_config("shared", tmp_path, budget={"evaluations": 60})
    config["evaluator"]["objectives"] = OBJECTIVES
    config["evaluator"]["synthetic"] = {"seconds": 0.15}  # about 5 s of study to render beside
    cfg = parse_config(config)
    writer = Store(cfg.store.url)
    runner = StudyRunner(cfg, writer, progress=False)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while not any(s.name == "shared" for s in writer.list_studies()) and time.time() < deadline:
        time.sleep(0.05)
    renders, statuses = 0, set()
    while thread.is_alive() and time.time() < deadline + 60:
        for page, params in (("study", {"study": "shared"}), (None, {})):
            st.cache_data.clear()  # every render goes to the database, none is served from the cache
            at = app_on(writer, monkeypatch, page, **params)
            assert "locked" not in texts(at).lower()
            renders += 1
        statuses.add(at.dataframe[0].value["status"].iloc[0])
    thread.join(timeout=60)
    assert not failures, failures
    study = writer.get_study("shared")
    finished = [e for _, e in writer.evaluations(study.id) if e.status in ("done", "rejected", "failed")]
    assert study.status == "finished" and len(finished) == 60
    assert all(
        e.finished_at and e.worker and e.objectives.keys() == {"val_acc@mlp", "latency_ms@mlp"} for e in finished
    )
    assert renders >= 4 and "running" in statuses, "the dashboard never saw the study running"
    at = app_on(writer, monkeypatch, "study", study="shared")
    assert {m.label: m.value for m in at.metric}["finished"] == "60 / 60" and "pareto" in chart_keys(at)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_dashboard(ray_address: str, tmp_path: Path) -> Iterator[str]:
    """`layerforge dashboard` on a store a real study just wrote, until the test ends; yields its base URL."""
    store = run_normal_study(tmp_path / "live")
    port = free_port()
    cli = shutil.which("layerforge", path=str(Path(sys.executable).parent))
    assert cli is not None, "the layerforge console script is not installed in this environment"
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen(
        [cli, "dashboard", "--db", store.url, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                    if reply.read() == b"ok":
                        break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError((tmp_path / "dashboard.log").read_text()) from None
                time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def test_browser_renders_the_study_page_with_its_pareto_chart(served_dashboard: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM}; run scripts/install_system_deps.sh")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{served_dashboard}/study?study=normal", wait_until="networkidle")
            pareto = page.locator(".js-plotly-plot", has_text="Pareto front")
            expect(pareto).to_be_visible(timeout=60_000)
            expect(pareto.locator(".scatterlayer, canvas").first).to_be_attached()
            expect(page.get_by_text("40 / 40")).to_be_visible()
            expect(page.get_by_text("candidates match")).to_be_visible()
            page.wait_for_timeout(500)  # let plotly finish its transitions before the picture
            page.screenshot(path=str(tmp_path / "study.png"), full_page=True)

            page.goto(f"{served_dashboard}/candidate?id=1", wait_until="networkidle")
            expect(page.get_by_role("button", name="Download normal_c1.py")).to_be_visible(timeout=60_000)
            expect(page.locator(".js-plotly-plot", has_text="f'(x)")).to_be_visible()
            page.screenshot(path=str(tmp_path / "candidate.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "study.png").stat().st_size > 10_000
    assert (tmp_path / "candidate.png").stat().st_size > 10_000


def test_browser_renders_every_explore_view(served_dashboard: str, tmp_path: Path) -> None:
    """History, parallel coordinates, slices and the parts of the best, each drawn by plotly in chromium."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM}; run scripts/install_system_deps.sh")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"{served_dashboard}/explore?study=normal", wait_until="networkidle")
            views = [
                ("History", "History of every evaluation", ".scatterlayer, canvas"),
                ("Parallel coordinates", "Parallel coordinates", ".parcoords, canvas"),
                ("Slices", "Slices: val_acc@mlp", ".scatterlayer, canvas"),
                ("Parts of the best", "Parts common among the best", ".barlayer .point"),
            ]
            for tab, title, drawn in views:
                page.get_by_role("tab", name=tab).click()
                chart = page.locator(".js-plotly-plot", has_text=title)
                expect(chart).to_be_visible(timeout=60_000)
                expect(chart.locator(drawn).first).to_be_attached()
                page.wait_for_timeout(500)  # let plotly finish its transitions before the picture
                page.screenshot(path=str(tmp_path / f"explore_{tab.split()[0].lower()}.png"), full_page=True)
        finally:
            browser.close()
    for tab in ("history", "parallel", "slices", "parts"):
        assert (tmp_path / f"explore_{tab}.png").stat().st_size > 10_000
