"""Running the `deepfake` CLI as its own process and judging how it ended (a test harness, not shipped).

One definition of "a one-line error" (non-zero exit, exactly one `error: ...` line on stderr, no
traceback), shared by the hardening tests and benchmarks/adversarial_cli.py, and the ways a feature
file gets damaged. Imports nothing of the package, so a benchmark can use it before building anything.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def drop_root_privileges() -> None:
    """In the child before exec: root keeps its uid but loses the right to read and search any folder
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as an ordinary user is."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # PR_CAPBSET_DROP = 24
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_cli(*args, env: dict | None = None, timeout: float = 300,
            unprivileged: bool = False) -> subprocess.CompletedProcess:
    """`python -m deepfake_cli ARGS...` in the repository (default env: OMP_NUM_THREADS=1).
    `unprivileged`: when run as root, without root's right to read what permissions forbid."""
    return subprocess.run([sys.executable, "-m", "deepfake_cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1") if env is None else env,
                          preexec_fn=drop_root_privileges if unprivileged and os.geteuid() == 0 else None)


def one_line_error(stderr: str, ignore: tuple[str, ...] = ()) -> str | None:
    """The `error: ...` line when it is the only non-blank line of `stderr` (lines starting with one of
    `ignore` aside) and there is no traceback; else None."""
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(ignore)]
    if len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr:
        return lines[0]
    return None


def outcome(returncode: int, stderr: str) -> tuple[str, str]:
    """("one-line", the error line), ("ok", the last stderr line) or ("BAD", the end of stderr).

    BAD: killed by a signal, a traceback, an "internal error" (the CLI's safety net caught a bug), or a
    non-zero exit without exactly one error line.
    """
    if returncode < 0 or "Traceback" in stderr or "internal error" in stderr:
        return "BAD", stderr.strip()[-300:]
    if returncode == 0:
        return "ok", (stderr.strip().splitlines() or [""])[-1]
    line = one_line_error(stderr)
    return ("one-line", line) if line is not None else ("BAD", stderr.strip()[-300:])


FEATURE_FILE_DAMAGES = ("no_label", "bad_meta", "no_meta", "short")


def damage_feature_file(path, damage: str) -> Path:
    """Break a feature file in place as files get broken: a dataset gone (`no_label`), metadata that is not
    JSON (`bad_meta`) or absent (`no_meta`), a column shorter than the others (`short`)."""
    import h5py  # only here: the module itself stays free of the project's dependencies

    if damage not in FEATURE_FILE_DAMAGES:
        raise ValueError(f"unknown damage {damage!r}; choose from {FEATURE_FILE_DAMAGES}")
    with h5py.File(path, "a") as f:
        if damage == "no_label":
            del f["label"]
        elif damage == "bad_meta":
            f.attrs["meta"] = "{not json"
        elif damage == "no_meta":
            del f.attrs["meta"]
        else:
            f["path"].resize(2, axis=0)
    return Path(path)


# --- processes and their sockets, from /proc (Linux) -------------------------------------------------

def proc_info(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state letter, command line) of a process, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], cmd or stat[stat.index("(") + 1:stat.rindex(")")]


def alive(pid: int) -> bool:
    """Running (a zombie has exited: only its exit status is left)."""
    info = proc_info(pid)
    return info is not None and info[1] != "Z"


def descendants(root: int) -> set[int]:
    """The live processes below `root` (not `root` itself)."""
    parent = {}
    for d in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{d}/stat").read_text() if d.isdigit() else ""
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split() if stat else ()
        if fields and fields[0] != "Z":
            parent[int(d)] = int(fields[1])
    below, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - below
        below |= frontier
    return below


def _hex_ip(text: str) -> str:
    import ipaddress

    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    return str(ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))


def listening_sockets(pids) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state that one of `pids` has open."""
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[int(target[8:-1])] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[9]) in owner:  # 0A: TCP_LISTEN
                addr, port = cols[1].split(":")
                found.append((_hex_ip(addr), int(port, 16), owner[int(cols[9])]))
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4 loopback address in IPv6 form (::ffff:127.0.0.1)."""
    import ipaddress

    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class FifoWatch:
    """A FIFO at `path` that tells whether anything opened it for reading, without ever blocking a test:
    a thread waits to open it for writing (which returns once a reader opens it) and closes it at once,
    so a reader sees end of file instead of hanging. `opened` says whether a reader came; leaving the
    block releases the thread."""

    def __init__(self, path):
        import threading

        self.path = Path(path)
        os.mkfifo(self.path)
        self._came = threading.Event()
        self._thread = threading.Thread(target=self._wait_for_reader, daemon=True)
        self._thread.start()

    def _wait_for_reader(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # blocks until a reader opens the FIFO
        self._came.set()
        os.close(fd)

    @property
    def opened(self) -> bool:
        return self._came.wait(0.2)

    def release(self) -> bool:
        """Whether a reader came; then unblock the thread (by opening the FIFO ourselves) and end it."""
        came = self.opened
        if not came:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(5)
            os.close(fd)
        self._thread.join(5)
        return came

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
