"""Hostile and careless inputs: each gives one clear line (or a clean dashboard page), and no password is stored
or shown. Test names carry the row of the hardening issue's table they cover."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from search.cli import app
from search.config import ConfigError, parse_config
from search.db_urls import redact_url, without_password
from search.export import file_stem
from search.store import Store, StoreError
from spaces import GenomeError, SpaceConfigError, get_space
from tests.conftest import study_config
from tests.pg import PostgresServer
from tests.test_dashboard import add_candidate, app_on, new_study, texts

PASSWORD = "S3cret-pw.7"  # distinctive, so a grep for it finds every leak


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _one_clear_line(code: int, output: str, expected: str) -> None:
    assert code == 2, output
    assert expected in output, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) <= 2, output  # the message, possibly wrapped once by the console


# -- credentials (rows 2, 3, 4) -------------------------------------------------------------------------------


def _url_with_password(server: PostgresServer, database: str, user: str = "postgres") -> str:
    return f"postgresql+psycopg://{user}:{PASSWORD}@127.0.0.1:{server.port}/{database}"


def _every_stored_row(server: PostgresServer, database: str) -> str:
    """Every row of every table, as PostgreSQL prints it: what anyone who can read the store sees."""
    with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname=database) as conn:
        tables = [name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return "\n".join(str(row) for table in tables for row in conn.execute(f'SELECT t::text FROM "{table}" t'))


def test_urls_are_masked_and_stripped_whole_even_with_unencoded_characters() -> None:
    cases = {
        "postgresql://lf:p@ss/w:rd@host/db": ("postgresql://lf:***@host/db", "postgresql://lf@host/db"),
        "postgresql+psycopg://lf:p%40ss@host:5432/db": (
            "postgresql+psycopg://lf:***@host:5432/db",
            "postgresql+psycopg://lf@host:5432/db",
        ),
        "postgresql://lf@host/db?password=pw&sslmode=require": (
            "postgresql://lf@host/db?password=***&sslmode=require",
            "postgresql://lf@host/db?sslmode=require",
        ),
        "lf:pw@host/db": ("lf:***@host/db", "lf@host/db"),
        "sqlite:///runs/x.db": ("sqlite:///runs/x.db", "sqlite:///runs/x.db"),
    }
    for url, (masked, stripped) in cases.items():
        assert (redact_url(url), without_password(url)) == (masked, stripped)


def test_row4_unencoded_at_sign_in_a_password_is_one_clear_error_that_hides_it() -> None:
    code, output = _invoke("list", "--db", "postgresql://lf:p@ss/w:rd@host/db")
    _one_clear_line(code, output, "unencoded '@'")
    assert "p@ss" not in output and "w:rd" not in output and "lf:***@host/db" in output


@pytest.fixture
def password_study(
    ray_address: str, postgres_server: PostgresServer, tmp_path: Path
) -> Iterator[tuple[str, str, str]]:
    """A study launched by the CLI with the password in the config's store.url: (database, url, launch output)."""
    database = postgres_server.create_database()
    url = _url_with_password(postgres_server, database)
    config = study_config("secret", tmp_path, budget={"evaluations": 6}, store={"url": url})
    code, output = _invoke("launch", str(_write(tmp_path, config)), "--no-progress", "--address", ray_address)
    assert code == 0, output
    yield database, url, output


def test_rows2_3_no_password_is_stored_or_printed(
    password_study: tuple[str, str, str],
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    database, url, launch_output = password_study
    stored = _every_stored_row(postgres_server, database)
    assert "secret" in stored and PASSWORD not in stored
    config = Store(url, read_only=True).get_study("secret").config
    assert config["store"]["url"] == f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/{database}"
    outputs = [launch_output]
    for args in (["list"], ["status", "secret"], ["export", "secret", "--top", "1", "--out", str(tmp_path / "x")]):
        outputs.append(_invoke(*args, "--db", url)[1])
    # The driver takes its URL (and password) from --db or $LAYERFORGE_DB, never from the stored config.
    code, resumed = _invoke("resume", "secret", "--no-progress", env={"LAYERFORGE_DB": url})
    assert code == 0 and "already finished" in resumed
    outputs.append(resumed)
    wrong = url.replace(str(postgres_server.port), "9")
    outputs.append(_invoke("list", "--db", wrong)[1])
    execs = []
    monkeypatch.setattr("search.cli.os.execve", lambda *args: execs.append(args))
    outputs.append(_invoke("dashboard", "--db", url, "--port", "1")[1])
    assert execs and execs[0][2]["LAYERFORGE_DB"] == url, "the server itself gets the full URL"
    at = app_on(Store(url, read_only=True), monkeypatch, "study", study="secret")
    outputs.append(texts(at) + "\n".join(str(c.value) for c in at.sidebar.caption))
    assert "postgres:***@127.0.0.1" in outputs[-1]  # the sidebar names the store, masked
    for output in outputs:
        assert PASSWORD not in output, output


@pytest.fixture
def password_role(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """A role that must give its password (scram), owning a fresh database: (role, database)."""
    role = f"lf_{uuid.uuid4().hex[:8]}"
    database = postgres_server.create_database()
    admin = {"host": "127.0.0.1", "port": postgres_server.port, "user": "postgres", "autocommit": True}
    with psycopg.connect(dbname="postgres", **admin) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
        hba = postgres_server.data / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        conn.execute("SELECT pg_reload_conf()")
    yield role, database


def test_a_config_needs_no_password_postgresql_reads_pgpassword_or_pgpass(
    password_role: tuple[str, str], postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    role, database = password_role
    url = f"postgresql+psycopg://{role}@127.0.0.1:{postgres_server.port}/{database}"
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(StoreError, match="password"):
        Store(url, connect_retries=0)  # the server really asks for one
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    Store(url).close()
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:{database}:{role}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    store = Store(url)
    assert store.list_studies() == []
    store.close()


def test_launch_uses_layerforge_db_when_the_config_names_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = study_config("env", tmp_path)
    del config["store"]
    monkeypatch.setenv("LAYERFORGE_DB", f"sqlite:///{tmp_path / 'from_env.db'}")
    assert parse_config(config).store.url == f"sqlite:///{tmp_path / 'from_env.db'}"


# -- limits checked before anything starts (rows 5, 6) -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows5_6_strings_too_long_for_the_store_are_refused_before_anything_starts(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.url(server.create_database())
    else:
        url = f"sqlite:///{tmp_path / 'store.db'}"
    long_seed = "relu(x) + tanh(x) + sigmoid(x) + softplus(x) + elu(x)"  # 53 characters
    for edit, expected in (
        (lambda c: c["space"].update(seeds=["relu", long_seed]), "seed 1 ('relu(x) + tanh(x) + '...) is 53 characters"),
        (lambda c: c.update(name="a" * 10_000), "(10000 characters)"),
        (lambda c: c.update(name="../outside"), "not starting with a dot"),
        (lambda c: c.update(name="/abs/path/x"), "'/abs/path/x'"),
        (lambda c: c["space"].update(kind="k" * 51), "space.kind: String should have at most 50 characters"),
    ):
        config = study_config("limits", tmp_path, store={"url": url})
        edit(config)
        code, output = _invoke("launch", str(_write(tmp_path, config)), "--no-progress")
        assert code == 2 and expected in output and "Traceback" not in output, output
    assert not Store(url).list_studies(), "nothing reached the store"
    code, output = _invoke("launch", str(_write(tmp_path, study_config("ok", tmp_path))), "--name", "x" * 201)
    assert code == 2 and "(201 characters)" in output


# -- parsers (rows 7, 13) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "(" * 170 + "x" + ")" * 170,
        "relu(" * 170 + "x" + ")" * 170,
        "-" * 170 + "x",
        "x" + "^x" * 170,
        "(" * 100_000,
    ],
    ids=["parentheses", "calls", "unary-minus", "powers", "unclosed"],
)
def test_row7_deeply_nested_formulas_are_one_genome_error(text: str) -> None:
    for space in (get_space("activation"), get_space("activation", max_depth=32, max_nodes=10_000)):
        with pytest.raises(GenomeError, match="nests more than 66 parentheses, calls") as caught:
            space.parse(text)
        assert len(str(caught.value)) < 300


def test_row7_nesting_up_to_the_limit_parses_builds_and_exports() -> None:
    space = get_space("activation", max_depth=32, max_nodes=200, max_params=10)
    genome = space.parse("-" * 16 + "relu(" * 16 + "x" + ")" * 16)
    assert space.parse(space.describe(genome)) == genome  # written as -(-(...)): twice as deep, still read back
    space.build(genome)
    compile(space.to_source(genome, "Deep"), "deep.py", "exec")
    with pytest.raises(GenomeError, match="deeper than max_depth=32"):
        space.parse("x" + "+x" * 40)  # a long chain nests without parentheses
    with pytest.raises(SpaceConfigError, match=r"max_depth must be an integer in \[1, 32\]"):
        get_space("activation", max_depth=1000)


def _genome_with(kind: str, edit: Any) -> dict[str, Any]:
    space = get_space(kind)
    genome = json.loads(json.dumps(next(iter(space.seeds().values()))))
    edit(genome)
    return json.loads(json.dumps(genome))  # as read back from a file or the store


@pytest.mark.parametrize(
    ("kind", "edit", "expected"),
    [
        ("normact", lambda g: g["nodes"][0].update(op=["batch_std"]), r"unknown op \['batch_std'\]"),
        ("normact", lambda g: g.update(mode=["B"]), "mode must be"),
        ("normact", lambda g: g.update(eps=10**400), "'eps' must be a finite number"),
        ("normact", lambda g: g["nodes"][0].update(op=json.loads("[" * 500 + "]" * 500)), "unknown op"),
        ("kan", lambda g: g["layers"][0].update(family=["bspline"]), r"family \['bspline'\] is unknown"),
        ("kan", lambda g: g["layers"][0].update(norm=["none"]), "norm"),
        ("activation", lambda g: g.update(expr={"op": "const", "value": 1e400}), "must be a finite number"),
        ("activation", lambda g: g.update(expr={"op": "const", "value": 10**400}), "must be a finite number"),
        ("activation", lambda g: g.update(expr={"op": ["relu"], "args": []}), 'no "op" string'),
    ],
)
def test_row13_malformed_genome_json_is_a_genome_error(kind: str, edit: Any, expected: str) -> None:
    with pytest.raises(GenomeError, match=expected) as caught:
        get_space(kind).validate(_genome_with(kind, edit))
    assert len(str(caught.value)) < 400


def test_row13_kan_candidates_list_of_lists_is_a_genome_error() -> None:
    genome = _genome_with("kan", lambda g: None)
    genome["layers"][0] = {
        "family": "selectable",
        "norm": "none",
        **{"grid": 3, "order": 2, "degree": 3, "base": True},
        "candidates": [["bspline"], "rbf"],
    }
    with pytest.raises(GenomeError, match="unknown family"):
        get_space("kan").validate(genome)


# -- the config loader (rows 8, 9, 10, 16) -----------------------------------------------------------------------


def _config_text(tmp_path: Path, edit: Any) -> str:
    config = study_config("loader", tmp_path)
    edit(config)
    return yaml.safe_dump(config)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (lambda t: t.encode() + "# caf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset"),
        (lambda t: b"[" * 100_000, "nested deeper than 100 levels"),
        (lambda t: t.replace("evaluations: 30", "evaluations: 99999999999999999999999").encode(), "less than or equal"),
        (lambda t: t.replace("evaluations: 30", "evaluations: " + "9" * 5000).encode(), "cannot be read: Exceeds"),
        (lambda t: (t + "name: again\n").encode(), "key 'name' appears twice in one mapping; keep one at line"),
        (lambda t: t.replace("evaluations: 30", "evaluations: true").encode(), "expected a number, got true"),
        (lambda t: t.replace("evaluations: 30", "minutes: .inf").encode(), "budget.minutes: Input should be a finite"),
        (lambda t: t.replace("seed: 7", "seed: [1").encode(), "is not valid YAML: while parsing a flow sequence"),
        (lambda t: b"name: x\x00\n", "unacceptable character #x0000"),
        (
            lambda t: t.replace("population_size: 8", "population_size: [1, 2]").encode(),
            "option 'population_size' must be a single number, true/false, a word or a list of words, got a list",
        ),
    ],
    ids=["latin-1", "brackets", "overflow", "5000-digits", "duplicate", "true", "inf", "yaml", "nul", "list"],
)
def test_rows8_9_10_config_loader_reports_each_problem_in_one_line(tmp_path: Path, content: Any, expected: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_bytes(content(_config_text(tmp_path, lambda c: None)))
    code, output = _invoke("launch", str(path), "--no-progress")
    assert code == 2 and expected in output and "Traceback" not in output, output
    assert len(output.strip().splitlines()) <= 3, output


def test_row16_a_directory_as_the_config_path(tmp_path: Path) -> None:
    code, output = _invoke("launch", str(tmp_path), "--no-progress")
    _one_clear_line(code, output, "is a directory; give the study's YAML file")


def test_numbers_where_booleans_and_words_belong_are_refused_with_the_key_path(tmp_path: Path) -> None:
    config = study_config("types", tmp_path, budget={"evaluations": True, "minutes": float("nan")}, seed=2**40)
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    message = str(caught.value)
    assert "budget.evaluations: expected a number, got true" in message
    assert "budget.minutes: Input should be a finite number" in message
    assert "seed: Input should be less than or equal to 2147483647" in message


# -- export and dashboard (rows 11, 12) ---------------------------------------------------------------------------

HOSTILE_NAMES = ["/abs/path/x", "../../escape", "a" * 10_000, ".hidden", "x/../../y", "caf\xe9 \u2603"]


def _store_with_hostile_names(url: str) -> Store:
    """Studies whose names no config allows, as anyone with write access to a shared store can write them."""
    store = Store(url)
    genome = get_space("activation").seeds()["relu"]
    for name in HOSTILE_NAMES:
        study = new_study(store, name)
        add_candidate(store, study, genome, "done", stage="full", objectives={"val_acc@mlp": 0.5, "latency_ms@mlp": 1})
    return store


def test_row11_every_exported_file_stays_inside_the_output_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    _store_with_hostile_names(url)
    out = tmp_path / "out"
    for name in HOSTILE_NAMES:
        code, output = _invoke("export", name, "--top", "1", "--out", str(out), "--db", url)
        assert code == 0, output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["study"] == name
        module = manifest["candidates"][0]["module"]
        assert (out / module).is_file() and (out / module).resolve().parent == out.resolve()
        assert module.removesuffix(".py").isidentifier() and len(module) < 255
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("hostile.db")]
    assert all(p.parent == out for p in written) and len(written) == 1 + 2 * len(HOSTILE_NAMES)
    assert not Path("/abs/path").exists()
    assert file_stem("/abs/path/x", 3) == "_abs_path_x_c3"


def test_row11_the_dashboard_download_is_named_inside_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store_with_hostile_names(f"sqlite:///{tmp_path / 'hostile.db'}")
    for study in store.list_studies()[:2]:
        cand, _ = store.evaluations(study.id)[0]
        at = app_on(store, monkeypatch, "candidate", id=str(cand.id))
        label = at.get("download_button")[0].proto.label
        assert "/" not in label.removeprefix("Download ") and label.endswith(f"_c{cand.id}.py")


@pytest.fixture
def small_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'small.db'}")
    study = new_study(store, "only")
    genome = get_space("activation").seeds()["relu"]
    add_candidate(store, study, genome, "done", stage="full", objectives={"val_acc@mlp": 0.5, "latency_ms@mlp": 1})
    return store


@pytest.mark.parametrize(
    ("page", "params", "expected"),
    [
        ("candidate", {"id": "-5"}, "'-5' is not a candidate id"),
        ("candidate", {"id": "99999999999999999999999"}, "is not a candidate id: ids are whole numbers from 1 to"),
        ("candidate", {"id": "abc"}, "'abc' is not a candidate id"),
        ("candidate", {"id": "2147483647"}, "no candidate with id 2147483647"),
        ("compare", {"ids": "1,99999999999999999999999"}, "is not a candidate id"),
        ("compare", {"ids": "1,2147483647"}, "No candidate with id 2147483647"),
        ("study", {"study": "nosuchstudy"}, "No study named 'nosuchstudy' in this store"),
    ],
)
def test_row12_bad_or_unknown_ids_and_studies_show_a_short_error(
    small_store: Store, monkeypatch: pytest.MonkeyPatch, page: str, params: dict[str, str], expected: str
) -> None:
    at = app_on(small_store, monkeypatch, page, **params)  # app_on asserts that no exception reached the page
    assert expected in "\n".join(e.value for e in at.error)
    if page == "study":
        assert not at.metric, "an unknown study must not show another study's numbers"


def test_row12_a_corrupt_sqlite_store_is_one_line_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage, not a database " * 400)
    url = f"sqlite:///{corrupt}"
    execs = []
    monkeypatch.setattr("search.cli.os.execve", lambda *args: execs.append(args))
    export = ["export", "x", "--top", "1", "--out", str(tmp_path / "out")]
    for args in (["dashboard"], ["list"], ["status", "x"], ["resume", "x"], export):
        code, output = _invoke(*args, "--db", url)
        _one_clear_line(code, output, "file is not a database")
    assert not execs, "the dashboard server must not start on a corrupt store"
    page = app_on(SimpleNamespace(url=url), monkeypatch)  # and a page opened on it anyway says so, in one line
    assert [e.value for e in page.error] == [f"Cannot open the store: store {url} failed: file is not a database"]
    empty = tmp_path / "empty.db"
    empty.touch()
    code, output = _invoke("list", "--db", f"sqlite:///{empty}")
    _one_clear_line(code, output, "has no studies table, so it is not a LayerForge store")
    code, output = _invoke("launch", str(_write(tmp_path, study_config("c", tmp_path))), "--db", url)
    _one_clear_line(code, output, "file is not a database")
