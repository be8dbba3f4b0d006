"""The display simplifier: each rule, learnable scalars kept, LaTeX, idempotence, and equal values on a grid."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from spaces.activation import ActivationSpace, EvolvedActivation
from spaces.activation.simplify import simplify
from spaces.activation.text import display_formula, display_scalars, latex
from tests.test_activation_space import varied_genomes

SPACE = ActivationSpace(max_depth=5, max_nodes=14)
GRID = torch.linspace(-6.0, 6.0, 1201, dtype=torch.float64)


def shown(text: str) -> str:
    return display_formula(SPACE.parse(text)["expr"])


RULES = [
    ("identity(x)*x", "x^2"),  # identity, then x*x
    ("x*(x*x)", "x^3"),
    ("1.0*sin(x)", "sin(x)"),
    ("sin(x)*1.0", "sin(x)"),
    ("0.0 + sin(x)", "sin(x)"),
    ("sin(x) - 0.0", "sin(x)"),
    ("0.0 - sin(x)", "-sin(x)"),
    ("relu(x) + zero(x)", "relu(x)"),  # a fixed schema's padding
    ("one(sin(x))*x", "x"),
    ("-(-(sin(x)))", "sin(x)"),
    ("x + x", "2.0*x"),
    ("sin(x) - sin(x) + x", "x"),
    ("max(tanh(x), tanh(x))", "tanh(x)"),
    ("2.0*(3.0*x)", "6.0*x"),
    ("x + exp(0.0)", "x + 1.0"),  # a constant subtree is the number it computes
    ("x + -1.0", "x - 1.0"),
    ("x - -2.0*sin(x)", "x + 2.0*sin(x)"),
    ("sin(x)*(-1.0)", "-sin(x)"),
    ("x*0.7071067811865476", "0.7071*x"),
]


@pytest.mark.parametrize(("text", "expected"), RULES)
def test_each_rule_simplifies_what_is_fixed(text: str, expected: str) -> None:
    assert shown(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "{1.0}*max(x, sin(x))",  # a learnable scalar at 1.0 is still a parameter
        "x*sigmoid({1.0}*x)",
        "identity({2.0}*x)*identity({2.0}*x)",  # two scalars that start equal train apart: no square
        "sinh({1.0}*1.0) + x",  # a subtree holding a scalar is not a number
        "identity({0.5}*x) + x",
    ],
)
def test_learnable_scalars_are_kept_whatever_their_value(text: str) -> None:
    assert shown(text) == SPACE.describe(SPACE.parse(text))


def test_a_learnable_constant_keeps_its_scalar_and_drops_what_it_ignores() -> None:
    assert shown("{0.5}*one(sin({2.0}*x)) + x") == "{0.5}*one(x) + x"
    assert latex(SPACE.parse("{0.5}*one(sin({2.0}*x)) + x")["expr"]) == r"\alpha_{0} + x"


def test_latex_is_drawn_simplified_without_redundant_parentheses() -> None:
    def drawn(text: str) -> str:
        return latex(SPACE.parse(text)["expr"])

    assert drawn("identity(x)*bessel_i0e(x)") == r"x \cdot \operatorname{I_0e}\left(x\right)"
    assert drawn("x^(exp(x) - 1.0)") == r"x^{e^{x} - 1}"  # an exponent in braces needs no parentheses
    assert drawn("x - (x + 1.0)") == r"x - \left(x + 1\right)"  # ... but a sum after a minus does
    assert drawn("laplace_diff(x, -1.0, {1.0})") == r"e^{-\beta_{0}\left|x - \left(-1\right)\right|}"
    assert drawn("-(-(x))") == "x"
    assert drawn("x*0.5 + x") == r"0.5 x + x"


def test_latex_names_scalars_as_the_export_does_when_a_rule_drops_one() -> None:
    genome = SPACE.parse("zero({3.0}*x) + tanh({2.0}*x)")
    assert latex(genome["expr"]) == r"\tanh\left(\beta_{1} x\right)"
    assert display_scalars(genome["expr"]) == [("beta_1", 2.0)]
    assert "self.beta_1 * x" in SPACE.to_source(genome, "Act")


def test_scalars_are_listed_in_the_order_the_formula_shows_them() -> None:
    genome = SPACE.parse("{1.5}*blend(tanh({0.5}*x), x, {0.25})")
    assert display_formula(genome["expr"]) == "{1.5}*blend(tanh({0.5}*x), x, {0.25})"
    assert display_scalars(genome["expr"]) == [("alpha_0", 1.5), ("beta_2", 0.5), ("beta_1", 0.25)]


def random_genomes(count: int) -> list[dict]:
    """Sampled and mutated genomes with many constants and scalars, so every rule gets exercised."""
    space = ActivationSpace(max_depth=5, max_nodes=14, param_probability=0.4, const_probability=0.35)
    return varied_genomes(space, count, seed=11)


def test_simplify_is_idempotent_and_leaves_the_genome_alone() -> None:
    changed = 0
    for genome in random_genomes(400):
        before = copy.deepcopy(genome)
        once = simplify(genome["expr"])
        assert simplify(once) == once
        assert genome == before and SPACE.canonical(genome) == SPACE.canonical(before)
        changed += display_formula(genome["expr"]) != SPACE.describe(genome)
    assert changed > 50  # the sample does exercise the rules


def test_simplified_tree_computes_what_the_tree_computes() -> None:
    """Where the real tree is finite on the grid, the simplified one gives the same values (float64): every rule's
    example, and hundreds of random genomes."""
    compared = 0
    for genome in [SPACE.parse(text) for text, _ in RULES] + random_genomes(400):
        expr = genome["expr"]
        simpler = simplify(expr)
        if simpler == expr:
            continue
        with torch.no_grad():
            expected = EvolvedActivation(expr, "")(GRID)
            got = EvolvedActivation(simpler, "")(GRID)
        finite = torch.isfinite(expected)
        torch.testing.assert_close(got[finite], expected[finite], rtol=1e-9, atol=1e-12, msg=SPACE.describe(genome))
        compared += 1
    assert compared > 50 + len(RULES)


def test_built_module_and_export_are_unchanged_by_display() -> None:
    genome = SPACE.parse("identity(x)*x + zero(x)")
    source = SPACE.to_source(genome, "Act")
    assert "f(x) = x^2" in source and "return (x * x) + torch.zeros_like(x)" in source
    assert str(SPACE.build(genome)).count("f(x) = x^2") == 1
    assert np.isclose(SPACE.build(genome)(torch.tensor([3.0])).item(), 9.0)
