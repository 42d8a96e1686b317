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
