"""Run the `deepfake` CLI with one fault injected at a chosen write step (a test harness, not shipped).

    python tests/faultrun.py STEP:N[:ACTION] ARGS...

The fault happens the N-th time the process reaches STEP (1-based); the steps of an extraction are
  shard_written   a shard's temporary file has been written, before it is renamed into .parts/
  shard_renamed   a shard has been renamed into place
  merge_rows      the merge has appended a block of rows (the existing file's, then each shard's)
  final_renamed   the merged file has been renamed over --out, before .parts/ is removed
  parts_removing  .parts/ is being removed: run.json is already gone, the shards are not
ACTION: kill (SIGKILL, the default), fill (fill the file system of --out, then go on), or pause (write
OUT.paused, then wait until OUT.release exists: lets a test hold a writer in the middle of its work).
Nothing in the package knows about this: the steps are reached by wrapping the functions it calls.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

SHARD = re.compile(r"batch_\d{6}\.npz$")


def _out(args: list[str]) -> Path:
    for flag in ("--out", "-o"):
        if flag in args:
            return Path(args[args.index(flag) + 1]).resolve()
    raise SystemExit("faultrun: the command has no --out")


def fill(folder: Path) -> None:
    """Fill the file system holding `folder` (a file of zeros written until the disk is full)."""
    fd = os.open(folder / "zz_filler.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):  # down to the last byte
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)


def main() -> None:
    spec, args = sys.argv[1], sys.argv[2:]
    step, n, action = (spec.split(":") + ["kill"])[:3]
    n = int(n)
    out = _out(args)
    count = {"n": 0}
    main_pid = os.getpid()

    def reached(name: str) -> None:
        if name != step:
            return
        count["n"] += 1
        if count["n"] != n:
            return
        if action == "kill":  # the whole command: this process, and the one that started it when this is
            if os.getpid() != main_pid:  # a child it forked to write (see recovery.isolated)
                os.kill(main_pid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "fill":
            fill(out.parent)
        elif action == "pause":
            out.with_name(out.name + ".paused").write_text(str(os.getpid()))
            release = out.with_name(out.name + ".release")
            deadline = time.time() + 120
            while not release.exists() and time.time() < deadline:
                time.sleep(0.05)
        else:
            raise SystemExit(f"faultrun: unknown action {action}")

    real_savez, real_replace, real_rmtree = np.savez, os.replace, shutil.rmtree

    def savez(file, *a, **k):
        real_savez(file, *a, **k)
        reached("shard_written")

    def replace(src, dst, *a, **k):
        real_replace(src, dst, *a, **k)
        d = Path(dst)
        if SHARD.search(d.name) and d.parent.name.endswith(".parts"):
            reached("shard_renamed")
        elif d.resolve() == out and ".tmp-" in Path(src).name:
            reached("final_renamed")

    def rmtree(path, *a, **k):
        p = Path(path)
        if p.name.endswith(".parts") and step == "parts_removing" and (p / "run.json").exists():
            (p / "run.json").unlink()
            reached("parts_removing")
        return real_rmtree(path, *a, **k)

    np.savez = savez
    os.replace = replace
    shutil.rmtree = rmtree

    from deepfake_cli.store.features import FeatureFileWriter

    real_append = FeatureFileWriter.append

    def append(self, *a, **k):
        real_append(self, *a, **k)
        reached("merge_rows")

    FeatureFileWriter.append = append

    from deepfake_cli.cli import app

    app(args=args, prog_name="deepfake")


if __name__ == "__main__":
    main()
