"""The HDF5 feature store: one file of per-image feature vectors plus what made them.

Layout (one row per image):
  /features (N, D) float32|float16, chunked + gzip    /label (N,) int8: 0 real, 1 fake, -1 unknown
  /dataset (N,) str    /path (N,) str (relative to the dataset root)    /sha256 (N,) ascii hex
  /skipped, /duplicates: JSON text (lists can outgrow HDF5's 64 KiB attribute limit)
  attrs: `format`, `format_version`, `complete`, `meta` (JSON of everything below) and the main
  keys again as plain attributes so `h5dump -A` is readable.
A file only ever appears under its final name complete: writers write `NAME.tmp-*` and rename.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from deepfake_cli.data import LABEL_NAMES
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.safety.atomic import STORE, AtomicFile, remove_stale_temporaries
from deepfake_cli.safety.space import DiskFullError, check_space, is_no_space

FORMAT = "deepfake-cli/features"
FORMAT_VERSION = 1
CHUNK_ROWS = 256
# Keys that must agree for features to be fed to the same model; `transform` may differ
# (robustness evaluation applies a model to features of transformed images).
COMPAT_KEYS = ("backbone", "layers", "weights_id", "preprocessing")
# Keys that must agree for two extractions to share one file.
APPEND_KEYS = COMPAT_KEYS + ("transform", "seed", "dtype")
_STR = h5py.string_dtype("utf-8")
ROW_DATASETS = ("features", "label", "dataset", "path", "sha256")


@dataclass
class FeatureSet:
    X: np.ndarray
    y: np.ndarray
    dataset: np.ndarray
    path: np.ndarray
    sha256: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask) -> "FeatureSet":
        return FeatureSet(self.X[mask], self.y[mask], self.dataset[mask], self.path[mask],
                          self.sha256[mask], self.meta)

    @property
    def datasets(self) -> list[str]:
        seen: dict[str, None] = {}
        for d in self.dataset.tolist():
            seen.setdefault(d, None)
        return list(seen)


def compatibility_key(meta: dict) -> str:
    return json.dumps({k: meta.get(k) for k in COMPAT_KEYS}, sort_keys=True)


def describe(meta: dict, keys=COMPAT_KEYS, other: dict | None = None) -> str:
    """A short text naming what made a file (`field=value` per key), for refusal messages.

    With `other` (the other side of a mismatch), `preprocessing` shows only the entries that differ from
    it (e.g. `preprocessing=align=256:90`), so the message names exactly what differs."""
    parts = []
    for k in keys:
        v = meta.get(k)
        if k == "preprocessing" and isinstance(v, dict):
            theirs = (other or {}).get(k)
            if isinstance(theirs, dict):
                shown = [a for a in sorted(set(v) | set(theirs)) if _text_of(v.get(a)) != _text_of(theirs.get(a))]
            else:
                shown = [a for a in sorted(v) if a in ("input_size", "resize", "align", "crop")]
            v = ",".join(f"{a}={v.get(a)}" for a in shown)
        parts.append(f"{k}={v}")
    return " ".join(parts)


def mismatch(a: dict, b: dict, keys=COMPAT_KEYS) -> list[str]:
    return [k for k in keys if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True)]


def _text_of(value) -> str:
    return json.dumps(value, sort_keys=True)


# the `extract` option that sets each field of a feature file
FIELD_OPTIONS = {"backbone": "--backbone", "layers": "--layers", "transform": "--transform", "seed": "--seed",
                 "dtype": "--dtype"}


def _layers_word(backbone: str, layers: str) -> str:
    """`all` / `early` when that is what the recorded layers resolve from (e.g. "0,1,...,15,last" of
    effnet-lite0 is `all`), else the recorded spec."""
    if "+" in backbone:
        return layers
    try:
        from deepfake_cli.backbones import get_config, parse_layers

        config = get_config(backbone)
        return next((w for w in ("all", "early") if parse_layers(w, config)[2] == layers), layers)
    except Exception:  # noqa: BLE001 -- an unknown or unbuildable backbone: the recorded spec still works
        return layers


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _weights_option(backbone: str, weights_id) -> str:
    """How to get features made with the weights `weights_id`: `--weights FILE`, except for a backbone whose
    weights come from a pip package (effnet-lite0), where no file can be given: the package version decides."""
    if weights_id == "random":
        return "--random-weights"
    try:
        from deepfake_cli.backbones import get_config

        source = get_config(backbone).weights
        if source is not None and source.cache == "package":
            return (f"the weights {weights_id} (they come from the pip package '{source.url.removeprefix('pip package ')}': "
                    "install the version the model was made with)")
    except Exception:  # noqa: BLE001 -- an unknown backbone: the generic hint still holds
        pass
    return f"--weights FILE (the weights {weights_id})"


def matching_options(target: dict, current: dict, keys) -> str:
    """The `extract` options that make features like `current` match `target` on `keys` (the fields that
    differ), e.g. "--layers all"; "" when no option can (the backbone's own preprocessing changed)."""
    opts = []
    for k in keys:
        v = target.get(k)
        if k == "layers":
            opts.append(f"--layers {_layers_word(str(target.get('backbone')), str(v))}")
        elif k in FIELD_OPTIONS:
            opts.append(f"{FIELD_OPTIONS[k]} {v}")
        elif k == "weights_id":
            opts.append(_weights_option(str(target.get("backbone")), v))
        elif k == "preprocessing":
            mine, theirs = v if isinstance(v, dict) else {}, current.get(k) if isinstance(current.get(k), dict) else {}
            differ = [a for a in sorted(set(mine) | set(theirs)) if _text_of(mine.get(a)) != _text_of(theirs.get(a))]
            if differ == ["align"]:
                opts.append(f"--align {mine['align']}" if mine.get("align") else "no --align")
    return " ".join(opts)


def feature_members(meta: dict) -> list[tuple[str, int]]:
    """(backbone, number of columns) of each member of the file's features, in column order.

    A combined file (`a+b`) records its members (`meta["members"]`, written by `extract` and the
    study); for files written before that, the dims come from each member's config when every
    member gave its final embedding. A single backbone is one member. Features written by `reduce`
    have no per-backbone columns any more: DeepfakeError.
    """
    if meta.get("reduced_by"):
        raise DeepfakeError(f"These features were reduced by {meta['reduced_by'].get('method')}; their columns "
                            "no longer belong to single backbones (use the original feature file).")
    names = [n.strip() for n in str(meta.get("backbone")).split("+")]
    dim = int(meta.get("dim") or 0)
    recorded = meta.get("members")
    if recorded:
        members = [(str(m["backbone"]), int(m["dim"])) for m in recorded]
    elif len(names) == 1:
        members = [(names[0], dim)]
    else:
        from deepfake_cli.backbones import get_config

        layers = str(meta.get("layers") or "last")
        specs = [s.strip() for s in layers.split("+")] if "+" in layers else [layers] * len(names)
        members = []
        for name, spec in zip(names, specs):
            cfg = get_config(name)
            if spec != "last" and cfg.num_blocks:
                raise DeepfakeError(f"This feature file of {meta.get('backbone')} (layers {layers}) does not record "
                                    "its members' dimensions; extract it again with this version.")
            members.append((name, int(cfg.dim)))
    if dim and sum(d for _, d in members) != dim:
        raise DeepfakeError(f"The members of {meta.get('backbone')} ({', '.join(f'{n}: {d}' for n, d in members)}) "
                            f"do not add up to its {dim} columns.")
    return members


def backbone_identity(meta: dict) -> dict:
    """What identifies the backbone that made the features: name, layers, weights id, and its members
    (backbone, dim, layers) in column order. DeepfakeError for features written by `reduce`."""
    layers = str(meta.get("layers") or "last")
    members = feature_members(meta)
    recorded = meta.get("members") or []
    if len(recorded) == len(members):
        specs = [str(m.get("layers") or "last") for m in recorded]
    else:
        specs = [s.strip() for s in layers.split("+")] if "+" in layers else [layers] * len(members)
    return {"name": meta.get("backbone"), "layers": layers, "weights_id": meta.get("weights_id"),
            "members": [{"backbone": n, "dim": d, "layers": sp} for (n, d), sp in zip(members, specs)]}


def capability_values(meta: dict) -> dict:
    """Per capability of a registry entry (see `deepfake_cli.registry.CAPABILITY_PARAMS`), what a stage
    passes to it from a feature file's metadata: `combined` -> the members, `backbone` -> its identity.
    Computed lazily: a value is only worked out for an entry that has the capability."""
    return {"combined": lambda: tuple(feature_members(meta)), "backbone": lambda: backbone_identity(meta)}


def _open(path) -> h5py.File:
    p = Path(path)
    if not p.exists():
        raise DeepfakeError(f"feature file not found: {path}")
    from deepfake_cli.data.walk import require_regular_file

    if p.is_dir():  # the commonest slip: a folder of images where features were expected
        raise DeepfakeError(f"{path} is a folder; this command reads a feature file. Make one with `deepfake extract "
                            f"{path} --out feats.h5`, or go from two image folders to a detector in one step with "
                            "`deepfake fit --real DIR --fake DIR --out detector.model`.")
    require_regular_file(p, str(path), "a feature file written by `deepfake extract`")  # a FIFO would block h5py
    try:
        f = h5py.File(p, "r")
    except OSError:
        hint = (" It looks like an image: extract features first (`deepfake extract DIR --out feats.h5`)."
                if p.suffix.lower() in _IMAGE_SUFFIXES else "")
        raise DeepfakeError(f"{path} is not an HDF5 feature file (cannot open it as HDF5).{hint}") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise DeepfakeError(f"{path} is an HDF5 file but not one written by `deepfake extract`.")
    if not bool(f.attrs.get("complete", False)):
        f.close()
        raise DeepfakeError(f"{path} is incomplete; run the extraction again to finish it.")
    problem = _damage(f)
    if problem:
        f.close()
        raise DeepfakeError(f"{path} carries deepfake-cli's feature format but is damaged ({problem}); "
                            "extract it again.")
    return f


def _damage(f: h5py.File) -> str | None:
    """What is wrong with a file that claims our format, or None: a file edited or truncated by hand
    must give one line, not a KeyError or JSONDecodeError deep inside a stage."""
    missing = [n for n in ROW_DATASETS + ("skipped", "duplicates") if n not in f]
    if missing:
        return f"missing dataset(s) {', '.join(missing)}"
    lengths = {n: f[n].shape[0] for n in ROW_DATASETS}
    if len(set(lengths.values())) != 1:
        return "datasets of different lengths: " + ", ".join(f"{k}={v}" for k, v in lengths.items())
    if f["features"].ndim != 2:
        return f"features has shape {f['features'].shape}"
    try:
        meta = json.loads(f.attrs["meta"])
        json.loads(_text(f["skipped"][()]))
        json.loads(_text(f["duplicates"][()]))
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        return "unreadable metadata"
    if not isinstance(meta, dict):
        return "unreadable metadata"
    return None


def read_meta(path) -> dict:
    with _open(path) as f:
        return _meta(f)


def _meta(f: h5py.File) -> dict:
    meta = json.loads(f.attrs["meta"])
    meta["skipped"] = json.loads(_text(f["skipped"][()]))
    meta["duplicates"] = json.loads(_text(f["duplicates"][()]))
    meta["n"] = int(f["label"].shape[0])
    return meta


def estimated_bytes(n_rows: int, dim: int, dtype: str = "float32") -> int:
    """An upper bound of a feature file's size: features uncompressed (gzip gains little on floats)
    plus the per-row strings and a fixed allowance for metadata."""
    return int(n_rows) * (int(dim) * np.dtype(dtype).itemsize + 400) + (1 << 20)


def summarize(path) -> dict:
    """The metadata plus per-dataset label counts, without loading the features."""
    with _open(path) as f:
        meta = _meta(f)
        names = _strings(f["dataset"])
        labels = f["label"][()]
    counts: dict[str, dict[str, int]] = {}
    for d, y in zip(names.tolist(), labels.tolist()):
        c = counts.setdefault(d, {"real": 0, "fake": 0, "unknown": 0})
        c[LABEL_NAMES.get(y, "unknown")] += 1
    meta["counts"] = counts
    return meta


def _text(value) -> str:
    # h5py hands back bytes or str depending on the dataset's string type and version
    return value.decode() if isinstance(value, bytes) else value


def _strings(ds, sel=slice(None)) -> np.ndarray:
    """Rows `sel` of a string dataset as an object array of str."""
    return np.array([_text(s) for s in ds[sel]], dtype=object)


def read_features(path, datasets=None) -> FeatureSet:
    """Load a feature file (optionally only some datasets) into memory as float32."""
    with _open(path) as f:
        meta = _meta(f)
        dataset = _strings(f["dataset"])
        if datasets:
            wanted = list(datasets)
            missing = [d for d in wanted if d not in set(dataset.tolist())]
            if missing:
                have = ", ".join(dict.fromkeys(dataset.tolist()))
                raise DeepfakeError(f"dataset(s) {', '.join(missing)} not in {path}; it has: {have}.")
            mask = np.isin(dataset, wanted)
            idx = np.flatnonzero(mask)
        else:
            idx = np.arange(len(dataset))
        X = f["features"][()] if len(idx) == len(dataset) else f["features"][idx] if len(idx) else \
            np.zeros((0, f["features"].shape[1]), dtype=f["features"].dtype)
        return FeatureSet(
            X=np.asarray(X, dtype=np.float32),
            y=f["label"][()][idx].astype(np.int8),
            dataset=dataset[idx],
            path=_strings(f["path"])[idx],
            sha256=_strings(f["sha256"])[idx],
            meta=meta,
        )


def iter_rows(path, block: int = 4096):
    """Stream a complete file as blocks of (X, y, dataset, path, sha256), memory bounded by `block`."""
    with _open(path) as f:
        n = f["label"].shape[0]
        for start in range(0, n, block):
            sl = slice(start, min(n, start + block))
            yield (f["features"][sl], f["label"][sl], _strings(f["dataset"], sl), _strings(f["path"], sl),
                   _strings(f["sha256"], sl))


class FeatureFileWriter:
    """Stream rows into a new feature file (`safety.atomic`, the store's `NAME.tmp-*` names); `close()`
    puts it in place, `abort()` removes it."""

    def __init__(self, out, meta: dict, dim: int, dtype: str = "float32", expected_rows: int | None = None):
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if expected_rows is not None:
            check_space(self.out, estimated_bytes(expected_rows, dim, dtype))
        self._file = AtomicFile(self.out, STORE)
        self.tmp = self._file.path
        self.meta = dict(meta)
        self.dim = int(dim)
        self.n = 0
        self.f = h5py.File(self.tmp, "w")
        self.f.attrs["format"] = FORMAT
        self.f.attrs["format_version"] = FORMAT_VERSION
        self.f.attrs["complete"] = False
        chunk = (CHUNK_ROWS, self.dim)
        self.f.create_dataset("features", shape=(0, self.dim), maxshape=(None, self.dim), dtype=dtype,
                              chunks=chunk, compression="gzip", compression_opts=4, shuffle=True)
        self.f.create_dataset("label", shape=(0,), maxshape=(None,), dtype="i1", chunks=(4096,))
        for name in ("dataset", "path"):
            self.f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(4096,),
                                  compression="gzip")
        self.f.create_dataset("sha256", shape=(0,), maxshape=(None,), dtype="S64", chunks=(4096,),
                              compression="gzip")

    def append(self, X, y, dataset, path, sha256) -> None:
        k = len(y)
        if k == 0:
            return
        X = np.asarray(X)
        if X.shape != (k, self.dim):
            raise ValueError(f"feature block has shape {X.shape}, expected ({k}, {self.dim})")
        n0, n1 = self.n, self.n + k
        for name in ("features", "label", "dataset", "path", "sha256"):
            self.f[name].resize(n1, axis=0)
        self.f["features"][n0:n1] = X
        self.f["label"][n0:n1] = np.asarray(y, dtype=np.int8)
        self.f["dataset"][n0:n1] = [str(s) for s in dataset]
        self.f["path"][n0:n1] = [str(s) for s in path]
        self.f["sha256"][n0:n1] = [str(s).encode() for s in sha256]
        self.n = n1

    def close(self, skipped: list | None = None, duplicates: list | None = None) -> Path:
        meta = {k: v for k, v in self.meta.items() if k not in ("skipped", "duplicates", "n")}
        meta["dim"] = self.dim
        self.f.create_dataset("skipped", data=json.dumps(skipped or []), dtype=_STR)
        self.f.create_dataset("duplicates", data=json.dumps(duplicates or []), dtype=_STR)
        self.f.attrs["meta"] = json.dumps(meta, sort_keys=True)
        for k in ("backbone", "layers", "weights_id", "transform", "seed", "tool_version", "created", "dim"):
            if k in meta and meta[k] is not None:
                self.f.attrs[k] = meta[k]
        self.f.attrs["complete"] = True
        self.f.close()
        return self._file.commit()

    def abort(self) -> None:
        # On a full disk HDF5 still has chunks and metadata to flush when it closes: give the temporary's
        # space back first, so the close succeeds and no handle is left to fail (or crash) later.
        try:
            os.truncate(self.tmp, 0)
        except OSError:
            pass
        try:
            self.f.close()
        except Exception:  # noqa: BLE001 -- the file is being thrown away; the caller reports the cause
            pass
        finally:
            self._file.discard()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
            if isinstance(exc, OSError) and is_no_space(exc):
                raise DiskFullError(self.out) from None


def remove_orphaned_temporaries(out) -> list[Path]:
    """Delete `OUT.tmp-*` files that a killed writer left beside `out`; returns what was removed.

    Only call this while holding the output's lock (see `safety.locks`): another live writer's temporary
    file has the same name pattern.
    """
    return remove_stale_temporaries(out, (STORE,))
