"""Slow clients: do ordinary requests still get through while thousands of connections trickle their heads?

Starts the bench upstream and the gateway (as `run.py` does, on 127.0.0.1), opens `--slow` connections
(up to 20,000) that each send a request line and then one header byte every `--trickle-s` seconds (a
connection the gateway drops is opened again after `--reconnect-s`, so the pressure stays), and meanwhile
sends ordinary chat requests from `--workers` threads, each on a new connection. It prints how many
ordinary requests succeeded and their latency, and what became of the slow connections. Bounded in time:
ramp, then `--duration` seconds, then everything it started is stopped.

    .venv/bin/python bench/slowclients.py --slow 20000 --duration 20 --pin
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import resource
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import run  # bench/run.py: starting, configuring and stopping the upstream and the gateway

MODEL = "gpt-4o-mini"
NOFILE = 65536


@dataclass
class SlowStats:
    opened: int = 0
    connect_failures: int = 0
    answered: dict[int, int] = field(default_factory=dict)  # status -> count
    closed_silently: int = 0
    open_now: int = 0
    open_peak: int = 0


class SlowClients(threading.Thread):
    """Non-blocking sockets on one epoll loop: connect, send a request line, trickle header bytes."""

    def __init__(self, port: int, count: int, trickle_s: float, reconnect_s: float) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.trickle_s, self.reconnect_s = port, count, trickle_s, reconnect_s
        self.stats = SlowStats()
        self.stopping = threading.Event()
        self.selector = selectors.DefaultSelector()
        self.next_send: dict[socket.socket, float] = {}
        self.reopen_at: list[float] = []

    def _open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        except OSError:
            sock.close()
            self.stats.connect_failures += 1
            self.reopen_at.append(time.monotonic() + self.reconnect_s)
            return
        self.selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, "connecting")
        self.stats.opened += 1

    def _drop(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        if self.next_send.pop(sock, None) is not None:
            self.stats.open_now -= 1
        sock.close()
        self.reopen_at.append(time.monotonic() + self.reconnect_s)

    def run(self) -> None:
        ramp_per_tick = max(1, self.count // 100)  # all opened within about a second
        to_open = self.count
        next_pass = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            for _ in range(min(ramp_per_tick, to_open)):
                self._open()
                to_open -= 1
            due = [t for t in self.reopen_at if t <= now]
            if due and not self.stopping.is_set():
                self.reopen_at = [t for t in self.reopen_at if t > now]
                for _ in due:
                    self._open()
            for key, _ in self.selector.select(timeout=0.01):
                sock = key.fileobj
                if key.data == "connecting":
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        self.stats.connect_failures += 1
                        self._drop(sock)
                        continue
                    try:
                        sock.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: slow\r\n")
                    except OSError:
                        self._drop(sock)
                        continue
                    self.selector.modify(sock, selectors.EVENT_READ, "open")
                    self.next_send[sock] = now + self.trickle_s
                    self.stats.open_now += 1
                    self.stats.open_peak = max(self.stats.open_peak, self.stats.open_now)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    status = int(data[9:12])
                    self.stats.answered[status] = self.stats.answered.get(status, 0) + 1
                else:
                    self.stats.closed_silently += 1
                self._drop(sock)
            if now < next_pass:
                continue
            next_pass = now + 0.1
            for sock, at in list(self.next_send.items()):
                if at <= now:
                    try:
                        sock.send(b"X")  # one byte of a header name that never ends
                        self.next_send[sock] = now + self.trickle_s
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                            self._drop(sock)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()


def ordinary(port: int, key: str, until: float, results: list[tuple[int, float]]) -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    while time.monotonic() < until:
        started = time.monotonic()
        status = 0
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
            conn.close()
        except OSError:
            status = 0
        results.append((status, time.monotonic() - started))
        if status != 200:
            time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=20000, help="slow connections held open (<= 20000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of ordinary requests")
    parser.add_argument("--trickle-s", type=float, default=1.0, help="a byte every this many s")
    parser.add_argument("--reconnect-s", type=float, default=1.0, help="reopen a dropped one after")
    parser.add_argument("--workers", type=int, default=4, help="threads sending ordinary requests")
    parser.add_argument("--settle-s", type=float, default=3.0, help="wait after opening the slow connections")
    parser.add_argument("--pin", action="store_true", help="gateway on CPU 1, everything else on CPU 0")
    parser.add_argument("--upstream-port", type=int, default=None)
    args = parser.parse_args()
    args.slow = min(args.slow, 20000)
    cpus = ({0}, {1}) if args.pin and (os.cpu_count() or 1) > 1 else (None, None)
    if cpus[0]:
        os.sched_setaffinity(0, cpus[0])
    tmp = tempfile.mkdtemp(prefix="relayhouse-slow-")
    upstream = gateway = None
    try:
        upstream, upstream_port = run.start_upstream(args, tmp, cpus[0])
        token = "bench-" + os.urandom(8).hex()
        gateway, port, logf = run.start_gateway(tmp, token, cpus[1])
        key = run.configure_gateway(f"http://127.0.0.1:{port}", token, upstream_port, MODEL)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:  # raised after the gateway started, which keeps the machine's own limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, NOFILE), max(hard, NOFILE)))
        except (ValueError, OSError):
            run.raise_nofile()
        slow = SlowClients(port, args.slow, args.trickle_s, args.reconnect_s)
        slow.start()
        time.sleep(args.settle_s)
        run.log(f"slow connections open: {slow.stats.open_now} (opened {slow.stats.opened})")
        results: list[tuple[int, float]] = []
        until = time.monotonic() + args.duration
        threads = [
            threading.Thread(target=ordinary, args=(port, key, until, results), daemon=True)
            for _ in range(args.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.duration + 15)
        open_at_end = slow.stats.open_now
        slow.stopping.set()
        slow.join(10)
        ok = sorted(latency for status, latency in results if status == 200)
        failed: dict[int, int] = {}
        for status, _ in results:
            if status != 200:
                failed[status] = failed.get(status, 0) + 1
        stats = slow.stats
        print(f"slow connections: {args.slow} held (trickling a byte every {args.trickle_s:g} s)")
        print(
            f"  opened {stats.opened}, open at the end {open_at_end}, peak {stats.open_peak}, "
            f"answered by status {dict(sorted(stats.answered.items()))}, "
            f"closed silently {stats.closed_silently}, "
            f"connect failures {stats.connect_failures}"
        )
        print(f"ordinary requests over {args.duration:g} s: {len(ok)}/{len(results)} succeeded", end="")
        print(f" (failures by status, 0 = no answer: {failed})" if failed else "")
        if ok:
            p50, p99 = run.percentile(ok, 0.5), run.percentile(ok, 0.99)
            print(f"  latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {ok[-1] * 1000:.1f} ms")
        return 0 if ok and not failed else 1
    finally:
        run.terminate(gateway, "gateway")
        run.terminate(upstream, "upstream")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
