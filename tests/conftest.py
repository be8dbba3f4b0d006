"""Shared fixtures: one real Ray instance per test session, study configs, stores on real SQLite files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The session's Ray instance (started once; short temp path because Ray's socket paths are length-limited)."""
    import ray

    tmp = tempfile.mkdtemp(prefix="lfray", dir="/tmp")
    os.environ["RAY_TMPDIR"] = tmp
    ray.init(num_cpus=4, object_store_memory=128 * 1024 * 1024, include_dashboard=False, _temp_dir=tmp,
             log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def study_config(name: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A small activation study on the synthetic evaluator (no training), as a plain config dict."""
    config: dict[str, Any] = {
        "name": name,
        "seed": 7,
        "space": {"kind": "activation", "options": {"schema": "tree", "max_depth": 3}},
        "algorithm": {"name": "evolution", "options": {"population_size": 8, "tournament_size": 3}},
        "evaluator": {
            "kind": "synthetic",
            "objectives": [{"name": "val_acc@mlp", "direction": "max"}],
            "synthetic": {"seconds": 0.02},
            "timeout_seconds": 30,
        },
        "budget": {"evaluations": 30},
        "resources": {"workers": 2},
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[key] = value
    return config
