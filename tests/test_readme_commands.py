"""Every `layerforge` command README.md gives for the quickstart's store runs, verbatim, after a quickstart.

The store comes from a quickstart-shaped study: configs/quickstart.yaml (its space, baselines, objectives, budget
shape, store path and export), with the synthetic evaluator in place of training so the test takes a minute, named
`quickstart-YYYYmmdd-HHMMSS` as `make quickstart` names it, in a fresh folder holding the repository's `.venv` and
`configs` as a clone would. The commands then run as written, each in its own process, in README order.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from search.store import Store

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("## Using LayerForge", "### Study configs")  # the quickstart's follow-up commands lie between these
STORE = "runs/quickstart.db"


def readme_commands() -> list[str]:
    """The `layerforge` lines of the section's bash blocks that work on the quickstart's store (not `launch`)."""
    section = (REPO / "README.md").read_text().split(SECTIONS[0], 1)[1].split(SECTIONS[1], 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```bash\n")[1:]]
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith(".venv/bin/layerforge ") and f"sqlite:///{STORE}" in line]


def _environment() -> dict[str, str]:
    """A user's shell: no pytest Ray instance to find, no default store."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR", "LAYERFORGE_DB")}
    return {**env, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def after_quickstart(ray_address: str) -> Iterator[Path]:
    """A folder laid out like a clone after `make quickstart`; a short path, since Ray's socket paths are limited."""
    folder = Path(tempfile.mkdtemp(prefix="lfrd", dir="/tmp"))
    (folder / ".venv").symlink_to(REPO / ".venv")
    (folder / "configs").symlink_to(REPO / "configs")
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    config["evaluator"] = {
        "kind": "synthetic",
        "objectives": config["evaluator"]["objectives"],
        "synthetic": {"seconds": 0.02},
        "timeout_seconds": 30,
    }
    config["budget"] = {"evaluations": 24}
    config["resources"] = {"workers": 2}
    assert config["store"]["url"] == f"sqlite:///{STORE}", "the README's commands name the quickstart's store"
    (folder / "quickstart_synthetic.yaml").write_text(yaml.safe_dump(config))
    name = f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    launched = subprocess.run(
        [".venv/bin/layerforge", "launch", "quickstart_synthetic.yaml", "--name", name, "--address", ray_address],
        cwd=folder,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_readme_names_the_quickstart_commands() -> None:
    verbs = [shlex.split(line, comments=True)[1] for line in readme_commands()]
    for verb in ("list", "status", "resume", "rerank", "export", "tag", "note", "rename", "delete"):
        assert verb in verbs, f"README's quickstart commands lost `{verb}`: {verbs}"


@pytest.mark.slow
def test_every_readme_command_runs_verbatim_after_the_quickstart(after_quickstart: Path) -> None:
    store = Store(f"sqlite:///{after_quickstart / STORE}", read_only=True)
    (study,) = store.list_studies()
    for line in readme_commands():
        args = shlex.split(line, comments=True)
        done = subprocess.run(
            args,
            cwd=after_quickstart,
            env=_environment(),
            input="y\n" if args[1] == "delete" else None,  # the README says it asks first
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{line}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, line
        if args[1] in ("status", "list"):
            assert study.name in done.stdout, line
        if args[1] == "export":
            assert (after_quickstart / args[args.index("--out") + 1] / "manifest.json").exists(), line
        if args[1] == "rerank":
            assert "the best baseline," in done.stdout, done.stdout
    assert store.list_studies() == [], "the README's last command deletes the study"
    store.close()
