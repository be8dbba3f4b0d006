"""Seeded fuzz of the two text inputs a user types: the config loader and the activation formula parser.

Thousands of generated inputs, some valid, most broken in the ways careless and hostile input is: cut, spliced,
mistyped, wrong types, huge numbers, deep nesting, bytes that are no text. Only ConfigError (the loader) and
GenomeError (the parser) may come out; anything else is a traceback a user would see.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from search.config import ConfigError, config_from_bytes
from spaces import GenomeError, get_space
from tests.conftest import study_config

ODD_VALUES: list[Any] = [
    True,
    None,
    0,
    -1,
    10**30,
    1e308,
    float("inf"),
    float("nan"),
    "",
    "x" * 300,
    [1, 2],
    {"a": 1},
    [[[]]],
    "../../etc",
    3.5,
]
ODD_BYTES = [b"\xff", b"\x00", b"\t", b"[", b"{", b"]", b"}", b":", b"- ", b"&a", b"*a", b"!!python/name:os.sys", b"'"]


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [path] + [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list):
        return [path] + [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def _set(node: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _structural(base: dict[str, Any], rng: np.random.Generator) -> bytes:
    """The config with a few values replaced by odd ones, keys renamed or duplicated."""
    config = copy.deepcopy(base)
    for _ in range(int(rng.integers(1, 4))):
        paths = [p for p in _leaves(config) if p]
        path = paths[int(rng.integers(len(paths)))]
        _set(config, path, copy.deepcopy(ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]))
    text = yaml.safe_dump(config, allow_unicode=True).encode()
    if rng.random() < 0.2:
        text += b"\nname: twice\n"
    return text


def _textual(text: bytes, rng: np.random.Generator) -> bytes:
    """The file with bytes cut, inserted or spliced, as a bad edit or a truncated copy leaves it."""
    data = bytearray(text)
    for _ in range(int(rng.integers(1, 6))):
        at = int(rng.integers(len(data) + 1))
        choice = rng.random()
        if choice < 0.4:
            del data[at : at + int(rng.integers(1, 40))]
        elif choice < 0.8:
            data[at:at] = ODD_BYTES[int(rng.integers(len(ODD_BYTES)))] * int(rng.integers(1, 200))
        else:
            data[at:at] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 8))).tolist())
    return bytes(data)


def test_fuzz_the_config_loader_only_config_errors_come_out() -> None:
    """About 5 s (PyYAML's pure-Python loader, which bounds nesting): 2000 inputs, a third of them valid YAML."""
    base = study_config("fuzz", Path("runs"), space__seeds=["relu", "x*sigmoid({1.0}*x)"])
    text = yaml.safe_dump(base).encode()
    rng = np.random.default_rng(2024)
    outcomes: Counter = Counter()
    for i in range(2000):
        data = _structural(base, rng) if i % 3 == 0 else _textual(text, rng)
        try:
            config_from_bytes(data, f"fuzz-{i}")
            outcomes["loaded"] += 1
        except ConfigError as exc:
            assert "Traceback" not in str(exc)
            outcomes[str(exc).split(":")[0][:40]] += 1
        except Exception as exc:  # the fuzz's point: show the input that escaped
            raise AssertionError(f"input {i} raised {exc!r}:\n{data[:2000]!r}") from exc
    assert outcomes["loaded"] > 30, outcomes  # some edits leave a valid config
    assert sum(outcomes.values()) - outcomes["loaded"] > 1500, outcomes


TOKENS = [
    "x", "x", "(", ")", "(", ")", ",", "+", "-", "-", "*", "/", "^", "**", "{1.5}", "{-0.5}", "{", "}", "0.5",
    "2", "1e400", "1e-3", "relu", "sin", "tanh", "blend", "max", "gauss_diff", "frob", "one", " ", "\t", "\xe9",
    "\x00", "1e", ".", "9" * 400, "relu(", "((((", "))))", "x*sigmoid(", "{1.0}*", "--",
]  # fmt: skip


def _formula(sampler: Any, rng: np.random.Generator) -> str:
    """A token soup, a sampled activation's text with a few tokens cut or spliced in, or one deep nesting."""
    draw = rng.random()
    if draw < 0.05:
        opener, closer = [("(", ")"), ("relu(", ")"), ("-", ""), ("x^", "")][int(rng.integers(4))]
        depth = int(rng.integers(1, 400))
        return opener * depth + "x" + closer * depth
    if draw < 0.4:
        return "".join(TOKENS[int(i)] for i in rng.integers(len(TOKENS), size=int(rng.integers(0, 40))))
    text = sampler.describe(sampler.sample(rng))
    for _ in range(int(rng.integers(0, 3))):
        at = int(rng.integers(len(text) + 1))
        if rng.random() < 0.5:
            text = text[:at] + text[at + int(rng.integers(1, 4)) :]
        else:
            text = text[:at] + TOKENS[int(rng.integers(len(TOKENS)))] + text[at:]
    return text


def test_fuzz_the_formula_parser_only_genome_errors_come_out() -> None:
    """About 3 s: 10000 formulas; what parses also prints back to the same genome."""
    spaces = [get_space("activation"), get_space("activation", max_depth=32, max_nodes=500, max_params=100)]
    sampler = get_space("activation", max_depth=6, max_nodes=30, max_params=6)
    rng = np.random.default_rng(7)
    outcomes: Counter = Counter()
    for i in range(10_000):
        space = spaces[i % 2]
        text = _formula(sampler, rng)
        try:
            genome = space.parse(text)
        except GenomeError as exc:
            assert len(str(exc)) < 1000, str(exc)[:2000]
            outcomes["error"] += 1
            continue
        except Exception as exc:
            raise AssertionError(f"formula {i} raised {exc!r}: {text!r}") from exc
        outcomes["parsed"] += 1
        assert space.parse(space.describe(genome)) == genome, text
        assert all(math.isfinite(v) for v in _numbers(genome["expr"])), text
    assert outcomes["parsed"] > 1500 and outcomes["error"] > 4000, outcomes


def _numbers(node: dict[str, Any]) -> list[float]:
    found = [node[key] for key in ("value", "alpha", "beta") if key in node]
    return found + [n for arg in node.get("args", ()) for n in _numbers(arg)]
