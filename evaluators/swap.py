"""Put a found layer into any model: swap every module of a class (``nn.ReLU``, ``nn.BatchNorm2d``) for a new one.

``swap_modules`` works on any ``nn.Module`` tree and needs nothing from LayerForge, so it works with an exported
layer as well::

    from evaluators.swap import swap_modules
    swap_modules(model, nn.ReLU, lambda old: ActivationC42())          # every ReLU becomes the found activation
    swap_modules(model, nn.BatchNorm2d, lambda old: NormActC7(old.num_features))  # a norm-act layer takes the norm
    swap_modules(model, nn.ReLU, lambda old: nn.Identity())            # ... and the activation after it goes

Modules are replaced where they are held (attributes, ``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``), each
occurrence by its own new instance, so a module used in several places (torchvision's ResNet reuses one ReLU per
block) gets one layer per place it is registered; a layer called functionally (``F.relu``) is not a module and stays.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

ModuleClasses = type[nn.Module] | tuple[type[nn.Module], ...]

#: Normalizations a norm-act layer replaces (with the activation after them becoming ``nn.Identity``).
NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
)


def swap_modules(model: nn.Module, target: ModuleClasses, factory: Callable[[nn.Module], nn.Module]) -> int:
    """Replace, in place, every submodule of ``model`` that is an instance of ``target`` by ``factory(old)``.

    ``factory`` gets the module it replaces (to read ``num_features`` and the like). Returns how many were
    replaced; ``model`` itself is never replaced (wrap it in ``nn.Sequential`` for that).
    """
    replaced = 0
    for name, child in list(model.named_children()):
        if isinstance(child, target):
            setattr(model, name, factory(child))
            replaced += 1
        else:
            replaced += swap_modules(child, target, factory)
    return replaced


def norm_channels(norm: nn.Module) -> tuple[int, str]:
    """The channel count of a normalization and where its channels are: "nchw" (dim 1) or "nlc" (last dim)."""
    if isinstance(norm, nn.LayerNorm):
        return int(norm.normalized_shape[-1]), "nlc"
    if isinstance(norm, nn.GroupNorm):
        return int(norm.num_channels), "nchw"
    features = getattr(norm, "num_features", None)
    if features is None:
        raise ValueError(f"cannot tell the channel count of {type(norm).__name__}; swap it with your own factory")
    return int(features), "nchw"
