"""NormActSpace: EvoNorm-style search over normalization-activation computation graphs."""

from __future__ import annotations

import reprlib
from collections.abc import Sequence

import numpy as np
import torch

from spaces.base import Genome, GenomeError, Graph, Space, SpaceConfigError
from spaces.normact.describe import formula, graph_dot, graph_json
from spaces.normact.export import to_source
from spaces.normact.genome import (
    DEFAULT_EPS,
    KIND,
    MAX_NODES,
    MODES,
    SEED_EPS,
    SEED_GRAPHS,
    VERSION,
    analyse,
    canonical_string,
    live_indices,
    make_genome,
    structural_problems,
    validate_genome,
)
from spaces.normact.module import LAYOUTS, NormActLayer
from spaces.normact.ops import BATCH_OPS, INPUT_NAMES, NODE_OPS, NUM_INPUTS, OPS
from spaces.registry import register_space

SAMPLE_ATTEMPTS = 100  # sample() redraws a graph with a static problem this many times at most
MUTATE_ATTEMPTS = 20  # mutate() redraws a node that came out unchanged this many times at most
PROBE_SHAPE = (4, 8, 4, 4)  # the NCHW batch the flat probe values are laid out in
PROBE_PARAMETER_SEEDS = {"weight": 1, "bias": 2, "v0": 3, "v1": 4}  # one stream each: draws never shift
PROBE_PARAMETER_SCALE = 0.5  # probe parameters are their init plus this times N(0, 1)


@register_space
class NormActSpace(Space):
    """Graphs over x, 0, v0, v1 with element-wise and aggregate ops, followed by a per-channel affine.

    Options: ``mode`` "B" (batch statistics allowed, running averages in eval) or "S" (sample-based);
    ``nodes`` intermediate nodes per sampled graph; ``ops`` the ops sampling and mutation may draw
    (default: every op the mode allows but the constant "one", which a list may add); ``groups`` for group
    statistics (reduced until it divides C); ``eps`` inside every std / rms of sampled graphs (a seed keeps the
    eps of its published layer: 1e-3 for timm's EvoNorm-B0, 1e-5 for the others); ``momentum`` of running
    statistics; ``safe_eps`` the smallest divisor, log and sqrt offset; ``exp_max`` the clamp on exp's input.
    """

    kind = KIND
    version = VERSION
    display_name = "Norm-act"
    class_prefix = "NormAct"
    normalizes = True

    def __init__(
        self,
        mode: str = "B",
        nodes: int = 10,
        ops: Sequence[str] | None = None,
        groups: int = 32,
        eps: float = DEFAULT_EPS,
        momentum: float = 0.1,
        safe_eps: float = 1e-5,
        exp_max: float = 20.0,
    ):
        if mode not in MODES:
            raise SpaceConfigError(f"normact mode must be 'B' or 'S', got {mode!r}")
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise SpaceConfigError(f"normact nodes must be an integer in 1..{MAX_NODES}, got {reprlib.repr(nodes)}")
        if ops is not None and (isinstance(ops, str) or not all(isinstance(op, str) for op in ops)):
            raise SpaceConfigError(f"normact ops must be a list of op names, got {reprlib.repr(ops)}")
        allowed = list(OPS) if ops is None else list(ops)
        unknown = [op for op in allowed if op not in NODE_OPS]
        if unknown:
            raise SpaceConfigError(f"unknown normact op(s) {unknown}; known ops: {', '.join(NODE_OPS)}")
        if mode == "S":
            if ops is not None and set(allowed) & BATCH_OPS:
                raise SpaceConfigError(f"mode 'S' forbids batch statistics, remove {sorted(set(allowed) & BATCH_OPS)}")
            allowed = [op for op in allowed if op not in BATCH_OPS]
        if not allowed:
            raise SpaceConfigError("normact ops is empty: give at least one op to sample from")
        self.mode = mode
        self.nodes = nodes
        self.ops = tuple(dict.fromkeys(allowed))
        self.defaults = {"groups": groups, "momentum": momentum, "eps": eps, "safe_eps": safe_eps, "exp_max": exp_max}
        try:  # the defaults go into every sampled genome, so check them with the genome's own rules
            validate_genome(make_genome(mode, [("neg", 0)], **self.defaults))
        except GenomeError as exc:
            raise SpaceConfigError(f"bad normact option: {exc}") from None

    # -- genomes -------------------------------------------------------------------------------------

    def validate(self, genome: Genome) -> None:
        self._check_header(genome)
        validate_genome(genome)

    def canonical(self, genome: Genome) -> str:
        self.validate(genome)
        return canonical_string(genome)

    def static_problems(self, genome: Genome) -> list[str]:
        try:
            self.validate(genome)
        except GenomeError as exc:
            return [str(exc)]
        return structural_problems(analyse(genome))

    def seeds(self) -> dict[str, Genome]:
        """BN-ReLU, GN-ReLU, LN-GELU, EvoNorm-B0 and EvoNorm-S0, those the space's mode allows, each with the eps
        of its published layer (torch's norms, timm's EvoNorms), whatever the space's ``eps`` option."""
        return {
            name: make_genome(self.mode, nodes, **{**self.defaults, "eps": SEED_EPS.get(name, DEFAULT_EPS)})
            for name, (modes, nodes) in SEED_GRAPHS.items()
            if self.mode in modes
        }

    def _random_node(self, index: int, rng: np.random.Generator) -> dict:
        op = self.ops[int(rng.integers(len(self.ops)))]
        return {"op": op, "in": [int(i) for i in rng.integers(0, index, size=NODE_OPS[op].arity)]}

    def sample(self, rng: np.random.Generator) -> Genome:
        """A random graph of ``nodes`` nodes whose last node is the output; redrawn while it has a static problem."""
        for _ in range(SAMPLE_ATTEMPTS):
            genome = make_genome(self.mode, [("neg", 0)] * self.nodes, **self.defaults)
            genome["nodes"] = [self._random_node(NUM_INPUTS + i, rng) for i in range(self.nodes)]
            if not structural_problems(analyse(genome)):
                break
        return genome

    def mutate(self, genome: Genome, rng: np.random.Generator) -> tuple[Genome, str]:
        """EvoNorm's mutation: a live node gets a new op and inputs re-sampled from earlier nodes.

        Only live nodes are picked: changing a dead node gives a functional duplicate.
        """
        self.validate(genome)
        child = self.copy(genome)
        live = live_indices(genome)
        index = live[int(rng.integers(len(live)))]
        old = genome["nodes"][index - NUM_INPUTS]
        for _ in range(MUTATE_ATTEMPTS):
            node = self._random_node(index, rng)
            if node != old:
                break
        child["nodes"][index - NUM_INPUTS] = node
        return child, "node"

    def crossover(self, a: Genome, b: Genome, rng: np.random.Generator) -> Genome | None:
        """Uniform node crossover of two graphs of equal length and mode (inputs stay earlier nodes)."""
        self.validate(a)
        self.validate(b)
        if len(a["nodes"]) != len(b["nodes"]) or a["mode"] != b["mode"]:
            return None
        child = self.copy(a)
        take_b = rng.random(len(a["nodes"])) < 0.5
        pairs = zip(a["nodes"], b["nodes"], take_b, strict=True)
        child["nodes"] = [self.copy(nb) if pick else self.copy(na) for na, nb, pick in pairs]
        return child

    def describe(self, genome: Genome, fmt: str = "text") -> str:
        """``fmt``: "text" or "latex" formula ("display" is the text: the live graph is already minimal), or
        "graph" (JSON nodes and edges of the live graph)."""
        self.validate(genome)
        if fmt == "graph":
            return graph_json(analyse(genome))
        if fmt not in ("text", "display", "latex"):
            raise ValueError(f"describe format must be 'text', 'display', 'latex' or 'graph', got {fmt!r}")
        return formula(analyse(genome), "text" if fmt == "display" else fmt)

    def parts(self, genome: Genome) -> set[tuple[str, str]]:
        """The ops of the live graph, and each live node with what it reads: ("node", "div(x, batch_std)")."""
        self.validate(genome)
        nodes = genome["nodes"]

        def name(index: int) -> str:
            return INPUT_NAMES[index] if index < NUM_INPUTS else nodes[index - NUM_INPUTS]["op"]

        found: set[tuple[str, str]] = set()
        for index in live_indices(genome):
            op, inputs = nodes[index - NUM_INPUTS]["op"], [name(i) for i in nodes[index - NUM_INPUTS]["in"]]
            if getattr(NODE_OPS[op], "commutative", False):
                inputs.sort()
            found |= {("op", op), ("node", f"{op}({', '.join(inputs)})")}
        return found

    def present(self, genome: Genome) -> Graph:
        """The live computation graph, drawn with Graphviz."""
        self.validate(genome)
        return Graph(graph_dot(analyse(genome)))

    # -- torch ---------------------------------------------------------------------------------------

    def build(self, genome: Genome, *, channels: int, layout: str = "nchw") -> NormActLayer:
        """The layer for ``channels`` features; ``layout`` "nchw" (N, C, *spatial) or "nlc" (N, L, C)."""
        self.validate(genome)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        plan = analyse(genome)
        return NormActLayer(plan, channels, layout, formula(plan))

    def to_source(self, genome: Genome, class_name: str) -> str:
        self.validate(genome)
        plan = analyse(genome)
        return to_source(plan, genome, class_name, formula(plan))

    def probe(self, genome: Genome, inputs: torch.Tensor) -> tuple[torch.nn.Module, torch.Tensor]:
        """A layer for 8 channels with fixed random parameters, and the probe values spread (fixed permutation)
        over a (4, 8, 4, 4) batch.

        The parameters are not left at their init (v0 = beta = 0, v1 = gamma = 1): there ``x * v1 + v0`` equals
        ``x``, and the fingerprint would call layers that differ once trained functional duplicates.
        """
        values = inputs.detach().flatten().float()
        count = int(np.prod(PROBE_SHAPE))
        picked = values[torch.linspace(0, values.numel() - 1, count).round().long()]
        order = torch.randperm(count, generator=torch.Generator().manual_seed(0))
        layer = self.build(genome, channels=PROBE_SHAPE[1])
        with torch.no_grad():
            for name, parameter in layer.named_parameters():
                generator = torch.Generator().manual_seed(PROBE_PARAMETER_SEEDS[name])
                parameter.add_(PROBE_PARAMETER_SCALE * torch.randn(parameter.shape, generator=generator))
        return layer, picked[order].reshape(PROBE_SHAPE)
