"""Standalone source for a KAN network: only the classes its layers use, importing only torch (and math).

The layer, basis and network classes are copied from this package verbatim (``inspect.getsource``), so an
exported module computes exactly what ``KanSpace.build`` does, loads the same state_dict (adapted grids
included: they are buffers) and can refit its grids with ``update_grid`` like the platform network.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from spaces.kan.bases import BASES
from spaces.kan.layer import InputNorm, KANLayer, MixedKANLayer
from spaces.kan.network import KANNetwork
from spaces.kan.selectable import SelectableKANLayer

_HEADER = '''"""{title}

{summary}

Exported by LayerForge; needs only torch. Inputs are (batch, in_features). Load trained weights saved next to
this file with:

    model = {constructor}
    model.load_state_dict(torch.load("{class_name}.pt", weights_only=True))

Adaptive grids: ``model.update_grid(x)`` moves every layer's grid to where the samples ``x`` put its inputs
and refits the splines so the function is kept (``KANLayer.update_grid``).
{harden_note}"""

{imports}
import torch
import torch.nn.functional as F
from torch import nn
'''


def _class_source(cls: type) -> str:
    """Source of a class without its registration decorator."""
    lines = inspect.getsource(cls).splitlines()
    while lines[0].startswith("@"):
        lines.pop(0)
    return "\n".join(lines)


def _with_parents(classes: list[type]) -> list[type]:
    """The classes preceded by their in-package base classes, each once, in first-use order."""
    ordered: list[type] = []
    for cls in classes:
        for c in reversed(cls.__mro__):
            if c.__module__.startswith("spaces.kan") and c not in ordered:
                ordered.append(c)
    return ordered


def layer_call(spec: dict, fan_in: str, fan_out: str) -> str:
    """Constructor call for one layer spec (the keyword form KanSpace.build uses)."""
    family = spec["family"]
    common = f"base_branch={spec.get('base', False)!r}, normalize={spec['norm']!r}"
    if family == "selectable":
        return (
            f"SelectableKANLayer({fan_in}, {fan_out}, {spec['candidates']!r}, grid_size={spec['grid']}, "
            f"order={spec['order']}, degree={spec['degree']}, {common})"
        )
    if family == "mixed":
        return (
            f"MixedKANLayer({fan_in}, {fan_out}, {spec['nodes']!r}, grid_size={spec['grid']}, "
            f"order={spec['order']}, degree={spec['degree']}, {common})"
        )
    uses = BASES[family].uses
    args = [f"grid_size={spec['grid']}"] if "grid" in uses else []
    if "order" in uses or "degree" in uses:
        args.append(f"order={spec['order' if 'order' in uses else 'degree']}")
    args.append(common)
    return f"KANLayer({fan_in}, {fan_out}, {family!r}, {', '.join(args)})"


def network_source(
    specs: list[dict],
    hidden: list[int],
    class_name: str,
    summary: str,
    in_features: int | None = None,
    out_features: int | None = None,
) -> str:
    """A module defining ``class_name(in_features, out_features)`` for layer specs (validated genome layers)."""
    families: list[str] = []
    layer_classes: list[type] = [InputNorm, KANLayer]
    for spec in specs:
        if spec["family"] == "selectable":
            families += spec["candidates"]
            layer_classes += [MixedKANLayer, SelectableKANLayer]
        elif spec["family"] == "mixed":
            families += spec["nodes"]
            layer_classes.append(MixedKANLayer)
        else:
            families.append(spec["family"])
    used = list(dict.fromkeys(families))
    basis_classes = _with_parents([BASES[f] for f in used])
    blocks = [_class_source(c) for c in basis_classes]
    blocks.append("BASES = {" + ", ".join(f"{f!r}: {BASES[f].__name__}" for f in used) + "}")
    blocks += [_class_source(c) for c in dict.fromkeys([*layer_classes, KANNetwork])]
    widths = ["in_features", *map(str, hidden), "out_features"]
    calls = "".join(f"                {layer_call(spec, widths[i], widths[i + 1])},\n" for i, spec in enumerate(specs))
    harden = (
        "\n\n    def harden(self) -> None:\n"
        '        """After training: each selectable layer keeps one family per node (a compact, faster network)."""\n'
        "        for i, layer in enumerate(self.layers):\n"
        "            if isinstance(layer, SelectableKANLayer):\n"
        "                self.layers[i] = layer.harden()"
        if any(spec["family"] == "selectable" for spec in specs)
        else ""
    )
    default_in = "" if in_features is None else f" = {in_features}"
    default_out = "" if out_features is None else f" = {out_features}"
    blocks.append(
        f"class {class_name}(KANNetwork):\n"
        f'    """{summary}"""\n\n'
        f"    def __init__(self, in_features: int{default_in}, out_features: int{default_out}):\n"
        "        super().__init__(\n"
        "            [\n"
        f"{calls}"
        "            ]\n"
        "        )" + harden
    )
    body = "\n\n\n".join(blocks) + "\n"
    sized = None not in (in_features, out_features)
    note = "\nSelectable layers: train the mixture, then model.harden() keeps one family per node.\n"
    header = _HEADER.format(
        title=f"{class_name}: a Kolmogorov-Arnold network found by LayerForge.",
        summary=summary,
        class_name=class_name,
        constructor=f"{class_name}()" if sized else f"{class_name}(in_features, out_features)",
        harden_note=note if harden else "",
        imports="import math\n" if "math." in body else "",
    )
    return header + "\n\n" + body


def save_kan(model: nn.Module, source: str, directory: str | Path, class_name: str) -> tuple[Path, Path]:
    """Write ``class_name.py`` and the trained ``class_name.pt`` state_dict (load with weights_only=True)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    py_path = directory / f"{class_name}.py"
    pt_path = directory / f"{class_name}.pt"
    py_path.write_text(source)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, pt_path)
    return py_path, pt_path
