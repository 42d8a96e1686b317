"""The `explain` stage: evidence maps of a model for image files, written as overlays, raw maps and an index.

For each readable image: `<stem>.png` (the map over the image, `explainers.render`) and `<stem>.npy` (the raw
float32 map, H x W of the file, NaN where the model never saw the pixel), the stem unique and filesystem-safe,
made from the image's path; then `index.csv` (COLUMNS) and `index.json` (the model, the method, whether it
is exact, a sentence on the method and its cost, the rows, the skipped images). Which method and why:
`deepfake_cli.explainers`. Unreadable images are skipped and reported, never fatal; an occlusion run on more than
`max_images` images is refused in one line before anything is computed (it costs one forward pass per patch
position per image).

The output guards (`explain_targets`, `explain_inputs`, for `store.outputs.writes`) refuse an output folder
that is or lies in an input, and a folder holding anything but a previous explain run (unless `overwrite`).
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path
from typing import Callable

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.outputs import Target, check_targets

COLUMNS = ["path", "model", "p_fake", "label", "method", "exact", "overlay", "map", "width", "height", "seconds"]
INDEX_CSV, INDEX_JSON = "index.csv", "index.json"
DEFAULT_MAX_IMAGES = 50   # occlusion runs above this need --max-images (each image costs ~50-170 forward passes)
FORMAT = "deepfake-cli explain"


@dataclass
class ExplainResult:
    out_dir: Path
    model: str = ""
    method: str = ""
    exact: bool = False
    method_note: str = ""
    rows: list[dict] = field(default_factory=list)      # COLUMNS
    skipped: list[dict] = field(default_factory=list)   # path, reason
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)      # one line on what was written (for a caller's summary)

    @property
    def n_images(self) -> int:
        return len(self.rows)

    def summary(self) -> dict:
        return {"out_dir": str(self.out_dir), "model": self.model, "method": self.method, "exact": self.exact,
                "method_note": self.method_note, "n_images": self.n_images, "n_skipped": len(self.skipped),
                "seconds": round(self.seconds, 3), "index_csv": str(self.out_dir / INDEX_CSV),
                "index_json": str(self.out_dir / INDEX_JSON)}


# ----------------------------------------------------------------------------------- what it writes and reads

def explain_targets(a: dict) -> list[Target]:
    from deepfake_cli.stages.image_inputs import refuse_empty_folders, refuse_feature_files

    paths = a.get("inputs") if a.get("inputs") is not None else a.get("paths")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths or [])
    refuse_feature_files(a.get("model"), paths, "explain")
    refuse_empty_folders(paths, "explain")
    out = a.get("out_dir") if a.get("out_dir") is not None else a.get("out")
    if out is None:
        raise DeepfakeError("explain needs an output folder (--out DIR).")
    check_out_dir(out, bool(a.get("overwrite")))
    return [Target(out, "folder", option="--out")]


def explain_inputs(a: dict) -> list:
    from deepfake_cli.stages.image_inputs import model_and_image_inputs

    paths = a.get("inputs") if a.get("inputs") is not None else a.get("paths")
    return model_and_image_inputs({"model": a.get("model"), "paths": paths})


def check_out_dir(out, overwrite: bool = False, option: str = "--out") -> None:
    """An existing output folder must be empty or hold a previous explain run (its index.json), unless
    `overwrite`: a folder of other files is not ours to write into. `option`: how the user named it."""
    p = Path(out)
    if not p.is_dir() or overwrite:
        return
    try:
        names = os.listdir(p)
    except OSError:
        return  # unreadable: the writability check says so
    if names and not _is_ours(p / INDEX_JSON):
        raise DeepfakeError(f"{option} {p} is a folder holding other files (no {INDEX_JSON} of an explain run); choose "
                            "a new or empty folder, or pass --overwrite to write into it.")


def _is_ours(index: Path) -> bool:
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _remove_previous(out: Path) -> None:
    """The overlays and maps a previous explain run listed in `out`'s index.json: stale once this run writes its
    own (only plain file names inside `out`, only when the index is ours)."""
    index = out / INDEX_JSON
    if not _is_ours(index):
        return
    try:
        rows = json.loads(index.read_text(encoding="utf-8")).get("rows") or []
    except (OSError, ValueError):
        return
    for row in rows:
        for key in ("overlay", "map"):
            name = str(row.get(key) or "") if isinstance(row, dict) else ""
            if name and name == Path(name).name and name.endswith((".png", ".npy")):
                try:
                    (out / name).unlink()
                except OSError:
                    pass


# ------------------------------------------------------------------------------------------------- the stage

def file_stems(rels: list[str]) -> list[str]:
    """A unique, filesystem-safe stem per path: its characters outside [A-Za-z0-9._-] as "_", folders joined
    by "__", at most 80 characters from the end; a clash (or a cut) gets 8 hex digits of the path's hash."""
    out, seen = [], set()
    parts = [[s for s in str(rel).replace("\\", "/").split("/") if s not in ("", ".", "..")] for rel in rels]
    common = 0  # the folders every path shares say nothing: left out (fake/x.png, not tmp__run__fake__x.png)
    while parts and all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    for rel, names in zip(rels, parts):
        text = "/".join(names[common:])
        text = re.sub(r"\.(png|jpe?g|webp|bmp|gif|tiff?)$", "", text, flags=re.IGNORECASE)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(text.split("/")))
        stem = stem.lstrip(".-_") or "image"
        cut = len(stem) > 80
        stem = stem[-80:].lstrip(".-_") or "image"
        if cut or stem.lower() in seen or stem.lower() in ("index",):
            stem = f"{stem}-{sha1(str(rel).encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
        while stem.lower() in seen:
            stem += "_"
        seen.add(stem.lower())
        out.append(stem)
    return out


def explain(model, inputs, out_dir, *, method: str = "auto", max_images: int | None = DEFAULT_MAX_IMAGES,
            weights: str | None = None, device: str = "auto", batch_size: int = 32, progress: Callable | None = None,
            overwrite: bool = False, occlusion_grid: int | None = None, option: str = "--out") -> ExplainResult:
    """Evidence maps of `model` (a model file, a zoo name or a loaded `Model`) for `inputs` (files, folders,
    tar shards, lists, or images in memory) into `out_dir`. `max_images`: the most images an occlusion run
    may take (None: no limit). `progress(done, total)` after each batch. `option`: the option that named
    `out_dir` ("--explain" when predict calls), as messages name it."""
    import time

    import numpy as np

    from deepfake_cli.explainers import explain_images
    from deepfake_cli.explainers.render import overlay
    from deepfake_cli.inference.memory import collect_images
    from deepfake_cli.safety.fileio import atomic_write_bytes, atomic_write_text, csv_text, to_json

    t0 = time.perf_counter()
    a = {"model": model if not hasattr(model, "meta") else None, "inputs": inputs, "out_dir": out_dir,
         "overwrite": overwrite}
    check_targets(explain_targets(a), [i for i in explain_inputs(a) if i is not None], overwrite)
    items, skipped = collect_images(inputs)
    run = explain_images(model, items, method, weights=weights, device=device, batch_size=batch_size,
                         max_images=max_images, progress=progress, occlusion_grid=occlusion_grid,
                         refusal_hint=None if option == "--out" else
                         f"{option} maps at most {max_images} images by occlusion: run `deepfake explain MODEL IMAGES "
                         f"--out DIR --max-images N` for more, or give fewer images.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_previous(out)
    result = ExplainResult(out_dir=out, model=run.model.name, method=run.method, exact=run.exact,
                           method_note=run.method_note, skipped=list(skipped))
    stems = dict(zip((it.rel for it in items), file_stems([it.rel for it in items])))
    for e in run:
        stem = stems[e.rel]
        buf = io.BytesIO()
        np.save(buf, e.map.astype(np.float32), allow_pickle=False)
        atomic_write_bytes(out / f"{stem}.npy", buf.getvalue())
        buf = io.BytesIO()
        overlay(e.image, e.map).save(buf, format="PNG")
        atomic_write_bytes(out / f"{stem}.png", buf.getvalue())
        result.rows.append({"path": e.rel, "model": result.model, "p_fake": e.p_fake, "label": e.label,
                            "method": e.method, "exact": e.exact, "overlay": f"{stem}.png", "map": f"{stem}.npy",
                            "width": int(e.map.shape[1]), "height": int(e.map.shape[0]),
                            "seconds": round(e.seconds, 4)})
    result.skipped += run.skipped
    result.seconds = time.perf_counter() - t0
    result.notes.append(f"evidence maps of {result.n_images} image(s) in {out} ({result.method}, "
                        f"{'exact' if result.exact else 'approximation' if result.method == 'tokens' else 'occlusion'}"
                        f"; {out / INDEX_CSV})")

    def fmt(col, v):
        if col == "p_fake":
            return repr(float(v))
        if col == "exact":
            return "true" if v else "false"
        return "" if v is None else str(v)

    atomic_write_text(out / INDEX_CSV, csv_text(result.rows, COLUMNS, fmt))
    atomic_write_text(out / INDEX_JSON, to_json({
        "format": FORMAT, "model": result.model, "method": result.method, "exact": result.exact,
        "method_note": result.method_note, "rows": result.rows, "skipped": result.skipped}, indent=1) + "\n")
    return result
