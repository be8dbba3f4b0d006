"""A user's own model for `layerforge evaluate`: a plain PyTorch residual MLP with ReLUs, on the rings data.

    .venv/bin/layerforge evaluate "x*sigmoid(x)" --task examples.user_task.model:rings_task --seeds 3

``evaluate`` swaps every ``nn.ReLU`` of the model for the layer (and for each baseline), trains it with each seed
on train + validation and reports test accuracy.
"""

from __future__ import annotations

from torch import nn

from examples.user_task.task import ResidualBlock, load_rings
from search.evaluate_task import UserTask


def residual_mlp(width: int = 32, blocks: int = 2, classes: int = 3) -> nn.Module:
    """Linear stem -> residual blocks x + Linear(ReLU(Linear(x))) -> Linear head: an ordinary model."""
    layers: list[nn.Module] = [nn.Linear(2, width)]
    layers += [ResidualBlock(width, nn.ReLU()) for _ in range(blocks)]
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def rings_task() -> UserTask:
    return UserTask(dataset=load_rings(seed=0), build_model=residual_mlp, name="rings", steps=300, lr=1e-2)
