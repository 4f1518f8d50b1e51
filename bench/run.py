#!/usr/bin/env python3
"""Relayhouse benchmark: what the gateway adds over its upstream, beside a direct baseline, in one run.

    .venv/bin/python bench/run.py                        # start upstream + gateway, bench both
    .venv/bin/python bench/run.py --direct-only          # only the fake upstream (checks the load tools)
    .venv/bin/python bench/run.py --gateway-url http://127.0.0.1:8080 --key sk-...   # a running gateway

Standard library only. Phases:

1. start ``bench/upstream.py`` (fake OpenAI upstream) and, unless ``--gateway-url``, the gateway
   (``app.py`` in a temporary INSTANCE_DIR), then configure it over the management API
   (channel -> upstream, price, user with money in the wallet, API key);
2. non-streaming chat, closed loop at each ``--conc`` level for ``--duration`` s, direct then gateway;
3. ``--streams`` concurrent SSE streams, direct then gateway;
4. a table: req/s, ratio to direct, latency p50/p99 and what the gateway adds, streams completed,
   time to first ``data:`` line, stream duration, gateway RSS (idle and peak) and CPU.

The load generator is a raw asyncio ``Protocol`` client on keep-alive connections that only parses
the status line, Content-Length or chunked framing, so it is not what limits the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import math
import os
import re
import resource
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL_DEFAULT = "gpt-4o-mini"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DONE_RE = re.compile(rb"(?:^|\n)data: ?\[DONE\]")

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def log(msg: str) -> None:
    """Progress line on stderr (the report itself goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A fatal problem: printed without a traceback, exit status 1."""


# ------------------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_python() -> str:
    cand = os.path.join(ROOT, ".venv", "bin", "python")
    return cand if os.path.exists(cand) else sys.executable


def _child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """preexec_fn: die with us (PR_SET_PDEATHSIG) and optionally pin to ``cpus``."""

    def setup() -> None:
        if _LIBC is not None:
            _LIBC.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def spawn(
    cmd: list[str], cwd: str, env: dict[str, str], log_path: str, cpus: set[int] | None
) -> subprocess.Popen[bytes]:
    """Start a process in its own session, stdout+stderr to ``log_path``."""
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_setup(cpus),
        )


def terminate(proc: subprocess.Popen[bytes] | None, name: str, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``grace`` s."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            if sig == signal.SIGTERM:
                log(f"{name} did not stop on SIGTERM within {grace:g} s, killing it")


def tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants (from /proc/<pid>/task/*/children)."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return pids


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants, in kB (0 if gone)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants, in seconds."""
    ticks = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / CLK_TCK


def pin_existing(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` and its descendants (threads do not inherit a later affinity)."""
    for p in process_tree(pid):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


class RssSampler(threading.Thread):
    """Samples the gateway's RSS every ``interval`` s; keeps the peak per phase label."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.interval = interval
        self.phase = "startup"
        self.peaks: dict[str, int] = {}
        self.last = 0
        self._halt = threading.Event()

    def sample(self) -> int:
        kb = rss_kb(self.pid)
        if kb:
            self.last = kb
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), kb)
        return kb

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()


# ------------------------------------------------------------------------------------------ HTTP helpers


def http(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One blocking request with urllib: (status, body); status 0 on connection failure."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def api(method: str, url: str, token: str, body: Any = None) -> Any:
    """A management API call that must answer 200/201 with JSON."""
    status, raw = http(method, url, body, token)
    if status not in (200, 201):
        shown = raw[:600].decode("utf-8", "replace") or "(no body)"
        raise BenchError(f"{method} {url} answered {status or 'no connection'}: {shown}")
    try:
        return json.loads(raw) if raw else {}
    except ValueError as exc:
        raise BenchError(f"{method} {url}: not JSON: {raw[:300]!r}") from exc


def find_field(obj: Any, name: str) -> Any:
    """``obj[name]``, or the same field one level down (``{"user": {"id": ..}}``, ``{"data": ..}``)."""
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        for value in obj.values():
            if isinstance(value, dict) and name in value:
                return value[name]
    return None


def chat_body(model: str, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
    if stream:
        body["stream"] = True
    return body


@dataclass
class Target:
    """Where load goes: host, port, path prefix, bearer key."""

    name: str
    host: str
    port: int
    prefix: str = ""
    key: str | None = None

    @classmethod
    def from_url(cls, name: str, url: str, key: str | None) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise BenchError(f"{url}: only plain http:// is supported")
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/v1"):
            prefix = prefix[:-3]
        return cls(name, parts.hostname or "127.0.0.1", parts.port or 80, prefix, key)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}"

    def request(
        self, body: dict[str, Any], path: str = "/v1/chat/completions", headers: tuple[str, ...] = ()
    ) -> bytes:
        """A raw keep-alive HTTP/1.1 request for `path` (default /v1/chat/completions)."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        lines = [
            f"POST {self.prefix}{path} HTTP/1.1",
            *headers,
            f"Host: {self.host}:{self.port}",
            "User-Agent: relayhouse-bench",
            "Accept: */*",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
        ]
        if self.key:
            lines.append(f"Authorization: Bearer {self.key}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


# ------------------------------------------------------------------------------------------ response parser

HEAD, LENGTH, CHUNKED, UNTIL_CLOSE, DONE = range(5)


def _header(lower_head: bytes, name: bytes) -> bytes | None:
    key = b"\r\n" + name + b":"
    i = lower_head.find(key)
    if i < 0:
        return None
    i += len(key)
    j = lower_head.find(b"\r\n", i)
    return lower_head[i : j if j >= 0 else len(lower_head)].strip()


class ResponseParser:
    """Incremental HTTP/1.1 response parser: status line, Content-Length / chunked / close-delimited body.

    Body bytes go to ``on_body`` if set; otherwise the first 2 kB are kept in ``body`` when the status
    is not 200 (for error reports). ``feed`` returns True once the response is complete.
    """

    __slots__ = ("state", "buf", "status", "keep_alive", "remaining", "on_body", "body", "_cbuf", "_cstate")

    def __init__(self, on_body: Callable[[bytes], None] | None = None) -> None:
        self.on_body = on_body
        self.reset()

    def reset(self) -> None:
        self.state = HEAD
        self.buf = b""
        self.status = 0
        self.keep_alive = True
        self.remaining = 0
        self.body = b""
        self._cbuf = b""
        self._cstate = 0

    def _emit(self, piece: bytes) -> None:
        if not piece:
            return
        if self.on_body is not None:
            self.on_body(piece)
        elif self.status != 200 and len(self.body) < 2048:
            self.body += piece[: 2048 - len(self.body)]

    def feed(self, data: bytes) -> bool:
        if self.state == HEAD:
            buf = self.buf + data if self.buf else data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self.buf = buf
                    return False
                try:
                    self.status = int(buf[9:12])
                except ValueError:
                    self.status = 0
                if 100 <= self.status < 200:  # 100 Continue & co: skip
                    buf = buf[end + 4 :]
                    continue
                break
            lower = buf[:end].lower()
            conn = _header(lower, b"connection")
            self.keep_alive = buf[5:8] == b"1.1" and not (conn is not None and b"close" in conn)
            data = buf[end + 4 :]
            self.buf = b""
            te = _header(lower, b"transfer-encoding")
            if te is not None and b"chunked" in te:
                self.state = CHUNKED
            else:
                cl = _header(lower, b"content-length")
                if cl is not None:
                    self.state = LENGTH
                    self.remaining = int(cl)
                elif self.status in (204, 304):
                    self.state = DONE
                    self.buf = data
                    return True
                else:
                    self.state = UNTIL_CLOSE
                    self.keep_alive = False
        if self.state == LENGTH:
            n = len(data)
            if n < self.remaining:
                self.remaining -= n
                self._emit(data)
                return False
            self._emit(data[: self.remaining])
            self.buf = data[self.remaining :]
            self.remaining = 0
            self.state = DONE
            return True
        if self.state == CHUNKED:
            return self._chunked(data)
        if self.state == UNTIL_CLOSE:
            self._emit(data)
        return self.state == DONE

    def _chunked(self, data: bytes) -> bool:
        buf = self._cbuf + data if self._cbuf else data
        pos, n = 0, len(buf)
        # _cstate: 0 size line, 1 data (self.remaining left), 2 CRLF after data, 3 trailers
        while pos < n:
            st = self._cstate
            if st == 1:
                take = min(self.remaining, n - pos)
                self._emit(buf[pos : pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self._cstate = 2
            elif st == 0:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0].strip() or b"0", 16)
                pos = eol + 2
                if size:
                    self.remaining = size
                    self._cstate = 1
                else:
                    self._cstate = 3
            elif st == 2:
                if n - pos < 2:
                    break
                pos += 2
                self._cstate = 0
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if eol == pos:
                    self.state = DONE
                    self.buf = buf[eol + 2 :]
                    self._cbuf = b""
                    return True
                pos = eol + 2
        self._cbuf = buf[pos:]
        return False

    def feed_eof(self) -> bool:
        """The connection closed: True if that completes a close-delimited body."""
        if self.state == UNTIL_CLOSE:
            self.state = DONE
            return True
        return self.state == DONE


# ------------------------------------------------------------------------------------------ closed loop


def percentile(sorted_vals: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan if empty)."""
    if not sorted_vals:
        return math.nan
    k = max(0, math.ceil(q * len(sorted_vals)) - 1)
    return sorted_vals[min(k, len(sorted_vals) - 1)]


class LoadState:
    """Shared state of one closed-loop level."""

    def __init__(self, target: Target, request: bytes) -> None:
        self.target = target
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.total_ok = 0
        self.measuring = False
        self.stopping = False
        self.inflight = 0
        self.conns: set[LoopConn] = set()
        self.idle = asyncio.Event()
        self.first_error: str | None = None

    async def connect(self, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        while not self.stopping:
            try:
                await self.loop.create_connection(lambda: LoopConn(self), self.target.host, self.target.port)
                return
            except OSError as exc:
                self.error(f"connect: {exc.strerror or exc}", None)
                await asyncio.sleep(0.05)

    def error(self, kind: str, detail: str | None) -> None:
        if self.measuring:
            self.errors[kind] += 1
        if self.first_error is None:
            self.first_error = kind + (f": {detail}" if detail else "")

    def check_idle(self) -> None:
        if self.stopping and self.inflight == 0:
            self.idle.set()


class LoopConn(asyncio.Protocol):
    """One keep-alive connection sending the same request back to back."""

    __slots__ = ("st", "transport", "parser", "t0", "busy")

    def __init__(self, st: LoadState) -> None:
        self.st = st
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.t0 = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.st.conns.add(self)
        self.send()

    def send(self) -> None:
        st = self.st
        if st.stopping:
            self.transport.close()  # type: ignore[union-attr]
            return
        self.parser.reset()
        self.busy = True
        st.inflight += 1
        self.t0 = time.perf_counter()
        self.transport.write(st.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            return
        try:
            complete = self.parser.feed(data)
        except ValueError:
            self.st.error("bad HTTP response", repr(data[:200]))
            self.transport.close()  # type: ignore[union-attr]
            return
        if complete:
            self._complete()

    def _complete(self) -> None:
        dt = time.perf_counter() - self.t0
        st = self.st
        self.busy = False
        st.inflight -= 1
        status = self.parser.status
        if status == 200:
            st.total_ok += 1
            if st.measuring:
                st.latencies.append(dt)
        else:
            st.error(f"HTTP {status}", self.parser.body.decode("utf-8", "replace")[:300])
        if self.parser.keep_alive and not st.stopping:
            self.send()
        else:
            self.transport.close()  # type: ignore[union-attr]
            st.check_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        st = self.st
        st.conns.discard(self)
        if self.busy:
            if self.parser.feed_eof():
                self._complete()
            else:
                self.busy = False
                st.inflight -= 1
                st.error("connection closed mid-response", str(exc) if exc else None)
        st.check_idle()
        if not st.stopping:
            st.loop.create_task(st.connect())


@dataclass
class LevelResult:
    """One closed-loop level against one target."""

    target: str
    conc: int
    seconds: float
    ok: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    first_error: str | None
    total_ok: int
    gw_cpu_pct: float | None = None
    upstream_requests: int | None = None


async def closed_loop(
    target: Target,
    request: bytes,
    conc: int,
    warmup: float,
    duration: float,
    gw_pid: int | None,
) -> LevelResult:
    """``conc`` connections in a closed loop: ``warmup`` s unmeasured, then ``duration`` s measured."""
    st = LoadState(target, request)
    tasks = [st.loop.create_task(st.connect(i * 0.001)) for i in range(conc)]
    await asyncio.sleep(warmup)
    gc.collect()
    gc.disable()
    try:
        cpu0 = cpu_seconds(gw_pid) if gw_pid else 0.0
        st.measuring = True
        t0 = time.perf_counter()
        await asyncio.sleep(duration)
        st.measuring = False
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(gw_pid) if gw_pid else 0.0
    finally:
        gc.enable()
    st.stopping = True
    st.check_idle()
    try:
        await asyncio.wait_for(st.idle.wait(), timeout=10.0)
    except TimeoutError:
        st.errors["no answer within 10 s after the end"] += st.inflight
    for conn in list(st.conns):
        if conn.transport is not None:
            conn.transport.abort()
    for t in tasks:
        t.cancel()
    await asyncio.sleep(0.05)
    lat = sorted(st.latencies)
    return LevelResult(
        target=target.name,
        conc=conc,
        seconds=elapsed,
        ok=len(lat),
        rps=len(lat) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(lat, 0.50) * 1000,
        p99_ms=percentile(lat, 0.99) * 1000,
        errors=dict(st.errors),
        first_error=st.first_error,
        total_ok=st.total_ok,
        gw_cpu_pct=(cpu1 - cpu0) / elapsed * 100 if gw_pid and elapsed > 0 else None,
    )


# ------------------------------------------------------------------------------------------ streams


@dataclass
class StreamRecord:
    start: float = 0.0
    ttfb: float | None = None
    duration: float | None = None
    completed: bool = False
    status: int = 0
    events: int = 0
    error: str | None = None


class StreamConn(asyncio.Protocol):
    """One streaming request on its own connection; records time to first ``data:`` and to the end."""

    def __init__(
        self, rec: StreamRecord, request: bytes, done: asyncio.Future[None], done_re: re.Pattern[bytes]
    ) -> None:
        self.done_re = done_re
        self.rec = rec
        self.request = request
        self.done = done
        self.parts: list[bytes] = []
        self.head = b""
        self.parser = ResponseParser(self._body)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def _body(self, piece: bytes) -> None:
        self.parts.append(piece)
        if self.rec.ttfb is None:
            self.head += piece
            if b"data:" in self.head:
                self.rec.ttfb = time.perf_counter() - self.rec.start
                self.head = b""

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            complete = self.parser.feed(data)
        except ValueError:
            self._finish("bad HTTP response")
            return
        if complete:
            self._finish(None)

    def _finish(self, error: str | None) -> None:
        rec = self.rec
        rec.status = self.parser.status
        body = b"".join(self.parts)
        rec.events = body.count(b"data:")
        rec.completed = error is None and rec.status == 200 and self.done_re.search(body) is not None
        if rec.completed:
            rec.duration = time.perf_counter() - rec.start
        elif error is None:
            error = f"HTTP {rec.status}" if rec.status != 200 else "no data: [DONE]"
        rec.error = error
        if error and rec.status not in (0, 200):
            rec.error = f"HTTP {rec.status}: {body[:200].decode('utf-8', 'replace')}"
        if not self.done.done():
            self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if self.parser.feed_eof():
            self._finish(None)
        else:
            self._finish("connection closed mid-stream")


async def one_stream(
    target: Target, request: bytes, rec: StreamRecord, start_at: float, done_re: re.Pattern[bytes] = DONE_RE
) -> None:
    loop = asyncio.get_running_loop()
    delay = start_at - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
    rec.start = time.perf_counter()
    done: asyncio.Future[None] = loop.create_future()
    transport = None
    try:
        transport, _ = await loop.create_connection(
            lambda: StreamConn(rec, request, done, done_re), target.host, target.port
        )
        await done
    except OSError as exc:
        rec.error = f"connect: {exc.strerror or exc}"
    except asyncio.CancelledError:
        rec.error = rec.error or "timeout"
        if transport is not None:
            transport.abort()
        raise


@dataclass
class StreamResult:
    """One streaming phase against one target."""

    target: str
    streams: int
    completed: int
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    dur_p50_s: float
    dur_p99_s: float
    errors: dict[str, int]
    events_min: int
    events_max: int
    wall_s: float
    gw_cpu_pct: float | None = None


async def stream_phase(
    target: Target,
    model: str,
    n: int,
    ramp_s: float,
    timeout_s: float,
    gw_pid: int | None,
    request: bytes | None = None,
    done_re: re.Pattern[bytes] = DONE_RE,
) -> StreamResult:
    """``n`` concurrent streams, starts spread evenly over ``ramp_s``; each stops at ``timeout_s``. A stream
    is complete when its body matches ``done_re`` (OpenAI's ``data: [DONE]`` by default)."""
    loop = asyncio.get_running_loop()
    request = request or target.request(chat_body(model, stream=True))
    recs = [StreamRecord() for _ in range(n)]
    gc.collect()
    cpu0 = cpu_seconds(gw_pid) if gw_pid else 0.0
    t0 = loop.time() + 0.05
    w0 = time.perf_counter()
    tasks = [
        loop.create_task(one_stream(target, request, rec, t0 + ramp_s * i / n, done_re))
        for i, rec in enumerate(recs)
    ]
    _, pending = await asyncio.wait(tasks, timeout=timeout_s + ramp_s + 0.05)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
    wall = time.perf_counter() - w0
    cpu1 = cpu_seconds(gw_pid) if gw_pid else 0.0
    ttfb = sorted(r.ttfb for r in recs if r.ttfb is not None)
    dur = sorted(r.duration for r in recs if r.duration is not None)
    events = [r.events for r in recs if r.completed]
    errors: Counter[str] = Counter(r.error for r in recs if not r.completed and r.error)
    errors.update("incomplete" for r in recs if not r.completed and not r.error)
    return StreamResult(
        target=target.name,
        streams=n,
        completed=sum(r.completed for r in recs),
        ttfb_p50_ms=percentile(ttfb, 0.5) * 1000,
        ttfb_p99_ms=percentile(ttfb, 0.99) * 1000,
        dur_p50_s=percentile(dur, 0.5),
        dur_p99_s=percentile(dur, 0.99),
        errors=dict(errors),
        events_min=min(events, default=0),
        events_max=max(events, default=0),
        wall_s=wall,
        gw_cpu_pct=(cpu1 - cpu0) / wall * 100 if gw_pid and wall > 0 else None,
    )


# ------------------------------------------------------------------------------------------ orchestration


@dataclass
class Run:
    """Everything the report needs."""

    args: argparse.Namespace
    levels: list[LevelResult] = field(default_factory=list)
    streams: list[StreamResult] = field(default_factory=list)
    rss_idle_kb: int | None = None
    rss_peaks_kb: dict[str, int] = field(default_factory=dict)
    rss_after_kb: int | None = None
    notes: list[str] = field(default_factory=list)


def start_upstream(args: argparse.Namespace, tmp: str, cpus: set[int] | None) -> tuple[Any, int]:
    """Start bench/upstream.py (or reuse one already answering on --upstream-port): (proc, port)."""
    port = args.upstream_port or free_port()
    status, _ = http("GET", f"http://127.0.0.1:{port}/_bench/config", timeout=1.0)
    if status == 200:
        log(f"reusing the bench upstream already running on port {port}")
        return None, port
    cmd = [sys.executable, os.path.join(HERE, "upstream.py"), "--port", str(port)]
    logf = os.path.join(tmp, "upstream.log")
    proc = spawn(cmd, ROOT, dict(os.environ), logf, cpus)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"bench/upstream.py exited with {proc.returncode}:\n{tail(logf)}")
        if http("GET", f"http://127.0.0.1:{port}/_bench/config", timeout=1.0)[0] == 200:
            return proc, port
        time.sleep(0.05)
    raise BenchError(f"bench/upstream.py did not answer on port {port} within 10 s:\n{tail(logf)}")


def start_gateway(tmp: str, admin_token: str, cpus: set[int] | None) -> tuple[Any, int, str]:
    """Start app.py in a fresh INSTANCE_DIR and wait for /api/status: (proc, port, log path)."""
    app = os.path.join(ROOT, "app.py")
    if not os.path.exists(app):
        raise BenchError(f"{app} does not exist (use --direct-only to bench the upstream alone)")
    port = free_port()
    instance = os.path.join(tmp, "instance")
    os.makedirs(instance, exist_ok=True)
    env = dict(os.environ)
    env.update(
        PORT=str(port),
        HOST="127.0.0.1",
        INSTANCE_DIR=instance,
        RELAYHOUSE_ADMIN_TOKEN=admin_token,
        RELAYHOUSE_ADMIN_PASSWORD=secrets.token_urlsafe(18),
        FLUSH_INTERVAL="1",
    )
    logf = os.path.join(tmp, "gateway.log")
    proc = spawn([venv_python(), "app.py"], ROOT, env, logf, cpus)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        if proc.poll() is not None:
            print(tail(logf), file=sys.stderr)
            raise BenchError(f"the gateway exited with status {proc.returncode} during startup (log above)")
        if http("GET", f"http://127.0.0.1:{port}/api/status", timeout=2.0)[0] == 200:
            log(f"gateway up on port {port} after {time.monotonic() - t0:.1f} s (pid {proc.pid})")
            return proc, port, logf
        time.sleep(0.1)
    print(tail(logf), file=sys.stderr)
    raise BenchError("the gateway did not answer GET /api/status with 200 within 60 s (log above)")


def configure_gateway(base: str, token: str, upstream_port: int, model: str) -> str:
    """Channel -> upstream, price, funded user, API key. Returns the key."""
    api(
        "POST",
        f"{base}/api/channels",
        token,
        {
            "name": "bench",
            "type": "openai",
            "base_url": f"http://127.0.0.1:{upstream_port}/v1",
            "keys": ["sk-upstream-bench"],
            "models": [model],
        },
    )
    api("PUT", f"{base}/api/prices/{model}", token, {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 0.6})
    user = api(
        "POST",
        f"{base}/api/users",
        token,
        {"username": f"bench-{secrets.token_hex(3)}", "password": secrets.token_urlsafe(18), "role": "user"},
    )
    uid = find_field(user, "id")
    if uid is None:
        raise BenchError(f"POST /api/users: no id in {json.dumps(user)[:300]}")
    api("POST", f"{base}/api/users/{uid}/wallet", token, {"amount_usd": 100000, "reason": "bench"})
    created = api("POST", f"{base}/api/keys", token, {"name": "bench", "user_id": uid})
    key = find_field(created, "key")
    if not isinstance(key, str) or not key:
        raise BenchError(f"POST /api/keys: no key in {json.dumps(created)[:300]}")
    return key


def upstream_config(port: int, chunks: int, delay_ms: float) -> None:
    status, raw = http(
        "POST", f"http://127.0.0.1:{port}/_bench/config", {"chunks": chunks, "chunk_delay_ms": delay_ms}
    )
    if status != 200:
        raise BenchError(f"POST /_bench/config on the upstream answered {status}: {raw[:200]!r}")


def upstream_chat_count(port: int) -> int | None:
    status, raw = http("GET", f"http://127.0.0.1:{port}/_bench/stats", timeout=5.0)
    return json.loads(raw).get("chat") if status == 200 else None


def sanity(target: Target, model: str, upstream_port: int) -> None:
    """One plain and one streamed request through ``target``; fail loudly with the body if wrong."""
    url = f"{target.base}/v1/chat/completions"
    status, raw = http("POST", url, chat_body(model, False), target.key, timeout=30)
    ok = status == 200
    if ok:
        try:
            ok = bool(json.loads(raw).get("choices"))
        except ValueError:
            ok = False
    if not ok:
        raise BenchError(
            f"sanity check on {target.name}: POST {url} answered {status or 'no connection'}: "
            f"{raw[:600].decode('utf-8', 'replace')}"
        )
    upstream_config(upstream_port, 3, 1)
    status, raw = http("POST", url, chat_body(model, True), target.key, timeout=30)
    if status != 200 or DONE_RE.search(raw) is None:
        raise BenchError(
            f"sanity check on {target.name}: streamed POST {url} answered {status}: "
            f"{raw[:600].decode('utf-8', 'replace')}"
        )


async def bench(run: Run, targets: list[Target], upstream_port: int, gw_pid: int | None) -> None:
    """The measured phases, all targets in order, in one event loop."""
    args = run.args
    sampler: RssSampler | None = None
    if gw_pid:
        sampler = RssSampler(gw_pid)
        await asyncio.sleep(1.0)  # let the gateway settle after setup and sanity requests
        run.rss_idle_kb = sampler.sample()
        sampler.start()
    try:
        if args.conc:
            log(f"non-streaming: closed loop, {args.warmup:g} s warm-up + {args.duration:g} s per level")
        for conc in args.conc:
            for target in targets:
                is_gw = target.name == "gateway"
                if sampler:
                    sampler.phase = "non-streaming" if is_gw else "idle (direct)"
                request = target.request(chat_body(args.model, stream=False))
                before = upstream_chat_count(upstream_port)
                res = await closed_loop(
                    target, request, conc, args.warmup, args.duration, gw_pid if is_gw else None
                )
                if before is not None:
                    after = upstream_chat_count(upstream_port)
                    if after is not None:
                        res.upstream_requests = after - before
                run.levels.append(res)
                nerr = sum(res.errors.values())
                log(
                    f"  c={conc:<4} {target.name:8} {res.rps:9.1f} req/s  p50 {res.p50_ms:7.2f} ms  "
                    f"p99 {res.p99_ms:7.2f} ms  errors {nerr}"
                    + (f"  (first: {res.first_error})" if res.first_error else "")
                )
        if args.streams:
            upstream_config(upstream_port, args.chunks, args.chunk_delay_ms)
            ideal = args.chunks * args.chunk_delay_ms / 1000
            timeout = args.stream_timeout or max(60.0, 10 * ideal)
            log(
                f"streaming: {args.streams} streams x {args.chunks} chunks, {args.chunk_delay_ms:g} ms apart "
                f"(ideal {ideal:.2f} s), ramp {args.ramp_s:g} s, timeout {timeout:g} s"
            )
            for target in targets:
                is_gw = target.name == "gateway"
                if sampler:
                    sampler.phase = "streaming" if is_gw else "idle (direct)"
                res = await stream_phase(
                    target, args.model, args.streams, args.ramp_s, timeout, gw_pid if is_gw else None
                )
                run.streams.append(res)
                log(
                    f"  {target.name:8} completed {res.completed}/{res.streams}  "
                    f"TTFB p50 {res.ttfb_p50_ms:.1f} ms p99 {res.ttfb_p99_ms:.1f} ms  "
                    f"duration p50 {res.dur_p50_s:.3f} s p99 {res.dur_p99_s:.3f} s"
                    + (f"  errors {res.errors}" if res.errors else "")
                )
                await asyncio.sleep(0.5)
    finally:
        if sampler:
            sampler.stop()
            sampler.join(timeout=1)
            run.rss_peaks_kb = dict(sampler.peaks)
            run.rss_after_kb = sampler.sample() or None


# ------------------------------------------------------------------------------------------ report


def fmt(x: float | None, nd: int = 1, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}{unit}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))

    return "\n".join([line(headers), *(line(r) for r in rows)])


def report(run: Run, gw_label: str) -> str:
    args = run.args
    lines = [
        "",
        f"Relayhouse benchmark: {gw_label}; {os.cpu_count()} CPUs, pin {'on' if args.pin else 'off'}, "
        f"{args.duration:g} s per level",
    ]
    if run.levels:
        direct = {r.conc: r for r in run.levels if r.target == "direct"}
        rows = []
        for r in run.levels:
            d = direct.get(r.conc)
            is_gw = r.target != "direct"
            rows.append(
                [
                    f"c={r.conc} {r.target}",
                    fmt(r.rps),
                    fmt(r.rps / d.rps, 3) if is_gw and d and d.rps else "",
                    fmt(r.p50_ms, 2),
                    fmt(r.p99_ms, 2),
                    fmt(r.p50_ms - d.p50_ms, 2) if is_gw and d else "",
                    fmt(r.p99_ms - d.p99_ms, 2) if is_gw and d else "",
                    str(sum(r.errors.values())),
                    fmt(r.gw_cpu_pct, 0, "%") if r.gw_cpu_pct is not None else "",
                ]
            )
        lines += [
            "",
            "Non-streaming chat, closed loop",
            table(
                ["level", "req/s", "x direct", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "errors", "gw CPU"],
                rows,
            ),
        ]
    if run.streams:
        ideal = args.chunks * args.chunk_delay_ms / 1000
        rows = [
            [
                s.target,
                f"{s.completed}/{s.streams}",
                fmt(s.ttfb_p50_ms, 1),
                fmt(s.ttfb_p99_ms, 1),
                fmt(s.dur_p50_s, 3),
                fmt(s.dur_p99_s, 3),
                str(sum(s.errors.values())),
                fmt(s.gw_cpu_pct, 0, "%") if s.gw_cpu_pct is not None else "",
            ]
            for s in run.streams
        ]
        lines += [
            "",
            f"Streaming: {args.streams} concurrent streams x {args.chunks} chunks {args.chunk_delay_ms:g} ms "
            f"apart (ideal {ideal:.2f} s), ramp {args.ramp_s:g} s",
            table(
                [
                    "target",
                    "completed",
                    "TTFB p50 ms",
                    "TTFB p99 ms",
                    "dur p50 s",
                    "dur p99 s",
                    "errors",
                    "gw CPU",
                ],
                rows,
            ),
        ]
    if run.rss_idle_kb:
        peaks = run.rss_peaks_kb
        peak = max([run.rss_idle_kb, *peaks.values()])
        parts = ", ".join(
            f"{k} {v / 1024:.1f}" for k, v in peaks.items() if k in ("non-streaming", "streaming")
        )
        lines += [
            "",
            f"Gateway RSS: idle {run.rss_idle_kb / 1024:.1f} MB, peak {peak / 1024:.1f} MB"
            + (f" ({parts})" if parts else "")
            + (f", after the load {run.rss_after_kb / 1024:.1f} MB" if run.rss_after_kb else ""),
        ]
    errs = [(r.target, r.conc, r.errors, r.first_error) for r in run.levels if r.errors]
    for s in run.streams:
        if s.errors:
            errs.append((s.target, "streams", s.errors, None))
    if errs:
        lines += ["", "Errors:"]
        for name, level, counts, first in errs:
            top = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:4])
            lines.append(f"  {name} {level}: {top}" + (f" | first: {first}" if first else ""))
    lines += [f"Note: {n}" for n in run.notes]
    return "\n".join(lines)


def notes_for(run: Run) -> None:
    """Cross-checks worth a line in the report."""
    for r in run.levels:
        if r.upstream_requests is not None and r.upstream_requests != r.total_ok:
            run.notes.append(
                f"c={r.conc}: the upstream saw {r.upstream_requests} chat requests for {r.total_ok} "
                f"successful client requests ({r.target})"
            )
    gw1 = next((r for r in run.levels if r.conc == 1 and r.target != "direct"), None)
    d1 = next((r for r in run.levels if r.conc == 1 and r.target == "direct"), None)
    if gw1 and d1 and 36 <= gw1.p50_ms - d1.p50_ms <= 50:
        run.notes.append(
            "c=1 adds ~40 ms: the signature of Nagle + delayed ACK (a response written in several "
            "send() calls on a keep-alive socket without TCP_NODELAY)"
        )
    for s in run.streams:
        if s.completed and s.events_min != s.events_max:
            run.notes.append(
                f"{s.target} streams: {s.events_min}..{s.events_max} data: events per completed stream "
                f"(the upstream sends {run.args.chunks + 3}, or {run.args.chunks + 4} with include_usage)"
            )


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the Relayhouse gateway against a direct baseline to a fake upstream.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--conc", default="1,16,64", help="closed-loop concurrency levels, comma-separated")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each level")
    p.add_argument("--streams", type=int, default=1000, help="concurrent streams (0 skips the phase)")
    p.add_argument("--chunks", type=int, default=40, help="content chunks per stream")
    p.add_argument("--chunk-delay-ms", type=float, default=50.0, help="gap between chunks")
    p.add_argument("--ramp-s", type=float, default=0.5, help="stream starts are spread over this")
    p.add_argument("--stream-timeout", type=float, default=0.0, help="per stream; 0: max(60, 10 x ideal)")
    p.add_argument("--model", default=MODEL_DEFAULT)
    p.add_argument("--pin", action="store_true", help="gateway on CPU 1, everything else on CPU 0")
    p.add_argument("--direct-only", action="store_true", help="skip the gateway: bench the upstream alone")
    p.add_argument("--gateway-url", help="bench this running gateway instead of starting app.py")
    p.add_argument("--key", help="API key (sk-...) for --gateway-url")
    p.add_argument("--gateway-pid", type=int, help="with --gateway-url: its pid, for RSS and CPU figures")
    p.add_argument(
        "--upstream-port",
        type=int,
        default=None,
        help="port of the fake upstream (default: free port; 18000 with --gateway-url)",
    )
    p.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    p.add_argument("--access-log", choices=("off", "text", "json"), help="the gateway's ACCESS_LOG")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, gateway database)")
    args = p.parse_args(argv)
    try:
        args.conc = [int(c) for c in args.conc.split(",") if c.strip()]
    except ValueError:
        p.error("--conc: comma-separated integers expected")
    if any(c < 1 for c in args.conc):
        p.error("--conc: levels must be >= 1")
    if args.gateway_url and not args.key:
        p.error("--gateway-url needs --key")
    if args.upstream_port is None:
        args.upstream_port = 18000 if args.gateway_url else 0
    return args


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    if args.access_log:  # the gateway started below reads it from the environment
        os.environ["ACCESS_LOG"] = args.access_log
    nofile = raise_nofile()
    if args.streams and nofile < args.streams * 2 + 256:
        log(f"warning: open-file limit {nofile} may be too low for {args.streams} streams")
    load_cpus: set[int] | None = None
    gw_cpus: set[int] | None = None
    if args.pin:
        if (os.cpu_count() or 1) < 2:
            log("--pin needs 2 CPUs; not pinning")
            args.pin = False
        else:
            load_cpus, gw_cpus = {0}, {1}
            os.sched_setaffinity(0, load_cpus)
    tmp = tempfile.mkdtemp(prefix="relayhouse-bench-")
    upstream = gateway = None
    gw_log = ""
    run = Run(args)
    try:
        upstream, up_port = start_upstream(args, tmp, load_cpus)
        log(f"upstream: http://127.0.0.1:{up_port}/v1 (bench/upstream.py)")
        direct = Target("direct", "127.0.0.1", up_port, "", "sk-upstream-bench")
        targets = [direct]
        gw_pid: int | None = None
        gw_label = "direct only"
        if args.gateway_url:
            gw = Target.from_url("gateway", args.gateway_url, args.key)
            log(
                f"benching the running gateway at {gw.base}: it needs a channel to "
                f"http://127.0.0.1:{up_port}/v1 serving {args.model} (key anything), "
                "and the key needs money"
            )
            gw_pid = args.gateway_pid
            if gw_pid and gw_cpus:
                pin_existing(gw_pid, gw_cpus)
            elif gw_cpus:
                log("--pin without --gateway-pid: only this driver and the upstream are pinned")
            targets.append(gw)
            gw_label = f"gateway at {gw.base}"
        elif not args.direct_only:
            admin = secrets.token_urlsafe(24)
            gateway, gw_port, gw_log = start_gateway(tmp, admin, gw_cpus)
            gw_pid = gateway.pid
            base = f"http://127.0.0.1:{gw_port}"
            key = configure_gateway(base, admin, up_port, args.model)
            log("gateway configured: channel, price, user with $100000, API key")
            targets.append(Target("gateway", "127.0.0.1", gw_port, "", key))
            gw_label = "gateway app.py (started by run.py)"
        for t in targets:
            sanity(t, args.model, up_port)
        asyncio.run(bench(run, targets, up_port, gw_pid))
        if gateway is not None and gateway.poll() is not None:
            print(tail(gw_log), file=sys.stderr)
            run.notes.append(
                f"the gateway exited with status {gateway.returncode} during the run (log above)"
            )
        notes_for(run)
        print(report(run, gw_label), flush=True)
        if args.json:
            out = {
                "args": {k: v for k, v in vars(args).items() if k != "key"},
                "levels": [vars(r) for r in run.levels],
                "streams": [vars(s) for s in run.streams],
                "rss_idle_kb": run.rss_idle_kb,
                "rss_peaks_kb": run.rss_peaks_kb,
                "rss_after_kb": run.rss_after_kb,
                "notes": run.notes,
            }
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=2, default=str)
        return 0
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        terminate(gateway, "gateway", grace=12.0)  # it drains requests in flight for up to 10 s
        terminate(upstream, "upstream")
        if args.keep_tmp:
            log(f"kept {tmp} (gateway.log, upstream.log, instance/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
