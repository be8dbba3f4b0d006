"""Interleaved CPU timing shared by the benchmark scripts (imported as ``from timing import ...``).

The scripts run as ``python benchmarks/<script>.py``, which puts this folder first on ``sys.path``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_cpu_ms(
    steps: dict[str, Callable[[], None]], warmup: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """Best and median CPU milliseconds (``time.process_time``) per call of each named step.

    ``warmup`` untimed rounds, then ``repeats`` timed rounds; every round runs each step once, in order, so the
    steps alternate and see the same machine load.
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.process_time()
            step()
            times[name].append((time.process_time() - start) * 1e3)
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}
