"""What a killed, refused or finished extraction left beside its output, made safe to go on from.

Called by `extract` while it holds the output's lock (`safety.locks.output_lock`), before any work:

* `OUT.tmp-*` files of a killed merge are removed, and so is every temporary a killed shard write left
  in `OUT.parts/` (anything there but `run.json` and `batch_NNNNNN.npz`);
* a complete output file is the truth: a `.parts` folder whose run already reached the file (a kill
  after the final rename, before the folder was removed) is removed, as is a `.parts` folder without
  its `run.json` (a kill while it was being removed): it cannot be resumed, and its batch files must
  never be taken for batches of another run;
* `--overwrite` replaces the file only with rows the new command extracts again: when the existing file
  holds datasets the command does not name, it is refused with the number of rows it would discard
  (delete the file to start from nothing). The old file stays in place until the new one is renamed
  over it, so a refused, killed or failed `--overwrite` run loses nothing;
* the space the run needs (the shards still to write plus the merged file) is checked before the
  first batch and again before the merge, so a full disk is refused in one line with what to free.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import estimated_bytes, read_meta, remove_orphaned_temporaries, summarize
from deepfake_cli.safety.space import DiskFullError, check_space, is_no_space, nearly_full

SHARD_NAME = re.compile(r"batch_\d{6}\.npz")
SHARD_OVERHEAD = 512  # bytes per row in a shard beyond the features: index, hash, zip entry headers


def prepare_extract_output(out, parts, datasets: Sequence, overwrite: bool) -> list[str]:
    """Clean what earlier runs left beside `out` and apply --overwrite's rule; returns notes (what was
    removed, one sentence each). Call only while holding `out`'s lock."""
    out, parts = Path(out), Path(parts)
    notes = [f"removed {p.name}, left by a killed merge" for p in remove_orphaned_temporaries(out)]
    complete = _complete_meta(out, overwrite)
    if overwrite:
        if complete is not None:
            _refuse_lost_rows(out, {ds.name for ds in datasets})
        if parts.exists():
            shutil.rmtree(parts)
            notes.append(f"discarded the unfinished run in {parts} (--overwrite)")
        return notes
    if not parts.exists():
        return notes
    notes += _remove_litter(parts)
    run = parts / "run.json"
    if not run.exists():
        shutil.rmtree(parts)
        notes.append(f"removed {parts}: it had no run.json (a run killed while it was being removed)")
    elif complete is not None and _run_reached_file(run, out, complete):
        shutil.rmtree(parts)
        notes.append(f"removed {parts}: its run had already been merged into {out}")
    return notes


def _complete_meta(out: Path, overwrite: bool) -> dict | None:
    if not out.exists():
        return None
    try:
        return read_meta(out)
    except DeepfakeError as exc:
        if overwrite:
            return None  # damaged or foreign (the output guard allowed it): replaced at the end
        raise DeepfakeError(f"{str(exc).rstrip('.')}; --overwrite replaces it.") from None


def _refuse_lost_rows(out: Path, names: set[str]) -> None:
    counts = summarize(out)["counts"]
    lost = {d: sum(c.values()) for d, c in counts.items() if d not in names}
    if lost:
        n = sum(lost.values())
        raise DeepfakeError(
            f"--overwrite would discard {n} row(s) of {out} that this command does not extract again "
            f"(dataset(s) {', '.join(f'{d}: {k}' for d, k in lost.items())}); name those datasets in the command "
            f"too, or delete {out} first to start from nothing.")


def _remove_litter(parts: Path) -> list[str]:
    removed = []
    for p in parts.iterdir():
        if p.name == "run.json" or (SHARD_NAME.fullmatch(p.name) and p.is_file() and p.stat().st_size > 0):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
        removed.append(p.name)
    return [f"removed {len(removed)} unfinished shard file(s) in {parts}"] if removed else []


def _run_reached_file(run: Path, out: Path, complete: dict) -> bool:
    """Did the run of `run.json` finish, i.e. is every dataset it was adding in the complete file?"""
    try:
        roots = json.loads(run.read_text()).get("meta", {}).get("roots")
    except (OSError, ValueError, AttributeError):
        roots = None
    if isinstance(roots, dict) and roots:
        have = complete.get("roots", {})
        return all(have.get(name) == root for name, root in roots.items())
    # a run.json that does not name its datasets: the file was renamed into place after the run began
    return out.stat().st_mtime_ns >= run.stat().st_mtime_ns


def run_meta(meta: dict, datasets: Sequence) -> dict:
    """What `run.json` records: the file's metadata plus the datasets the run adds (name -> root)."""
    return dict(meta, roots={ds.name: str(ds.root) for ds in datasets})


def _row_bytes(meta: dict) -> int:
    return int(meta["dim"]) * np.dtype(meta.get("dtype", "float32")).itemsize


def check_extract_space(out, meta: dict, batches, done: set, existing: dict | None) -> None:
    """Before the first batch: room for the shards still to write and for the merged file."""
    todo = sum(len(b.indices) for b in batches if b.no not in done)
    total = sum(len(b.indices) for b in batches) + int((existing or {}).get("n", 0))
    check_space(out, todo * (_row_bytes(meta) + SHARD_OVERHEAD)
                + estimated_bytes(total, meta["dim"], meta.get("dtype", "float32")))


def check_merge_space(out, meta: dict, batches, existing: dict | None) -> None:
    """Before the merge: room for the merged file (the shards and the old file stay until it is in place)."""
    total = sum(len(b.indices) for b in batches) + int((existing or {}).get("n", 0))
    check_space(out, estimated_bytes(total, meta["dim"], meta.get("dtype", "float32")))


def isolated(fn, *args, cleanup=None, what="the output", **kwargs):
    """`fn(*args, **kwargs)` in a forked child process; its result or exception comes back here.

    HDF5 does not survive a disk that fills in the middle of a write: the failure surfaces in a handle's
    destructor (printed, not raised), and the next call can crash the process (the segfault of issue 11).
    Writing in a child keeps this process, its lock and its one-line error whatever HDF5 does: a child
    that dies leaves only its temporary file, which `cleanup()` removes. The child's stderr is silenced
    (HDF5's destructor noise); a full disk comes back as a `DiskFullError` for `outputs.guard` to word.
    Runs in-process where fork is unavailable, or unsafe (a Ray/gRPC client in this process), or when
    DEEPFAKE_WRITE_IN_PROCESS=1.
    """
    import os
    import pickle
    import signal
    import sys

    if (not hasattr(os, "fork") or os.environ.get("DEEPFAKE_WRITE_IN_PROCESS", "") not in ("", "0")
            or "ray" in sys.modules or "grpc" in sys.modules):
        return fn(*args, **kwargs)
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: write, report, and leave without running any of the parent's exit code
        try:
            from deepfake_cli.safety.locks import die_with_parent

            die_with_parent(parent)  # a writer keeps the lock, so it must not outlive a killed parent
            os.close(r)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            sys.unraisablehook = lambda *_: None
            try:
                payload = ("ok", fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 -- sent to the parent
                payload = ("nospace", str(exc)) if is_no_space(exc) or is_no_space(exc.__context__) \
                    else ("error", exc)
            try:
                data = pickle.dumps(payload)
            except Exception:  # noqa: BLE001 -- an exception that cannot be pickled: its text
                data = pickle.dumps(("error", RuntimeError(f"{type(payload[1]).__name__}: {payload[1]}")))
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if data:
        kind, value = pickle.loads(data)
        if kind == "ok":
            return value
    if cleanup:
        cleanup()
    if not data:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if sig == signal.SIGKILL:  # killed from outside (the user, the OOM killer): as if this process was
            raise DeepfakeError(f"writing {what} was killed; the existing file is unchanged: rerun to finish.",
                                exit_code=1)
        raise DiskFullError(what) if nearly_full(what) else DeepfakeError(
            f"writing {what} crashed (signal {sig}); the existing file is unchanged: rerun to finish.", exit_code=1)
    if kind == "nospace" or (isinstance(value, (OSError, RuntimeError)) and nearly_full(what)):
        # HDF5 does not always say ENOSPC ("Can't synchronously write data", ...): a write that failed
        # while the disk no longer holds what it needs is a full disk
        raise DiskFullError(what)
    raise value

