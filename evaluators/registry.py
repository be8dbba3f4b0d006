"""Datasets and proxy architectures by name, so a proxy config names them by string.

A dataset loader is ``fn(seed: int, **options) -> Dataset``.
An architecture builder is ``fn(space, genome, dataset, **options) -> torch.nn.Module``; it calls
``space.build(genome, **shape)`` for every slot the candidate fills (hidden activations, norm-act pairs, KAN layers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch


@dataclass
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    task: Literal["classification", "regression"]
    num_classes: int = 0  # 0 for regression
    name: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def output_size(self) -> int:
        return self.num_classes if self.task == "classification" else int(self.y_train[0].numel())


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
_BUILTIN_MODULES = ("evaluators.data", "evaluators.archs", "evaluators.vision", "evaluators.kan_tasks")


def _load_builtins() -> None:
    import importlib
    import importlib.util

    for module in _BUILTIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
