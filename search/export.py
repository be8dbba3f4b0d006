"""Export discovered layers as plain PyTorch: one standalone ``.py`` per candidate, its genome JSON, a manifest."""

from __future__ import annotations

import ast
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evaluators.config import ProxyConfig
from evaluators.registry import get_dataset
from search.config import NAME_LENGTH
from search.objectives import objectives_of
from search.results import Scored, pareto_front, scored_candidates, top_k
from search.store import Store, StoreError, StudyRow
from spaces import Space, get_space


def class_name_for(space: Space, candidate_id: int) -> str:
    return f"{space.class_prefix}C{candidate_id}"


def file_stem(study_name: str, candidate_id: int) -> str:
    """The name of a candidate's exported files: an importable module name inside the output folder.

    A stored study name may hold anything (anyone who can write to a shared store can put "/abs/path" or
    thousands of characters there), so it is reduced to letters, digits and "_" and cut to a study name's length.
    """
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', study_name)[:NAME_LENGTH]}_c{candidate_id}"


def constructor_signature(source: str, class_name: str) -> str:
    """How to construct the exported class, e.g. ``NormActC7(num_channels: int, layout: str = 'nchw')``."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    item.args.args = item.args.args[1:]  # drop self
                    return f"{class_name}({ast.unparse(item.args)})"
    return f"{class_name}()"


def module_docstring(
    study_name: str,
    candidate_id: int,
    formula: str,
    objectives: dict[str, Any],
    metrics: dict[str, Any],
    constructor: str = "",
) -> str:
    lines = [f"LayerForge export: study {study_name!r}, candidate {candidate_id}.", "", f"Formula: {formula}", ""]
    if constructor:
        lines += [f"Constructor: {constructor}", ""]
    lines += ["Objectives:"] + [f"    {k} = {v:.6g}" for k, v in sorted(objectives.items())]
    warnings = warnings_of(metrics)
    if warnings:
        lines += ["Warnings:"] + [f"    {w}" for w in warnings]
    numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if numeric:
        lines += ["Metrics:"] + [f"    {k} = {v:.6g}" for k, v in sorted(numeric.items())]
    body = "\n".join(lines).replace('"""', "'''").replace("\\", "\\\\")
    return f'"""{body}\n"""\n'


def warnings_of(metrics: dict[str, Any]) -> list[str]:
    """What the evaluation warned about a layer it kept (e.g. the placement stage in "warn" mode)."""
    return [str(w) for w in metrics.get("warnings") or []]


def task_sizes(study: StudyRow) -> dict[str, int]:
    """``in_features`` (flat input size) and ``out_features`` of the study's first proxy task; empty without one.

    Task-sized spaces (a genome is a whole network) get these as the exported class's default constructor args.
    """
    proxies = study.config["evaluator"].get("proxies") or []
    if not proxies:
        return {}
    proxy = ProxyConfig.model_validate(proxies[0])
    dataset = get_dataset(proxy.dataset)(**{"seed": proxy.seed, **proxy.dataset_options})
    return {"in_features": math.prod(dataset.input_shape), "out_features": dataset.output_size}


def export_candidates(store: Store, study_name: str, chosen: list[Scored], out_dir: str | Path) -> Path:
    study = store.get_study(study_name)
    space = get_space(study.space, **study.config["space"].get("options", {}))
    sizes = task_sizes(study) if space.task_sized else {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for rank, s in enumerate(chosen, start=1):
        cand, ev = s.candidate, s.evaluation
        class_name = class_name_for(space, cand.id)
        stem = file_stem(study.name, cand.id)
        source = space.to_source(cand.genome, class_name, **sizes)
        constructor = constructor_signature(source, class_name)
        doc = module_docstring(
            study.name, cand.id, cand.formula or space.describe(cand.genome), ev.objectives, ev.metrics, constructor
        )
        (out / f"{stem}.py").write_text(doc + "\n" + source)
        (out / f"{stem}.json").write_text(json.dumps(cand.genome, indent=2, sort_keys=True) + "\n")
        entries.append(
            {
                "rank": rank,
                "candidate_id": cand.id,
                "class_name": class_name,
                "constructor": constructor,
                "module": f"{stem}.py",
                "genome": f"{stem}.json",
                "formula": cand.formula,
                "key": cand.key,
                "objectives": ev.objectives,
                "warnings": warnings_of(ev.metrics),
            }
        )
    manifest = {
        "study": study.name,
        "space": study.space,
        "objectives": study.objectives,
        "objectives_split": "validation",  # the candidates' objectives are what selection saw; rerank reads test
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "constructor_defaults": sizes,  # task sizes baked in as defaults; inputs are flattened to in_features
        "candidates": entries,
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def export_study(
    store: Store, study_name: str, out_dir: str | Path, *, top: int | None = None, pareto: bool = False
) -> Path:
    """Export the top-K by the first objective, or the Pareto front over all objectives."""
    study = store.get_study(study_name)
    scored = scored_candidates(store, study)
    if not scored:
        raise StoreError(
            f"study {study_name!r} has no finished candidate with all objectives "
            f"({', '.join(o.name for o in objectives_of(study))}) to export yet"
        )
    chosen = pareto_front(scored) if pareto else top_k(scored, top or 5)
    return export_candidates(store, study_name, chosen, out_dir)
