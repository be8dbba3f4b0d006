"""KAN tasks: pykan's function-fitting sets, the Feynman equations and the "kan" proxy architecture.

Each fitting set draws inputs from U[-1, 1]^d with a seeded generator: 1,000 train and 1,000 test points
(pykan's protocol), then 1,000 validation points (search scores on these; the test points are held out),
targets of shape (N, 1), task "regression". ``feynman`` does the same for one equation of the Feynman set
(``evaluators.feynman``), inputs drawn from the equation's own ranges. Classification sets (MNIST-1D, digits)
live in ``evaluators.data``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from evaluators.feynman import feynman_data
from evaluators.registry import Dataset, register_arch, register_dataset
from spaces import Genome, Space


def _split(name: str, x: torch.Tensor, y: torch.Tensor, n_train: int, n_test: int) -> Dataset:
    """Rows in draw order: train, test, then validation (so train and test are pykan's draws for a seed)."""
    train, test, val = slice(0, n_train), slice(n_train, n_train + n_test), slice(n_train + n_test, None)
    return Dataset(
        x[train], y[train], x[val], y[val], task="regression", name=name, x_test=x[test], y_test=y[test]
    )


def _fitting_set(
    name: str,
    dim: int,
    fn: Callable[[torch.Tensor], torch.Tensor],
    seed: int,
    n_train: int,
    n_test: int,
    n_val: int = 1000,
) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_test + n_val, dim, generator=g) * 2 - 1
    return _split(name, x, fn(x).unsqueeze(-1), n_train, n_test)


@register_dataset("fit_exp_sin")
def fit_exp_sin(seed: int = 0, n_train: int = 1000, n_test: int = 1000, n_val: int = 1000) -> Dataset:
    """f(x, y) = exp(sin(pi x) + y^2); pykan: RMSE 1.8e-2 with width [2, 5, 1], grid 3."""
    return _fitting_set(
        "fit_exp_sin", 2, lambda x: torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2), seed, n_train, n_test, n_val
    )


@register_dataset("fit_xy")
def fit_xy(seed: int = 0, n_train: int = 1000, n_test: int = 1000, n_val: int = 1000) -> Dataset:
    """f(x, y) = x y."""
    return _fitting_set("fit_xy", 2, lambda x: x[:, 0] * x[:, 1], seed, n_train, n_test, n_val)


@register_dataset("fit_j0")
def fit_j0(seed: int = 0, n_train: int = 1000, n_test: int = 1000, n_val: int = 1000) -> Dataset:
    """f(x) = J0(20 x), the Bessel function of the first kind: one input, about six oscillations."""
    return _fitting_set("fit_j0", 1, lambda x: torch.special.bessel_j0(20 * x[:, 0]), seed, n_train, n_test, n_val)


@register_dataset("fit_4d")
def fit_4d(seed: int = 0, n_train: int = 1000, n_test: int = 1000, n_val: int = 1000) -> Dataset:
    """f(x1..x4) = exp((sin(pi (x1^2 + x2^2)) + sin(pi (x3^2 + x4^2))) / 2), pykan's 4-D example."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        a = torch.sin(math.pi * (x[:, 0] ** 2 + x[:, 1] ** 2))
        b = torch.sin(math.pi * (x[:, 2] ** 2 + x[:, 3] ** 2))
        return torch.exp(0.5 * (a + b))

    return _fitting_set("fit_4d", 4, fn, seed, n_train, n_test, n_val)


@register_dataset("feynman")
def feynman(
    seed: int = 0, n_train: int = 1000, n_test: int = 1000, equation: str = "I.6.2", n_val: int = 1000
) -> Dataset:
    """Feynman equation ``equation`` (a key of ``evaluators.feynman.FEYNMAN``), inputs uniform on its ranges."""
    x, y = feynman_data(equation, n_train + n_test + n_val, torch.Generator().manual_seed(seed))
    return _split(f"feynman {equation}", x.float(), y.float(), n_train, n_test)


@register_arch("kan")
def kan_arch(space: Space, genome: Genome, dataset: Dataset, **options: Any) -> nn.Module:
    """The KAN network of a "kan" genome, sized by the task: flat input size in, ``output_size`` out.

    Multi-dimensional inputs are flattened first (``nn.Sequential(nn.Flatten(), kan)``).
    """
    if options:
        raise TypeError(f"architecture 'kan' takes no options, got {sorted(options)}")
    if not space.task_sized:
        raise TypeError(
            f"architecture 'kan' builds task-sized genomes (whole networks, such as space 'kan'); "
            f"space {space.kind!r} is a layer: use an architecture that hosts it (mlp, cnn1d, resnet, ...)"
        )
    in_features = math.prod(dataset.input_shape)
    net = space.build(genome, in_features=in_features, out_features=dataset.output_size)
    return nn.Sequential(nn.Flatten(), net) if len(dataset.input_shape) > 1 else net
