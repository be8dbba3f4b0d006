"""Cluster searches: the cluster launcher configs pass Ray's own validation, and a study on a simulated
multi-node cluster (the session's `ray.cluster_utils.Cluster`) uses a node that joins and loses nothing when
a node goes away."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.cluster_utils import Cluster

from search.config import parse_config
from search.runner import StudyRunner
from search.store import Store
from tests.conftest import start_study_in_thread, study_config

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("done", "rejected", "failed")


@pytest.mark.parametrize("name", ["ray_cluster.yaml", "ray_cluster.local.yaml"])
def test_cluster_launcher_config_passes_rays_validation(name: str) -> None:
    config = yaml.safe_load((ROOT / name).read_text())
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before it validates
    validate_config(prepared)
    for local_path in config["file_mounts"].values():
        assert (ROOT / local_path).exists(), f"file_mounts source {local_path} is not in the repository"
    assert any("pip install" in c and "~/layerforge" in c for c in config["setup_commands"])
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])
    misspelt = copy.deepcopy(config)
    misspelt["setup_comands"] = misspelt.pop("setup_commands")
    with pytest.raises(Exception, match="setup_comands"):
        validate_config(prepare_config(misspelt))


def test_aws_config_has_a_cpu_head_and_autoscaling_gpu_workers() -> None:
    config = prepare_config(yaml.safe_load((ROOT / "ray_cluster.yaml").read_text()))
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU"), "evaluations stay off the head"
    (worker,) = types.values()
    assert worker["resources"]["GPU"] >= 1 and worker["max_workers"] > worker["min_workers"]


class ClusterNodes:
    """Adds nodes to the session's cluster for one test; the test's nodes are removed at its end, the head never."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.added: list[Any] = []

    def add(self, num_cpus: int) -> Any:
        node = self.cluster.add_node(num_cpus=num_cpus, object_store_memory=80 * 1024 * 1024)
        self.cluster.wait_for_nodes()
        self.added.append(node)
        return node

    def remove(self, node: Any) -> None:
        """Kill the node's processes at once, as when a machine or a spot instance goes away."""
        self.added.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)


@pytest.fixture
def cluster_nodes(ray_cluster: Cluster) -> Iterator[ClusterNodes]:
    nodes = ClusterNodes(ray_cluster)
    yield nodes
    for node in list(nodes.added):
        nodes.remove(node)


def _finished(store: Store, study_id: int) -> list:
    return [(c, e) for c, e in store.evaluations(study_id) if e.status in FINAL]


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def _node_of_worker(store: Store, study_id: int) -> dict[str, str]:
    """Worker name -> node id, from the study's "workers" events (at the start and whenever workers come up)."""
    return {
        w["name"]: w["node_id"] for ev in store.events(study_id) if ev.kind == "workers" for w in ev.data["workers"]
    }


def _assert_complete(store: Store, name: str, budget: int) -> tuple[Any, list]:
    """The study ended with exactly its budget of finished evaluations, none duplicated, none left in flight."""
    study = store.get_study(name)
    rows = store.evaluations(study.id)
    finished = [(c, e) for c, e in rows if e.status in FINAL]
    assert study.status == "finished"
    assert len(finished) == budget
    assert len({c.key for c, _ in finished}) == budget, "a candidate was evaluated twice"
    assert len({e.candidate_id for _, e in rows}) == len(rows), "a candidate got two evaluation rows"
    assert not [e for _, e in rows if e.status in ("pending", "running")], "an evaluation was left in flight"
    return study, finished


def test_node_added_mid_study_gets_work(cluster_nodes: ClusterNodes, tmp_path: Path) -> None:
    """The budget is far more than the test needs: the study runs until the pool has grown onto the new node and a
    worker there has finished an evaluation, however long that takes on a loaded machine, and is then stopped as
    Ctrl-C does."""
    config = study_config("grow", tmp_path, budget={"evaluations": 5000})
    config["resources"] = {"autoscale": True}
    config["evaluator"]["synthetic"] = {"seconds": 0.5}
    runner, store, thread = start_study_in_thread(config)
    assert len(runner.worker_infos) == 4  # the head node's CPUs
    node = cluster_nodes.add(num_cpus=2)
    study_id = runner.study.id

    def grown_and_used() -> bool:
        nodes = _node_of_worker(store, study_id)
        workers_there = sum(1 for n in nodes.values() if n == node.node_id)
        return workers_there == 2 and any(nodes.get(e.worker) == node.node_id for _, e in _finished(store, study_id))

    _wait_until(grown_and_used, 180, "two workers started on the new node and one of them finished an evaluation")
    runner.request_stop()
    thread.join(timeout=120)
    assert not thread.is_alive()
    on_node = sum(1 for n in _node_of_worker(store, study_id).values() if n == node.node_id)
    assert on_node == 2, "the pool grew past the new node's 2 CPUs"
    finished = _finished(store, study_id)
    assert len({c.key for c, _ in finished}) == len(finished), "a candidate was evaluated twice"


@pytest.mark.parametrize(
    "autoscale", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["fixed_pool", "autoscale"]
)
def test_node_lost_mid_study_requeues_its_candidates(
    cluster_nodes: ClusterNodes, tmp_path: Path, autoscale: bool
) -> None:
    node = cluster_nodes.add(num_cpus=2)
    config = study_config("shrink", tmp_path, budget={"evaluations": 32})
    config["resources"] = {"autoscale": autoscale}
    config["evaluator"]["synthetic"] = {"seconds": 1.0}
    runner, store, thread = start_study_in_thread(config)
    doomed = {w["name"] for w in runner.worker_infos if w["node_id"] == node.node_id}
    assert len(doomed) == 2, "the study's workers did not spread over both nodes"
    study_id = runner.study.id
    _wait_until(lambda: len(_finished(store, study_id)) >= 8, 120, "8 evaluations finished")
    before = {c.id: (e.status, e.objectives) for c, e in _finished(store, study_id)}
    # The driver's own view of what runs where (rows are only written when an evaluation ends).
    in_flight = {job.evaluation_id for job, slot in list(runner.dispatcher.in_flight.values()) if slot.name in doomed}
    cluster_nodes.remove(node)
    thread.join(timeout=180)
    assert not thread.is_alive()
    study, finished = _assert_complete(store, "shrink", 32)
    after = {c.id: (e.status, e.objectives) for c, e in finished}
    assert all(after[cid] == value for cid, value in before.items()), "a finished evaluation was lost or changed"
    assert all(e.status == "done" for _, e in finished), "node loss must not fail a candidate"
    assert in_flight, "no candidate was running on the lost node"
    # Some may have finished on the node between the snapshot and its loss; the others ran again elsewhere.
    rerun = [e for _, e in finished if e.id in in_flight and e.worker not in doomed]
    assert rerun, "no candidate of the lost node was re-run on another"
    assert any(e.attempt == 2 for e in rerun), "the candidates running on the lost node were not re-run"
    (end,) = [ev for ev in store.events(study.id) if ev.kind == "finished"]
    assert end.data["replaced_workers"] == 2


def test_gpu_config_runs_on_a_cpu_only_machine(ray_address: str, tmp_path: Path) -> None:
    """Fractional GPUs and mixed precision are settings for GPU machines; without a GPU the study trains on CPU."""
    config = study_config("gpu-on-cpu", tmp_path, budget={"evaluations": 4})
    config["resources"] = {"workers": 2, "gpus_per_worker": 0.25}
    config["evaluator"] = {
        "kind": "proxy",
        "amp": True,
        "proxies": [{"name": "mlp", "arch": "mlp", "dataset": "digits", "steps": 30, "arch_options": {"hidden": [16]}}],
        "rejection": {"quality_gate": {"enabled": False}, "numeric_probe": {"enabled": False}},
        "objectives": [{"name": "val_acc@mlp"}],
    }
    cfg = parse_config(config)
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()
    study, finished = _assert_complete(store, "gpu-on-cpu", 4)
    assert all(e.status == "done" for _, e in finished)
    (workers,) = [ev.data["workers"] for ev in store.events(study.id) if ev.kind == "workers"]
    assert [w["device"] for w in workers] == ["cpu", "cpu"] and not any("gpu_ids" in w for w in workers)


def test_fractional_gpus_above_one_must_be_whole(tmp_path: Path) -> None:
    config = study_config("gpus", tmp_path)
    config["resources"] = {"gpus_per_worker": 1.5}
    with pytest.raises(ValueError, match="gpus_per_worker above 1 must be a whole number"):
        parse_config(config)
