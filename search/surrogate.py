"""Surrogate-assisted search: a model of the evaluations so far chooses what to train next.

Following AQuaSurF, a candidate is described by what it computes (``search.surrogate_features``: its outputs on
fixed probe points and their slopes; with ``shape``, the default, also those outputs up to scale, shift and sign;
with ``spectrum``, the NTK eigenvalues of a small network using it), which costs a forward pass instead of a
training. Each ask:

1. draws a pool of fresh samples and mutations of the best candidates so far (in a space that lists no more
   genomes than ``pool``, every genome), keeping those that are new (not told, not in flight, by functional
   identity) and pass the space's static checks; with ``distinct_shapes`` (the default), also dropping those equal
   to a told or in-flight candidate up to scale, shift and sign (a rescaled copy of the best is no discovery, and
   with learnable scalars it is the same layer at another initial value), and with ``distinct_structures`` (the
   default) those that differ from one only in the initial values of learnable parameters (``Space.structure``:
   each learns its own values, so training another start mostly re-measures seed noise), while others are left;
2. until ``initial`` candidates have been told (own or warm-start), proposes, with ``initial_design: baselines``
   (the default), the pool member nearest in features to each of the space kind's well-known layers in turn (ReLU,
   leaky ReLU, ELU, ... for activations; where the space expresses one, that layer itself): a prior that good
   layers resemble known ones, which holds in spaces that cannot express the baselines; or a fresh random sample
   (``initial_design: random``); afterwards
3. fits a model on the told candidates, a random forest (``model: forest``, the default: its trees' spread is the
   uncertainty) or a Gaussian process (``gp``), and proposes the pool member with the highest expected improvement
   (``acquisition: ei``) or upper confidence bound (``ucb``).

The defaults were chosen on one recorded table (``benchmarks/search_efficiency.py``, BENCHMARKS.md) and checked on
the other, held out.

Several objectives are scalarized per ask with random weights (ParEGO's augmented Chebyshev on min-max normalized
values), so successive asks cover the Pareto front. Rejected and failed candidates count as the worst value seen,
so the model learns to avoid them. A candidate that successive halving stopped at a rung counts as a failure too
(``stopped: failure``, the default) or by its values there, below every candidate that trained further, the order
halving judged them in (``stopped: ranked``); on table A the second left more studies without a top-1% function
(BENCHMARKS.md): a model that proposes good candidates raises the rung's bar, and halving then stops most of them.
A layer told again after training further (a late promotion, ``search.promotion``) replaces what was known of it;
candidates in flight count as the mean (a constant liar), so parallel workers get different proposals.
``warm_start`` names finished studies of the same store, evaluated the same way, whose outcomes are prior data (a
list, or one string of comma-separated names).

State is what was told, in order. Each ask's random numbers come from a base seed and the counts of tells and
asks; the base seed travels in every proposal's data, so a resumed study adopts it while replaying: replaying the
same outcomes gives the same proposals.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from evaluators.config import Objective
from evaluators.halving import rung_values
from evaluators.vocabulary import Status, StudyStatus
from search.ask_tell import Algorithm, AlgorithmConfigError, Proposal, Result
from search.objectives import signed_values
from search.surrogate_features import FeatureMap, shape_twins
from spaces import Genome, GenomeError, Space, SpaceConfigError

if TYPE_CHECKING:
    from search.config import StudyConfig
    from search.store import Store

ACQUISITIONS = ("ei", "ucb")
MODELS = ("forest", "gp")
INITIAL_DESIGNS = ("random", "baselines")
STOPPED = ("failure", "ranked")  # how a candidate stopped by successive halving counts
PARENTS = 5  # mutations are drawn from this many of the best candidates
CHEBYSHEV_RHO = 0.05  # ParEGO's augmentation term


@dataclass
class Observation:
    """A told candidate as the model sees it."""

    identity: str
    features: np.ndarray
    values: tuple[float, ...] | None  # objectives turned so that larger is better; None if rejected or failed
    genome: Genome
    shape_vector: np.ndarray  # ``Described.shape_vector``
    structure: str  # ``Described.structure``
    rung: int | None = None  # the successive-halving rung ``values`` come from, for a candidate stopped there
    candidate_id: int | None = None  # None for warm-start data from another study
    generation: int = 0


@dataclass
class Candidate:
    """A pool member: a genome not seen yet, its features, and where it came from."""

    genome: Genome
    features: np.ndarray
    identity: str
    shape_vector: np.ndarray
    structure: str
    parent: Observation | None = None
    mutation_op: str | None = None


class Surrogate(Algorithm):
    name = "surrogate"

    def __init__(
        self,
        space: Space,
        objectives: list[Objective],
        rng: np.random.Generator,
        initial: int = 4,
        pool: int = 1000,
        mutants: int = 250,
        acquisition: str = "ei",
        kappa: float = 1.0,
        xi: float = 0.0,
        trees: int = 50,
        points: int = 64,
        spectrum: bool = False,
        shape: bool = True,
        initial_design: str = "baselines",
        model: str = "forest",
        distinct_shapes: bool = True,
        distinct_structures: bool = True,
        stopped: str = "failure",
        warm_start: list[str] | str | None = None,
        **options: Any,
    ):
        super().__init__(space, objectives, rng, **options)
        if acquisition not in ACQUISITIONS:
            raise AlgorithmConfigError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
        counts = {"initial": (initial, 1), "pool": (pool, 1), "mutants": (mutants, 0), "trees": (trees, 1)}
        counts["points"] = (points, 8)
        for key, (value, least) in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise AlgorithmConfigError(f"{key} must be an integer >= {least}, got {value!r}")
        if kappa < 0 or xi < 0:
            raise AlgorithmConfigError(f"kappa and xi must be >= 0, got {kappa} and {xi}")
        names = [n.strip() for n in warm_start.split(",") if n.strip()] if isinstance(warm_start, str) else warm_start
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise AlgorithmConfigError(f"warm_start must list study names (or comma-separate them), got {warm_start!r}")
        self.initial, self.pool_size, self.mutants = initial, pool, mutants
        self.acquisition, self.kappa, self.xi, self.trees = acquisition, kappa, xi, trees
        self.warm_start = list(names or [])
        if model not in MODELS:
            raise AlgorithmConfigError(f"model must be one of {MODELS}, got {model!r}")
        self.model = model
        if initial_design not in INITIAL_DESIGNS:
            raise AlgorithmConfigError(f"initial_design must be one of {INITIAL_DESIGNS}, got {initial_design!r}")
        if stopped not in STOPPED:
            raise AlgorithmConfigError(f"stopped must be one of {STOPPED}, got {stopped!r}")
        self.stopped = stopped
        flags = {
            "spectrum": spectrum,
            "shape": shape,
            "distinct_shapes": distinct_shapes,
            "distinct_structures": distinct_structures,
        }
        for key, flag in flags.items():
            if not isinstance(flag, bool):
                raise AlgorithmConfigError(f"{key} must be true or false, got {flag!r}")
        self.features = FeatureMap(space, points, spectrum, shape)
        self.distinct_shapes, self.distinct_structures = distinct_shapes, distinct_structures
        self.anchors = baseline_features(self.features) if initial_design == "baselines" else []
        self.universe = whole_space(space, pool)
        self.base_seed = int(rng.integers(2**31 - 1))
        self.observed: dict[str, Observation] = {}  # by identity, in the order told
        self.prior: dict[str, Observation] = {}  # warm-start data
        self.pending: dict[str, Candidate] = {}  # asked, not told yet
        self.tells = 0
        self.asks_since_tell = 0

    @classmethod
    def option_names(cls) -> list[str]:
        return [
            "initial",
            "pool",
            "mutants",
            "acquisition",
            "kappa",
            "xi",
            "trees",
            "points",
            "spectrum",
            "shape",
            "initial_design",
            "model",
            "distinct_shapes",
            "distinct_structures",
            "stopped",
            "warm_start",
        ]

    # -- tell ----------------------------------------------------------------------------------------
    def tell(self, result: Result) -> None:
        self.tells += 1
        self.asks_since_tell = 0
        if "surrogate_seed" in result.proposal_data:
            self.base_seed = int(result.proposal_data["surrogate_seed"])
        observation = self._observe(result.genome, result.status, result.objectives, result.rungs)
        if observation is None:
            return
        self.pending.pop(observation.identity, None)
        earlier = self.observed.get(observation.identity)
        if earlier is None or _reach(observation) > _reach(earlier):  # a late promotion trained it further
            observation.candidate_id, observation.generation = result.candidate_id, result.generation
            self.observed[observation.identity] = observation

    def _observe(
        self, genome: Genome, status: Status, objectives: dict[str, float], rungs: list[dict[str, float]]
    ) -> Observation | None:
        described = self.features(genome)
        if described is None:
            return None  # does not build (an invalid genome): nothing to learn about a function
        values, rung = None, None
        if status == Status.DONE:
            values = signed_values(objectives, self.objectives)
        elif self.stopped == "ranked" and rungs and (values := signed_values(rungs[-1], self.objectives)) is not None:
            rung = len(rungs) - 1
        return Observation(
            described.identity, described.features, values, genome, described.shape_vector, described.structure, rung
        )

    # -- warm start ----------------------------------------------------------------------------------
    def learn_from(self, store: Store, config: StudyConfig) -> None:
        """Finished studies named in ``warm_start``, evaluated as this one is, become prior data."""
        from search.config import parse_config
        from search.store import StoreError

        for name in self.warm_start:
            try:
                study = store.get_study(name)
            except StoreError as exc:
                raise AlgorithmConfigError(f"warm_start: {exc}") from None
            if study.status != StudyStatus.FINISHED:
                raise AlgorithmConfigError(f"warm_start: study {name!r} is {study.status}; name finished studies")
            other = parse_config(study.config, f"stored config of study {name!r}")
            if other.space.kind != config.space.kind or _evaluation(other) != _evaluation(config):
                raise AlgorithmConfigError(
                    f"warm_start: study {name!r} searched space {other.space.kind!r} with another evaluator "
                    "(kind, proxies or table); its numbers are not comparable with this study's"
                )
            for candidate, evaluation in store.history(study.id):
                if evaluation.status in (Status.DONE, Status.REJECTED, Status.FAILED):
                    rungs = rung_values(evaluation.metrics or {}, self.objectives)
                    observation = self._observe(candidate.genome, evaluation.status, evaluation.objectives, rungs)
                    if observation is not None:
                        self.prior.setdefault(observation.identity, observation)

    # -- ask -----------------------------------------------------------------------------------------
    def ask(self) -> Proposal:
        rng = np.random.default_rng([self.base_seed, self.tells, self.asks_since_tell])
        self.asks_since_tell += 1
        weights = rng.dirichlet(np.ones(len(self.objectives)))
        known = [*self.observed.values(), *(o for i, o in self.prior.items() if i not in self.observed)]
        scored = self._scalarized(known, weights)
        pool = self._pool(rng, [o for o, s in sorted(scored, key=lambda p: -p[1])[:PARENTS]])
        if not pool:  # everything the pool reached was seen: the runner's duplicate limit ends an exhausted space
            return Proposal(self.space.sample(rng), origin="sample", data=self._data())
        model_ready = len(known) >= self.initial and len({s for _, s in scored}) >= 2
        index = self._acquire(pool, scored, rng) if model_ready else self._initial_choice(pool, rng)
        chosen = pool[index]
        self.pending[chosen.identity] = chosen
        parent = chosen.parent
        return Proposal(
            chosen.genome,
            origin="surrogate",
            parents=[parent.candidate_id] if parent is not None and parent.candidate_id is not None else [],
            mutation_op=chosen.mutation_op,
            generation=parent.generation + 1 if parent is not None else 0,
            data=self._data(),
        )

    def _initial_choice(self, pool: list[Candidate], rng: np.random.Generator) -> int:
        """Before the model: the pool member nearest the next baseline not yet used, else one drawn at random."""
        used = len(self.observed) + len(self.pending)
        features = np.stack([c.features for c in pool])
        if used >= len(self.anchors) or self.anchors[used].shape != features.shape[1:]:
            return int(rng.integers(len(pool)))
        return int(np.argmin(np.linalg.norm(features - self.anchors[used], axis=1)))

    def _data(self) -> dict[str, Any]:
        return {"surrogate_seed": self.base_seed}

    def _scalarized(self, known: list[Observation], weights: np.ndarray) -> list[tuple[Observation, float]]:
        """The evaluated candidates with one value each (larger is better): the rank, scaled to (0, 1], of the
        augmented Chebyshev value over the normalized objectives (ranks keep one outlier from flattening the rest);
        with ``stopped: ranked``, candidates stopped at a halving rung rank below those that trained further, by
        their values there (each rung normalized on its own); rejected and failed ones get 0, below every evaluated
        value."""
        done = [o for o in known if o.values is not None]
        if not done:
            return []
        values = np.array([o.values for o in done], dtype=float)
        full = max((o.rung for o in done if o.rung is not None), default=0) + 1
        levels = np.array([full if o.rung is None else o.rung for o in done])
        key = np.empty(len(done))
        for level in np.unique(levels):
            at = levels == level
            low, high = values[at].min(axis=0), values[at].max(axis=0)
            weighted = weights * (values[at] - low) / np.where(high > low, high - low, 1.0)
            chebyshev = weighted.min(axis=1) + CHEBYSHEV_RHO * weighted.sum(axis=1)  # in [0, 1 + rho]
            key[at] = 2 * level + chebyshev  # every rung's values above the one below's
        scalar = rankdata(key) / len(done)
        by_identity = {o.identity: float(s) for o, s in zip(done, scalar, strict=True)}
        return [(o, by_identity.get(o.identity, 0.0)) for o in known]

    def _pool(self, rng: np.random.Generator, parents: list[Observation]) -> list[Candidate]:
        """Fresh samples and mutations of ``parents`` that are new and pass the static checks, one per function;
        in a space that lists no more genomes than ``pool``, every genome instead (the model scores them all)."""
        seen = set(self.observed) | set(self.pending)
        pool: dict[str, Candidate] = {}

        def offer(genome: Genome, parent: Observation | None = None, op: str | None = None) -> None:
            described = self.features(genome)
            if described is None or not described.passes_static:
                return
            key = described.identity
            if key not in seen and key not in pool:
                pool[key] = Candidate(
                    genome, described.features, key, described.shape_vector, described.structure, parent, op
                )

        if self.universe is not None:
            for genome in self.universe:
                offer(genome)
            return self._novel(list(pool.values()))
        for _ in range(self.pool_size):
            offer(self.space.sample(rng))
        for i in range(self.mutants if parents else 0):
            parent = parents[i % len(parents)]
            try:
                genome, op = self.space.mutate(parent.genome, rng)
                if rng.random() < 0.5:  # two steps now and then: a wider neighbourhood
                    genome, second = self.space.mutate(genome, rng)
                    op = f"{op}+{second}"
            except GenomeError:
                continue  # a warm-start genome outside this space's limits, or one no mutation changes
            offer(genome, parent, op)
        return self._novel(list(pool.values()))

    def _novel(self, pool: list[Candidate]) -> list[Candidate]:
        """The pool less the members that would re-measure a told, warm-start or in-flight candidate, unless that
        leaves nothing: with ``distinct_shapes`` those whose outputs are one's up to scale, shift and sign (the
        next layer absorbs those), with ``distinct_structures`` those that differ from one only in learnable
        initial values."""
        if not pool:
            return pool
        seen = [*self.observed.values(), *self.prior.values(), *self.pending.values()]
        repeats = np.zeros(len(pool), dtype=bool)
        if self.distinct_structures:
            structures = {item.structure for item in seen}
            repeats |= np.array([c.structure in structures for c in pool])
        if self.distinct_shapes:
            known = [item.shape_vector for item in seen if item.shape_vector.shape == pool[0].shape_vector.shape]
            if known:
                repeats |= shape_twins(np.stack([c.shape_vector for c in pool]), np.stack(known))
        return pool if repeats.all() else [c for c, repeat in zip(pool, repeats, strict=True) if not repeat]

    def _acquire(self, pool: list[Candidate], scored: list[tuple[Observation, float]], rng: np.random.Generator) -> int:
        """Fit the model (in-flight candidates at the mean value) and take the best acquisition value."""
        values = np.array([s for _, s in scored])
        features = [o.features for o, _ in scored] + [c.features for c in self.pending.values()]
        targets = np.concatenate([values, np.full(len(self.pending), values.mean())])
        candidates = np.stack([c.features for c in pool])
        mean, spread = self._predict(np.stack(features), targets, candidates, int(rng.integers(2**31 - 1)))
        if self.acquisition == "ucb":
            return int(np.argmax(mean + self.kappa * spread))
        own = [s for o, s in scored if o.identity in self.observed]
        best = max(own) if own else values.max()
        gain = mean - best - self.xi
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(spread > 0, gain / spread, 0.0)
        improvement = np.where(spread > 0, gain * norm.cdf(z) + spread * norm.pdf(z), np.maximum(gain, 0.0))
        return int(np.argmax(improvement))

    def _predict(
        self, features: np.ndarray, targets: np.ndarray, candidates: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's mean and uncertainty at ``candidates``: a random forest's trees' mean and spread, or a
        Gaussian process (Matern 5/2 on standardized features, with a noise term) posterior."""
        if self.model == "forest":
            forest = RandomForestRegressor(n_estimators=self.trees, max_features=0.3, random_state=seed)
            forest.fit(features, targets)
            per_tree = np.stack([tree.predict(candidates) for tree in forest.estimators_])
            return per_tree.mean(axis=0), per_tree.std(axis=0)
        center, scale = features.mean(axis=0), features.std(axis=0)
        scale = np.where(scale > 1e-9, scale, 1.0)
        width = np.sqrt(features.shape[1])
        kernel = ConstantKernel() * Matern(length_scale=width, length_scale_bounds=(1e-2 * width, 1e2 * width))
        process = GaussianProcessRegressor(kernel + WhiteKernel(1e-2), normalize_y=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            process.fit((features - center) / scale, targets)
        mean, spread = process.predict((candidates - center) / scale, return_std=True)
        return mean, spread


def _reach(observation: Observation) -> float:
    """How far a told candidate trained, as the model counts it: not at all (rejected, failed, or stopped under
    ``stopped: failure``), to a halving rung, or fully."""
    if observation.values is None:
        return -1
    return math.inf if observation.rung is None else observation.rung


def whole_space(space: Space, pool: int) -> list[Genome] | None:
    """The space's genomes where it lists them and they are no more than ``pool``, else None."""
    try:
        genomes = space.enumerate()
    except SpaceConfigError:
        return None
    return genomes if len(genomes) <= pool else None


def baseline_features(features: FeatureMap) -> list[np.ndarray]:
    """What ``features`` sees of the well-known layers of its space's kind, in the space's order: the default
    configuration's named seeds, so a space whose options cannot express them still gets them."""
    from spaces import get_space

    try:
        reference = get_space(features.space.kind)
    except Exception:  # noqa: BLE001 - a space without a default configuration has no baselines to start from
        return []
    describe = FeatureMap(reference, features.points, features.spectrum, features.shape)
    described = [describe(genome) for genome in reference.seeds().values()]
    return [d.features for d in described if d is not None]


def _evaluation(config: StudyConfig) -> dict[str, Any]:
    """What makes two studies' numbers comparable: the evaluator kind and what it trains on or reads."""
    return config.evaluator.model_dump(mode="json", include={"kind", "proxies", "table", "synthetic"})
