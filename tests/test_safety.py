"""The write-safety rules, one copy each (`deepfake_cli.safety`): a full disk is recognised by its type and
worded once by the output guard, the need a call records is that call's only, the one cleaner of stale
temporaries, and `finetune` guarded by `@writes` like every other stage."""

from __future__ import annotations

import errno
import pickle
import re
from collections import namedtuple

import pytest

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.outputs import Target, writes
from deepfake_cli.safety import space
from deepfake_cli.safety.atomic import PARTIAL, STORE, atomic_path, remove_stale_temporaries
from deepfake_cli.safety.space import DiskFullError, check_space
from tests.conftest import copy_subset, example_set

MB = 1 << 20
Usage = namedtuple("usage", "total used free")
GUARD_LINE = re.compile(r"no space left on device while writing (?P<out>\S+); the existing file is unchanged "
                        r"\(finished work is kept to resume\): free (?P<free>\d+ MB|some space) in (?P<folder>\S+) "
                        r"and rerun\.")


@writes(lambda a: [Target(a["out"], "predictions")])
def _stage(out, need=None, fail=None, free_then=None, monkeypatch=None):
    """A stage that checks its space, writes part of its output, then meets a full disk (`fail`)."""
    if need is not None:
        check_space(out, need)
    with atomic_path(out) as tmp:
        tmp.write_text("path,p_fake,label,model\n")
        if free_then is not None:  # the disk fills while writing
            monkeypatch.setattr(space.shutil, "disk_usage", lambda p: Usage(100 * MB, 100 * MB, free_then))
        raise fail


@pytest.mark.parametrize("fail", [DiskFullError("/somewhere/else.h5"),                # a writer's own line
                                  OSError(errno.ENOSPC, "No space left on device")])  # the system's
def test_a_full_disk_is_the_guards_one_line_whatever_raised_it(tmp_path, monkeypatch, fail):
    out = tmp_path / "p.csv"
    out.write_text("path,p_fake,label,model\nold,0.5,,m\n")
    with pytest.raises(DiskFullError) as got:
        _stage(out, need=5 * MB, fail=fail, free_then=1 * MB, monkeypatch=monkeypatch)
    line = str(got.value)
    m = GUARD_LINE.fullmatch(line)
    assert m and m["out"] == str(out) and m["folder"] == str(tmp_path) and m["free"] == "4 MB", line
    assert got.value.exit_code == 1 and isinstance(got.value, DeepfakeError)
    assert out.read_text() == "path,p_fake,label,model\nold,0.5,,m\n"  # the existing file is unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]  # no temporary, no lock


def test_a_calls_recorded_need_is_not_read_by_the_next_call(tmp_path, monkeypatch):
    out = tmp_path / "p.csv"
    with pytest.raises(DiskFullError, match="free 4 MB in"):
        _stage(out, need=5 * MB, fail=OSError(errno.ENOSPC, "No space left"), free_then=1 * MB,
               monkeypatch=monkeypatch)
    # the next call checked nothing: it cannot know what to free (a stale 5 MB would be a wrong figure)
    with pytest.raises(DiskFullError, match="free some space in"):
        _stage(out, fail=OSError(errno.ENOSPC, "No space left"))


def test_not_enough_space_is_refused_before_writing_and_is_not_reworded(tmp_path, monkeypatch):
    monkeypatch.setattr(space.shutil, "disk_usage", lambda p: Usage(100 * MB, 99 * MB, 1 * MB))
    with pytest.raises(DeepfakeError, match=r"not enough space to write .*p\.csv: about 5 MB needed, 1 MB free in "
                                            r".*; existing files are unchanged: free 4 MB and rerun\.") as got:
        _stage(tmp_path / "p.csv", need=5 * MB, fail=AssertionError("never reached"))
    assert got.value.exit_code == 1 and list(tmp_path.iterdir()) == []


def test_a_disk_full_error_survives_pickling(tmp_path):
    """A forked writer or a Ray worker sends it back whole: path, text and exit code."""
    err = pickle.loads(pickle.dumps(DiskFullError(tmp_path / "f.h5")))
    assert isinstance(err, DiskFullError) and err.path == tmp_path / "f.h5" and err.exit_code == 1
    assert str(err) == str(DiskFullError(tmp_path / "f.h5"))


def test_the_one_cleaner_removes_only_the_named_targets_temporaries(tmp_path):
    out = tmp_path / "f.h5"
    stale = [tmp_path / ".f.h5.abcd_123.partial", tmp_path / "f.h5.tmp-k3j4h5g6"]
    kept = [tmp_path / ".f.h5.other.partial", tmp_path / ".g.h5.abcd_123.partial", tmp_path / "g.h5.tmp-1",
            tmp_path / "f.h5"]
    for p in stale + kept:
        p.write_bytes(b"x")
    assert remove_stale_temporaries(out, (PARTIAL,)) == [stale[0]]
    assert remove_stale_temporaries(out, (PARTIAL, STORE)) == [stale[1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_finetune_is_guarded_like_every_stage(tmp_path, monkeypatch):
    """Its lock, its cleaning of a killed run's temporaries, and its full-disk line come from `@writes`."""
    import deepfake_cli.stages.finetune as ft
    from deepfake_cli.safety.locks import output_lock

    data = copy_subset(example_set("forensynths_biggan"), tmp_path / "bg", 2)
    model = tmp_path / "out" / "m.model"
    model.parent.mkdir()
    litter = model.parent / ".m.model.abcd1234.partial"
    litter.write_bytes(b"half a model")
    args = dict(arch="resnet18", pretrained=False, epochs=1, size=32)
    with output_lock(model, "model"):
        with pytest.raises(DeepfakeError, match="is being written by"):
            ft.finetune([str(data)], model, **args)
    assert litter.exists()  # not ours to remove while another writer holds the lock

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ft, "discover_many", full)
    with pytest.raises(DiskFullError) as got:
        ft.finetune([str(data)], model, **args)
    assert GUARD_LINE.fullmatch(str(got.value))["out"] == str(model)
    assert sorted(p.name for p in model.parent.iterdir()) == []  # the stale temporary and the lock are gone
