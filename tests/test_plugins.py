"""User plug-ins: the modules a config's `imports:` names are imported in the driver and in every Ray worker.

Run from the repository root, as the suite is: Ray's workers find `examples` in the driver's working directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from evaluators import registry
from evaluators.registry import UnknownComponentError, get_arch, get_dataset
from search.config import ConfigError, parse_config
from search.runner import StudyRunner
from search.store import Store
from tests.conftest import study_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "user_task.yaml"
PLUGIN = "examples.user_task.task"


@pytest.fixture
def plugin_not_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as it was before anything imported the example (other tests import it directly)."""
    for module in [name for name in sys.modules if name.startswith("examples.user_task")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.delitem(registry._DATASETS, "user_rings", raising=False)
    monkeypatch.delitem(registry._ARCHS, "user_resmlp", raising=False)


def test_the_example_task_runs_on_ray_workers_that_import_it(
    ray_address: str, tmp_path: Path, plugin_not_imported: None
) -> None:
    with pytest.raises(UnknownComponentError):  # nothing in this process registered the user's task before the study
        get_dataset("user_rings")
    assert PLUGIN not in sys.modules
    config = yaml.safe_load(EXAMPLE.read_text())
    config["store"]["url"] = f"sqlite:///{tmp_path / 'store.db'}"
    config["budget"] = {"evaluations": 4}
    config["evaluator"]["proxies"][0]["steps"] = 60

    cfg = parse_config(config, str(EXAMPLE))
    get_dataset("user_rings"), get_arch("user_resmlp")  # the driver imported the plug-in while parsing
    runner = StudyRunner(cfg, Store(cfg.store.url), progress=False)
    runner.run()

    study = runner.store.get_study("user_task")
    rows = runner.store.evaluations(study.id, purpose="search")
    finished = [e for _, e in rows if e.status in ("done", "rejected", "failed")]
    assert study.status == "finished" and len(finished) == 4
    baselines = {c.seed_name: e for c, e in rows if c.seed_name}
    assert {name: e.status for name, e in baselines.items()} == {"relu": "done", "gelu": "done", "silu": "done"}
    assert all(e.worker and e.metrics["val_acc@rings"] > 0.375 for e in baselines.values())
    assert study.config["imports"] == [PLUGIN]  # a resumed study imports it again


def test_a_module_that_cannot_be_imported_is_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    config = study_config("missing", tmp_path, imports=["no_such_package.tasks"])
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    message = str(caught.value)
    assert "\n" not in message
    assert "imports: cannot import 'no_such_package.tasks'" in message
    assert "ModuleNotFoundError: No module named 'no_such_package'" in message
    assert "PYTHONPATH" in message


def test_a_module_name_must_be_a_dotted_python_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a module name"):
        parse_config(study_config("bad", tmp_path, imports=["examples/user_task/task.py"]))
