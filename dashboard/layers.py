"""What a candidate's layer looks like: formulas, what its space presents (a curve, a graph or a table), and the
exported module (built by ``search.export``'s own helpers, so the download equals `layerforge export`).

Nothing here knows a space kind: each space decides how it is drawn through ``Space.present``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from dashboard import queries
from search.export import export_candidates
from search.results import Scored
from search.store import CandidateRow, EvaluationRow, Store, StudyRow
from spaces import Curve, GenomeError, Presentation, Space, get_space


def space_of(study: StudyRow) -> Space:
    return get_space(study.space, **study.config.get("space", {}).get("options", {}))


def formula(space: Space, genome: dict[str, Any], fmt: str) -> str:
    """The space's formula, or a one-line note when a stored genome no longer describes (a newer space version)."""
    try:
        return space.describe(genome, fmt)
    except Exception as exc:  # noqa: BLE001 - a page must still show the rest of the candidate
        return "" if fmt == "latex" else f"(cannot describe this genome: {exc})"


def first_parent(store: Store, candidate: CandidateRow) -> CandidateRow | None:
    """The parent a mutation started from (the first of a crossover's two)."""
    if not candidate.parents:
        return None
    parent_id = int(candidate.parents[0])
    return queries.candidates_by_id(store, [parent_id]).get(parent_id)


def presentation(space: Space, genome: dict[str, Any]) -> Presentation | None:
    """What the space draws of a genome; None where it draws nothing or the genome does not validate."""
    try:
        space.validate(genome)
    except GenomeError:
        return None
    return space.present(genome)


def reference_curve(space: Space) -> tuple[str, Curve] | None:
    """The space's well-known layer drawn for scale (e.g. ReLU), where it has one drawn as a curve."""
    reference = space.reference()
    return reference if reference is not None and isinstance(reference[1], Curve) else None


def exported_module(
    store: Store, study: StudyRow, candidate: CandidateRow, evaluation: EvaluationRow | None
) -> tuple[str, str]:
    """File name and source of the standalone PyTorch module, written by `layerforge export`'s own code."""
    ev = evaluation if evaluation is not None else EvaluationRow(objectives={}, metrics={})
    with tempfile.TemporaryDirectory(prefix="lf_export_") as folder:
        manifest = json.loads(export_candidates(store, study.name, [Scored(candidate, ev, ())], folder).read_text())
        module = manifest["candidates"][0]["module"]
        return module, (Path(folder) / module).read_text()


NO_PROXY = "all"  # where ``metrics_by_proxy`` files a metric of the whole candidate (a key without "@proxy")


def metrics_by_proxy(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``metric@proxy`` keys as {metric: {proxy: value}}; keys without a proxy go under ``NO_PROXY``."""
    table: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        metric, _, proxy = key.partition("@")
        table.setdefault(metric, {})[proxy or NO_PROXY] = value
    return table
