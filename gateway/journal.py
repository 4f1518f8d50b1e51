"""The journal: a local, append-only copy of the settled records the writer has not committed yet.

The writer keeps records in memory for up to one `FLUSH_INTERVAL`; a process killed meanwhile (`kill -9`,
the OOM killer, a lost container) would otherwise serve those requests free and unlogged. So each record
is also appended here, one line per record, with a plain `os.write` when it is queued: a write to the
page cache survives the death of the process, and costs a few microseconds. The journal is fsynced once
per flush, not per record, so a power cut can still lose the newest lines, as it would lose the
database's own unsynced pages.

Files: `INSTANCE_DIR/journal/<slot>/<segment>.jsonl`. Several processes may share one instance folder,
so each takes a slot directory and holds `fcntl.flock` on its `lock` file for its lifetime; the kernel
releases the lock when the process dies, however it dies. At start a process replays the segments left in
the slot it took and in every other slot nobody holds: they belong to processes that are gone. A flush
begins by rotating to a new segment, so the segments before it hold exactly the records that flush
writes; they are deleted once it has written them all, and kept when it fails.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("relayhouse.journal")
LOCK_NAME = "lock"
SUFFIX = ".jsonl"


class Journal:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.slot: Path | None = None
        self._lock_fd: int | None = None
        self._fd: int | None = None  # the segment being appended to, opened on the first line
        self._path: Path | None = None
        self._sealed: list[tuple[Path, int | None]] = []  # rotated out, not yet committed (fd if unsynced)
        self._orphans: list[int] = []  # locks on other dead processes' slots, held while replaying them
        self._counter = 0

    # -- start: take a slot, find what dead processes left -------------------------------------------
    def open(self) -> list[Path]:
        """Take a free slot and return the segments left by dead processes, oldest first, to replay."""
        self.directory.mkdir(parents=True, exist_ok=True)
        leftovers: list[Path] = []
        index = 0
        while self.slot is None or (self.directory / str(index)).is_dir():
            slot = self.directory / str(index)
            index += 1
            slot.mkdir(exist_ok=True)
            fd = _try_lock(slot / LOCK_NAME)
            if fd is None:
                continue  # a live process holds it
            leftovers.extend(_segments(slot))
            if self.slot is None:
                self.slot, self._lock_fd = slot, fd
            else:
                self._orphans.append(fd)
        return leftovers

    def replayed(self, segments: list[Path]) -> None:
        """The leftovers are committed: delete them and let go of the other dead processes' slots."""
        for path in segments:
            path.unlink(missing_ok=True)
        for fd in self._orphans:
            os.close(fd)  # closing the descriptor releases its flock
        self._orphans.clear()

    # -- the hot path --------------------------------------------------------------------------------
    def append(self, line: bytes) -> None:
        """One whole line per call: a single write(2) of a regular file is not torn by a process kill."""
        fd = self._fd if self._fd is not None else self._open_segment()
        os.write(fd, line)

    # -- a flush -------------------------------------------------------------------------------------
    def rotate(self) -> None:
        """Begin a new segment: every record queued so far is in a sealed one."""
        if self._fd is not None and self._path is not None:
            self._sealed.append((self._path, self._fd))
            self._fd = self._path = None

    def sync(self) -> None:
        """Make the sealed segments durable (once per flush; may run on a native thread)."""
        synced = False
        for i, (path, fd) in enumerate(self._sealed):
            if fd is not None:
                os.fsync(fd)
                os.close(fd)
                self._sealed[i] = (path, None)
                synced = True
        if synced and self.slot is not None:
            _fsync_dir(self.slot)  # the segments' directory entries too

    def committed(self) -> None:
        """Everything in the sealed segments is written (or set aside): they are no longer needed."""
        for path, fd in self._sealed:
            if fd is not None:
                os.close(fd)
            path.unlink(missing_ok=True)
        self._sealed.clear()

    def close(self) -> None:
        """Let go of the slot at a clean stop. Segments a failed last flush kept stay for the next start."""
        self.rotate()
        for _, fd in self._sealed:
            if fd is not None:
                os.close(fd)
        self._sealed.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.slot = None

    def _open_segment(self) -> int:
        if self.slot is None:
            raise RuntimeError("Journal.open() must take a slot before records are appended")
        self._counter += 1
        self._path = self.slot / f"{time.time_ns():020d}-{self._counter:06d}{SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        return self._fd


def read_lines(segments: list[Path]) -> Iterator[bytes]:
    """Every complete line of the segments, in order. A line cut short (a power cut mid-write) is skipped:
    its record was never answered as committed, and there is nothing whole to replay."""
    for path in segments:
        data = path.read_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1]:
            log.warning("journal %s ends with an incomplete line; it is skipped", path.name)
        yield from (line for line in lines[:-1] if line)


def _segments(slot: Path) -> list[Path]:
    return sorted(p for p in slot.iterdir() if p.name.endswith(SUFFIX))


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
