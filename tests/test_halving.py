"""Successive halving as a stage of the cascade: the promotion rule, the proxy evaluator's rungs, the table
evaluator's rung answers and costs, a study whose driver keeps the rung history through replay, and late
promotion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from evaluators.cascade import Rejected
from evaluators.config import EvaluatorConfig, Halving, Objective
from evaluators.fingerprint import fingerprint
from evaluators.halving import STOPPED_AT, RungHistory, check_rung, cutoff, rung_metric, rung_steps
from evaluators.outcome import Outcome
from evaluators.proxy import EvaluatorSetupError, ProxyEvaluator
from evaluators.table import FORMULA, GENOMES, KEY, TableEvaluator, run_columns, write_table
from evaluators.vocabulary import Stage, Status
from search.config import parse_config
from search.results import rejection_funnel
from search.runner import StudyRunner
from search.store import Store
from search.study_run import StudyRun
from spaces import get_space
from tests.conftest import study_config

ACC = Objective(name="val_acc@mlp")
LOSS = Objective(name="val_loss@mlp", direction="min")
ON = Halving(enabled=True, eta=3, rungs=2)


def _history(values: list[float], objectives=(ACC,)) -> RungHistory:
    history = RungHistory(ON, objectives)
    for value in values:
        history.record({rung_metric(0, o.name): value for o in objectives})
    return history


def _passes(history: RungHistory, values: dict[str, float], rung: int = 0) -> bool:
    try:
        check_rung(rung, "9 steps", values, history.bars(), history.objectives, history.eta, {})
    except Rejected:
        return False
    return True


# -- the rule ----------------------------------------------------------------------------------------------------


def test_rungs_are_the_budgets_tabulate_records_by_default() -> None:
    assert rung_steps(300, ON) == [33, 100]
    assert rung_steps(27, Halving(enabled=True, eta=3, rungs=3)) == [1, 3, 9]
    assert rung_steps(4, Halving(enabled=True, eta=4, rungs=2)) == [1, 1]  # never 0 steps


def test_the_config_section_refuses_settings_that_halve_nothing() -> None:
    assert not EvaluatorConfig(kind="synthetic").rejection.halving.enabled  # off unless a study asks for it
    for bad in [{"eta": 1}, {"rungs": 0}, {"eta": True}, {"steps": 3}]:
        with pytest.raises(ValidationError, match="halving"):
            EvaluatorConfig(kind="synthetic", rejection={"halving": bad})


def test_the_first_candidate_at_a_rung_continues_whatever_its_value() -> None:
    assert _passes(_history([]), {"val_acc@mlp": 0.0})
    assert cutoff([], 3) is None
    # with one or two earlier results (n = 2, 3 with its own: m = 1 for n = 2, 1 for n = 3) it must be the best
    assert not _passes(_history([0.5]), {"val_acc@mlp": 0.4})
    assert _passes(_history([0.5]), {"val_acc@mlp": 0.5})


def test_with_nine_earlier_results_a_candidate_must_be_in_the_top_three() -> None:
    earlier = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5]  # n = 10 with its own, m = 10 // 3 = 3
    history = _history(earlier)
    assert history.bars()[0]["val_acc@mlp"] == {"cutoff": 0.7, "results": 9}
    assert _passes(history, {"val_acc@mlp": 0.7})  # 0.9, 0.8, 0.7, 0.7: third best
    assert not _passes(history, {"val_acc@mlp": 0.69})
    with pytest.raises(Rejected, match=r"val_acc@mlp 0.65 after 9 steps is below the top 1/3 at rung 0 \(0.7 of 10"):
        check_rung(0, "9 steps", {"val_acc@mlp": 0.65}, history.bars(), [ACC], 3, {})
    # the literal rule (m-th best of the earlier values and its own) agrees with the driver's one-number bar
    for own in [0.05, 0.55, 0.65, 0.7, 0.75, 0.95]:
        ranked = sorted([*earlier, own], reverse=True)
        assert _passes(history, {"val_acc@mlp": own}) == (own >= ranked[len(ranked) // 3 - 1])


def test_objectives_to_minimize_count_the_smallest_as_best() -> None:
    history = _history([0.1, 0.9, 0.2, 0.8, 0.3, 0.7, 0.4, 0.6, 0.5], objectives=(LOSS,))
    assert history.bars()[0]["val_loss@mlp"]["cutoff"] == 0.3
    assert _passes(history, {"val_loss@mlp": 0.3})
    assert not _passes(history, {"val_loss@mlp": 0.31})
    with pytest.raises(Rejected, match="val_loss@mlp 0.8 after 9 steps is above the top 1/3"):
        check_rung(0, "9 steps", {"val_loss@mlp": 0.8}, history.bars(), [LOSS], 3, {})


def test_with_two_objectives_either_one_in_the_top_share_suffices() -> None:
    history = RungHistory(ON, [ACC, LOSS])
    for acc, loss in [(0.9, 0.9), (0.8, 0.8), (0.7, 0.7), (0.1, 0.1), (0.2, 0.2)]:  # n = 6 with its own: m = 2
        history.record({"rung0_val_acc@mlp": acc, "rung0_val_loss@mlp": loss})
    assert _passes(history, {"val_acc@mlp": 0.85, "val_loss@mlp": 0.95})  # accuracy in the top 2
    assert _passes(history, {"val_acc@mlp": 0.0, "val_loss@mlp": 0.15})  # loss in the top 2
    assert not _passes(history, {"val_acc@mlp": 0.75, "val_loss@mlp": 0.25})
    assert _passes(history, {"val_acc@mlp": 0.0, "val_loss@mlp": 9.0}, rung=1)  # rung 1 has no results yet


def test_the_top_of_a_rung_counts_every_result_recorded_there() -> None:
    history = _history([0.1, 0.5, 0.7])  # 3 results: the top 1/3 is the best one
    assert history.in_top(0, {"val_acc@mlp": 0.7}) and not history.in_top(0, {"val_acc@mlp": 0.5})
    for value in (0.2, 0.3, 0.05):
        history.record({"rung0_val_acc@mlp": value})  # 6 results: the best two
    assert history.in_top(0, {"val_acc@mlp": 0.5}) and not history.in_top(0, {"val_acc@mlp": 0.3})
    assert not history.in_top(1, {"val_acc@mlp": 0.9})  # nothing recorded at rung 1
    assert history.bars(first_rung=1)[0] is None and history.bars(first_rung=1)[1] == history.bars()[1]
    history.record({"rung0_val_acc@mlp": 0.9, "rung1_val_acc@mlp": 0.8}, first_rung=1)  # a promotion's repeat
    assert len(history.values[0]["val_acc@mlp"]) == 6 and history.values[1]["val_acc@mlp"] == [0.8]


def test_the_history_ignores_other_metrics_and_values_that_are_not_finite() -> None:
    history = RungHistory(ON, [ACC])
    history.record({"val_acc@mlp": 0.9, "gate_val_acc@mlp": 0.9, "rung0_val_acc@mlp": float("nan")})
    history.record({"rung1_val_acc@mlp": 0.4, "original_status": "done"})
    assert history.values == [{"val_acc@mlp": []}, {"val_acc@mlp": [0.4]}]


# -- the proxy evaluator -----------------------------------------------------------------------------------------


def test_the_proxy_evaluator_trains_the_rungs_and_stops_a_candidate_below_the_bar() -> None:
    config = EvaluatorConfig(
        proxies=[{"name": "mlp", "arch": "mlp", "dataset": "digits", "steps": 27, "arch_options": {"hidden": [16]}}],
        rejection={"numeric_probe": {"enabled": False}, "quality_gate": {"enabled": False}, "halving": ON},
    )
    space = get_space("activation")
    evaluator = ProxyEvaluator(space, config, "cpu")
    relu = space.parse("relu(x)")

    history = RungHistory(ON, config.objectives)
    for _ in range(5):
        history.record({"rung0_val_acc@mlp": 1.0})  # 6 with its own, m = 2: it must reach 1.0
    stopped = evaluator.evaluate(relu, halving=history.bars())
    assert (stopped.status, stopped.stage) == (Status.REJECTED, Stage.HALVING)
    assert stopped.reason.startswith("halving: val_acc@mlp") and "after 3 steps" in stopped.reason
    assert stopped.metrics["rung0_steps@mlp"] == 3 and "rung0_total_train_seconds" in stopped.metrics
    assert 0 <= stopped.metrics["rung0_val_acc@mlp"] < 1 and "rung1_val_acc@mlp" not in stopped.metrics
    assert "val_acc@mlp" not in stopped.metrics and Stage.FULL not in stopped.stage_seconds
    assert stopped.metrics[STOPPED_AT] == 0

    promoted = evaluator.evaluate(relu, halving=RungHistory(ON, config.objectives).bars())
    assert promoted.status == Status.DONE and set(promoted.stage_seconds) >= {Stage.HALVING, Stage.FULL}
    assert (promoted.metrics["rung0_steps@mlp"], promoted.metrics["rung1_steps@mlp"]) == (3, 9)
    assert promoted.metrics["steps@mlp"] == 27
    assert promoted.metrics["rung0_val_acc@mlp"] == stopped.metrics["rung0_val_acc@mlp"]  # same seed, same run
    assert STOPPED_AT not in promoted.metrics
    # a late promotion from rung 0 trains rung 1 and the full run, not rung 0 again
    late = evaluator.evaluate(relu, halving=history.bars(first_rung=1))
    assert late.status == Status.DONE and late.metrics["rung1_val_acc@mlp"] == promoted.metrics["rung1_val_acc@mlp"]
    assert "rung0_val_acc@mlp" not in late.metrics and late.metrics["val_acc@mlp"] == promoted.metrics["val_acc@mlp"]
    # without a study's bars (a single evaluation, tabulate) the stage does not run
    alone = evaluator.evaluate(relu)
    assert alone.status == Status.DONE and not any(name.startswith("rung") for name in alone.metrics)


# -- the table evaluator -----------------------------------------------------------------------------------------

OPS = ["relu", "abs", "neg", "tanh", "sin", "square"]
SPACE = {"kind": "activation", "options": {"schema": "unary_unary", "max_params": 0, "unary_ops": OPS}}
FULL_SECONDS, TRAIN_SECONDS = {0: 10.0, 1: 12.0}, 8.0  # recorded full runs: the cascade cost 2 and 4
RUNG_SECONDS = {3: {0: 1.0, 1: 2.0}, 9: {0: 3.0, 1: 5.0}}  # recorded runs of 3 and 9 steps
CASCADE_MEAN, RUNG_MEAN, FULL_MEAN = 3.0, {3: 1.5, 9: 4.0}, 11.0


def _accuracy(index: int) -> float:
    return (index * 37 % 101) / 101


def _write(path: Path, budgets: tuple[int, ...] = (3, 9)) -> Path:
    """A table of every function of SPACE: full runs of 27 steps for seeds 0 and 1, shorter runs of ``budgets``;
    every fifth function was rejected by the quality gate (no shorter runs, as tabulate records it)."""
    space = get_space(SPACE["kind"], **SPACE["options"])
    config = EvaluatorConfig(kind="synthetic")
    rows: dict[str, dict] = {}
    for genome in space.enumerate():
        key = fingerprint(space, genome, config.fingerprint)
        if key in rows:
            continue
        index = len(rows)
        row = rows[key] = {KEY: key, FORMULA: space.describe(genome), GENOMES: 1, "genome": "{}"}
        for seed in (0, 1):
            if index % 5 == 4:
                rejected = Outcome(Status.REJECTED, Stage.QUALITY_GATE, "below chance", seconds=2.5)
                row.update(run_columns(rejected, seed))
                continue
            metrics = {"val_acc@mlp": _accuracy(index), "train_seconds@mlp": TRAIN_SECONDS}
            row.update(run_columns(Outcome(Status.DONE, Stage.FULL, metrics=metrics, seconds=FULL_SECONDS[seed]), seed))
            for steps in budgets:
                short = {"val_acc@mlp": _accuracy(index) * steps / 27, "train_seconds@mlp": RUNG_SECONDS[steps][seed]}
                run = Outcome(Status.DONE, Stage.FULL, metrics=short, seconds=RUNG_SECONDS[steps][seed])
                row.update(run_columns(run, seed, steps))
    meta = {"fingerprint": config.fingerprint.model_dump(exclude={"enabled"}), "full_steps": [27], "budgets": budgets}
    write_table(path, list(rows.values()), meta)
    return path


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("halving") / "table.csv")


def _table_evaluator(path: Path) -> tuple[TableEvaluator, object]:
    config = EvaluatorConfig(kind="table", table={"path": str(path)}, rejection={"halving": ON})
    space = get_space(SPACE["kind"], **SPACE["options"])
    return TableEvaluator(space, config), space


def test_the_table_answers_the_rungs_and_charges_the_cascade_and_the_rungs_trained(table) -> None:
    evaluator, space = _table_evaluator(table)
    genome = space.parse("relu(abs(x))")
    full = evaluator.evaluate(genome)  # no bars: the recorded answer as it is
    assert full.status == Status.DONE and full.seconds == pytest.approx(FULL_MEAN)

    promoted = evaluator.evaluate(genome, halving=RungHistory(ON, [ACC]).bars())
    assert promoted.status == Status.DONE and promoted.objectives == full.objectives
    assert promoted.seconds == pytest.approx(FULL_MEAN + RUNG_MEAN[3] + RUNG_MEAN[9])
    assert promoted.stage_seconds == pytest.approx({Stage.HALVING: 5.5, Stage.FULL: FULL_MEAN})
    acc = full.objectives["val_acc@mlp"]
    assert promoted.metrics["rung0_val_acc@mlp"] == pytest.approx(acc * 3 / 27)
    assert promoted.metrics["rung1_val_acc@mlp"] == pytest.approx(acc * 9 / 27)

    at_rung0 = RungHistory(ON, [ACC])
    at_rung0.record({"rung0_val_acc@mlp": 2.0})
    stopped = evaluator.evaluate(genome, halving=at_rung0.bars())
    assert (stopped.status, stopped.stage) == (Status.REJECTED, Stage.HALVING)
    assert "after 3 steps is below the top 1/3 at rung 0 (2 of 2 results)" in stopped.reason
    assert stopped.seconds == pytest.approx(CASCADE_MEAN + RUNG_MEAN[3])
    assert stopped.objectives == {} and "rung1_val_acc@mlp" not in stopped.metrics

    at_rung1 = RungHistory(ON, [ACC])
    at_rung1.record({"rung1_val_acc@mlp": 2.0})
    stopped = evaluator.evaluate(genome, halving=at_rung1.bars())
    assert "after 9 steps" in stopped.reason and "rung1_val_acc@mlp" in stopped.metrics
    assert stopped.seconds == pytest.approx(CASCADE_MEAN + RUNG_MEAN[3] + RUNG_MEAN[9])
    assert stopped.stage_seconds == pytest.approx({Stage.FULL: CASCADE_MEAN, Stage.HALVING: 5.5})


def test_a_table_without_the_rungs_budgets_is_refused_with_what_to_run(tmp_path) -> None:
    path = _write(tmp_path / "short.csv", budgets=(3,))
    with pytest.raises(EvaluatorSetupError, match=r"needs runs of \[3, 9\] steps.*records shorter budgets \[3\]"):
        _table_evaluator(path)
    with pytest.raises(EvaluatorSetupError, match="--budgets 3,9"):
        _table_evaluator(path)


# -- a study through the real runner -----------------------------------------------------------------------------


def _study(tmp_path: Path, table: Path, name: str) -> dict:
    config = study_config(name, tmp_path, space=SPACE)
    config["algorithm"] = {"name": "random"}
    config["evaluator"] = {
        "kind": "table",
        "objectives": [{"name": "val_acc@mlp"}],
        "table": {"path": str(table)},
        "rejection": {"halving": {"enabled": True, "eta": 3, "rungs": 2, "late_promotion": False}},
    }
    config["budget"] = {"evaluations": 14}
    config["resources"] = {"workers": 1, "max_in_flight": 1}  # one at a time: each job saw every earlier result
    return config


def test_a_study_stops_candidates_at_the_rungs_and_a_resumed_run_rebuilds_the_history(
    ray_address, tmp_path, table
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    cfg = parse_config(_study(tmp_path, table, "halving"))
    StudyRunner(cfg, store, progress=False).run()
    study = store.get_study("halving")
    evaluations = [ev for _, ev in store.history(study.id) if ev.status != Status.DUPLICATE]
    assert len(evaluations) == 14

    # every decision follows the rule against the results that finished before it
    expected = RungHistory(ON, [ACC])
    for ev in evaluations:
        if ev.stage == Stage.QUALITY_GATE:
            assert ev.status == Status.REJECTED and not any(k.startswith("rung") for k in ev.metrics)
            continue
        bars = expected.bars()
        reached = [k for k in (0, 1) if rung_metric(k, "val_acc@mlp") in ev.metrics]
        if ev.status == Status.DONE:
            assert reached == [0, 1] and ev.seconds == pytest.approx(FULL_MEAN + 5.5)
        else:
            assert (ev.status, ev.stage) == (Status.REJECTED, Stage.HALVING)
            rung = reached[-1]
            value = {"val_acc@mlp": ev.metrics[rung_metric(rung, "val_acc@mlp")]}
            with pytest.raises(Rejected):
                check_rung(rung, "", value, bars, [ACC], 3, {})
            assert ev.seconds == pytest.approx(CASCADE_MEAN + sum(RUNG_MEAN[s] for s in (3, 9)[: rung + 1]))
        expected.record(ev.metrics)
    stages = {(ev.status, ev.stage) for ev in evaluations}
    assert (Status.REJECTED, Stage.HALVING) in stages and (Status.DONE, Stage.FULL) in stages
    # the summary's funnel shows the new stage in cascade order, like any other
    funnel = {row.stage: row for row in rejection_funnel(store, study)[0]}
    halted = sum(ev.stage == Stage.HALVING for ev in evaluations)
    assert funnel[Stage.HALVING].stopped == halted and list(funnel).index(Stage.HALVING) < list(funnel).index("full")

    # a run of the same study made from the store alone holds the same rung history and sends the same bars
    runner = StudyRunner.for_existing(store, "halving", progress=False)
    replayed = StudyRun(runner, store.get_study("halving"))
    assert replayed.rungs.values == expected.values
    genome = runner.space.parse("relu(abs(x))")
    assert replayed._payload(genome) == {"genome": genome, "seed": cfg.seed, "halving": expected.bars()}


def test_the_surrogate_ranks_a_stopped_candidate_by_what_it_reached_live_and_on_replay(
    ray_address, tmp_path, table
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    config = _study(tmp_path, table, "told")
    options = {"initial_design": "random", "initial": 3, "trees": 10, "stopped": "ranked"}
    config["algorithm"] = {"name": "surrogate", "options": options}
    runner = StudyRunner(parse_config(config), store, progress=False)
    runner.run()
    live = runner.current_run.algorithm
    history = store.history(store.get_study("told").id)
    by_candidate = {o.candidate_id: o for o in live.observed.values()}
    halted = [(cand, ev) for cand, ev in history if ev.stage == Stage.HALVING]
    assert halted and any(ev.status == Status.DONE for _, ev in history)
    for cand, ev in halted:
        rung = max(k for k in (0, 1) if rung_metric(k, "val_acc@mlp") in ev.metrics)
        observation = by_candidate[cand.id]
        assert observation.rung == rung and observation.values == (ev.metrics[rung_metric(rung, "val_acc@mlp")],)
    for cand, ev in history:
        if ev.status == Status.DONE:
            observation = by_candidate[cand.id]
            assert observation.rung is None and observation.values == (ev.objectives["val_acc@mlp"],)

    # ranked: every full training above every stopped candidate, rung 1 above rung 0, failures at 0
    scored = [
        (s, 0 if o.values is None else 3 if o.rung is None else o.rung + 1)
        for o, s in live._scalarized(list(live.observed.values()), np.ones(1))
    ]
    levels = [level for _, level in sorted(scored)]
    assert levels == sorted(levels) and len(set(levels)) >= 3
    assert all((s == 0) == (level == 0) for s, level in scored)

    replayed = StudyRun(StudyRunner.for_existing(store, "told", progress=False), store.get_study("told")).algorithm
    seen = [(o.identity, o.values, o.rung) for o in live.observed.values()]
    assert [(o.identity, o.values, o.rung) for o in replayed.observed.values()] == seen


def test_late_promotion_trains_a_stopped_candidate_on_once_it_ranks_in_the_top_third_and_survives_replay(
    ray_address, tmp_path, table
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    config = _study(tmp_path, table, "late")
    config["evaluator"]["rejection"]["halving"]["late_promotion"] = True
    config["budget"] = {"evaluations": 24}
    config["seed"] = 0  # its samples' order sees a promotion stopped again and one trained fully within the budget
    runner = StudyRunner(parse_config(config), store, progress=False)
    runner.run()
    runs = [(c, e) for c, e in store.history(store.get_study("late").id) if e.status != Status.DUPLICATE]
    assert len(runs) == 24

    # one evaluation at a time, so each was chosen after every earlier one finished: replay the driver's choices
    expected = RungHistory(ON, [ACC])
    stopped: dict[str, tuple] = {}  # key -> (candidate, evaluation, rung): the layer's latest stop
    promotions = 0
    for cand, ev in runs:
        qualifying = [
            (rung, ev_.metrics[rung_metric(rung, "val_acc@mlp")], c)
            for c, ev_, rung in stopped.values()
            if expected.in_top(rung, {"val_acc@mlp": ev_.metrics[rung_metric(rung, "val_acc@mlp")]})
        ]
        first_rung = 0
        if cand.origin == "promotion":
            promotions += 1
            parent, parent_ev, rung = stopped.pop(cand.key)
            assert max(qualifying, key=lambda q: q[:2])[2].id == parent.id  # the best that qualifies, now
            assert cand.parents == [parent.id] and cand.genome == parent.genome
            first_rung = rung + 1
            assert cand.proposal["promotion"]["from_rung"] == first_rung
            for k in range(first_rung):  # it keeps the rungs it cleared ...
                assert ev.metrics[rung_metric(k, "val_acc@mlp")] == parent_ev.metrics[rung_metric(k, "val_acc@mlp")]
            trained = [RUNG_MEAN[steps] for k, steps in enumerate((3, 9)) if k >= first_rung]
            if ev.status == Status.DONE:  # ... and pays for what it trains now only
                assert ev.seconds == pytest.approx(FULL_MEAN + sum(trained))
            else:
                assert ev.seconds == pytest.approx(CASCADE_MEAN + sum(trained[: ev.metrics[STOPPED_AT] - rung]))
        else:
            assert not qualifying  # a stopped candidate that qualifies goes before any new one
        expected.record(ev.metrics, first_rung)
        if STOPPED_AT in ev.metrics:
            stopped[cand.key] = (cand, ev, ev.metrics[STOPPED_AT])
    assert promotions >= 2
    promoted = [ev for c, ev in runs if c.origin == "promotion"]
    assert any(ev.status == Status.DONE for ev in promoted)

    # a run made from the store alone holds the same history, stopped candidates and originals
    live = runner.current_run
    replayed = StudyRun(StudyRunner.for_existing(store, "late", progress=False), store.get_study("late"))
    assert replayed.rungs.values == live.rungs.values == expected.values
    assert replayed.promotions.done == live.promotions.done
    state = {key: (s.candidate.candidate_id, s.rung, s.rungs) for key, s in live.promotions.stopped.items()}
    assert {key: (s.candidate.candidate_id, s.rung, s.rungs) for key, s in replayed.promotions.stopped.items()} == state
    assert replayed.dedupe.by_key == live.dedupe.by_key
    for cand, _ in runs:  # a later proposal of a promoted layer hears the promotion
        if cand.origin == "promotion":
            assert replayed.dedupe.by_key[cand.key] >= cand.id

    # a promotion a stopped run left in flight is queued again from the rung it starts at, and not promoted twice
    last, last_ev = max(((c, ev) for c, ev in runs if c.origin == "promotion"), key=lambda pair: pair[0].id)
    store.update_evaluation(last_ev.id, status=Status.PENDING, worker=None)
    resumed = StudyRun(StudyRunner.for_existing(store, "late", progress=False), store.get_study("late"))
    (job,) = [job for job in resumed.requeue if job.evaluation_id == last_ev.id]
    first_rung = last.proposal["promotion"]["from_rung"]
    assert [bar is None for bar in job.payload["halving"]] == [k < first_rung for k in range(2)]
    assert (last.key, first_rung - 1) in resumed.promotions.done and last.key not in resumed.promotions.stopped


def test_optuna_hears_what_a_promoted_candidate_reached_live_and_on_replay(ray_address, tmp_path, table) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    config = _study(tmp_path, table, "tpe")
    config["evaluator"]["rejection"]["halving"]["late_promotion"] = True
    config["algorithm"] = {"name": "optuna_tpe", "options": {"n_startup_trials": 4}}
    config["budget"] = {"evaluations": 24}
    config["seed"] = 1  # its trials see a promotion trained to the end within the budget
    runner = StudyRunner(parse_config(config), store, progress=False)
    runner.run()
    history = store.history(store.get_study("tpe").id)
    promoted = [(c, ev) for c, ev in history if c.origin == "promotion" and ev.status == Status.DONE]
    assert promoted, "the study's budget saw no promotion trained to the end"

    live = runner.current_run.algorithm
    complete = [(t.params, t.value) for t in live.study.trials if t.state.name == "COMPLETE"]
    for cand, ev in promoted:  # the stopped trial failed; the promotion adds its parameters with the full value
        assert (cand.proposal["params"], ev.objectives["val_acc@mlp"]) in complete

    replayed = StudyRun(StudyRunner.for_existing(store, "tpe", progress=False), store.get_study("tpe")).algorithm
    trials = [(t.state.name, t.params, t.value) for t in live.study.trials if t.state.name != "RUNNING"]
    assert [(t.state.name, t.params, t.value) for t in replayed.study.trials] == trials
