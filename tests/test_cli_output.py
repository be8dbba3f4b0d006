"""What a user sees of a launch whose output goes to a log file, and the README's exported-module snippet."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from rich.console import Console

from evaluators.config import Objective
from evaluators.vocabulary import Status
from search.progress import CountProgress, StudyProgress
from tests.conftest import study_config

LAYERFORGE = str(Path(sys.executable).with_name("layerforge"))
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def launched(ray_address: str, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One `layerforge launch` with stdout and stderr captured (not a terminal), exporting its best layers."""
    tmp = tmp_path_factory.mktemp("cli_output")
    config = study_config("logged-run", tmp, budget={"evaluations": 12}, export={"out": str(tmp / "out"), "top": 2})
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [LAYERFORGE, "launch", str(path), "--address", ray_address],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return done, tmp


def test_a_logged_launch_shows_plain_progress_lines_and_no_ray_info(launched) -> None:
    done, _ = launched
    lines = [line for line in done.stderr.splitlines() if line.startswith("logged-run: ")]
    assert lines, done.stderr
    assert re.search(r"logged-run: 12/12 finished \| done \d+ .* \| best val_acc@mlp=\S+ \| [\d.]+ eval/min", lines[-1])
    assert "Started a local Ray instance" not in done.stderr + done.stdout
    assert "Connected to Ray cluster" not in done.stderr + done.stdout


def test_launch_ends_with_follow_up_commands_that_work(launched) -> None:
    done, tmp = launched
    db = f"--db sqlite:///{tmp / 'store.db'}"
    commands = done.stdout.split("next:", 1)[1].split("\n")
    commands = [c.strip() for c in commands if c.strip()]
    verbs = [shlex.split(c)[1] for c in commands]
    assert verbs == ["status", "dashboard", "export", "rerank"], commands
    assert all(c.endswith(db) for c in commands), commands
    status = subprocess.run(shlex.split(commands[0]), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert status.returncode == 0, status.stderr
    assert "logged-run" in status.stdout


def test_progress_lines_come_at_the_interval_and_at_the_end() -> None:
    out = io.StringIO()
    progress = StudyProgress("s", Objective(name="val_acc@mlp"), 3, Console(file=out), show=True, plain_every=3600)
    with progress:
        progress.refresh()  # the first line, at the start
        progress.record(Status.DONE, {"val_acc@mlp": 0.5})
        progress.refresh()  # within the interval: nothing
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("s: 0/3 finished | done 0")
    assert lines[1].startswith("s: 1/3 finished | done 1") and "best val_acc@mlp=0.5" in lines[1]


def test_job_counts_in_a_log_come_at_the_interval_and_at_the_end() -> None:
    out = io.StringIO()
    with CountProgress(Console(file=out), "rerank s", 4, plain_every=0) as progress:
        progress.advance()
        progress.plain_every = 3600
        progress.advance(2)  # within the interval: nothing
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["rerank s: 1/4 done", "rerank s: 3/4 done"], lines


def _readme_snippet() -> str:
    """The Python block under "Exported layers" in README.md."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Exported layers", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_snippet_loads_an_export_that_compiles_and_scripts(launched) -> None:
    _, tmp = launched
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    entry = manifest["candidates"][0]
    snippet = re.sub(r'"runs/quickstart_export/\w+\.py"', repr(str(tmp / "out" / entry["module"])), _readme_snippet())
    snippet = snippet.replace("ActivationC42", entry["class_name"])
    assert entry["class_name"] in snippet and entry["module"] in snippet
    namespace: dict = {}
    try:
        exec(compile(snippet, "README.md", "exec"), namespace)
        layer = namespace["layer"]
        x = torch.linspace(-5, 5, 101)
        with torch.no_grad():
            expected = layer(x)
            torch.testing.assert_close(torch.compile(layer)(x), expected, equal_nan=True)
            torch.testing.assert_close(torch.jit.script(layer)(x), expected, equal_nan=True)
    finally:
        sys.modules.pop("act", None)
