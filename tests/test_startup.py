"""Starting up: a reason not to start is one line that says what to do, never a traceback; `postgres://`
URLs as hosting providers hand them out work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, http, scratch_database, start_gateway, stop_gateway


def start_fails(tmp: Path, **env: str) -> str:
    """Run `python app.py` with `env`; assert it ends with status 3 and one line on stderr; return it."""
    full = {
        **{k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "INSTANCE_DIR": str(tmp / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp / 'relayhouse.db'}",
        **env,
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "app.py")], env=full, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stdout
    assert lines[0].startswith("Relayhouse cannot start: ")
    return lines[0]


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = start_fails(tmp_path, PORT=str(taken.getsockname()[1]))
    assert "already in use" in line and "PORT" in line


def test_a_database_server_that_does_not_answer(tmp_path: Path) -> None:
    line = start_fails(tmp_path, DATABASE_URL="postgresql://postgres:secret-pw@127.0.0.1:1/test")
    assert "127.0.0.1:1" in line and "DATABASE_URL" in line
    assert "secret-pw" not in line  # the password is never printed


def test_a_sqlite_file_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    line = start_fails(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    assert "missing" in line


def test_several_workers_need_redis(tmp_path: Path) -> None:
    assert "REDIS_URL" in start_fails(tmp_path, WORKERS="2")


@pytest.fixture
def postgres_url(tmp_path: Path) -> str:
    return scratch_database("postgresql", tmp_path, "relayhouse_startup")


def test_a_database_that_does_not_exist(tmp_path: Path, postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/relayhouse_no_such_database"
    line = start_fails(tmp_path, DATABASE_URL=missing)
    assert "does not exist" in line


def test_postgres_urls_as_providers_write_them(tmp_path: Path, postgres_url: str) -> None:
    plain = "postgres://" + postgres_url.split("://", 1)[1]
    gw = start_gateway(tmp_path, plain)
    try:
        assert http("GET", gw.url + "/api/status").body["database"] == "ok"
    finally:
        stop_gateway(gw)
