"""Scale-out: tar shards and lists as extraction sources, and the Ray engine.

The Ray tests share one local cluster (2 CPUs, bound to 127.0.0.1, no dashboard) and are skipped
cleanly where `ray` is not importable. They check that the ray engine writes the local engine's file
(same rows, order, hashes, skipped list; features within float tolerance), resumes from shards a
failed run left, survives its model actor being killed by pid with every image exactly once, and that
no Ray process outlives the tests.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.extract import extract
from deepfake_cli.store.features import read_features
from deepfake_cli.inference.runner import LocalRunner
from tests.conftest import assert_same_features, copy_subset, example_set
from tests.imagegen import add_member, write_shard

HAS_RAY = importlib.util.find_spec("ray") is not None
_no_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install 'deepfake-cli[ray]')")


def needs_ray(test):
    """A test on the shared Ray cluster: skipped without ray, and slow (the cluster takes a while)."""
    return pytest.mark.slow(_no_ray(test))

cli = CliRunner()


# --- inputs ----------------------------------------------------------------------------------------

def _folder(root: Path, n: int) -> Path:
    return copy_subset(example_set("cifake_sd14"), root, n)


def _folder_items(folder: Path) -> list[tuple[Path, int]]:
    """(file, label) in the order discovery lists a folder: fake/ before real/, sorted names."""
    return [(p, 1) for p in sorted((folder / "fake").iterdir())] + [(p, 0) for p in sorted((folder / "real").iterdir())]


def _tar_of(folder: Path, tar: Path) -> Path:
    files = _folder_items(folder)
    write_shard(tar, [p for p, _ in files], [lab for _, lab in files])
    return tar


def _csv_of(folder: Path, listing: Path) -> Path:
    with open(listing, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for p, lab in _folder_items(folder):
            w.writerow([os.path.relpath(p, listing.parent), "fake" if lab else "real"])
    return listing


def _mixed_sources(root: Path) -> list[str]:
    """Three datasets, one of each kind of source, each with unreadable images among good ones."""
    folder = _folder(root / "folder", 6)
    (folder / "fake" / "zero.jpg").write_bytes(b"")
    (folder / "real" / "text.png").write_text("not an image")
    shard_src = copy_subset(example_set("cifake_sd14"), root / "shard_src", 5)
    tar = _tar_of(shard_src, root / "shards" / "00000.tar")
    import tarfile

    with tarfile.open(tar, "a") as tf:  # a corrupt member with a label
        add_member(tf, "999999.jpg", b"\xff\xd8\xff\xe0 cut short")
        add_member(tf, "999999.cls", b"1")
    listed = copy_subset(example_set("forensynths_biggan"), root / "listed", 4)
    listing = _csv_of(listed, root / "listed.csv")
    with open(listing, "a") as fh:
        fh.write("listed/real/missing.png,real\n")  # listed, but not there: the reader reports it
    return [f"folder={folder}", f"shards={root / 'shards'}", f"listed={listing}"]


# --- sources (no Ray needed) -------------------------------------------------------------------------

def test_a_tar_shard_and_a_csv_list_give_the_folder_features(tmp_path):
    folder = _folder(tmp_path / "ds", 5)
    tar = _tar_of(folder, tmp_path / "shard.tar")
    listing = _csv_of(folder, tmp_path / "list.csv")
    files = {}
    for name, src in (("folder", folder), ("tar", tar), ("csv", listing)):
        files[name] = tmp_path / f"{name}.h5"
        s = extract([f"ds={src}"], backbone="lowlevel", out=str(files[name]), batch_size=4, device="cpu",
                    workers=0)
        assert s.n_written == 10 and s.n_skipped == 0 and s.datasets["ds"] == {"real": 5, "fake": 5, "unknown": 0}
    ref = read_features(files["folder"])
    for name in ("tar", "csv"):
        fs = read_features(files[name])
        np.testing.assert_array_equal(fs.sha256, ref.sha256)
        np.testing.assert_array_equal(fs.y, ref.y)
        np.testing.assert_array_equal(fs.X, ref.X)  # same bytes, same decode, same numbers
    assert read_features(files["tar"]).path.tolist() == [f"shard.tar/{i:06d}.jpg" for i in range(10)]
    assert read_features(files["csv"]).path.tolist() == [f"ds/{p}" for p in ref.path.tolist()]


def test_discovery_skips_and_warnings_reach_the_file_and_the_terminal(tmp_path):
    shard_src = _folder(tmp_path / "src", 2)
    _tar_of(shard_src, tmp_path / "data" / "00000.tar")
    (tmp_path / "data" / "00001.tar").write_bytes(b"not a tar at all")  # discovery reports it
    unlabelled = tmp_path / "loose"
    unlabelled.mkdir()
    for p in sorted((shard_src / "real").iterdir()):
        (unlabelled / p.name).write_bytes(p.read_bytes())
    res = cli.invoke(app, ["extract", f"sh={tmp_path / 'data'}", f"loose={unlabelled}", "--backbone", "lowlevel",
                           "--out", str(tmp_path / "o.h5"), "--workers", "0", "-q"])
    assert res.exit_code == 0, res.output
    warning = [line for line in res.stderr.splitlines() if line.startswith("warning")]
    assert len(warning) == 1 and "'loose' has no labelled image" in warning[0]
    meta = read_features(tmp_path / "o.h5").meta
    discovery = [s for s in meta["skipped"] if s["dataset"] == "sh"]
    assert discovery and all(set(s) == {"dataset", "path", "reason"} for s in discovery)
    assert discovery == [{"dataset": "sh", "path": "00001.tar", "reason": "not an uncompressed tar file"}]
    assert "skipped 1 unreadable" in res.stdout.replace("\n", " ")


def test_engine_options_are_checked_in_one_line(tmp_path, monkeypatch):
    from deepfake_cli.inference.engines import create_runner

    with pytest.raises(DeepfakeError, match="--model-workers applies to --engine ray only"):
        create_runner("local", model_workers=2)
    if HAS_RAY:
        with pytest.raises(DeepfakeError, match=r"ray:// addresses \(Ray Client\) are not supported"):
            create_runner("ray", address="ray://head:10001")
        with pytest.raises(DeepfakeError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
            create_runner("ray", address="127.0.0.1:1")  # nothing listens there: refused at once, not retried
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
        with pytest.raises(DeepfakeError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
            create_runner("ray")
        monkeypatch.delenv("RAY_ADDRESS")
    # without the extra: one line naming it, from the API and the CLI alike
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(DeepfakeError, match=r"--engine ray needs the ray extra: pip install 'deepfake-cli\[ray\]'"):
        create_runner("ray")
    res = cli.invoke(app, ["extract", str(example_set("forensynths_stylegan")), "--backbone", "lowlevel",
                           "--engine", "ray", "--out", str(tmp_path / "o.h5")])
    assert res.exit_code == 2 and "pip install 'deepfake-cli[ray]'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "o.h5").exists()


def test_study_engine_keys(tmp_path):
    from deepfake_cli.study.config import load_config

    base = '[datasets]\na = "x"\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\n'
    cfg_path = tmp_path / "s.toml"
    cfg_path.write_text('[study]\nengine = "ray"\nmodel_workers = 2\ngpus_per_worker = 0.5\n' + base)
    cfg = load_config(cfg_path)
    assert cfg.engine == "ray" and cfg.engine_options == {"model_workers": 2, "gpus_per_worker": 0.5}
    (tmp_path / "plain.toml").write_text(base)
    assert load_config(tmp_path / "plain.toml").engine == "local"
    cfg_path.write_text('[study]\nengine = "spark"\n' + base)
    with pytest.raises(DeepfakeError, match="engine 'spark' in \\[study\\] is not one of local, ray"):
        load_config(cfg_path)


# --- the Ray engine ----------------------------------------------------------------------------------

def _proc(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, command line) of a live process from /proc, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], cmd + " " + stat[stat.index("(") + 1:stat.rindex(")")]


def _alive(pid: int) -> bool:
    p = _proc(pid)
    return p is not None and p[1] != "Z"  # a zombie has exited; only its exit status is left


def _ray_processes() -> list[int]:
    """Live processes below this one that belong to Ray (gcs_server, raylet, workers, agents)."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (p := _proc(int(d))) is not None:
            table[int(d)] = p
    below, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in table.items() if ppid in frontier} - below
        below |= frontier
    return sorted(pid for pid in below if "ray" in table[pid][2] and table[pid][1] != "Z")


def _shutdown_and_check(ray) -> None:
    seen = _ray_processes()
    if ray.is_initialized():
        ray.shutdown()
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(pid) for pid in seen):
        time.sleep(0.2)
    left = [(pid, _proc(pid)[2][:80]) for pid in seen if _alive(pid)]
    assert not left, f"Ray processes left: {left}"
    assert not _ray_processes()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from deepfake_cli.inference.ray_runner import start_local_cluster

    start_local_cluster(ray, num_cpus=2)  # as the engine starts its own: loopback only, no dashboard
    assert _ray_processes(), "ray.init started no process below this one: the check below would prove nothing"
    yield ray
    _shutdown_and_check(ray)


# The mixed sources hold 34 entries; the listed file that is missing is skipped at discovery, so the
# runners read 33 items (30 written, 3 unreadable): 11 batches of 3.
N_READ = 33
N_BATCHES = 11


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    return root, _mixed_sources(root)


@pytest.fixture(scope="module")
def local_file(sources):
    root, specs = sources
    out = root / "local.h5"
    s = extract(specs, backbone="lowlevel", out=str(out), batch_size=3, device="cpu", runner=LocalRunner(workers=0))
    assert s.n_written == 30 and s.n_skipped == 4
    return out, s


@needs_ray
def test_ray_engine_writes_the_local_engines_file(ray_cluster, sources, local_file, tmp_path):
    from deepfake_cli.inference.ray_runner import RayRunner

    _, specs = sources
    runner = RayRunner(model_workers=2)
    s = extract(specs, backbone="lowlevel", out=str(tmp_path / "ray.h5"), batch_size=3, runner=runner)
    fs = assert_same_features(local_file[0], tmp_path / "ray.h5", exact=False)
    assert s.skipped == local_file[1].skipped and len(fs) == 30
    assert {(r["dataset"], r["path"]) for r in s.skipped} == {
        ("folder", "fake/zero.jpg"), ("folder", "real/text.png"), ("shards", "00000.tar/999999.jpg"),
        ("listed", "listed/real/missing.png")}
    assert sorted(runner.batches_run) == list(range(N_BATCHES)) and runner.resubmitted == 0
    assert s.device == "ray, 2 cpu model workers" and s.seconds["model"] > 0 and s.seconds["read"] > 0


@needs_ray
def test_ray_engine_resumes_from_the_shards_of_a_failed_run(ray_cluster, sources, local_file, tmp_path):
    from deepfake_cli.inference.ray_runner import RayRunner

    _, specs = sources
    out, parts = tmp_path / "f.h5", tmp_path / "f.h5.parts"

    class DiesAfter:
        def run(self, job, batches):
            for k, r in enumerate(LocalRunner(workers=0).run(job, batches)):
                if k == 5:
                    raise RuntimeError("engine lost")
                yield r

    with pytest.raises(RuntimeError, match="engine lost"):
        extract(specs, backbone="lowlevel", out=str(out), batch_size=3, device="cpu", runner=DiesAfter())
    assert len(list(parts.glob("batch_*.npz"))) == 5 and not out.exists()
    runner = RayRunner(model_workers=1)
    s = extract(specs, backbone="lowlevel", out=str(out), batch_size=3, runner=runner)
    assert sorted(runner.batches_run) == list(range(5, N_BATCHES))  # only the missing batches ran
    assert s.resumed_batches == 5 and s.n_processed == N_READ - 15
    assert not parts.exists()
    assert_same_features(local_file[0], out, exact=False)


@needs_ray
def test_killed_model_actor_every_image_exactly_once(ray_cluster, sources, local_file, tmp_path):
    from deepfake_cli.inference.ray_runner import RayRunner

    _, specs = sources
    pids: list[int] = []
    killed: list[int] = []

    def kill_once(done, total):
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    runner = RayRunner(model_workers=1, on_workers=pids.extend)
    out = tmp_path / "killed.h5"
    s = extract(specs, backbone="lowlevel", out=str(out), batch_size=3, runner=runner, progress=kill_once)
    assert killed and not _alive(killed[0])
    assert runner.resubmitted >= 1  # batches in flight when the actor died were sent again
    fs = assert_same_features(local_file[0], out, exact=False)
    keys = list(zip(fs.dataset.tolist(), fs.path.tolist()))
    assert len(keys) == len(set(keys)) == 30 and s.n_written == 30
    assert sorted(runner.batches_run) == list(range(N_BATCHES))  # each batch delivered once


@needs_ray
def test_predict_on_a_tar_with_the_ray_engine(ray_cluster, sources, local_file, tmp_path):
    from deepfake_cli.inference.ray_runner import RayRunner
    from deepfake_cli.stages.predict import predict, to_csv
    from deepfake_cli.stages.train import train

    root, _ = sources
    model = train(str(local_file[0]), "lda", str(tmp_path / "lda.model"), datasets=["folder"], test_size=0.25)[0].path
    tar = root / "shards" / "00000.tar"
    local = predict(str(model), [str(tar)], device="cpu", workers=0, batch_size=4)
    ray_res = predict(str(model), [str(tar)], batch_size=4, runner=RayRunner(model_workers=1))
    assert [r["path"] for r in ray_res.rows] == [f"{tar}/{i:06d}.jpg" for i in range(10)]
    assert [r["path"] for r in ray_res.rows] == [r["path"] for r in local.rows]
    assert [r["p_fake"] for r in ray_res.rows] == pytest.approx([r["p_fake"] for r in local.rows], abs=1e-5)
    assert ray_res.skipped == local.skipped and [s["path"] for s in ray_res.skipped] == [f"{tar}/999999.jpg"]
    assert to_csv(ray_res.rows).count("\n") == 11


@needs_ray
def test_no_ray_process_is_left(ray_cluster):
    """Last in this file: shut the shared cluster down here and prove nothing of it survives."""
    _shutdown_and_check(ray_cluster)
    time.sleep(0.1)
    assert not ray_cluster.is_initialized()

