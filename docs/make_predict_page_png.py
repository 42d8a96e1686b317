"""docs/predict_page.png: the page `deepfake predict --html` writes, as headless Chromium draws it.

A real run on examples/data: effnet-lite0 features of forensynths_biggan and forensynths_stylegan, an `lda`
model trained on them (a fifth of each held out), then `predict` over all of examples/data (those two sets and
cifake_sd14, which the model never saw) with `--html` and `--explain` (class-activation maps: exact for this
CNN backbone and linear head). The screenshot shows the top of the page with the maps in place of the images
(the page's "maps" switch, `#maps=1` in its address).

    .venv/bin/python docs/make_predict_page_png.py [--work DIR]

Needs the effnet-lite0 weights (the torch hub cache) and chromium; takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data"
OUT = REPO / "docs" / "predict_page.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="folder for the features, model, page and maps "
                                                             "(default: a temporary one)")
    args = ap.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="predict_page_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if chromium is None:
        raise SystemExit("chromium is not installed: it draws the screenshot.")

    import deepfake_cli as dfc

    feats, model = work / "eff.h5", work / "eff_lda.model"
    if not feats.exists():
        dfc.extract([str(EXAMPLES / "forensynths_biggan"), str(EXAMPLES / "forensynths_stylegan")],
                    backbone="effnet-lite0", out=feats, device="cpu", workers=0, batch_size=16)
    if not model.exists():
        dfc.train(feats, classifier="lda", out=model)
    page = work / "page.html"
    # paths as a user in a clone would type them: examples/data/..., maps/ (examples/ linked into the work folder)
    if not (work / "examples").exists():
        (work / "examples").symlink_to(REPO / "examples")
    os.chdir(work)
    res = dfc.predict(model, [f"examples/data/{s}" for s in ("forensynths_biggan", "forensynths_stylegan",
                                                              "cifake_sd14")],
                      html="page.html", explain="maps", overwrite=True)
    print(f"scored {res.n_images} images; page {page} ({page.stat().st_size / 1e6:.1f} MB)")
    shot = work / "shot.png"
    url = page.as_uri() + "#maps=1"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={work / 'chromium'}", f"--screenshot={shot}", "--window-size=1280,1250", url],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    Image.open(shot).convert("RGB").save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
