"""The extract stage end to end on real images: store, corrupt files, resume after a kill, appends, and
the runner seam (a second engine gives the same file; a failed one resumes)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.extract import extract
from deepfake_cli.store.features import read_features, read_meta
from deepfake_cli.inference.runner import BatchResult, LocalRunner
from tests.conftest import REPO, assert_same_features, copy_subset, example_set

runner = CliRunner()


def test_lowlevel_extraction_writes_a_complete_store(small_sets, tmp_path):
    biggan, cifake = small_sets
    out = tmp_path / "f.h5"
    s = extract([str(biggan), f"cf={cifake}"], backbone="lowlevel", out=str(out), batch_size=5)
    assert s.n_written == 24 and s.n_skipped == 0
    fs = read_features(out)
    assert fs.X.shape == (24, fs.meta["dim"]) and np.isfinite(fs.X).all()
    assert fs.datasets == ["biggan", "cf"]
    assert sorted(fs.y[fs.dataset == "cf"].tolist()) == [0] * 6 + [1] * 6
    assert all(len(h) == 64 for h in fs.sha256)
    assert fs.meta["backbone"] == "lowlevel" and fs.meta["transform"] == "none"
    assert fs.meta["roots"]["cf"] == str(cifake.resolve())
    with h5py.File(out) as f:  # chunked and compressed, as promised
        assert f["features"].chunks is not None and f["features"].compression == "gzip"
    # Features are per image, not per batch: a different batch size gives the same numbers.
    out2 = tmp_path / "g.h5"
    extract([str(biggan), f"cf={cifake}"], backbone="lowlevel", out=str(out2), batch_size=24)
    np.testing.assert_allclose(read_features(out2).X, fs.X, rtol=1e-5, atol=1e-6)


def test_corrupt_files_are_skipped_counted_and_listed(tmp_path):
    root = copy_subset(example_set("cifake_sd14"), tmp_path / "ds", 4)
    good = sorted((root / "fake").iterdir())[0]
    (root / "fake" / "zero.jpg").write_bytes(b"")
    (root / "fake" / "trunc.jpg").write_bytes(good.read_bytes()[:200])
    (root / "real" / "text.png").write_text("not an image")
    shutil.copy(good, root / "fake" / "copy_of_first.jpg")
    res = runner.invoke(app, ["extract", str(root), "--backbone", "lowlevel", "--out", str(tmp_path / "o.h5"),
                              "--batch-size", "3", "-q"])
    assert res.exit_code == 0, res.output
    assert "skipped 3 unreadable, 1 duplicate" in res.output.replace("\n", " ")
    meta = read_meta(tmp_path / "o.h5")
    reasons = {r["path"]: r["reason"] for r in meta["skipped"]}
    assert set(reasons) == {"fake/zero.jpg", "fake/trunc.jpg", "real/text.png"}
    assert "empty" in reasons["fake/zero.jpg"] and "not an image" in reasons["real/text.png"]
    assert meta["n"] == 9
    assert [sorted(g) for g in meta["duplicates"]] == [sorted(["ds/fake/" + good.name, "ds/fake/copy_of_first.jpg"])]
    info = runner.invoke(app, ["info", str(tmp_path / "o.h5")])
    assert info.exit_code == 0 and "lowlevel" in info.output and "trunc.jpg" in info.output


def test_append_and_refusals(small_sets, tmp_path):
    biggan, cifake = small_sets
    out = tmp_path / "f.h5"
    extract([str(biggan)], backbone="lowlevel", out=str(out))
    first = read_features(out)
    s = extract([str(cifake)], backbone="lowlevel", out=str(out))
    assert s.n_written == 12
    both = read_features(out)
    assert both.datasets == ["biggan", "cifake"] and len(both) == 24
    np.testing.assert_array_equal(both.X[:12], first.X)
    # Same command again: nothing to do, nothing lost.
    s = extract([str(cifake)], backbone="lowlevel", out=str(out))
    assert s.already_present == ["cifake"] and len(read_features(out)) == 24
    with pytest.raises(DeepfakeError, match="transform"):
        extract([f"other={cifake}"], backbone="lowlevel", out=str(out), transform="blur")
    res = runner.invoke(app, ["extract", f"other={cifake}", "--backbone", "effnet-lite0", "--out", str(out), "-q"])
    assert res.exit_code != 0 and "backbone" in res.output and "Traceback" not in res.output
    assert len(read_features(out)) == 24


def test_not_a_feature_file_is_refused(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"nope")
    with pytest.raises(DeepfakeError, match="not an HDF5"):
        read_features(bad)
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["a"] = [1]
    with pytest.raises(DeepfakeError, match="not one written"):
        read_features(tmp_path / "y.h5")
    res = runner.invoke(app, ["info", str(tmp_path / "missing.h5")])
    assert res.exit_code == 2


def test_transform_is_recorded_and_changes_features(small_sets, tmp_path):
    biggan, _ = small_sets
    extract([str(biggan)], backbone="lowlevel", out=str(tmp_path / "a.h5"))
    extract([str(biggan)], backbone="lowlevel", out=str(tmp_path / "b.h5"), transform="blur@1", seed=1)
    a, b = read_features(tmp_path / "a.h5"), read_features(tmp_path / "b.h5")
    assert b.meta["transform"] == "blur@1" and b.meta["seed"] == 1
    assert not np.allclose(a.X, b.X)
    np.testing.assert_array_equal(a.sha256, b.sha256)


def _cli(*args):
    return [sys.executable, "-m", "deepfake_cli", *args]


@pytest.mark.slow  # kills a fresh process and resumes
def test_resume_after_killed_process_gives_theassert_same_features(tmp_path):
    src = copy_subset(example_set("forensynths_biggan"), tmp_path / "bg", 14)
    out = tmp_path / "killed.h5"
    parts = tmp_path / "killed.h5.parts"
    args = ["extract", str(src), "--backbone", "effnet-lite0", "--batch-size", "2", "--workers", "0",
            "--out", str(out), "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(_cli(*args), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("batch_*.npz"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shards = len(list(parts.glob("batch_*.npz")))
    assert 3 <= shards < 14, "the run finished before it could be killed"
    assert not out.exists()  # nothing that looks finished
    # Rerun: resumes from the shards it has.
    res = subprocess.run(_cli(*args[:-1]), cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    assert not parts.exists()
    ref = tmp_path / "ref.h5"
    # The reference runs the same way (same thread count), so the numbers must match exactly.
    ref_args = [a if a != str(out) else str(ref) for a in args]
    assert subprocess.run(_cli(*ref_args), cwd=REPO, env=env, capture_output=True).returncode == 0
    a, b = read_features(out), read_features(ref)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.path, b.path)
    np.testing.assert_array_equal(a.sha256, b.sha256)
    np.testing.assert_array_equal(a.y, b.y)
    ma, mb = a.meta, b.meta
    ma.pop("created"), mb.pop("created")
    assert ma == mb


def test_resume_refuses_other_arguments(small_sets, tmp_path):
    biggan, _ = small_sets
    out = tmp_path / "f.h5"
    parts = tmp_path / "f.h5.parts"
    parts.mkdir()
    (parts / "run.json").write_text(json.dumps({"signature": "something-else"}))
    with pytest.raises(DeepfakeError, match="--overwrite"):
        extract([str(biggan)], backbone="lowlevel", out=str(out))
    s = extract([str(biggan)], backbone="lowlevel", out=str(out), overwrite=True)
    assert s.n_written == 12 and not parts.exists()


class ReversedThreadRunner:
    """A second engine written against the Runner interface alone: every batch read and embedded in a
    background thread, last batch first, straight from the job's reader and mapper (no DataLoader)."""

    def __init__(self):
        self.seen: list[int] = []

    def run(self, job, batches):
        results: queue.Queue = queue.Queue()

        def work():
            for b in reversed(batches):
                read = job.reader.read_batch(job.items, b.indices)
                results.put(BatchResult(b.no, read.ok_indices, read.sha256s, job.mapper(read.inputs),
                                        read.failures, {"read": 0.001, "model": 0.002}))
            results.put(None)

        threading.Thread(target=work, daemon=True).start()
        while (r := results.get()) is not None:
            self.seen.append(r.batch_no)
            yield r


class DiesAfter:
    """A runner that delivers `n` batches of the local runner and then fails, as a crashed engine would."""

    def __init__(self, n: int):
        self.n = n

    def run(self, job, batches):
        for k, r in enumerate(LocalRunner(workers=0).run(job, batches)):
            if k == self.n:
                raise RuntimeError("engine lost")
            yield r


def _with_broken_files(root):
    (root / "fake" / "zero.jpg").write_bytes(b"")
    (root / "real" / "text.png").write_text("not an image")
    return root


@pytest.mark.slow  # a process-pool runner
def test_a_second_runner_gives_theassert_same_features(small_sets, tmp_path):
    biggan, cifake = small_sets
    _with_broken_files(cifake)
    args = dict(inputs=[str(biggan), f"cf={cifake}"], backbone="lowlevel", batch_size=5, device="cpu")
    local = extract(out=str(tmp_path / "local.h5"), runner=LocalRunner(workers=0), **args)
    engine = ReversedThreadRunner()
    other = extract(out=str(tmp_path / "other.h5"), runner=engine, **args)
    assert engine.seen == [5, 4, 3, 2, 1, 0]  # 26 items in batches of 5, delivered last first
    assert_same_features(tmp_path / "local.h5", tmp_path / "other.h5")
    assert other.n_written == local.n_written == 24 and other.skipped == local.skipped
    assert [r["path"] for r in other.skipped] == ["fake/zero.jpg", "real/text.png"]  # item order, not delivery order
    assert other.seconds["read"] == pytest.approx(0.006) and other.seconds["model"] == pytest.approx(0.012)
    assert other.seconds["write"] > 0 and other.seconds["total"] >= other.seconds["write"]


def test_a_failed_engine_resumes_with_only_the_missing_batches(small_sets, tmp_path):
    biggan, _ = small_sets
    out, parts = tmp_path / "f.h5", tmp_path / "f.h5.parts"
    with pytest.raises(RuntimeError, match="engine lost"):
        extract([str(biggan)], "lowlevel", str(out), batch_size=3, runner=DiesAfter(2))
    assert sorted(p.name for p in parts.glob("batch_*.npz")) == ["batch_000000.npz", "batch_000001.npz"]
    assert not out.exists()
    # a temporary left by a crash in the middle of writing a shard is not taken for a finished batch
    (parts / ".batch_000002.npz.x1y2.partial").write_bytes(b"half a shard")
    engine = ReversedThreadRunner()
    s = extract([str(biggan)], "lowlevel", str(out), batch_size=3, runner=engine)
    assert engine.seen == [3, 2] and s.resumed_batches == 2 and s.n_processed == 6
    assert not parts.exists()
    extract([str(biggan)], "lowlevel", str(tmp_path / "ref.h5"), batch_size=3)
    assert_same_features(out, tmp_path / "ref.h5")


def test_cli_errors_are_one_line(tmp_path):
    res = subprocess.run(_cli("extract", str(tmp_path / "nothing"), "--backbone", "lowlevel", "--out",
                              str(tmp_path / "o.h5")), cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and "Traceback" not in res.stderr
    res = subprocess.run(_cli("extract", str(example_set("forensynths_stylegan")), "--backbone", "no-such-net", "--out",
                              str(tmp_path / "o.h5")), cwd=REPO, capture_output=True, text=True)
    assert res.returncode != 0 and "Traceback" not in res.stderr and "no-such-net" in res.stderr
    res = runner.invoke(app, ["extract", str(example_set("forensynths_stylegan")), "--backbone", "lowlevel",
                              "--engine", "nope", "--out", str(tmp_path / "o.h5")])
    assert res.exit_code != 0 and "unknown engine 'nope'" in res.output and "local" in res.output
    assert not (tmp_path / "o.h5").exists()


def test_backbones_command_lists_registry():
    res = runner.invoke(app, ["backbones", "--json"])
    assert res.exit_code == 0
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert {"effnet-lite0", "lowlevel", "clip-vit-b16", "dino-vit-b16", "dino-resnet50"} <= set(rows)
    assert rows["effnet-lite0"]["weights_present"] is True


def test_version_and_help():
    from deepfake_cli import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = runner.invoke(app, ["extract", "--help"])
    assert res.exit_code == 0 and "--backbone" in res.output and "--transform" in res.output
