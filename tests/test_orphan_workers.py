"""kill -9 of an `extract` leaves none of its child processes running and no lock held: the rerun
started right after the kill takes the lock and resumes from the shards the killed run wrote (issue 16,
item 9). Before, the orphaned DataLoader workers read on for up to 5 s holding their copy of the output's
flock, and the rerun was refused naming the dead pid; the child that writes the merged file
(`recovery.isolated`) went on writing, and holding the lock, after its parent was killed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.clicheck import REPO, alive, descendants, proc_info
from tests.conftest import copy_subset, example_set

READER_GONE_WITHIN = 2.0  # seconds after the kill (torch's own watchdog alone takes up to 5 s)
ENV = dict(os.environ, OMP_NUM_THREADS="1")
pytestmark = pytest.mark.slow  # kills fresh extract processes and reruns them


@pytest.fixture(scope="module")
def noise_images(tmp_path_factory) -> Path:
    """48 real + 48 fake small noise PNGs: 24 batches of 4, a few seconds of work for two readers."""
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for cls in ("real", "fake"):
        (root / cls).mkdir()
        for i in range(48):
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(root / cls / f"{i:03d}.png")
    return root


def _extract(images: Path, out: Path, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "deepfake_cli", "extract", str(images), "--backbone", "lowlevel", "--workers", "2",
           "--batch-size", "4", "--out", str(out), "-q"]
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, text=True, **kw)


def _wait_gone(pids, within: float = READER_GONE_WITHIN) -> list[int]:
    """The pids still alive `within` seconds from now (polling)."""
    deadline = time.time() + within
    while time.time() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


def _wait_for_shard(p: subprocess.Popen, parts: Path, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not list(parts.glob("batch_*.npz")):
        assert p.poll() is None, "the run ended before it wrote a shard: too little work to kill it midway"
        assert time.time() < deadline, "no shard written in time"
        time.sleep(0.02)


def test_readers_die_with_a_killed_extract_and_the_rerun_resumes(noise_images, tmp_path):
    out = tmp_path / "f.h5"
    first = _extract(noise_images, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    readers: set[int] = set()
    rerun = None
    try:
        _wait_for_shard(first, tmp_path / "f.h5.parts")
        readers = {pid for pid in descendants(first.pid) if proc_info(pid)[0] == first.pid}
        assert len(readers) >= 2, f"expected the two reader processes below the run, found {readers}"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        rerun = _extract(noise_images, out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # at once
        left = _wait_gone(readers)
        assert not left, f"readers of the killed run still alive {READER_GONE_WITHIN} s later: {left}"
        stdout, stderr = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, stderr
        resumed = re.search(r"resuming: (\d+) of 96 images already extracted", stderr)
        assert resumed and int(resumed.group(1)) >= 4, stderr  # at least the shard seen above was kept
        assert "wrote 96 feature vectors" in stdout
        assert not (tmp_path / "f.h5.lock").exists() and not (tmp_path / "f.h5.parts").exists()
    finally:
        for p in (first, rerun):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        for pid in readers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_merge_writer_dies_with_a_killed_extract_and_the_rerun_finishes(tmp_path):
    """The merge runs in a forked child that holds the lock (it writes); paused there, the parent is killed."""
    data = copy_subset(example_set("forensynths_biggan"), tmp_path / "ds", 4)
    out = tmp_path / "m.h5"
    args = ["extract", str(data), "--backbone", "lowlevel", "--workers", "0", "--batch-size", "4", "--out", str(out),
            "-q"]
    paused = tmp_path / "m.h5.paused"
    first = subprocess.Popen([sys.executable, str(REPO / "tests" / "faultrun.py"), "merge_rows:1:pause", *args],
                             cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    writer = None
    try:
        deadline = time.time() + 180
        while not paused.exists() or not paused.read_text():
            assert first.poll() is None and time.time() < deadline, "the run never reached the merge"
            time.sleep(0.05)
        writer = int(paused.read_text())
        assert writer != first.pid and proc_info(writer)[0] == first.pid  # the forked writer, paused
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        left = _wait_gone([writer])
        assert not left, f"the merge writer outlived its killed parent by {READER_GONE_WITHIN} s"
        rerun = subprocess.run([sys.executable, "-m", "deepfake_cli", *args], cwd=REPO, env=ENV,
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert "resuming: 8 of 8 images already extracted" in rerun.stderr
        assert "wrote 8 feature vectors" in rerun.stdout
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if writer is not None and alive(writer):
            os.kill(writer, signal.SIGKILL)
