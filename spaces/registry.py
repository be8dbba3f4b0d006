"""Spaces by kind name, so a study config names its space by string."""

from __future__ import annotations

import importlib
from typing import Any

from spaces.base import Space, SpaceConfigError

_SPACES: dict[str, type[Space]] = {}
# Built-in spaces are imported on first use, so `import spaces` stays cheap and the modules stay independent.
_BUILTIN = {"activation": "spaces.activation", "normact": "spaces.normact", "kan": "spaces.kan"}


def register_space(cls: type[Space]) -> type[Space]:
    _SPACES[cls.kind] = cls
    return cls


def space_kinds() -> list[str]:
    return sorted(set(_SPACES) | set(_BUILTIN))


def get_space(kind: str, **options: Any) -> Space:
    """Instantiate a registered space; unknown kinds and options are reported with what is allowed."""
    if kind not in _SPACES and kind in _BUILTIN:
        importlib.import_module(_BUILTIN[kind])
    if kind not in _SPACES:
        raise SpaceConfigError(f"unknown space {kind!r}; known spaces: {', '.join(space_kinds())}")
    try:
        return _SPACES[kind](**options)
    except TypeError as exc:
        raise SpaceConfigError(f"bad options for space {kind!r}: {exc}") from None
