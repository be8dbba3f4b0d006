"""Tables of recorded outcomes: `layerforge tabulate` writes them (resumably), `evaluator.kind: table` answers
from them through the real runner."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evaluators.config import EvaluatorConfig
from evaluators.proxy import EvaluatorSetupError
from evaluators.table import TableEvaluator
from search.cli import app
from search.config import parse_config
from search.runner import StudyRunner
from search.store import Store
from search.tabulate import Tabulation
from spaces import get_space
from tests.conftest import study_config

OPS = ["relu", "abs", "neg", "tanh"]  # 16 genomes u(u(x)); abs(neg(x)) = abs(abs(x)) = relu(abs(x)), ...
SPACE = {"kind": "activation", "options": {"schema": "unary_unary", "max_params": 0, "unary_ops": OPS}}


def _config(tmp_path: Path, name: str = "tab", **evaluator) -> dict:
    config = study_config(name, tmp_path, space=SPACE)
    config["evaluator"] = {
        "kind": "synthetic",
        "objectives": [{"name": "val_acc@mlp", "direction": "max"}],
        "synthetic": {"fail_on": ['"op":"tanh"}],"op":"tanh"']},  # tanh(tanh(x)) fails
        "timeout_seconds": 30,
        **evaluator,
    }
    return config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class _StopAfterRows(Tabulation):
    """Stops like Ctrl-C once a few functions are complete."""

    def _record(self, job, outcome) -> None:
        super()._record(job, outcome)
        if len(self.rows) >= 3:
            self.request_stop()


def test_tabulate_writes_one_row_per_function_and_resumes_without_retraining(ray_address, tmp_path) -> None:
    cfg = parse_config(_config(tmp_path))
    out = tmp_path / "table.csv"
    first = _StopAfterRows(cfg, out, seeds=2, budgets=[5]).run(workers=2)
    assert first.stopped and 3 <= first.written < first.functions
    kept = {row["fingerprint"]: row for row in _rows(out)}

    second = Tabulation(cfg, out, seeds=2, budgets=[5])
    assert second.stored_before == first.written
    done = second.run(workers=2)
    rows = _rows(out)
    assert not done.stopped and done.written == len(rows) == done.functions
    missing = [r for r in rows if r["fingerprint"] not in kept]
    # every function not stored before: 2 full runs, plus 2 shorter runs where the full run passed
    passed = sum(r[f"status/s{s}"] == "done" for r in missing for s in (0, 1))
    assert done.evaluations == 2 * len(missing) + passed
    for row in rows:
        if row["fingerprint"] in kept:
            assert row == kept[row["fingerprint"]]  # stored rows are kept as they were
    assert len({r["fingerprint"] for r in rows}) == len(rows)
    assert sum(int(r["genomes"]) for r in rows) == 16 and len(rows) < 16
    failed = [r for r in rows if r["formula"] == "tanh(tanh(x))"]
    assert failed[0]["status/s0"] == "failed" and "fail_on" in failed[0]["reason/s0"]
    assert failed[0]["val_acc@mlp/s0/steps5"] == ""  # a run the cascade stopped is not trained shorter
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["seeds"] == [0, 1] and meta["budgets"] == [5] and meta["functions"] == len(rows)

    assert Tabulation(cfg, out, seeds=2, budgets=[5]).run().evaluations == 0
    with pytest.raises(Exception, match="other budgets"):
        Tabulation(cfg, out, seeds=2, budgets=[7])


class _StopAfterExtending(Tabulation):
    """Stops like Ctrl-C once a stored row holds a new seed."""

    def _record(self, job, outcome) -> None:
        super()._record(job, outcome)
        if any("status/s1" in row for row in self.rows.values()):
            self.request_stop()


def test_more_seeds_extend_a_table_training_only_the_new_seeds(ray_address, tmp_path) -> None:
    cfg = parse_config(_config(tmp_path))
    out = tmp_path / "table.csv"
    Tabulation(cfg, out, seeds=1, budgets=[5]).run(workers=2)
    before = {row["fingerprint"]: row for row in _rows(out)}
    assert all("status/s1" not in row for row in before.values())
    meta = json.loads(out.with_suffix(".json").read_text())
    del meta["evaluator"]["rejection"]["halving"]  # as a table made before that setting existed records it
    out.with_suffix(".json").write_text(json.dumps(meta))

    stopped = _StopAfterExtending(cfg, out, seeds=2, budgets=[5]).run(workers=2)
    assert stopped.stopped and stopped.written == len(before)  # every row still there, some extended
    extended = [row for row in _rows(out) if row["status/s1"]]
    assert 0 < len(extended) < len(before)
    setting = {"kind": "table", "table": {"path": str(out)}, "objectives": [{"name": "val_acc@mlp"}]}
    with pytest.raises(EvaluatorSetupError, match=r"rows of .* lack seed 1 .*rerun its `layerforge tabulate`"):
        TableEvaluator(get_space(SPACE["kind"], **SPACE["options"]), EvaluatorConfig(**setting))

    done = Tabulation(cfg, out, seeds=2, budgets=[5]).run(workers=2)
    rows = {row["fingerprint"]: row for row in _rows(out)}
    assert not done.stopped and set(rows) == set(before)
    rest = [row for key, row in rows.items() if key not in {r["fingerprint"] for r in extended}]
    # only seed 1 of the rows not extended yet: its full run, and its shorter one where that passed
    assert done.evaluations == len(rest) + sum(row["status/s1"] == "done" for row in rest)
    for key, row in rows.items():
        assert {k: v for k, v in row.items() if "/s1" not in k} == before[key]  # seed 0 as it was
        assert row["status/s1"] in ("done", "failed", "rejected")
    assert json.loads(out.with_suffix(".json").read_text())["seeds"] == [0, 1]
    TableEvaluator(get_space(SPACE["kind"], **SPACE["options"]), EvaluatorConfig(**setting))  # complete: loads
    with pytest.raises(Exception, match=r"holds seeds \[0, 1\]; give --seeds 2 or more"):
        Tabulation(cfg, out, seeds=1, budgets=[5])


def _table_config(tmp_path: Path, table: dict, name: str = "on-table") -> dict:
    config = study_config(name, tmp_path, space=SPACE)
    config["algorithm"] = {"name": "random"}
    config["evaluator"] = {
        "kind": "table",
        "objectives": [{"name": "val_acc@mlp", "direction": "max"}],
        "table": table,
    }
    config["budget"] = {"evaluations": 6}
    return config


@pytest.fixture(scope="module")
def table(ray_address, tmp_path_factory) -> Path:
    """A table made by the command line, as a user makes one."""
    folder = tmp_path_factory.mktemp("table")
    config = folder / "tabulate.yaml"
    config.write_text(yaml.safe_dump(_config(folder)))
    out = folder / "table.csv"
    args = ["tabulate", str(config), "--out", str(out), "--budgets", "5", "--workers", "2", "--address", ray_address]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "functions in" in result.output and "0 were stored" in result.output
    again = CliRunner().invoke(app, args)
    assert "0 evaluations this run" in again.output
    return out


def test_a_study_runs_on_the_table_through_the_real_runner(table, tmp_path) -> None:
    cfg = parse_config(_table_config(tmp_path, {"path": str(table)}))
    store = Store(cfg.store.url)
    StudyRunner(cfg, store, progress=False).run()
    study = store.get_study("on-table")
    rows = {r["fingerprint"]: r for r in _rows(table)}
    finished = [(c, e) for c, e in store.evaluations(study.id, purpose="search") if e.status != "duplicate"]
    assert study.status == "finished" and len(finished) == 6
    for candidate, evaluation in finished:
        row = rows[candidate.fingerprint]
        if evaluation.status == "done":
            mean = (float(row["val_acc@mlp/s0"]) + float(row["val_acc@mlp/s1"])) / 2
            assert evaluation.objectives["val_acc@mlp"] == pytest.approx(mean)
        else:
            assert evaluation.status == row["status/s0"] == "failed"


def test_the_table_answers_for_a_chosen_seed_and_budget(table) -> None:
    space = get_space(SPACE["kind"], **SPACE["options"])
    row = next(r for r in _rows(table) if r["status/s1"] == "done")
    genome = json.loads(row["genome"])
    config = EvaluatorConfig(kind="table", table={"path": str(table), "seed": 1}, objectives=[{"name": "val_acc@mlp"}])
    evaluator = TableEvaluator(space, config)
    assert evaluator.evaluate(genome).objectives["val_acc@mlp"] == pytest.approx(float(row["val_acc@mlp/s1"]))
    shorter = evaluator.evaluate(genome, steps=5)
    assert shorter.objectives["val_acc@mlp"] == pytest.approx(float(row["val_acc@mlp/s1/steps5"]))
    assert shorter.seconds == pytest.approx(float(row["seconds/s1/steps5"]))
    assert evaluator.evaluate(genome, steps=9).status == "failed"


def test_a_genome_outside_the_table_is_a_failed_outcome_that_names_the_table(table) -> None:
    wider = get_space("activation", schema="unary_unary", max_params=0, unary_ops=[*OPS, "sin"])
    config = EvaluatorConfig(kind="table", table={"path": str(table)}, objectives=[{"name": "val_acc@mlp"}])
    outcome = TableEvaluator(wider, config).evaluate(wider.parse("sin(relu(x))"))
    assert outcome.status == "failed" and outcome.stage == "static"
    assert f"not in table {table}" in outcome.reason and "sin(relu(x))" in outcome.reason


def test_what_the_config_gets_wrong_is_refused_before_the_study_starts(table, tmp_path) -> None:
    cases = [
        ({"path": str(tmp_path / "none.csv")}, "does not exist; write it with `layerforge tabulate"),
        ({"path": str(table), "seed": 5}, r"no run for seed 5; recorded seeds \[0, 1\]"),
        ({"path": str(table), "steps": 9}, r"at 9 steps; recorded seeds \[0, 1\], shorter budgets \(steps\) \[5\]"),
        ({"path": str(table), "metrics": {"val_acc@mlp": "val_f1@mlp"}}, "reads 'val_f1@mlp', which"),
    ]
    for source, message in cases:
        cfg = parse_config(_table_config(tmp_path, source))
        with pytest.raises(EvaluatorSetupError, match=message):
            StudyRunner(cfg, Store(cfg.store.url), progress=False)
    with pytest.raises(Exception, match="evaluator.table is missing"):
        parse_config({**_table_config(tmp_path, {"path": "x"}), "evaluator": {"kind": "table"}})
    fingerprint = {"seed": 99}
    cfg = parse_config(_table_config(tmp_path, {"path": str(table)}))
    cfg.evaluator.fingerprint = cfg.evaluator.fingerprint.model_copy(update=fingerprint)
    with pytest.raises(EvaluatorSetupError, match="set evaluator.fingerprint to them"):
        StudyRunner(cfg, Store(cfg.store.url), progress=False)
