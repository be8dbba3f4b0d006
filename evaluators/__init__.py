"""How a candidate is scored: data, proxy models, training, the rejection cascade and metrics."""

from __future__ import annotations

from evaluators.base import Evaluator
from evaluators.config import EvaluatorConfig
from evaluators.fingerprint import fingerprint
from evaluators.outcome import Outcome
from evaluators.proxy import EvaluatorSetupError, ProxyEvaluator
from evaluators.synthetic import SyntheticEvaluator
from evaluators.table import TableEvaluator
from spaces import Space

_EVALUATORS: dict[str, type[Evaluator]] = {
    "proxy": ProxyEvaluator,
    "synthetic": SyntheticEvaluator,
    "table": TableEvaluator,
}


def make_evaluator(space: Space, config: EvaluatorConfig, device: str | None = None) -> Evaluator:
    """The evaluator named by ``config.kind``; build it once per worker and reuse it for many genomes."""
    return _EVALUATORS[config.kind](space, config, device)


__all__ = [
    "Evaluator",
    "EvaluatorConfig",
    "EvaluatorSetupError",
    "Outcome",
    "ProxyEvaluator",
    "SyntheticEvaluator",
    "TableEvaluator",
    "fingerprint",
    "make_evaluator",
]
