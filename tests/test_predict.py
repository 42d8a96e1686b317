"""predict on raw images gives exactly what eval computed from extracted features; skips; refusals."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepfake_cli.store.artifacts import load_model, save_model
from deepfake_cli.cli import app
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.stages.evaluate import evaluate
from deepfake_cli.stages.extract import extract
from deepfake_cli.inference.runner import LocalRunner
from deepfake_cli.stages.predict import predict, to_csv
from deepfake_cli.stages.reduce import reduce
from deepfake_cli.stages.train import train
from tests.conftest import copy_subset, example_set

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, biggan6_lowlevel):
    root = tmp_path_factory.mktemp("p")
    bg, feats = biggan6_lowlevel["images"], biggan6_lowlevel["features"]  # the session's, read-only
    reduce(str(feats), "pca", str(root / "pca.reducer"), params={"dim": 5})
    train(str(feats), "lda,knn3", str(root / "models"), reducer=str(root / "pca.reducer"), test_size=0.34)
    per_image: list = []
    evaluate([root / "models"], [str(feats)], per_image=per_image)
    heldout = {(p["model"], str(bg / p["path"])): p["p_fake"] for p in per_image if p["kind"] == "within"}
    return {"root": root, "biggan": bg, "features": feats, "models": root / "models", "heldout": heldout}


def test_predict_on_raw_heldout_images_matches_eval(trained):
    paths = sorted({path for _, path in trained["heldout"]})
    assert len(paths) == 4  # 2 real + 2 fake held out
    res = predict(str(trained["models"]), paths, device="cpu")
    assert res.n_images == 4 and not res.skipped and len(res.rows) == 8
    for row in res.rows:
        assert row["p_fake"] == pytest.approx(trained["heldout"][(row["model"], row["path"])], abs=1e-5)
        m = load_model(trained["models"] / f"{row['model']}.model")
        assert row["label"] == ("fake" if row["p_fake"] >= m.threshold else "real")


def test_predict_cli_csv_json_skips_and_summary(trained, tmp_path):
    folder = trained["biggan"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    model = trained["models"] / "lda.model"
    res = runner.invoke(app, ["predict", str(model), str(folder), str(bad), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 12 and list(rows[0]) == ["path", "p_fake", "label", "model", "threshold", "score", "novelty",
                                                 "true_label"]  # the folder has real/ and fake/: true labels
    assert {r["label"] for r in rows} <= {"real", "fake"} and {r["model"] for r in rows} == {"lda"}
    assert "broken.png" in res.stderr
    assert "scored 12 image(s)" in res.stderr and "skipped 1" in res.stderr
    # a path that does not exist, or is no image, tar or list, is a one-line error, not a skipped row
    for wrong in (tmp_path / "missing.jpg", tmp_path / "notes.doc"):
        if wrong.suffix == ".doc":
            wrong.write_text("words")
        res = runner.invoke(app, ["predict", str(model), str(folder), str(wrong), "--device", "cpu"])
        assert res.exit_code == 2 and res.stdout == "" and "Traceback" not in res.output
        assert res.stderr.startswith("error:") and wrong.name in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    by_path = {r["path"]: float(r["p_fake"]) for r in rows}
    for (name, path), p in trained["heldout"].items():
        if name == "lda":
            assert by_path[path] == pytest.approx(p, abs=1e-5)

    out = tmp_path / "pred.jsonl"
    res = runner.invoke(app, ["predict", str(model), str(folder / "fake"), "--json", "--out", str(out),
                              "--device", "cpu"])
    assert res.exit_code == 0 and res.stdout == ""
    *lines, trailer = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6 and all(0.0 <= d["p_fake"] <= 1.0 for d in lines)
    # the last object is what the verdict rests on, per model
    assert set(trailer) == {"evidence", "warnings"} and "lda" in trailer["evidence"]


class ReversedDelivery:
    """A runner that hands back the local runner's batches last first, as a parallel engine may."""

    def run(self, job, batches):
        return reversed(list(LocalRunner(workers=0).run(job, batches)))


def test_predict_rows_are_in_input_order_whatever_the_runner(trained, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"")
    files = sorted((trained["biggan"] / "real").iterdir()) + [bad] + sorted((trained["biggan"] / "fake").iterdir())
    done: list = []
    res = predict(str(trained["models"]), files, device="cpu", batch_size=1, runner=ReversedDelivery(),
                  progress=lambda d, total: done.append((d, total)))
    ref = predict(str(trained["models"]), files, device="cpu", batch_size=1)
    assert res.rows == ref.rows and len(res.rows) == 24  # 12 images x 2 models, input order
    assert [r["path"] for r in res.rows[::2]] == [str(f) for f in files if f != bad]
    assert res.skipped == ref.skipped == [{"path": str(bad), "reason": res.skipped[0]["reason"]}]
    assert done[-1] == (13, 13) and len(done) == 13  # one call per batch; a batch of one bad file counts too
    # the CSV keeps every digit of p_fake and reads back to the same numbers
    rows = list(csv.DictReader(io.StringIO(to_csv(res.rows))))
    assert [float(r["p_fake"]) for r in rows] == [r["p_fake"] for r in res.rows]
    assert all(r["p_fake"] == repr(float(r["p_fake"])) for r in rows)


def test_predict_transform_option_matches_transformed_features(trained, tmp_path):
    jpeg = tmp_path / "jpeg.h5"
    extract([str(trained["biggan"])], backbone="lowlevel", out=str(jpeg), transform="jpeg:60", device="cpu",
            workers=0)
    per_image: list = []
    evaluate([trained["models"] / "knn3.model"], [str(jpeg)], per_image=per_image)
    paths = [str(trained["biggan"] / p["path"]) for p in per_image]
    res = predict(str(trained["models"] / "knn3.model"), paths, transform="jpeg:60", device="cpu")
    plain = predict(str(trained["models"] / "knn3.model"), paths, device="cpu")
    for row, p in zip(res.rows, per_image):
        assert row["p_fake"] == pytest.approx(p["p_fake"], abs=1e-5)
    assert [r["p_fake"] for r in plain.rows] == pytest.approx([trained["heldout"][("knn3", p)] for p in paths], abs=1e-6)


def test_predict_refuses_other_weights_and_reduced_feature_models(trained, tmp_path):
    m = load_model(trained["models"] / "lda.model")
    forged = save_model(tmp_path / "forged.model", m.estimator, dict(m.meta, weights_id="sha256:0123456789abcdef"))
    with pytest.raises(DeepfakeError, match="weights sha256:0123456789abcdef.*weights found are none"):
        predict(str(forged), [str(trained["biggan"])], device="cpu")
    res = runner.invoke(app, ["predict", str(forged), str(trained["biggan"])])
    assert res.exit_code == 2 and "Traceback" not in res.output
    reduce(str(trained["features"]), "pca", str(tmp_path / "r.reducer"), params={"dim": 3},
           write_features=str(tmp_path / "red.h5"))
    model = train(str(tmp_path / "red.h5"), "lda", str(tmp_path / "red.model"))[0]
    with pytest.raises(DeepfakeError, match="cannot score raw images"):
        predict(str(model.path), [str(trained["biggan"])], device="cpu")


def test_effnet_round_trip_and_backbone_mismatch(trained, tmp_path):
    """One small pretrained-network check: effnet-lite0 features, predict == eval on held-out raw images."""
    bg = copy_subset(example_set("forensynths_stylegan"), tmp_path / "stylegan", 4)
    feats = tmp_path / "eff.h5"
    try:
        extract([str(bg)], backbone="effnet-lite0", out=str(feats), device="cpu", workers=0, batch_size=8)
    except DeepfakeError as exc:  # weights not installed on this machine
        pytest.skip(str(exc))
    model = train(str(feats), "linear-probe", str(tmp_path / "probe.model"), test_size=0.25)[0]
    per_image: list = []
    evaluate([model.path], [str(feats)], per_image=per_image)
    within = [p for p in per_image if p["kind"] == "within"]
    assert len(within) == 2
    res = predict(str(model.path), [str(bg / p["path"]) for p in within], device="cpu")
    for row, p in zip(res.rows, within):
        assert Path(row["path"]).name == Path(p["path"]).name
        assert row["p_fake"] == pytest.approx(p["p_fake"], abs=1e-5)
    # a lowlevel model and effnet features (and the other way round) are refused, naming both sides
    with pytest.raises(DeepfakeError, match=r"trained on backbone=lowlevel .*eff\.h5 has backbone=effnet-lite0"):
        evaluate([trained["models"] / "lda.model"], [str(feats)])
    with pytest.raises(DeepfakeError, match="backbone=effnet-lite0 .* has backbone=lowlevel"):
        evaluate([model.path], [str(trained["features"])])


def test_predict_on_a_tar_shard_and_a_list_scores_as_on_the_files(trained, tmp_path):
    from tests.imagegen import write_shard

    files = sorted((trained["biggan"] / "real").iterdir())[:3] + sorted((trained["biggan"] / "fake").iterdir())[:3]
    tar = tmp_path / "shard.tar"
    names = write_shard(tar, files, [0, 0, 0, 1, 1, 1])
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    model = str(trained["models"] / "lda.model")
    ref = predict(model, [str(f) for f in files], device="cpu")
    on_tar = predict(model, [str(tar)], device="cpu", batch_size=4)
    on_list = predict(model, [str(listing)], device="cpu")
    assert [r["path"] for r in on_tar.rows] == [f"{tar}/{n}" for n in names]  # read in place, never unpacked
    assert [r["p_fake"] for r in on_tar.rows] == [r["p_fake"] for r in ref.rows]
    core = ("path", "p_fake", "label", "model")
    assert [{k: r[k] for k in core} for r in on_list.rows] == [{k: r[k] for k in core} for r in ref.rows]
    assert not list(tmp_path.glob("*.png")) and on_tar.n_images == 6
