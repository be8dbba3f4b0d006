"""What a surrogate model sees of a candidate: the space's ``features`` on fixed probe points, made comparable.

AQuaSurF describes an activation by its outputs on fixed N(0,1) draws clipped to [-5, 5]; here the draws are
sorted, so for an elementwise layer the finite-difference slopes between neighbours give the derivative's shape
as well. Values pass through ``arcsinh`` (a layer that returns 1e30 and one that returns 1e6 differ by a few
units, not by 1e30), and non-finite outputs become large finite ones. A candidate's identity is the hash of its
rounded vector, so functionally equal candidates count once.

With ``spectrum`` an elementwise layer is also described as AQuaSurF does with the Fisher information: by the
eigenvalues (log10, largest first) of the empirical neural tangent kernel of a small fixed MLP that uses it, at
initialization, on a fixed batch of N(0,1) inputs (``ntk_spectrum``, ~2 ms). It says how the layer shapes
gradients, which outputs on probe points show only indirectly. Vectors are cached process-wide by genome
(``Space.features`` depends on the genome alone, and benchmarks run many studies over one space); whether a
genome builds and passes the static checks depends on the space's options, so that is cached per space.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import jacrev

from spaces import Genome, Space

PROBE_SEED = 1234  # the fingerprint's default seed
CACHE_SIZE = 50_000
_LARGE = 1e6
SHAPE_TOLERANCE = 1e-3  # standardized units: a rescaled, shifted or negated copy differs by float noise only
NTK_BATCH, NTK_WIDTH, NTK_INPUTS = 16, 32, 8
# process-wide: features need no options
_vectors: OrderedDict[tuple[str, int, bool, bool, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()


def probe_points(count: int) -> torch.Tensor:
    """``count`` sorted N(0,1) draws clipped to [-5, 5], the same in every process."""
    draws = np.sort(np.random.default_rng(PROBE_SEED).standard_normal(count).clip(-5.0, 5.0))
    return torch.from_numpy(draws.astype(np.float32))


@dataclass(frozen=True)
class Described:
    """A genome as the surrogate sees it."""

    features: np.ndarray
    identity: str  # equal for functional duplicates on the probe points
    passes_static: bool  # the space's static checks find nothing to reject it for
    shape_vector: np.ndarray  # the outputs up to scale, shift and sign (``affine_shape``)
    structure: str  # ``Space.structure``: equal for genomes that differ only in learnable initial values


class FeatureMap:
    """Descriptions of a space's genomes; None for a genome that does not build here."""

    def __init__(self, space: Space, points: int, spectrum: bool = False, shape: bool = False):
        self.space = space
        self.points = points
        self.spectrum = spectrum
        self.shape = shape
        self.inputs = probe_points(points)
        self._x = self.inputs.double().numpy()
        self._described: dict[str, Described | None] = {}  # this space's verdicts (validity depends on options)

    def __call__(self, genome: Genome) -> Described | None:
        text = json.dumps(genome, sort_keys=True, separators=(",", ":"))
        if text in self._described:
            return self._described[text]
        computed = self._vector(text, genome)
        described = None
        if computed is not None:
            vector, shape = computed
            passes = not self.space.static_problems(genome)
            described = Described(vector, identity(vector), passes, shape, self.space.structure(genome))
        if len(self._described) < CACHE_SIZE:
            self._described[text] = described
        return described

    def _vector(self, text: str, genome: Genome) -> tuple[np.ndarray, np.ndarray] | None:
        key = (self.space.kind, self.points, self.spectrum, self.shape, text)
        if key in _vectors:
            _vectors.move_to_end(key)
            return _vectors[key]
        computed = self._compute(genome)
        if computed is not None:
            _vectors[key] = computed
            if len(_vectors) > CACHE_SIZE:
                _vectors.popitem(last=False)
        return computed

    def _compute(self, genome: Genome) -> tuple[np.ndarray, np.ndarray] | None:
        """The feature vector and the affine shape of the outputs."""
        try:
            outputs = self.space.features(genome, self.inputs)
        except Exception:  # noqa: BLE001 - a genome that does not build has no features; its evaluation says why
            return None
        outputs = np.nan_to_num(outputs, nan=0.0, posinf=_LARGE, neginf=-_LARGE).clip(-_LARGE, _LARGE)
        parts = [outputs]
        if outputs.shape == self._x.shape:  # elementwise: the slopes between sorted points are f'
            with np.errstate(divide="ignore", invalid="ignore"):
                slopes = np.diff(outputs) / np.maximum(np.diff(self._x), 1e-6)
            parts.append(slopes.clip(-_LARGE, _LARGE))
        features = np.arcsinh(np.concatenate(parts))
        shape = affine_shape(outputs, self._x)
        if self.shape:
            features = np.concatenate([features, shape])
        if self.spectrum and outputs.shape == self._x.shape:
            features = np.concatenate([features, ntk_spectrum(self.space.build(genome))])
        return features.astype(np.float32), shape.astype(np.float32)


def affine_shape(outputs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The outputs up to scale, shift and sign (standardized, sign such that they rise with x where the layer
    is elementwise): the layer after it absorbs these, so functions equal up to them train alike."""
    spread = outputs.std()
    if not np.isfinite(spread) or spread < 1e-9:
        return np.zeros_like(outputs)
    shape = (outputs - outputs.mean()) / spread
    if outputs.shape == x.shape and np.dot(shape, x - x.mean()) < 0:
        shape = -shape
    return shape


def ntk_spectrum(layer: torch.nn.Module) -> np.ndarray:
    """log10 eigenvalues, largest first, of the empirical NTK of a fixed 2-hidden-layer MLP using ``layer``, at
    initialization on a fixed batch (zeros where the layer gives non-finite gradients)."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    inputs = torch.randn(NTK_BATCH, NTK_INPUTS, generator=generator)
    shapes = [(NTK_INPUTS, NTK_WIDTH), (NTK_WIDTH, NTK_WIDTH), (NTK_WIDTH, 1)]
    weights = [torch.randn(shape, generator=generator) / math.sqrt(shape[0]) for shape in shapes]

    def network(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        hidden = layer(layer(x @ params[0]) @ params[1])
        return (hidden @ params[2]).squeeze(-1)

    try:
        jacobians = jacrev(network)(weights, inputs)
        jacobian = torch.cat([j.reshape(NTK_BATCH, -1) for j in jacobians], dim=1).double()
        eigenvalues = torch.linalg.eigvalsh(jacobian @ jacobian.T).flip(0).numpy()
    except Exception:  # noqa: BLE001 - a layer whose gradients cannot be taken has no spectrum to describe it by
        return np.zeros(NTK_BATCH)
    if not np.isfinite(eigenvalues).all():
        return np.zeros(NTK_BATCH)
    return np.log10(np.maximum(eigenvalues, 1e-12))


def shape_twins(shapes: np.ndarray, known: np.ndarray, tolerance: float = SHAPE_TOLERANCE) -> np.ndarray:
    """For each row of ``shapes``, whether some row of ``known`` has the same shape: within ``tolerance`` at every
    probe point (a distance, not a rounded hash, so float noise of a rescaled copy never splits a pair)."""
    twins = np.zeros(len(shapes), dtype=bool)
    if len(known) == 0 or len(shapes) == 0:
        return twins
    for begin in range(0, len(shapes), 256):  # chunks bound the (chunk, known, points) intermediate
        chunk = shapes[begin : begin + 256]
        distance = np.abs(chunk[:, None, :] - known[None, :, :]).max(axis=2)
        twins[begin : begin + 256] = (distance < tolerance).any(axis=1)
    return twins


def identity(vector: np.ndarray) -> str:
    """Equal for candidates whose features agree to 4 decimals (functional duplicates on the probe points)."""
    rounded = np.round(vector.astype(np.float64), 4) + 0.0  # + 0.0 turns -0.0 into 0.0
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:20]
