"""Names are data, never code: CSV cells that a spreadsheet would run as formulas get a leading ', and
Markdown tables and prose escape |, line breaks and HTML, in every CSV and Markdown file the tool writes."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import deepfake_cli as dfc
from deepfake_cli.cli import app
from deepfake_cli.safety.fileio import csv_text
from deepfake_cli.stages.train import train
from tests.conftest import copy_subset, example_set
from tests.helpers import small_study_config

runner = CliRunner()

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# file names a spreadsheet would run (OWASP's list), a name starting with the guard's own quote, a plain one
HOSTILE = ["=1+1_0_real.png", "@SUM(1+1).png", "+x.png", "-x.png", "\tt.png", "\rr.png", "'q.png", "ok.png"]
PIPE_NAME = "@a|b"
HTML_NAME = "</style><script>x</script>"


def _ok(args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _read(path: Path) -> str:
    with open(path, newline="", encoding="utf-8") as fh:  # a CR inside a quoted cell stays a CR
        return fh.read()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _expected(name: str) -> str:
    return "'" + name if name.startswith(FORMULA_STARTS + ("'",)) else name


def _table_widths(md: str) -> list[list[int]]:
    """The column count of every line of every Markdown table (a table: consecutive lines starting with |)."""
    tables, current = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            # a cell boundary is a | not escaped by a backslash (an escaped backslash before it does not count)
            current.append(len(re.findall(r"(?<!\\)(?:\\\\)*\|", line)) - 1)
        elif current:
            tables.append(current)
            current = []
    return tables


def _md_cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


@pytest.fixture(scope="module")
def model(tmp_path_factory, biggan6_lowlevel) -> Path:
    root = tmp_path_factory.mktemp("model")
    train(str(biggan6_lowlevel["features"]), "lda", str(root / "lda.model"), test_size=0.34)
    return root / "lda.model"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, list[str]]:
    """A folder of real images under names that start a spreadsheet formula (tab and CR where allowed)."""
    folder = tmp_path_factory.mktemp("hostile")
    sources = sorted((example_set("forensynths_biggan") / "real").iterdir())
    names = []
    for name, src in zip(HOSTILE, sources):
        try:
            shutil.copy(src, folder / name)
        except OSError:  # a file system without tab or CR in names
            continue
        names.append(name)
    return folder, names


# --------------------------------------------------------------------------------------------- CSV


def test_predict_csv_cells_never_start_a_formula(model, hostile, monkeypatch):
    folder, names = hostile
    monkeypatch.chdir(folder)  # paths as found are the bare names
    _ok(["predict", model, ".", "--out", "../pred.csv", "--device", "cpu"])
    stdout = _ok(["predict", model, ".", "--device", "cpu"]).stdout
    for text in (_read(folder.parent / "pred.csv"), stdout):
        rows = _rows(text)
        assert sorted(r["path"] for r in rows) == sorted(_expected(n) for n in names)
        for r in rows:
            assert 0 <= float(r["p_fake"]) <= 1 and 0 <= float(r["threshold"]) <= 1 and _is_number(r["score"])
            assert not any(v.startswith(FORMULA_STARTS) for v in r.values() if not _is_number(v))


def test_raw_csv_json_and_the_api_keep_names_as_they_are(model, hostile, monkeypatch):
    folder, names = hostile
    monkeypatch.chdir(folder)
    raw = _rows(_ok(["predict", model, ".", "--device", "cpu", "--raw-csv"]).stdout)
    assert sorted(r["path"] for r in raw) == sorted(names)
    lines = _ok(["predict", model, ".", "--device", "cpu", "--json"]).stdout.splitlines()
    rows = [r for r in map(json.loads, lines) if "path" in r]  # the last object is the verdict's evidence
    assert sorted(r["path"] for r in rows) == sorted(names)  # JSON stays raw
    dfc.predict(model, ".", out=folder.parent / "api.csv", device="cpu")
    dfc.predict(model, ".", out=folder.parent / "api_raw.csv", device="cpu", raw_csv=True)
    assert sorted(r["path"] for r in _rows(_read(folder.parent / "api.csv"))) == \
        sorted(_expected(n) for n in names)
    assert sorted(r["path"] for r in _rows(_read(folder.parent / "api_raw.csv"))) == sorted(names)


def test_numbers_stay_numbers_and_text_cells_read_back_exactly():
    from deepfake_cli.safety.fileio import unguard_cell

    row = {"float": -0.5, "np": np.float32(-0.25), "int": -3, "num_text": "-0.5", "exp_text": "-1e-05",
           "name": "-x", "formula": "=1+1", "inf_text": "-inf", "path": Path("@x.png"),
           "quoted": "'=1", "none": None}
    text = csv_text([row], list(row))
    got = _rows(text)[0]
    assert (got["float"], got["np"], got["int"]) == ("-0.5", "-0.25", "-3")
    assert (got["num_text"], got["exp_text"]) == ("-0.5", "-1e-05")  # a plain number cannot be a formula
    assert (got["name"], got["formula"], got["inf_text"], got["path"]) == ("'-x", "'=1+1", "'-inf", "'@x.png")
    assert got["quoted"] == "''=1" and got["none"] == ""
    for key, value in row.items():
        assert unguard_cell(got[key]) == ("" if value is None else str(value)), key
    assert _rows(csv_text([row], list(row), raw=True))[0]["formula"] == "=1+1"


# ------------------------------------------------------------------------ eval, report: CSV and Markdown


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """eval --out of a model trained on dataset `@a|b`, tested on it and on `</style><script>x</script>`;
    the images (from a .csv list) are named =N_real.png / -N_fake.png."""
    root = tmp_path_factory.mktemp("eval")
    rows = []
    for ds, prefix, src in ((PIPE_NAME, "=", "forensynths_biggan"), (HTML_NAME, "-", "forensynths_stylegan")):
        for cls in ("real", "fake"):
            for p in sorted((example_set(src) / cls).iterdir())[:5]:
                name = f"{prefix}{len(rows)}_{cls}.png"
                shutil.copy(p, root / name)
                rows.append({"path": name, "label": cls, "dataset": ds})
    with open(root / "list.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["path", "label", "dataset"])
        w.writeheader()
        w.writerows(rows)
    _ok(["extract", root / "list.csv", "--backbone", "lowlevel", "--out", root / "f.h5", "--device", "cpu",
         "--workers", "0", "-q"])
    _ok(["train", root / "f.h5", "--classifier", "lda", "--datasets", PIPE_NAME, "--out", root / "lda.model", "-q"])
    _ok(["eval", root / "lda.model", "--features", root / "f.h5", "--out", root / "ev", "-q"])
    return root


def test_eval_csvs_guard_names_and_paths(evaluated):
    ev = _rows(_read(evaluated / "ev" / "eval.csv"))
    assert {(r["train_datasets"], r["test_dataset"]) for r in ev} == {("'" + PIPE_NAME, "'" + PIPE_NAME),
                                                                     ("'" + PIPE_NAME, HTML_NAME)}
    images = _rows(_read(evaluated / "ev" / "eval_images.csv"))
    assert images and all(r["path"][:1] == "'" and r["path"][1:2] in "=-" for r in images)
    for r in ev + images:
        assert not any(v.startswith(FORMULA_STARTS) for v in r.values() if not _is_number(v))
    root = evaluated
    _ok(["eval", root / "lda.model", "--features", root / "f.h5", "--out", root / "ev_raw", "--raw-csv", "-q"])
    raw = _rows(_read(evaluated / "ev_raw" / "eval.csv"))
    assert {r["test_dataset"] for r in raw} == {PIPE_NAME, HTML_NAME}
    assert all(r["path"][:1] in "=-" for r in _rows(_read(evaluated / "ev_raw" / "eval_images.csv")))
    assert json.loads((evaluated / "ev" / "eval.json").read_text())[0]["test_dataset"] == PIPE_NAME


def test_eval_md_tables_keep_their_columns_and_carry_no_html(evaluated):
    md = (evaluated / "ev" / "eval.md").read_text()
    assert "<script>" not in md and "</style>" not in md
    assert "&lt;/style&gt;&lt;script&gt;x&lt;/script&gt;" in md
    widths = _table_widths(md)
    assert len(widths) == 3 and all(len(set(w)) == 1 for w in widths), widths
    # results table; matrix: model + 2 test sets; operating points
    assert widths[0][0] == 12 and widths[1][0] == 3 and widths[2][0] == 9
    body = [_md_cells(line) for line in md.splitlines()[4:6]]
    assert {b[2] for b in body} == {PIPE_NAME, "&lt;/style&gt;&lt;script&gt;x&lt;/script&gt;"}


def test_report_reads_guarded_names_back_and_escapes_them(evaluated):
    _ok(["report", evaluated / "ev" / "eval.csv", "--out", evaluated / "rep"])
    md = (evaluated / "rep" / "report.md").read_text()
    assert "<script>" not in md and "</style>" not in md
    widths = _table_widths(md)
    assert widths and all(len(set(w)) == 1 for w in widths), widths
    # the names as they were (no guard quote), and eval_images.csv's scores found for every row by them
    per_test_set = md[md.index("| test set |"):].splitlines()[2]
    assert _md_cells(per_test_set)[0] == PIPE_NAME
    assert "for 2 of 2 rows." in md
    html = (evaluated / "rep" / "report.html").read_text()
    assert HTML_NAME not in html and f"<td>{PIPE_NAME}</td>" in html and "&#x27;" + PIPE_NAME not in html


# --------------------------------------------------------------------------------------------- study


def test_study_results_csv_is_guarded_and_its_report_reads_it_back(tmp_path):
    copy_subset(example_set("forensynths_biggan"), tmp_path / "data" / "a", 6)
    copy_subset(example_set("cifake_sd14"), tmp_path / "data" / "b", 6)
    small_study_config(tmp_path / "study.toml", {"-a": '"data/a"', "b": '"data/b"'})
    _ok(["study", tmp_path / "study.toml", "--out", tmp_path / "out", "-q"])
    rows = _rows(_read(tmp_path / "out" / "results.csv"))
    assert {r["test_dataset"] for r in rows} == {"'-a", "b"}
    assert {r["train_datasets"] for r in rows} == {"'-a", "b"}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "for 4 of 4 rows." in md  # cells/images/*.json (raw names) matched to the read-back rows
    assert {_md_cells(line)[0] for line in md[md.index("| test set |"):].splitlines()[2:4]} == {"-a", "b"}
    _ok(["study", tmp_path / "study.toml", "--out", tmp_path / "out", "-q", "--raw-csv"])  # cached: only rewrites
    assert {r["test_dataset"] for r in _rows(_read(tmp_path / "out" / "results.csv"))} == {"-a", "b"}
