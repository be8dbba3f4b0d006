"""KAN layers for every common family, the S-KAN selectable layer, and the "kan" search space.

Importing this package registers the space kind "kan".
"""

from spaces.kan.bases import BASES, register_basis
from spaces.kan.export import save_kan
from spaces.kan.layer import InputNorm, KANLayer, MixedKANLayer
from spaces.kan.network import KANNetwork
from spaces.kan.selectable import SelectableKANLayer
from spaces.kan.space import KAN_FAMILIES, KanSpace

__all__ = [
    "BASES",
    "KAN_FAMILIES",
    "InputNorm",
    "KANLayer",
    "KANNetwork",
    "KanSpace",
    "MixedKANLayer",
    "SelectableKANLayer",
    "register_basis",
    "save_kan",
]
