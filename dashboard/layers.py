"""What a candidate's layer looks like: formulas, f and f' of an activation, a norm-act graph, KAN families,
and the exported module (built by ``search.export``'s own helpers, so the download equals `layerforge export`)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dashboard import queries
from search.export import export_candidates
from search.results import Scored
from search.store import CandidateRow, EvaluationRow, Store, StudyRow
from spaces import Space, get_space

X_RANGE = (-5.0, 5.0)
X_POINTS = 401


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


def grid() -> np.ndarray:
    return np.linspace(*X_RANGE, X_POINTS)


def activation_curve(space: Space, genome: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """f(x) and f'(x) on the plotting grid, by autograd through the built module."""
    x = torch.tensor(grid(), dtype=torch.float32, requires_grad=True)
    module = space.build(genome)
    y = torch.broadcast_to(module(x), x.shape)
    if not y.requires_grad:  # a constant function: nothing in the graph depends on x
        return y.detach().numpy(), np.zeros(X_POINTS)
    (dy,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    return y.detach().numpy(), (dy.numpy() if dy is not None else np.zeros(X_POINTS))


def relu_curve() -> tuple[np.ndarray, np.ndarray]:
    x = grid()
    return np.maximum(x, 0.0), (x > 0).astype(float)


def graph_dot(space: Space, genome: dict[str, Any]) -> str:
    """A Graphviz DOT drawing of a norm-act graph, from the space's JSON node/edge description."""
    graph = json.loads(space.describe(genome, "graph"))
    shapes = {
        "input": "ellipse",
        "constant": "plaintext",
        "parameter": "ellipse",
        "aggregate": "box",
        "output": "doubleoctagon",
    }
    colours = {"input": "#cfe8ff", "parameter": "#e8e8e8", "aggregate": "#ffe0b3", "output": "#c9f2c9"}
    lines = ["digraph G {", "rankdir=LR;", 'node [fontname="Helvetica", style=filled, fillcolor="#ffffff"];']
    for node in graph["nodes"]:
        kind = node["kind"]
        label = str(node["label"]).replace('"', "'")
        lines.append(
            f'n{node["id"]} [label="{label}", shape={shapes.get(kind, "box")}, '
            f'fillcolor="{colours.get(kind, "#ffffff")}"];'
        )
    for edge in graph["edges"]:
        lines.append(f'n{edge["source"]} -> n{edge["target"]} [label="{edge["arg"]}", fontsize=9];')
    lines.append("}")
    return "\n".join(lines)


def kan_layers(genome: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per KAN layer: family, its options, and the node families of a mixed layer."""
    widths = ["in", *map(str, genome.get("hidden", [])), "out"]
    rows = []
    for i, spec in enumerate(genome.get("layers", [])):
        nodes = spec.get("nodes") or []
        rows.append(
            {
                "layer": f"L{i} ({widths[i]} -> {widths[i + 1]})" if i + 1 < len(widths) else f"L{i}",
                "family": spec.get("family"),
                "options": ", ".join(f"{k}={spec[k]}" for k in ("grid", "order", "degree") if k in spec),
                "base (silu)": bool(spec.get("base")),
                "norm": spec.get("norm", "none"),
                "candidates / nodes": ", ".join(spec.get("candidates", []))
                or ", ".join(f"{f} x{nodes.count(f)}" for f in sorted(set(nodes))),
            }
        )
    return rows


def exported_module(
    store: Store, study: StudyRow, candidate: CandidateRow, evaluation: EvaluationRow | None
) -> tuple[str, str]:
    """File name and source of the standalone PyTorch module, written by `layerforge export`'s own code."""
    ev = evaluation if evaluation is not None else EvaluationRow(objectives={}, metrics={})
    with tempfile.TemporaryDirectory(prefix="lf_export_") as folder:
        manifest = json.loads(export_candidates(store, study.name, [Scored(candidate, ev, ())], folder).read_text())
        module = manifest["candidates"][0]["module"]
        return module, (Path(folder) / module).read_text()


def metrics_by_proxy(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``metric@proxy`` keys as {metric: {proxy: value}}; keys without a proxy go under "all"."""
    table: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        metric, _, proxy = key.partition("@")
        table.setdefault(metric, {})[proxy or "all"] = value
    return table
