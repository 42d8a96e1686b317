"""One discovery for every command: symlinks followed once, nothing that could not be read lost
silently, and `collect_files` for the loose inputs of predict."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from deepfake_cli.data import FAKE, UNKNOWN, collect_files, discover, iter_image_files, read_item
from deepfake_cli.errors import DeepfakeError
from tests.conftest import copy_subset, example_set
from tests.imagegen import write_shard

NOBODY = 65534


def _three_images(root: Path) -> Path:
    """1 real + 2 fake CIFAKE images in root/{real,fake}/."""
    copy_subset(example_set("cifake_sd14"), root, 1)
    src = sorted((example_set("cifake_sd14") / "fake").iterdir())[1]
    shutil.copy(src, root / "fake" / src.name)
    return root


def test_directory_symlink_loops_are_walked_once(tmp_path):
    root = _three_images(tmp_path / "ds")
    (root / "fake" / "dirloop").symlink_to(".")
    (root / "fake" / "uploop").symlink_to("..")
    (root / "real" / "again").symlink_to("../fake")  # a second way into a folder already read
    ds = discover(str(root))
    assert ds.counts == {"real": 1, "fake": 2, "unknown": 0}  # not 123 rows
    assert [it.rel.split("/")[0] for it in ds.items] == ["fake", "fake", "real"]
    assert ds.skipped == [
        {"path": "fake/dirloop", "reason": "symlink loop (links to a folder above it)"},
        {"path": "fake/uploop", "reason": "symlink loop (links to a folder above it)"},
        {"path": "real/again", "reason": "same folder as fake (read once)"},
    ]


def test_linked_folders_are_still_followed(tmp_path):
    elsewhere = copy_subset(example_set("forensynths_biggan"), tmp_path / "elsewhere", 2)
    root = tmp_path / "linked"
    root.mkdir()
    (root / "real").symlink_to(elsewhere / "real")
    (root / "fake").symlink_to(elsewhere / "fake")
    ds = discover(str(root))
    assert ds.counts == {"real": 2, "fake": 2, "unknown": 0} and ds.skipped == []
    assert all(it.path.parent.parent == root for it in ds.items)  # paths keep the link's name


def test_file_symlink_loop_and_broken_link_are_reported_not_fatal(tmp_path):
    root = _three_images(tmp_path / "ds")
    (root / "fake" / "loop.jpg").symlink_to("loop.jpg")
    (root / "real" / "gone.jpg").symlink_to("missing.jpg")
    ds = discover(str(root))
    assert len(ds.items) == 3
    assert ds.skipped == [{"path": "fake/loop.jpg", "reason": "symlink loop"},
                          {"path": "real/gone.jpg", "reason": "broken symlink (its target is missing)"}]
    items, skipped = collect_files([str(root)])
    assert len(items) == 3 and [s["path"] for s in skipped] == [str(root / "fake/loop.jpg"),
                                                               str(root / "real/gone.jpg")]
    with pytest.raises(DeepfakeError, match="no such file or folder: .*loop.jpg"):
        collect_files([str(root / "fake" / "loop.jpg")])


def _unprivileged(fn):
    """fn() as a user without root's right to read every folder (a forked child that drops to
    nobody when the tests run as root); its result comes back as JSON."""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only already-imported code runs here, then it exits at once
        try:
            os.close(r)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out = json.dumps(fn())
        except BaseException as exc:  # noqa: BLE001 -- reported to the parent
            out = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_unreadable_folder_and_file_are_reported():
    # Not under tmp_path: its parents are private to root, and the walk runs as another user.
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        root = _three_images(Path(tmp) / "ds")
        locked = root / "fake" / "locked"
        locked.mkdir()
        shutil.copy(next((root / "fake").glob("*.jpg")), locked / "hidden_from_us.jpg")
        secret = root / "real" / "secret.jpg"
        shutil.copy(next((root / "real").glob("*.jpg")), secret)
        for p in (root, root / "real", root / "fake"):
            os.chmod(p, 0o755)
        for p in root.rglob("*.jpg"):
            os.chmod(p, 0o644)
        os.chmod(secret, 0o000)
        os.chmod(locked, 0o000)
        try:
            res = _unprivileged(lambda: (lambda ds: {"counts": ds.counts, "skipped": ds.skipped})(discover(str(root))))
        finally:
            os.chmod(locked, 0o755)
    assert "error" not in res, res
    assert res["counts"] == {"real": 1, "fake": 2, "unknown": 0}
    assert res["skipped"] == [
        {"path": "fake/locked", "reason": "unreadable folder (Permission denied)"},
        {"path": "real/secret.jpg", "reason": "unreadable file (permission denied)"},
    ]


def test_collect_files_keeps_input_order_and_each_image_once(tmp_path):
    src = example_set("forensynths_stylegan")
    one = sorted((src / "real").iterdir())[0]
    items, skipped = collect_files([str(one), str(src), str(one)])
    paths = [it.path for it in items]
    assert paths[0] == one and len(paths) == 40 and len(set(paths)) == 40
    assert paths[1:] == [p for p in iter_image_files(src) if p != one]
    assert skipped == [] and [it.rel for it in items] == [str(p) for p in paths]
    assert {it.label for it in items if "/fake/" in it.rel} == {FAKE}
    assert items[0].label == UNKNOWN  # a loose file says nothing about its label
    img, digest = read_item(items[1])
    assert img.mode == "RGB" and len(digest) == 64


def test_collect_files_refuses_what_is_no_image(tmp_path):
    with pytest.raises(DeepfakeError, match="no such file or folder: .*nope.png"):
        collect_files([str(tmp_path / "nope.png")])
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to buy milk\n")
    with pytest.raises(DeepfakeError, match="notes.txt"):
        collect_files([str(notes)])
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\0" * 10)
    with pytest.raises(DeepfakeError, match="not an image file: .*model.bin"):
        collect_files([str(weights)])
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.md").write_text("x")
    with pytest.raises(DeepfakeError, match="no image found in .*empty"):
        collect_files([str(empty)])
    loops = tmp_path / "loops"
    loops.mkdir()
    (loops / "self").symlink_to(".")
    with pytest.raises(DeepfakeError, match="no image found in .*loops; skipped .*self: symlink loop"):
        collect_files([str(loops)])


def test_collect_files_reads_shards_and_lists(tmp_path):
    src = sorted((example_set("forensynths_biggan") / "fake").iterdir())[:3]
    shard = tmp_path / "shards" / "00000.tar"
    names = write_shard(shard, src, [FAKE] * 3)
    listing = tmp_path / "paths.txt"
    listing.write_text("".join(f"{p}\n" for p in src[:2]))
    items, skipped = collect_files([str(shard), str(listing), str(shard.parent)])
    assert skipped == []
    # The shard given twice (as a file and in its folder) counts once; the list's files are new.
    assert [it.rel for it in items] == [f"{shard}/{n}" for n in names] + [str(p) for p in src[:2]]
    shas = [read_item(it)[1] for it in items]
    assert shas[3:] == shas[:2]  # a member's bytes are the file's bytes
    # Labels come from the source: the shard's .cls, the listed paths' fake/ folder.
    assert [it.label for it in items] == [FAKE] * 5
