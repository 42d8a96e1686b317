"""One writer per output: an exclusive lock taken before anything is written, released on exit.

`output_lock(out)` holds `fcntl.flock` on `OUT.lock`, a small file naming the holder (pid, host,
command). The kernel drops a flock when its holder dies, so a lock left by a killed process is never
stale: the next run takes it at once. A second process is refused in one line naming the holder.
The lock file is removed on release; an acquirer checks after locking that the file it locked is still
the one at that path (a releaser may have just removed it) and retries otherwise.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from deepfake_cli.errors import DeepfakeError

LOCK_SUFFIX = ".lock"


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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DeepfakeError(f"{out} is being written by {_holder(path)}; wait for it to finish "
                                f"(or stop it) and rerun.", exit_code=1) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
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
        os.close(fd)  # closing releases the flock, after the file is gone
