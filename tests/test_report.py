"""Figures, report.md and report.html from a results table alone (and per-image scores when kept)."""

import base64
import csv
import hashlib
import itertools
import re
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner
from tests.helpers import small_study_config

from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.evaluate import COLUMNS, write_outputs
from deepfake_cli.report import MATRIX_CMAP, read_results, render_report
from deepfake_cli.metrics.scoring import binary_scores
from deepfake_cli.metrics.stats import pooled_accuracy, wilson_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEGACY_MODEL = Path(__file__).parent / "golden" / "legacy" / "models" / "lda.model"


def _write_table(path, backbones=("lowlevel", "effnet-lite0", "lowlevel+effnet-lite0"), reducers=("none", "pca:16"),
                 classifiers=("lda", "svm", "knn3"), datasets=("a", "b"), transforms=("none", "blur@0.5"), seed=0):
    """A results table in the shape study/eval write; counts and accuracies drawn at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for bb, rd, clf, tr, te, trt, tet in itertools.product(backbones, reducers, classifiers, datasets, datasets,
                                                           transforms, transforms):
        n = int(rng.integers(20, 60))
        k = int(rng.integers(n // 3, n + 1))
        lo, hi = wilson_interval(k, n)
        rows.append(dict(model=f"{clf}-{bb}", classifier=clf, backbone=bb, reducer=rd, train_datasets=tr,
                         test_dataset=te, kind="within" if tr == te else "cross", train_transform=trt,
                         test_transform=tet, n=n, n_real=n // 2, n_fake=n - n // 2, accuracy=k / n,
                         accuracy_ci_low=lo, accuracy_ci_high=hi, accuracy_real=k / n, accuracy_fake=k / n,
                         balanced_accuracy=k / n, roc_auc=float(rng.uniform(0.5, 1)), average_precision=0.8,
                         threshold=0.5, accuracy_at_0_5=k / n))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return rows


def _write_eval(out: Path, datasets=(("a", 60), ("b", 40), ("c", 30)), backbones=("lowlevel", "effnet-lite0"),
                classifiers=("lda", "svm"), reducers=("none", "pca:8"), transforms=("none", "blur@1"), seed=0):
    """eval.csv + eval_images.csv, as `deepfake eval --out` writes them, from simulated per-image scores.

    Images have a shared difficulty, so cells agree on which images are hard; within-dataset rows score the
    first 30% of a set (its held-out part), cross rows all of it."""
    rng = np.random.default_rng(seed)
    images = {}
    for ds, n in datasets:
        y = np.arange(n) % 2
        sha = np.array([hashlib.sha256(f"{ds}/{i}".encode()).hexdigest() for i in range(n)])
        images[ds] = (y, sha, rng.normal(size=n))
    rows, per_image = [], []
    for bb, clf, rd, (train_ds, _), tt in itertools.product(backbones, classifiers, reducers, datasets, transforms):
        model = f"{bb}-{clf}-{rd}-{train_ds}"
        skill = rng.uniform(0.8, 2.5) * (1.0 if tt == "none" else 0.7)
        thr = float(rng.uniform(0.4, 0.6))
        for ds, n in datasets:
            y, sha, hard = images[ds]
            idx = np.arange(int(0.3 * n)) if ds == train_ds else np.arange(n)
            gain = skill if ds == train_ds else 0.2
            logit = gain * (2 * y[idx] - 1) + hard[idx] * (2 * y[idx] - 1) * -0.8 + rng.normal(scale=0.6, size=len(idx))
            p = 1 / (1 + np.exp(-logit))
            s = binary_scores(y[idx], p, thr)
            lo, hi = wilson_interval(s["n_correct"], s["n"])
            feats = f"feats_{tt}.h5"
            rows.append(dict(model=model, classifier=clf, backbone=bb, reducer=rd, train_datasets=train_ds,
                             test_dataset=ds, kind="within" if ds == train_ds else "cross", train_transform="none",
                             test_transform=tt, n=s["n"], n_real=s["n_real"], n_fake=s["n_fake"],
                             accuracy=s["accuracy"], accuracy_ci_low=lo, accuracy_ci_high=hi,
                             accuracy_real=s["accuracy_real"], accuracy_fake=s["accuracy_fake"],
                             balanced_accuracy=s["balanced_accuracy"], roc_auc=s["roc_auc"],
                             average_precision=s["average_precision"], threshold=thr,
                             accuracy_at_0_5=binary_scores(y[idx], p, 0.5)["accuracy"], features=feats,
                             n_excluded_trained=0))
            per_image += [{"model": model, "features": feats, "test_dataset": ds, "kind": rows[-1]["kind"],
                           "path": f"{ds}/{i}.png", "sha256": sha[i], "label": int(y[i]), "p_fake": float(pf)}
                          for i, pf in zip(idx, p)]
    write_outputs(rows, str(out), per_image=per_image)
    return rows


def _row_pattern():
    return re.compile(r"\| (\d\.\d{3})( \[\d\.\d{3}, \d\.\d{3}\] n=\d+)? \|")


def test_all_figures_from_a_full_table(tmp_path):
    rows = _write_table(tmp_path / "results.csv")
    (tmp_path / "config.toml").write_text("[grid]\nbackbones = [\"lowlevel\"]\n")
    report = render_report(tmp_path / "results.csv", tmp_path / "out")
    for name in ("transforms", "reducers", "classifiers", "backbones", "cross_dataset"):
        png = tmp_path / "out" / "figures" / f"{name}.png"
        svg = tmp_path / "out" / "figures" / f"{name}.svg"
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        assert b"<svg" in svg.read_bytes()[:2000], name
        assert f"figures/{name}.png" in report.read_text()
    text = report.read_text()
    assert 'backbones = ["lowlevel"]' in text  # the config beside the CSV is embedded
    assert "scikit-learn" in text and "matplotlib" in text  # versions
    assert "too narrow" not in text and "has no per-image scores" in text  # the method, stated
    # Every accuracy cell in the tables carries a CI and n.
    acc_cells = _row_pattern().findall(text)
    assert acc_cells and all(ci for _, ci in acc_cells)
    # The reducer table: the mean of the within-dataset, matched-transform rows, n = distinct images
    # (the largest test set of each of a and b), the bootstrap of stats.pooled_accuracy.
    sel = [r for r in rows if r["kind"] == "within" and r["train_transform"] == r["test_transform"]
           and r["reducer"] == "pca:16"]
    acc, n, lo, hi = pooled_accuracy([r["accuracy"] for r in sel], [r["n"] for r in sel],
                                     [r["test_dataset"] for r in sel])
    assert acc == pytest.approx(np.mean([r["accuracy"] for r in sel]))
    assert n == sum(max(r["n"] for r in sel if r["test_dataset"] == d) for d in ("a", "b"))
    assert n < sum(r["n"] for r in sel) / 10
    assert f"| pca:16 | {acc:.3f} [{lo:.3f}, {hi:.3f}] n={n} |" in text
    # Captions give n as distinct images.
    assert re.search(r"n = \d+ distinct test images \(a \d+, b \d+\)", text)
    # without per-image scores, the ROC curves and histograms are listed as not drawn, with why
    assert "**ROC curves per test set**: skipped, no per-image scores" in text


def test_single_level_factors_are_skipped_and_said(tmp_path):
    _write_table(tmp_path / "results.csv", backbones=("lowlevel",), reducers=("none",), classifiers=("lda", "svm"),
                 datasets=("a",), transforms=("none",))
    report = render_report(tmp_path / "results.csv", tmp_path / "out")
    figs = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert figs == ["classifiers.png", "classifiers.svg"]
    text = report.read_text()
    assert "## Figures not drawn" in text
    for phrase in ("one reducer (none)", "one backbone (lowlevel)", "no cross-dataset rows", "one train transform"):
        assert phrase in text


def test_not_a_results_table(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DeepfakeError, match="not a results table"):
        read_results(tmp_path / "x.csv")
    with pytest.raises(DeepfakeError, match="not found"):
        read_results(tmp_path / "missing.csv")


def _hdf5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.zeros((3, 4), dtype=np.float32))


WRONG_INPUTS = {
    # name: (make the file, words the message must have)
    "feats.h5": (_hdf5, "an HDF5 file"),
    "lda.model": (lambda p: p.write_bytes(LEGACY_MODEL.read_bytes()), "a model or reducer file"),
    "junk.bin": (lambda p: p.write_bytes(bytes(range(256)) * 8), "binary data"),
    "latin1.csv": (lambda p: p.write_bytes("name,caf\xe9\n".encode("latin-1") * 3), "not UTF-8 text"),
    "empty.csv": (lambda p: p.write_bytes(b""), "an empty file"),
    "blank.csv": (lambda p: p.write_text("\n\n  \n"), "a file of blank lines"),
    "other.csv": (lambda p: p.write_text("a,b\n1,2\n"), "a CSV with other columns (a, b)"),
    "predictions.csv": (lambda p: p.write_text("path,p_fake,label,model\nx.png,0.3,real,lda\n"),
                        "predictions of `deepfake predict`"),
    "eval_images.csv": (lambda p: p.write_text("model,features,test_dataset,kind,path,sha256,label,p_fake\n"),
                        "per-image scores of `deepfake eval`"),
    "results.json": (lambda p: p.write_text('[{"model": "m", "accuracy": 0.5}]'), "JSON result rows"),
    "study.toml": (lambda p: p.write_text("# grid\n[study]\nseed = 0\n[grid]\nbackbones = [\"lowlevel\"]\n"),
                   "a study configuration"),
    "image.png": (lambda p: p.write_bytes(PNG_MAGIC + b"\x00" * 40), "a PNG image"),
    "header_only.csv": (lambda p: p.write_text(",".join(COLUMNS) + "\n"), "has no result rows"),
    "bad_number.csv": (lambda p: p.write_text(",".join(COLUMNS) + "\n" + ",".join(
        "abc" if c == "n" else "x" for c in COLUMNS) + "\n"), "n is 'abc', not a number"),
    "a_folder": (lambda p: p.mkdir(), "is a folder"),
}


@pytest.mark.parametrize("name", sorted(WRONG_INPUTS))
def test_wrong_input_files_get_one_line_saying_what_they_are(tmp_path, name):
    make, words = WRONG_INPUTS[name]
    path = tmp_path / name
    make(path)
    res = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    text = " ".join(ln.strip() for ln in lines)
    assert words in text, text
    if name not in ("header_only.csv",):
        assert "report expects" in text or "bad_number" in name, text
    assert not (tmp_path / "r" / "report.md").exists()


def test_cli_report(tmp_path):
    _write_table(tmp_path / "results.csv", backbones=("lowlevel", "a+b"), classifiers=("lda",))
    res = CliRunner().invoke(app, ["report", str(tmp_path / "results.csv"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / "r" / "report.html").is_file()
    assert "report.html" in res.output
    assert (tmp_path / "r" / "figures" / "backbones.png").read_bytes()[:8] == PNG_MAGIC
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0


# --- per-image scores ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    rows = _write_eval(out)
    report = render_report(out / "eval.csv", out / "report")
    return out, rows, report


def test_per_image_scores_give_roc_histograms_and_image_level_pooling(eval_report):
    out, rows, report = eval_report
    text = report.read_text()
    for name in ("roc", "scores"):
        assert (out / "report" / "figures" / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
        assert f"figures/{name}.png" in text
    assert "Figures not drawn" not in text
    assert f"Per-image scores: read from `{out / 'eval_images.csv'}` for {len(rows)} of {len(rows)} rows." in text
    assert "resample the actual images" in text
    # n of the overall line: the distinct held-out images (30% of each set), not the sum over rows
    m = re.search(r"train transform: (\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\] n=(\d+)", text)
    assert int(m.group(4)) == 18 + 12 + 9
    within = [r for r in rows if r["kind"] == "within" and r["test_transform"] == "none"]
    assert float(m.group(1)) == pytest.approx(np.mean([r["accuracy"] for r in within]), abs=6e-4)
    # the ROC table's AUCs are the rows' own
    for ds in ("a", "b", "c"):
        cells = [r for r in within if r["test_dataset"] == ds and r["backbone"] == "lowlevel"]
        assert f"| {ds} | lowlevel | {len(cells)} | {np.mean([r['roc_auc'] for r in cells]):.3f} |" in text


def test_scores_that_do_not_match_their_rows_are_left_out(tmp_path):
    rows = _write_eval(tmp_path, datasets=(("a", 40), ("b", 40)), backbones=("lowlevel",), reducers=("none",),
                       transforms=("none",))
    lines = (tmp_path / "eval.csv").read_text().splitlines()
    head = lines[0].split(",")
    cells = lines[1].split(",")
    cells[head.index("accuracy")] = "0.123456"  # this row no longer agrees with its per-image scores
    (tmp_path / "eval.csv").write_text("\n".join([lines[0], ",".join(cells)] + lines[2:]) + "\n")
    text = render_report(tmp_path / "eval.csv", tmp_path / "r").read_text()
    assert f"for {len(rows) - 1} of {len(rows)} rows; 1 row(s) whose scores did not reproduce" in text
    assert "test sets where any row lacks them use the counts" in text


# --- the HTML report ----------------------------------------------------------------------------


class _Page(HTMLParser):
    """Every tag with its attributes, and each figure's caption text and image."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.figures: list[dict] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "figure":
            self.figures.append({"attrs": a, "caption": "", "img": None})
        elif tag == "img" and self.figures:
            self.figures[-1]["img"] = a.get("src")
        elif tag == "figcaption":
            self._in_caption = True

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.figures[-1]["caption"] += data


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_html_is_self_contained_and_every_figure_is_captioned_with_n(eval_report):
    out, _, _ = eval_report
    html = out / "report" / "report.html"
    page = _parse(html)
    names = [f["attrs"]["data-figure"] for f in page.figures]
    assert names == ["transforms", "reducers", "classifiers", "backbones", "cross_dataset", "roc", "scores"]
    for tag, attrs in page.tags:  # nothing is fetched: images are data URIs, links stay in the page
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        if "src" in attrs:
            assert attrs["src"].startswith("data:image/"), attrs["src"][:80]
        if "href" in attrs:
            assert attrs["href"].startswith("#"), attrs["href"]
    assert "url(" not in html.read_text() and "@import" not in html.read_text()
    for f in page.figures:
        assert re.search(r"n = \d+ distinct test images", f["caption"]), f["caption"]
        assert "Legend" in f["caption"], f["caption"]
        if f["attrs"]["data-figure"] != "scores":  # accuracy and ROC figures mark chance level
            assert "chance" in f["caption"], f["caption"]
        svg = base64.b64decode(f["img"].split(",", 1)[1])
        assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg[:2000]
        assert b"xlink:href=\"http" not in svg and b"href=\"http" not in svg
    md = (out / "report" / "report.md").read_text()
    assert "[report.html](report.html)" in md


def _fills(svg: bytes) -> set[str]:
    return {m.lower() for m in re.findall(rb"fill:\s*(#[0-9a-fA-F]{6})", svg)} | {
        m.lower() for m in re.findall(rb'fill="(#[0-9a-fA-F]{6})"', svg)}


def test_cross_dataset_matrix_uses_cividis_and_marks_the_diagonal(eval_report):
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    out, _, _ = eval_report
    page = _parse(out / "report" / "report.html")
    fig = next(f for f in page.figures if f["attrs"]["data-figure"] == "cross_dataset")
    assert fig["attrs"]["data-colormap"] == MATRIX_CMAP == "cividis"
    assert "outlined cell" in fig["caption"] and "within-dataset" in fig["caption"]
    fills = {f.decode() for f in _fills(base64.b64decode(fig["img"].split(",", 1)[1]))}
    # every cell's colour is cividis at its accuracy (the table under the figure gives the values)
    md = (out / "report" / "report.md").read_text()
    section = md[md.index("Cross-dataset: train on A"):md.index("ROC curves per test set")]
    values = [float(v) for v in re.findall(r"^\| \w+ \| \w+ \| (\d\.\d{3})", section, re.MULTILINE)]
    assert len(values) == 9
    cividis, rdylgn = colormaps["cividis"], colormaps["RdYlGn"]
    for v in values:
        near = {to_hex(cividis(x)) for x in (v - 0.0005, v, v + 0.0005)}
        assert near & fills, (v, near)
    assert not {to_hex(rdylgn(v)) for v in values} & fills - {to_hex(cividis(v)) for v in values}


def _chromium() -> str | None:
    import shutil

    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed")
def test_html_renders_in_headless_chromium(eval_report, tmp_path):
    """The page as a browser draws it (one tall window: the whole report), with the matrix's cividis cells."""
    import subprocess

    from matplotlib import colormaps
    from matplotlib.image import imread

    out, rows, _ = eval_report
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,10000", (out / "report" / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=180)
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (10000, 1200)
    used = np.flatnonzero((img < 0.98).any(axis=(1, 2)))
    assert used.max() > 5000  # text, tables and seven figures laid out, not a blank or broken page
    # the matrix cells as the browser drew them: the cividis colour of each cross-dataset accuracy
    matrix = [r for r in rows if r["test_transform"] == "none"]
    cividis = colormaps["cividis"]
    found = 0
    for v in {round(np.mean([r["accuracy"] for r in matrix if (r["train_datasets"], r["test_dataset"]) == k]), 3)
              for k in {(r["train_datasets"], r["test_dataset"]) for r in matrix}}:
        colour = np.array(cividis(v)[:3])
        found += int((np.abs(img - colour).max(axis=2) < 4 / 255).sum() > 1000)
    assert found >= 7  # (nearly) every one of the 9 cells is visible in its colour


# --- the study keeps per-image scores -------------------------------------------------------------


def test_study_keeps_per_image_scores_for_the_report(tmp_path):
    from conftest import copy_subset, example_set

    from deepfake_cli.study import run_study

    copy_subset(example_set("forensynths_biggan"), tmp_path / "data" / "biggan", 6)
    copy_subset(example_set("cifake_sd14"), tmp_path / "data" / "cifake", 6)
    small_study_config(tmp_path / "study.toml", {"biggan": '"data/biggan"', "cifake": '"data/cifake"'})
    s = run_study(tmp_path / "study.toml", tmp_path / "out")
    assert not s.failures
    kept = sorted((tmp_path / "out" / "cells" / "images").glob("*.json"))
    assert len(kept) == 2 and not list((tmp_path / "out" / "cells").glob("*.images.json"))
    text = s.report.read_text()
    assert "for 4 of 4 rows." in text  # every row's scores were found and reproduce its n and accuracy
    assert "figures/roc.png" in text and "figures/scores.png" in text
    # n: distinct images; within rows test the held-out 30% of 6 + 6 images of each set
    m = re.search(r"train transform: \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] n=(\d+)", text)
    assert int(m.group(1)) == 8


def test_a_results_table_missing_columns_names_them(tmp_path):
    cols = [c for c in COLUMNS if c not in ("n", "kind")]
    (tmp_path / "r.csv").write_text(",".join(cols) + "\n" + ",".join("x" for _ in cols) + "\n")
    with pytest.raises(DeepfakeError, match=r"missing columns: kind, n\); report expects"):
        read_results(tmp_path / "r.csv")


def test_report_never_writes_over_an_input_or_a_foreign_file(tmp_path):
    _write_table(tmp_path / "results.csv")
    out = tmp_path / "r"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "results.csv"), "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in res.output and "Traceback" not in res.output
    assert (out / "report.md").read_text() == "my own notes\n"
    res = CliRunner().invoke(app, ["report", str(tmp_path / "results.csv"), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    # its own report is replaced without --overwrite; the results table is never an output
    res = CliRunner().invoke(app, ["report", str(tmp_path / "results.csv"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "report.md").read_text().startswith("# Detection study report")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "results.csv"), "--out", str(tmp_path / "results.csv")])
    assert res.exit_code != 0 and "is a file" in res.output
    assert not (out / "report.md.lock").exists()
