"""Every shipped config loads and passes the runner's up-front checks (space, seeds, algorithm, proxies, objectives)."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.config import load_config
from search.runner import StudyRunner
from search.store import Store

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_valid(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    runner = StudyRunner(config, Store(f"sqlite:///{tmp_path / 'store.db'}"), progress=False)
    assert len(runner.seed_genomes) == len(config.space.seeds)
    for _, genome in runner.seed_genomes:
        runner.space.validate(genome)


def test_every_config_is_covered() -> None:
    assert {p.stem for p in CONFIGS} >= {"quickstart", "normact_cpu", "normact_cifar10_gpu", "kan_cpu"}
