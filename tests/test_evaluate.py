"""`layerforge evaluate`: a found layer swapped into the user's own model, trained against the baselines."""

from __future__ import annotations

import pytest
from torch import nn
from typer.testing import CliRunner

from evaluators.archs import CandidateSlot
from evaluators.swap import swap_modules
from examples.user_task.model import residual_mlp, rings_task
from search.cli import app
from search.config import ConfigError
from search.evaluate_task import load_task, swap_layer
from spaces import get_space


class SharedReLU(nn.Module):
    """Like torchvision's BasicBlock: one ReLU module called twice, and a BatchNorm."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.relu = nn.ReLU()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.ModuleList([nn.ReLU()]))

    def forward(self, x):
        return self.relu(self.fc(self.relu(self.bn(x))))


def test_swap_modules_replaces_every_instance_of_a_class_wherever_it_is_held() -> None:
    model = SharedReLU()
    assert swap_modules(model, nn.ReLU, lambda old: nn.GELU()) == 3
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert isinstance(model.relu, nn.GELU) and isinstance(model.body[2][0], nn.GELU)
    assert swap_modules(model, nn.Tanh, lambda old: nn.GELU()) == 0


def test_a_norm_act_layer_takes_the_norms_and_the_activations_go() -> None:
    normact = get_space("normact")
    model = SharedReLU()
    assert swap_layer(model, normact, normact.seeds()["bn_relu"], rings_task()) == 1
    assert isinstance(model.bn, CandidateSlot) and isinstance(model.relu, nn.Identity)
    activation = get_space("activation")
    with pytest.raises(ConfigError, match="no ReLU to replace"):
        swap_layer(nn.Sequential(nn.Linear(2, 2)), activation, activation.parse("x"), rings_task())


def test_a_task_spec_names_a_function_returning_a_user_task() -> None:
    assert load_task("examples.user_task.model:rings_task").name == "rings"
    with pytest.raises(ConfigError, match="MODULE:FUNCTION"):
        load_task("examples.user_task.model")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        load_task("examples.user_task.model:nope")
    with pytest.raises(ConfigError, match="not a UserTask"):
        load_task("examples.user_task.model:residual_mlp")
    assert isinstance(residual_mlp()[1].body[1], nn.ReLU)


def test_layerforge_evaluate_trains_the_layer_and_the_baselines_in_the_users_model() -> None:
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "x*tanh(softplus(x))+0.1*x",
            "--task", "examples.user_task.model:rings_task",
            "--seeds", "2", "--steps", "30", "--baselines", "relu,gelu",
        ],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    assert "x*tanh(softplus(x))+0.1*x in examples.user_task.model:rings_task" in out
    assert "relu (baseline)" in out and "gelu (baseline)" in out and "best baseline" in out
    assert "p=" in out and "below 3 seeds" in out
    bad = CliRunner().invoke(app, ["evaluate", "x", "--task", "no_such_module:f"])
    assert bad.exit_code == 2 and "cannot import 'no_such_module'" in bad.output
