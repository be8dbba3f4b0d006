"""The embedded Ray instance goes away with its driver, a SIGKILLed one included; nothing else is touched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from evaluators.vocabulary import FINISHED
from search.store import Store
from tests.conftest import study_config

LAYERFORGE = str(Path(sys.executable).with_name("layerforge"))
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the test reads /proc (Linux)")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the name (state first), or None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(root: int) -> dict[int, str]:
    """Every live process below ``root``, as pid -> start time (a reused pid is not the same process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            fields = _stat(child)
            if fields is not None:
                found[child] = fields[19]
                todo.append(child)
    return found


def _still_running(processes: dict[int, str]) -> list[int]:
    alive = []
    for pid, started in processes.items():
        fields = _stat(pid)
        if fields is not None and fields[0] not in ("Z", "X") and fields[19] == started:
            alive.append(pid)
    return alive


# A driver stand-in: it starts a child the way ray.init starts Ray's processes, one more child afterwards (not
# Ray's), prints both pids, and waits to be killed.
FAKE_DRIVER = """
import subprocess, time
from search.reaper import start_in_own_group
started = []
start_in_own_group(lambda: started.append(subprocess.Popen(["sleep", "60"])))
other = subprocess.Popen(["sleep", "60"])
print(started[0].pid, other.pid, flush=True)
time.sleep(60)
"""


def test_the_reaper_ends_a_killed_drivers_ray_group_and_nothing_else() -> None:
    driver = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER], stdout=subprocess.PIPE, text=True)
    ray_pid, other_pid = (int(p) for p in driver.stdout.readline().split())
    ray_process, other_process = ({pid: _stat(pid)[19]} for pid in (ray_pid, other_pid))
    try:
        assert os.getpgid(ray_pid) != os.getpgid(other_pid) == os.getpgid(driver.pid) == os.getpgrp()
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 10
        while _still_running(ray_process) and time.time() < deadline:
            time.sleep(0.1)
        assert not _still_running(ray_process), "the reaper left the dead driver's group alive"
        assert _still_running(other_process), "the reaper ended a process outside Ray's group"
    finally:
        for pid in (ray_pid, other_pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_a_sigkilled_driver_leaves_no_process_of_its_ray_instance(tmp_path: Path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="lfk", dir="/tmp")  # short: Ray's socket paths are length-limited
    config = study_config("reaped", tmp_path, budget={"evaluations": 500})
    config["evaluator"]["synthetic"] = {"seconds": 0.5}
    config["ray"] = {"tmpdir": ray_tmp}
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp}
    driver = subprocess.Popen(
        [LAYERFORGE, "launch", str(config_path), "--no-progress"],  # no --address: its own embedded Ray
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = Store(config["store"]["url"])
    ray_processes: dict[int, str] = {}
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert driver.poll() is None, driver.stderr.read()
            try:
                counts = store.count_by_status(store.get_study("reaped").id)
            except Exception:  # noqa: BLE001 - the study is not created yet
                counts = {}
            if sum(n for status, n in counts.items() if status in FINISHED) >= 2:
                break
            time.sleep(0.5)
        time.sleep(2)  # let Ray's agents settle
        ray_processes = _descendants(driver.pid)
        assert len(ray_processes) >= 5, ray_processes  # GCS, raylet, agents, workers: all below the driver
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 30
        while _still_running(ray_processes) and time.time() < deadline:
            time.sleep(0.5)
        assert not _still_running(ray_processes), "processes of the dead driver's Ray instance are still running"
    finally:
        for pid in _still_running(ray_processes):  # only this test's own instance
            os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()
        store.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
