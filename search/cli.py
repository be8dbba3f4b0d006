"""`layerforge`: launch, resume, watch, re-rank and export layer searches."""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from evaluators.config import INT32_MAX
from evaluators.proxy import EvaluatorSetupError
from evaluators.registry import UnknownComponentError
from evaluators.vocabulary import FINISHED, StudyStatus
from search.algorithms import AlgorithmConfigError
from search.config import ConfigError, StudyConfig, load_config, parse_config
from search.db_urls import DEFAULT_URL, URL_ENV, redact_url, store_url, without_password
from search.lease import leases, shown_status
from search.store import Store, StoreError, StudyRow
from search.workers import WorkerStartError
from spaces import GenomeError, SpaceConfigError

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
    from search.runner import StudyRunner

    _check_workers(workers)
    cfg = load_config(config)
    if name:
        cfg = parse_config({**cfg.model_dump(mode="json"), "name": name}, "--name")
    if address:
        cfg.ray.address = address
    store = Store(db or cfg.store.url)
    runner = StudyRunner(cfg, store, workers=workers, progress=progress, console=err_console)
    _report(store, cfg, runner.run())


@app.command()
@user_errors
def resume(
    study: str = typer.Argument(..., help="study name"),
    db: str | None = DbOption,
    address: str | None = typer.Option(None, help="Ray cluster: 'auto' or ray://host:10001 (default: local)"),
    workers: int | None = typer.Option(None, help="number of worker actors"),
    progress: bool = typer.Option(True, help="show progress: a live bar on a terminal, a line every 30 s in a log"),
) -> None:
    """Continue a stopped or crashed study: re-queue what was in flight and run to the budget."""
    from search.runner import StudyRunner

    _check_workers(workers)
    store = Store(store_url(db))
    runner = StudyRunner.for_existing(store, study, workers=workers, progress=progress, console=err_console)
    if address:
        runner.config.ray.address = address
    _report(store, runner.config, runner.run(resume=True))


def _report(store: Store, config: StudyConfig, study: StudyRow) -> None:
    """After a run: export the best layers if the config asks and the study finished, then the summary."""
    from search.export import export_study
    from search.summary import print_summary

    manifest = None
    if config.export.out and study.status == StudyStatus.FINISHED:
        wanted = config.export
        manifest = export_study(store, config.name, wanted.out, top=wanted.top, pareto=wanted.pareto)
    print_summary(console, store, study, manifest)
    console.print("\nnext:", highlight=False)
    for command in follow_up_commands(study, store.url):
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
    """List the studies in the store."""
    store = Store(store_url(db), read_only=True)
    table = Table()
    for col in ("name", "space", "algorithm", "status", "finished", "budget", "created"):
        table.add_column(col)
    held = leases(store)
    for s in store.list_studies():
        counts = store.count_by_status(s.id)
        finished = sum(counts.get(status, 0) for status in FINISHED)
        table.add_row(
            s.name,
            s.space,
            s.algorithm,
            shown_status(s, held.get(s.id)),
            str(finished),
            str(s.budget_evaluations or "-"),
            s.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@app.command()
@user_errors
def status(
    study: str | None = typer.Argument(None, help="study name (default: all)"), db: str | None = DbOption
) -> None:
    """Show a study's summary (or list all studies)."""
    from search.summary import print_summary

    if study is None:
        list_studies(db)
        return
    store = Store(store_url(db), read_only=True)
    print_summary(console, store, store.get_study(study))


@app.command()
@user_errors
def export(
    study: str = typer.Argument(..., help="study name"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    top: int | None = typer.Option(None, help="export the best K by the first objective"),
    pareto: bool = typer.Option(False, help="export the Pareto front over all objectives"),
    db: str | None = DbOption,
) -> None:
    """Write the chosen layers as standalone PyTorch modules, their genomes and a manifest."""
    from search.export import export_study

    if (top is None) == (not pareto):
        raise ConfigError("choose exactly one of --top K or --pareto")
    if top is not None and top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    manifest = export_study(Store(store_url(db), read_only=True), study, out, top=top, pareto=pareto)
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
    from search.results import mean_std, test_names

    if top < 1 or seeds < 1 or (steps is not None and steps < 1):
        raise ConfigError("--top, --seeds and --steps must be at least 1")
    if steps is not None and steps > INT32_MAX:
        raise ConfigError(f"--steps must be at most {INT32_MAX} (the store keeps it as a 32-bit integer)")
    _check_workers(workers)
    store = Store(store_url(db))
    rows = run_rerank(store, study, top=top, seeds=seeds, steps=steps, console=err_console, workers=workers)
    row = store.get_study(study)
    names = test_names(row)
    table = Table(title=f"Re-ranking of {study!r} on the test split: {seeds} seeds, {steps or 'search'} steps")
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
def tabulate(
    config: Path = typer.Argument(..., help="study config of an enumerable space (fixed schema, max_params: 0)"),
    out: Path = typer.Option(..., "--out", help="the table (CSV); a .json beside it records how it was made"),
    seeds: int = typer.Option(2, help="training seeds per function"),
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
