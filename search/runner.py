"""The study driver: checks the config, opens the study, starts the workers and runs the dispatch loop to the
budget; resumable from the store alone. What a run does with proposals and results is ``search.study_run``'s.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from rich.console import Console

from evaluators.proxy import AGGREGATE_METRICS
from evaluators.registry import get_arch, get_dataset
from evaluators.table import load_table
from evaluators.training import metric_names
from evaluators.vocabulary import StudyStatus
from search.algorithms import Algorithm, make_algorithm
from search.config import ConfigError, StudyConfig, import_plugins, parse_config
from search.dispatch import Dispatcher
from search.lease import StudyBusyError, StudyLease, describe
from search.store import LeaseRow, Store, StoreError, StudyRow, utcnow
from search.study_run import StudyRun
from search.workers import WorkerPool, make_pool, start_ray_for, stop_ray
from spaces import Genome, GenomeError, Space, get_space


class StudyRunner:
    """Runs (or resumes) one study to its budget. Only the driver (this object and its run) writes to the store."""

    #: What one run does with proposals and results; benchmarks time a subclass.
    run_class: ClassVar[type[StudyRun]] = StudyRun

    def __init__(
        self,
        config: StudyConfig,
        store: Store,
        *,
        console: Console | None = None,
        workers: int | None = None,
        progress: bool = True,
        runs_dir: str | Path = "runs",
        pool: WorkerPool | None = None,
    ):
        """``pool``: a started pool the caller owns and keeps across studies with this space and evaluator config
        (a benchmark running hundreds of short studies); by default each run starts its own and shuts it down."""
        self.config = config
        self.store = store
        self.console = console or Console(stderr=True)
        self.workers = workers
        self.show_progress = progress
        self.runs_dir = Path(runs_dir)
        self.borrowed_pool = pool
        import_plugins(config.imports)  # done by parse_config already, unless the config was built without it
        self.space: Space = get_space(config.space.kind, **config.space.options)
        self.objectives = config.evaluator.objectives
        self.stop_requested = threading.Event()
        # Fail on a bad config here, before a study row exists or a worker starts.
        self.seed_genomes = self._resolve_seeds()
        self._unused_algorithm: Algorithm | None = self._make_algorithm(replayed=0)
        if config.evaluator.kind == "proxy":
            self._check_proxies()
        elif config.evaluator.kind == "table":
            load_table(config.evaluator)
        # The current run, for callers that watch it (tests, the benchmarks).
        self.study: StudyRow | None = None
        self.current_run: StudyRun | None = None
        self.dispatcher: Dispatcher | None = None
        self.worker_infos: list[dict[str, Any]] = []
        self.lost_to = ""  # the driver that took the study over, if this one lost its lease

    # -- set-up -----------------------------------------------------------------------------------
    @classmethod
    def for_existing(cls, store: Store, name: str, **kwargs: Any) -> StudyRunner:
        """A runner for a stored study, configured exactly as it was launched."""
        row = store.get_study(name)
        return cls(parse_config(row.config, f"stored config of study {name!r}"), store, **kwargs)

    def _check_proxies(self) -> None:
        """Every proxy names a known dataset and architecture, and every objective a metric a proxy reports."""
        for proxy in self.config.evaluator.proxies:
            get_dataset(proxy.dataset)
            get_arch(proxy.arch)
        known = set(AGGREGATE_METRICS) | {m for task in ("classification", "regression") for m in metric_names(task)}
        for objective in self.objectives:
            if objective.name.split("@")[0] not in known:
                raise ConfigError(
                    f"evaluator.objectives: {objective.name!r} names no metric a proxy reports; "
                    f"metrics: {', '.join(sorted(known))} (as metric@proxy)"
                )

    def _resolve_seeds(self) -> list[tuple[str, Genome]]:
        """Config seeds are names of the space's seeds, or genomes in the space's text form."""
        named = self.space.seeds()
        resolved = []
        for entry in self.config.space.seeds:
            if entry in named:
                resolved.append((entry, named[entry]))
                continue
            try:
                resolved.append((entry, self.space.parse(entry)))
            except GenomeError as exc:  # an unknown name, a bad formula, or a seed these options cannot express
                raise ConfigError(
                    f"space.seeds: {entry!r} is not usable in space {self.space.kind!r} "
                    f"(its seeds here: {', '.join(sorted(named))}): {exc}"
                ) from None
        return resolved

    def _make_algorithm(self, replayed: int) -> Algorithm:
        algorithm = self.config.algorithm
        rng = np.random.default_rng([self.config.seed, replayed])  # a resumed study draws fresh numbers
        made = make_algorithm(algorithm.name, self.space, self.objectives, rng, algorithm.options)
        made.learn_from(self.store, self.config)
        return made

    def algorithm_for(self, replayed: int) -> Algorithm:
        """The algorithm of a run that replays ``replayed`` stored outcomes first.

        The one built at set-up (which checked the options) serves a study's first run; a resumed study needs
        its own random numbers.
        """
        algorithm, self._unused_algorithm = self._unused_algorithm, None
        return algorithm if algorithm is not None and replayed == 0 else self._make_algorithm(replayed)

    def _open_study(self, resume: bool) -> StudyRow:
        cfg = self.config
        if resume:
            return self.store.get_study(cfg.name)
        return self.store.create_study(
            cfg.name,
            space=cfg.space.kind,
            algorithm=cfg.algorithm.name,
            seed=cfg.seed,
            config=cfg.model_dump(mode="json"),
            objectives=[o.model_dump() for o in self.objectives],
            budget_evaluations=cfg.budget.evaluations,
            budget_minutes=cfg.budget.minutes,
        )

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> StudyRow:
        """Run the study to its budget, or continue it. One driver at a time: while another one holds the study's
        lease this raises StudyBusyError, having changed nothing."""
        lease = StudyLease(self.store, self._open_study(resume))
        previous = lease.acquire()
        lease.keep_renewed(self._lease_lost)
        try:
            return self._run_leased(lease, previous, resume)
        finally:
            lease.release()

    def _run_leased(self, lease: StudyLease, previous: LeaseRow | None, resume: bool) -> StudyRow:
        # Read again now that this driver holds the lease: the previous one may have finished the study meanwhile.
        study = self.study = self.store.get_study(lease.study.name)
        if resume and study.status == StudyStatus.FINISHED:
            self.console.print(f"study {study.name!r} already finished its budget; nothing to resume")
            return study
        if previous is not None and study.status == StudyStatus.RUNNING:
            gone = describe(previous)
            self.store.log_event(study.id, "takeover", f"took over from {gone}, whose driver is gone", previous=gone)
        run = self.current_run = self.run_class(self, study)
        self.store.update_study(study.id, status=StudyStatus.RUNNING, started_at=study.started_at or utcnow())
        self.store.log_event(
            study.id,
            "resume" if resume else "start",
            f"{'resumed' if resume else 'started'} with {run.progress.finished} finished evaluations",
            requeued=len(run.requeue),
        )
        pool = self.borrowed_pool
        started_ray = pool is None and start_ray_for(self.config, self.runs_dir)
        if pool is None:
            pool = make_pool(self.config, self.space, self.workers)
        if self.config.resources.gpus_per_worker and not pool.num_gpus:
            self.console.print("[yellow]no GPU in the Ray cluster: the workers train on CPU[/yellow]")
        previous_handler = self._install_sigint()
        try:
            infos = self.worker_infos = pool.start() if self.borrowed_pool is None else pool.infos()
            self.store.log_event(study.id, "workers", f"{len(infos)} workers ready", workers=infos)
            self.dispatcher = Dispatcher(
                pool,
                self.config.evaluator.timeout_seconds,
                self.config.resources.max_attempts,
                on_workers_started=self._log_workers_started,
            )
            with run.progress:
                run.progress.refresh()
                abandoned = self.dispatcher.run(run)
            if lease.lost:
                raise StudyBusyError(
                    f"study {study.name!r} was taken over by {self.lost_to}: this driver could not renew its lease "
                    "in time, so it stopped and wrote nothing more"
                )
            run.leave_for_resume(abandoned)
            status = StudyStatus.STOPPED if self.stop_requested.is_set() else StudyStatus.FINISHED
            self._close(run, status, replaced_workers=self.dispatcher.replaced_workers, left_pending=len(abandoned))
        except BaseException as exc:
            if not lease.lost:
                self._close_after_error(run)
            if isinstance(exc, StoreError) and not isinstance(exc, StudyBusyError):
                raise StoreError(
                    f"{exc}; study {study.name!r} stopped, and `layerforge resume {study.name}` continues it "
                    "once the store works again"
                ) from None
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            if self.borrowed_pool is None:
                pool.shutdown()
            if started_ray:
                stop_ray()
        return self.store.get_study(study.name)

    def _close(self, run: StudyRun, status: StudyStatus, **data: Any) -> None:
        values: dict[str, Any] = {"status": status, "active_seconds": run.active_seconds()}
        if status == StudyStatus.FINISHED:
            values["finished_at"] = utcnow()
        self.store.update_study(run.study.id, **values)
        self.store.log_event(run.study.id, status, f"study {status} after {run.progress.finished} evaluations", **data)

    def _close_after_error(self, run: StudyRun) -> None:
        """Mark the study stopped. A store that refuses even this leaves it marked running: it shows as interrupted
        once this driver's lease ends, and `resume` continues it all the same."""
        try:
            self._close(run, StudyStatus.STOPPED)
        except StoreError:
            pass

    def _lease_lost(self, taker: str) -> None:
        """Another driver took the study over (this one failed to renew in time): stop at once, write nothing."""
        self.lost_to = taker
        self.stop_requested.set()

    def _install_sigint(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self.stop_requested.is_set():
                raise KeyboardInterrupt
            self.console.print(
                "[yellow]stopping: no new evaluations; in-flight ones are left for `resume` "
                "(Ctrl-C again to quit at once)[/yellow]"
            )
            self.stop_requested.set()

        return signal.signal(signal.SIGINT, handler)

    def request_stop(self) -> None:
        """Stop as Ctrl-C does: no new evaluations; the ones in flight are left for `resume`."""
        self.stop_requested.set()

    def _log_workers_started(self, infos: list[dict[str, Any]]) -> None:
        """Actors that came up mid-study: replacements for lost ones, or new ones on nodes that joined."""
        self.store.log_event(self.study.id, "workers", f"{len(infos)} more workers ready", workers=infos)
