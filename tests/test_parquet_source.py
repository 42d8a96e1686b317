"""The Parquet source (issue 17, item 4): the hub's image layout (an `image` struct of bytes and path, or a
binary column, and a `label` column) read like any source by extract, predict, audit and the study, a
row group at a time; and the `data.sources` registry it is one file of."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from deepfake_cli.cli import app
from deepfake_cli.data import FAKE, REAL, UNKNOWN, UnreadableImage, discover, read_item
from deepfake_cli.data.sources import list_sources, source_for
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.extract import extract
from deepfake_cli.store.features import read_features
from tests.conftest import copy_subset, example_set
from tests.imagegen import png_1bit

runner = CliRunner()
FAST = ["--workers", "0", "--device", "cpu"]


def _images(folder: Path) -> list[tuple[Path, int]]:
    """The folder's images with labels, in the order discovery lists them (by relative path)."""
    return [(it.path, it.label) for it in discover(str(folder)).items]


def _write(path: Path, rows: list[tuple[bytes | None, object]], layout: str = "struct", image: str = "image",
           label: str | None = "label", row_group_size: int | None = None, metadata: dict | None = None) -> Path:
    """A Parquet file of (image bytes, label) rows: `struct` as `datasets.Image` writes it (bytes + path),
    `binary` a plain binary column."""
    data = [b for b, _ in rows]
    if layout == "struct":
        col = pa.array([None if b is None else {"bytes": b, "path": f"img{i}.png"} for i, b in enumerate(data)],
                       pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    else:
        col = pa.array(data, pa.binary())
    columns = {image: col}
    if label is not None:
        columns[label] = pa.array([lab for _, lab in rows])
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({k.encode(): json.dumps(v).encode() for k, v in metadata.items()})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """3 real + 3 fake CIFAKE examples in real/ and fake/."""
    return copy_subset(example_set("cifake_sd14"), tmp_path_factory.mktemp("images") / "ds", 3)


@pytest.fixture(scope="module")
def tables(images, tmp_path_factory) -> dict[str, Path]:
    """The same images as a struct/0-1 file (row groups of 2) and a binary/real-fake file with other names."""
    d = tmp_path_factory.mktemp("parquet")
    pairs = _images(images)
    struct = _write(d / "struct.parquet", [(p.read_bytes(), lab) for p, lab in pairs], row_group_size=2)
    words = _write(d / "words.parquet", [(p.read_bytes(), "real" if lab == REAL else "FAKE") for p, lab in pairs],
                   layout="binary", image="img", label="y")
    return {"struct": struct, "words": words}


@pytest.fixture(scope="module")
def features(images, tables, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("features")
    out = {}
    for key, spec in (("folder", str(images)), ("struct", str(tables["struct"])),
                      ("words", f"{tables['words']}?image=img&label=y")):
        out[key] = d / f"{key}.h5"
        extract([spec], "lowlevel", str(out[key]), workers=0, device="cpu")
    return out


def test_both_layouts_extract_the_features_of_the_same_images_from_a_folder(features):
    folder = read_features(features["folder"])
    for key in ("struct", "words"):
        got = read_features(features[key])
        np.testing.assert_array_equal(got.X, folder.X)
        np.testing.assert_array_equal(got.y, folder.y)
        np.testing.assert_array_equal(got.sha256, folder.sha256)
        name = "struct.parquet" if key == "struct" else "words.parquet"
        assert list(got.path) == [f"{name}/{i}" for i in range(len(folder.path))]


def test_labels_0_1_real_fake_and_class_names(tables, images, tmp_path):
    expected = [lab for _, lab in _images(images)]
    assert [it.label for it in discover(str(tables["struct"])).items] == expected
    assert [it.label for it in discover(f"w={tables['words']}?image=img&label=y").items] == expected
    # the hub writes a ClassLabel's names in the schema metadata: here 0 is fake and 1 real
    png = png_1bit(8, 8)
    hub = {"info": {"features": {"image": {"_type": "Image"},
                                 "label": {"_type": "ClassLabel", "names": ["FAKE", "REAL"]}}}}
    named = _write(tmp_path / "named.parquet", [(png, 0), (png, 1), (png, None)], metadata={"huggingface": hub})
    ds = discover(str(named))
    assert [it.label for it in ds.items] == [FAKE, REAL]  # the null label: left out, and said
    assert ds.skipped == [{"path": "named.parquet/2",
                           "reason": "unlabelled in a labelled dataset (no label in its row and no label folder)"}]
    unlabelled = _write(tmp_path / "plain.parquet", [(png, 0)], label=None)
    assert [it.label for it in discover(str(unlabelled)).items] == [UNKNOWN]


def test_a_bad_label_is_one_line(tmp_path):
    png = png_1bit(8, 8)
    bad = _write(tmp_path / "bad.parquet", [(png, "real"), (png, "maybe")])
    res = runner.invoke(app, ["extract", str(bad), "--backbone", "lowlevel", "--out", str(tmp_path / "f.h5"), *FAST])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "bad.parquet row 1: label 'maybe' is not real, fake, 0 or 1" in lines[0]
    with pytest.raises(DeepfakeError, match="row 0: label '7'"):
        discover(str(_write(tmp_path / "seven.parquet", [(png, 7)])))


def test_rows_without_an_image_are_skipped_rows_with_their_reason(tmp_path):
    good = example_set("cifake_sd14") / "real"
    real = [p.read_bytes() for p in sorted(good.iterdir())[:2]]
    path = _write(tmp_path / "mixed.parquet", [(real[0], 0), (b"no image here", 1), (None, 1), (real[1], 0)])
    out = tmp_path / "f.h5"
    summary = extract([str(path)], "lowlevel", str(out), workers=0, device="cpu")
    got = read_features(out)
    assert list(got.path) == ["mixed.parquet/0", "mixed.parquet/3"]
    reasons = {s["path"]: s["reason"] for s in got.meta["skipped"]}
    assert reasons["mixed.parquet/1"] == "not an image"
    assert reasons["mixed.parquet/2"] == "no image in this row (its 'image' cell holds no bytes)"
    assert summary is not None


def test_row_groups_are_read_one_at_a_time(tmp_path):
    """Listing reads no image; reading an item holds one row group of images, not the file."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)

    def noise() -> bytes:  # incompressible: each image is ~50 kB in the file and in memory
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    rows = [(noise(), i % 2) for i in range(80)]
    path = _write(tmp_path / "groups.parquet", rows, row_group_size=5)  # 16 groups of ~250 kB
    group, whole = sum(len(b) for b, _ in rows[:5]), sum(len(b) for b, _ in rows)
    assert pq.ParquetFile(path).metadata.num_row_groups == 16
    base = pa.total_allocated_bytes()
    ds = discover(str(path))
    assert pa.total_allocated_bytes() - base < group / 2  # the labels only
    img, digest = read_item(ds.items[12])
    assert img.size == (128, 128) and group / 2 < pa.total_allocated_bytes() - base < whole / 3
    for it in ds.items[::3]:  # Arrow keeps a few buffers of a group's size for reuse: never the file
        read_item(it)
        assert pa.total_allocated_bytes() - base < whole / 3, (it, pa.total_allocated_bytes() - base)


def test_an_image_over_the_byte_limit_and_a_huge_row_group_are_skipped(tmp_path, monkeypatch):
    from deepfake_cli.data.sources import parquet

    png = png_1bit(8, 8)
    path = _write(tmp_path / "big.parquet", [(png, 0), (png + b"\0" * 5000, 1)], row_group_size=1)
    ds = discover(str(path))
    monkeypatch.setattr(parquet, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(UnreadableImage, match="too large for an image"):
        read_item(ds.items[1])
    monkeypatch.setattr(parquet, "MAX_ROW_GROUP_BYTES", 1000)
    ds = discover(str(path))
    assert [it.rel for it in ds.items] == ["big.parquet/0"]
    assert ds.skipped[0]["path"] == "big.parquet/1-1" and "row group 1 too large to read" in ds.skipped[0]["reason"]


def test_a_folder_of_parquet_files_and_parquet_among_images(tables, images, tmp_path):
    shards = tmp_path / "data"
    shards.mkdir()
    for name in ("train-00000-of-00002.parquet", "train-00001-of-00002.parquet"):
        (shards / name).write_bytes(tables["struct"].read_bytes())
    (shards / "broken.parquet").write_bytes(b"not parquet at all")
    ds = discover(f"hub={shards}")
    assert ds.name == "hub" and len(ds.items) == 12 and ds.counts == {"real": 6, "fake": 6, "unknown": 0}
    assert ds.items[0].rel == "train-00000-of-00002.parquet/0"
    assert ds.skipped == [{"path": "broken.parquet", "reason": "not a Parquet file"}]
    words = tmp_path / "words"
    words.mkdir()
    (words / "w.parquet").write_bytes(tables["words"].read_bytes())
    assert len(discover(f"{words}?image=img&label=y").items) == 6  # options on a folder go to its files
    with pytest.raises(DeepfakeError, match="unknown option 'colour'"):
        discover(f"{words}?colour=red")
    mixed = copy_subset(example_set("cifake_sd14"), tmp_path / "mixed", 1)
    (mixed / "extra.parquet").write_bytes(tables["struct"].read_bytes())
    found = discover(str(mixed))
    assert len(found.items) == 2 and any("ignored 1 .parquet file(s)" in w for w in found.warnings)


def test_predict_audit_and_the_output_guards_read_parquet(tables, tmp_path):
    from deepfake_cli.stages.audit import audit
    from deepfake_cli.stages.train import train

    feats = tmp_path / "train.h5"  # the cheapest real model: lowlevel + LDA on 8 + 8 CIFAKE examples
    extract([str(copy_subset(example_set("cifake_sd14"), tmp_path / "train", 8))], "lowlevel", str(feats),
            workers=0, device="cpu")
    model = train(str(feats), "lda", str(tmp_path / "lda.model"), test_size=0.25)[0].path
    spec = f"{tables['words']}?image=img&label=y"
    out = tmp_path / "p.csv"
    res = runner.invoke(app, ["predict", str(model), spec, "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert len(lines) == 7 and lines[1].startswith(f"{tables['words']}/0,")
    assert "accuracy" in res.output  # the labels of the rows were read
    [result] = audit([spec])
    assert (result.n_real, result.n_fake) == (3, 3) and sum(result.formats["real"].values()) == 3
    assert not result.skipped
    # the file a spec with options reads is an input: never an output
    res = runner.invoke(app, ["extract", spec, "--backbone", "lowlevel", "--out", str(tables["words"]), *FAST])
    assert res.exit_code != 0 and "is read" in res.output and tables["words"].stat().st_size > 0
    from deepfake_cli.store.outputs import describe_file

    assert describe_file(tables["words"]) == "a .parquet file"


def test_the_registry_lists_every_kind_and_a_study_takes_parquet(tables, tmp_path):
    from deepfake_cli.study.config import check_paths, load_config

    assert [s["name"] for s in list_sources()] == ["image", "folder", "tar", "list", "parquet"]
    assert source_for(tables["struct"]).name == "parquet"
    cfg = tmp_path / "study.toml"
    cfg.write_text(f'[datasets]\nhub = "{tables["words"]}?image=img&label=y"\n[grid]\nbackbones = ["lowlevel"]\n'
                   'classifiers = ["lda"]\n')
    loaded = load_config(cfg)
    check_paths(loaded)
    [spec] = loaded.datasets[0].extract_args()["inputs"]
    assert len(discover(spec).items) == 6
