"""The driver's bookkeeping of a run, without Ray: dedupe by fingerprint and waiting duplicates, the progress line."""

from __future__ import annotations

import io

from rich.console import Console

from evaluators.config import Fingerprint, Objective
from evaluators.fingerprint import fingerprint
from evaluators.vocabulary import Status
from search.dedupe import Dedupe, FinalOutcome, Pending
from search.progress import StudyProgress
from spaces import get_space
from tests.toy_space import LeakySpace

SPACE = get_space(LeakySpace.kind)
RELU = SPACE.parse("leaky(x, 0.0)")


def test_fingerprints_are_taken_only_when_enabled_and_buildable() -> None:
    config = Fingerprint()
    assert Dedupe(SPACE, config).fingerprint(RELU) == fingerprint(SPACE, RELU, config)
    assert Dedupe(SPACE, Fingerprint(enabled=False)).fingerprint(RELU) is None
    unbuildable = {**RELU, "slope": 7.0}  # outside the whitelist: the worker's cascade reports why
    assert Dedupe(SPACE, config).fingerprint(unbuildable) is None


def test_a_duplicate_of_an_original_in_flight_hears_its_outcome_once_it_finishes() -> None:
    dedupe = Dedupe(SPACE, Fingerprint())
    dedupe.add(1, "key-1", "print-1")
    assert dedupe.by_key["key-1"] == dedupe.by_fingerprint["print-1"] == 1
    duplicate = Pending(2, RELU, generation=3, proposal_data={"trial": 4})
    dedupe.wait_for(1, evaluation_id=20, duplicate=duplicate)
    outcome = FinalOutcome(Status.DONE, {"val_acc@mlp": 0.5}, rungs=[{"val_acc@mlp": 0.3}, {"val_acc@mlp": 0.4}])
    assert dedupe.finish(1, outcome) == [(20, duplicate)]
    assert dedupe.final[1] == outcome and dedupe.finish(1, outcome) == []  # told once
    result = duplicate.result(outcome)
    assert (result.candidate_id, result.generation, result.status) == (2, 3, Status.DONE)
    assert result.proposal_data == {"trial": 4} and result.objectives == {"val_acc@mlp": 0.5}
    assert result.rungs == [{"val_acc@mlp": 0.3}, {"val_acc@mlp": 0.4}]


def test_progress_counts_duplicates_apart_and_keeps_the_best_in_the_objectives_direction() -> None:
    loss = Objective(name="loss@mlp", direction="min")
    progress = StudyProgress("s", loss, 10, Console(file=io.StringIO()), show=False)
    for status, value in [
        (Status.DONE, 0.5),
        (Status.REJECTED, 0.1),  # not a finished candidate's value
        (Status.DONE, 0.3),
        (Status.DUPLICATE, 0.05),
        (Status.DONE, 0.4),
    ]:
        progress.record(status, {loss.name: value})
    assert progress.best == 0.3 and progress.finished == 4
    assert progress.counts == {Status.DONE: 3, Status.REJECTED: 1, Status.DUPLICATE: 1}
