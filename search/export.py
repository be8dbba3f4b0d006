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
from evaluators.splits import labelled
from search.config import NAME_LENGTH, ConfigError
from search.objectives import objectives_of
from search.results import (
    FinalResult,
    Scored,
    final_results,
    mean_std,
    pareto_front,
    pareto_top,
    scored_candidates,
    top_k,
)
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


def _init_arguments(source: str, class_name: str) -> ast.arguments | None:
    """The arguments of ``class_name.__init__`` in ``source``, without self; None if it defines no __init__."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    item.args.args = item.args.args[1:]  # drop self
                    return item.args
    return None


def constructor_signature(source: str, class_name: str) -> str:
    """How to construct the exported class, e.g. ``NormActC7(num_channels: int, layout: str = 'nchw')``."""
    arguments = _init_arguments(source, class_name)
    return f"{class_name}()" if arguments is None else f"{class_name}({ast.unparse(arguments)})"


def constructor_call(source: str, class_name: str) -> str:
    """A call of the exported class naming only what has no default, e.g. ``NormActC7(num_channels)``."""
    arguments = _init_arguments(source, class_name)
    if arguments is None:
        return f"{class_name}()"
    required = arguments.args[: len(arguments.args) - len(arguments.defaults)]
    return f"{class_name}({', '.join(arg.arg for arg in required)})"


def export_notes(
    study_name: str,
    candidate_id: int,
    objectives: dict[str, Any],
    test_results: list[FinalResult],
    warnings: list[str],
    call: tuple[str, str],
) -> list[str]:
    """What the export adds to the module docstring: where the layer comes from, its objectives named with their
    split, and ``call`` (module name, constructor call) as a two-line snippet. Other metrics go to the manifest."""
    lines = [f"Study {study_name!r}, candidate {candidate_id}."]
    if objectives:
        lines.append("Objectives (what selection saw, not a final result):")
        lines += [f"    {labelled(name)} = {value:.4g}" for name, value in objectives.items()]
    for result in test_results:
        budget = "the study's steps" if result.steps is None else f"{result.steps} steps"
        lines.append(f"Test split (layerforge rerank, {budget}; nothing selects on it), mean ± std over seeds:")
        for name, values in result.values.items():
            mean, std = mean_std(values)
            lines.append(f"    {name} = {mean:.4g} ± {std:.2g} (n={len(values)})")
    if warnings:
        lines += ["Warnings:", *(f"    {warning}" for warning in warnings)]
    module, constructor = call
    lines += [
        "",
        "Use (with this file's folder on sys.path); every metric of the evaluation is in manifest.json:",
        f"    from {module} import {constructor.partition('(')[0]}",
        f"    layer = {constructor}",
    ]
    return lines


def with_notes(source: str, notes: list[str]) -> str:
    """``source`` with ``notes`` at the end of its module docstring, so the module keeps one docstring."""
    text = "\n".join(notes).replace("\\", "\\\\").replace('"""', "'''")
    first = next(iter(ast.parse(source).body), None)
    literal = ast.get_source_segment(source, first) if isinstance(first, ast.Expr) else None
    if not (literal and literal.startswith('"""') and literal.endswith('"""') and len(literal) >= 6):
        return f'"""{text}\n"""\n\n{source}'
    end = source.index(literal) + len(literal) - 3
    return f'{source[:end].rstrip()}\n\n{text}\n{source[end:]}'


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


def export_candidates(
    store: Store, study_name: str, chosen: list[Scored], out_dir: str | Path, selection: str = ""
) -> Path:
    """Write the chosen candidates and a manifest; ``selection`` says in the manifest how they were chosen."""
    study = store.get_study(study_name)
    space = get_space(study.space, **study.config["space"].get("options", {}))
    sizes = task_sizes(study) if space.task_sized else {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    test_results = final_results(store, study)
    entries = []
    for rank, s in enumerate(chosen, start=1):
        cand, ev = s.candidate, s.evaluation
        class_name = class_name_for(space, cand.id)
        stem = file_stem(study.name, cand.id)
        source = space.to_source(cand.genome, class_name, **sizes)
        constructor = constructor_signature(source, class_name)
        tested = [result for result in test_results if result.candidate.id == cand.id]
        call = (stem, constructor_call(source, class_name))
        notes = export_notes(study.name, cand.id, ev.objectives, tested, warnings_of(ev.metrics), call)
        (out / f"{stem}.py").write_text(with_notes(source, notes))
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
                "latex": space.describe(cand.genome, "latex"),
                "key": cand.key,
                "objectives": ev.objectives,
                "warnings": warnings_of(ev.metrics),
                "metrics": {name: value for name, value in ev.metrics.items() if name != "warnings"},
            }
        )
    manifest = {
        "study": study.name,
        "space": study.space,
        "objectives": study.objectives,
        "objectives_split": "validation",  # the candidates' objectives are what selection saw; rerank reads test
        "selection": selection,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "constructor_defaults": sizes,  # task sizes baked in as defaults; inputs are flattened to in_features
        "candidates": entries,
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def export_study(
    store: Store,
    study_name: str,
    out_dir: str | Path,
    *,
    top: int | None = None,
    pareto: bool = False,
    by: str | None = None,
) -> Path:
    """Export the top-K ranked by one objective (``by``, default the first), the Pareto front over all objectives,
    or with ``pareto`` and ``top`` both, up to K of the front: the K best by ``by`` if given, else the K least
    crowded (its extremes first)."""
    study = store.get_study(study_name)
    names = [o.name for o in objectives_of(study)]
    if by is not None and by not in names:
        raise ConfigError(f"{by!r} is not an objective of study {study.name!r}; its objectives: {', '.join(names)}")
    index = None if by is None else names.index(by)
    scored = scored_candidates(store, study)
    if not scored:
        raise StoreError(
            f"study {study.name!r} has no finished candidate with all objectives ({', '.join(names)}) to export yet"
        )
    if pareto and top is None:
        chosen, selection = pareto_front(scored), "the Pareto front over all objectives"
    elif pareto:
        chosen = pareto_top(scored, top, index)
        how = f"the best by {by}" if by is not None else "the least crowded"
        selection = f"up to {top} of the Pareto front over all objectives, {how}"
    else:
        k = top or 5
        chosen, selection = top_k(scored, k, index or 0), f"the top {k} by {names[index or 0]}"
    return export_candidates(store, study.name, chosen, out_dir, selection=selection)
