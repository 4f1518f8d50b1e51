"""`WORKERS=N`: one supervisor process binds the port and runs N gateway processes that all accept on it.

Each worker is `python app.py` again, handed the bound socket (its descriptor in `RELAYHOUSE_LISTEN_FD`),
so workers share nothing but the port, the database and Redis, as processes on several machines do. A
worker that dies is started again (its journal is replayed by its successor); SIGTERM or SIGINT stops
them all, each finishing its requests and flushing its logs. A worker that cannot start for a reason
the operator must fix (exit status `STARTUP_FAILED`) stops the whole set.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.config import Settings
from gateway.setup import StartupError

log = logging.getLogger("relayhouse.workers")
STARTUP_FAILED = 3
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def supervise(settings: Settings, listener: socket.socket, fd_variable: str) -> int:
    if not settings.redis_url:
        raise StartupError(
            f"WORKERS={settings.workers} needs REDIS_URL: the processes share wallets, limits and changes "
            "through Redis."
        )
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    env = {**os.environ, fd_variable: str(fd)}
    stopping = False

    def start(index: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, APP], env={**env, "RELAYHOUSE_WORKER": str(index)}, pass_fds=(fd,)
        )

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    children = [start(i) for i in range(settings.workers)]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"Relayhouse supervising {settings.workers} workers on port {settings.port}", flush=True)
    failed = 0
    while True:
        time.sleep(0.2)
        if stopping:
            if all(child.poll() is not None for child in children):
                return failed
            continue
        for index, child in enumerate(children):
            code = child.poll()
            if code is None:
                continue
            if code == STARTUP_FAILED:
                failed = 1
                stop(signal.SIGTERM, None)
                break
            log.warning("worker %d (pid %d) ended with status %s; starting it again", index, child.pid, code)
            children[index] = start(index)
