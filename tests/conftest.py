"""Fixtures: the real gateway (`python app.py`, gevent) on a free port, on SQLite and on PostgreSQL, a fake
OpenAI upstream on loopback, and small helpers to set up channels, users, keys and money over the
management API.

PostgreSQL runs at 127.0.0.1:5432 (database `test`; `TEST_DATABASE_URL` overrides). Without it the
PostgreSQL half skips, except with `CI=true`, where a missing server fails the run.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
CONSOLE_PASSWORD = "root-password-for-the-console"  # root's, in the `app` fixture


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The app in this process, for Flask's test client (the console's pages and the management API), on a
    SQLite file of the test's own; root's password is CONSOLE_PASSWORD."""
    from app import create_app

    app = create_app(
        {
            "instance_dir": str(tmp_path),
            "database_url": f"sqlite:///{tmp_path / 'console.db'}",
            "admin_password": CONSOLE_PASSWORD,
        }
    )
    yield app
    app.extensions["relayhouse"].stop()


def csrf(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token of the page at `path`, as its forms send it."""
    page = client.get(path).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)


def sign_in(client: FlaskClient, username: str = "root", password: str = CONSOLE_PASSWORD) -> TestResponse:
    """Post the console's sign-in form; the answer (302 when it took)."""
    token = csrf(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def oversized_chat(model: str) -> bytes:
    """A chat request body larger than the default MAX_BODY_MB (32)."""
    return (
        b'{"model":"'
        + model.encode()
        + b'","messages":[{"role":"user","content":"'
        + b"a" * (33 << 20)
        + b'"}]}'
    )


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> Reply:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, got, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        status, got, payload = err.code, dict(err.headers), err.read()
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = None
    return Reply(status, {k.lower(): v for k, v in got.items()}, parsed, payload)


@dataclass
class Gateway:
    """A running gateway process and an admin's view of it."""

    url: str
    admin_token: str
    database_url: str
    process: subprocess.Popen
    log_path: Path
    instance_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        auth = {"Authorization": f"Bearer {token or self.admin_token}"}
        return http(method, self.url + "/api" + path, body, {**auth, **(headers or {})})

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        reply = self.api(method, path, body, token)
        assert reply.status in (200, 201), (reply.status, reply.body)
        return reply.body

    def db(self) -> Any:
        return create_engine(self.database_url)

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = self.db()
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        finally:
            engine.dispose()

    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- setting things up ------------------------------------------------------------------------
    def channel(self, upstream: FakeUpstream, models: list[str], **fields: Any) -> dict:
        body = {
            "name": fields.pop("name", "ch-" + secrets.token_hex(3)),
            "type": "openai",
            "base_url": upstream.base_url,
            "keys": fields.pop("keys", ["sk-upstream-" + secrets.token_hex(8)]),
            "models": models,
            **fields,
        }
        return self.ok("POST", "/channels", body)

    def price(self, model: str, **fields: Any) -> dict:
        fields = fields or {"input_per_mtok_usd": 1, "output_per_mtok_usd": 2}
        return self.ok("PUT", f"/prices/{model}", fields)

    def user(self, balance_usd: float = 10, **fields: Any) -> dict:
        name = fields.pop("username", "u-" + secrets.token_hex(4))
        user = self.ok(
            "POST", "/users", {"username": name, "password": "pw-" + secrets.token_hex(8), **fields}
        )
        if balance_usd:
            self.ok("POST", f"/users/{user['id']}/wallet", {"amount_usd": balance_usd, "reason": "test"})
        return user

    def key(self, user: dict, **fields: Any) -> dict:
        return self.ok("POST", "/keys", {"name": "k", "user_id": user["id"], **fields})

    def client(self, key: dict | str, **kw: Any) -> openai.OpenAI:
        secret = key if isinstance(key, str) else key["key"]
        return openai.OpenAI(base_url=self.v1, api_key=secret, max_retries=0, timeout=30, **kw)

    def setup_model(
        self, upstream: FakeUpstream, balance_usd: float = 10, **price: Any
    ) -> tuple[str, dict, dict]:
        """A fresh model served by one channel with a price, and a funded user with a key."""
        model = "m-" + secrets.token_hex(4)
        self.channel(upstream, [model])
        self.price(model, **price)
        user = self.user(balance_usd)
        return model, user, self.key(user)

    def wait_for_log(self, request_id: str, timeout: float = 5.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            rows = self.ok("GET", "/logs?per_page=500")["data"]
            for row in rows:
                if row["request_id"] == request_id:
                    return row
            time.sleep(0.05)
        raise AssertionError(f"no log row for {request_id}")

    def logs_of(self, user: dict, expect: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.time() + timeout
        rows: list[dict] = []
        while time.time() < deadline:
            rows = self.ok("GET", f"/logs?user_id={user['id']}&per_page=500")["data"]
            if len(rows) >= expect:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"expected {expect} log rows for user {user['id']}, found {len(rows)}")

    def balance(self, user: dict) -> int:
        return self.ok("GET", f"/users/{user['id']}/wallet")["balance_micro_usd"]


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def _postgres_available(url: str) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


def start_gateway(tmp: Path, database_url: str, **env: str) -> Gateway:
    port = free_port()
    token = "admin-" + secrets.token_hex(12)
    instance = tmp / "instance"
    instance.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "INSTANCE_DIR": str(instance),
        "DATABASE_URL": database_url,
        "RELAYHOUSE_ADMIN_TOKEN": token,
        "RELAYHOUSE_ADMIN_PASSWORD": "root-password-" + secrets.token_hex(4),
        "FLUSH_INTERVAL": "0.2",
        "PROBE_INTERVAL": "1",
        "LOG_LEVEL": "INFO",
        **env,
    }
    log_path = tmp / f"gateway-{port}.log"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=ROOT,
        env=full_env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gateway exited:\n" + log_path.read_text())
        try:
            if http("GET", url + "/api/status").status == 200:
                return Gateway(url, token, database_url, process, log_path, instance, full_env)
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("gateway did not start:\n" + log_path.read_text())


def stop_gateway(gateway: Gateway) -> None:
    if gateway.process.poll() is None:
        gateway.process.send_signal(signal.SIGTERM)
        try:
            gateway.process.wait(15)
        except subprocess.TimeoutExpired:
            gateway.process.kill()
            gateway.process.wait()


def database_url_for(backend: str, tmp: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'relayhouse.db'}"
    if not _postgres_available(PG_URL):
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (CI=true: a missing service is a failure)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    _reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp(f"gw-{request.param}")
    gw = start_gateway(tmp, database_url_for(request.param, tmp))
    yield gw
    stop_gateway(gw)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("primary").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def upstream2() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("secondary").start()
    yield fake
    fake.stop()


@pytest.fixture
def fresh_upstream() -> Iterator[FakeUpstream]:
    """An upstream of the test's own, for tests that change its behaviour."""
    fake = FakeUpstream("own").start()
    yield fake
    fake.stop()


def scratch_database(backend: str, tmp: Path, name: str) -> str:
    """A database of the test's own, emptied: SQLite in `tmp`, or PostgreSQL database `name` (created on the
    server of `PG_URL` when missing), so a test that starts its own gateways never touches the shared one."""
    if backend == "sqlite":
        return f"sqlite:///{tmp / (name + '.db')}"
    if not _postgres_available(PG_URL):
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (CI=true: a missing service is a failure)")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    url = make_url(PG_URL)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    own = url.set(database=name).render_as_string(hide_password=False)
    _reset_postgres(own)
    return own
