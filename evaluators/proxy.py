"""The proxy evaluator: rejection cascade, then training on every proxy; one per worker, many genomes each."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from evaluators.base import Evaluator
from evaluators.cascade import (
    Rejected,
    check_finite_objectives,
    check_numeric_probe,
    check_quality_gate,
    check_stability,
    check_static,
    one_line,
)
from evaluators.config import EvaluatorConfig, ProxyConfig, Rejection
from evaluators.outcome import Outcome
from evaluators.placement import applies_to, check_placement
from evaluators.registry import Dataset, MissingSplitError, get_dataset
from evaluators.splits import VAL, Split, on_split
from evaluators.training import NonFiniteLoss, metric_names, train_proxy
from evaluators.vocabulary import CASCADE, Stage, Status
from spaces import Genome, GenomeError, Space

# Metrics over all proxies, usable as objectives without an @proxy suffix (``mean_test_acc`` in a test run).
AGGREGATE_METRICS = ("mean_val_acc", "total_train_seconds")


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
        known = self.metric_names()
        unknown = [objective.name for objective in config.objectives if objective.name not in known]
        if unknown:
            raise EvaluatorSetupError(
                f"objectives {unknown} are not produced by this evaluator; known metrics: {', '.join(sorted(known))}"
            )

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
    ) -> Outcome:
        """``full=False`` runs the rejection stages only (the funnel benchmark): DONE means it passed them all.

        ``split="test"`` trains the full proxies on train + validation and scores them on test: objectives come
        back under their test names (``test_acc@mlp``). The rejection stages read validation either way.
        """
        start = time.perf_counter()
        metrics: dict[str, Any] = {}
        stage_seconds: dict[str, float] = {}
        stage = Stage.STATIC if cascade else Stage.FULL

        def outcome(status: Status, reason: str = "", objectives: dict[str, float] | None = None) -> Outcome:
            return Outcome(
                status=status,
                stage=stage,
                reason=reason,
                objectives=objectives or {},
                metrics=metrics,
                seconds=time.perf_counter() - start,
                stage_seconds=stage_seconds,
            )

        try:
            for stage in self._stage_names(cascade, full):
                stage_start = time.perf_counter()
                try:
                    self._run_stage(stage, genome, seed, steps, metrics, split)
                finally:
                    stage_seconds[stage] = time.perf_counter() - stage_start
            names = [on_split(o.name, split) for o in self.config.objectives] if full else []
            objectives = {name: float(metrics[name]) for name in names}
            check_finite_objectives(objectives)
        except (Rejected, NonFiniteLoss) as exc:
            return outcome(Status.REJECTED, str(exc))
        except GenomeError as exc:  # valid on its own, but not for this task's sizes (e.g. layernorm on 1 input)
            return outcome(Status.REJECTED, f"does not build for this task: {exc}")
        except MissingSplitError as exc:
            return outcome(Status.FAILED, str(exc))
        except Exception as exc:
            return outcome(Status.FAILED, one_line(exc))
        return outcome(Status.DONE, objectives=objectives)

    def _stage_names(self, cascade: bool, full: bool = True) -> list[Stage]:
        """The enabled stages, cheapest first; ``full`` runs last unless left out."""
        checks = [stage for stage in CASCADE if cascade and self._enabled(stage)]
        return checks + ([Stage.FULL] if full else [])

    def _enabled(self, stage: Stage) -> bool:
        """Each section of the rejection config is named after the stage it switches on; the placement stage
        only applies to layers that sit in a network's slots."""
        if stage not in Rejection.model_fields or not getattr(self.config.rejection, stage).enabled:
            return False
        return stage is not Stage.PLACEMENT or applies_to(self.space)

    def _run_stage(
        self, stage: Stage, genome: Genome, seed: int, steps: int | None, metrics: dict[str, Any], split: Split
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
                proxy,
                seed=proxy.seed + seed,
                steps=gate.steps,
                device=self.torch_device,
                amp=self.config.amp,
            )
            metrics.update({f"gate_{metric}@{name}": value for metric, value in result.items()})
            check_quality_gate(name, dataset, result, gate)

    def _train_all(
        self, genome: Genome, seed: int, steps: int | None, metrics: dict[str, Any], split: Split
    ) -> None:
        accuracies: list[float] = []
        total_seconds = 0.0
        for name, proxy in self.proxies.items():
            result = train_proxy(
                self.space,
                genome,
                self.datasets[name],
                proxy,
                seed=proxy.seed + seed,
                steps=proxy.steps if steps is None else steps,
                device=self.torch_device,
                amp=self.config.amp,
                split=split,
            )
            metrics.update({f"{metric}@{name}": value for metric, value in result.items()})
            total_seconds += result["train_seconds"]
            if f"{split}_acc" in result:
                accuracies.append(result[f"{split}_acc"])
        metrics["total_train_seconds"] = total_seconds
        if accuracies:
            metrics[f"mean_{split}_acc"] = sum(accuracies) / len(accuracies)

    def info(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "threads": torch.get_num_threads(),
            "datasets": {
                name: f"{data.name} train={len(data.x_train)} val={len(data.x_val)} "
                f"test={'-' if data.x_test is None else len(data.x_test)}"
                for name, data in self.datasets.items()
            },
        }
