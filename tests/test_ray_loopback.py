"""A local Ray run (`--engine ray`, no address) listens on loopback only and prints nothing of Ray's under
`-q`, even when its model actor dies and restarts; nothing of it outlives it (issue 16, items 2 and 13).

One real run of the command in its own process, watched while it runs: every TCP socket in LISTEN state
held by a process below it (the driver, gcs_server, the raylet and its object manager, the agents, the
workers, the restarted actor) must be on 127.0.0.1 or ::1. Before, Ray turned the node IP 127.0.0.1 into
the machine's routable address and every server listened on all interfaces; and the raylet's "The actor
is restarting" lines, with colour codes, reached the terminal under -q.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.clicheck import REPO, alive, descendants, is_loopback, listening_sockets, proc_info
from tests.conftest import copy_subset, example_set

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="ray is not installed (pip install 'deepfake-cli[ray]')"),
              pytest.mark.slow]


def _watch(p: subprocess.Popen, parts) -> tuple[dict, set[int], list[int]]:
    """Until `p` ends: the listening sockets of its process tree ((address, port) -> command), every pid
    seen below it, and the model actor(s) killed (SIGKILL, once, after the first shard is written)."""
    sockets, seen, killed = {}, set(), []
    while p.poll() is None:
        tree = descendants(p.pid)
        seen |= tree
        for address, port, pid in listening_sockets(tree | {p.pid}):
            sockets.setdefault((address, port), (proc_info(pid) or (0, "", "?"))[2][:100])
        if not killed and list(parts.glob("batch_*.npz")):
            actors = [pid for pid in tree if (proc_info(pid) or (0, "", ""))[2].startswith("ray::ModelWorker")]
            for pid in actors:
                os.kill(pid, signal.SIGKILL)
            killed.extend(actors)
        time.sleep(0.1)
    return sockets, seen, killed


def test_a_local_ray_run_listens_on_loopback_only_and_is_quiet_under_q(tmp_path):
    data = copy_subset(example_set("cifake_sd14"), tmp_path / "ds", 6)
    out = tmp_path / "r.h5"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["OMP_NUM_THREADS"] = "1"
    p = subprocess.Popen([sys.executable, "-m", "deepfake_cli", "extract", str(data), "--backbone", "lowlevel",
                          "--engine", "ray", "--batch-size", "2", "--out", str(out), "-q"],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: set[int] = set()
    try:
        sockets, seen, killed = _watch(p, tmp_path / "r.h5.parts")
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        deadline = time.time() + 30
        while time.time() < deadline and any(alive(pid) for pid in seen):
            time.sleep(0.2)
        left = [(pid, proc_info(pid)[2][:80]) for pid in seen if alive(pid)]
        for pid, _ in left:
            os.kill(pid, signal.SIGKILL)
    assert p.returncode == 0, stderr.decode(errors="replace")
    assert b"wrote 12 feature vectors" in stdout
    assert killed, "the model actor was never found, so its restart was not exercised"
    commands = " ".join(sockets.values())
    assert "gcs_server" in commands and "raylet" in commands, f"saw too few listening sockets to judge: {sockets}"
    public = {k: v for k, v in sockets.items() if not is_loopback(k[0])}
    assert not public, f"listening beyond loopback: {public}"
    # -q on a run that succeeded: nothing on stderr, so none of Ray's lines nor its colour codes
    assert stderr == b"", stderr.decode(errors="replace")
    assert not left, f"processes of the run still alive 30 s after it ended: {left}"
