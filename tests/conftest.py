"""Shared fixtures: one real Ray cluster per test session, a real PostgreSQL server, study configs."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.pg import POSTGRES_BIN_GLOB, PostgresServer, find_postgres_bin

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

    from search.runner import StudyRunner
    from search.store import Store, StudyRow

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    """The session's one Ray instance: a simulated cluster whose head node (4 CPUs) runs everything
    unless a test adds nodes (tests/test_cluster.py). Short temp path: Ray's socket paths are length-limited."""
    import ray
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="lfray", dir="/tmp")
    os.makedirs(os.path.join(tmp, "ray"))  # the cluster writes its address file here
    os.environ["RAY_TMPDIR"] = tmp
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 4,
            "object_store_memory": 128 * 1024 * 1024,
            "include_dashboard": False,
            "temp_dir": tmp,
        },
    )
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_cluster: Cluster) -> str:
    """Address of the session's Ray instance, for runners and `layerforge --address` subprocesses."""
    return ray_cluster.address


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server on a free loopback port for the session; each test takes its own database."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.skip(f"PostgreSQL server binaries not found ({POSTGRES_BIN_GLOB}); run scripts/install_system_deps.sh")
    server = PostgresServer(bin_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store at ``store_url``, open for writing, closed after the test."""
    from search.store import Store

    store = Store(store_url)
    yield store
    store.close()


def add_study(store: Store, name: str = "s") -> StudyRow:
    """A study row written straight to the store (no driver), budgeted for ten evaluations."""
    return store.create_study(
        name,
        space="activation",
        algorithm="evolution",
        seed=1,
        config={"name": name},
        objectives=[{"name": "val_acc@mlp", "direction": "max"}],
        budget_evaluations=10,
        budget_minutes=None,
    )


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


def start_study_in_thread(config: dict[str, Any]) -> tuple[StudyRunner, Store, threading.Thread]:
    """Run a study in a background thread; return once its workers are up (for tests that disturb it)."""
    from search.config import parse_config
    from search.runner import StudyRunner
    from search.store import Store

    cfg = parse_config(config)
    store = Store(cfg.store.url)
    runner = StudyRunner(cfg, store, progress=False)
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.time() + 120
    while not getattr(runner, "worker_infos", None) and time.time() < deadline:
        time.sleep(0.1)
    assert runner.worker_infos, "the study's workers did not start"
    return runner, store, thread
