"""Which split a number was measured on, carried by its name, so stores written before splits stay readable.

Search, every cascade stage and every algorithm read the validation split: their scores are ``val_*``
(``val_acc@mlp``, ``mean_val_acc``, the quality gate's ``gate_val_acc@mlp``). Final reports (``rerank``, the
summary's final table) read the test split, which nothing selects on: the same metrics as ``test_*``
(``test_acc@mlp``, ``mean_test_acc``). Names without either prefix (``params``, ``latency_ms``,
``train_seconds``) measure no held-out split.
"""

from __future__ import annotations

from typing import Literal

Split = Literal["val", "test"]
VAL: Split = "val"
TEST: Split = "test"
SPLITS: tuple[Split, ...] = (VAL, TEST)
LABELS = {VAL: "validation", TEST: "test"}

_WRAPPERS = ("gate_", "mean_")  # a metric of a split wrapped by the stage or the aggregate that made it


def split_of(name: str) -> Split | None:
    """The split a metric named ``name`` (``metric`` or ``metric@proxy``) was measured on, or None."""
    metric = name.partition("@")[0]
    for wrapper in _WRAPPERS:
        metric = metric.removeprefix(wrapper)
    return next((split for split in SPLITS if metric.startswith(f"{split}_")), None)


def on_split(name: str, split: Split) -> str:
    """The name of the validation metric ``name`` when measured on ``split`` (``val_acc@mlp`` -> ``test_acc@mlp``).

    Names that measure no held-out split come back unchanged.
    """
    metric, at, proxy = name.partition("@")
    prefix = "mean_" if metric.startswith("mean_") else ""
    bare = metric.removeprefix(prefix)
    if not bare.startswith(f"{VAL}_"):
        return name
    return f"{prefix}{split}_{bare.removeprefix(f'{VAL}_')}{at}{proxy}"


def labelled(name: str) -> str:
    """``name`` with its split spelled out for people: ``val_acc@mlp (validation)``."""
    split = split_of(name)
    return f"{name} ({LABELS[split]})" if split else name
