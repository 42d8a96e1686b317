"""Figures and a Markdown report drawn from a results table alone (results.csv of study or eval).

Every figure is a pure function of the table, so a report can be redrawn later, elsewhere, from
the CSV. A figure whose factor has one level in the table is skipped and the report says so.
Accuracies in tables are pooled over the rows they summarise (weighted by n) and carry n and a
95% Wilson interval.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import platform
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from deepfake_cli import __version__
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.fileio import atomic_path, atomic_write_text
from deepfake_cli.stats import format_accuracy, group_matrix, pooled_accuracy

# Columns that stay text; every other column is parsed as a float (NaN when empty).
TEXT_COLUMNS = {"model", "classifier", "backbone", "reducer", "train_datasets", "test_dataset", "kind",
                "train_transform", "test_transform", "layers", "align", "cell", "weights_id", "status"}
REQUIRED = {"classifier", "backbone", "reducer", "train_datasets", "test_dataset", "kind",
            "train_transform", "test_transform", "n", "accuracy"}
FIGURE_FORMATS = ("png", "svg")
CONFIG_NAMES = ("config.toml", "study.toml")


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    table: list[list[str]] = field(default_factory=list)  # first row is the header
    skipped: str | None = None


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results CSV with numeric columns as floats; DeepfakeError if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise DeepfakeError(f"results table not found: {path}")
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = REQUIRED - set(reader.fieldnames or [])
        if missing:
            raise DeepfakeError(f"{path} is not a results table (missing columns: {', '.join(sorted(missing))}).")
        rows = []
        for raw in reader:
            row = {}
            for k, v in raw.items():
                if k in TEXT_COLUMNS or k is None:
                    row[k] = v if v is not None else ""
                else:
                    try:
                        row[k] = float(v) if v not in ("", None) else math.nan
                    except ValueError:
                        row[k] = v
            rows.append(row)
    if not rows:
        raise DeepfakeError(f"{path} has no result rows.")
    return rows


def levels(rows: list[dict], key: str | Callable[[dict], str]) -> list[str]:
    """Distinct values of a column (or of a function of a row), in first-seen order."""
    get = key if callable(key) else (lambda r: r.get(key, ""))
    return list(dict.fromkeys(get(r) for r in rows))


def _group(rows: Iterable[dict], *keys: str | Callable[[dict], str]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    getters = [k if callable(k) else (lambda r, k=k: r.get(k, "")) for k in keys]
    for r in rows:
        out[tuple(g(r) for g in getters)].append(r)
    return out


def _pool(rows: list[dict]) -> tuple[float, int, float, float]:
    return pooled_accuracy([r["accuracy"] for r in rows], [r["n"] for r in rows])


def _fmt(rows: list[dict]) -> str:
    return format_accuracy(*_pool(rows))


def _is_combined(backbone: str) -> bool:
    return "+" in backbone


def _within_matched(rows: list[dict]) -> list[dict]:
    """Within-dataset rows tested under the transform they were trained with (the clean view)."""
    within = [r for r in rows if r["kind"] == "within"] or rows
    matched = [r for r in within if r["test_transform"] == r["train_transform"]]
    return matched or within


# ---------------------------------------------------------------------------------------------
# Figures. Each returns a Figure; `draw` gets a matplotlib Figure to fill when there is data.


def _fig_transforms(rows, plt):
    within = [r for r in rows if r["kind"] == "within"] or rows
    trains, tests = levels(within, "train_transform"), levels(within, "test_transform")
    fig = Figure("transforms", "Robustness: train transform x test transform",
                 "Left: the 'goodness factor' -- for each dataset/backbone line, accuracy (pooled over "
                 "classifiers and reducers) minus that line's minimum, so lines of different levels are "
                 "comparable. Right: the plain accuracies. Within-dataset rows.")
    if len(trains) < 2 and len(tests) < 2:
        fig.skipped = f"one train transform ({trains[0]}) and one test transform ({tests[0]}) in the results."
        return fig, None
    combos = [(a, b) for a in trains for b in tests if any(
        r["train_transform"] == a and r["test_transform"] == b for r in within)]
    labels = [f"{a} -> {b}" for a, b in combos]
    lines = _group(within, "test_dataset", "backbone")
    mpl_fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10, 1.1 * len(combos) + 6), 4.8), sharex=True)
    x = np.arange(len(combos))
    # One colour per dataset and one line style per backbone, so more than ten lines stay readable.
    ds_names = sorted({ds for ds, _ in lines})
    bb_names = sorted({bb for _, bb in lines})
    colours = plt.get_cmap("tab10" if len(ds_names) <= 10 else "tab20")
    styles = ["-", "--", ":", "-."]
    for (ds, bb), lrows in sorted(lines.items()):
        style = {"color": colours(ds_names.index(ds) % colours.N),
                 "linestyle": styles[bb_names.index(bb) % len(styles)], "marker": "o"}
        acc = np.array([_pool([r for r in lrows if (r["train_transform"], r["test_transform"]) == c])[0]
                        if any((r["train_transform"], r["test_transform"]) == c for r in lrows) else np.nan
                        for c in combos])
        if np.all(np.isnan(acc)):
            continue
        ax1.plot(x, acc - np.nanmin(acc), label=f"{ds} / {bb}", **style)
        ax2.plot(x, acc, label=f"{ds} / {bb}", **style)
    ax1.set_ylabel("accuracy - line minimum")
    ax2.set_ylabel("accuracy")
    for ax in (ax1, ax2):
        ax.set_xticks(x, labels, rotation=35, ha="right")
        ax.set_xlabel("train -> test transform")
        ax.grid(alpha=0.3)
    ax2.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: lines stay visible
    fig.table = [["train transform", "test transform", "accuracy [95% CI] n"]] + [
        [a, b, _fmt([r for r in within if (r["train_transform"], r["test_transform"]) == (a, b)])] for a, b in combos]
    return fig, mpl_fig


def _bars(ax, groups: list[str], series: list[str], value: Callable[[str, str], tuple]):
    """Grouped bars with 95% CI error bars; value(group, series) -> pooled tuple."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, s in enumerate(series):
        vals = [value(g, s) for g in groups]
        acc = np.array([v[0] for v in vals])
        lo = np.array([v[0] - v[2] if v[1] else 0 for v in vals])
        hi = np.array([v[3] - v[0] if v[1] else 0 for v in vals])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, acc, width, yerr=[np.nan_to_num(lo), np.nan_to_num(hi)],
               capsize=2, label=s)
    ax.set_xticks(x, groups, rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)


def _fig_reducers(rows, plt):
    sel = _within_matched(rows)
    reducers, classifiers, backbones = levels(sel, "reducer"), levels(sel, "classifier"), levels(sel, "backbone")
    fig = Figure("reducers", "Dimensionality reduction per classifier and backbone",
                 "Pooled accuracy with 95% Wilson intervals; within-dataset rows, test transform = train transform.")
    if len(reducers) < 2:
        fig.skipped = f"one reducer ({reducers[0]}) in the results."
        return fig, None
    g = _group(sel, "backbone", "classifier", "reducer")
    # One row of bars per backbone: the full grid (11 classifiers x 3 reducers) stays readable.
    mpl_fig, axes = plt.subplots(len(backbones), 1, figsize=(max(6, 0.3 * len(classifiers) * len(reducers) + 2),
                                                             2.2 + 2.6 * len(backbones)), squeeze=False, sharex=True)
    for ax, bb in zip(axes[:, 0], backbones):
        _bars(ax, classifiers, reducers, lambda c, rd: _pool(g.get((bb, c, rd), [])))
        ax.set_title(bb, fontsize=9)
        ax.set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, title="reducer", ncol=len(reducers))
    by = _group(sel, "reducer")
    fig.table = [["reducer", "accuracy [95% CI] n"]] + [[rd, _fmt(by[(rd,)])] for rd in reducers]
    return fig, mpl_fig


def _fig_classifiers(rows, plt):
    sel = _within_matched(rows)
    classifiers = levels(sel, "classifier")
    fig = Figure("classifiers", "Accuracy per classifier, over all other factors",
                 "Bar: pooled accuracy; black line: its 95% Wilson interval; dots: the individual rows "
                 "(backbones, reducers, datasets, transforms), showing the spread.")
    if len(classifiers) < 2:
        fig.skipped = f"one classifier ({classifiers[0]}) in the results."
        return fig, None
    by = _group(sel, "classifier")
    order = sorted(classifiers, key=lambda c: -_pool(by[(c,)])[0])
    mpl_fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(order) + 2), 4.5))
    for i, c in enumerate(order):
        acc, n, lo, hi = _pool(by[(c,)])
        ax.bar(i, acc, 0.7, color="tab:blue", alpha=0.6)
        ax.plot([i, i], [lo, hi], color="black", lw=2)
        pts = [r["accuracy"] for r in by[(c,)]]
        jitter = np.linspace(-0.2, 0.2, len(pts)) if len(pts) > 1 else [0.0]
        ax.scatter(i + np.asarray(jitter), pts, s=8, color="tab:orange", zorder=3)
    ax.set_xticks(range(len(order)), order, rotation=35, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    fig.table = [["classifier", "accuracy [95% CI] n", "std over rows", "rows"]] + [
        [c, _fmt(by[(c,)]), f"{np.nanstd([r['accuracy'] for r in by[(c,)]]):.3f}", str(len(by[(c,)]))] for c in order]
    return fig, mpl_fig


def _fig_backbones(rows, plt):
    sel = _within_matched(rows)
    backbones = levels(sel, "backbone")
    fig = Figure("backbones", "Backbones: single vs combined",
                 "Pooled accuracy per backbone and test dataset with 95% Wilson intervals; combined "
                 "backbones (names joined by '+') concatenate the single backbones' features.")
    if len(backbones) < 2:
        fig.skipped = f"one backbone ({backbones[0]}) in the results."
        return fig, None
    order = sorted(backbones, key=lambda b: (_is_combined(b), b))
    datasets = levels(sel, "test_dataset")
    g = _group(sel, "backbone", "test_dataset")
    mpl_fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(order) * max(1, len(datasets)) ** 0.5 + 2), 4.5))
    _bars(ax, order, datasets, lambda b, d: _pool(g.get((b, d), [])))
    for lbl in ax.get_xticklabels():
        if _is_combined(lbl.get_text()):
            lbl.set_fontweight("bold")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, title="test dataset")
    by = _group(sel, "backbone")
    fig.table = [["backbone", "kind", "accuracy [95% CI] n"]] + [
        [b, "combined" if _is_combined(b) else "single", _fmt(by[(b,)])] for b in order]
    return fig, mpl_fig


def _fig_cross(rows, plt):
    sel = [r for r in rows if r["test_transform"] == r["train_transform"]] or rows
    trains, tests, g = group_matrix(sel, lambda r: r["train_datasets"], lambda r: r["test_dataset"])
    fig = Figure("cross_dataset", "Cross-dataset: train on A, test on B",
                 "Pooled accuracy over backbones, reducers and classifiers (test transform = train "
                 "transform); the diagonal is within-dataset (held-out split).")
    if not any(r["kind"] == "cross" for r in sel) or len(tests) < 2:
        fig.skipped = "no cross-dataset rows in the results (one dataset, or cross-dataset off)."
        return fig, None
    M = np.full((len(trains), len(tests)), np.nan)
    for i, a in enumerate(trains):
        for j, b in enumerate(tests):
            if (a, b) in g:
                M[i, j] = _pool(g[(a, b)])[0]
    mpl_fig, ax = plt.subplots(figsize=(1.3 * len(tests) + 3, 0.9 * len(trains) + 2))
    im = ax.imshow(M, vmin=0, vmax=1, cmap="RdYlGn")
    for i in range(len(trains)):
        for j in range(len(tests)):
            if not np.isnan(M[i, j]):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(tests)), tests, rotation=35, ha="right")
    ax.set_yticks(range(len(trains)), trains)
    ax.set_xlabel("test dataset")
    ax.set_ylabel("train dataset(s)")
    mpl_fig.colorbar(im, ax=ax, label="accuracy")
    fig.table = [["train", "test", "accuracy [95% CI] n"]] + [
        [a, b, _fmt(g[(a, b)])] for a in trains for b in tests if (a, b) in g]
    return fig, mpl_fig


FIGURES = [_fig_transforms, _fig_reducers, _fig_classifiers, _fig_backbones, _fig_cross]


def _save(mpl_fig, path_stem: Path) -> list[Path]:
    written = []
    for fmt in FIGURE_FORMATS:
        final = path_stem.with_suffix("." + fmt)
        with atomic_path(final) as tmp:
            mpl_fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
        written.append(final)
    return written


def _versions() -> dict[str, str]:
    out = {"deepfake-cli": __version__, "python": platform.python_version()}
    for pkg in ("numpy", "scikit-learn", "torch", "timm", "open_clip_torch", "matplotlib", "h5py"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _md_table(table: list[list[str]]) -> str:
    if not table:
        return ""
    head, *body = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _find_config(results_csv: Path, config_path: str | os.PathLike | None) -> Path | None:
    if config_path:
        return Path(config_path)
    for name in CONFIG_NAMES:
        p = results_csv.parent / name
        if p.is_file():
            return p
    return None


def render_report(results_csv: str | os.PathLike, out_dir: str | os.PathLike,
                  config_path: str | os.PathLike | None = None) -> Path:
    """Draw DIR/figures/*.png|svg from `results_csv` and write DIR/report.md; returns its path.

    `config_path` (default: config.toml or study.toml beside the CSV) is embedded when present.
    """
    results_csv = Path(results_csv)
    rows = read_results(results_csv)
    out = Path(out_dir)
    figures = _draw_figures(rows, out / "figures")
    overall = _within_matched(rows)
    md = _intro_md(results_csv, rows)
    md += ["## Overall", "", f"Within-dataset, test transform = train transform: {_fmt(overall)}", ""]
    md += _best_cells_md(overall)
    md += _figures_md(figures)
    cfg = _find_config(results_csv, config_path)
    if cfg is not None and cfg.is_file():
        md += ["## Configuration", "", f"From `{cfg}`:", "", "```toml", cfg.read_text().rstrip(), "```", ""]
    md += ["## Versions", "", _md_table([["package", "version"]] + [[k, v] for k, v in _versions().items()]), ""]
    return atomic_write_text(out / "report.md", "\n".join(md))


def _draw_figures(rows: list[dict], fig_dir: Path) -> list[Figure]:
    """Every figure of FIGURES, saved as PNG and SVG under `fig_dir` unless it is skipped."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    for make in FIGURES:
        fig, mpl_fig = make(rows, plt)
        if mpl_fig is not None:
            mpl_fig.suptitle(fig.title, fontsize=11)
            _save(mpl_fig, fig_dir / fig.name)
            plt.close(mpl_fig)
        figures.append(fig)
    return figures


def _intro_md(results_csv: Path, rows: list[dict]) -> list[str]:
    return ["# Detection study report", "",
            f"Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from `{results_csv}` "
            f"({len(rows)} result rows: {len(levels(rows, 'backbone'))} backbone(s), "
            f"{len(levels(rows, 'classifier'))} classifier(s), {len(levels(rows, 'reducer'))} reducer(s), "
            f"{len(levels(rows, 'test_dataset'))} test dataset(s)).",
            "",
            "Accuracies are pooled over the rows each line summarises (weighted by test-set size) and shown as "
            "`accuracy [95% Wilson CI] n=images`. When the same test images appear in several pooled rows "
            "the interval treats them as independent and is therefore too narrow; read it as a lower bound on "
            "the uncertainty.", ""]


def _best_cells_md(overall: list[dict]) -> list[str]:
    best = sorted(overall, key=lambda r: (-r["accuracy"], -r["n"]))[:10]
    table = [["backbone", "reducer", "classifier", "train", "test", "transform", "accuracy [95% CI] n", "ROC AUC"]]
    for r in best:
        transform = (r["train_transform"] if r["train_transform"] == r["test_transform"]
                     else f"{r['train_transform']} -> {r['test_transform']}")
        low, high = r.get("accuracy_ci_low", math.nan), r.get("accuracy_ci_high", math.nan)
        accuracy = format_accuracy(r["accuracy"], r["n"], low, high) if not math.isnan(low) else _fmt([r])
        auc = r.get("roc_auc")
        auc_text = f"{auc:.3f}" if isinstance(auc, float) and not math.isnan(auc) else "n/a"
        table.append([r["backbone"], r["reducer"], r["classifier"], r["train_datasets"], r["test_dataset"],
                      transform, accuracy, auc_text])
    return ["### Best cells", "",
            "The top of many small cells, picked on their own test sets: expect these to be optimistic.", "",
            _md_table(table), ""]


def _figures_md(figures: list[Figure]) -> list[str]:
    md: list[str] = []
    for i, f in enumerate([f for f in figures if not f.skipped], 1):
        md += [f"## {i}. {f.title}", "", f"![{f.title}](figures/{f.name}.png)", "",
               f"{f.caption} Vector version: [figures/{f.name}.svg](figures/{f.name}.svg).", "",
               _md_table(f.table), ""]
    skipped = [f for f in figures if f.skipped]
    if skipped:
        md += ["## Figures not drawn", ""] + [f"- **{f.title}**: skipped, {f.skipped}" for f in skipped] + [""]
    return md
