"""A study as a Python object: created from a config (file, dict or StudyConfig) or loaded from a store by name or
unique prefix; it runs, resumes and extends, and reads back as DataFrames. The `layerforge` command calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from evaluators.vocabulary import StudyStatus
from layerforge.frames import candidate_frame, final_frame, study_frame, transfer_frame
from search.config import ConfigError, StudyConfig, load_config, parse_config
from search.db_urls import redact_url, store_url
from search.lease import leases, shown_status
from search.objectives import objectives_of
from search.results import Scored, final_results, pareto_front, scored_candidates, test_names, top_k
from search.store import Store, StoreError, StudyRow
from search.study_admin import describe_budget, extend_budget, finished_evaluations

ConfigSource = str | Path | dict[str, Any] | StudyConfig


class Study:
    """One study in one store. A loaded study reads its store read-only until ``run``, ``rerank`` or ``transfer``
    opens it for writing."""

    def __init__(self, store: Store, name: str, unsaved: StudyConfig | None = None):
        self._store = store
        self.name = name
        # A created study that has not run yet: the store gets its row when it first runs, as with `launch`.
        self._unsaved = unsaved

    def __repr__(self) -> str:
        return f"Study({self.name!r}, status={str(self.status)!r}, storage={redact_url(self.storage)!r})"

    # -- what it is -------------------------------------------------------------------------------
    @property
    def storage(self) -> str:
        """The store's URL."""
        return self._store.url

    @property
    def store(self) -> Store:
        """The open store, for what this class does not cover (``search.store.Store``)."""
        return self._store

    @property
    def row(self) -> StudyRow:
        """The study's row as stored now (raises StoreError before its first run)."""
        return self._store.get_study(self.name)

    @property
    def config(self) -> StudyConfig:
        """The config it runs with: the one it was launched with, as stored."""
        if self._unsaved is not None:
            return self._unsaved
        return parse_config(self.row.config, f"stored config of study {self.name!r}")

    @property
    def status(self) -> StudyStatus:
        """created, running, stopped, finished, or interrupted (stored as running, but its driver is gone)."""
        if self._unsaved is not None:
            return StudyStatus.CREATED
        row = self.row
        return shown_status(row, leases(self._store).get(row.id))

    # -- running ----------------------------------------------------------------------------------
    def run(
        self,
        evaluations: int | None = None,
        minutes: float | None = None,
        *,
        workers: int | None = None,
        address: str | None = None,
        progress: bool = True,
        console: Console | None = None,
    ) -> Path | None:
        """Run until ``evaluations`` more evaluations have finished or ``minutes`` more minutes have passed, whichever
        comes first (a bound not given is lifted); with neither, run (or resume) to the study's own budget. Blocks
        until then. The new budget is stored, so `layerforge status`, the dashboard and `layerforge resume` agree.

        Ctrl-C stops dispatching, records what finished and returns; the rest is left for the next ``run``. Raises
        StudyBusyError, changing nothing, while another driver runs the study. ``address`` joins a Ray cluster
        ('auto' or ray://host:10001; default: a private local instance), ``workers`` sets the number of actors.
        Returns the manifest written by the config's ``export`` section when the study finished, else None.
        """
        from search.runner import StudyRunner

        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        console = console or Console(stderr=True)
        options: dict[str, Any] = {"workers": workers, "progress": progress, "console": console}
        budget = _budget(evaluations, minutes)
        if self._unsaved is not None:
            config = self._unsaved
            if budget:
                config = parse_config({**config.model_dump(mode="json"), "budget": budget}, "run()'s budget")
            runner = StudyRunner(config.model_copy(deep=True), self._writable(), **options)
        else:
            if budget:
                extended = extend_budget(self._writable(), self.name, evaluations=evaluations, minutes=minutes)
                now = describe_budget(extended.budget_evaluations, extended.budget_minutes)
                console.print(f"study {self.name!r}: budget now {now}", highlight=False)
            runner = StudyRunner.for_existing(self._writable(), self.name, **options)
        if address:
            runner.config.ray.address = address
        try:
            row = runner.run(resume=self._unsaved is None)
        finally:
            if runner.study is not None:  # this runner wrote the study's row: it exists from now on
                self._unsaved = None
        wanted = runner.config.export
        if wanted.out and row.status == StudyStatus.FINISHED:
            return self.export(wanted.out, top=wanted.top, pareto=wanted.pareto)
        return None

    # -- results ----------------------------------------------------------------------------------
    def results(self) -> pd.DataFrame:
        """Every candidate the search proposed, in order: ``candidate_id``, ``formula``, ``status`` (done, rejected,
        failed, duplicate, or pending/running while in flight), ``stage`` and ``reason`` of the verdict, one column
        per objective under its split-labelled name (``val_acc@mlp``: validation, what selection saw; NaN where
        there is none), then ``origin``, ``seed_name``, ``duplicate_of``, ``generation``, ``seconds``, ``worker``,
        ``finished_at``."""
        if self._unsaved is not None:
            return candidate_frame([], [o.name for o in self._unsaved.evaluator.objectives])
        row = self.row
        return candidate_frame(self._store.evaluations(row.id), _objective_names(row))

    def best(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` best finished candidates by the first objective (ties broken by the others), best first."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        return self._scored_frame(lambda scored: top_k(scored, k))

    def pareto(self) -> pd.DataFrame:
        """The Pareto front over all objectives, best first by the first objective."""
        return self._scored_frame(pareto_front)

    def _scored_frame(self, choose: Callable[[list[Scored]], list[Scored]]) -> pd.DataFrame:
        if self._unsaved is not None:
            return self.results()
        row = self.row
        chosen = choose(scored_candidates(self._store, row))
        return candidate_frame([(s.candidate, s.evaluation) for s in chosen], _objective_names(row))

    def test_results(self) -> pd.DataFrame:
        """Every re-ranking result on the test split (which nothing selects on), per candidate and training
        steps, best first by the first objective's mean (see ``rerank``)."""
        if self._unsaved is not None:
            return final_frame([], [])
        row = self.row
        return final_frame(((r.candidate, r.steps, r.values) for r in final_results(self._store, row)), test_names(row))

    def summary(self, console: Console | None = None) -> None:
        """Print the report `layerforge status` prints: top candidates, Pareto front, baselines, test-split results,
        the rejection funnel and throughput."""
        from search.summary import print_summary

        print_summary(console or Console(), self._store, self.row)

    # -- what to do with them ---------------------------------------------------------------------
    def export(
        self, out: str | Path, *, top: int | None = None, pareto: bool = False, by: str | None = None
    ) -> Path:
        """Write layers as standalone PyTorch modules with their genomes and a manifest under ``out``: the ``top``
        best (default 5) by objective ``by`` (default: the first), the Pareto front, or with ``pareto`` and ``top``
        up to ``top`` of the front (the best by ``by`` if given, else the least crowded). Returns the manifest."""
        from search.export import export_study

        if top is not None and top < 1:
            raise ConfigError(f"top must be at least 1, got {top}")
        return export_study(self._store, self.name, out, top=top, pareto=pareto, by=by)

    def rerank(
        self,
        top: int = 5,
        seeds: int = 3,
        *,
        steps: int | None = None,
        workers: int | None = None,
        console: Console | None = None,
    ) -> pd.DataFrame:
        """Re-train the ``top`` best candidates and every baseline with ``seeds`` seeds on train + validation (for
        ``steps`` steps per proxy; default: the study's), score them on the test split and store the runs; returns
        their results as ``test_results`` shows them. Runs stored by an earlier call are reused."""
        from search.rerank import rerank

        if top < 1 or seeds < 1 or (steps is not None and steps < 1):
            raise ConfigError("top, seeds and steps must be at least 1")
        rows = rerank(
            self._writable(),
            self.name,
            top=top,
            seeds=seeds,
            steps=steps,
            console=console or Console(stderr=True),
            workers=workers,
        )
        return final_frame(((r.candidate, steps, r.values) for r in rows), test_names(self.row))

    def transfer(
        self,
        top: int = 3,
        seeds: int = 3,
        *,
        steps_scale: float = 1.0,
        baselines: list[str] | None = None,
        workers: int | None = None,
        console: Console | None = None,
    ) -> pd.DataFrame:
        """Train the ``top`` best searched candidates and the baselines (by name; default relu, gelu, silu, mish
        where the study has them) on the transfer suite's networks of other families, with ``seeds`` seeds on
        train + validation and ``steps_scale`` times each network's steps; score them on the test split and store
        the runs (reused when asked again). Returns one row per layer and network (see ``transfer_frame``)."""
        from search.transfer import transfer

        if top < 1 or seeds < 1 or steps_scale <= 0:
            raise ConfigError("top and seeds must be at least 1 and steps_scale positive")
        results, steps = transfer(
            self._writable(),
            self.name,
            top=top,
            seeds=seeds,
            console=console or Console(stderr=True),
            steps_scale=steps_scale,
            baseline_names=baselines,
            workers=workers,
        )
        return transfer_frame(results, steps)

    def _writable(self) -> Store:
        if self._store.read_only:
            self._store.close()
            self._store = Store(self._store.url)
        return self._store


def create_study(
    config: ConfigSource, *, name: str | None = None, storage: str | None = None, load_if_exists: bool = False
) -> Study:
    """A new study from a YAML file, a dict or a StudyConfig, checked in full (space, seeds, algorithm, proxies)
    before anything is written. ``name`` replaces the config's; ``storage`` (a store URL) its ``store.url``.

    The store gets the study when it first runs. With ``load_if_exists``, a study of that name already in the store
    is loaded instead of refused (its stored config wins).
    """
    from search.runner import StudyRunner

    cfg = _as_config(config, name)
    if storage:  # the stored config names the store the study is in
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"url": storage})})
    store = Store(cfg.store.url)
    if _named(store, cfg.name) is not None:
        if load_if_exists:
            return Study(store, cfg.name)
        raise StoreError(
            f"a study named {cfg.name!r} already exists in {redact_url(store.url)}; load it "
            f"(layerforge.load_study({cfg.name!r}) or `layerforge resume {cfg.name}`) or choose another name"
        )
    StudyRunner(cfg, store)  # the checks a launch makes before a study row exists or Ray starts
    return Study(store, cfg.name, unsaved=cfg)


def load_study(name: str, *, storage: str | None = None) -> Study:
    """The stored study called ``name``, or the only one whose name starts with it. ``storage`` defaults to
    $LAYERFORGE_DB, else sqlite:///runs/layerforge.db."""
    store = Store(store_url(storage), read_only=True)
    return Study(store, store.get_study(name).name)


def list_studies(*, storage: str | None = None) -> pd.DataFrame:
    """The studies in the store, oldest first, with what `layerforge list` shows: ``name``, ``space``,
    ``algorithm``, ``status`` (as ``Study.status``), ``stopped_by`` (the budget spent, Ctrl-C, ...), ``finished``
    evaluations, ``minutes`` run, the budget (``budget_evaluations``, ``budget_minutes``), ``tags``, ``note`` and
    ``created_at`` (UTC)."""
    from search.summary import stopped_by

    store = Store(store_url(storage), read_only=True)
    try:
        held, labels = leases(store), store.labels()
        records = []
        for row in store.list_studies():
            shown = shown_status(row, held.get(row.id))
            finished = finished_evaluations(store, row)
            label = labels.get(row.id)
            records.append(
                {
                    "name": row.name,
                    "space": row.space,
                    "algorithm": row.algorithm,
                    "status": str(shown),
                    "stopped_by": stopped_by(store, row, shown, finished),
                    "finished": finished,
                    "minutes": (row.active_seconds or 0.0) / 60,
                    "budget_evaluations": row.budget_evaluations,
                    "budget_minutes": row.budget_minutes,
                    "tags": list(label.tags) if label is not None else [],
                    "note": label.note if label is not None else "",
                    "created_at": row.created_at,
                }
            )
        return study_frame(records)
    finally:
        store.close()


def _as_config(config: ConfigSource, name: str | None) -> StudyConfig:
    """The config from a YAML file, a dict or a StudyConfig, under ``name`` if one is given."""
    if isinstance(config, str | Path):
        loaded = load_config(config)
        if not name:
            return loaded
        source, config = f"{config} (name given)", loaded.model_dump(mode="json")
    elif isinstance(config, StudyConfig):
        source, config = "<StudyConfig>", config.model_dump(mode="json")
    elif isinstance(config, dict):
        source = "<dict>"
    else:
        raise ConfigError(f"a study config is a YAML file's path, a dict or a StudyConfig, got {type(config).__name__}")
    return parse_config({**config, "name": name} if name else config, source)


def _named(store: Store, name: str) -> StudyRow | None:
    return next((row for row in store.list_studies() if row.name == name), None)


def _objective_names(row: StudyRow) -> list[str]:
    return [o.name for o in objectives_of(row)]


def _budget(evaluations: int | None, minutes: float | None) -> dict[str, Any]:
    """A budget section of the bounds given (none: empty); a bound below its minimum is a ConfigError."""
    if evaluations is None and minutes is None:
        return {}
    if evaluations is not None and evaluations < 1:
        raise ConfigError(f"evaluations must be at least 1, got {evaluations}")
    if minutes is not None and minutes <= 0:
        raise ConfigError(f"minutes must be above 0, got {minutes}")
    return {"evaluations": evaluations, "minutes": minutes}
