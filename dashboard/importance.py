"""Which pieces of a layer (ops, subtrees, families, ...) are common among a study's best candidates.

The pieces come from the space (``Space.parts``), so this works the same for every space. A piece matters when
its share among the best candidates is well above its share among all evaluated ones.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from spaces import Space

COLUMNS = ["kind", "part", "top share", "all share", "lift", "top count", "all count"]


def parts_by_candidate(space: Space, genomes: dict[int, dict[str, Any]]) -> dict[int, set[tuple[str, str]]]:
    """Each genome's parts; a genome the space no longer reads (an older version) has none."""
    found = {}
    for candidate, genome in genomes.items():
        try:
            found[candidate] = space.parts(genome)
        except Exception:  # noqa: BLE001 - one unreadable genome must not hide the others
            found[candidate] = set()
    return found


def part_shares(
    parts: dict[int, set[tuple[str, str]]], top: list[int], everyone: list[int], limit: int = 25
) -> pd.DataFrame:
    """Parts more common among the ``top`` candidates than among ``everyone`` and held by at least two of the top
    (one if there are fewer than four), with both shares, most enriched first (share difference, then lift)."""
    top_counts = Counter(p for c in top for p in parts.get(c, ()))
    all_counts = Counter(p for c in everyone for p in parts.get(c, ()))
    least = 2 if len(top) >= 4 else 1
    rows = [
        {
            "kind": kind,
            "part": text,
            "top share": n / len(top),
            "all share": all_counts[(kind, text)] / len(everyone),
            "top count": n,
            "all count": all_counts[(kind, text)],
        }
        for (kind, text), n in top_counts.items()
        if n >= least and n / len(top) > all_counts[(kind, text)] / len(everyone)
    ]
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(rows)
    frame["lift"] = frame["top share"] / frame["all share"].where(frame["all share"] > 0)
    frame["gain"] = frame["top share"] - frame["all share"]
    frame = frame.sort_values(["gain", "lift", "part"], ascending=[False, False, True], kind="stable")
    return frame.head(limit).reset_index(drop=True)[COLUMNS]
