"""No input reaches a traceback (issue 11, items 6-9): hostile folders and images through every command
that reads images, paths that look like rich markup, the bad command lines that used to crash, the CLI's
safety net, and a property test over generated command lines."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.data import parse_named_path
from deepfake_cli.store.features import read_features
from tests.clicheck import damage_feature_file, run_cli
from tests.conftest import copy_subset, example_set
from tests.imagegen import png_1bit

runner = CliRunner()
LOW = ["--backbone", "lowlevel", "--workers", "0", "--device", "cpu", "-q"]


def _ok(args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0 and res.exception is None and "Traceback" not in res.output, (args, res.output)
    return res


def _one_line(args, says, exit_code=None):
    res = runner.invoke(app, [str(a) for a in args])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code != 0 and (exit_code is None or res.exit_code == exit_code), (args, res.exit_code, res.output)
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], (args, res.output)
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    return lines[0]


@pytest.fixture(scope="module")
def model(cifake8_lda):
    """A lowlevel LDA model of the CIFAKE examples, and its feature file (the session's, read-only)."""
    return cifake8_lda["model"], cifake8_lda["features"]


# ----------------------------------------------------------- 6. hostile folders reach every command

def _hostile(root: Path) -> Path:
    """2 real + 2 fake images, plus a folder loop up and down, a file symlink loop and both bombs."""
    copy_subset(example_set("cifake_sd14"), root, 2)
    (root / "fake" / "dirloop").symlink_to(".")
    (root / "real" / "uploop").symlink_to("..")
    (root / "fake" / "loop.jpg").symlink_to("loop.jpg")
    (root / "fake" / "bomb.png").write_bytes(png_1bit(20_000, 20_000))          # decodes to 400 MP
    (root / "real" / "header_bomb.png").write_bytes(png_1bit(30_000, 30_000, rows=0))  # only claims 900 MP
    return root


TRAPS = ["fake/dirloop", "real/uploop", "fake/loop.jpg", "fake/bomb.png", "real/header_bomb.png"]


def test_hostile_folder_through_extract_audit_and_predict(model, tmp_path):
    root = _hostile(tmp_path / "ds")
    res = _ok(["extract", root, *LOW, "--out", tmp_path / "f.h5"])
    fs = read_features(tmp_path / "f.h5")
    assert len(fs) == 4  # not 123 rows: each real folder once
    skipped = {r["path"] for r in fs.meta["skipped"]}
    assert set(TRAPS) <= skipped, fs.meta["skipped"]
    for trap in TRAPS:
        assert trap in res.output
    assert "DecompressionBomb" not in res.output

    res = _ok(["audit", root, "--json", "--folds", "2"])
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["n"] == 4, out  # not n=2,788
    assert set(TRAPS) <= {s["path"] for s in out["skipped"]}, out["skipped"]
    assert "DecompressionBomb" not in res.output
    res = _ok(["audit", root, "--folds", "2"])
    assert "DecompressionBomb" not in res.output and "skipped" in res.output

    m, _ = model
    res = _ok(["predict", m, root])
    rows = [ln for ln in res.stdout.splitlines()[1:] if ln]
    assert len(rows) == 4
    for trap in ("loop.jpg", "bomb.png", "header_bomb.png", "dirloop", "uploop"):
        assert trap in res.stderr, res.stderr
    res = _ok(["predict", m, root / "fake" / "bomb.png", root / "real"])  # a bomb given by name is skipped too
    assert "bomb.png" in res.stderr
    _one_line(["predict", m, root / "fake" / "loop.jpg"], "loop.jpg")  # the only input is a loop: one line


def _unprivileged(*args):
    """Run the CLI in a subprocess that cannot read what its permissions forbid, even as root."""
    return run_cli(*args, unprivileged=True)


@pytest.mark.slow  # every command in a fresh process as another user
def test_unreadable_subfolder_is_listed_as_skipped_by_every_command(model, tmp_path):
    root = copy_subset(example_set("cifake_sd14"), tmp_path / "ds", 2)
    locked = root / "fake" / "locked"
    locked.mkdir()
    shutil.copy(next((root / "fake").glob("*.jpg")), locked / "hidden.jpg")
    os.chmod(locked, 0)
    try:
        r = _unprivileged("extract", root, *LOW, "--out", tmp_path / "f.h5")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "fake/locked: unreadable folder" in r.stderr
        assert {"dataset": "ds", "path": "fake/locked", "reason": "unreadable folder (Permission denied)"} in \
            read_features(tmp_path / "f.h5").meta["skipped"]
        r = _unprivileged("audit", root, "--json", "--folds", "2")
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "fake/locked" in {s["path"] for s in json.loads(r.stdout.strip().splitlines()[-1])["skipped"]}
        r = _unprivileged("predict", model[0], root)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "locked: unreadable folder" in r.stderr
    finally:
        os.chmod(locked, 0o755)


# ------------------------------------------------------------------ 7. paths are never rich markup

def test_paths_that_look_like_markup_print_as_they_are(model, tmp_path):
    root = tmp_path / "a["
    copy_subset(example_set("cifake_sd14"), root, 2)
    src = next((root / "real").glob("*.jpg"))
    shutil.copy(src, root / "real" / "b].jpg")
    shutil.copy(src, root / "fake" / "[bold]x.png")
    (root / "fake" / "[red]bad[i].png").write_text("not an image")
    out = tmp_path / "[i]f.h5"
    res = _ok(["extract", root, *LOW, "--out", out])
    assert "[red]bad[i].png" in res.output and str(out) in res.output
    res = _ok(["info", out])
    assert "a[" in res.output and "[red]bad[i].png" in res.output and "[i]f.h5" in res.output
    res = _ok(["extract", f"[b]x]={root}", *LOW, "--out", tmp_path / "g.h5"])  # a dataset name too
    res = _ok(["info", tmp_path / "g.h5"])
    assert "[b]x]" in res.output
    res = _ok(["predict", model[0], root, "--out", tmp_path / "[u]p.csv"])
    assert "[red]bad[i].png" in res.stderr and "[u]p.csv" in res.stderr
    assert "b].jpg" in (tmp_path / "[u]p.csv").read_text() and "[bold]x.png" in (tmp_path / "[u]p.csv").read_text()
    res = _ok(["audit", root, "--folds", "2"])
    assert "a[" in res.output and "[red]bad[i].png" in res.output
    line = _one_line(["info", tmp_path / "[bold]missing.h5"], "[bold]missing.h5")
    assert "[bold]missing.h5" in line


# --------------------------------------------------------------- 8. bad command lines: one line each

def test_bad_command_lines_of_the_issue_are_one_line(model, tmp_path):
    m, feats = model
    img = next((example_set("cifake_sd14") / "fake").iterdir())
    d = tmp_path / "adir"
    d.mkdir()
    _one_line(["predict", m, img, "--batch-size", "0"], "--batch-size", 2)
    _one_line(["predict", m, img, "--batch-size", "-1"], "--batch-size", 2)
    _one_line(["predict", m, img, "--out", d], "is a folder", 2)
    _one_line(["reduce", feats, "--method", "pca", "--dim", "2", "--out", d], "is a folder", 2)
    assert list(d.iterdir()) == [] and not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    (tmp_path / "file").write_text("x")
    _one_line(["eval", m, "--features", feats, "--out", tmp_path / "file"], "is a file", 2)
    _one_line(["predict", m, feats], "is a feature file", 2)
    _one_line(["predict", feats, img], "is a feature file", 2)
    for damage in ("no_label", "bad_meta", "no_meta"):
        bad = tmp_path / f"{damage}.h5"
        shutil.copy(feats, bad)
        damage_feature_file(bad, damage)
        for args in (["info", bad], ["train", bad, "--classifier", "lda", "--out", tmp_path / "x.model"],
                     ["eval", m, "--features", bad], ["reduce", bad, "--method", "pca", "--out", tmp_path / "r.reducer"]):
            _one_line(args, "damaged")


@pytest.mark.slow  # every writing command in a fresh process as another user
def test_an_unwritable_output_folder_is_one_line(model, tmp_path):
    m, feats = model
    img = next((example_set("cifake_sd14") / "fake").iterdir())
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        for args in (["extract", copy_subset(example_set("cifake_sd14"), tmp_path / "ds", 1), *LOW, "--out", ro / "f.h5"],
                     ["predict", m, img, "--out", ro / "p.csv"],
                     ["eval", m, "--features", feats, "--out", ro / "ev"],
                     ["train", feats, "--classifier", "lda", "--out", ro / "m.model"],
                     ["reduce", feats, "--method", "pca", "--out", ro / "r.reducer"]):
            r = _unprivileged(*args)
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            assert r.returncode == 1 and len(lines) == 1 and "permission denied" in lines[0], (args, r.stderr)
            assert "Traceback" not in r.stderr
    finally:
        os.chmod(ro, 0o755)
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("exc, says, code", [
    (ValueError("boom"), "internal error: ValueError: boom; rerun with DEEPFAKE_DEBUG=1 for the traceback", 70),
    (KeyError("k"), "internal error: KeyError: 'k'", 70),
    (PermissionError(errno.EACCES, "Permission denied", "/x/y.h5"), "permission denied: /x/y.h5", 1),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/x/d"), "/x/d is a folder where a file was expected", 1),
    (FileExistsError(errno.EEXIST, "File exists", "/x/f"), "/x/f already exists", 1),
    (OSError(errno.ENOSPC, "No space left on device", "/x/f.h5"), "no space left on device while writing /x/f.h5", 1),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device while writing the output", 1),
])
def test_the_safety_net_turns_any_exception_into_one_line(monkeypatch, tmp_path, exc, says, code):
    import deepfake_cli.store.features as features

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(features, "summarize", boom)
    line = _one_line(["info", tmp_path / "x.h5"], says, code)
    assert "\n" not in line
    monkeypatch.setenv("DEEPFAKE_DEBUG", "1")  # the traceback, for a bug report
    res = runner.invoke(app, ["info", str(tmp_path / "x.h5")])
    assert res.exception is exc


# ------------------------------------------------------------------ 9. generated command lines

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
NUMBER = st.one_of(st.integers(-5, 5).map(str), st.sampled_from(["0", "-1", "1e9", "nan", "inf", "0.5", "x", ""]))


def _paths(base: Path):
    return st.sampled_from([str(base / p) for p in ("missing", "empty", "note.txt", "f.h5", "m.model", "img.jpg",
                                                     "a[", "out")] + ["", "-", "/", "."])


OPTIONS = {
    "extract": ["--backbone", "--transform", "--batch-size", "--workers", "--layers", "--seed", "--real", "--fake",
                "--name", "--align", "--dtype", "--engine", "--device"],
    "info": ["--json"],
    "predict": ["--batch-size", "--transform", "--json", "--device", "--workers"],
    "train": ["--classifier", "--datasets", "--test-size", "--val-size", "--seed", "--param", "--reducer"],
    "reduce": ["--method", "--dim", "--variance", "--datasets", "--param", "--seed"],
    "eval": ["--features"],
    "audit": ["--folds", "--seed", "--top", "--align", "--json"],
    "backbones": ["--json", "--filter"],
    "classifiers": [],
    "reducers": [],
}
FLAGS = {"--json", "--overwrite", "-q"}


@st.composite
def command_lines(draw, base: Path):
    cmd = draw(st.sampled_from(sorted(OPTIONS)))
    paths = _paths(base)
    argv = [cmd]
    argv += draw(st.lists(st.one_of(paths, TEXT.map(lambda t: f"{t}={base / 'a['}"), TEXT), max_size=3))
    for opt in draw(st.lists(st.sampled_from(OPTIONS[cmd] + ["--out", "--overwrite", "--bogus"]), max_size=4)):
        argv.append(opt)
        if opt not in FLAGS:
            argv.append(draw(st.one_of(NUMBER, TEXT, paths, st.sampled_from(["lowlevel", "lda", "pca", "blur",
                                                                               "jpeg:75", "all", "k=v"]))))
    if cmd == "extract" and "--backbone" not in argv:
        argv += ["--backbone", "lowlevel"]  # never a download; the tiny inputs make any real run short
    return argv


@pytest.fixture(scope="module")
def playground(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "empty").mkdir()
    (base / "note.txt").write_text("hello [bold]\n")
    m, feats = model
    shutil.copy(feats, base / "f.h5")
    shutil.copy(m, base / "m.model")
    shutil.copy(next((example_set("cifake_sd14") / "fake").iterdir()), base / "img.jpg")
    copy_subset(example_set("cifake_sd14"), base / "a[", 1)
    return base


def test_generated_command_lines_end_in_success_or_one_line(playground):
    seen = {"ok": 0, "error": 0}

    @settings(max_examples=100, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(command_lines(playground))
    def check(argv):
        with tempfile.TemporaryDirectory() as tmp:
            argv = [a if a != str(playground / "out") else str(Path(tmp) / "out") for a in argv]
            res = runner.invoke(app, argv)
        assert not (isinstance(res.exception, Exception) and not isinstance(res.exception, SystemExit)), \
            (argv, repr(res.exception))
        assert "Traceback" not in res.output and "internal error" not in res.output, (argv, res.output)
        if res.exit_code == 0:
            seen["ok"] += 1
            return
        errors = [ln for ln in res.output.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1, (argv, res.output)
        assert res.output.strip().splitlines()[-1].startswith("error: "), (argv, res.output)
        seen["error"] += 1

    check()
    assert seen["ok"] + seen["error"] >= 100 and seen["error"] > 0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30))
def test_dataset_spec_parser_never_fails(spec):
    name, path = parse_named_path(spec)
    assert (name is None and path == spec) or (f"{name}={path}" == spec and name and "/" not in name)
