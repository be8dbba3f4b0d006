"""`layerforge`: launch, resume, watch, re-rank and export layer searches."""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from evaluators.config import INT32_MAX
from evaluators.proxy import EvaluatorSetupError
from evaluators.registry import UnknownComponentError
from evaluators.vocabulary import StudyStatus
from search.algorithms import AlgorithmConfigError
from search.config import ConfigError, load_config
from search.db_urls import DEFAULT_URL, URL_ENV, redact_url, store_url, without_password
from search.store import Store, StoreError, StudyRow
from search.workers import WorkerStartError
from spaces import GenomeError, SpaceConfigError

if TYPE_CHECKING:
    from layerforge import Study

USER_ERRORS = (
    ConfigError,
    StoreError,
    GenomeError,
    SpaceConfigError,
    AlgorithmConfigError,
    UnknownComponentError,
    WorkerStartError,
    EvaluatorSetupError,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="LayerForge: search for new neural-network layers.",
)
console = Console()
err_console = Console(stderr=True)

DbOption = typer.Option(None, "--db", help=f"store URL (default: ${URL_ENV} or {DEFAULT_URL})")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one line on stderr and exit code 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ConnectionError as exc:
            err_console.print(f"[red]error:[/red] cannot reach the Ray cluster: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")


def _existing_store(db: str | None) -> Store:
    """The store of a finished study, opened to add runs to: a mistyped --db fails here, read-only, instead of
    leaving a new empty store behind."""
    Store(store_url(db), read_only=True).close()
    return Store(store_url(db))


@app.command()
@user_errors
def launch(
    config: Path = typer.Argument(..., help="study config (YAML)"),
    address: str | None = typer.Option(None, help="Ray cluster: 'auto' or ray://host:10001 (default: local)"),
    workers: int | None = typer.Option(None, help="number of worker actors (default: from config or CPUs)"),
    db: str | None = typer.Option(None, "--db", help=f"store URL (default: the config's store.url, else ${URL_ENV})"),
    name: str | None = typer.Option(None, help="study name (default: the config's name)"),
    progress: bool = typer.Option(True, help="show progress: a live bar on a terminal, a line every 30 s in a log"),
) -> None:
    """Start a new study from CONFIG and run it to its budget."""
    from layerforge import create_study

    _check_workers(workers)
    study = create_study(config, name=name, storage=db)
    _report(study, study.run(workers=workers, address=address, progress=progress, console=err_console))


@app.command()
@user_errors
def resume(
    study: str = typer.Argument(..., help="study name (or a unique prefix)"),
    db: str | None = DbOption,
    address: str | None = typer.Option(None, help="Ray cluster: 'auto' or ray://host:10001 (default: local)"),
    workers: int | None = typer.Option(None, help="number of worker actors"),
    progress: bool = typer.Option(True, help="show progress: a live bar on a terminal, a line every 30 s in a log"),
    evaluations: int | None = typer.Option(None, help="run N more evaluations (the new budget is stored)"),
    minutes: float | None = typer.Option(None, help="run M more minutes (the new budget is stored)"),
) -> None:
    """Continue a stopped or crashed study: re-queue what was in flight and run to the budget. With --evaluations
    and/or --minutes, extend a finished or stopped study's budget first (whichever is spent first stops it)."""
    from layerforge import load_study

    _check_workers(workers)
    found = load_study(study, storage=db)
    finished_before = evaluations is None and minutes is None and found.status == StudyStatus.FINISHED
    manifest = found.run(
        evaluations, minutes, workers=workers, address=address, progress=progress, console=err_console
    )
    if finished_before:
        err_console.print(f"`resume {study} --evaluations N` (or --minutes M) runs it further", highlight=False)
    _report(found, manifest)


def _report(study: Study, manifest: Path | None) -> None:
    """After a run: the summary (naming the export the config asked for, if the run wrote one), then the commands
    that go on from it."""
    from search.summary import print_summary

    row = study.row
    print_summary(console, study.store, row, manifest)
    console.print("\nnext:", highlight=False)
    for command in follow_up_commands(row, study.storage):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)


def follow_up_commands(study: StudyRow, url: str) -> list[str]:
    """The commands that go on from a run, spelled out for its study and store so they can be pasted as they are.

    The store URL loses its password, as the store keeps it (PostgreSQL reads it from PGPASSWORD or ~/.pgpass).
    """
    program = _program()
    name, db = shlex.quote(study.name), f"--db {shlex.quote(without_password(url))}"
    commands = [
        f"{program} status {name} {db}",
        f"{program} dashboard {db}",
        f"{program} export {name} --top 5 --out exported/ {db}",
        f"{program} rerank {name} --top 5 --seeds 3 {db}",
    ]
    if study.status != StudyStatus.FINISHED:
        commands.insert(1, f"{program} resume {name} {db}")
    return commands


def _program() -> str:
    """How this command was called: `.venv/bin/layerforge` from the repository, else `layerforge`."""
    called = Path(sys.argv[0])
    if called.name != "layerforge":
        return "layerforge"
    try:
        return str(called.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(called) if called.is_absolute() else "layerforge"


@app.command("list")
@user_errors
def list_studies(db: str | None = DbOption) -> None:
    """List the studies in the store: status, what stopped each, evaluations and minutes against the budget, tags."""
    from search.summary import studies_table

    console.print(studies_table(Store(store_url(db), read_only=True), console.width))


@app.command()
@user_errors
def status(
    study: str | None = typer.Argument(None, help="study name (default: all)"), db: str | None = DbOption
) -> None:
    """Show a study's summary (or list all studies)."""
    from layerforge import load_study

    if study is None:
        list_studies(db)
        return
    load_study(study, storage=db).summary(console)


@app.command()
@user_errors
def export(
    study: str = typer.Argument(..., help="study name (or a unique prefix)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    top: int | None = typer.Option(None, help="export the best K (by --by); with --pareto, up to K of the front"),
    pareto: bool = typer.Option(False, help="export the Pareto front over all objectives"),
    by: str | None = typer.Option(None, "--by", help="rank by this objective (default: the first)"),
    db: str | None = DbOption,
) -> None:
    """Write the chosen layers as standalone PyTorch modules, their genomes and a manifest: the top K by one
    objective, the Pareto front, or up to K of the front (--pareto --top K: the K best by --by if given, else the K
    least crowded)."""
    from layerforge import load_study

    if by is not None and top is None:
        raise ConfigError("--by ranks the best K: give --top K with it")
    if top is None and not pareto:
        raise ConfigError(
            "choose what to export: exactly one of --top K or --pareto, or both for up to K of the Pareto front"
        )
    if top is not None and top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    manifest = load_study(study, storage=db).export(out, top=top, pareto=pareto, by=by)
    console.print(f"exported to {out} (manifest: {manifest})")


@app.command()
@user_errors
def rerank(
    study: str = typer.Argument(..., help="study name"),
    top: int = typer.Option(5, help="re-evaluate the best K (plus every baseline)"),
    seeds: int = typer.Option(3, help="training seeds per candidate"),
    steps: int | None = typer.Option(None, help="training steps per proxy (default: the study's)"),
    workers: int | None = typer.Option(None, help="number of worker actors"),
    db: str | None = DbOption,
) -> None:
    """Re-train the top candidates and the baselines with several seeds on train + validation; print mean ± std per
    objective on the test split, which nothing selects on."""
    from search.rerank import compare
    from search.rerank import rerank as run_rerank
    from search.results import MIN_SEEDS, mean_std, test_names

    if top < 1 or seeds < 1 or (steps is not None and steps < 1):
        raise ConfigError("--top, --seeds and --steps must be at least 1")
    if steps is not None and steps > INT32_MAX:
        raise ConfigError(f"--steps must be at most {INT32_MAX} (the store keeps it as a 32-bit integer)")
    _check_workers(workers)
    if seeds < MIN_SEEDS:
        err_console.print(
            f"[yellow]warning: {seeds} seeds are too few to tell a layer from the seed noise; use --seeds "
            f"{MIN_SEEDS} or more[/yellow]"
        )
    store = _existing_store(db)
    rows = run_rerank(store, study, top=top, seeds=seeds, steps=steps, console=err_console, workers=workers)
    row = store.get_study(study)
    names = test_names(row)
    table = Table(
        title=f"Re-ranking of {row.name!r}: rerank runs on the test split, {seeds} seeds, {steps or 'search'} steps "
        "(kept apart from the search's validation numbers)"
    )
    table.add_column("candidate")
    table.add_column("formula")
    for n in names:
        table.add_column(f"{n} (mean ± std)", justify="right")
    for r in rows:
        cells = []
        for n in names:
            mean, std = mean_std(r.values.get(n, []))
            cells.append(f"{mean:.4f} ± {std:.4f} (n={len(r.values.get(n, []))})")
        table.add_row(r.label, r.candidate.formula, *cells)
    console.print(table)
    for line in compare(rows, row):
        console.print(line)


@app.command()
@user_errors
def transfer(
    study: str = typer.Argument(..., help="study name"),
    top: int = typer.Option(3, help="transfer the best K searched candidates (plus the baselines)"),
    seeds: int = typer.Option(3, help="training seeds per candidate and proxy"),
    steps_scale: float = typer.Option(1.0, help="multiply every transfer proxy's training steps by this"),
    baselines: str | None = typer.Option(None, help="baseline seeds of the study, e.g. relu,gelu (default: relu, "
                                         "gelu, silu, mish where the study has them, else all its seeds)"),
    workers: int | None = typer.Option(None, help="number of worker actors"),
    db: str | None = DbOption,
) -> None:
    """Train the top candidates and the baselines on networks of other families (ResNets with post- and
    pre-activation blocks, a small transformer LM) on train + validation; print test accuracy per proxy with a
    paired test against the best baseline."""
    from search.transfer import transfer as run_transfer
    from search.transfer_results import print_comparison

    if top < 1 or seeds < 1 or steps_scale <= 0:
        raise ConfigError("--top and --seeds must be at least 1 and --steps-scale positive")
    _check_workers(workers)
    names = None if baselines is None else [n.strip() for n in baselines.split(",") if n.strip()]
    store = _existing_store(db)
    results, steps = run_transfer(
        store, study, top=top, seeds=seeds, console=err_console, steps_scale=steps_scale, baseline_names=names,
        workers=workers,
    )  # fmt: skip
    print_comparison(console, f"Transfer of {study!r}", results, steps)


@app.command()
@user_errors
def evaluate(
    layer: str = typer.Argument(..., help="a formula of the space (x*sigmoid(x)) or a stored candidate STUDY:ID"),
    task: str = typer.Option(..., "--task", help="MODULE:FUNCTION returning a search.evaluate_task.UserTask"),
    seeds: int = typer.Option(3, help="training seeds per layer"),
    steps: int | None = typer.Option(None, help="training steps (default: the task's)"),
    baselines: str | None = typer.Option(None, help="named seeds of the space, e.g. relu,gelu (default: relu, "
                                         "gelu, silu, mish where the space has them, else all its seeds)"),
    space: str = typer.Option("activation", help="the space a formula belongs to"),
    db: str | None = DbOption,
) -> None:
    """Train your own model with LAYER swapped in for its activations (or norms, for a norm-act layer), and with the
    baselines; print test accuracy with a paired test against the best baseline."""
    from search.evaluate_task import baseline_layers, evaluate_on_task, load_task, resolve_layer
    from search.transfer_results import print_comparison

    if seeds < 1 or (steps is not None and steps < 1):
        raise ConfigError("--seeds and --steps must be at least 1")
    stored = ":" in layer and layer.rpartition(":")[2].isdigit()
    found = resolve_layer(layer, space_kind=space, store=Store(store_url(db), read_only=True) if stored else None)
    names = None if baselines is None else [n.strip() for n in baselines.split(",") if n.strip()]
    user_task = load_task(task)
    layers = [found, *(b for b in baseline_layers(found.space, names) if b.genome != found.genome)]
    results, used = evaluate_on_task(user_task, layers, seeds=seeds, steps=steps, console=err_console)
    print_comparison(console, f"{found.label} in {task}", results, used)


@app.command()
@user_errors
def tabulate(
    config: Path = typer.Argument(..., help="study config of an enumerable space (fixed schema, max_params: 0)"),
    out: Path = typer.Option(..., "--out", help="the table (CSV); a .json beside it records how it was made"),
    seeds: int = typer.Option(2, help="training seeds per function; more than a table holds extends it"),
    budgets: str | None = typer.Option(None, help="shorter budgets in steps, e.g. 33,100 (default: 1/9 and 1/3)"),
    workers: int | None = typer.Option(None, help="number of worker actors"),
    address: str | None = typer.Option(None, help="Ray cluster: 'auto' or ray://host:10001 (default: local)"),
) -> None:
    """Evaluate every function of the space once per seed (and at shorter budgets) into a table; rerun to resume."""
    from search.tabulate import Tabulation

    _check_workers(workers)
    try:
        steps = None if budgets is None else [int(b) for b in budgets.split(",") if b.strip()]
    except ValueError:
        raise ConfigError(f"--budgets must be comma-separated step counts, got {budgets!r}") from None
    cfg = load_config(config)
    if address:
        cfg.ray.address = address
    tabulation = Tabulation(cfg, out, seeds=seeds, budgets=steps, console=err_console)
    done = tabulation.run(workers=workers)
    console.print(
        f"{done.written} of {done.functions} functions in {done.path} ({done.stored_before} were stored, "
        f"{done.evaluations} evaluations this run, {done.unbuildable} genomes do not build)"
        + (": stopped, rerun the same command to continue" if done.stopped else ""),
        soft_wrap=True,
    )


@app.command()
@user_errors
def dashboard(
    db: str | None = DbOption,
    host: str = typer.Option("127.0.0.1", help="address to bind; 0.0.0.0 exposes the dashboard to the network"),
    port: int = typer.Option(8501, help="port to serve on"),
) -> None:
    """Serve the Streamlit dashboard over the store, read-only: it never locks or changes a running study."""
    import importlib.util

    url = store_url(db)
    Store(url, read_only=True).close()  # a wrong URL or a missing file fails here, with the store's message
    spec = importlib.util.find_spec("dashboard")
    if spec is None or spec.origin is None:
        raise ConfigError("the dashboard package is not installed; run `pip install -e .` in the repository")
    app_path = Path(spec.origin).parent / "app.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # no "Deploy" button or developer menu on a monitoring page
        "--client.showErrorDetails", "type",  # an unexpected error shows its type; the traceback stays in this log
    ]  # fmt: skip
    console.print(f"dashboard on http://{host}:{port} (store {redact_url(url)}, read-only); Ctrl-C stops it")
    sys.stdout.flush()
    # Become the Streamlit server, so Ctrl-C and SIGTERM reach it directly and no child outlives this command.
    os.execve(sys.executable, command, {**os.environ, URL_ENV: url})


@app.command()
@user_errors
def rename(
    study: str = typer.Argument(..., help="study name (or a unique prefix)"),
    new_name: str = typer.Argument(..., help="its new name"),
    db: str | None = DbOption,
) -> None:
    """Give a study a new name (refused while a driver runs it)."""
    from search.study_admin import rename_study

    store = Store(store_url(db))
    old_name = store.get_study(study).name
    rename_study(store, old_name, new_name)
    console.print(f"renamed study {old_name!r} to {new_name!r}", highlight=False)


@app.command()
@user_errors
def delete(
    study: str = typer.Argument(..., help="study name (or a unique prefix)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="delete without asking"),
    db: str | None = DbOption,
) -> None:
    """Delete a study with its candidates, evaluations and events, in one transaction (refused while a driver
    runs it). Asks first unless --yes."""
    from search.study_admin import count_rows, delete_study

    store = Store(store_url(db))
    row = store.get_study(study)
    if not yes:
        question = f"delete study {row.name!r} and its {count_rows(store, row)} from {redact_url(store.url)}?"
        typer.confirm(question, abort=True)
    deleted = delete_study(store, row.name)
    console.print(f"deleted study {row.name!r} and its {deleted}", highlight=False)


@app.command()
@user_errors
def tag(
    study: str = typer.Argument(..., help="study name (or a unique prefix)"),
    action: str = typer.Argument(..., help="add or remove"),
    tags: list[str] = typer.Argument(..., help="one or more tags"),
    db: str | None = DbOption,
) -> None:
    """Add or remove a study's tags (shown by list and status)."""
    from search.study_admin import tag_study

    if action not in ("add", "remove"):
        raise ConfigError(f"the action is add or remove, got {action!r}: `layerforge tag STUDY add TAG`")
    now = tag_study(Store(store_url(db)), study, action, tags)
    console.print(f"tags: {', '.join(now) or 'none'}", highlight=False)


@app.command()
@user_errors
def note(
    study: str = typer.Argument(..., help="study name (or a unique prefix)"),
    text: str = typer.Argument(..., help='the note (replaces the one before; "" clears it)'),
    db: str | None = DbOption,
) -> None:
    """Set a study's note (shown by list and status)."""
    from search.study_admin import note_study

    note_study(Store(store_url(db)), study, text)
    console.print("note set" if text.strip() else "note cleared")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
