"""`predict --html FILE`: one self-contained page of a predict run (report/predict_page.py), checked as a
file (every row, sorted, escaped, nothing fetched) and as headless Chromium draws and runs it."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import example_set
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.report.predict_page import write_predict_page
from tests.imagegen import write_shard

# A file name that runs script if it ever reaches the page as markup (innerHTML, an unescaped attribute):
# the title would then read "pwned" in the browser.
HOSTILE = "<img src=x onerror=document.title='pwned'>.png"


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)


def _data(text: str) -> dict:
    """The page's JSON blob, as its script reads it."""
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def run(cifake8_lda, tmp_path_factory) -> dict:
    """A predict run over a labelled folder (a hostile file name among its fakes) and a tar shard, with
    --html: the result, the page and its text."""
    import deepfake_cli as dfc

    root = tmp_path_factory.mktemp("page")
    data = root / "data"
    for cls in ("real", "fake"):
        (data / cls).mkdir(parents=True)
        for p in sorted((example_set("cifake_sd14") / cls).iterdir())[:4]:
            shutil.copy(p, data / cls / p.name)
    shutil.copy(sorted((example_set("forensynths_biggan") / "fake").iterdir())[0], data / "fake" / HOSTILE)
    shard = root / "shard.tar"
    write_shard(shard, sorted((example_set("forensynths_stylegan") / "real").iterdir())[:2], [0, 0])
    page = root / "out" / "page.html"
    res = dfc.predict(cifake8_lda["model"], [str(data), str(shard)], html=page)
    return {"res": res, "page": page, "text": page.read_text(encoding="utf-8"), "root": root, "data": data}


def test_page_is_self_contained_lists_every_row_sorted_and_escapes_names(run):
    text, res = run["text"], run["res"]
    # nothing from anywhere else: no link, no external script, font or style, no URL at all
    assert not re.search(r"(https?|ftp|file)://", text, re.I)
    markup = re.sub(r'<script type="application/json" id="data">.*?</script>', "", text, flags=re.S)
    for value in re.findall(r"""\b(?:src|href|action|poster)\s*=\s*["']?([^"'\s>]*)""", markup, re.I):
        assert value.startswith(("data:", "#")), value  # in the markup and in the script alike
    assert not re.search(r"<link|<script[^>]*\bsrc=|@import|url\(|<iframe|<object", text, re.I)
    assert "Content-Security-Policy" in text and "default-src 'none'" in html.unescape(text)
    data = _data(text)
    rows = data["rows"]
    assert len(rows) == len(res.rows) == 11  # 8 CIFAKE + the hostile BigGAN + 2 tar members
    assert sorted(r["shown"] for r in rows) == sorted(r["path"] for r in res.rows)
    p = [r["p_fake"] for r in rows]
    assert p == sorted(p, reverse=True)  # highest p_fake first
    assert any(r["shown"].startswith(str(run["root"] / "shard.tar") + "/") for r in rows)
    # every image has its thumbnail, the tar members included, each a small JPEG
    for t in data["thumbs"]:
        img = Image.open(io.BytesIO(base64.b64decode(t)))
        assert img.format == "JPEG" and max(img.size) <= 128
    assert all(data["thumbs"][r["thumb"]] for r in rows)
    # the hostile name is in the data as the path it is, and nowhere in the page as markup
    assert any(r["shown"].endswith(HOSTILE) for r in rows)
    assert "<img src=x" not in text and "onerror=document" in text  # present only inside escaped JSON
    assert text.count("<script") == 2  # the data blob and the page's own script, nothing else
    # the trust summary on top, as predict prints it
    for line in res.evidence_lines + res.warnings:
        assert html.escape(line) in text
    assert "threshold" in text and "lda" in text
    # true labels: the filter is offered, and wrong verdicts are marked by the script
    assert 'id="f-truth"' in text and {r["true_label"] for r in rows} >= {"real", "fake"}


def test_unreadable_images_get_a_placeholder_and_maps_come_from_the_index(tmp_path):
    good = sorted((example_set("cifake_sd14") / "fake").iterdir())[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows = [{"path": str(good), "p_fake": 0.9, "label": "fake", "model": "m", "threshold": 0.5, "score": 0.9,
             "novelty": 1.7},
            {"path": str(broken), "p_fake": 0.2, "label": "real", "model": "m", "threshold": 0.5, "score": 0.2,
             "novelty": None},
            {"path": str(tmp_path / "gone.png"), "p_fake": 0.5, "label": "fake", "model": "m", "threshold": 0.5,
             "score": 0.5, "novelty": 0.3}]
    # a folder as stages.explain writes it: index.csv naming an overlay PNG beside it
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.new("RGB", (640, 480), (200, 30, 30)).save(maps / "a.png")
    (maps / "index.csv").write_text("path,model,p_fake,label,method,exact,overlay,map,width,height,seconds\n"
                                    f"{good},m,0.9,fake,cam,True,a.png,a.npy,32,32,0.01\n"
                                    f"{broken},m,0.2,real,cam,True,../../etc/passwd,b.npy,32,32,0.01\n")
    (maps / "index.json").write_text(json.dumps({"method_note": "exact class activation <b>"}))
    page = write_predict_page(tmp_path / "p.html", rows, explain_dir=maps, warnings=["a <warning>"])
    text = page.read_text()
    data = _data(text)
    by = {r["shown"]: r for r in data["rows"]}
    assert data["thumbs"][by[str(good)]["thumb"]]
    assert data["thumbs"][by[str(broken)]["thumb"]] is None and data["no_thumb"][by[str(broken)]["thumb"]]
    assert data["no_thumb"][by[str(tmp_path / "gone.png")]["thumb"]] == "not found"
    # the map of the good image, shrunk; none for an index row pointing outside its folder
    m = data["maps"][by[str(good)]["map"]]
    assert m["method"] == "cam" and m["exact"] is True
    assert max(Image.open(io.BytesIO(base64.b64decode(m["overlay"]))).size) == 320
    assert by[str(broken)]["map"] is None
    assert "a &lt;warning&gt;" in text and "exact class activation &lt;b&gt;" in text


def test_html_and_explain_never_land_on_or_in_an_input(run, cifake8_lda):
    import deepfake_cli as dfc

    data = run["data"]
    with pytest.raises(DeepfakeError, match=r"--html .* lies in .*which is read"):
        dfc.predict(cifake8_lda["model"], [str(data)], html=data / "page.html")
    with pytest.raises(DeepfakeError, match=r"--explain .* lies in .*which is read"):
        dfc.predict(cifake8_lda["model"], [str(data)], explain=data / "maps")
    with pytest.raises(DeepfakeError, match="name the same file"):
        dfc.predict(cifake8_lda["model"], [str(data)], out=run["root"] / "x.csv", html=run["root"] / "x.csv")
    assert not (data / "page.html").exists() and not (data / "maps").exists()


def test_a_rerun_replaces_its_own_page_but_not_a_foreign_file(run, cifake8_lda, tmp_path):
    """Needs store.outputs to know the page kind (the page names its generator in its first bytes)."""
    import deepfake_cli as dfc

    from typer.testing import CliRunner

    from deepfake_cli.cli import app

    page = tmp_path / "page.html"
    shutil.copy(run["page"], page)
    res = CliRunner().invoke(app, ["predict", str(cifake8_lda["model"]), str(run["data"]), "--html", str(page),
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output  # its own page: replaced without --overwrite
    assert f"wrote page {page}" in res.stderr and len(_data(page.read_text())["rows"]) == 9
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my notes</p>")
    with pytest.raises(DeepfakeError, match="--overwrite"):
        dfc.predict(cifake8_lda["model"], [str(run["data"])], html=notes)
    assert notes.read_text() == "<p>my notes</p>"


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium (chromium or chromium-browser) is not installed")
def test_page_renders_and_its_script_builds_and_filters_the_cards_in_chromium(run, tmp_path):
    """Two Chromium runs (about 1 s each here): a screenshot, and the DOM the script built for #label=fake."""
    res, page = run["res"], run["page"]
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,900", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert img.shape[:2] == (900, 1280)
    assert img.std() > 20  # text, controls and thumbnails, not a blank page
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 500  # photos among them, not only text
    dom = subprocess.run(base + ["--dump-dom", page.as_uri() + "#label=fake"], check=True, capture_output=True,
                         timeout=120, text=True).stdout
    n_fake = sum(r["label"] == "fake" for r in res.rows)
    assert dom.count('class="card') == n_fake > 0  # the filter from the URL, applied by the script
    assert set(re.findall(r'data-label="(\w+)"', dom)) == {"fake"}
    assert f"showing {n_fake} of {len(res.rows)}" in dom
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)  # the hostile name never ran
    wrong = sum(r["label"] == "fake" and r["true_label"] == "real" for r in res.rows)
    assert dom.count('class="card error"') == wrong  # errors marked: true label differs from the verdict


def test_explain_is_refused_with_several_models_a_transform_or_a_foreign_folder(run, cifake8_lda, tmp_path):
    """Refused in one line by the output guards, before any model loads or image is scored."""
    import deepfake_cli as dfc

    models = tmp_path / "models"
    models.mkdir()
    for name in ("a.model", "b.model"):
        shutil.copy(cifake8_lda["model"], models / name)
    with pytest.raises(DeepfakeError, match="--explain maps the evidence of one model, and .* holds 2"):
        dfc.predict(models, [str(run["data"])], explain=tmp_path / "maps")
    with pytest.raises(DeepfakeError, match="--transform jpeg:90 scores them transformed"):
        dfc.predict(cifake8_lda["model"], [str(run["data"])], explain=tmp_path / "maps", transform="jpeg:90")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DeepfakeError, match="holding other files"):
        dfc.predict(cifake8_lda["model"], [str(run["data"])], explain=foreign, html=tmp_path / "p.html")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"] and not (tmp_path / "p.html").exists()


@pytest.mark.slow  # an effnet-lite0 extraction of 16 images and a training first: about 5 s on 2 cores
def test_predict_explain_writes_the_maps_and_the_page_shows_them(tmp_path):
    from typer.testing import CliRunner

    import deepfake_cli as dfc
    from conftest import copy_subset
    from deepfake_cli.cli import app

    # an exact-path model (effnet-lite0, last layer, lda): one forward pass per map
    dfc.extract([str(copy_subset(example_set("cifake_sd14"), tmp_path / "train", 8))], backbone="effnet-lite0",
                out=tmp_path / "f.h5", device="cpu", workers=0)
    (trained,) = dfc.train(tmp_path / "f.h5", classifier="lda", out=tmp_path / "lda.model", test_size=0.25)
    folder = tmp_path / "in" / "fake"
    folder.mkdir(parents=True)
    shutil.copy(sorted((example_set("cifake_sd14") / "fake").iterdir())[-1], folder / "a.jpg")
    page, maps = tmp_path / "page.html", tmp_path / "maps"
    res = CliRunner().invoke(app, ["predict", str(trained.path), str(folder), "--html", str(page),
                                   "--explain", str(maps), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert f"wrote maps {maps}" in res.stderr and f"wrote page {page}" in res.stderr
    assert (maps / "index.csv").is_file() and len(list(maps.glob("*.png"))) == 1
    data = _data(page.read_text())
    (row,) = data["rows"]
    m = data["maps"][row["map"]]
    assert m["method"] == "cam" and m["exact"] is True and m["overlay"]  # stated as what it is
    assert "exact class activation" in page.read_text()  # the method note on top
