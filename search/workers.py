"""Ray actors that evaluate candidates, the pool that keeps them, and the embedded local Ray instance.

The driver owns the ``ray.wait`` loop (see ``search.dispatch``); actors only evaluate and return plain dicts.
They never open the store.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from evaluators.outcome import Outcome
from evaluators.splits import VAL
from search.config import StudyConfig, import_plugins
from search.reaper import Reaper, start_in_own_group
from spaces import Space, get_space

# Set before Ray starts anywhere in this process (driver, CLI, tests): no login token, no usage stats.
RAY_ENV_DEFAULTS = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

# After the first actor is up, how long the pool's start waits for the others before work begins without them.
START_GRACE_SECONDS = 60.0

# The reaper of the embedded Ray instance this process started, if any (see search.reaper).
_reaper: Reaper | None = None


def ensure_ray(address: str | None, object_store_memory_mb: int, tmpdir: str | Path) -> bool:
    """Connect to ``address`` or start a private local instance; returns True if this call started Ray.

    An already-initialized Ray (a test session's shared instance) is reused as is.
    """
    global _reaper
    for key, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        return True
    tmp = Path(tmpdir).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_TMPDIR", str(tmp))
    _reaper = start_in_own_group(
        lambda: ray.init(
            num_cpus=os.cpu_count() or 1,
            object_store_memory=object_store_memory_mb * 1024 * 1024,
            include_dashboard=False,
            _temp_dir=str(tmp),
            log_to_driver=False,
            logging_level=logging.WARNING,  # Ray's own INFO lines ("Started a local Ray instance.") stay out
        )
    )
    return True


def stop_ray() -> None:
    """Disconnect from Ray; an embedded instance this process started is shut down with all its processes."""
    global _reaper
    ray.shutdown()
    if _reaper is not None:
        _reaper.release()
        _reaper = None


def start_ray_for(config: StudyConfig, runs_dir: Path) -> bool:
    """Connect to the configured cluster or start the embedded local Ray; True if this call started it."""
    tmpdir = config.ray.tmpdir or str(runs_dir / "ray")
    return ensure_ray(config.ray.address, config.ray.object_store_memory_mb, tmpdir)


@dataclass(frozen=True)
class SpaceSpec:
    """What a worker needs to build the study's space.

    The module that defines the space's class is imported first, so a space registered by any importable
    module (a plug-in, a test's own space) works in the workers, not only the built-ins.
    """

    module: str
    kind: str
    options: dict[str, Any]

    @classmethod
    def of(cls, space: Space, options: dict[str, Any]) -> SpaceSpec:
        return cls(type(space).__module__, space.kind, options)

    def build(self) -> Space:
        importlib.import_module(self.module)
        return get_space(self.kind, **self.options)


@ray.remote
class EvaluationWorker:
    """Holds one evaluator (and its datasets) for its whole life; trains on the GPU Ray assigned it, if any."""

    def __init__(
        self,
        name: str,
        space: SpaceSpec,
        evaluator_config: dict[str, Any],
        gpu_fraction: float = 0.0,
        imports: tuple[str, ...] = (),
    ):
        import_plugins(imports)  # the config's plug-ins register their datasets, archs and spaces here too
        import torch

        from evaluators import EvaluatorConfig, make_evaluator

        self.name = name
        config = EvaluatorConfig.model_validate(evaluator_config)
        torch.set_num_threads(config.threads)
        device = "cpu"
        self.gpu: dict[str, Any] = {}
        if config.device != "cpu" and ray.get_gpu_ids() and torch.cuda.is_available():
            # Ray sets CUDA_VISIBLE_DEVICES to the GPU(s) it assigned this actor, so "cuda" is that GPU.
            device = "cuda"
            memory_fraction = min(gpu_fraction, 1.0)
            if memory_fraction < 1:
                # Fractional GPUs are bookkeeping in Ray; cap this process's share of the memory ourselves.
                torch.cuda.set_per_process_memory_fraction(memory_fraction)
            self.gpu = {
                "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                "gpu_name": torch.cuda.get_device_name(),
                "gpu_memory_fraction": memory_fraction,
                "amp": config.amp,
            }
        elif config.device == "cuda":
            raise RuntimeError("evaluator.device is 'cuda' but this worker was given no GPU; set gpus_per_worker")
        self.evaluator = make_evaluator(space.build(), config, device=device)
        # How many jobs this worker takes at once: the proxy evaluator resolves "auto" from its proxies and device.
        self.candidates_per_batch = getattr(self.evaluator, "candidates_per_batch", None) or (
            1 if config.candidates_per_batch == "auto" else config.candidates_per_batch
        )
        self.host = socket.gethostname()
        self.node_id = ray.get_runtime_context().get_node_id()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "node_id": self.node_id,
            "pid": os.getpid(),
            **self.gpu,
            **self.evaluator.info(),
            "candidates_per_batch": self.candidates_per_batch,
        }

    def evaluate(self, job: dict[str, Any]) -> dict[str, Any]:
        started = time.time()
        outcome = self._outcome(job)
        return {
            "outcome": outcome.to_dict(),
            "worker": self.name,
            "started": started,
            "finished": time.time(),
        }

    def _outcome(self, job: dict[str, Any]) -> Outcome:
        return self.evaluator.evaluate(
            job["genome"],
            seed=job.get("seed", 0),
            steps=job.get("steps"),
            cascade=job.get("cascade", True),
            split=job.get("split", VAL),
            halving=job.get("halving"),
        )

    def evaluate_batch(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``evaluate`` for several jobs at once, one result each, in order: the proxy evaluator trains the jobs
        that share a training budget and split together (``ProxyEvaluator.evaluate_many``). Jobs with halving
        bars run one at a time: each stops at its own rung against its own bars, which stacking cannot follow."""
        started = time.time()
        outcomes: dict[int, Any] = {}
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, job in enumerate(jobs):
            if job.get("halving") is not None:
                outcomes[index] = self._outcome(job)
                continue
            groups.setdefault((job.get("steps"), job.get("cascade", True), job.get("split", VAL)), []).append(index)
        for (steps, cascade, split), indices in groups.items():
            genomes, seeds = [jobs[i]["genome"] for i in indices], [jobs[i].get("seed", 0) for i in indices]
            many = getattr(self.evaluator, "evaluate_many", None)
            if many is None:
                done = [
                    self.evaluator.evaluate(g, seed=s, steps=steps, cascade=cascade, split=split)
                    for g, s in zip(genomes, seeds, strict=True)
                ]
            else:
                done = many(genomes, seeds=seeds, steps=steps, cascade=cascade, split=split)
            outcomes.update(zip(indices, done, strict=True))
        finished = time.time()
        return [
            {"outcome": outcomes[i].to_dict(), "worker": self.name, "started": started, "finished": finished}
            for i in range(len(jobs))
        ]


class WorkerStartError(RuntimeError):
    """No worker could start: the cluster lacks what one worker asks for, or the worker's constructor fails."""


def cluster_capacity(num_cpus: float, num_gpus: float = 0.0) -> int:
    """How many workers of this size the cluster's live nodes hold in total (at least one)."""
    total = ray.cluster_resources()
    fits = [math.floor(total.get("CPU", 0.0) / num_cpus + 1e-9)] if num_cpus > 0 else []
    if num_gpus > 0:
        fits.append(math.floor(total.get("GPU", 0.0) / num_gpus + 1e-9))
    return max(1, min(fits)) if fits else 1


@dataclass
class Slot:
    """One actor and the jobs queued on it, oldest first. It gets jobs only once its constructor has run."""

    name: str
    actor: Any
    ready_ref: Any  # ObjectRef of the actor's info(): resolves when the actor is up
    jobs: list[Any] = field(default_factory=list)  # ObjectRefs in dispatch order
    info: dict[str, Any] | None = None  # set when ready

    @property
    def ready(self) -> bool:
        return self.info is not None

    @property
    def batch_size(self) -> int:
        """How many jobs the actor takes per call (its evaluator's ``candidates_per_batch``, resolved)."""
        return int((self.info or {}).get("candidates_per_batch", 1))


class WorkerPool:
    """Creates, replaces and tracks actors; the dispatcher decides what runs where.

    A replacement actor (or one added for a new node) only gets jobs once it is up, so an actor that cannot be
    placed yet (its node is gone and the cluster has no free CPU/GPU) holds no work. With ``autoscale`` the pool
    follows the cluster: it adds actors when nodes join and drops surplus actors that cannot be placed when nodes
    leave, up to ``max_size``.
    """

    def __init__(
        self,
        size: int,
        space: SpaceSpec,
        evaluator_config: dict[str, Any],
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        queue_per_worker: int = 2,
        autoscale: bool = False,
        max_size: int | None = None,
        start_timeout: float = 300.0,
        rescale_seconds: float = 2.0,
        imports: tuple[str, ...] = (),
    ):
        self.size = size
        self.imports = imports  # plug-in modules every actor imports first
        self.queue_per_worker = queue_per_worker
        self.autoscale = autoscale
        self.max_size = max_size
        self.start_timeout = start_timeout
        self.rescale_seconds = rescale_seconds
        self._args = (space, evaluator_config)
        self._options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": 0, "max_task_retries": 0}
        self.num_gpus = num_gpus  # per actor; Ray assigns the GPU, the actor caps its memory to this share
        self._counter = 0
        self._last_rescale = 0.0
        self._failed_starts = 0  # actor constructions in a row that died before the actor was up
        self._none_up_since: float | None = None  # since when no actor has been up (all lost or starting)
        self.slots: list[Slot] = []

    def start(self) -> list[dict[str, Any]]:
        """Start the actors and wait until they have built their evaluators (a bad config fails here, once).

        Waits up to ``start_timeout`` for the first actor and up to START_GRACE_SECONDS for the rest; actors still
        waiting for a node then (the Ray autoscaler is adding one) keep starting and take work once they are up.
        Returns the infos of the actors that are up.
        """
        self.slots = [self._new_slot() for _ in range(self.size)]
        refs = [s.ready_ref for s in self.slots]
        first, _ = ray.wait(refs, num_returns=1, timeout=self.start_timeout)
        if not first:
            raise WorkerStartError(self._no_worker_message(self.start_timeout))
        done = set(ray.wait(refs, num_returns=len(refs), timeout=START_GRACE_SECONDS)[0])
        for slot in self.slots:
            if slot.ready_ref in done:
                try:
                    slot.info = ray.get(slot.ready_ref)
                except RayActorError as exc:  # the constructor failed: a bad evaluator config, once for all
                    cause = str(exc.__cause__ or exc).strip().splitlines()[-1]
                    raise WorkerStartError(f"workers could not start: {cause}") from None
        self._last_rescale = time.time()
        return self.infos()

    def infos(self) -> list[dict[str, Any]]:
        """The infos of the actors that are up."""
        return [s.info for s in self.slots if s.info is not None]

    def _new_slot(self) -> Slot:
        self._counter += 1
        name = f"worker-{self._counter}"
        actor = EvaluationWorker.options(**self._options).remote(
            name, *self._args, gpu_fraction=self.num_gpus, imports=self.imports
        )
        return Slot(name, actor, actor.info.remote())

    def free_slot(self) -> Slot | None:
        """The least loaded actor that is up and has room in its queue.

        An actor that takes batches holds one at a time: a batch keeps it busy for a while already, and jobs
        chosen later are chosen knowing more (and a budget's tail stays one batch long).
        """
        open_slots = [s for s in self.slots if s.ready and len(s.jobs) < self._queue(s)]
        return min(open_slots, key=lambda s: len(s.jobs)) if open_slots else None

    def _queue(self, slot: Slot) -> int:
        return 1 if slot.batch_size > 1 else self.queue_per_worker

    def submit(self, slot: Slot, jobs: list[dict[str, Any]]) -> Any:
        """Queue one call on the actor: ``evaluate`` for one job, ``evaluate_batch`` for several."""
        ref = slot.actor.evaluate.remote(jobs[0]) if len(jobs) == 1 else slot.actor.evaluate_batch.remote(jobs)
        slot.jobs.append(ref)
        return ref

    def replace(self, slot: Slot) -> list[Any]:
        """Kill an actor (dead or hung) and start a fresh one in its place; returns the refs it held."""
        lost = list(slot.jobs)
        _kill(slot.actor)
        self.slots[self.slots.index(slot)] = self._new_slot()
        return lost

    def maintain(self) -> list[dict[str, Any]]:
        """Notice actors that came up, restart ones that died while starting, follow the cluster's size.

        Returns the infos of actors that came up since the last call. Raises WorkerStartError when no actor has
        been up for ``start_timeout`` seconds, or actors keep dying in their constructor.
        """
        started = self._collect_started()
        if self.autoscale and time.time() - self._last_rescale >= self.rescale_seconds:
            self._rescale()
        if any(s.ready for s in self.slots):
            self._none_up_since = None
        else:
            self._none_up_since = self._none_up_since or time.time()
            waited = time.time() - self._none_up_since
            if waited > self.start_timeout:
                raise WorkerStartError(self._no_worker_message(waited))
        return started

    def wait_for_start(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds for a starting actor to come up (when nothing else can happen)."""
        starting = [s.ready_ref for s in self.slots if not s.ready]
        if starting:
            ray.wait(starting, num_returns=1, timeout=timeout)
        else:
            time.sleep(timeout)

    def _collect_started(self) -> list[dict[str, Any]]:
        starting = {s.ready_ref: s for s in self.slots if not s.ready}
        if not starting:
            return []
        done, _ = ray.wait(list(starting), num_returns=len(starting), timeout=0)
        started = []
        for ref in done:
            slot = starting[ref]
            try:
                slot.info = ray.get(ref)
            except RayError as exc:  # its node went away while it started, or its constructor raised
                self._failed_starts += 1
                if self._failed_starts > max(3, len(self.slots)):
                    raise WorkerStartError(f"workers keep dying while they start; last: {exc}") from None
                self.replace(slot)
                continue
            self._failed_starts = 0
            started.append(slot.info)
        return started

    def _rescale(self) -> None:
        self._last_rescale = time.time()
        target = cluster_capacity(self._options["num_cpus"], self._options["num_gpus"])
        if self.max_size is not None:
            target = min(target, self.max_size)
        while len(self.slots) < target:
            self.slots.append(self._new_slot())
        surplus = len(self.slots) - target
        for slot in [s for s in self.slots if not s.ready and not s.jobs][:surplus]:
            _kill(slot.actor)
            self.slots.remove(slot)

    def _no_worker_message(self, waited: float) -> str:
        cpus, gpus = self._options["num_cpus"], self._options["num_gpus"]
        wanted = f"{cpus:g} CPU" + (f" and {gpus:g} GPU" if gpus else "")
        return (
            f"no worker could start for {waited:.0f} s: no node of the Ray cluster has {wanted} free for one "
            "(check `ray status`; lower resources.cpus_per_worker / gpus_per_worker or add nodes)"
        )

    def shutdown(self) -> None:
        for slot in self.slots:
            _kill(slot.actor)
        self.slots = []


def make_pool(config: StudyConfig, space: Space, workers: int | None = None) -> WorkerPool:
    """A pool sized by ``workers`` (the CLI's), else the config's, else what the cluster holds now.

    With ``resources.autoscale`` the pool starts at what the cluster holds (capped by the worker count, if given)
    and follows the cluster as nodes join and leave. ``gpus_per_worker`` counts only if the cluster has a GPU now
    (an autoscaling cluster should keep one GPU node up: min_workers 1 in ray_cluster.yaml).
    """
    res = config.resources
    limit = res.workers if workers is None else workers
    # CPU-only machines run GPU configs: with no GPU in the cluster the workers ask for none and train on CPU.
    gpus = res.gpus_per_worker if ray.cluster_resources().get("GPU", 0.0) > 0 else 0.0
    capacity = cluster_capacity(res.cpus_per_worker, gpus)
    if res.autoscale:
        size = capacity if limit is None else min(capacity, limit)
    else:
        size = capacity if limit is None else limit
    in_flight = res.max_in_flight or 2 * size
    queue = max(1, math.ceil(in_flight / size))
    return WorkerPool(
        size,
        SpaceSpec.of(space, config.space.options),
        config.evaluator.model_dump(),
        num_cpus=res.cpus_per_worker,
        num_gpus=gpus,
        queue_per_worker=queue,
        autoscale=res.autoscale,
        max_size=limit,
        imports=tuple(config.imports),
    )


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already dead is fine
        pass
