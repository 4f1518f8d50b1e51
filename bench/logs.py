"""Reading large log tables: fills a database with `--rows` usage log rows (1,000,000 by default) in bulk,
starts the gateway on it, and times `GET /api/logs` (first page; by user; by model) and the console's
`GET /usage` (an admin's view of everyone, of one user, and a user's own), printing the median and p95 of
each in milliseconds against the 200 ms goal. The log is filled under migration 0005 and the gateway then
migrates to 0006, which rolls the whole log up once (gateway/domain/usage.py); that is timed on its own.

    .venv/bin/python bench/logs.py                                         # SQLite in a temporary folder
    .venv/bin/python bench/logs.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/h5

A PostgreSQL database is emptied first (its tables are dropped). `--keep` keeps the temporary folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_PASSWORD = "bench-root-password"
ADMIN_TOKEN = "bench-admin-token"
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-sonnet-4", "claude-haiku", "gemini-flash", "deepseek-chat", "o3")
GOAL_MS = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(database_url: str, instance_dir: str, users: int) -> list[tuple[int, list[int]]]:
    """Migrate, create root, `users` users with two keys each, through the domain layer."""
    if database_url.startswith("postgresql"):
        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    from flask_migrate import downgrade

    from app import MIGRATIONS, create_app
    from gateway.domain import accounts, keys
    from gateway.domain.models import db

    app = create_app(
        {"instance_dir": instance_dir, "database_url": database_url, "admin_password": ADMIN_PASSWORD}
    )
    made = []
    with app.app_context():
        for n in range(users):
            user = accounts.create_user(f"user{n}", f"user{n}-password")
            key_ids = [keys.create_key(user.id, {"name": f"user{n}-key{k}"})[0].id for k in range(2)]
            made.append((user.id, key_ids))
    app.extensions["relayhouse"].stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()  # no connection of ours may hold a lock the downgrade waits for
        # the log is filled under 0005, so that the upgrade to 0006 rolls it up as it would a real one
        downgrade(directory=MIGRATIONS, revision="0005")
    return made


def upgrade_to_head(database_url: str, instance_dir: str) -> float:
    """Start the app once, which migrates: the seconds it took, rolling up the whole log included."""
    from app import create_app

    started = time.monotonic()
    app = create_app({"instance_dir": instance_dir, "database_url": database_url})
    app.extensions["relayhouse"].stop()
    return time.monotonic() - started


def fill(database_url: str, rows: int, owners: list[tuple[int, list[int]]], days: int) -> float:
    """`rows` log rows spread over the last `days` days, in batches; returns the seconds it took."""
    from gateway.domain.models import UsageLog

    started = time.monotonic()
    engine = create_engine(database_url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    span_s = days * 86400
    rng = random.Random(7)
    batch = 50_000
    with engine.begin() as conn:
        for first in range(0, rows, batch):
            values: list[dict[str, Any]] = []
            for i in range(first, min(rows, first + batch)):
                user_id, key_ids = owners[rng.randrange(len(owners))]
                failed = rng.random() < 0.04
                prompt, completion = rng.randrange(10, 4000), rng.randrange(0, 1500)
                values.append(
                    {
                        "request_id": f"bench-{i:08d}",
                        # ids grow with time, as the writer appends them
                        "created_at": now - dt.timedelta(seconds=span_s * (rows - i) / rows),
                        "user_id": user_id,
                        "key_id": key_ids[rng.randrange(2)],
                        "channel_id": 1,
                        "endpoint": "/v1/chat/completions",
                        "model": rng.choice(MODELS),
                        "upstream_model": "",
                        "stream": bool(i % 2),
                        "prompt_tokens": 0 if failed else prompt,
                        "completion_tokens": 0 if failed else completion,
                        "cached_tokens": 0,
                        "cache_write_tokens": 0,
                        "reasoning_tokens": 0,
                        "protocol": "openai",
                        "channel_type": "openai",
                        "cost_micro_usd": 0 if failed else prompt * 3 + completion * 12,
                        "usage_source": "upstream",
                        "latency_ms": rng.randrange(200, 9000),
                        "status": rng.choice((429, 500, 502)) if failed else 200,
                        "error": "upstream failed" if failed else "",
                        "attempts": 1,
                    }
                )
            conn.execute(insert(UsageLog), values)
            print(f"  {first + len(values):>9,} rows", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if database_url.startswith("postgresql") else "ANALYZE"))
    engine.dispose()
    return time.monotonic() - started


def start_gateway(database_url: str, instance_dir: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "INSTANCE_DIR": instance_dir,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "RELAYHOUSE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "RELAYHOUSE_ADMIN_TOKEN": ADMIN_TOKEN,
        "ACCESS_LOG": "off",
    }
    log = open(Path(instance_dir) / "gateway.log", "wb")  # noqa: SIM115  (kept open for the process)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/status", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the gateway did not start; see {log.name}")


def console_session(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login").text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    signed = session.post(
        f"{base}/login",
        data={"username": username, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    assert signed.status_code == 302, signed.status_code
    return session


def timed(session: requests.Session, url: str, repeat: int, **kwargs: Any) -> tuple[float, float, int]:
    for _ in range(2):  # warm the caches, as a page seen twice would
        session.get(url, **kwargs)
    times = []
    status = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = session.get(url, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--days", type=int, default=30, help="the rows are spread over this many days")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="relayhouse-bench-logs-")
    database_url = args.database_url or f"sqlite:///{tmp}/bench.db"
    proc = None
    try:
        print(f"preparing {database_url.split('@')[-1]}", file=sys.stderr)
        owners = prepare(database_url, tmp, args.users)
        fill_s = fill(database_url, args.rows, owners, args.days)
        print(f"filled {args.rows:,} rows in {fill_s:.1f} s", file=sys.stderr)
        upgrade_s = upgrade_to_head(database_url, tmp)
        port = free_port()
        proc = start_gateway(database_url, tmp, port)
        base = f"http://127.0.0.1:{port}"
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        admin = console_session(base, "root", ADMIN_PASSWORD)
        user = console_session(base, "user3", "user3-password")
        uid = owners[3][0]
        cases = [
            ("GET /api/logs (first page, all rows)", api, "/api/logs"),
            ("GET /api/logs?user_id=", api, f"/api/logs?user_id={uid}"),
            ("GET /api/logs?model=", api, "/api/logs?model=claude-haiku"),
            ("GET /api/logs?user_id=&model=", api, f"/api/logs?user_id={uid}&model=claude-haiku"),
            ("GET /usage (admin: everyone, 7 days)", admin, "/usage"),
            ("GET /usage?user= (admin: one user)", admin, f"/usage?user={uid}"),
            ("GET /usage?model= (admin, by key)", admin, "/usage?model=gpt-4o&by=key"),
            ("GET /usage (a user's own)", user, "/usage"),
            ("GET /usage?page=50 (a user's own)", user, "/usage?page=50"),
        ]
        kind = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
        print(f"\n{kind}, {args.rows:,} log rows over {args.days} days, {args.users} users")
        print(f"migrating to 0006, which rolls up every row once: {upgrade_s:.1f} s")
        print(f"{'request':<40} {'p50 ms':>8} {'p95 ms':>8}  status")
        for label, session, path in cases:
            p50, p95, status = timed(session, base + path, args.repeat)
            flag = "" if p95 < GOAL_MS else f"  over {GOAL_MS} ms"
            print(f"{label:<40} {p50:>8.1f} {p95:>8.1f}  {status}{flag}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
