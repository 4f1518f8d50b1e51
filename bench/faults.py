#!/usr/bin/env python3
"""Proof that money and logs survive faults and crashes: a bounded fault run, then an audit of the database.

    .venv/bin/python bench/faults.py                       # SQLite, one process, about 1.5 min
    .venv/bin/python bench/faults.py --quick               # about 30 s
    .venv/bin/python bench/faults.py --db postgresql --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/x
    .venv/bin/python bench/faults.py --procs 2 --redis redis://127.0.0.1:6379/15

1. Starts `bench/faultsupstream.py` (500s, 429s with Retry-After, streams cut mid-way, answers without
   usage, slow answers, drawn per request), then the gateway (`app.py`), one or two processes on the
   same database and instance folder. Over the management API: three channels with two keys each (so
   failover happens), a price, users with funded wallets (some funded for only a few requests, so they
   get 402) and a key each.
2. Phase 1: a bounded mixed load over raw HTTP from a thread pool: plain answers and streams, some
   clients hanging up mid-stream.
3. Phase 2: the same load keeps running while a gateway process is killed with SIGKILL and restarted on
   the same port, instance folder and database, `--kills` times (three by default).
4. SIGTERM to the gateways (they flush), then the audit, read straight from the database: the sum of
   log costs, the sum of `charge` entries and the fall of the wallets must agree to the micro-USD;
   every answered request (2xx with a whole body, or a stream that reached `[DONE]`) must have its log
   row under its `X-Request-Id`; no log row without its charge nor charge without its log row; no wallet
   below zero. The last line is the verdict: PASS, or FAIL with the reasons (exit status 1).

Only 127.0.0.1 is contacted. Progress goes to stderr, the figures to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
PRICE = {"input_per_mtok_usd": 100, "output_per_mtok_usd": 300}  # about 0.005 USD a request
RICH_USD = [50.0] * 5
POOR_USD = [0.03, 0.05, 0.08]  # a handful of requests each (max_tokens 64 reserves about 0.02 USD)
POOR_SHARE = 0.15  # of the requests, sent with the poor users' keys
WORDS = "the a of and to in is it you that he was for on are with as his they be at one have this".split()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768 and up): a gateway port stays free while its process
    restarts, and no outgoing connection on this machine (other runs, other tests) can be handed it then."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 32000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port between 20000 and 32000")


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def admin_call(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        url + "/api" + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        raise SystemExit(f"setup failed: {method} {path} answered {err.code}: {err.read()[:300]!r}") from None


# ------------------------------------------------------------------------------------------- processes


class Gateways:
    """The gateway processes: each keeps its port across restarts; `live` are the ports to send to."""

    def __init__(self, tmp: Path, database_url: str, procs: int, extra_env: dict[str, str]) -> None:
        self.tmp = tmp
        self.token = "admin-" + secrets.token_hex(12)
        self.ports = [free_port() for _ in range(procs)]
        self.processes: list[subprocess.Popen | None] = [None] * procs
        self.live: list[int] = []
        self.lock = threading.Lock()
        self.starts = 0
        self.kills = 0
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "INSTANCE_DIR": str(tmp / "instance"),
            "DATABASE_URL": database_url,
            "RELAYHOUSE_ADMIN_TOKEN": self.token,
            "RELAYHOUSE_ADMIN_PASSWORD": "root-" + secrets.token_hex(8),
            "PROBE_INTERVAL": "2",
            "ACCESS_LOG": "off",
            "LOG_LEVEL": "WARNING",
            **extra_env,
        }

    def url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def start(self, index: int) -> None:
        """Start process `index` and wait until it answers; then it takes load."""
        self.starts += 1
        log_path = self.tmp / f"gateway-{index}-{self.starts}.log"
        process = subprocess.Popen(
            [python(), str(ROOT / "app.py")],
            cwd=ROOT,
            env={**self.env, "PORT": str(self.ports[index])},
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches anything it spawns
        )
        self.processes[index] = process
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"gateway {index} exited at start:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(self.url(index) + "/api/status", timeout=2) as reply:
                    if reply.status == 200:
                        with self.lock:
                            self.live.append(self.ports[index])
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"gateway {index} did not start within 90 s (log: {log_path})")

    def kill(self, index: int) -> None:
        """SIGKILL: no flush, no clean-up, as a crash or the OOM killer would."""
        with self.lock:
            self.live.remove(self.ports[index])
        process = self.processes[index]
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        self.kills += 1

    def is_live(self, port: int) -> bool:
        with self.lock:
            return port in self.live

    def pick(self, rng: random.Random) -> int | None:
        with self.lock:
            return rng.choice(self.live) if self.live else None

    def stop(self) -> None:
        """SIGTERM, which makes each process flush what it still holds; SIGKILL after 30 s."""
        with self.lock:
            self.live.clear()
        running = [p for p in self.processes if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                log(f"gateway pid {process.pid} ignored SIGTERM for 30 s; killed")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def start_upstream(tmp: Path, seed: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [python(), str(ROOT / "bench" / "faultsupstream.py"), "--port", str(port), "--seed", str(seed)],
        stdout=(tmp / "upstream.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_faults/stats", timeout=1):
                return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the fault upstream did not start")


def upstream_stats(port: int) -> dict[str, int]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_faults/stats", timeout=5) as reply:
            return json.loads(reply.read())
    except OSError:
        return {}


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------ setup


@dataclass(slots=True)
class Account:
    user_id: int
    key: str
    funded_micro_usd: int
    poor: bool


def set_up(gws: Gateways, upstream_port: int) -> list[Account]:
    """Channels, price, users and keys, through process 0 (the others read them when they start)."""
    url, token = gws.url(0), gws.token
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    # (name, priority, weight, timeout_s, its keys): the upstream answers 429 to the `ratelimited` keys
    channels = [
        ("faults-a", 10, 2, None, ["ratelimited", "plain"]),
        ("faults-b", 10, 1, 1.0, ["plain", "plain"]),
        ("faults-c", 0, 1, None, ["ratelimited", "plain"]),
    ]
    for name, priority, weight, timeout_s, keys in channels:
        body: dict[str, Any] = {
            "name": name,
            "type": "openai",
            "base_url": base_url,
            "keys": [f"sk-{name}-{kind}-{secrets.token_hex(6)}" for kind in keys],
            "models": [MODEL],
            "priority": priority,
            "weight": weight,
        }
        if timeout_s is not None:  # the slowest answers time out here and fail over
            body["timeout_s"] = timeout_s
        admin_call(url, token, "POST", "/channels", body)
    admin_call(url, token, "PUT", f"/prices/{MODEL}", PRICE)
    accounts = []
    for funded_usd, poor in [(usd, False) for usd in RICH_USD] + [(usd, True) for usd in POOR_USD]:
        name = ("poor-" if poor else "rich-") + secrets.token_hex(3)
        user = admin_call(url, token, "POST", "/users", {"username": name, "password": secrets.token_hex(12)})
        wallet = admin_call(
            url, token, "POST", f"/users/{user['id']}/wallet", {"amount_usd": funded_usd, "reason": "faults"}
        )
        key = admin_call(url, token, "POST", "/keys", {"name": "faults", "user_id": user["id"]})
        accounts.append(Account(user["id"], key["key"], wallet["balance_micro_usd"], poor))
    return accounts


# ------------------------------------------------------------------------------------------------- load


@dataclass(slots=True)
class Outcome:
    phase: str
    kind: str  # plain, stream, hangup (a client that leaves mid-stream)
    status: int  # 0: no HTTP answer (connection refused or reset, process killed)
    request_id: str
    answered: bool  # 2xx with its whole body, or a stream that reached [DONE] without an error frame
    note: str = ""


def chat_body(rng: random.Random, account: Account, stream: bool) -> dict[str, Any]:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15)))
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": words}]}
    if account.poor or rng.random() < 0.5:
        body["max_tokens"] = 64
    if stream:
        body["stream"] = True
        if rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
    return body


def exchange(
    port: int, key: str, body: dict[str, Any], hang_up_after: int | None
) -> tuple[int, str, bool, str]:
    """One request on its own connection: (status, X-Request-Id, answered, note)."""
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, request_id = 0, ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock, sock.makefile("rb") as reader:
            sock.sendall(head + payload)
            status_line = reader.readline()
            if not status_line:
                return 0, "", False, "closed before answering"
            status = int(status_line.split()[1])
            headers = {}
            while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            request_id = headers.get("x-request-id", "")
            if headers.get("transfer-encoding", "").lower() == "chunked":
                return _read_chunked(reader, status, request_id, hang_up_after)
            length = int(headers.get("content-length", "0"))
            data = reader.read(length)
            if len(data) < length:
                return status, request_id, False, "body cut short"
            if not 200 <= status < 300:
                return status, request_id, False, ""
            try:
                whole = "choices" in json.loads(data)
            except ValueError:
                whole = False
            return status, request_id, whole, "" if whole else "body not a chat completion"
    except (OSError, ValueError) as err:
        return status, request_id, False, type(err).__name__


def _read_chunked(
    reader: Any, status: int, request_id: str, hang_up_after: int | None
) -> tuple[int, str, bool, str]:
    data = b""
    while True:
        size_line = reader.readline()
        if not size_line:
            return status, request_id, False, "stream cut short"
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            reader.readline()
            break
        chunk = reader.read(size + 2)
        if len(chunk) < size + 2:
            return status, request_id, False, "stream cut short"
        data += chunk[:size]
        if hang_up_after is not None and data.count(b"data: ") >= hang_up_after:
            return status, request_id, False, "client hung up"  # the caller's `with` closes the socket
    if not 200 <= status < 300:
        return status, request_id, False, ""
    if b'data: {"error"' in data:
        return status, request_id, False, "error frame"
    if b"data: [DONE]" not in data:
        return status, request_id, False, "no [DONE]"
    return status, request_id, True, ""


class Load:
    """`conc` client threads sending requests, each picked at random, to the live gateway ports."""

    def __init__(self, gws: Gateways, accounts: list[Account], seed: int) -> None:
        self.gws = gws
        self.rich = [a for a in accounts if not a.poor]
        self.poor = [a for a in accounts if a.poor]
        self.seed = seed
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self, phase: str, count: int, conc: int, seconds: float) -> list[Outcome]:
        """Send up to `count` requests within `seconds` (or until `stop`); return this phase's outcomes."""
        self.stop.clear()
        tickets = iter(range(count))
        deadline = time.monotonic() + seconds
        first = len(self.outcomes)

        def worker(index: int) -> None:
            rng = random.Random(f"{self.seed}-{phase}-{index}")
            while not self.stop.is_set() and time.monotonic() < deadline:
                port = self.gws.pick(rng)
                if port is None:  # every process is down (one process, being restarted)
                    time.sleep(0.05)
                    continue
                with self.lock:
                    if next(tickets, None) is None:
                        return
                self._one(rng, phase, port)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conc)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self.outcomes[first:]

    def _one(self, rng: random.Random, phase: str, port: int) -> None:
        account = rng.choice(self.poor if rng.random() < POOR_SHARE else self.rich)
        roll = rng.random()
        kind = "plain" if roll < 0.45 else "stream" if roll < 0.85 else "hangup"
        body = chat_body(rng, account, stream=kind != "plain")
        hang_up_after = rng.randint(1, 3) if kind == "hangup" else None
        status, request_id, answered, note = exchange(port, account.key, body, hang_up_after)
        if status == 0 and note == "ConnectionRefusedError" and self.gws.is_live(port):
            note += " on a live port"  # the process is up but does not listen: worth a look
        with self.lock:
            self.outcomes.append(Outcome(phase, kind, status, request_id, answered, note))
        if status == 0:
            time.sleep(0.05)  # do not spin on a port that went away


def crash_cycles(
    gws: Gateways, load: Load, kills: int, gap_s: tuple[float, float], tail_s: float, seed: int
) -> None:
    """While the load runs: wait, SIGKILL one process, restart it on its port; then let the load run on."""
    rng = random.Random(f"{seed}-kills")
    try:
        for cycle in range(kills):
            if load.stop.wait(rng.uniform(*gap_s)):
                return
            victim = cycle % len(gws.ports)
            log(f"  kill -9 of gateway {victim} (cycle {cycle + 1}/{kills}), restart")
            gws.kill(victim)
            started = time.monotonic()
            gws.start(victim)
            log(f"  gateway {victim} back in {time.monotonic() - started:.1f} s")
        load.stop.wait(tail_s)
    finally:
        load.stop.set()


# ------------------------------------------------------------------------------------------------ audit


@dataclass
class Audit:
    sent: int
    answered: int
    log_rows: int
    log_cost: int
    charges: int
    funded: int
    balances: dict[int, int]
    lost: list[str]
    logs_without_charge: list[str]
    charges_without_log: list[str | None]
    orphans_other: int
    log_statuses: Counter = field(default_factory=Counter)

    @property
    def wallet_change(self) -> int:
        return sum(self.balances.values()) - self.funded

    @property
    def below_zero(self) -> dict[int, int]:
        return {uid: bal for uid, bal in self.balances.items() if bal < 0}

    def failures(self) -> list[str]:
        reasons = []
        if not self.answered:  # a run where everything failed would otherwise "pass" on empty sums
            reasons.append("no request was answered, so the run proves nothing")
        if not self.log_cost == self.charges == -self.wallet_change:
            reasons.append(
                f"costs {self.log_cost}, charges {self.charges}, wallet fall {-self.wallet_change} differ"
            )
        if self.lost:
            reasons.append(f"{len(self.lost)} answered requests have no log row")
        if self.logs_without_charge or self.charges_without_log:
            reasons.append(
                f"{len(self.logs_without_charge)} log rows without their charge, "
                f"{len(self.charges_without_log)} charges without their log row"
            )
        if self.below_zero:
            reasons.append(f"{len(self.below_zero)} wallets below zero")
        return reasons


def audit(database_url: str, accounts: list[Account], outcomes: list[Outcome]) -> Audit:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            logs = {rid: (cost, status) for rid, cost, status in conn.execute(
                text("SELECT request_id, cost_micro_usd, status FROM usage_logs")
            )}  # fmt: skip
            charges = [tuple(r) for r in conn.execute(
                text("SELECT request_id, -amount_micro_usd FROM ledger WHERE kind = 'charge'")
            )]  # fmt: skip
            ids = [a.user_id for a in accounts]
            balances = {
                uid: bal
                for uid, bal in conn.execute(text("SELECT id, balance_micro_usd FROM users"))
                if uid in ids
            }
    finally:
        engine.dispose()
    charged = {rid for rid, _ in charges}
    answered_ids = [o.request_id for o in outcomes if o.answered]
    # answers that a log row must follow although they were not "answered": refusals, hang-ups, cut streams
    other = [o.request_id for o in outcomes if not o.answered and o.request_id and o.status not in (401, 413)]
    return Audit(
        sent=len(outcomes),
        answered=len(answered_ids),
        log_rows=len(logs),
        log_cost=sum(cost for cost, _ in logs.values()),
        charges=sum(amount for _, amount in charges),
        funded=sum(a.funded_micro_usd for a in accounts),
        balances=balances,
        lost=[rid for rid in answered_ids if rid not in logs],
        logs_without_charge=[rid for rid, (cost, _) in logs.items() if cost > 0 and rid not in charged],
        charges_without_log=[rid for rid, _ in charges if rid not in logs],
        orphans_other=sum(1 for rid in other if rid not in logs),
        log_statuses=Counter(status for _, status in logs.values()),
    )


def report(
    result: Audit, outcomes: list[Outcome], phases: dict[str, float], upstream: dict[str, int]
) -> None:
    def usd(micro: int) -> str:
        return f"{micro:,} micro-USD ({micro / 1e6:.6f} USD)"

    print("\nRelayhouse fault run")
    for phase, seconds in phases.items():
        mine = [o for o in outcomes if o.phase == phase]
        answered = sum(o.answered for o in mine)
        print(f"  {phase:<26} {len(mine):>6} sent, {answered:>6} answered in {seconds:.1f} s")
    statuses = Counter(o.status for o in outcomes)
    print(
        "  client statuses            "
        + ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(statuses.items()))
    )
    notes = Counter(o.note for o in outcomes if o.note)
    print("  client notes               " + (", ".join(f"{k}: {n}" for k, n in notes.most_common()) or "-"))
    print("  upstream fates             " + ", ".join(f"{k}: {n}" for k, n in sorted(upstream.items())))
    print(
        "  log statuses               "
        + ", ".join(f"{s}: {n}" for s, n in sorted(result.log_statuses.items()))
    )
    print()
    print(f"  requests sent              {result.sent:>8}")
    print(f"  requests answered          {result.answered:>8}")
    print(f"  log rows                   {result.log_rows:>8}")
    print(f"  sum of log costs           {usd(result.log_cost)}")
    print(f"  sum of charges (ledger)    {usd(result.charges)}")
    print(f"  wallet change              {usd(result.wallet_change)}")
    print(f"  answered but lost          {len(result.lost):>8}" + _sample(result.lost))
    print(
        f"  log rows without charge    {len(result.logs_without_charge):>8}"
        + _sample(result.logs_without_charge)
    )
    print(
        f"  charges without log row    {len(result.charges_without_log):>8}"
        + _sample(result.charges_without_log)
    )
    print(f"  wallets below zero         {len(result.below_zero):>8}" + _sample(
        [f"user {uid}: {bal}" for uid, bal in result.below_zero.items()]
    ))  # fmt: skip
    print(f"  (not answered, no log row) {result.orphans_other:>8}   refusals, hang-ups, cuts and kills")


def _sample(items: list) -> str:
    return f"   e.g. {', '.join(map(str, items[:3]))}" if items else ""


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="its public schema is dropped and created again")  # fmt: skip
    parser.add_argument("--procs", type=int, choices=(1, 2), default=1)
    parser.add_argument("--redis", metavar="URL", nargs="?", const="redis://127.0.0.1:6379/15", default="",
                        help="REDIS_URL for the gateways (that database is flushed first)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a short run, about 30 s")
    parser.add_argument("--requests", type=int, help="phase 1 requests (1500; --quick 300)")
    parser.add_argument("--conc", type=int, default=32)
    parser.add_argument("--kills", type=int, default=3, help="kill -9 cycles in phase 2")
    parser.add_argument("--flush-interval", default="1", help="FLUSH_INTERVAL of the gateways")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-tmp", action="store_true", help="keep the gateways' logs and SQLite database")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phase1 = args.requests or (300 if args.quick else 1500)
    # phase 2 lasts as long as its kill cycles; the count and the time are only its outer bounds
    phase2_cap, phase2_s = 10 * phase1, 60 if args.quick else 150
    gap_s = (0.8, 1.5) if args.quick else (3.0, 6.0)
    tmp = Path(tempfile.mkdtemp(prefix="relayhouse-faults-"))
    database_url = f"sqlite:///{tmp / 'relayhouse.db'}" if args.db == "sqlite" else args.pg_url
    if args.db == "postgresql":
        reset_postgres(database_url)
    extra_env = {"FLUSH_INTERVAL": args.flush_interval}
    if args.redis:
        flush_redis(args.redis)
        extra_env["REDIS_URL"] = args.redis
    mode = (
        f"db={args.db} procs={args.procs} redis={args.redis or 'no'} "
        f"kills={args.kills} flush={args.flush_interval}"
    )
    log(f"fault run: {mode}; work folder {tmp}")
    upstream, upstream_port = start_upstream(tmp, args.seed)
    gws = Gateways(tmp, database_url, args.procs, extra_env)
    phases: dict[str, float] = {}
    try:
        gws.start(0)
        accounts = set_up(gws, upstream_port)
        for index in range(1, args.procs):
            gws.start(index)
        load = Load(gws, accounts, args.seed)
        log(f"phase 1: {phase1} requests, concurrency {args.conc}")
        started = time.monotonic()
        load.run("phase 1: mixed load", phase1, args.conc, seconds=120)
        phases["phase 1: mixed load"] = time.monotonic() - started
        log(f"phase 2: {args.kills} kill -9 cycles under load")
        started = time.monotonic()
        killer = threading.Thread(
            target=crash_cycles, args=(gws, load, args.kills, gap_s, gap_s[0], args.seed), daemon=True
        )
        killer.start()
        load.run("phase 2: kill -9 under load", phase2_cap, args.conc, seconds=phase2_s)
        load.stop.set()
        killer.join()
        phases["phase 2: kill -9 under load"] = time.monotonic() - started
        log("stopping the gateways (SIGTERM: they flush)")
        gws.stop()
        stats = upstream_stats(upstream_port)
        result = audit(database_url, accounts, load.outcomes)
    finally:
        gws.stop()
        upstream.terminate()
        upstream.wait(10)
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    report(result, load.outcomes, phases, stats)
    print(f"  kill -9 done               {gws.kills:>8} of {args.kills}")
    reasons = result.failures()
    print(f"\n{mode}: " + ("PASS" if not reasons else "FAIL: " + "; ".join(reasons)))
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
