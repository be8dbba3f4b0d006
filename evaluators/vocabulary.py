"""The words every part shares: evaluation and study statuses, and the cascade's stages in their one order.

They are ``str`` enums, so a member equals (and hashes like) its plain value: the store keeps the plain strings,
and "done" read from an old store is ``Status.DONE``. Evaluators import this module, so it lives here
(dependencies point search -> evaluators -> spaces).
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A ``str`` enum whose ``str()`` and ``format()`` give the plain value (Python 3.10 has no ``StrEnum``)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Status(_Word):
    """Where one evaluation stands."""

    PENDING = "pending"  # queued, or left in flight by a driver that stopped (resume re-queues it)
    RUNNING = "running"
    DONE = "done"  # passed every stage; its objectives are recorded
    REJECTED = "rejected"  # a stage of the cascade said no
    FAILED = "failed"  # an exception, a hang or a lost worker
    DUPLICATE = "duplicate"  # the same layer as an earlier candidate: it reuses that one's outcome


# Evaluations that reached a verdict: they count towards the budget (duplicates cost nothing and do not).
FINISHED = (Status.DONE, Status.REJECTED, Status.FAILED)
# Evaluations no longer in flight.
FINAL = (*FINISHED, Status.DUPLICATE)
IN_FLIGHT = (Status.RUNNING, Status.PENDING)


class StudyStatus(_Word):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"  # Ctrl-C, a crash or an error: `layerforge resume` continues it
    FINISHED = "finished"  # its budget is spent
    # Shown, never stored: the study is stored as running but its driver is gone (it died without closing it:
    # its lease expired, or its process on this machine is dead). `layerforge resume` takes over and continues it.
    INTERRUPTED = "interrupted"


class Stage(_Word):
    """Where an evaluation ended, in the order a candidate meets the stages."""

    # The driver's: the same canonical form, then the same outputs, as an earlier candidate.
    DEDUPE = "dedupe"
    FINGERPRINT = "fingerprint"
    # The worker's rejection cascade, cheapest first (the driver's whitelist check of an invalid genome, which
    # comes before the dedupe, is recorded as "static" too), then the full training.
    STATIC = "static"
    NUMERIC_PROBE = "numeric_probe"
    STABILITY = "stability"
    PLACEMENT = "placement"  # deep residual stacks at initialization (evaluators.placement), ~60-90 ms on a CPU
    QUALITY_GATE = "quality_gate"
    HALVING = "halving"  # successive halving: short runs against the study's earlier ones (evaluators.halving)
    FULL = "full"
    # Ends outside the cascade: the worker raised, hung, or was lost too often.
    WORKER = "worker"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"


OUTSIDE_CASCADE = (Stage.WORKER, Stage.TIMEOUT, Stage.WORKER_LOST)
CASCADE = tuple(stage for stage in Stage if stage not in OUTSIDE_CASCADE)
