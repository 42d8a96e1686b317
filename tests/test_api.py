"""The Python API (`import deepfake_cli as dfc`): documented, one code path with the CLI, arrays in and out.

The examples of docs/API.md (the docstrings of deepfake_cli/api.py) run here as doctests, in the order a
reader would follow them; the files they write (feats.h5, models/) then serve the other tests.
"""

from __future__ import annotations

import ast
import doctest
import hashlib
import importlib.util
import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import deepfake_cli as dfc
from deepfake_cli import api
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from tests.conftest import EXAMPLES, REPO, copy_subset, example_set

runner = CliRunner()

# docstring examples in reading order: each may use the files the ones before it wrote
DOCTEST_ORDER = ["extract", "reduce", "train", "evaluate", "predict", "explain", "audit", "read_features", "load_model",
                 "embed", "list_backbones", "list_classifiers", "list_reducers", "list_models", "list_datasets", "Detector.score",
                 "Detector.predict_proba", "Detector.predict"]


@pytest.fixture(scope="module")
def docs_run(tmp_path_factory):
    """Run every example of docs/API.md in a fresh folder holding `examples/` (as a clone does)."""
    work = tmp_path_factory.mktemp("api_docs")
    (work / "examples").symlink_to(REPO / "examples")
    tests = {t.name.removeprefix("deepfake_cli.api."): t for t in doctest.DocTestFinder().find(api)}
    results, reports = {}, []
    run = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    old = os.getcwd()
    os.chdir(work)
    try:
        for name in DOCTEST_ORDER:
            test = tests.pop(name)
            test.globs = {"dfc": dfc}
            out: list[str] = []
            results[name] = run.run(test, out=out.append)
            reports.append("".join(out))
    finally:
        os.chdir(old)
    return work, results, reports, sorted(n for n, t in tests.items() if t.examples)


def test_every_docs_example_runs(docs_run):
    _, results, reports, not_run = docs_run
    assert not not_run, f"examples not in DOCTEST_ORDER: {not_run}"
    assert all(r.attempted > 0 for r in results.values())
    assert sum(r.failed for r in results.values()) == 0, "\n".join(r for r in reports if r.strip())


def test_api_md_is_generated_from_the_docstrings():
    spec = importlib.util.spec_from_file_location("make_api_md", REPO / "docs" / "make_api_md.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (REPO / "docs" / "API.md").read_text() == mod.render(), "run `python docs/make_api_md.py`"
    for name in mod.FUNCTIONS:
        assert name in api.__all__ and f"## dfc.{name}" in mod.render()


def test_public_functions_are_documented_and_typed():
    for name in api.__all__:
        obj = getattr(dfc, name)
        assert obj is getattr(api, name)
        doc = inspect.getdoc(obj) or ""
        if inspect.isfunction(obj):
            for section in ("Parameters" if inspect.signature(obj).parameters else "Returns", "Returns", "Example"):
                assert f"{section}\n---" in doc, f"{name}: no {section} section"
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, name
            assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name
        else:
            assert doc, name


def test_stage_modules_do_not_hide_the_api_functions():
    import deepfake_cli.stages.evaluate  # noqa: F401 -- the stage modules of the same names
    import deepfake_cli.stages.extract  # noqa: F401
    import deepfake_cli.stages.predict  # noqa: F401
    from deepfake_cli.stages.extract import ExtractSummary

    for name in ("extract", "reduce", "train", "evaluate", "predict", "audit"):
        assert callable(getattr(dfc, name)) and getattr(dfc, name) is getattr(api, name)
    assert ExtractSummary.__module__ == "deepfake_cli.stages.extract"


# ------------------------------------------------------------------- one code path with the command line

CLI_ONLY = {"quiet", "json_out", "top"}  # how the command shows results, not what it computes
COMMANDS = {"extract": "extract", "reduce": "reduce", "train": "train", "eval": "evaluate", "predict": "predict",
            "explain": "explain", "audit": "audit"}


def test_api_functions_take_the_commands_arguments_and_defaults():
    from typer.main import get_command

    group = get_command(app)
    for command, fn in COMMANDS.items():
        params = inspect.signature(getattr(api, fn)).parameters
        for p in group.commands[command].params:
            if p.name in CLI_ONLY or p.name == "help":
                continue
            assert p.name in params, f"`deepfake {command} --{p.name}` has no `{p.name}` in dfc.{fn}"
            default = params[p.name].default
            if p.required:
                assert default is inspect.Parameter.empty or command in ("extract",), (command, p.name)
            else:
                cli_default = p.default
                if isinstance(cli_default, (list, tuple)) and not cli_default:
                    cli_default = None
                assert default == cli_default or (default == () and cli_default is None), \
                    f"dfc.{fn}({p.name}={default!r}) but `deepfake {command}` defaults to {cli_default!r}"


def test_commands_call_the_api_functions():
    """The command functions call `api.<fn>` and never a stage function themselves."""
    calls = {"extract_cmd": "extract", "reduce_cmd": "reduce", "train_cmd": "train", "eval_cmd": "evaluate",
             "predict_cmd": "predict", "audit_cmd": "audit", "backbones_cmd": "list_backbones",
             "classifiers_cmd": "list_classifiers", "reducers_cmd": "list_reducers", "models_cmd": "list_models",
             "import_head_cmd": "import_head", "fit_cmd": "fit",
             "datasets_cmd": "list_datasets"}
    stages = {"deepfake_cli.stages.extract", "deepfake_cli.stages.reduce", "deepfake_cli.stages.train", "deepfake_cli.stages.evaluate",
              "deepfake_cli.stages.audit"}
    found = {}
    for path in (REPO / "deepfake_cli" / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in calls:
                used = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
                        and isinstance(n.value, ast.Name) and n.value.id == "api"}
                imported = {n.module for n in ast.walk(node) if isinstance(n, ast.ImportFrom)}
                found[node.name] = (used, imported)
    for cmd, fn in calls.items():
        used, imported = found[cmd]
        assert fn in used, f"{cmd} does not call api.{fn}"
        assert not imported & stages, f"{cmd} imports a stage: {imported & stages}"


def test_errors_are_the_commands_one_line_errors(tmp_path):
    with pytest.raises(DeepfakeError) as err:
        dfc.train(tmp_path / "missing.h5", classifier="lda", out=tmp_path / "m.model")
    res = runner.invoke(app, ["train", str(tmp_path / "missing.h5"), "--classifier", "lda", "--out",
                              str(tmp_path / "m.model")])
    assert res.exit_code != 0 and str(err.value) in " ".join(res.output.split())
    assert "\n" not in str(err.value)
    with pytest.raises(DeepfakeError, match="Unknown classifier 'bogus'"):
        dfc.train(tmp_path / "missing.h5", classifier=["lda", "bogus"], out=tmp_path / "m.model")


# ------------------------------------------------------------------------------- arrays in, arrays out

def _files(n=3):
    root = example_set("cifake_sd14")
    return sorted((root / "real").iterdir())[:n] + sorted((root / "fake").iterdir())[:n]


def test_embed_equals_extract_for_files_pil_numpy_and_tensors(docs_run):
    work, *_ = docs_run
    fs = dfc.read_features(work / "feats.h5")  # effnet-lite0, layers all, examples/data/cifake_sd14
    files = _files()
    row = {p: i for i, p in enumerate(fs.path.tolist())}
    want = fs.X[[row[f"{f.parent.name}/{f.name}"] for f in files]]
    X, hashes = dfc.embed([str(f) for f in files], backbone="effnet-lite0", layers="all", device="cpu")
    assert X.dtype == np.float32 and X.shape == want.shape == (6, 3088)
    np.testing.assert_allclose(X, want, rtol=0, atol=1e-5)
    assert hashes == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert hashes == [fs.sha256[row[f"{f.parent.name}/{f.name}"]] for f in files]

    pil = [Image.open(f) for f in files]
    arrays = [np.asarray(im.convert("RGB")) for im in pil]
    batch_u8 = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)      # N x C x H x W uint8
    for images in (pil, arrays, np.stack(arrays), batch_u8, batch_u8.float() / 255):
        Xm, hm = dfc.embed(images, backbone="effnet-lite0", layers="all", device="cpu")
        np.testing.assert_allclose(Xm, want, rtol=0, atol=1e-5)
        assert hm == [hashlib.sha256(b"deepfake-cli:rgb8:32:32\n" + a.tobytes()).hexdigest() for a in arrays]
    assert hm != hashes  # pixels, not file bytes: documented


def test_detector_equals_cli_predict(docs_run, tmp_path):
    work, *_ = docs_run
    folder = copy_subset(example_set("forensynths_biggan"), tmp_path / "bg", 3)
    res = runner.invoke(app, ["predict", str(work / "models" / "lda.model"), str(folder), "--json"])
    assert res.exit_code == 0, res.output
    cli = [r for r in (json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")) if "path" in r]
    assert len(cli) == 6

    det = dfc.load_model(work / "models" / "lda.model")
    s = det.score(folder)
    assert s.names == [r["path"] for r in cli]
    np.testing.assert_allclose(s.p_fake, [r["p_fake"] for r in cli], rtol=0, atol=1e-9)
    assert [("fake" if v == 1 else "real") for v in s.labels] == [r["label"] for r in cli]
    assert det.threshold == pytest.approx(cli[0].get("threshold", det.threshold))

    files = [Path(r["path"]) for r in cli]
    pil = [Image.open(f) for f in files]
    proba = det.predict_proba(pil)
    assert proba.shape == (6, 2) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_allclose(proba[:, 1], s.p_fake, rtol=0, atol=1e-6)
    arrays = [np.asarray(im.convert("RGB")) for im in pil]
    np.testing.assert_array_equal(det.predict(arrays), s.labels)
    # from features: the model alone, on rows of a compatible feature file
    fs = dfc.read_features(work / "feats.h5")
    assert det.p_fake_from_features(fs.X[:2]).shape == (2,)


def test_image_conventions_and_refusals(tmp_path):
    gray = np.full((40, 30), 128, dtype=np.uint8)
    rgba = np.zeros((40, 30, 4), dtype=np.uint8)
    X, hashes = dfc.embed([gray, rgba, torch.zeros(1, 40, 30)], backbone="lowlevel", device="cpu")
    assert X.shape == (3, 83) and np.isfinite(X).all() and all(len(h) == 64 for h in hashes)
    # RGBA is composited on white, as a file's transparency is
    assert hashes[1] == hashlib.sha256(b"deepfake-cli:rgb8:40:30\n" + np.full((40, 30, 3), 255, np.uint8).tobytes()
                                       ).hexdigest()
    with pytest.raises(DeepfakeError, match=r"float images must be in \[0, 1\]"):
        dfc.embed(np.full((8, 8, 3), 200.0), backbone="lowlevel")
    with pytest.raises(DeepfakeError, match="H x W x 3"):
        dfc.embed(np.zeros((8, 8, 5), dtype=np.uint8), backbone="lowlevel")
    with pytest.raises(DeepfakeError, match="N x C x H x W"):
        dfc.embed(torch.zeros(2, 5, 8, 8), backbone="lowlevel")
    with pytest.raises(DeepfakeError, match="int"):
        dfc.embed([3], backbone="lowlevel")
    with pytest.raises(DeepfakeError, match="no such file or folder"):
        dfc.embed(str(tmp_path / "nothere.jpg"), backbone="lowlevel")
    # an unreadable file keeps its place: a NaN row and no hash
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    X, hashes = dfc.embed([str(_files(1)[0]), str(bad)], backbone="lowlevel", device="cpu")
    assert np.isfinite(X[0]).all() and np.isnan(X[1]).all() and hashes[1] == ""


def test_nothing_printed_unless_progress(capfd):
    images = [np.zeros((16, 16, 3), dtype=np.uint8)] * 3
    dfc.embed(images, backbone="lowlevel", device="cpu")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    seen = []
    dfc.embed(images, backbone="lowlevel", device="cpu", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (3, 3)
    dfc.embed(images, backbone="lowlevel", device="cpu", progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "embed: 3/3" in err


def test_predict_and_evaluate_write_like_the_commands(docs_run, tmp_path):
    work, *_ = docs_run
    model = work / "models" / "lda.model"
    res = dfc.predict(model, [example_set("cifake_sd14") / "real"], out=tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text()
    assert text.splitlines()[0].startswith("path,p_fake,label,model") and len(text.splitlines()) == 25
    assert res.n_images == 24
    with pytest.raises(DeepfakeError, match="p.csv"):  # refused like `predict --out`: not a predictions file
        (tmp_path / "p.csv").write_text("mine")
        dfc.predict(model, [example_set("cifake_sd14") / "real"], out=tmp_path / "p.csv")
    ev = dfc.evaluate(model, features=work / "feats.h5", out=tmp_path / "ev")
    assert {p.name for p in ev.written} >= {"eval.csv", "eval.json", "eval.md"}
    rows, cols, cells = ev.matrix()
    assert cols == ["cifake"] and len(cells) == 1
    assert EXAMPLES.is_dir()
