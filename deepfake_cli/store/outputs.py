"""What a command may write: never over a file it reads, never over another kind of file without
`--overwrite`, one writer per output, and a full disk as one line.

Every command that writes declares its outputs and inputs once, with `writes(...)` on its stage function
(or on its API function where that does the writing: `api.evaluate`, `api.predict`). Before the function runs:

* an output that is an input (same resolved path, or same device and inode: a hard link or a symlink to
  it), or any output (file or folder, existing or not) inside an input folder that the command reads
  (a dataset root, a --real/--fake folder), is refused, even with `--overwrite`;
* an existing output that is not the command's own kind of artifact (`artifact_kind`: our HDF5 feature
  file, model, reducer, predictions CSV/JSONL, eval outputs) is refused unless `overwrite` is given; an
  empty file counts as replaceable (it holds nothing to lose);
* an output that must be a file but is a folder (or the reverse), and an output whose folder cannot be
  written, are refused in one line before any work;
* then `safety.locks.output_lock` is taken on each output (as given on the command line: a folder's lock is
  beside it), and the checks run again under the lock.
While the function runs, a full disk (ENOSPC, or a writer's `safety.space.DiskFullError`) becomes one
`DiskFullError` line that names the output, says the existing file is unchanged (every writer renames
complete files into place) and, where the stage checked how much it needs (`safety.space.check_space`),
how many MB to free.

A stage without an `overwrite` parameter gets one from the decorator (keyword only), so scripts pass
`overwrite=True` as the CLI's `--overwrite` does.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.safety.atomic import PARTIAL, STORE, remove_stale_temporaries
from deepfake_cli.safety.space import DiskFullError, disk_full, existing_folder, is_no_space, needs_scope

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PREDICTION_COLUMNS = ["path", "p_fake", "label", "model"]
EVAL_FILES = ("eval.csv", "eval.json", "eval.md", "eval_images.csv")
KIND_NAMES = {
    "features": "deepfake-cli feature file (HDF5)",
    "model": "deepfake-cli model file",
    "reducer": "deepfake-cli reducer file",
    "predictions": "predictions file of `deepfake predict` (CSV or JSON lines)",
    "eval": "file written by `deepfake eval`",
    "trials": "trials table of `deepfake reduce --search`",
    "report": "report of `deepfake report`",
    "page": "page of `deepfake predict --html`",
    "folder": "folder",
}


# ---------------------------------------------------------------------------------------------- kinds

def artifact_kind(path) -> str | None:
    """Which of this tool's artifacts an existing file is: "features", "model", "reducer",
    "predictions", "eval", or None (not ours, unreadable, or not a file)."""
    p = Path(path)
    try:
        if not p.is_file():
            return None
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if is_hdf5(p, head):
        return "features" if _hdf5_is_ours(p) else None
    if head.startswith(b"PK"):
        return _skops_kind(p)
    text = head.decode("utf-8", errors="replace")
    first = text.split("\n", 1)[0].strip()
    if p.name in EVAL_FILES and _looks_like_eval(p.name, text, first):
        return "eval"
    if first.split(",")[:len(PREDICTION_COLUMNS)] == PREDICTION_COLUMNS:  # later columns: threshold, score, ...
        return "predictions"
    if first.startswith("trial,"):
        return "trials"
    if p.name == "report.md" and first == "# Detection study report" or \
            p.name == "report.html" and "<title>Detection study report</title>" in text:
        return "report"
    if '<meta name="generator" content="deepfake-cli predict --html">' in text:  # report.predict_page
        return "page"
    if first.startswith("{"):
        try:
            row = json.loads(first)
        except ValueError:
            return None
        if isinstance(row, dict) and set(PREDICTION_COLUMNS) <= set(row):
            return "predictions"
    return None


def is_hdf5(p: Path, head: bytes) -> bool:
    """Is `p` (whose first bytes are `head`) an HDF5 file, ours or not?"""
    # the superblock may sit at 512, 1024, ... when a user block precedes it
    if HDF5_SIGNATURE in head:
        return True
    try:
        import h5py

        return bool(h5py.is_hdf5(p))
    except Exception:  # noqa: BLE001 -- an unreadable file is simply not ours
        return False


def _hdf5_is_ours(p: Path) -> bool:
    try:
        import h5py

        from deepfake_cli.store.features import FORMAT

        with h5py.File(p, "r") as f:
            return f.attrs.get("format") == FORMAT
    except Exception:  # noqa: BLE001 -- damaged beyond opening: not recognisably ours
        return False


def _skops_kind(p: Path) -> str | None:
    try:
        with zipfile.ZipFile(p) as zf:
            content = json.loads(zf.read("schema.json"))["content"]
        fmt = json.loads(content["format"]["content"])
        kind = json.loads(content["kind"]["content"])
    except Exception:  # noqa: BLE001 -- any zip that is not our archive
        return None
    return kind if fmt == "deepfake-cli" and kind in ("model", "reducer") else None


def _looks_like_eval(name: str, text: str, first: str) -> bool:
    if name == "eval.csv":
        return first.startswith("model,classifier,backbone,")
    if name == "eval_images.csv":
        return first.startswith("model,features,test_dataset,")
    if name == "eval.md":
        return first == "# Evaluation"
    return text.lstrip().startswith("[") and ('"test_dataset"' in text or text.strip() == "[]")


def describe_file(path) -> str:
    """What an existing file is, for refusals: "a deepfake-cli model file", "an image", ..."""
    p = Path(path)
    kind = artifact_kind(p)
    if kind:
        return "a " + KIND_NAMES[kind]
    from deepfake_cli.data.sources import source_for

    if p.is_dir():
        return "a folder"
    entry = source_for(p)  # an input kind whose name says what it is (a .txt may be anybody's notes)
    if entry is not None and entry.named:
        return entry.noun  # "an image", "a .tar shard"
    return "a file that this command does not write"


def is_feature_file(path) -> bool:
    return artifact_kind(path) == "features"


# ------------------------------------------------------------------------------------ identity checks

def same_file(a, b) -> bool:
    """True when `a` and `b` name the same file: equal resolved paths, or the same device and inode."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, RuntimeError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def _input_conflict(p: Path, i: Path) -> str | None:
    """How writing `p` would touch the input `i` ("is read", "lies in I, which is read"), or None.

    Anything written below an input folder is refused, whether or not it exists yet and whatever its
    name: a figure, a CSV or a feature file dropped among the images is read back as one (or shifts the
    folder's layout) by the next command over that folder, and a cache inside it goes stale unnoticed."""
    if p.exists() and same_file(p, i):
        return "is read"
    if i.is_dir() and _inside(p, i):
        return f"lies in {i}, which is read"
    return None


# ------------------------------------------------------------------------------------------- targets

@dataclass
class Target:
    """One file (or folder) a command writes: `kind` is what may be replaced without --overwrite."""

    path: Path
    kind: str
    option: str = "--out"
    lock: Path | None = None   # the path whose lock guards it (default: `path`)

    def __post_init__(self):
        text = os.fspath(self.path)
        # "feats/" names a folder: writing a file called "feats" instead would surprise (Path drops the slash)
        if self.kind != "folder" and text.endswith(("/", os.sep)):
            name = Path(text) / _example_name(self.kind)
            raise DeepfakeError(f"{self.option} {text} ends with a slash, which names a folder; this writes one "
                                f"file: give its name (e.g. {name}).")
        self.path = Path(text)


def check_targets(targets: list[Target], inputs: Iterable, overwrite: bool = False) -> None:
    """Refuse (DeepfakeError, one line) any target that is an input, of another kind, or unwritable."""
    inputs = [Path(i) for i in inputs if i not in (None, "")]
    seen: dict[Path, Target] = {}
    for t in targets:
        key = t.path.resolve()
        if key in seen and seen[key].option != t.option:
            raise DeepfakeError(f"{seen[key].option} and {t.option} name the same file {t.path}; give two names.")
        seen[key] = t
        _check_one(t, inputs, overwrite)


def _check_one(t: Target, inputs: list[Path], overwrite: bool) -> None:
    p = t.path
    if p.exists() and not (p.is_file() or p.is_dir()):  # a device, a fifo, a socket: never renamed over
        raise DeepfakeError(f"{t.option} {p} is not a regular file; give a file name.")
    if t.kind == "folder":
        if p.exists() and not p.is_dir():
            raise DeepfakeError(f"{t.option} {p} is a file; {t.option} names a folder here: give a folder name.")
    elif p.is_dir():
        raise DeepfakeError(f"{t.option} {p} is a folder; give a file name (e.g. {p / _example_name(t.kind)}).")
    for i in inputs:
        what = _input_conflict(p, i)
        if what:
            raise DeepfakeError(f"{t.option} {p} {what} by this command; it never writes over or into its "
                                "inputs: choose a path outside them.")
    if t.kind != "folder" and p.is_file() and not overwrite and os.path.getsize(p) > 0 and artifact_kind(p) != t.kind:
        raise DeepfakeError(f"{t.option} {p} exists and is {describe_file(p)}, not a {KIND_NAMES[t.kind]}; "
                            "pass --overwrite to replace it, or choose another name.")
    _check_writable(p, t.option)


def _example_name(kind: str) -> str:
    return {"features": "features.h5", "model": "model.model", "reducer": "pca.reducer",
            "predictions": "predictions.csv", "eval": "eval.csv", "page": "page.html"}.get(kind, "out")


def _check_writable(p: Path, option: str) -> None:
    folder = existing_folder(p)
    if folder.exists() and not folder.is_dir():
        raise DeepfakeError(f"{option} {p}: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DeepfakeError(f"cannot write {p}: permission denied in {folder}.", exit_code=1)


# -------------------------------------------------------------------------------------------- guard

@contextmanager
def guard(targets: list[Target], inputs: Iterable = (), overwrite: bool = False) -> Iterator[list[Target]]:
    """Check the targets, hold their locks, and turn a full disk into one line, for the block."""
    from deepfake_cli.safety.locks import output_lock

    inputs = list(inputs)
    check_targets(targets, inputs, overwrite)
    with ExitStack() as stack:
        locked: set[Path] = set()
        for t in targets:
            lock = (t.lock or t.path).resolve()
            if lock not in locked:
                locked.add(lock)
                stack.enter_context(output_lock(t.lock or t.path, KIND_NAMES.get(t.kind, "output")))
        check_targets(targets, inputs, overwrite)  # again: another writer may have finished meanwhile
        for t in targets:
            remove_orphans(t)
        with needs_scope():  # what `check_space` records during this call, for "free N MB"
            try:
                yield targets
            except (OSError, DiskFullError) as exc:
                if targets and is_no_space(exc):  # ENOSPC, or a writer's own DiskFullError: say what to free
                    raise disk_full(targets[0].path) from None
                raise


def remove_orphans(t: Target) -> list[Path]:
    """Delete the temporaries a killed writer of `t` left beside it (`safety.atomic`'s `.NAME.*.partial`,
    and the feature store's `NAME.tmp-*` for a feature file). Only under the lock of `t`."""
    if t.kind == "folder":
        return []
    return remove_stale_temporaries(t.path, (PARTIAL, STORE) if t.kind == "features" else (PARTIAL,))


def writes(targets: Callable[[dict], list[Target]], inputs: Callable[[dict], Iterable] = lambda a: ()):
    """Decorate a function that writes outputs: `targets(args)` and `inputs(args)` get its bound
    arguments (defaults applied) and say what it writes and reads; the call runs inside `guard`."""

    def deco(fn):
        sig = inspect.signature(fn)
        own = "overwrite" in sig.parameters

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            overwrite = False if own else bool(kwargs.pop("overwrite", False))
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            a = dict(bound.arguments)
            if own:
                overwrite = bool(a.get("overwrite"))
            with guard(targets(a), list(inputs(a)), overwrite):
                return fn(*args, **kwargs)

        if not own:
            params = list(sig.parameters.values())
            extra = inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
            if params and params[-1].kind == inspect.Parameter.VAR_KEYWORD:
                params.insert(len(params) - 1, extra)
            else:
                params.append(extra)
            wrapper.__signature__ = sig.replace(parameters=params)
        return wrapper

    return deco


# ------------------------------------------------------------------------- helpers of the stages' tables
# Each stage declares what it writes and reads next to its function (`extract_targets` in stages/extract.py,
# `report_targets` in report/__init__.py...); these are the parts they share.

def spec_path(spec) -> str:
    """The path of a dataset spec `[NAME=]PATH`."""
    from deepfake_cli.data import parse_named_path

    return parse_named_path(str(spec))[1]






def with_listed(paths: list) -> list:
    """`paths` plus the images that `.txt`/`.csv` lists among them name: those are read too, so no output
    may land on one. A list that cannot be read is left to the command itself to report. A path with
    `?options` (`x.parquet?label=y`) stands for the file or folder its source reads (`sources.location`)."""
    from deepfake_cli.data.lists import is_list_file, read_list
    from deepfake_cli.data.sources import location

    paths = [location(p) if isinstance(p, (str, os.PathLike)) else p for p in paths]
    out = list(paths)
    for p in paths:
        if p and is_list_file(p) and Path(p).is_file():
            try:
                out.extend(e.path for e in read_list(p).entries)
            except DeepfakeError:
                pass
    return out


def names_folder(out) -> bool:
    """Does `out` name a folder: an existing one, or a name written with a trailing slash ("models/")?
    Give the text as typed: `Path("models/")` has already dropped the slash."""
    text = os.fspath(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def dataset_inputs(a: dict) -> list:
    """What a command that reads datasets reads: the `[NAME=]PATH` specs in `a["inputs"]`, `--real`,
    `--fake`, and the images the lists among them name."""
    return with_listed([spec_path(s) for s in a.get("inputs") or []] + [a.get("real"), a.get("fake")])
