"""Hostile sources through the real CLI (issue 16, items 5, 6, 7 and 10): lists that cannot be parsed,
FIFOs and other non-regular files given or found as inputs, lists that repeat or miss files by the
hundred thousand or hold a megabyte line, and tar shards with links, unlabelled images, a cut header
and a member larger than any image. Each ends in one error line or in bounded skipped rows with reasons."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.store.features import read_features
from tests.clicheck import FifoWatch
from tests.conftest import copy_subset, example_set
from tests.imagegen import add_member, write_shard

runner = CliRunner()
FAST = ["--workers", "0", "--device", "cpu"]
MAX_LINE = 400  # no line of output about an input is longer (names are cut to 200 characters)


@pytest.fixture(scope="module")
def model(cifake8_lda):
    """A lowlevel LDA model trained on 8 + 8 CIFAKE examples (the cheapest real model; the session's)."""
    return cifake8_lda["model"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """2 real + 2 fake example images in real/ and fake/."""
    return copy_subset(example_set("cifake_sd14"), tmp_path_factory.mktemp("images") / "ds", 2)


def _real(images: Path) -> Path:
    return sorted((images / "real").iterdir())[0]


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _extract(source, out: Path):
    return _cli("extract", source, "--backbone", "lowlevel", "--out", out, "-q", *FAST)


def _predict(model, *sources):
    return _cli("predict", model, *sources, *FAST)


def _one_line(res, *says, exit_code=2) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == exit_code and len(lines) == 1 and lines[0].startswith("error: "), (res.exit_code, res.output[-2000:])
    assert "internal error" not in lines[0] and len(lines[0]) < 1000, lines[0][:2000]
    for text in says:
        assert text in lines[0], lines[0]
    return lines[0]


def _skipped_lines(res) -> list[str]:
    return [ln for ln in res.output.splitlines() if ln.startswith("skipped ")]


# what a model's verdict rests on (its training sets, held-out accuracy, threshold; thin-evidence warnings):
# a fixed block per model, the same whatever the inputs, so not counted against the bounds below
_VERDICT = ("lda: trained on", "lda: held-out", "lda: threshold", "lda: never tested", "lda: these inputs",
            "warning lda: thin evidence")


def _bounded(res, max_lines: int) -> None:
    lines = [ln for ln in res.output.splitlines() if not ln.startswith(_VERDICT)]
    assert len(lines) <= max_lines and all(len(ln) <= MAX_LINE for ln in lines), \
        (len(lines), max(map(len, lines), default=0), res.output[:3000])


# ------------------------------------------------------------------- 5. lists that cannot be parsed

def test_a_nul_byte_in_a_txt_list_is_one_line(model, images, tmp_path):
    listing = tmp_path / "nul.txt"
    listing.write_bytes(f"{_real(images)}\n{images}/real/a\0b.jpg\n".encode())
    _one_line(_extract(listing, tmp_path / "f.h5"), "line 2 holds a NUL byte")
    _one_line(_predict(model, listing), "line 2 holds a NUL byte")
    assert not (tmp_path / "f.h5").exists()


def test_a_csv_field_over_the_csv_readers_limit_is_one_line(model, images, tmp_path):
    listing = tmp_path / "big.csv"
    listing.write_text(f"path,label\n{_real(images)},real\n{images}/real/{'x' * 200_000}.jpg,real\n")
    for res in (_extract(listing, tmp_path / "f.h5"), _predict(model, listing)):
        _one_line(res, "not valid CSV in the row starting at line 3", "field larger than field limit")


# ------------------------------------------------- 6. FIFOs and other non-regular files, never opened

@pytest.mark.parametrize("name", ["list.txt", "list.csv", "shard.tar", "photo.png"])
def test_a_fifo_given_as_an_input_is_one_line_and_never_opened(model, tmp_path, name):
    for command in ("extract", "predict"):
        with FifoWatch(tmp_path / f"{command}-{name}") as fifo:
            res = _extract(fifo.path, tmp_path / "f.h5") if command == "extract" else _predict(model, fifo.path)
            _one_line(res, "is a FIFO, not a regular file")
            assert not fifo.opened, f"{command} opened the FIFO {name}"


def test_a_fifo_given_as_a_model_or_a_feature_file_is_one_line_and_never_opened(model, images, tmp_path):
    with FifoWatch(tmp_path / "fifo.model") as fifo:
        _one_line(_predict(fifo.path, images), "fifo.model")
        assert not fifo.opened
    for args in (["train", tmp_path / "fifo.h5", "--classifier", "lda", "--out", tmp_path / "m.model"],
                 ["eval", model, "--features", tmp_path / "fifo.h5"], ["info", tmp_path / "fifo.h5"]):
        with FifoWatch(tmp_path / "fifo.h5") as fifo:
            _one_line(_cli(*args), "is a FIFO, not a regular file")
            assert not fifo.opened, args[0]
        fifo.path.unlink()


def test_fifos_inside_a_folder_or_a_list_are_skipped_with_a_reason_never_opened(model, images, tmp_path):
    ds = copy_subset(example_set("cifake_sd14"), tmp_path / "ds", 2)
    watched = [FifoWatch(ds / "real" / "pipe.jpg"), FifoWatch(ds / "fake" / "pipe.png")]
    listing = tmp_path / "l.txt"
    listing.write_text(f"{_real(ds)}\n{ds}/real/pipe.jpg\n")
    try:
        res = _extract(ds, tmp_path / "f.h5")
        assert res.exit_code == 0, res.output
        rows = {r["path"]: r["reason"] for r in read_features(tmp_path / "f.h5").meta["skipped"]}
        assert rows == {"fake/pipe.png": "not a regular file (a FIFO)", "real/pipe.jpg": "not a regular file (a FIFO)"}
        res = _predict(model, ds, listing)
        assert res.exit_code == 0, res.output
        assert sorted(_skipped_lines(res)) == [f"skipped {ds}/fake/pipe.png: not a regular file (a FIFO)",
                                               f"skipped {ds}/real/pipe.jpg: not a regular file (a FIFO)",
                                               f"skipped {ds}/real/pipe.jpg: not a regular file (a FIFO) (line 2 of l.txt)"]
        assert not any(f.opened for f in watched)
    finally:
        for f in watched:
            f.release()


# ---------------------------------------------------------- 7. lists: unparsable, huge and repetitive

def test_a_csv_with_an_unterminated_quote_is_one_error_not_a_shorter_list(model, images, tmp_path):
    listing = tmp_path / "quote.csv"
    listing.write_text(f"path,label\n{_real(images)},real\n\"{images}/fake/x.jpg,fake\n{images}/real/y.jpg,real\n")
    for res in (_extract(listing, tmp_path / "f.h5"), _predict(model, listing)):
        _one_line(res, "not valid CSV in the row starting at line 3", "unterminated quote")
    assert not (tmp_path / "f.h5").exists()


def _cpu_seconds() -> float:
    """CPU time of this process (the commands run in it): a bound on it holds however busy the machine is
    (parallel test workers), where wall time would not."""
    return time.process_time()


def _many_missing(folder: Path, good: Path, repeated: bool, n: int = 100_000) -> Path:
    listing = folder / ("repeated.txt" if repeated else "distinct.txt")
    names = ["real/missing.jpg"] * n if repeated else [f"real/missing{i}.jpg" for i in range(n)]
    listing.write_text("\n".join(names + [str(good)]) + "\n")
    return listing


@pytest.mark.parametrize("repeated", [True, False], ids=["one-file-repeated", "distinct-files"])
def test_100000_missing_entries_are_summarised_in_seconds(model, images, tmp_path, repeated):
    listing = _many_missing(tmp_path, _real(images), repeated)
    t0 = _cpu_seconds()
    res = _extract(listing, tmp_path / "f.h5")
    seconds = _cpu_seconds() - t0
    assert res.exit_code == 0 and seconds < 10, (seconds, res.output[-1000:])
    n_rows = 2 if repeated else 100_000
    assert "wrote 1 feature vectors" in res.output and f"skipped {n_rows} unreadable" in res.output, res.output[-1000:]
    _bounded(res, 8)
    skipped = read_features(tmp_path / "f.h5").meta["skipped"]
    if repeated:  # one row for the missing file, one for its 99,999 repeats
        assert [r["reason"] for r in skipped] == ["missing file (line 1 of repeated.txt)",
                                                  "listed again 99999 times (lines 2, 3, 4, … of repeated.txt)"]
    else:  # every missing file is a row of the file; the output shows 3 and counts the rest
        assert len(skipped) == 100_000 and "skipped 99997 more: missing file" in res.output
    t0 = _cpu_seconds()
    res = _predict(model, listing)
    seconds = _cpu_seconds() - t0
    assert res.exit_code == 0 and seconds < 10, (seconds, res.output[-1000:])
    assert "scored 1 image(s)" in res.output and len(_skipped_lines(res)) <= 4, res.output[-1000:]
    _bounded(res, 10)


def test_a_list_of_100000_lines_naming_one_missing_file_is_one_line_before_any_model(model, tmp_path):
    listing = tmp_path / "gone.txt"
    listing.write_text("real/missing.jpg\n" * 100_000)
    for command in ("extract", "predict"):
        t0 = _cpu_seconds()
        res = _extract(listing, tmp_path / "f.h5") if command == "extract" else _predict(model, listing)
        assert _cpu_seconds() - t0 < 10
        _one_line(res, "lists no usable image: 2 entries skipped", "missing file (line 1 of gone.txt)",
                  "listed again 99999 times")


def test_a_one_megabyte_line_is_one_skipped_row_with_a_short_message(model, images, tmp_path):
    listing = tmp_path / "long.txt"
    listing.write_text(f"real/{'a' * 1_000_000}.jpg\n{_real(images)}\n")
    res = _extract(listing, tmp_path / "f.h5")
    assert res.exit_code == 0 and "wrote 1 feature vectors" in res.output, res.output[:2000]
    _bounded(res, 3)
    [row] = read_features(tmp_path / "f.h5").meta["skipped"]
    assert row["reason"] == "cannot read file: File name too long (line 1 of long.txt)" and len(row["path"]) <= 4096
    res = _predict(model, listing)
    assert res.exit_code == 0 and "scored 1 image(s)" in res.output, res.output[:2000]
    [line] = _skipped_lines(res)
    assert "…" in line and line.endswith("aaa.jpg: cannot read file: File name too long (line 1 of long.txt)")
    _bounded(res, 6)


# --------------------------------------------------------------- 10. tar members that are not used

def _hostile_shards(folder: Path, images: Path) -> Path:
    """Four shards: 6 images of which 4 carry a .cls; links and a FIFO beside two labelled images; one
    cut inside its fourth header; one with a 1 GB member (a sparse file: nothing is written to disk)."""
    reals, fakes = sorted((images / "real").iterdir()), sorted((images / "fake").iterdir())
    shards = folder / "wds"
    write_shard(shards / "00000.tar", reals + fakes + reals[:1] + fakes[:1], [0, 0, 1, 1, None, None])
    with tarfile.open(shards / "00001.tar", "w") as tf:
        add_member(tf, "a.jpg", reals[0].read_bytes())
        add_member(tf, "a.cls", b"0")
        add_member(tf, "b.jpg", fakes[0].read_bytes())
        add_member(tf, "b.cls", b"1")
        for name, kind in (("c.jpg", tarfile.SYMTYPE), ("d.jpg", tarfile.LNKTYPE), ("e.jpg", tarfile.FIFOTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "a.jpg"
            tf.addfile(info)
        add_member(tf, "f.json", b"{}")  # a sample without its image
    whole = (shards / "00000.tar").read_bytes()
    with tarfile.open(shards / "00000.tar") as tf:
        fourth = tf.getmembers()[3].offset
    (shards / "00002.tar").write_bytes(whole[:fourth + 100])  # the first sample (jpg, json, cls) survives
    _sparse_shard(shards / "00003.tar", reals[1], size=10**9)
    return shards


def _sparse_shard(path: Path, image: Path, size: int) -> None:
    data = image.read_bytes()
    with open(path, "wb") as fh:
        for name, body in (("000000.jpg", data), ("000000.cls", b"0")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            fh.write(info.tobuf() + body + b"\0" * (-len(body) % 512))
        info = tarfile.TarInfo("000001.jpg")
        info.size = size
        fh.write(info.tobuf())
        fh.seek(size + (-size % 512), 1)  # a hole, not a gigabyte on disk
        info = tarfile.TarInfo("000001.cls")
        info.size = 1
        fh.write(info.tobuf() + b"1" + b"\0" * 511 + b"\0" * 1024)


EXPECTED_TAR_SKIPS = {
    "00000.tar/000004.jpg": "unlabelled in a labelled dataset (no .cls 0/1 and no label folder)",
    "00000.tar/000005.jpg": "unlabelled in a labelled dataset (no .cls 0/1 and no label folder)",
    "00001.tar/c.jpg": "symbolic link member (links in a shard are not followed)",
    "00001.tar/d.jpg": "hard link member (links in a shard are not followed)",
    "00001.tar/e.jpg": "FIFO member (not a regular file)",
    "00001.tar/f.json": "no image in its sample",
    "00002.tar": "tar cut short after 3 members (inside a member header)",
    "00003.tar/000001.jpg": "too large for an image (1000 MB; the limit is 359 MB)",  # decode.MAX_IMAGE_BYTES
}


def test_every_tar_member_left_out_is_counted_with_its_reason(model, images, tmp_path):
    shards = _hostile_shards(tmp_path, images)
    expected = EXPECTED_TAR_SKIPS
    res = _extract(shards, tmp_path / "f.h5")
    assert res.exit_code == 0, res.output
    # 4 labelled of 6; a and b; the first sample of the cut shard; the small image beside the big one
    assert "wrote 8 feature vectors" in res.output and "skipped 8 unreadable" in res.output, res.output
    assert {r["path"]: r["reason"] for r in read_features(tmp_path / "f.h5").meta["skipped"]} == expected
    res = _cli("predict", model, shards, "--json", *FAST)
    assert res.exit_code == 0, res.output
    rows = [json.loads(ln) for ln in res.output.splitlines() if ln.startswith("{")]
    scored = {r["path"] for r in rows if "path" in r}  # the last object is the verdict's evidence
    assert len(scored) == 10  # predict keeps unlabelled images: 6 + 2 + 1 + 1
    skipped = {ln.split(": ", 1)[0].removeprefix(f"skipped {shards}/"): ln.split(": ", 1)[1]
               for ln in _skipped_lines(res)}
    assert skipped == {k: v for k, v in expected.items() if "unlabelled" not in v}


def test_a_shard_cut_at_a_member_boundary_says_so(images, tmp_path):
    shard = tmp_path / "cut" / "real" / "00000.tar"
    write_shard(shard, sorted((images / "real").iterdir()), [None, None], with_json=False)
    with tarfile.open(shard) as tf:
        second = tf.getmembers()[1].offset
    shard.write_bytes(shard.read_bytes()[:second])  # whole first member, then nothing: no end-of-archive block
    res = _extract(shard.parent.parent, tmp_path / "f.h5")
    assert res.exit_code == 0 and "wrote 1 feature vectors" in res.output, res.output
    assert read_features(tmp_path / "f.h5").meta["skipped"] == [
        {"dataset": "cut", "path": "real/00000.tar", "reason": "tar cut short after 1 members (no end-of-archive block)"}]
