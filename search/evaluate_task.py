"""`layerforge evaluate`: a found layer, and the baselines, trained in the user's own model on the user's data.

``--task MODULE:FUNCTION`` names a function that returns a ``UserTask``: the data (an ``evaluators.registry.Dataset``
with train, validation and test splits) and a function that builds a fresh model with its usual layers. Each layer
is swapped in for the model's activations (or, for a norm-act layer, its norms, the activations becoming identities;
see ``evaluators.swap``), trained with several seeds on train + validation and scored on the test split, in this
process (no Ray, no store). The table is the one ``transfer`` prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn

from evaluators.archs import CandidateSlot
from evaluators.config import ProxyConfig
from evaluators.fitting import NonFiniteLoss
from evaluators.registry import Dataset, register_arch
from evaluators.splits import TEST
from evaluators.swap import NORMS, ModuleClasses, norm_channels, swap_modules
from evaluators.training import train_proxy
from search.config import ConfigError, importable_from_here, parse_config
from search.retrain import seed_values
from search.store import Store
from search.transfer_results import CandidateRuns, baseline_names
from spaces import Genome, Space, get_space


@dataclass
class UserTask:
    """What ``layerforge evaluate --task MODULE:FUNCTION`` trains; FUNCTION() returns one.

    ``build_model()`` returns a fresh, untrained model (it is called once per layer and seed, under a fixed seed);
    the layer replaces every module of the ``activation`` classes in it, or a norm-act layer every module of the
    ``norm`` classes (and the activations become ``nn.Identity``). Training is Adam on mini-batches of the
    classification loss, like the search proxies.
    """

    dataset: Dataset
    build_model: Callable[[], nn.Module]
    activation: ModuleClasses = nn.ReLU
    norm: ModuleClasses = NORMS
    name: str = "task"
    steps: int = 500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class Layer:
    """A layer to try: its space, genome, the label shown and whether it is a baseline."""

    space: Space
    genome: Genome
    label: str
    is_baseline: bool = False
    candidate_id: int | None = None


def load_task(spec: str) -> UserTask:
    """Import MODULE and call FUNCTION from ``MODULE:FUNCTION``; the result must be a ``UserTask``."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ConfigError(f"--task must be MODULE:FUNCTION (e.g. examples.user_task.model:rings_task), got {spec!r}")
    importable_from_here()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"--task {spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); run from the folder that "
            "holds it or put that folder on PYTHONPATH"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"--task {spec}: module {module_name!r} has no function {function_name!r}")
    task = function()
    if not isinstance(task, UserTask):
        raise ConfigError(f"--task {spec}: {function_name}() returned {type(task).__name__}, not a UserTask")
    if task.dataset.task != "classification":
        raise ConfigError(f"--task {spec}: evaluate compares test accuracy, so the dataset must be a classification")
    return task


def resolve_layer(text: str, *, space_kind: str, store: Store | None) -> Layer:
    """``STUDY:ID`` (a stored candidate, when a store is given and holds that study) or a formula of the space."""
    study_name, _, candidate_id = text.rpartition(":")
    if study_name and candidate_id.isdigit() and store is not None:
        study = store.get_study(study_name)
        candidate = store.get_candidate(int(candidate_id))
        if candidate.study_id != study.id:
            raise ConfigError(f"candidate {candidate_id} is not in study {study_name!r}")
        config = parse_config(study.config, f"stored config of study {study_name!r}")
        space = get_space(config.space.kind, **config.space.options)
        return Layer(space, candidate.genome, f"c{candidate.id}", candidate.origin == "seed", candidate.id)
    space = get_space(space_kind)
    return Layer(space, space.parse(text), text)


def baseline_layers(space: Space, names: list[str] | None) -> list[Layer]:
    """The space's named seeds: ``names``, else relu, gelu, silu and mish where the space has them, else all."""
    seeds = space.seeds()
    return [Layer(space, seeds[n], n, True) for n in baseline_names(list(seeds), names, f"space {space.kind!r}")]


def swap_layer(model: nn.Module, space: Space, genome: Genome, task: UserTask) -> int:
    """Put the layer in ``model`` in place of its activations (or norms, for norm-act layers); returns how many."""

    def norm_act(norm: nn.Module) -> nn.Module:
        channels, layout = norm_channels(norm)
        return CandidateSlot(space.build(genome, channels=channels, layout=layout), layout)

    if space.normalizes:
        replaced = swap_modules(model, task.norm, norm_act)
        swap_modules(model, task.activation, lambda _: nn.Identity())
    else:
        replaced = swap_modules(model, task.activation, lambda _: CandidateSlot(space.build(genome)))
    if not replaced:
        wanted = task.norm if space.normalizes else task.activation
        raise ConfigError(f"the task's model has no {_names(wanted)} to replace; set the UserTask's activation/norm")
    return replaced


def _names(classes: ModuleClasses) -> str:
    return " or ".join(c.__name__ for c in (classes if isinstance(classes, tuple) else (classes,)))


def evaluate_on_task(
    task: UserTask, layers: list[Layer], *, seeds: int, console: Console, steps: int | None = None
) -> tuple[list[CandidateRuns], dict[str, int]]:
    """Train every layer in the task's model with ``seeds`` seeds; test accuracy per layer and seed (None where
    training diverged)."""
    steps = steps or task.steps
    device = torch.device("cpu")
    proxy = _as_proxy(task)
    results = []
    with Progress(console=console) as progress:
        bar = progress.add_task(f"evaluate on {task.name}", total=len(layers) * seeds)
        for layer in layers:
            runs = CandidateRuns(layer.label, layer.space.describe(layer.genome), layer.is_baseline, layer.candidate_id)
            for seed in seed_values(seeds):
                try:
                    metrics = train_proxy(
                        layer.space, layer.genome, task.dataset, proxy,
                        seed=seed, steps=steps, device=device, split=TEST,
                    )  # fmt: skip
                    runs.record(task.name, seed, metrics["test_acc"])
                except NonFiniteLoss as exc:
                    runs.record(task.name, seed, None, f"diverged: {exc}")
                progress.advance(bar)
            results.append(runs)
    return results, {task.name: steps}


def _as_proxy(task: UserTask) -> ProxyConfig:
    """The task as a proxy whose architecture is the user's model with the layer being trained swapped in."""
    arch = f"evaluate:{task.name}"

    @register_arch(arch)
    def build(space: Space, genome: Genome, dataset: Dataset) -> nn.Module:
        model = task.build_model()
        swap_layer(model, space, genome, task)
        return model

    return ProxyConfig(
        name="task", arch=arch, dataset=task.name, steps=task.steps, batch_size=task.batch_size, lr=task.lr,
        weight_decay=task.weight_decay,
    )  # fmt: skip
