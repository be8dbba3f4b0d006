"""The proxy evaluator: rejection cascade, then training on every proxy; one per worker, many genomes each."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from evaluators.base import Evaluator
from evaluators.batched import train_together
from evaluators.cascade import (
    Rejected,
    check_finite_objectives,
    check_numeric_probe,
    check_quality_gate,
    check_stability,
    check_static,
    gate_proxy,
    one_line,
)
from evaluators.config import EvaluatorConfig, ProxyConfig, Rejection
from evaluators.halving import Bars, check_rung, rung_metric, rung_steps, steps_label
from evaluators.outcome import Outcome
from evaluators.placement import applies_to, check_placement
from evaluators.registry import Dataset, MissingSplitError, get_dataset
from evaluators.splits import VAL, Split, on_split
from evaluators.stack_size import auto_stack_size, jobs_per_batch
from evaluators.training import NonFiniteLoss, metric_names, train_proxy
from evaluators.vocabulary import CASCADE, Stage, Status
from spaces import Genome, GenomeError, Space

# Metrics over all proxies, usable as objectives without an @proxy suffix (``mean_test_acc`` in a test run).
AGGREGATE_METRICS = ("mean_val_acc", "total_train_seconds")
# The stages ``evaluate_many`` runs for all its genomes at once; the cheaper ones run per genome.
TRAINED_TOGETHER = (Stage.QUALITY_GATE, Stage.FULL)


class EvaluatorSetupError(ValueError):
    """The evaluator config cannot work with its proxies (unknown objective, bad dataset options, ...)."""


def resolve_device(device: str) -> str:
    """'auto' is CUDA when torch sees a GPU, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _load_dataset(proxy: ProxyConfig, device: torch.device) -> Dataset:
    options = dict(proxy.dataset_options)
    options.setdefault("seed", proxy.seed)
    try:
        dataset = get_dataset(proxy.dataset)(**options)
    except (TypeError, ValueError) as exc:
        raise EvaluatorSetupError(f"proxy {proxy.name!r}: cannot load dataset {proxy.dataset!r}: {exc}") from exc
    tensors = {
        f.name: getattr(dataset, f.name).to(device)
        for f in dataclasses.fields(dataset)
        if isinstance(getattr(dataset, f.name), torch.Tensor)
    }
    return dataclasses.replace(dataset, **tensors)


class _Evaluation:
    """One genome's evaluation under way: the stage it is in, what it measured, what each stage cost."""

    def __init__(self, genome: Genome, seed: int, stage: Stage, batched: bool = False):
        self.genome, self.seed, self.stage = genome, seed, stage
        self.batched = batched  # its seconds are its stages' (its share of a batch's), not the batch's wall time
        self.start = time.perf_counter()
        self.metrics: dict[str, Any] = {}
        self.stage_seconds: dict[str, float] = {}
        self.outcome: Outcome | None = None

    @contextmanager
    def timed(self, stage: Stage) -> Iterator[None]:
        self.stage = stage
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[stage] = time.perf_counter() - started

    def end(self, status: Status, reason: str = "", objectives: dict[str, float] | None = None) -> Outcome:
        self.outcome = Outcome(
            status=status,
            stage=self.stage,
            reason=reason,
            objectives=objectives or {},
            metrics=self.metrics,
            seconds=sum(self.stage_seconds.values()) if self.batched else time.perf_counter() - self.start,
            stage_seconds=self.stage_seconds,
        )
        return self.outcome

    def settle(self, exc: Exception) -> Outcome:
        """The outcome an exception in the current stage means: a rejection for a bad candidate, else a failure."""
        if isinstance(exc, Rejected | NonFiniteLoss):
            return self.end(Status.REJECTED, str(exc))
        if isinstance(exc, GenomeError):  # valid on its own, but not for this task's sizes (e.g. layernorm on 1 input)
            return self.end(Status.REJECTED, f"does not build for this task: {exc}")
        if isinstance(exc, MissingSplitError):
            return self.end(Status.FAILED, str(exc))
        return self.end(Status.FAILED, one_line(exc))


def _running(runs: list[_Evaluation]) -> list[_Evaluation]:
    return [run for run in runs if run.outcome is None]


def _aggregate(metrics: dict[str, Any], proxies: list[str], split: Split) -> None:
    """``total_train_seconds`` and, over the classification proxies, ``mean_{split}_acc``."""
    metrics["total_train_seconds"] = sum(metrics[f"train_seconds@{name}"] for name in proxies)
    accuracies = [metrics[f"{split}_acc@{name}"] for name in proxies if f"{split}_acc@{name}" in metrics]
    if accuracies:
        metrics[f"mean_{split}_acc"] = sum(accuracies) / len(accuracies)


class ProxyEvaluator(Evaluator):
    """Scores a genome by training small proxy models after a cascade of cheaper rejections.

    Objectives and metrics are named ``metric@proxy`` (``val_acc@mlp``); ``mean_val_acc`` and
    ``total_train_seconds`` aggregate over proxies. Training seeds are ``proxy.seed + seed``. No stage of the
    cascade and no search evaluation reads the test split: they score on validation. Only
    ``evaluate(..., split="test")`` (final reports) scores on test, under ``test_*`` names (``test_acc@mlp``).
    """

    def __init__(self, space: Space, config: EvaluatorConfig, device: str | None = None):
        super().__init__(space, config, resolve_device(device or config.device))
        torch.set_num_threads(config.threads)
        self.torch_device = torch.device(self.device)
        self.proxies = {proxy.name: proxy for proxy in config.proxies}
        self.datasets = {name: _load_dataset(proxy, self.torch_device) for name, proxy in self.proxies.items()}
        self.stack_sizes, self.candidates_per_batch = self._batching(config.candidates_per_batch)
        known = self.metric_names()
        unknown = [objective.name for objective in config.objectives if objective.name not in known]
        if unknown:
            raise EvaluatorSetupError(
                f"objectives {unknown} are not produced by this evaluator; known metrics: {', '.join(sorted(known))}"
            )

    def _batching(self, setting: int | str) -> tuple[dict[str, int], int]:
        """How many candidates each proxy stacks, and how many jobs the worker takes at once."""
        if setting != "auto":
            return {name: int(setting) for name in self.proxies}, int(setting)
        threads = torch.get_num_threads()
        sizes = {
            name: auto_stack_size(self.space, self.datasets[name], proxy, self.torch_device, threads)
            for name, proxy in self.proxies.items()
        }
        return sizes, jobs_per_batch(list(sizes.values()), self.torch_device)

    def metric_names(self, split: Split = VAL) -> set[str]:
        """Every metric name an evaluation that trains all proxies and scores them on ``split`` reports."""
        names = {
            f"{metric}@{name}" for name, data in self.datasets.items() for metric in metric_names(data.task, split)
        }
        names.add("total_train_seconds")
        if any(data.task == "classification" for data in self.datasets.values()):
            names.add(f"mean_{split}_acc")
        return names

    def evaluate(
        self,
        genome: Genome,
        *,
        seed: int = 0,
        steps: int | None = None,
        cascade: bool = True,
        full: bool = True,
        split: Split = VAL,
        halving: Bars | None = None,
    ) -> Outcome:
        """``full=False`` runs the rejection stages only (the funnel benchmark): DONE means it passed them all.

        ``split="test"`` trains the full proxies on train + validation and scores them on test: objectives come
        back under their test names (``test_acc@mlp``). The rejection stages read validation either way.
        ``halving`` (the bars of the study's rungs, ``evaluators.halving``) runs the successive-halving stage
        where the config enables it; without them (no study to compare with) the stage is skipped.
        """
        run = _Evaluation(genome, seed, Stage.STATIC if cascade else Stage.FULL)
        try:
            for stage in self._stage_names(cascade, full, halving=halving is not None):
                with run.timed(stage):
                    self.run_stage(stage, genome, seed, steps, run.metrics, split, halving)
            objectives = self._objectives(run.metrics, split) if full else {}
        except Exception as exc:  # noqa: BLE001 - the candidate's outcome, never the worker's death
            return run.settle(exc)
        return run.end(Status.DONE, objectives=objectives)

    def evaluate_many(
        self,
        genomes: list[Genome],
        *,
        seeds: list[int],
        steps: int | None = None,
        cascade: bool = True,
        split: Split = VAL,
    ) -> list[Outcome]:
        """One outcome per genome, as ``evaluate`` gives it, with the quality gate and the full training run for
        all of them together: each proxy trains the members still in the running as stacked models of up to
        ``stack_sizes[proxy]`` (``evaluators.batched``). A member that fails a stage drops out, so the stacks
        shrink; the cheap stages run per member. Training seconds are the stack's, shared out evenly.
        The halving stage never runs here: its rungs stop each candidate at its own time against its own bars,
        so the worker evaluates jobs that carry bars one at a time (``evaluate``).
        """
        if len(genomes) == 1 or max(self.stack_sizes.values()) == 1:
            return [
                self.evaluate(genome, seed=seed, steps=steps, cascade=cascade, split=split)
                for genome, seed in zip(genomes, seeds, strict=True)
            ]
        first = Stage.STATIC if cascade else Stage.FULL
        runs = [_Evaluation(genome, seed, first, batched=True) for genome, seed in zip(genomes, seeds, strict=True)]
        stages = self._stage_names(cascade)
        for run in runs:
            try:
                for stage in (s for s in stages if s not in TRAINED_TOGETHER):
                    with run.timed(stage):
                        self.run_stage(stage, run.genome, run.seed, steps, run.metrics, split)
            except Exception as exc:  # noqa: BLE001 - this member's outcome
                run.settle(exc)
        if Stage.QUALITY_GATE in stages:
            self._gate_together(runs)
        self._train_together(runs, steps, split)
        for run in _running(runs):
            try:
                run.end(Status.DONE, objectives=self._objectives(run.metrics, split))
            except Exception as exc:  # noqa: BLE001 - a non-finite objective
                run.settle(exc)
        return [run.outcome for run in runs]

    def _objectives(self, metrics: dict[str, Any], split: Split) -> dict[str, float]:
        objectives = {name: float(metrics[name]) for name in (on_split(o.name, split) for o in self.config.objectives)}
        check_finite_objectives(objectives)
        return objectives

    def _stage_names(self, cascade: bool, full: bool = True, halving: bool = False) -> list[Stage]:
        """The enabled stages, cheapest first; ``full`` runs last unless left out. The halving stage runs only
        with ``halving`` (when the study's rung bars came with the job)."""
        checks = [
            stage for stage in CASCADE if cascade and self._enabled(stage) and (halving or stage is not Stage.HALVING)
        ]
        return checks + ([Stage.FULL] if full else [])

    def _enabled(self, stage: Stage) -> bool:
        """Each section of the rejection config is named after the stage it switches on; the placement stage
        only applies to layers that sit in a network's slots."""
        if stage not in Rejection.model_fields or not getattr(self.config.rejection, stage).enabled:
            return False
        return stage is not Stage.PLACEMENT or applies_to(self.space)

    def run_stage(
        self,
        stage: Stage,
        genome: Genome,
        seed: int,
        steps: int | None,
        metrics: dict[str, Any],
        split: Split,
        halving: Bars | None = None,
    ) -> None:
        """Run one stage, recording its metrics as it goes (so a rejection keeps what was measured)."""
        if stage is Stage.STATIC:
            metrics.update(check_static(self.space, genome))
        elif stage is Stage.NUMERIC_PROBE:
            metrics.update(check_numeric_probe(self.space, genome, self.config.rejection.numeric_probe))
        elif stage is Stage.PLACEMENT:
            placement = self.config.rejection.placement
            metrics.update(check_placement(self.space, genome, placement, seed=seed, device=self.torch_device))
        elif stage is Stage.STABILITY:
            metrics.update(self._stability(genome, seed))
        elif stage is Stage.QUALITY_GATE:
            self._quality_gate(genome, seed, metrics)
        elif stage is Stage.HALVING:
            if halving is None:
                raise ValueError("the halving stage needs the study's rung bars (evaluators.halving.RungHistory)")
            self._halving(genome, seed, metrics, halving)
        else:
            self._train_all(genome, seed, steps, metrics, split)

    def _stability(self, genome: Genome, seed: int) -> dict[str, float]:
        name, proxy = next(iter(self.proxies.items()))
        return check_stability(
            self.space,
            genome,
            self.datasets[name],
            proxy,
            self.config.rejection.stability,
            seed=proxy.seed + seed,
            device=self.torch_device,
        )

    def _quality_gate(self, genome: Genome, seed: int, metrics: dict[str, Any]) -> None:
        gate = self.config.rejection.quality_gate
        for name, proxy in self.proxies.items():
            dataset = self.datasets[name]
            result = train_proxy(
                self.space,
                genome,
                dataset,
                gate_proxy(proxy, gate),
                seed=proxy.seed + seed,
                steps=gate.steps,
                device=self.torch_device,
                amp=self.config.amp,
            )
            metrics.update({f"gate_{metric}@{name}": value for metric, value in result.items()})
            check_quality_gate(name, dataset, result, gate)

    def _halving(self, genome: Genome, seed: int, metrics: dict[str, Any], bars: Bars) -> None:
        """Train the rungs in order, each from scratch, skipping those a promoted candidate cleared; stop at the
        first rung none of the objectives clears."""
        halving = self.config.rejection.halving
        budgets = {name: rung_steps(proxy.steps, halving) for name, proxy in self.proxies.items()}
        for rung in range(halving.rungs):
            if bars[rung] is None:
                continue  # cleared before this candidate's late promotion
            steps = {name: budget[rung] for name, budget in budgets.items()}
            results = self._train_proxies(genome, seed, steps, VAL)
            metrics.update({rung_metric(rung, name): value for name, value in results.items()})
            values = {o.name: results.get(o.name) for o in self.config.objectives}
            check_rung(rung, steps_label(steps), values, bars, self.config.objectives, halving.eta, metrics)

    def _train_all(
        self, genome: Genome, seed: int, steps: int | None, metrics: dict[str, Any], split: Split
    ) -> None:
        budgets = {name: proxy.steps if steps is None else steps for name, proxy in self.proxies.items()}
        metrics.update(self._train_proxies(genome, seed, budgets, split))

    def _train_proxies(self, genome: Genome, seed: int, steps: dict[str, int], split: Split) -> dict[str, Any]:
        """Every proxy trained alone for its ``steps``: metrics as ``metric@proxy``, plus the aggregates."""
        results: dict[str, Any] = {}
        for name, proxy in self.proxies.items():
            result = train_proxy(
                self.space,
                genome,
                self.datasets[name],
                proxy,
                seed=proxy.seed + seed,
                steps=steps[name],
                device=self.torch_device,
                amp=self.config.amp,
                split=split,
            )
            results.update({f"{metric}@{name}": value for metric, value in result.items()})
        _aggregate(results, list(self.proxies), split)
        return results

    def _gate_together(self, runs: list[_Evaluation]) -> None:
        """The quality gate of ``_quality_gate``, proxy by proxy, for every member still running."""
        gate = self.config.rejection.quality_gate
        for name, proxy in self.proxies.items():
            running = _running(runs)
            results = self._stacked(running, Stage.QUALITY_GATE, name, gate_proxy(proxy, gate), gate.steps, VAL)
            for run, result in zip(running, results, strict=True):
                if run.outcome is not None:  # its training failed
                    continue
                run.metrics.update({f"gate_{metric}@{name}": value for metric, value in result.items()})
                try:
                    check_quality_gate(name, self.datasets[name], result, gate)
                except Rejected as exc:
                    run.settle(exc)

    def _train_together(self, runs: list[_Evaluation], steps: int | None, split: Split) -> None:
        """``_train_all`` for every member still running; ``batch_members`` records how many started it together."""
        starting = _running(runs)
        for run in starting:
            run.metrics["batch_members"] = float(len(starting))
        for name, proxy in self.proxies.items():
            running = _running(runs)
            budget = proxy.steps if steps is None else steps
            results = self._stacked(running, Stage.FULL, name, proxy, budget, split)
            for run, result in zip(running, results, strict=True):
                run.metrics.update({f"{metric}@{name}": value for metric, value in result.items()})
        for run in _running(runs):
            _aggregate(run.metrics, list(self.proxies), split)

    def _stacked(
        self, runs: list[_Evaluation], stage: Stage, name: str, proxy: ProxyConfig, steps: int, split: Split
    ) -> list[dict[str, float]]:
        """Train ``runs`` on one proxy together; a member that failed is settled (and its result is empty)."""
        if not runs:
            return []
        start = time.perf_counter()
        results = train_together(
            self.space,
            [run.genome for run in runs],
            self.datasets[name],
            proxy,
            seeds=[proxy.seed + run.seed for run in runs],
            steps=steps,
            device=self.torch_device,
            stack=self.stack_sizes[name],
            amp=self.config.amp,
            split=split,
        )
        share = (time.perf_counter() - start) / len(runs)
        metrics: list[dict[str, float]] = []
        for run, result in zip(runs, results, strict=True):
            run.stage = stage
            run.stage_seconds[stage] = run.stage_seconds.get(stage, 0.0) + share
            if isinstance(result, Exception):
                run.settle(result)
                result = {}
            metrics.append(result)
        return metrics

    def info(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "threads": torch.get_num_threads(),
            "candidates_per_batch": self.candidates_per_batch,
            "stack_sizes": self.stack_sizes,
            "datasets": {
                name: f"{data.name} train={len(data.x_train)} val={len(data.x_val)} "
                f"test={'-' if data.x_test is None else len(data.x_test)}"
                for name, data in self.datasets.items()
            },
        }
