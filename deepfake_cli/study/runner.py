"""`run_study`: make what the plan needs and the cache lacks, phase by phase, then write the results.

Phases: features (single backbones by `extract.extract`, combinations by concatenating cached singles),
reducers (fitted on the training part of each training file), cells (train + evaluate; a zoo cell's model
is written, not trained: `study.zoo`). Reducers and cells run in worker processes when jobs > 1; every
unit's file is its own cache entry.
"""

from __future__ import annotations

import json
import operator
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from deepfake_cli.errors import DeepfakeError
from deepfake_cli.safety.fileio import atomic_write_text, to_json
from deepfake_cli.store.outputs import Target, with_listed, writes
from deepfake_cli.study.config import StudyConfig, check_paths, load_config
from deepfake_cli.study.plan import (Cell, FeatureJob, cell_factors, grid_size, member_jobs, member_keys, plan,
                                     train_split_key)
from deepfake_cli.study.progress import StudyProgress
from deepfake_cli.study.results import collect_rows, write_results
from deepfake_cli.study.units import (combine_features, complete_features, fit_reducer_unit, pool_features,
                                      run_cell_unit, train_split_file)
from deepfake_cli.study.zoo import check_zoo_weights, write_zoo_models

CACHE_FOLDERS = ("features", "reducers", "models", "cells")
LARGE_GRID = 1000  # cells: the CLI asks for --yes past this many (a typo in a list multiplies the grid)


@dataclass
class StudySummary:
    out: Path
    results_csv: Path
    results_json: Path
    report: Path | None
    n_rows: int
    features_extracted: int = 0
    features_combined: int = 0
    features_reused: int = 0
    reducers_fitted: int = 0
    reducers_reused: int = 0
    cells_trained: int = 0
    cells_evaluated: int = 0
    cells_reused: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)  # {"what", "key", "error"} of units that could not run


@dataclass
class _Run:
    """What every phase needs: the config, the study folder, the worker count, where to report."""

    cfg: StudyConfig
    out: Path
    jobs: int
    progress: StudyProgress
    summary: StudySummary

    @property
    def fdir(self) -> Path:
        return self.out / "features"


def max_jobs() -> int:
    """The most worker processes a study takes: 4 per CPU this process may use (each worker loads the
    stages, hundreds of MB; more than that only queues)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 4 * max(1, cpus)


def check_jobs(jobs) -> int:
    """`jobs` as an int in 1..max_jobs(), else one line (before any work, not a ValueError from joblib)."""
    limit = max_jobs()
    try:
        n = None if isinstance(jobs, bool) else operator.index(jobs)
    except TypeError:
        n = None
    if n is None or not 1 <= n <= limit:
        raise DeepfakeError(f"--jobs must be a whole number from 1 to {limit} (4 per CPU of this machine), "
                            f"got {str(jobs)[:40]}.")
    return n


def run_study(config_path: str | os.PathLike, out_dir: str | os.PathLike, jobs: int = 1,
              progress: StudyProgress | None = None, raw_csv: bool = False, max_cells: int | None = None,
              overwrite: bool = False) -> StudySummary:
    """Run (or resume) the study of `config_path` into `out_dir`; see the package docstring.

    `progress` receives the grid's size, then the phases and units as they run (see `StudyProgress`);
    None reports nothing. `raw_csv`: results.csv text cells as they are, not guarded against
    spreadsheet formulas. `max_cells`: refuse, before any work, a grid of more cells than that (the CLI
    passes `LARGE_GRID` unless --yes); None: any size. `overwrite` is accepted as every stage accepts
    it; a study folder holds only the study's own files.
    """
    t0 = time.perf_counter()
    jobs = check_jobs(jobs)
    cfg = load_config(config_path)
    check_paths(cfg)  # every dataset there before anything is extracted
    check_zoo_weights(cfg, out_dir)  # and the weights of every zoo entry that has features to make
    size = grid_size(cfg)
    if max_cells is not None and size.cells > max_cells:
        raise DeepfakeError(f"{size.describe()}: more than {max_cells:,} cells; pass --yes to run it "
                            "(or make the grid smaller).")
    return _run_study(cfg, out_dir, jobs, progress or StudyProgress(), raw_csv, size, t0, overwrite=overwrite)


# what it writes and reads (the output guards, `store.outputs.writes`)

def study_targets(a: dict) -> list[Target]:
    return [Target(a["out_dir"], "folder")]


def study_inputs(a: dict) -> list:
    """The dataset paths of the loaded config `cfg` (so no output lands among their images). The config
    itself is not one: it is copied into the folder as config.toml (the same text when it is that file)."""
    cfg = a["cfg"]
    return with_listed([p for d in cfg.datasets for p in (d.path, d.real, d.fake) if p])


@writes(study_targets, study_inputs)  # one study per --out folder at a time, never inside a dataset folder
def _run_study(cfg: StudyConfig, out_dir: str | os.PathLike, jobs: int, progress: StudyProgress, raw_csv: bool,
               size, t0: float) -> StudySummary:
    progress.grid(size)  # once the folder is ours: a refusal stays the only line
    out = Path(out_dir)
    for sub in CACHE_FOLDERS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.toml", cfg.path.read_text())
    features, cells = plan(cfg)
    summary = StudySummary(out, out / "results.csv", out / "results.json", None, 0)
    run = _Run(cfg, out, jobs, progress, summary)
    _make_features(run, features)
    failed = _fit_reducers(run, cells)
    for key, error in write_zoo_models(cfg, out, cells).items():
        failed[key] = f"its zoo model could not be built: {error}"
    records = _run_cells(run, cells, failed)

    rows = collect_rows(cells, records)
    write_results(rows, summary.results_csv, summary.results_json, raw_csv=raw_csv)
    atomic_write_text(out / "failures.json", to_json(summary.failures, indent=1) + "\n")
    summary.n_rows = len(rows)
    if rows:
        from deepfake_cli.report import render_report

        summary.report = render_report(summary.results_csv, out, config_path=out / "config.toml")
    summary.seconds = time.perf_counter() - t0
    return summary


def _parallel(fn, jobs: int, arg_list: list[tuple], on_done):
    """Run fn(*args) for each args, in worker processes when jobs > 1; on_done(result) as each ends."""
    if jobs <= 1 or len(arg_list) <= 1:
        for args in arg_list:
            on_done(fn(*args))
        return
    from joblib import Parallel, delayed

    for res in Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(fn)(*a) for a in arg_list):
        on_done(res)


# --- features --------------------------------------------------------------------------------------


def _make_features(run: _Run, features: dict[str, FeatureJob]) -> None:
    singles = [j for j in features.values() if not j.combined and not j.pooled] + member_jobs(run.cfg, features)
    combos = [j for j in features.values() if j.combined]
    pools = [j for j in features.values() if j.pooled]
    run.progress.phase("features", len(singles) + len(combos) + len(pools))
    for j in singles + combos + pools:  # combinations, then pools: they are built from the files before them
        path = run.fdir / f"{j.key}.h5"
        if complete_features(path):
            run.summary.features_reused += 1
        elif j.pooled:
            pool_features([run.fdir / f"{k}.h5" for k in j.pool], path)
            run.summary.features_combined += 1
        elif j.combined:
            combine_features([run.fdir / f"{k}.h5" for k in member_keys(run.cfg, j)], path)
            run.summary.features_combined += 1
        else:
            run.progress.unit("features", f"{j.dataset.name} / {j.backbone} / {j.transform}")
            _extract(run, j, path)
            run.summary.features_extracted += 1
        run.progress.advance("features")
    run.progress.phase_done("features")


def _extract(run: _Run, job: FeatureJob, path: Path) -> None:
    from deepfake_cli.stages.extract import extract
    from deepfake_cli.inference.engines import create_runner

    cfg, report = run.cfg, run.progress
    runner = create_runner(cfg.engine, device=cfg.device, **cfg.engine_options)
    extract(**job.dataset.extract_args(), backbone=job.backbone, out=str(path), transform=job.transform,
            batch_size=cfg.batch_size, device=cfg.device, weights=cfg.weights.get(job.backbone),
            layers=job.layers, seed=cfg.seed, align=cfg.align, runner=runner,
            on_start=lambda total, done: report.images(done, total),
            progress=lambda done, total: report.images(done, total))


# --- reducers --------------------------------------------------------------------------------------


def _fit_reducers(run: _Run, cells: list[Cell]) -> dict[str, str]:
    """Fit the reducers the cells need and the cache lacks; returns {reducer key: error} of failures."""
    cfg, summary = run.cfg, run.summary
    needed: dict[str, Cell] = {}  # reducer key -> the first cell that needs it
    for c in cells:
        if c.reducer_key:
            needed.setdefault(c.reducer_key, c)
    run.progress.phase("reducers", len(needed))
    todo = []
    for rk, c in needed.items():
        out_file = run.out / "reducers" / f"{rk}.reducer"
        if out_file.is_file():
            summary.reducers_reused += 1
            run.progress.advance("reducers")
            continue
        split = run.fdir / f"{train_split_key(cfg, c.train_fkey)}.h5"
        if not complete_features(split):
            train_split_file(run.fdir / f"{c.train_fkey}.h5", split, cfg.test_size, cfg.seed)
        todo.append((str(split), c.reducer.method, cfg.reducer_params(c.reducer), str(out_file), cfg.seed,
                     "cpu" if run.jobs > 1 else cfg.device))
    failed: dict[str, str] = {}

    def done(res):
        if res["error"]:
            rk = Path(res["out"]).stem
            failed[rk] = res["error"]
            summary.failures.append({"what": "reducer", "key": rk, "error": res["error"]})
        else:
            summary.reducers_fitted += 1
        run.progress.advance("reducers")

    _parallel(fit_reducer_unit, run.jobs, todo, done)
    run.progress.phase_done("reducers")
    return failed


# --- cells -----------------------------------------------------------------------------------------


def _finished_record(out: Path, cell: Cell) -> dict | None:
    """The cached record of a cell whose model exists and that has rows for every test file, else None."""
    cell_path = out / "cells" / f"{cell.key}.json"
    if not cell_path.is_file() or not (out / "models" / f"{cell.key}.model").is_file():
        return None
    rec = json.loads(cell_path.read_text())
    return rec if all(k in rec.get("rows", {}) for k in cell.test_fkeys) else None


def _run_cells(run: _Run, cells: list[Cell], failed: dict[str, str]) -> dict[str, dict]:
    """Train and evaluate what the cache lacks; returns {cell key: record} of every cell that has rows.
    `failed`: {reducer key: error} of reducers that could not be fitted, and {cell key: why} of zoo cells
    whose model could not be written; their cells are reported, not run."""
    cfg, summary = run.cfg, run.summary
    run.progress.phase("cells", len(cells))
    records: dict[str, dict] = {}
    todo = []
    for c in cells:
        rec = _finished_record(run.out, c)
        if rec is not None:
            records[c.key] = rec
            summary.cells_reused += 1
        elif c.reducer_key in failed:
            summary.failures.append({"what": "cell", "key": c.key,
                                     "error": f"its reducer could not be fitted: {failed[c.reducer_key]}"})
        elif c.key in failed:
            summary.failures.append({"what": "cell", "key": c.key, "error": failed[c.key]})
        else:
            todo.append((c, str(run.out), cfg.test_size, cfg.val_size, cfg.seed, cell_factors(cfg, c)))
            continue
        run.progress.advance("cells")

    def done(res):
        if res["error"]:
            summary.failures.append({"what": "cell", "key": res["key"], "error": res["error"]})
        else:
            records[res["key"]] = res["record"]
            summary.cells_trained += int(res["trained"])
            summary.cells_evaluated += 1
        run.progress.advance("cells")

    _parallel(run_cell_unit, run.jobs, todo, done)
    run.progress.phase_done("cells")
    return records
