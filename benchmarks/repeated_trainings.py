"""How many of a study's trainings re-measured a layer the study had already trained: copies, whose outputs equal
an earlier training's up to scale, shift and sign (``search.surrogate_features.shape_twins``; the next layer
absorbs those transforms), and restarts, which differ from an earlier training only in the initial values of
learnable scalars (``Space.structure``; each learns its own values). Either mostly re-measures seed noise.

    PYTHONPATH=. .venv/bin/python benchmarks/repeated_trainings.py STUDY [STUDY ...] --db sqlite:////tmp/lf/qs.db
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np

from evaluators.vocabulary import Status
from search.config import parse_config
from search.store import Store
from search.surrogate_features import FeatureMap, shape_twins
from spaces import get_space

PROBE_POINTS = 64  # the surrogate's default


@dataclass
class Repeats:
    """A study's finished trainings and the repeats among them (formula, first objective)."""

    trainings: int = 0
    copies: list[tuple[str, float | None]] = field(default_factory=list)
    restarts: list[tuple[str, float | None]] = field(default_factory=list)


def count_repeats(store: Store, name: str) -> Repeats:
    study = store.get_study(name)
    config = parse_config(study.config, f"stored config of study {name!r}")
    space = get_space(config.space.kind, **config.space.options)
    describe = FeatureMap(space, PROBE_POINTS)
    first = config.evaluator.objectives[0].name
    shapes: list[np.ndarray] = []
    structures: set[str] = set()
    repeats = Repeats()
    for candidate, evaluation in store.history(study.id):
        described = describe(candidate.genome) if evaluation.status == Status.DONE else None
        if described is None:
            continue
        shown = (space.describe(candidate.genome), evaluation.objectives.get(first))
        if shapes and shape_twins(described.shape_vector[None], np.stack(shapes))[0]:
            repeats.copies.append(shown)
        if described.structure in structures:
            repeats.restarts.append(shown)
        shapes.append(described.shape_vector)
        structures.add(described.structure)
        repeats.trainings += 1
    return repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+")
    parser.add_argument("--db", required=True, help="the store's URL, e.g. sqlite:///runs/quickstart.db")
    args = parser.parse_args()
    store = Store(args.db)
    for name in args.studies:
        repeats = count_repeats(store, name)
        print(
            f"{name}: {repeats.trainings} trainings done; {len(repeats.copies)} copies of an earlier one (scale, "
            f"shift, sign), {len(repeats.restarts)} restarts of an earlier one's structure (learnable initial values)"
        )
        for kind, found in (("copy", repeats.copies), ("restart", repeats.restarts)):
            for formula, value in found:
                print(f"    {kind}: {formula}  {value}")


if __name__ == "__main__":
    main()
