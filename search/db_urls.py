"""Store URLs: which one a command opens, and how one is shown (password hidden) or kept (password dropped)."""

from __future__ import annotations

import os

DEFAULT_URL = "sqlite:///runs/layerforge.db"
URL_ENV = "LAYERFORGE_DB"  # the store the CLI and the dashboard use when none is given


def store_url(url: str | None = None) -> str:
    """``url``, else $LAYERFORGE_DB, else the default SQLite file under runs/."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def split_userinfo(url: str) -> tuple[str, str, str] | None:
    """``(scheme://, userinfo, host and the rest)``, or None without a userinfo.

    The userinfo ends at the last "@", so a password holding an unencoded "@", "/" or ":" stays whole (SQLAlchemy's
    parser would cut it at its first "@" and read the rest as host and database).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme: not a URL the store opens, but a password in it is still hidden
        scheme, rest = "", url
    userinfo, at, location = rest.rpartition("@")
    return (scheme + sep, userinfo, location) if at else None


def _with_password(url: str, shown: str | None) -> str:
    """``url`` with its password (userinfo or ``password=`` parameter) replaced by ``shown``, or dropped if None."""
    parts = split_userinfo(url)
    if parts is not None and ":" in parts[1]:
        head, userinfo, location = parts
        user = userinfo.split(":", 1)[0]
        url = f"{head}{user}@{location}" if shown is None else f"{head}{user}:{shown}@{location}"
    base, _, query = url.partition("?")
    parameters = []
    for parameter in filter(None, query.split("&")):
        if parameter.lower().startswith("password="):
            if shown is None:
                continue
            parameter = f"password={shown}"
        parameters.append(parameter)
    return base + ("?" + "&".join(parameters) if parameters else "")


def redact_url(url: str) -> str:
    """``url`` as every message and page shows it: a password (in the userinfo or a ``password=`` parameter) is ***."""
    return _with_password(url, "***")


def without_password(url: str) -> str:
    """``url`` with no password at all, as the store keeps it: a driver gets its URL from --db, $LAYERFORGE_DB or
    the config file, and PostgreSQL (libpq) reads a missing password from PGPASSWORD or ~/.pgpass."""
    return _with_password(url, None)

