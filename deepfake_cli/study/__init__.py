"""The `study`: run a grid of (dataset, backbone, layers, transforms, reducer, classifier) cells.

Layering: the study is an orchestrator above the stages, like the CLI. It calls only the stages' public
functions (`extract.extract`, `reduce.reduce`, `train.train`, `evaluate.evaluate`, `report.render_report`)
and the core (features, splits, fileio, the registries); no stage imports the study, and the study
reaches into no stage's internals. It prints nothing: progress goes to a `StudyProgress` the caller
passes (the CLI draws bars with it).

  config.py         the study TOML, validated -> StudyConfig
  reducer_specs.py  grid reducers ("pca:64", "pca:variance=0.9") checked against the reducer registry
  plan.py           the feature files and cells the grid needs, and their cache keys
  units.py          one unit of work each: combine features, split off the training part, fit a
                    reducer, train + evaluate a cell
  runner.py         run_study: the phases, in worker processes when jobs > 1
  progress.py       StudyProgress, the callbacks a run reports to
  results.py        results.csv / results.json

Work is split into units that are each cached on disk under the study folder and reused on reruns:

  features/<dataset>__<backbone>__<transform>__<key>.h5   one per (dataset, backbone, weights, layers,
        transform, align, seed), written by `extract.extract` (a combined "a+b" backbone is built by
        concatenating its members' cached files, so a sweep never re-runs a backbone it has run);
  reducers/<key>.reducer   one per (training features, reducer), fitted by `reduce.reduce` on the
        training part only (the held-out test images never reach a reducer);
  models/<key>.model       one per cell: (training features, reducer, classifier), by `train.train`;
  cells/<key>.json         the cell's evaluation rows per test feature file, by `evaluate.evaluate`;
  cells/images/<key>.json  its per-image scores (sha256 prefix, label, p_fake) per test file and dataset,
        read by the report for ROC curves, score histograms and image-level intervals.

A cell trains on one dataset (with one train transform) and is tested on that dataset's held-out
split (`within`) and, with `cross_dataset`, on every other dataset (`cross`), under every test
transform. Stopping and rerunning redoes only what has no file yet; adding a test transform
re-evaluates without retraining. results.csv/.json hold one tidy row per cell x test dataset x test
transform; the figures and report.md are then drawn by `report.render_report`.
"""

from deepfake_cli.study.config import DatasetEntry, StudyConfig, load_config
from deepfake_cli.study.plan import Cell, FeatureJob, feature_key, model_key, plan, reducer_key
from deepfake_cli.study.progress import StudyProgress
from deepfake_cli.study.reducer_specs import ReducerSpec, parse_reducer
from deepfake_cli.study.results import result_columns, write_results
from deepfake_cli.study.runner import StudySummary, run_study
from deepfake_cli.study.units import combine_features

__all__ = ["Cell", "DatasetEntry", "FeatureJob", "ReducerSpec", "StudyConfig", "StudyProgress", "StudySummary",
           "combine_features", "feature_key", "load_config", "model_key", "parse_reducer", "plan", "reducer_key",
           "result_columns", "run_study", "write_results"]
