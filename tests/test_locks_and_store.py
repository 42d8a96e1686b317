"""One writer per output (locks) and a feature store that fails in one line on damage and full disks."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import FeatureFileWriter, read_features, read_meta, remove_orphaned_temporaries
from deepfake_cli.safety.locks import lock_path, output_lock
from deepfake_cli.safety import space
from tests.clicheck import damage_feature_file

HOLD = """
import sys, time, pathlib
from deepfake_cli.safety.locks import output_lock
with output_lock(sys.argv[1]):
    pathlib.Path(sys.argv[2]).write_text("held")
    time.sleep(60)
"""


def _holder(tmp_path, out):
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(ready)])
    for _ in range(300):
        if ready.exists():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the holder process never took the lock")


@pytest.mark.slow  # two fresh processes
def test_second_writer_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "x.h5"
    proc = _holder(tmp_path, out)
    try:
        with pytest.raises(DeepfakeError, match=f"pid {proc.pid} on "):
            with output_lock(out):
                pass
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow  # kills a fresh process
def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "x.h5"
    proc = _holder(tmp_path, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_path(out).exists()  # the file remains, but the kernel dropped the flock with the process
    with output_lock(out):
        assert lock_path(out).exists()
    assert not lock_path(out).exists()


def test_lock_is_reentrant_across_sequential_uses(tmp_path):
    out = tmp_path / "y.h5"
    for _ in range(3):
        with output_lock(out):
            pass
    assert not lock_path(out).exists()


def _write(path, n=5, dim=4):
    with FeatureFileWriter(path, {"backbone": "b"}, dim) as w:
        w.append(np.ones((n, dim)), [0, 1] * (n // 2) + [0] * (n % 2), ["d"] * n, [f"p{i}" for i in range(n)],
                 [f"{i:064x}" for i in range(n)])
        return w.close()


@pytest.mark.parametrize("damage", ["no_label", "bad_meta", "short"])
def test_damaged_feature_file_is_one_line(tmp_path, damage):
    path = damage_feature_file(_write(tmp_path / "f.h5"), damage)
    with pytest.raises(DeepfakeError, match="damaged"):
        read_meta(path)
    with pytest.raises(DeepfakeError, match="damaged"):
        read_features(path)
    res = CliRunner().invoke(app, ["info", str(path)])
    assert res.exit_code != 0
    assert "damaged" in res.output and "Traceback" not in res.output


def test_feature_file_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = _write(tmp_path / "f.h5")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_full_disk_is_refused_before_writing(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(space.shutil, "disk_usage", lambda p: usage(10 << 20, 10 << 20, 1 << 20))
    with pytest.raises(DeepfakeError, match="not enough space.*free \\d+ MB and rerun"):
        FeatureFileWriter(tmp_path / "big.h5", {}, 1280, expected_rows=100_000)
    assert list(tmp_path.iterdir()) == []


def test_no_space_while_writing_is_one_line_and_leaves_no_litter(tmp_path, monkeypatch):
    existing = _write(tmp_path / "f.h5")
    before = existing.read_bytes()

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    with pytest.raises(DeepfakeError, match="no space left on device while writing"):
        with FeatureFileWriter(existing, {}, 4) as w:
            monkeypatch.setattr(h5py.Dataset, "resize", full)
            w.append(np.ones((2, 4)), [0, 1], ["d", "d"], ["a", "b"], ["0" * 64, "1" * 64])
    assert existing.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


def test_orphaned_temporaries_are_removed(tmp_path):
    out = tmp_path / "f.h5"
    (tmp_path / "f.h5.tmp-abc123").write_bytes(b"x")
    (tmp_path / "other.h5.tmp-1").write_bytes(b"x")
    removed = remove_orphaned_temporaries(out)
    assert [p.name for p in removed] == ["f.h5.tmp-abc123"]
    assert (tmp_path / "other.h5.tmp-1").exists()
