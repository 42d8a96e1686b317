"""Writers that survive what users and machines do to them (issue 11, items 1-5 and 10).

Every state a kill, a second writer or a full disk can leave is resumable and never looks finished; no
command writes over a file it reads or over another kind of file without --overwrite; artifacts get the
umask's permissions. Kills and full disks are injected at chosen write steps by tests/faultrun.py.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.extract import extract
from deepfake_cli.store.features import read_features
from tests.clicheck import one_line_error, run_cli
from tests.conftest import REPO, assert_same_features, copy_subset, example_set
from tests.faultrun import fill

runner = CliRunner()
# kills at every write step, racing writers, full disks: fresh CLI processes throughout
pytestmark = pytest.mark.slow
FAULTRUN = REPO / "tests" / "faultrun.py"
ARGS = ["--backbone", "lowlevel", "--batch-size", "3", "--workers", "0", "--device", "cpu", "-q"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
KILL_STEPS = ["shard_written:2", "shard_renamed:2", "merge_rows:2", "final_renamed:1", "parts_removing:1"]


def _cli(*args, timeout=180):
    return run_cli(*args, env=ENV, timeout=timeout)


def _fault(step, *args, timeout=180):
    return subprocess.run([sys.executable, str(FAULTRUN), step, *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _extract_args(ds, out):
    return ["extract", str(ds), *ARGS, "--out", str(out)]


def _one_line_error(stderr: str) -> str:
    line = one_line_error(stderr, ignore=("resuming:",))
    assert line is not None, stderr
    return line


def _rows(path) -> dict:
    fs = read_features(path)
    return {d: {c: getattr(fs, c)[fs.dataset == d] for c in ("X", "y", "path", "sha256")} for d in fs.datasets}


def _same_rows_per_dataset(a, b) -> None:
    ra, rb = _rows(a), _rows(b)
    assert sorted(ra) == sorted(rb)
    for d in ra:
        for col in ra[d]:
            np.testing.assert_array_equal(ra[d][col], rb[d][col])


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or p.name.endswith((".partial", ".lock",
                                                                                             ".parts")))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Two labelled sets (6 + 6 images each) and reference files made by uninterrupted CLI runs."""
    root = tmp_path_factory.mktemp("sets")
    a = copy_subset(example_set("cifake_sd14"), root / "a", 6)
    b = copy_subset(example_set("forensynths_biggan"), root / "b", 6)
    for args in (_extract_args(a, root / "ref_a.h5"), _extract_args(a, root / "ref_ab.h5"),
                 _extract_args(b, root / "ref_ab.h5")):
        r = _cli(*args)
        assert r.returncode == 0, r.stderr
    return {"a": a, "b": b, "ref_a": root / "ref_a.h5", "ref_ab": root / "ref_ab.h5"}


# ------------------------------------------------------------------ 4. kills at every write step

@pytest.mark.parametrize("mode", ["new", "append"])
@pytest.mark.parametrize("step", KILL_STEPS)
def test_a_kill_at_each_write_step_resumes_to_the_same_file(sets, tmp_path, step, mode):
    out = tmp_path / "k.h5"
    if mode == "append":
        shutil.copy(sets["ref_a"], out)
    ds, ref = (sets["a"], sets["ref_a"]) if mode == "new" else (sets["b"], sets["ref_ab"])
    before = out.read_bytes() if out.exists() else None
    r = _fault(step, *_extract_args(ds, out))
    assert r.returncode == -9, (r.returncode, r.stderr)
    if step.split(":")[0] in ("final_renamed", "parts_removing"):
        assert_same_features(out, ref)  # the file was complete before the kill
    elif before is None:
        assert not out.exists()  # nothing that looks finished
    else:
        assert out.read_bytes() == before  # an append never touches the file before its final rename
    r = _cli(*_extract_args(ds, out))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert_same_features(out, ref)
    assert _litter(tmp_path) == []  # orphaned temporaries, shards and the dead writer's lock are gone


def test_parts_left_by_a_finished_run_never_block_an_append(sets, tmp_path):
    out = tmp_path / "k.h5"
    assert _fault("final_renamed:1", *_extract_args(sets["a"], out)).returncode == -9
    assert (tmp_path / "k.h5.parts" / "run.json").exists()
    r = _cli(*_extract_args(sets["b"], out))  # other arguments: the stale parts must not make it refuse
    assert r.returncode == 0, r.stderr
    assert_same_features(out, sets["ref_ab"])
    assert _litter(tmp_path) == []


def test_stale_parts_without_dataset_names_or_run_json_are_cleaned_not_adopted(sets, tmp_path):
    out = tmp_path / "f.h5"
    extract([str(sets["a"])], "lowlevel", str(out), batch_size=3, workers=0, device="cpu")
    parts = tmp_path / "f.h5.parts"
    # a run.json of an older version (no dataset names), written before the file was renamed into place
    parts.mkdir()
    (parts / "run.json").write_text('{"signature": "old", "meta": {}}')
    np.savez(parts / "batch_000000.npz", idx=np.arange(3), sha=np.array([b"0" * 64] * 3), X=np.zeros((3, 83)),
             bad=np.asarray("[]"))
    old = time.time() - 60
    os.utime(parts / "run.json", (old, old))
    (parts / "batch_000001.tmp.npz").write_bytes(b"shard name of an old version")
    s = extract([str(sets["b"])], "lowlevel", str(out), batch_size=3, workers=0, device="cpu")
    assert s.resumed_batches == 0 and s.n_written == 12 and not parts.exists()
    ref = tmp_path / "ref.h5"
    extract([str(sets["a"])], "lowlevel", str(ref), batch_size=3, workers=0, device="cpu")
    extract([str(sets["b"])], "lowlevel", str(ref), batch_size=3, workers=0, device="cpu")
    assert_same_features(out, ref)
    # batch files whose run.json is gone (a kill while .parts was removed) are never taken for a new run's
    parts.mkdir()
    np.savez(parts / "batch_000000.npz", idx=np.arange(3), sha=np.array([b"0" * 64] * 3), X=np.zeros((3, 83)),
             bad=np.asarray("[]"))
    out2 = tmp_path / "g.h5"
    shutil.move(str(parts), str(tmp_path / "g.h5.parts"))
    s = extract([str(sets["a"])], "lowlevel", str(out2), batch_size=3, workers=0, device="cpu")
    assert s.resumed_batches == 0
    got, want = _rows(out2)["a"], _rows(ref)["a"]  # dataset a's rows as extracted before, not zeros
    for col in want:
        np.testing.assert_array_equal(got[col], want[col])


# ----------------------------------------------------------------- 3. --overwrite loses nothing silently

def test_overwrite_refuses_to_discard_rows_the_new_command_does_not_replace(sets, tmp_path):
    out = tmp_path / "f.h5"
    shutil.copy(sets["ref_ab"], out)
    before = out.read_bytes()
    (tmp_path / "f.h5.parts").mkdir()  # the case: a stale .parts folder beside a complete file
    (tmp_path / "f.h5.parts" / "run.json").write_text('{"signature": "stale"}')
    with pytest.raises(DeepfakeError, match=r"--overwrite would discard 12 row\(s\) of .*f\.h5.*\(dataset\(s\) a: 12\)"):
        extract([str(sets["b"])], "lowlevel", str(out), overwrite=True, workers=0, device="cpu")
    assert out.read_bytes() == before
    res = runner.invoke(app, ["extract", str(sets["b"]), *ARGS, "--out", str(out), "--overwrite"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "would discard 12 row(s)" in res.output
    # naming every dataset of the file replaces it
    s = extract([str(sets["a"]), str(sets["b"])], "lowlevel", str(out), overwrite=True, batch_size=3, workers=0,
                device="cpu")
    assert s.n_written == 24 and not (tmp_path / "f.h5.parts").exists()
    _same_rows_per_dataset(out, sets["ref_ab"])


def test_a_killed_overwrite_keeps_the_old_file(sets, tmp_path):
    out = tmp_path / "f.h5"
    shutil.copy(sets["ref_a"], out)
    before = out.read_bytes()
    r = _fault("merge_rows:2", *_extract_args(sets["a"], out), "--overwrite")
    assert r.returncode == -9
    assert out.read_bytes() == before  # replaced only by the final rename
    r = _cli(*_extract_args(sets["a"], out), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert_same_features(out, sets["ref_a"])
    assert _litter(tmp_path) == []


# ------------------------------------------------------------------------- 1. one writer per output

def _paused_writer(ds, out):
    proc = subprocess.Popen([sys.executable, str(FAULTRUN), "shard_renamed:1:pause", *_extract_args(ds, out)],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    paused = out.with_name(out.name + ".paused")
    deadline = time.time() + 120
    while not paused.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("second", ["other dataset", "same arguments"])
def test_a_second_extract_into_one_output_is_refused_naming_the_holder(sets, tmp_path, second):
    out = tmp_path / "x.h5"
    first = _paused_writer(sets["a"], out)
    try:
        r = _cli(*_extract_args(sets["b"] if second == "other dataset" else sets["a"], out))
        line = _one_line_error(r.stderr)
        assert r.returncode == 1 and f"is being written by pid {first.pid} on " in line, line
    finally:
        out.with_name(out.name + ".release").write_text("go")
        _, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    assert_same_features(out, sets["ref_a"])  # the refused writer changed nothing
    r = _cli(*_extract_args(sets["b"], out))  # and runs once the first is done
    assert r.returncode == 0, r.stderr
    assert_same_features(out, sets["ref_ab"])


@pytest.mark.parametrize("second", ["other dataset", "same arguments"])
def test_racing_extracts_never_corrupt_the_file(sets, tmp_path, second):
    out = tmp_path / "x.h5"
    other = sets["b"] if second == "other dataset" else sets["a"]
    procs = [subprocess.Popen([sys.executable, "-m", "deepfake_cli", *_extract_args(ds, out)], cwd=REPO, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ds in (sets["a"], other)]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert "Traceback" not in err, err
        assert rc == 0 or (rc == 1 and "is being written by pid" in _one_line_error(err)), (rc, err)
    assert any(rc == 0 for rc, _ in results)
    ref_rows = _rows(sets["ref_ab"])
    for d, rows in _rows(out).items():  # whoever won, each dataset's rows are its own
        for col in rows:
            np.testing.assert_array_equal(rows[col], ref_rows[d][col])


def test_every_writing_command_locks_its_output(sets, tmp_path):
    """train, reduce (--out and --write-features), predict --out, eval --out and study --out refuse while
    another process holds their output."""
    from deepfake_cli.safety.locks import output_lock
    from deepfake_cli.stages.train import train

    feats = tmp_path / "f.h5"
    shutil.copy(sets["ref_ab"], feats)
    model = train(str(feats), "lda", str(tmp_path / "m.model"), test_size=0.3)[0].path
    img = next((sets["a"] / "fake").iterdir())
    cases = {
        "m2.model": ["train", feats, "--classifier", "lda", "--out", tmp_path / "m2.model"],
        "p.reducer": ["reduce", feats, "--method", "pca", "--dim", "2", "--out", tmp_path / "p.reducer"],
        "r.h5": ["reduce", feats, "--method", "pca", "--dim", "2", "--out", tmp_path / "q.reducer",
                 "--write-features", tmp_path / "r.h5"],
        "pred.csv": ["predict", model, img, "--out", tmp_path / "pred.csv"],
        "evalout": ["eval", model, "--features", feats, "--out", tmp_path / "evalout"],
        "study": ["study", REPO / "examples" / "study.toml", "--out", tmp_path / "study"],
    }
    for target, args in cases.items():
        holder = _holder(tmp_path / target)
        try:
            res = runner.invoke(app, [str(a) for a in args])
            assert res.exit_code == 1 and f"is being written by pid {holder.pid}" in res.output, (target, res.output)
            assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, res.output
        finally:
            holder.kill()
            holder.wait()
    with output_lock(tmp_path / "m2.model"):  # and the lock is free again afterwards
        pass


HOLD = """
import sys, time, pathlib
from deepfake_cli.safety.locks import output_lock
with output_lock(sys.argv[1]):
    pathlib.Path(sys.argv[2]).write_text("held")
    time.sleep(120)
"""


def _holder(out):
    ready = out.with_name(out.name + ".held")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(ready)])
    deadline = time.time() + 60
    while not ready.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    return proc


# ------------------------------------------------------------------------------- 5. full disk

@pytest.fixture
def tiny_fs(tmp_path):
    """A real 4 MB tmpfs (skipped where this process may not mount one); always unmounted."""
    d = tmp_path / "fs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fs_litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or p.name.endswith((".partial", ".lock")))


def test_full_disk_before_the_run_is_refused_early(sets, tiny_fs):
    out = tiny_fs / "x.h5"
    fill(tiny_fs)
    r = _cli(*_extract_args(sets["a"], out))
    line = _one_line_error(r.stderr)
    assert r.returncode == 1 and "not enough space to write" in line and "free" in line and " MB" in line
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["zz_filler.bin"]
    (tiny_fs / "zz_filler.bin").unlink()
    assert _cli(*_extract_args(sets["a"], out)).returncode == 0
    assert_same_features(out, sets["ref_a"])


@pytest.mark.parametrize("step, says", [
    ("shard_renamed:1:fill", "no space left on device while writing"),   # while writing shards
    ("merge_rows:2:fill", "no space left on device while writing"),      # in the middle of the merge
    ("shard_renamed:4:fill", "not enough space to write"),                # refused before the merge
])
def test_full_disk_during_an_append_is_one_line_and_resumable(sets, tiny_fs, step, says):
    out = tiny_fs / "x.h5"
    shutil.copy(sets["ref_a"], out)
    before = out.read_bytes()
    r = _fault(step, *_extract_args(sets["b"], out))
    line = _one_line_error(r.stderr)
    assert r.returncode == 1, (r.returncode, r.stderr)  # not a segfault (139) nor a traceback
    assert says in line and "x.h5" in line and "unchanged" in line and re.search(r"free \d+ MB", line), line
    assert out.read_bytes() == before  # the previous file is intact
    assert _fs_litter(tiny_fs) == []  # no temporary shard or merge file
    (tiny_fs / "zz_filler.bin").unlink()  # free the space and rerun
    r = _cli(*_extract_args(sets["b"], out))
    assert r.returncode == 0, r.stderr
    assert_same_features(out, sets["ref_ab"])
    assert sorted(p.name for p in tiny_fs.iterdir()) == ["x.h5"]


def test_full_disk_simulated_where_no_tmpfs_can_be_mounted(sets, tmp_path, monkeypatch):
    """The same guarantees without a small file system: free space reported small, then a write failing."""
    import deepfake_cli.safety.space as space

    out = tmp_path / "x.h5"
    usage = namedtuple("usage", "total used free")
    with monkeypatch.context() as m:
        m.setattr(space.shutil, "disk_usage", lambda p: usage(8 << 20, 8 << 20, 64 << 10))
        res = runner.invoke(app, _extract_args(sets["a"], out))
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "not enough space to write" in res.output
    assert list(tmp_path.iterdir()) == []

    real_savez, calls = np.savez, []

    def savez(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(np, "savez", savez)
        res = runner.invoke(app, _extract_args(sets["a"], out))
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert "no space left on device while writing" in res.output and "unchanged" in res.output
    assert not out.exists() and _fs_litter(tmp_path) == []
    assert sorted(p.name for p in (tmp_path / "x.h5.parts").iterdir()) == ["batch_000000.npz", "run.json"]
    res = runner.invoke(app, _extract_args(sets["a"], out))
    assert res.exit_code == 0, res.output
    _same_rows_per_dataset(out, sets["ref_a"])


# ------------------------------------------------------- 2. never over an input, never over a foreign file

@pytest.fixture(scope="module")
def trained(sets, tmp_path_factory):
    d = tmp_path_factory.mktemp("trained")
    from deepfake_cli.stages.train import train

    feats = d / "f.h5"
    shutil.copy(sets["ref_ab"], feats)
    model = train(str(feats), "lda", str(d / "lda.model"), test_size=0.3)[0].path
    return {"features": feats, "model": model, "dir": d}


def _refused(args, says, exit_code=2):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == exit_code and says in res.output, (args, res.output)
    assert res.output.count("\n") == 1 and "Traceback" not in res.output, res.output
    return res


def test_no_command_writes_over_a_file_it_reads(trained, sets, tmp_path):
    feats, model = trained["features"], trained["model"]
    ds = copy_subset(example_set("cifake_sd14"), tmp_path / "imgs", 2)
    img = sorted((ds / "fake").iterdir())[0]
    (tmp_path / "link.csv").symlink_to(img)
    os.link(model, tmp_path / "hard.csv")
    snapshot = {p: p.read_bytes() for p in (feats, model, img)}
    for overwrite in ([], ["--overwrite"]):
        _refused(["predict", model, img, "--out", img] + overwrite, "is read by this command")
        _refused(["predict", model, ds, "--out", img] + overwrite, "which is read by this command")
        _refused(["predict", model, img, "--out", model] + overwrite, "is read by this command")
        _refused(["predict", model, img, "--out", tmp_path / "link.csv"] + overwrite, "is read by this command")
        _refused(["predict", model, img, "--out", tmp_path / "hard.csv"] + overwrite, "is read by this command")
        _refused(["train", feats, "--classifier", "lda", "--out", feats] + overwrite, "is read by this command")
        _refused(["reduce", feats, "--method", "pca", "--dim", "2", "--out", feats] + overwrite,
                 "is read by this command")
        _refused(["reduce", feats, "--method", "pca", "--dim", "2", "--out", tmp_path / "p.reducer",
                  "--write-features", feats] + overwrite, "is read by this command")
        _refused(["extract", f"x={img}", *ARGS, "--out", img] + overwrite, "is read by this command")
    # eval: an input lying in --out under one of eval's output names
    evald = tmp_path / "evalout"
    evald.mkdir()
    shutil.copy(model, evald / "eval.csv")
    before = (evald / "eval.csv").read_bytes()
    _refused(["eval", evald / "eval.csv", "--features", feats, "--out", evald, "--overwrite"],
             "is read by this command")
    assert (evald / "eval.csv").read_bytes() == before
    for p, data in snapshot.items():
        assert p.read_bytes() == data
    _refused(["reduce", feats, "--method", "pca", "--dim", "2", "--out", tmp_path / "same",
              "--write-features", tmp_path / "same"], "--out and --write-features name the same file")


def test_foreign_files_are_replaced_only_with_overwrite(trained, sets, tmp_path):
    feats, model = trained["features"], trained["model"]
    img = sorted((sets["a"] / "fake").iterdir())[0]
    notes = tmp_path / "notes.txt"
    for args, kind in (
        (["predict", model, img, "--out", notes], "predictions file"),
        (["train", feats, "--classifier", "lda", "--out", notes], "model file"),
        (["reduce", feats, "--method", "pca", "--dim", "2", "--out", notes], "reducer file"),
        (["reduce", feats, "--method", "pca", "--dim", "2", "--out", tmp_path / "p.reducer", "--write-features", notes],
         "feature file"),
        (["extract", sets["a"], *ARGS, "--out", notes], "feature file"),
    ):
        notes.write_text("my notes\n")
        _refused(args, f"exists and is a file that this command does not write, not a deepfake-cli {kind}"
                 if kind != "predictions file" else "not a predictions file")
        assert notes.read_text() == "my notes\n"
        res = runner.invoke(app, [str(a) for a in args] + ["--overwrite"])
        assert res.exit_code == 0, (args, res.output)
        assert notes.read_bytes() != b"my notes\n"
    # another of our artifacts is foreign too: a model is not a feature file
    _refused(["extract", sets["a"], *ARGS, "--out", model], "is a deepfake-cli model file, not a deepfake-cli feature")
    _refused(["train", feats, "--classifier", "lda", "--out", tmp_path / "p.reducer"], "is a deepfake-cli reducer file")
    # the command's own kind is replaced as before
    for _ in range(2):
        res = runner.invoke(app, ["predict", str(model), str(img), "--out", str(tmp_path / "p.csv")])
        assert res.exit_code == 0, res.output
    evald = tmp_path / "e"
    evald.mkdir()
    (evald / "eval.md").write_text("my report\n")
    _refused(["eval", model, "--features", feats, "--out", evald], "not a file written by `deepfake eval`")
    assert runner.invoke(app, ["eval", str(model), "--features", str(feats), "--out", str(evald),
                               "--overwrite"]).exit_code == 0
    assert runner.invoke(app, ["eval", str(model), "--features", str(feats), "--out", str(evald)]).exit_code == 0


# --------------------------------------------------------------------------------------- 10. umask

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_artifacts_respect_the_umask(sets, tmp_path, mask, mode):
    from deepfake_cli.inference.runner import BatchResult
    from deepfake_cli.inference.shards import ShardStore

    old = os.umask(mask)
    try:
        feats = tmp_path / "f.h5"
        extract([str(sets["a"]), str(sets["b"])], "lowlevel", str(feats), batch_size=6, workers=0, device="cpu")
        img = sorted((sets["a"] / "fake").iterdir())[0]
        for args in (["train", feats, "--classifier", "lda", "--test-size", "0.3", "--out", tmp_path / "m.model"],
                     ["reduce", feats, "--method", "pca", "--dim", "2", "--out", tmp_path / "p.reducer",
                      "--write-features", tmp_path / "r.h5"],
                     ["predict", tmp_path / "m.model", img, "--out", tmp_path / "pred.csv"],
                     ["eval", tmp_path / "m.model", "--features", feats, "--out", tmp_path / "ev"],
                     ["report", tmp_path / "ev" / "eval.csv", "--out", tmp_path / "rep"]):
            res = runner.invoke(app, [str(a) for a in args])
            assert res.exit_code == 0, (args, res.output)
        store = ShardStore(tmp_path / "s.parts")
        store.begin("sig", {"dtype": "float32"})
        store.write(BatchResult(0, [0], ["0" * 64], np.zeros((1, 3), np.float32), []))
        files = [feats, tmp_path / "m.model", tmp_path / "p.reducer", tmp_path / "r.h5", tmp_path / "pred.csv",
                 *sorted((tmp_path / "ev").iterdir()), tmp_path / "rep" / "report.md",
                 *sorted((tmp_path / "rep" / "figures").iterdir())[:2],
                 tmp_path / "s.parts" / "batch_000000.npz", tmp_path / "s.parts" / "run.json"]
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files if p.is_file()}
    assert len(modes) >= 12
    assert set(modes.values()) == {oct(mode)}, modes



def test_temporaries_of_killed_writers_are_removed_under_the_lock(trained, tmp_path):
    feats, model = trained["features"], trained["model"]
    litter = [tmp_path / ".m.model.abcd1234.partial", tmp_path / ".p.reducer.x_y_z_12.partial",
              tmp_path / "r.h5.tmp-k3j4h5g6", tmp_path / ".pred.csv.zzzzzzzz.partial"]
    keep = tmp_path / ".m.model.other.partial"  # not a name the writer's temporaries can have
    for p in litter + [keep]:
        p.write_bytes(b"half written")
    img = next((example_set("cifake_sd14") / "fake").iterdir())
    for args in (["train", feats, "--classifier", "lda", "--out", tmp_path / "m.model"],
                 ["reduce", feats, "--method", "pca", "--dim", "2", "--out", tmp_path / "p.reducer",
                  "--write-features", tmp_path / "r.h5"],
                 ["predict", model, img, "--out", tmp_path / "pred.csv"]):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
    assert [p for p in litter if p.exists()] == [] and keep.exists()


def test_no_output_lands_on_an_image_named_in_a_list(tmp_path):
    from typer.testing import CliRunner

    from deepfake_cli.cli import app
    from tests.conftest import copy_subset, example_set

    data = copy_subset(example_set("cifake_sd14"), tmp_path / "imgs", 2)
    images = sorted(data.rglob("*.jpg"))
    lst = tmp_path / "lists" / "l.csv"
    lst.parent.mkdir()
    lst.write_text("path,label\n" + "".join(f"../imgs/{p.relative_to(data).as_posix()},{p.parent.name}\n"
                                            for p in images))
    before = images[0].read_bytes()
    for args in (["extract", f"x={lst}", "--backbone", "lowlevel", "--out", str(images[0])],
                 ["predict", str(tmp_path / "m.model"), str(lst), "--out", str(images[0])]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code != 0 and "is read by this command" in res.output, res.output
        assert "Traceback" not in res.output
    assert images[0].read_bytes() == before
