"""One writer at a time per feature store.

`store_lock(store)` holds `<store>.lock` (a `filelock` lock, released by the kernel when
the holder dies; the file is removed when the writer finishes) and writes `<store>.lock.holder` with the holder's host, pid, run id and
start time. A second writer meets a one-line error naming the holder. A holder file left
by a process that is gone (same host, pid no longer alive) is taken over with a warning;
a live holder on another host (a shared filesystem where the OS lock may not reach) is
refused by name, with what to do if that run is really gone.

Locks are re-entrant within a process: the extraction holds the lock for a whole run and
the store writer it uses takes it again without waiting for itself.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from raid.primitives.errors import RaidError

log = logging.getLogger(__name__)
_HELD: dict[str, list] = {}  # resolved store path -> [FileLock, depth, holder dict]
_GUARD = threading.Lock()


def lock_paths(store: Path) -> tuple[Path, Path]:
    return store.with_name(store.name + ".lock"), store.with_name(store.name + ".lock.holder")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(h: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.get("since", 0)))
    return f"host {h.get('host', '?')}, pid {h.get('pid', '?')}, since {since}"


def read_holder(store: Path) -> dict | None:
    try:
        return json.loads(lock_paths(store)[1].read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def store_lock(store: str | os.PathLike, run_id: str = "") -> Iterator[dict]:
    """Hold the store's writer lock for the block; yields the holder record (which has
    "took_over" set to a message when a gone holder's lock was taken over)."""
    store = Path(store)
    ident = os.path.abspath(store)
    with _GUARD:
        held = _HELD.get(ident)
        if held is not None:
            held[1] += 1
    if held is not None:
        try:
            yield held[2]
        finally:
            with _GUARD:
                held[1] -= 1
        return
    lock_file, holder_file = lock_paths(store)
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RaidError(f"cannot create the folder: {exc.strerror or exc}", store.parent) from None
    flock = FileLock(str(lock_file), thread_local=False)
    try:
        _acquire(flock, lock_file)
    except Timeout:
        h = read_holder(store)
        who = _describe(h) if h else "another process"
        raise RaidError(f"is being written by another run ({who}); wait for it to finish",
                        store) from None
    except OSError as exc:
        raise RaidError(f"cannot lock for writing: {exc.strerror or exc}", store) from None
    try:
        me = {"host": socket.gethostname(), "pid": os.getpid(), "run": run_id,
              "since": time.time()}
        old = read_holder(store)
        if old and not (old.get("host") == me["host"] and old.get("pid") == me["pid"]):
            if old.get("host") != me["host"]:
                raise RaidError(
                    f"is locked by a run on another host ({_describe(old)}); if that run is "
                    f"gone, delete {holder_file}", store)
            if old.get("host") == me["host"] and _alive(int(old.get("pid", -1))):
                raise RaidError(f"is being written by another run ({_describe(old)}); wait "
                                "for it to finish", store)
            me["took_over"] = (f"took over the lock of a run that is gone "
                               f"({_describe(old)})")
            log.warning("%s: %s", store, me["took_over"])
        holder_file.write_text(json.dumps(me))
    except BaseException:
        flock.release()
        raise
    with _GUARD:
        _HELD[ident] = [flock, 1, me]
    try:
        yield me
    finally:
        with _GUARD:
            _HELD.pop(ident, None)
        holder_file.unlink(missing_ok=True)
        lock_file.unlink(missing_ok=True)  # while still held: see `_acquire`
        flock.release()


def _acquire(flock: FileLock, lock_file: Path) -> None:
    """Take the OS lock without waiting. The lock file is deleted (while held) when a
    writer finishes, so a lock taken on a file that has since been deleted or replaced
    is no lock: check that the file locked is the one at the path, else try again."""
    for _ in range(5):
        flock.acquire(timeout=0)
        try:
            fd = flock._context.lock_file_fd
        except AttributeError:  # another filelock version: no inode check
            return
        try:
            same = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if same:
            return
        flock.release(force=True)
    raise Timeout(str(lock_file))
