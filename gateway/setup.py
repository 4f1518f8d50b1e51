"""Starting up: errors that end the start in one line, and the lock that lets one process at a time run
migrations and first-start setup when several start together."""

from __future__ import annotations

import contextlib
import fcntl
import secrets
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gateway.config import Settings
from gateway.domain.models import Setting, db

SETUP_LOCK_ID = 0x52454C4159  # pg_advisory_lock key: "RELAY"


class StartupError(Exception):
    """A reason not to start that the operator can fix; printed as one line, without a traceback."""


@contextlib.contextmanager
def setup_lock(database_url: str) -> Iterator[None]:
    """Hold a lock for the whole database: a PostgreSQL advisory lock, or a lock file beside SQLite's."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": SETUP_LOCK_ID})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": SETUP_LOCK_ID})
                    conn.commit()
        finally:
            engine.dispose()
        return
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        lock_path = Path(url.database + ".setup-lock")
        try:
            handle = lock_path.open("a")
        except OSError as exc:
            raise StartupError(
                f"cannot open the SQLite database at {url.database}: {exc.strerror}."
            ) from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    yield


def database_error(settings: Settings, err: Exception) -> str:
    """One line for a database that cannot be reached or opened, with the password hidden."""
    try:
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
    except Exception:
        shown = "DATABASE_URL"
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()
    first = reason[0] if reason else type(err).__name__
    return (
        f"the database {shown} cannot be used ({first}). Check DATABASE_URL, that the server runs and "
        "accepts connections, and that the database exists."
    )


def deployment_id() -> str:
    """This database's random id, made at its first start (call it under `setup_lock`, in an app context)."""
    row = db.session.get(Setting, "deployment_id")
    if row is None:
        row = Setting(key="deployment_id", value=secrets.token_hex(8))
        db.session.add(row)
        db.session.commit()
    return str(row.value)
