"""docs/explain_maps.png: evidence maps (`deepfake explain`) of one detector on the shared sets.

The detector: effnet-lite0 features + `lda`, trained on imagenet_vs_ldm (../shared/data) with every image
brought to 256x256 JPEG 90 first (`--align 256:90`, so file format and size are no cue), on the first 240
real and 240 fake files by name. The figure shows its exact class-activation maps (red: evidence for fake,
blue: for real) on images it never saw: held-out LDM fakes and reals, and fakes of the four ForenSynths
generators (BigGAN, StyleGAN, CycleGAN, GauGAN: generators it was never trained on). Each panel is titled
with the set, the true class and the model's p_fake. The script prints the measured seconds per map.

    .venv/bin/python docs/make_explain_figure.py [--work DIR] [--shared ../shared/data]

Needs the effnet-lite0 weights (a pip package) and ../shared/data; about two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "explain_maps.png"
N_TRAIN = 240  # per class, of 320


def _split(shared: Path, work: Path) -> tuple[Path, list[Path], list[Path]]:
    """A list file of the training images and the held-out fakes and reals (sorted by name: reproducible)."""
    ldm = shared / "imagenet_vs_ldm"
    files = {c: sorted(p for p in (ldm / c).iterdir() if p.is_file()) for c in ("real", "fake")}
    train = work / "ldm_train.csv"
    train.write_text("path,label\n" + "".join(f"{p},{c}\n" for c in ("real", "fake") for p in files[c][:N_TRAIN]))
    return train, files["fake"][N_TRAIN:], files["real"][N_TRAIN:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="folder for features, model and maps (default: temporary)")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data", help="the shared sets")
    args = ap.parse_args()
    work = (args.work or Path(tempfile.mkdtemp(prefix="explain_fig_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)

    import numpy as np
    from PIL import Image

    import deepfake_cli as dfc

    train_list, ldm_fakes, ldm_reals = _split(args.shared, work)
    feats, model = work / "ldm.h5", work / "ldm_lda.model"
    if not feats.exists():
        dfc.extract([f"ldm={train_list}"], backbone="effnet-lite0", align="256:90", out=feats, device="cpu",
                    batch_size=32)
    if not model.exists():
        dfc.train(feats, classifier="lda", out=model)
    panels = [("LDM (held out)", "fake", p) for p in ldm_fakes[:4]] + \
             [("LDM (held out)", "real", p) for p in ldm_reals[:2]] + \
             [(g, "fake", sorted((args.shared / f"forensynths_{g.lower()}" / "fake").iterdir())[0])
              for g in ("BigGAN", "StyleGAN", "CycleGAN", "GauGAN")]
    res = dfc.explain(model, [str(p) for _, _, p in panels], out=work / "maps", overwrite=True)
    rows = {r["path"]: r for r in res.rows}
    secs = [float(r["seconds"]) for r in res.rows]
    print(f"{len(secs)} maps, method {res.method} (exact: {res.exact}), {np.mean(secs):.3f} s per image "
          f"(median {np.median(secs):.3f})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(15, 6.6))
    for ax, (name, truth, path) in zip(axes.flat, panels):
        row = rows[str(path)]
        ax.imshow(Image.open(work / "maps" / row["overlay"]))
        ax.set_title(f"{name}, {truth}\np_fake {float(row['p_fake']):.2f}", fontsize=10)
        ax.axis("off")
    fig.suptitle("Exact class-activation maps of effnet-lite0 + LDA trained on imagenet_vs_ldm (aligned 256:90); "
                 "red: evidence for fake, blue: for real", fontsize=11)
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
