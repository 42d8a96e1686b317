"""`study` datasets given as webdataset tar shards and path lists (not only folders)."""

from __future__ import annotations

import csv

from deepfake_cli.store.features import read_features
from deepfake_cli.study import load_config, run_study
from tests.conftest import example_set
from tests.imagegen import write_shard


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_study_reads_tar_shards_and_lists(tmp_path):
    src = example_set("forensynths_biggan")
    real, fake = sorted((src / "real").iterdir())[:10], sorted((src / "fake").iterdir())[:10]
    # a folder of shards, as img2dataset writes them, and a single shard given as a file
    write_shard(tmp_path / "data" / "shards" / "00000.tar", real[:5] + fake[:5], [0] * 5 + [1] * 5)
    write_shard(tmp_path / "data" / "shards" / "00001.tar", real[5:] + fake[5:], [0] * 5 + [1] * 5, start=10)
    cif = example_set("cifake_sd14")
    lines = ["path,label"] + [f"{p},real" for p in sorted((cif / "real").iterdir())[:6]] \
        + [f"{p},fake" for p in sorted((cif / "fake").iterdir())[:6]]
    (tmp_path / "data" / "cifake.csv").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "s.toml"
    cfg.write_text("""
[study]
device = "cpu"
batch_size = 8
[datasets]
shards = "data/shards"
onetar = "data/shards/00001.tar"
cifake = "data/cifake.csv"
[grid]
backbones = ["lowlevel"]
classifiers = ["lda"]
""")
    summary = run_study(cfg, tmp_path / "out")
    rows = _rows(summary.results_csv)
    trained = {r["train_dataset"] for r in rows}
    assert trained == {"shards", "onetar", "cifake"}
    assert {(r["train_dataset"], r["test_dataset"]) for r in rows if r["kind"] == "within"} == \
        {(d, d) for d in trained}
    counts = {}
    for f in (tmp_path / "out").rglob("*.h5"):
        fs = read_features(f)
        counts[fs.datasets[0]] = (int((fs.y == 0).sum()), int((fs.y == 1).sum()))
    assert counts["shards"] == (10, 10) and counts["onetar"] == (5, 5) and counts["cifake"] == (6, 6)


def test_study_config_keeps_file_sources_as_given(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[datasets]\na = "x/a.tar"\nb = "b.txt"\n[grid]\nbackbones = ["lowlevel"]\nclassifiers = ["lda"]\n')
    a, b = load_config(cfg).datasets
    assert a.extract_args() == {"inputs": [f"a={tmp_path / 'x' / 'a.tar'}"]}
    assert b.extract_args() == {"inputs": [f"b={tmp_path / 'b.txt'}"]}
