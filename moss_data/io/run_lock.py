"""One run per output folder: a lock file naming the run that holds it.

The lock (``<output>/.moss-run.lock``) records the holder's pid, host, process start time and command. Taking it
fails with who holds it while that process lives; a lock whose process is gone (same host, no such pid, or the pid
now belongs to a later process) is stale and taken over, with a warning. On a local filesystem the lock file is
created with ``O_EXCL`` (two runs cannot both create it); on an object store creation is check-then-put, so two runs
started in the same instant may both proceed: start runs on object stores from one place.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import orjson
from loguru import logger

from moss_data.io.storage import as_path, local_path, unlink


class RunLockedError(RuntimeError):
    """Another live run holds the output folder."""


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot; tells a pid apart from a later reuse), None if
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:  # no /proc (not Linux): existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return -1
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the command name may hold spaces


class RunLock:
    def __init__(self, path: str | Path):
        self.path = as_path(path)
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": process_start_time(os.getpid()),
                   "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv[:8])}
        self.held = False

    def holder(self) -> dict | None:
        try:
            return orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except orjson.JSONDecodeError:
            return {}  # cut while being written: its writer died before finishing, so it is stale

    def is_stale(self, holder: dict) -> bool:
        if not holder:
            return True
        if holder.get("host") != self.me["host"]:
            return False  # another machine's process cannot be checked from here
        started = process_start_time(int(holder.get("pid", -1)))
        return started is None or (holder.get("start_time") not in (None, -1) and started not in (-1, holder["start_time"]))

    def _create(self) -> bool:
        data = orjson.dumps(self.me)
        local = local_path(self.path)
        if local is None:
            if self.path.exists():
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(data)
            return True
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def acquire(self) -> None:
        for _ in range(3):
            if self._create():
                self.held = True
                return
            holder = self.holder()
            if holder is None:
                continue  # released in between
            if holder.get("pid") == self.me["pid"] and holder.get("host") == self.me["host"]:
                raise RunLockedError(f"{self.path}: this process already runs into this folder")
            if not self.is_stale(holder):
                raise RunLockedError(
                    f"{self.path.parent} is in use by pid {holder.get('pid')} on {holder.get('host')} since "
                    f"{holder.get('since')} ({holder.get('command')}): wait for that run, stop it, or use another "
                    f"output_dir. If that run is gone (another host crashed), delete {self.path}.")
            logger.warning(f"{self.path}: taking over the lock of pid {holder.get('pid')} on {holder.get('host')}, "
                           "which is no longer running")
            unlink(self.path)
        raise RunLockedError(f"{self.path}: could not take the lock (another run keeps taking it)")

    def release(self) -> None:
        if self.held and (self.holder() or {}).get("pid") == self.me["pid"]:
            unlink(self.path)
        self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
