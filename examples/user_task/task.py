"""A user's task as a plug-in: a dataset and a model registered under names a study config's proxies use.

A study config lists this module under ``imports:``; the driver and every Ray worker import it before anything
else, so the registrations below reach the whole cluster (see examples/user_task.yaml).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from evaluators.archs import CandidateSlot
from evaluators.registry import Dataset, register_arch, register_dataset
from spaces import Genome, Space

TEST_SEED = 12345  # the test split never moves with the dataset seed, so no seed can select on it


def _rings(rng: np.random.Generator, n: int, classes: int, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Points on ``classes`` concentric rings in the plane (class = ring), with Gaussian noise."""
    labels = rng.integers(0, classes, n)
    angles = rng.uniform(0.0, 2 * np.pi, n)
    radii = 1.0 + labels + rng.normal(0.0, noise, n)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1) / classes
    return torch.from_numpy(points.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


@register_dataset("user_rings")
def load_rings(
    seed: int = 0, *, train: int = 600, val: int = 200, test: int = 200, classes: int = 3, noise: float = 0.15
) -> Dataset:
    """Concentric rings, generated locally: train and validation drawn by ``seed``, test by a fixed seed."""
    if min(train, val, test) < 1 or classes < 2:
        raise ValueError(f"user_rings needs train, val, test >= 1 and classes >= 2, got {(train, val, test, classes)}")
    rng = np.random.default_rng(seed)
    x_train, y_train = _rings(rng, train, classes, noise)
    x_val, y_val = _rings(rng, val, classes, noise)
    x_test, y_test = _rings(np.random.default_rng(TEST_SEED), test, classes, noise)
    return Dataset(
        x_train, y_train, x_val, y_val, "classification", classes, "user_rings", x_test=x_test, y_test=y_test
    )


class ResidualBlock(nn.Module):
    """x + Linear(act(Linear(x))): the user's block, with the candidate as its activation."""

    def __init__(self, width: int, activation: nn.Module):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, width), activation, nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_arch("user_resmlp")
def build_residual_mlp(
    space: Space, genome: Genome, dataset: Dataset, *, width: int = 32, blocks: int = 2
) -> nn.Module:
    """Linear stem -> residual blocks -> Linear head; every activation is the candidate, each its own instance
    in a ``CandidateSlot`` (so training records its diagnostics)."""
    if width < 1 or blocks < 1:
        raise ValueError(f"user_resmlp needs width >= 1 and blocks >= 1, got {width} and {blocks}")
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(int(np.prod(dataset.input_shape)), width)]
    layers += [ResidualBlock(width, CandidateSlot(space.build(genome, channels=width))) for _ in range(blocks)]
    layers.append(nn.Linear(width, dataset.output_size))
    return nn.Sequential(*layers)
