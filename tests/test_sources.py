"""Sources for large sets: .txt/.csv lists of paths and webdataset tar shards read in place."""

from __future__ import annotations

import csv
import gzip
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from deepfake_cli.data import FAKE, REAL, UNKNOWN, UnreadableImage, discover, discover_many, read_image, \
    read_item
from deepfake_cli.errors import DeepfakeError
from tests.conftest import copy_subset, example_set, shared_set
from tests.imagegen import add_member, write_shard

CIFAKE = example_set("cifake_sd14")


def _files(cls: str, n: int, src: Path = CIFAKE) -> list[Path]:
    return sorted((src / cls).iterdir())[:n]


# --- lists -------------------------------------------------------------------------------------

def test_txt_list_paths_relative_to_the_list(tmp_path):
    data = copy_subset(CIFAKE, tmp_path / "data", 2)
    outside = copy_subset(example_set("forensynths_biggan"), tmp_path / "other", 1, classes=("fake",))
    lists = tmp_path / "lists"
    lists.mkdir()
    reals, fakes = sorted((data / "real").iterdir()), sorted((data / "fake").iterdir())
    listing = lists / "train.txt"
    listing.write_text("\n".join([
        "# my training images", "",
        f"../data/real/{reals[1].name}",          # relative to the list's folder
        f"  ../data/fake/{fakes[0].name}  ",      # surrounding blanks do not count
        str(reals[0]),                            # absolute
        f"../data/./real/{reals[1].name}",        # the same file again
        "../data/notes.md",                       # not an image
        f"../other/fake/{next((outside / 'fake').iterdir()).name}",
    ]) + "\n")
    ds = discover(str(listing))
    assert ds.name == "train" and ds.root == lists
    assert [it.rel for it in ds.items] == [f"../data/real/{reals[1].name}", f"../data/fake/{fakes[0].name}",
                                           f"../data/real/{reals[0].name}",
                                           f"../other/fake/{next((outside / 'fake').iterdir()).name}"]
    assert [it.label for it in ds.items] == [REAL, FAKE, REAL, FAKE]  # from the paths' label folders
    assert ds.items[0].path == reals[1]
    assert [s["path"] for s in ds.skipped] == [f"../data/real/{reals[1].name}", "../data/notes.md"]
    assert "listed again (line 6" in ds.skipped[0]["reason"]
    assert [read_item(it)[1] for it in ds.items[:1]] == [read_image(reals[1])[1]]


def test_csv_list_with_labels_and_datasets(tmp_path):
    pool = tmp_path / "pool"  # a folder that says nothing about the label
    pool.mkdir()
    shutil.copy(_files("fake", 3)[2], pool / "unsure.jpg")
    rows = [(p, "real", "a") for p in _files("real", 2)] + [(p, "1", "a") for p in _files("fake", 2)] \
        + [(pool / "unsure.jpg", "", "b"), (_files("real", 3)[2], "0", "")]
    listing = tmp_path / "all.csv"
    with open(listing, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Path", "label", "dataset", "note"])  # header case and extra columns do not matter
        w.writerows([str(p), lab, ds, "x"] for p, lab, ds in rows)
    a, b, rest = discover_many([f"mine={listing}"])
    assert (a.name, b.name, rest.name) == ("a", "b", "mine")  # NAME= names the rows without a dataset
    assert a.counts == {"real": 2, "fake": 2, "unknown": 0}
    assert b.counts == {"real": 0, "fake": 0, "unknown": 1}  # no label cell, no label folder
    assert rest.counts == {"real": 1, "fake": 0, "unknown": 0}
    with pytest.raises(DeepfakeError, match="holds 3 datasets"):
        discover(str(listing))
    unlabelled_b = discover_many([str(listing)], require_labels=True)[1]
    assert unlabelled_b.warnings and "no labelled image" in unlabelled_b.warnings[0]


@pytest.mark.parametrize("text, error", [
    ("file,label\nx.png,real\n", "no 'path' column"),
    ("path,label\nx.png,maybe\n", "line 2: label 'maybe' is not real, fake, 0 or 1"),
    ("path\nnotes.md\nreadme\n", "lists no image file"),
])
def test_bad_csv_lists_are_clear_errors(tmp_path, text, error):
    listing = tmp_path / "bad.csv"
    listing.write_text(text)
    with pytest.raises(DeepfakeError, match=error):
        discover(str(listing))


# --- tar shards --------------------------------------------------------------------------------

def test_one_shard_is_read_in_place(tmp_path):
    images = _files("real", 3) + _files("fake", 3)
    labels = [REAL] * 3 + [FAKE] * 3
    shard = tmp_path / "cifake_wds" / "00000.tar"
    names = write_shard(shard, images, labels)
    before = sorted(p.name for p in shard.parent.iterdir())
    ds = discover(str(shard))
    assert ds.name == "00000" and ds.root == shard.parent
    assert [it.rel for it in ds.items] == [f"00000.tar/{n}" for n in names]
    assert [it.label for it in ds.items] == labels and ds.skipped == [] and ds.warnings == []
    assert all(it.path == shard and it.member.size == src.stat().st_size for it, src in zip(ds.items, images))
    for it, src in zip(ds.items, images):
        img, digest = read_item(it)
        ref, ref_digest = read_image(src)
        assert digest == ref_digest and np.array_equal(np.asarray(img), np.asarray(ref))
    assert sorted(p.name for p in shard.parent.iterdir()) == before  # nothing unpacked


def test_folder_of_shards_and_labels_without_cls(tmp_path):
    root = tmp_path / "wds"
    write_shard(root / "00001.tar", _files("fake", 2), [FAKE, FAKE], start=2)
    write_shard(root / "00000.tar", _files("real", 2), [REAL, REAL])
    # Shards without .cls under label folders, and one member in a label folder inside its tar.
    write_shard(root / "more" / "fake" / "00000.tar", _files("fake", 1), [None], with_json=False)
    with tarfile.open(root / "more" / "00009.tar", "w") as tf:
        add_member(tf, "real/a.jpg", _files("real", 1)[0].read_bytes())
        add_member(tf, "real/._a.jpg", b"macOS resource fork")  # hidden: ignored
        add_member(tf, "b.jpg", _files("real", 1)[0].read_bytes())  # no label anywhere: dropped
    ds = discover(str(root))
    assert ds.name == "wds"
    assert [(it.rel, it.label) for it in ds.items] == [
        ("00000.tar/000000.jpg", REAL), ("00000.tar/000001.jpg", REAL),
        ("00001.tar/000002.jpg", FAKE), ("00001.tar/000003.jpg", FAKE),
        ("more/00009.tar/real/a.jpg", REAL),
        ("more/fake/00000.tar/000000.jpg", FAKE),
    ]
    explicit = discover(None, real=str(root / "more"), name="r")
    assert explicit.counts == {"real": 3, "fake": 0, "unknown": 0}  # --real labels every member


def test_odd_cls_values_broken_and_compressed_shards(tmp_path):
    root = tmp_path / "odd"
    write_shard(root / "00000.tar", _files("real", 3), [REAL, 7, FAKE])
    # A shard cut short in the middle of its second image (no .cls: labelled by its fake/ folder).
    cut = write_shard(tmp_path / "whole.tar", _files("fake", 3), [None] * 3, with_json=False)
    (root / "fake").mkdir()
    (root / "fake" / "00001.tar").write_bytes((tmp_path / "whole.tar").read_bytes()[:2500])
    (root / "00002.tar").write_bytes(b"not a tar at all")
    ds = discover(str(root))
    assert [(it.rel, it.label) for it in ds.items] == [
        ("00000.tar/000000.jpg", REAL), ("00000.tar/000002.jpg", FAKE),  # 7 is no label: dropped
        (f"fake/00001.tar/{cut[0]}", FAKE), (f"fake/00001.tar/{cut[1]}", FAKE)]
    assert ds.warnings == ["1 .cls file(s) hold a value other than 0 (real) or 1 (fake): their images are unlabelled."]
    assert {s["path"]: s["reason"].split(" (")[0] for s in ds.skipped} == {
        "fake/00001.tar": "tar cut short after 2 members", "00002.tar": "not an uncompressed tar file",
        "00000.tar/000001.jpg": "unlabelled in a labelled dataset"}  # the .cls 7 image: left out, but counted
    assert read_item(ds.items[2])[0].size == (32, 32)
    with pytest.raises(UnreadableImage, match="truncated tar member"):
        read_item(ds.items[3])
    gz = tmp_path / "shard.tar"
    gz.write_bytes(gzip.compress((root / "00000.tar").read_bytes()))
    with pytest.raises(DeepfakeError, match="not an uncompressed tar"):
        discover(str(gz))


def test_tars_next_to_images_leave_the_images_as_they_were(tmp_path):
    root = copy_subset(CIFAKE, tmp_path / "mixed", 2)
    before = discover(str(root))
    write_shard(root / "backup.tar", _files("real", 2), [REAL, REAL])
    after = discover(str(root))
    assert after.items == before.items
    assert len(after.warnings) == 1 and "ignored 1 .tar file" in after.warnings[0]


@pytest.mark.shared_data
def test_cifake_20k_shards_by_header_scan():
    root = shared_set("cifake_20k")
    t0 = time.perf_counter()
    ds = discover(str(root))
    seconds = time.perf_counter() - t0
    assert ds.name == "cifake_20k"
    assert ds.counts == {"real": 10_000, "fake": 10_000, "unknown": 0}
    assert len({it.rel for it in ds.items}) == 20_000 and ds.skipped == []
    assert seconds < 30  # headers only (about 1 s here); reading every image would take far longer
    with open(root / "MANIFEST.tsv", newline="") as fh:
        first = next(csv.DictReader(fh, delimiter="\t"))
    item = ds.items[0]
    assert item.rel == f"{first['shard']}/{first['key']}.jpg"
    assert item.label == (REAL if first["label"] == "real" else FAKE)
    img, digest = read_item(item)
    assert digest == first["sha256"] and img.size == (32, 32)
    assert UNKNOWN not in {it.label for it in ds.items}
