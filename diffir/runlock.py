"""One run per run folder: a lock file that a second run on the same folder finds, and a dead run does not leave
blocking.

The lock is ``<run dir>/.lock`` created with ``O_EXCL`` (atomic on local and NFS-v3+ file systems) and holding
``{"pid", "host"}``. A lock whose process is gone (same host, pid not alive) is stale and taken over; a lock from
another host cannot be checked, so it blocks, and the message says which file to delete if that run is over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".lock"
FRESH_SECONDS = 10.0  # an unreadable lock younger than this is being written, not left by a crash


class RunLockedError(RuntimeError):
    """Another live run holds the run folder."""


def _alive(pid: int | str) -> bool:
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _holder(lock: Path) -> dict | None:
    """The lock's ``{"pid", "host"}``; None when it is unreadable (half written, or left by a crash)."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    valid = isinstance(holder, dict) and isinstance(holder.get("pid"), int) and "host" in holder
    return holder if valid else None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:  # gone meanwhile: nothing blocks
        return float("inf")


class RunLock:
    """``with RunLock(run_dir): ...`` — hold the run folder for this process (a context manager)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        """Take the lock, replacing a stale one; :class:`RunLockedError` when a live run holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):  # a stale lock removed by us or another starter: try again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
                holder = _holder(self.path)
                if holder is None and _age(self.path) < FRESH_SECONDS:
                    holder = {"pid": "?", "host": "?"}  # being written by a run starting right now
                if holder is not None and (holder["host"] != me["host"] or _alive(holder["pid"])):
                    raise RunLockedError(
                        f"another run (pid {holder['pid']} on {holder['host']}) is using {self.directory}: "
                        "choose another experiment name (name=<new name>) or folder "
                        f"(paths.experiments_dir=<dir>); if that run is over, delete {self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunLockedError(f"could not lock {self.directory}: {self.path} keeps reappearing")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
