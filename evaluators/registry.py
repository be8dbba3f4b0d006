"""Datasets and proxy architectures by name, so a proxy config names them by string.

A dataset loader is ``fn(seed: int, **options) -> Dataset``.
An architecture builder is ``fn(space, genome, dataset, **options) -> torch.nn.Module``; it calls
``space.build(genome, **shape)`` for every slot the candidate fills (hidden activations, norm-act pairs, KAN layers).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from evaluators.splits import TEST, VAL, Split


class MissingSplitError(ValueError):
    """A dataset has no test split, so nothing can be reported on it as a final result."""


@dataclass
class Dataset:
    """Train, validation and test splits: search and every cascade stage fit on train and score on validation;
    final reports fit on train + validation and score on test, which nothing selects on.

    ``x_test`` / ``y_test`` are optional only so a loader written before splits still searches; every built-in
    dataset has them, and a final report on a dataset without them raises ``MissingSplitError``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    task: Literal["classification", "regression"]
    num_classes: int = 0  # 0 for regression
    name: str = ""
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def output_size(self) -> int:
        return self.num_classes if self.task == "classification" else int(self.y_train[0].numel())

    def scored_on(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of the split a model is scored on."""
        if split == VAL:
            return self.x_val, self.y_val
        if self.x_test is None or self.y_test is None:
            raise MissingSplitError(
                f"dataset {self.name or '?'!r} has no test split: its loader must set x_test and y_test "
                "(held out from search) before anything can be reported on it"
            )
        return self.x_test, self.y_test

    def fitting(self, split: Split) -> Dataset:
        """The dataset whose train split a model scored on ``split`` trains on: this one for validation; for test,
        one whose train split is train + validation (after selection, the final model may learn from both)."""
        if split == VAL:
            return self
        self.scored_on(TEST)  # no test split: say so before any training
        return self._validation_in_train

    @functools.cached_property
    def _validation_in_train(self) -> Dataset:
        return dataclasses.replace(
            self, x_train=torch.cat([self.x_train, self.x_val]), y_train=torch.cat([self.y_train, self.y_val])
        )


class UnknownComponentError(ValueError):
    """A proxy config names a dataset or architecture that is not registered."""


DatasetLoader = Callable[..., Dataset]
ArchBuilder = Callable[..., torch.nn.Module]

_DATASETS: dict[str, DatasetLoader] = {}
_ARCHS: dict[str, ArchBuilder] = {}


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    def deco(fn: DatasetLoader) -> DatasetLoader:
        _DATASETS[name] = fn
        return fn

    return deco


def register_arch(name: str) -> Callable[[ArchBuilder], ArchBuilder]:
    def deco(fn: ArchBuilder) -> ArchBuilder:
        _ARCHS[name] = fn
        return fn

    return deco


def _lookup(table: dict[str, Any], what: str, name: str) -> Any:
    _load_builtins()
    if name not in table:
        raise UnknownComponentError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def get_dataset(name: str) -> DatasetLoader:
    return _lookup(_DATASETS, "dataset", name)


def get_arch(name: str) -> ArchBuilder:
    return _lookup(_ARCHS, "architecture", name)


# Modules that register built-in datasets and architectures on import (each owns one task family).
_BUILTIN_MODULES = (
    "evaluators.data",
    "evaluators.archs",
    "evaluators.vision",
    "evaluators.kan_tasks",
    "evaluators.shapes",
    "evaluators.transfer_tasks",
)


def _load_builtins() -> None:
    import importlib
    import importlib.util

    for module in _BUILTIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
