"""Human-readable forms of a parsed KAN genome: one-line text, LaTeX, and the layer table the dashboard shows."""

from __future__ import annotations

from typing import Any

from spaces.base import Genome, Table

_LATEX = {
    "bspline": r"\mathrm{B\text{-}spline}",
    "rbf": r"\mathrm{RBF}",
    "chebyshev": r"T_n(\tanh x)",
    "legendre": r"P_n(\tanh x)",
    "fourier": r"\mathrm{Fourier}",
    "relu": r"\mathrm{ReLU\text{-}KAN}",
    "mexican_hat": r"\psi_{\mathrm{mexh}}",
    "dog": r"\psi_{\mathrm{DoG}}",
    "morlet": r"\psi_{\mathrm{Morlet}}",
    "afkan_quad1": r"\mathrm{AF}_{(AB)^2}",
    "afkan_sum": r"\mathrm{AF}_{A+B}",
    "afkan_prod": r"\mathrm{AF}_{AB}",
    "mlp": r"\mathrm{silu}",
}


def describe_layer(spec: dict[str, Any], fmt: str) -> str:
    """One layer spec as text (``bspline(grid=5, order=3, base)``) or as a LaTeX term."""
    family = spec["family"]
    params = [f"{k}={spec[k]}" for k in ("grid", "order", "degree") if k in spec]
    if fmt == "latex":
        names = {"selectable": spec.get("candidates"), "mixed": sorted(set(spec.get("nodes", [])))}.get(family)
        name = _LATEX[family] if names is None else r"\{" + ", ".join(_LATEX[f] for f in names) + r"\}"
        sub = ",".join(p.replace("grid", "G").replace("order", "k").replace("degree", "d") for p in params)
        text = f"{{{name}}}" + (f"_{{{sub}}}" if sub else "")
        if family == "selectable":
            text = r"\mathrm{select}" + text
        if spec.get("base"):
            text += r" + w_b\,\mathrm{silu}"
        return text
    if family == "selectable":
        head = f"selectable{{{', '.join(spec['candidates'])}}}"
    elif family == "mixed":
        counts = {f: spec["nodes"].count(f) for f in sorted(set(spec["nodes"]))}
        head = "mixed{" + ", ".join(f"{f} x{n}" for f, n in counts.items()) + "}"
    else:
        head = family
    extras = (
        params + (["base"] if spec.get("base") else []) + ([f"norm={spec['norm']}"] if spec["norm"] != "none" else [])
    )
    return f"{head}({', '.join(extras)})"


def describe_genome(g: Genome, fmt: str = "text") -> str:
    """The network in one line (``fmt`` "text", or "display": nothing to simplify) or as a LaTeX formula
    (``fmt`` "latex"), recipe included."""
    if fmt == "latex":
        widths = ", ".join(["d_{in}", *map(str, g["hidden"]), "d_{out}"])
        parts = [rf"\Phi_{i} = {describe_layer(s, 'latex')}" for i, s in enumerate(g["layers"])]
        if "recipe" in g:
            parts.append(r"\mathrm{recipe} = \texttt{" + g["recipe"].replace("_", r"\_") + "}")
        return rf"\mathrm{{KAN}}[{widths}]:\; " + r";\; ".join(parts)
    if fmt not in ("text", "display"):
        raise ValueError(f"describe fmt must be 'text', 'display' or 'latex', got {fmt!r}")
    widths = "-".join(["in", *map(str, g["hidden"]), "out"])
    parts = [f"L{i} {describe_layer(s, 'text')}" for i, s in enumerate(g["layers"])]
    if "recipe" in g:
        parts.append(f"recipe {g['recipe']}")
    return f"KAN {widths}: " + " | ".join(parts)


def layer_table(g: Genome) -> Table:
    """One row per layer: its widths, family, options, base branch, norm, and the families it mixes.

    A genome that names a training recipe gets a ``recipe`` column (the same name on every row: every layer
    trains with it), so the dashboard shows which recipe a candidate uses.
    """
    recipe = {"recipe": g["recipe"]} if "recipe" in g else {}
    widths = ["in", *map(str, g["hidden"]), "out"]
    rows = []
    for i, spec in enumerate(g["layers"]):
        nodes = spec.get("nodes", [])
        rows.append(
            {
                "layer": f"L{i} ({widths[i]} -> {widths[i + 1]})",
                "family": spec["family"],
                "options": ", ".join(f"{k}={spec[k]}" for k in ("grid", "order", "degree") if k in spec),
                "base (silu)": bool(spec.get("base")),
                "norm": spec["norm"],
                "candidates / nodes": ", ".join(spec.get("candidates", []))
                or ", ".join(f"{f} x{nodes.count(f)}" for f in sorted(set(nodes))),
                **recipe,
            }
        )
    return Table(rows)
