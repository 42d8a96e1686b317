"""docs/explain_maps.png: evidence maps (`deepfake explain`) of one detector on the shared sets.

The detector: effnet-lite0 features + `lda`, trained on imagenet_vs_ldm (../shared/data) with every image
brought to 256x256 JPEG 90 first (`--align 256:90`, so file format and size are no cue), on three of every
four files by name (240 real, 240 fake; the fakes come from two sample sets, has97 and libreai, and both
are split alike). The figure shows its exact class-activation maps (red: evidence for fake,
blue: for real) on images it never saw: held-out LDM fakes and reals, and fakes of the four ForenSynths
generators (BigGAN, StyleGAN, CycleGAN, GauGAN: generators it was never trained on). Each panel is titled
with the set, the true class and the model's p_fake. The script prints the measured seconds per map and
the model's accuracy on the 160 held-out LDM images.

    .venv/bin/python docs/make_explain_figure.py [--work DIR] [--shared ../shared/data]

Needs the effnet-lite0 weights (a pip package) and ../shared/data; about two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "explain_maps.png"
HELD = 4  # every 4th file (by name) of each class is held out: 80 of 320


def _split(shared: Path, work: Path) -> tuple[Path, list[Path], list[Path]]:
    """A list file of the training images and the held-out fakes and reals (sorted by name: reproducible)."""
    ldm = shared / "imagenet_vs_ldm"
    files = {c: sorted(p for p in (ldm / c).iterdir() if p.is_file()) for c in ("real", "fake")}
    train = work / "ldm_train.csv"
    kept = {c: [p for i, p in enumerate(files[c]) if i % HELD != HELD - 1] for c in files}
    train.write_text("path,label\n" + "".join(f"{p},{c}\n" for c in ("real", "fake") for p in kept[c]))
    return train, files["fake"][HELD - 1::HELD], files["real"][HELD - 1::HELD]


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
    held = dfc.predict(model, [str(p) for p in ldm_fakes + ldm_reals])
    label = {r["path"]: r["label"] for r in held.rows}
    hits = {c: sum(label[str(p)] == c for p in ps) for c, ps in (("fake", ldm_fakes), ("real", ldm_reals))}
    print(f"held-out LDM: {hits['fake']}/{len(ldm_fakes)} fakes and {hits['real']}/{len(ldm_reals)} reals right "
          f"(accuracy {(hits['fake'] + hits['real']) / (len(ldm_fakes) + len(ldm_reals)):.3f})")
    panels = [("LDM (held out)", "fake", p) for p in ldm_fakes[::20][:4]] + \
             [("LDM (held out)", "real", p) for p in ldm_reals[::40][:2]] + \
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

    maps = {str(p): np.load(work / "maps" / rows[str(p)]["map"]) for _, _, p in panels}
    vmax = max(float(np.nanmax(np.abs(m))) for m in maps.values())  # one scale for all panels: comparable
    cmap = matplotlib.colormaps["RdBu_r"].copy()
    cmap.set_bad(alpha=0.0)  # NaN (never seen by the model): the image alone
    fig, axes = plt.subplots(2, 5, figsize=(15, 6.9))
    for ax, (name, truth, path) in zip(axes.flat, panels):
        row = rows[str(path)]
        ax.imshow(Image.open(path).convert("RGB"))
        im = ax.imshow(maps[str(path)], cmap=cmap, vmin=-vmax, vmax=vmax, alpha=0.6)
        ax.set_title(f"{name}, {truth}\np_fake {float(row['p_fake']):.2f}", fontsize=10)
        ax.axis("off")
    fig.suptitle("Exact class-activation maps of effnet-lite0 + LDA trained on imagenet_vs_ldm (aligned 256:90): "
                 "each cell's share of the margin (red: for fake, blue: for real; clear: cropped away)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    fig.colorbar(im, ax=axes, fraction=0.02, pad=0.01, label="margin per cell")
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
