"""Functional fingerprints: equal hashes mean the candidates compute the same function (AQuaSurF-style).

The candidate runs on fixed N(0,1) draws clipped to [-5, 5], in train and in eval mode; outputs are
rounded so float noise between equivalent expressions (``relu(x)`` vs ``max(x, 0)``) does not split them.
The draws come from numpy's seeded generator, so the hash is the same in every process and on every machine.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from evaluators.config import Fingerprint
from evaluators.training import seeded
from spaces import Genome, Space

# Non-finite outputs hash as these values, so candidates that blow up in the same places still collide.
_NAN, _POSINF, _NEGINF = 9.999e300, 8.888e300, -8.888e300


def probe_inputs(config: Fingerprint) -> torch.Tensor:
    draws = np.random.default_rng(config.seed).standard_normal(config.points).clip(-5.0, 5.0)
    return torch.from_numpy(draws.astype(np.float32))


def _canonical_bytes(output: torch.Tensor, decimals: int) -> bytes:
    values = np.round(output.detach().double().cpu().numpy(), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    values = np.nan_to_num(values, nan=_NAN, posinf=_POSINF, neginf=_NEGINF)
    return repr(values.shape).encode() + values.astype("<f8").tobytes()


def fingerprint(space: Space, genome: Genome, config: Fingerprint) -> str:
    """sha256 (first 20 hex digits) of the candidate's rounded outputs in train and eval mode."""
    with seeded(config.seed, torch.device("cpu")), torch.no_grad():
        module, inputs = space.probe(genome, probe_inputs(config))
        module.train()
        train_output = module(inputs)
        module.eval()
        eval_output = module(inputs)
    digest = hashlib.sha256()
    for output in (train_output, eval_output):
        digest.update(_canonical_bytes(output, config.decimals))
    return digest.hexdigest()[:20]


def fingerprint_or_none(space: Space, genome: Genome, config: Fingerprint) -> str | None:
    """The fingerprint, or None when the candidate cannot even be built: its evaluation then records why."""
    try:
        return fingerprint(space, genome, config)
    except Exception:
        return None
