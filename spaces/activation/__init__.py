"""Elementwise activation functions as expression trees; importing registers space "activation"."""

from spaces.activation.lowering import lower
from spaces.activation.module import EvolvedActivation
from spaces.activation.ops import BINARY_OPS, OPS, UNARY_OPS, OpSpec
from spaces.activation.space import ActivationSpace
from spaces.activation.tree import normalize as _normalize
from spaces.activation.variation import MUTATIONS

__all__ = [
    "ActivationSpace",
    "BINARY_OPS",
    "EvolvedActivation",
    "MUTATIONS",
    "OPS",
    "OpSpec",
    "UNARY_OPS",
    "_normalize",
    "lower",
]
