"""Ray actors that evaluate candidates, and the embedded local Ray instance.

The driver owns the ``ray.wait`` loop (see ``search.runner``); actors only evaluate and return plain dicts.
They never open the store.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

# Set before Ray starts anywhere in this process (driver, CLI, tests): no login token, no usage stats.
RAY_ENV_DEFAULTS = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def ensure_ray(address: str | None, object_store_memory_mb: int, tmpdir: str | Path) -> bool:
    """Connect to ``address`` or start a private local instance; returns True if this call started Ray.

    An already-initialized Ray (a test session's shared instance) is reused as is.
    """
    for key, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    tmp = Path(tmpdir).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_TMPDIR", str(tmp))
    ray.init(
        num_cpus=os.cpu_count() or 1,
        object_store_memory=object_store_memory_mb * 1024 * 1024,
        include_dashboard=False,
        _temp_dir=str(tmp),
        log_to_driver=False,
    )
    return True


@ray.remote
class EvaluationWorker:
    """Holds one evaluator (and its datasets) for its whole life; trains on the GPU Ray assigned it, if any."""

    def __init__(
        self,
        name: str,
        space_kind: str,
        space_options: dict[str, Any],
        evaluator_config: dict[str, Any],
        gpu_fraction: float = 0.0,
    ):
        import torch

        from evaluators import EvaluatorConfig, make_evaluator
        from spaces import get_space

        self.name = name
        config = EvaluatorConfig.model_validate(evaluator_config)
        torch.set_num_threads(config.threads)
        device = "cpu"
        if config.device != "cpu" and ray.get_gpu_ids() and torch.cuda.is_available():
            device = "cuda"
            if 0 < gpu_fraction < 1:
                # Fractional GPUs are bookkeeping in Ray; cap this process's share of the memory ourselves.
                torch.cuda.set_per_process_memory_fraction(gpu_fraction)
        elif config.device == "cuda":
            raise RuntimeError("evaluator.device is 'cuda' but this worker was given no GPU; set gpus_per_worker")
        self.evaluator = make_evaluator(get_space(space_kind, **space_options), config, device=device)
        self.host = socket.gethostname()
        self.node_id = ray.get_runtime_context().get_node_id()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "node_id": self.node_id,
            "pid": os.getpid(),
            **self.evaluator.info(),
        }

    def evaluate(self, job: dict[str, Any]) -> dict[str, Any]:
        started = time.time()
        outcome = self.evaluator.evaluate(
            job["genome"], seed=job.get("seed", 0), steps=job.get("steps"), cascade=job.get("cascade", True)
        )
        return {
            "outcome": outcome.to_dict(),
            "worker": self.name,
            "started": started,
            "finished": time.time(),
        }


@dataclass
class Slot:
    """One actor and the jobs queued on it, oldest first."""

    name: str
    actor: Any
    jobs: list[Any] = field(default_factory=list)  # ObjectRefs in dispatch order
    idle_since: float = field(default_factory=time.time)


class WorkerPool:
    """Creates, replaces and tracks actors; the runner decides what runs where."""

    def __init__(
        self,
        size: int,
        space_kind: str,
        space_options: dict[str, Any],
        evaluator_config: dict[str, Any],
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        queue_per_worker: int = 2,
    ):
        self.size = size
        self.queue_per_worker = queue_per_worker
        self._args = (space_kind, space_options, evaluator_config)
        self._options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": 0, "max_task_retries": 0}
        self._gpu_fraction = num_gpus
        self._counter = 0
        self.slots: list[Slot] = []

    def start(self, timeout: float = 300.0) -> list[dict[str, Any]]:
        """Start all actors and wait until each has built its evaluator (a bad config fails here, once)."""
        self.slots = [self._new_slot() for _ in range(self.size)]
        return ray.get([s.actor.info.remote() for s in self.slots], timeout=timeout)

    def _new_slot(self) -> Slot:
        self._counter += 1
        name = f"worker-{self._counter}"
        actor = EvaluationWorker.options(**self._options).remote(name, *self._args, gpu_fraction=self._gpu_fraction)
        return Slot(name, actor)

    def free_slot(self) -> Slot | None:
        """The least loaded actor with room in its queue."""
        open_slots = [s for s in self.slots if len(s.jobs) < self.queue_per_worker]
        return min(open_slots, key=lambda s: len(s.jobs)) if open_slots else None

    def submit(self, slot: Slot, job: dict[str, Any]) -> Any:
        ref = slot.actor.evaluate.remote(job)
        slot.jobs.append(ref)
        return ref

    def replace(self, slot: Slot) -> list[Any]:
        """Kill an actor (dead or hung) and start a fresh one in its place; returns the refs it held."""
        lost = list(slot.jobs)
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead is fine
            pass
        index = self.slots.index(slot)
        self.slots[index] = self._new_slot()
        return lost

    def shutdown(self) -> None:
        for slot in self.slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass
        self.slots = []
