"""How many of a study's trainings were spent on copies: candidates whose outputs equal, up to scale, shift and
sign (``search.surrogate_features.shape_twins``), those of a candidate the study had already trained. The next
layer absorbs those transforms, so such a training mostly re-measures seed noise.

    PYTHONPATH=. .venv/bin/python benchmarks/shape_twins.py STUDY [STUDY ...] --db sqlite:////tmp/lf/qs.db
"""

from __future__ import annotations

import argparse

import numpy as np

from evaluators.vocabulary import Status
from search.config import parse_config
from search.store import Store
from search.surrogate_features import FeatureMap, shape_twins
from spaces import get_space

PROBE_POINTS = 64  # the surrogate's default


def count_twins(store: Store, name: str) -> tuple[int, list[tuple[str, float | None]]]:
    """The study's finished trainings in order, and the copies among them (formula, first objective)."""
    study = store.get_study(name)
    config = parse_config(study.config, f"stored config of study {name!r}")
    space = get_space(config.space.kind, **config.space.options)
    describe = FeatureMap(space, PROBE_POINTS)
    first = config.evaluator.objectives[0].name
    trained: list[np.ndarray] = []
    copies: list[tuple[str, float | None]] = []
    for candidate, evaluation in store.history(study.id):
        described = describe(candidate.genome) if evaluation.status == Status.DONE else None
        if described is None:
            continue
        if trained and shape_twins(described.shape_vector[None], np.stack(trained))[0]:
            copies.append((space.describe(candidate.genome), evaluation.objectives.get(first)))
        trained.append(described.shape_vector)
    return len(trained), copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--db", required=True, help="the store's URL, e.g. sqlite:///runs/quickstart.db")
    args = parser.parse_args()
    store = Store(args.db)
    for name in args.studies:
        trained, copies = count_twins(store, name)
        print(f"{name}: {trained} trainings done, {len(copies)} of them copies of an earlier one")
        for formula, value in copies:
            print(f"    {formula}  {value}")


if __name__ == "__main__":
    main()
