"""One writer per output: an exclusive lock taken before anything is written, released on exit.

`output_lock(out)` holds `fcntl.flock` on `OUT.lock`, a small file naming the holder (pid, host,
command). The kernel drops a flock when its holder dies, so a lock left by a killed process is never
stale: the next run takes it at once. A second process is refused in one line naming the holder.
The lock file is removed on release; an acquirer checks after locking that the file it locked is still
the one at that path (a releaser may have just removed it) and retries otherwise.

A flock belongs to the open file, which a forked child shares: a child still running after its parent
was killed would keep the lock, and the rerun would be refused naming a dead pid. So a forked helper
calls `die_with_parent` (killed with its parent, or exits when it finds itself orphaned), and one that
never writes the output (a reader) also calls `release_inherited` to close its copy of the lock.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from deepfake_cli.errors import DeepfakeError

LOCK_SUFFIX = ".lock"
PR_SET_PDEATHSIG = 1  # prctl(2), Linux
ORPHAN_POLL_SECONDS = 0.2  # how often a helper looks for its parent where the kernel cannot tell it

_held: set[int] = set()  # lock fds this process holds (or holds a copy of, after a fork)


def lock_path(out) -> Path:
    out = Path(out)
    return out.with_name(out.name + LOCK_SUFFIX)


def _holder(path: Path, tries: int = 10, wait: float = 0.02) -> str:
    """Who holds the lock, from the lock file. The holder writes its name just after taking the flock, so a
    reader that comes in between finds the file empty: it looks again for a moment before giving up (a
    holder that could not write, e.g. on a full disk, stays "another process")."""
    for attempt in range(tries):
        try:
            info = json.loads(path.read_text())
            return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command', '?')}, since {info.get('since')})"
        except FileNotFoundError:
            break  # released meanwhile
        except (OSError, ValueError):
            if attempt + 1 < tries:
                time.sleep(wait)
    return "another process"


@contextmanager
def output_lock(out, what: str = "output") -> Iterator[Path]:
    """Hold the lock of `out` for the duration of the block; DeepfakeError if another process has it."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        _held.add(fd)  # before the flock: a fork in between shares the file the lock lands on
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _held.discard(fd)
            os.close(fd)
            raise DeepfakeError(f"{out} is being written by {_holder(path)}; wait for it to finish "
                                f"(or stop it) and rerun.", exit_code=1) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        _held.discard(fd)
        os.close(fd)  # we locked a file a releaser just removed: lock the new one
    else:
        raise DeepfakeError(f"could not take the lock {path}; rerun.", exit_code=1)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:2]) or what,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(info).encode())
        except OSError:  # a full disk: the lock holds without the holder's name (the caller reports the disk)
            pass
        yield path
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        _held.discard(fd)
        os.close(fd)  # closing releases the flock, after the file is gone


def release_inherited() -> None:
    """In a forked child that never writes the output: close its copies of the parent's lock files, so
    the lock lasts exactly as long as the parent (the parent's own copies stay open and locked)."""
    for fd in list(_held):
        _held.discard(fd)
        try:
            os.close(fd)
        except OSError:
            pass


def die_with_parent(parent_pid: int, kernel: bool = True) -> None:
    """In a forked helper of `parent_pid`: end when that process ends, even by kill -9.

    `kernel`: ask Linux to SIGKILL this process when the thread that forked it ends (prctl
    PR_SET_PDEATHSIG), immediate, but right only when that thread lives as long as the process (the main
    thread). Always: a daemon thread that exits the process when it finds itself orphaned (its parent pid
    changed), within ORPHAN_POLL_SECONDS. A helper whose parent already died before this call exits now."""
    if kernel and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the watchdog below still ends the helper
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(ORPHAN_POLL_SECONDS)
        os._exit(1)  # nothing of the parent's exit code is ours to run

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
