"""The report's figures, each a pure function of the results rows (and their per-image scores, when kept).

Each `_fig_*` returns a `Figure` (title, caption, what every mark means, n, a table) and a matplotlib
figure to save, or None when the table has one level of its factor (then `Figure.skipped` says why).
Colours: the Okabe-Ito palette for series (safe for colour-blind readers) and cividis for the accuracy
matrix; chance level is drawn wherever accuracy is.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfake_cli.report.images import SCORES
from deepfake_cli.report.pooling import Pooling, chance_level
from deepfake_cli.safety.atomic import atomic_path

FIGURE_FORMATS = ("png", "svg")
MATRIX_CMAP = "cividis"  # perceptually uniform, readable with red-green colour blindness, prints in grey
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"]
CHANCE_STYLE = {"color": "0.3", "linestyle": "--", "linewidth": 1.2}
CI_MARK = ("black vertical line / error bar", "95% interval of the pooled accuracy (bootstrap over test images)")


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    marks: list[tuple[str, str]] = field(default_factory=list)  # (mark, what it means): the legend in words
    n_text: str = ""                                            # "n = 840 distinct test images (...)"
    table: list[list[str]] = field(default_factory=list)        # first row is the header
    skipped: str | None = None
    colormap: str | None = None


def levels(rows: list[dict], key: str | Callable[[dict], str]) -> list[str]:
    """Distinct values of a column (or of a function of a row), in first-seen order."""
    get = key if callable(key) else (lambda r: r.get(key, ""))
    return list(dict.fromkeys(get(r) for r in rows))


def group(rows: Iterable[dict], *keys: str | Callable[[dict], str]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    getters = [k if callable(k) else (lambda r, k=k: r.get(k, "")) for k in keys]
    for r in rows:
        out[tuple(g(r) for g in getters)].append(r)
    return out


def is_combined(backbone: str) -> bool:
    return "+" in backbone


def within_matched(rows: list[dict]) -> list[dict]:
    """Within-dataset rows tested under the transform they were trained with (the clean view)."""
    within = [r for r in rows if r["kind"] == "within"] or rows
    matched = [r for r in within if r["test_transform"] == r["train_transform"]]
    return matched or within


def palette(n: int, plt) -> list:
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    cmap = plt.get_cmap("tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _chance(ax, level: float) -> None:
    ax.axhline(level, zorder=1, **CHANCE_STYLE)


def _proxies(chance: float, ci: bool = True):
    from matplotlib.lines import Line2D

    out = [Line2D([], [], label=f"chance ({chance:.2f})", **CHANCE_STYLE)]
    if ci:
        out.append(Line2D([], [], color="black", marker="_", markersize=10, linestyle="-", linewidth=1.5,
                          label="95% CI (bootstrap over images)"))
    return out


def _chance_mark(chance: float) -> tuple[str, str]:
    return ("grey dashed line", f"chance level {chance:.2f}: always answering the majority class")


# ---------------------------------------------------------------------------------------------


def _fig_transforms(rows, plt, pool: Pooling):
    within = [r for r in rows if r["kind"] == "within"] or rows
    trains, tests = levels(within, "train_transform"), levels(within, "test_transform")
    chance = chance_level(within)
    fig = Figure("transforms", "Robustness: train transform x test transform",
                 "Left: the 'goodness factor' -- for each test set / backbone line, accuracy (mean over "
                 "classifiers and reducers) minus that line's minimum, so lines of different levels are "
                 "comparable. Right: the plain accuracies, with chance level. Within-dataset rows.",
                 marks=[("colour", "test set"), ("line style (solid, dashed, dotted, dash-dot)", "backbone"),
                        ("dot", "mean accuracy of the line's rows at that train -> test transform"),
                        _chance_mark(chance)],
                 n_text=pool.n_text(within))
    if len(trains) < 2 and len(tests) < 2:
        fig.skipped = f"one train transform ({trains[0]}) and one test transform ({tests[0]}) in the results."
        return fig, None
    combos = [(a, b) for a in trains for b in tests if any(
        r["train_transform"] == a and r["test_transform"] == b for r in within)]
    labels = [f"{a} -> {b}" for a, b in combos]
    lines = group(within, "test_dataset", "backbone")
    mpl_fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10, 1.1 * len(combos) + 6), 4.8), sharex=True)
    x = np.arange(len(combos))
    ds_names = sorted({ds for ds, _ in lines})
    bb_names = sorted({bb for _, bb in lines})
    colours = palette(len(ds_names), plt)
    styles = ["-", "--", ":", "-."]
    for (ds, bb), lrows in sorted(lines.items()):
        style = {"color": colours[ds_names.index(ds)], "linestyle": styles[bb_names.index(bb) % len(styles)],
                 "marker": "o"}
        by_combo = group(lrows, "train_transform", "test_transform")
        acc = np.array([pool(by_combo[c]).accuracy if c in by_combo else np.nan for c in combos])
        if np.all(np.isnan(acc)):
            continue
        ax1.plot(x, acc - np.nanmin(acc), label=f"{ds} / {bb}", **style)
        ax2.plot(x, acc, label=f"{ds} / {bb}", **style)
    _chance(ax2, chance)
    ax1.set_ylabel("accuracy - line minimum")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(min(0.4, chance - 0.1), 1.02)
    for ax in (ax1, ax2):
        ax.set_xticks(x, labels, rotation=35, ha="right")
        ax.set_xlabel("train -> test transform")
        ax.grid(alpha=0.3)
    handles, names = ax2.get_legend_handles_labels()
    handles += _proxies(chance, ci=False)
    ax2.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), title="test set / backbone")
    by = group(within, "train_transform", "test_transform")
    fig.table = [["train transform", "test transform", "accuracy [95% CI] n"]] + [
        [a, b, pool.fmt(by[(a, b)])] for a, b in combos]
    return fig, mpl_fig


def _bars(ax, groups: list[str], series: list[str], value: Callable, colours: list) -> None:
    """Grouped bars with 95% CI error bars; value(group, series) -> Pooled (or None: no bar)."""
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, s in enumerate(series):
        vals = [value(g, s) for g in groups]
        acc = np.array([v.accuracy if v else np.nan for v in vals])
        lo = np.array([v.accuracy - v.low if v else np.nan for v in vals])
        hi = np.array([v.high - v.accuracy if v else np.nan for v in vals])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, acc, width, yerr=[np.nan_to_num(lo), np.nan_to_num(hi)],
               capsize=2, label=s, color=colours[i], error_kw={"elinewidth": 1, "ecolor": "black"}, zorder=2)
    ax.set_xticks(x, groups, rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)


def _fig_reducers(rows, plt, pool: Pooling):
    sel = within_matched(rows)
    reducers, classifiers, backbones = levels(sel, "reducer"), levels(sel, "classifier"), levels(sel, "backbone")
    chance = chance_level(sel)
    fig = Figure("reducers", "Dimensionality reduction per classifier and backbone",
                 "Mean accuracy over test sets and transforms for each backbone (panel), classifier (group) and "
                 "reducer (bar); within-dataset rows, test transform = train transform.",
                 marks=[("bar colour", "reducer"), ("bar height", "mean accuracy of the rows it pools"), CI_MARK,
                        _chance_mark(chance)],
                 n_text=pool.n_text(sel))
    if len(reducers) < 2:
        fig.skipped = f"one reducer ({reducers[0]}) in the results."
        return fig, None
    g = group(sel, "backbone", "classifier", "reducer")
    colours = palette(len(reducers), plt)
    mpl_fig, axes = plt.subplots(len(backbones), 1, figsize=(max(6, 0.3 * len(classifiers) * len(reducers) + 2),
                                                             2.2 + 2.6 * len(backbones)), squeeze=False, sharex=True)
    for ax, bb in zip(axes[:, 0], backbones):
        _bars(ax, classifiers, reducers, lambda c, rd: pool(g[(bb, c, rd)]) if (bb, c, rd) in g else None, colours)
        _chance(ax, chance)
        ax.set_title(bb, fontsize=9)
        ax.set_ylabel("accuracy")
    handles, _ = axes[0][0].get_legend_handles_labels()
    axes[0][0].legend(handles=handles + _proxies(chance), fontsize=7, title="reducer",
                      loc="upper left", bbox_to_anchor=(1.01, 1.0))
    by = group(sel, "reducer")
    fig.table = [["reducer", "accuracy [95% CI] n"]] + [[rd, pool.fmt(by[(rd,)])] for rd in reducers]
    return fig, mpl_fig


def _fig_classifiers(rows, plt, pool: Pooling):
    sel = within_matched(rows)
    classifiers = levels(sel, "classifier")
    chance = chance_level(sel)
    fig = Figure("classifiers", "Accuracy per classifier, over all other factors",
                 "Each bar pools the within-dataset rows of one classifier (test transform = train transform) "
                 "over backbones, reducers, test sets and transforms.",
                 marks=[("bar", "mean accuracy of the classifier's rows"), CI_MARK,
                        ("orange dots", "the individual rows (one cell on one test set), showing the spread"),
                        _chance_mark(chance)],
                 n_text=pool.n_text(sel))
    if len(classifiers) < 2:
        fig.skipped = f"one classifier ({classifiers[0]}) in the results."
        return fig, None
    from matplotlib.lines import Line2D

    by = group(sel, "classifier")
    order = sorted(classifiers, key=lambda c: -pool(by[(c,)]).accuracy)
    mpl_fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(order) + 3), 4.5))
    for i, c in enumerate(order):
        p = pool(by[(c,)])
        ax.bar(i, p.accuracy, 0.7, color=OKABE_ITO[0], alpha=0.55, zorder=2)
        ax.plot([i, i], [p.low, p.high], color="black", lw=2, zorder=4)
        pts = [r["accuracy"] for r in by[(c,)]]
        jitter = np.linspace(-0.2, 0.2, len(pts)) if len(pts) > 1 else [0.0]
        ax.scatter(i + np.asarray(jitter), pts, s=8, color=OKABE_ITO[1], zorder=3)
    _chance(ax, chance)
    ax.set_xticks(range(len(order)), order, rotation=35, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color=OKABE_ITO[0], alpha=0.55, label="mean accuracy"),
               Line2D([], [], color="black", lw=2, label="95% CI (bootstrap over images)"),
               Line2D([], [], color=OKABE_ITO[1], marker="o", linestyle="", markersize=4, label="one row"),
               _proxies(chance, ci=False)[0]]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.table = [["classifier", "accuracy [95% CI] n", "std over rows", "rows"]] + [
        [c, pool.fmt(by[(c,)]), f"{np.nanstd([r['accuracy'] for r in by[(c,)]]):.3f}", str(len(by[(c,)]))]
        for c in order]
    return fig, mpl_fig


def _fig_backbones(rows, plt, pool: Pooling):
    sel = within_matched(rows)
    backbones = levels(sel, "backbone")
    chance = chance_level(sel)
    fig = Figure("backbones", "Backbones: single vs combined",
                 "Mean accuracy per backbone (group) and test set (bar); combined backbones (names joined by '+', "
                 "in bold) concatenate the single backbones' features. Within-dataset rows, test transform = train "
                 "transform.",
                 marks=[("bar colour", "test set"), CI_MARK, ("bold tick label", "combined backbone"),
                        _chance_mark(chance)],
                 n_text=pool.n_text(sel))
    if len(backbones) < 2:
        fig.skipped = f"one backbone ({backbones[0]}) in the results."
        return fig, None
    order = sorted(backbones, key=lambda b: (is_combined(b), b))
    datasets = levels(sel, "test_dataset")
    g = group(sel, "backbone", "test_dataset")
    n_per = pool.distinct(sel)
    mpl_fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(order) * max(1, len(datasets)) ** 0.5 + 3), 4.5))
    series = {f"{d} (n={n_per.get(d, 0)})": d for d in datasets}
    _bars(ax, order, list(series), lambda b, s: pool(g[(b, series[s])]) if (b, series[s]) in g else None,
          palette(len(datasets), plt))
    _chance(ax, chance)
    for lbl in ax.get_xticklabels():
        if is_combined(lbl.get_text()):
            lbl.set_fontweight("bold")
    ax.set_ylabel("accuracy")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + _proxies(chance), fontsize=7, title="test set (distinct images)",
              loc="upper left", bbox_to_anchor=(1.01, 1.0))
    by = group(sel, "backbone")
    fig.table = [["backbone", "kind", "accuracy [95% CI] n"]] + [
        [b, "combined" if is_combined(b) else "single", pool.fmt(by[(b,)])] for b in order]
    return fig, mpl_fig


def cross_matrix(rows: list[dict], pool: Pooling):
    """(train keys, test keys, accuracy matrix, {(i, j): rows}) of the matched-transform rows."""
    from deepfake_cli.metrics.stats import group_matrix

    sel = [r for r in rows if r["test_transform"] == r["train_transform"]] or rows
    trains, tests, g = group_matrix(sel, lambda r: r["train_datasets"], lambda r: r["test_dataset"])
    M = np.full((len(trains), len(tests)), np.nan)
    for i, a in enumerate(trains):
        for j, b in enumerate(tests):
            if (a, b) in g:
                M[i, j] = pool(g[(a, b)]).accuracy
    return sel, trains, tests, M, g


def _fig_cross(rows, plt, pool: Pooling):
    sel, trains, tests, M, g = cross_matrix(rows, pool)
    chance = chance_level(sel)
    fig = Figure("cross_dataset", "Cross-dataset: train on A, test on B",
                 "Mean accuracy over backbones, reducers and classifiers (test transform = train transform) of "
                 "models trained on the row's dataset(s) and tested on the column's. Diagonal cells are "
                 "within-dataset (the held-out split of the training set); off-diagonal cells test every image of "
                 "the other set.",
                 marks=[(f"cell colour ({MATRIX_CMAP} colour map, dark = low, yellow = high)", "mean accuracy, 0 to 1"),
                        ("number in a cell", "mean accuracy and the distinct test images behind it (n)"),
                        ("black-and-white outlined cell",
                         "within-dataset: tested on the training set's held-out split"),
                        ("dashed line on the colour bar", f"chance level {chance:.2f}: always answering the "
                                                          "majority class")],
                 n_text=pool.n_text(sel), colormap=MATRIX_CMAP)
    if not any(r["kind"] == "cross" for r in sel) or len(tests) < 2:
        fig.skipped = "no cross-dataset rows in the results (one dataset, or cross-dataset off)."
        return fig, None
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch, Rectangle

    cmap, norm = plt.get_cmap(MATRIX_CMAP), Normalize(0.0, 1.0)
    mpl_fig, ax = plt.subplots(figsize=(1.25 * len(tests) + 3.5, 0.95 * len(trains) + 2.2))
    ax.set_facecolor("0.85")  # cells without rows
    mesh = ax.pcolormesh(np.arange(len(tests) + 1) - 0.5, np.arange(len(trains) + 1) - 0.5, np.ma.masked_invalid(M),
                         cmap=cmap, norm=norm, edgecolors="white", linewidth=0.6)
    ax.set_xlim(-0.5, len(tests) - 0.5)
    ax.set_ylim(len(trains) - 0.5, -0.5)
    for i, a in enumerate(trains):
        for j, b in enumerate(tests):
            if np.isnan(M[i, j]):
                continue
            cell_rows = g[(a, b)]
            n = pool(cell_rows).n
            ax.text(j, i, f"{M[i, j]:.2f}\nn={n}", ha="center", va="center", fontsize=8,
                    color=_text_colour(cmap(norm(M[i, j]))))
            if all(r["kind"] == "within" for r in cell_rows):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", lw=3.2, zorder=3))
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.2,
                                       linestyle=(0, (3, 2)), zorder=4))
    ax.set_xticks(range(len(tests)), tests, rotation=35, ha="right")
    ax.set_yticks(range(len(trains)), trains)
    ax.set_xlabel("test set")
    ax.set_ylabel("trained on")
    cb = mpl_fig.colorbar(mesh, ax=ax, label="accuracy (mean over cells)", fraction=0.05, pad=0.03)
    cb.ax.axhline(chance, color="black", linestyle="--", linewidth=1.5)
    cb.ax.axhline(chance, color="white", linestyle=(2, (2, 2)), linewidth=1.5)
    handles = [Patch(facecolor="none", edgecolor="black", linewidth=2.5, label="within-dataset (held-out split)"),
               *_proxies(chance, ci=False)]
    handles[-1].set_label(f"chance ({chance:.2f}, on the colour bar)")
    if np.isnan(M).any():
        handles.append(Patch(facecolor="0.85", label="no rows"))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=3, frameon=False)
    fig.table = [["train", "test", "accuracy [95% CI] n"]] + [
        [a, b, pool.fmt(g[(a, b)])] for a in trains for b in tests if (a, b) in g]
    return fig, mpl_fig


def _text_colour(rgba) -> str:
    """Black or white, whichever contrasts more with a cell of colour `rgba` (WCAG relative luminance)."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "black" if luminance > 0.179 else "white"


def _scored_rows(rows: list[dict]) -> list[dict]:
    return [r for r in within_matched(rows) if r.get(SCORES) is not None]


def _panels(plt, n: int, width: float = 3.6, height: float = 3.3):
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    mpl_fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols + 2.2, height * nrows + 0.6), squeeze=False,
                                 layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return mpl_fig, axes.ravel()


_NO_SCORES = ("no per-image scores beside the results table (a study keeps them in cells/images/, "
              "eval in eval_images.csv).")


def _per_test_set(fig: Figure, sel: list[dict], plt, pool: Pooling, panel, *, xlabel: str, ylabel: str,
                  legend_loc: str, count_cells: bool = False, height: float = 3.3):
    """The layout the per-image-score figures share: one panel per test set of `sel`; returns the mpl figure.

    `panel(ax, ds, cells)` draws the rows `cells` of test set `ds` and returns the rows it adds to
    `fig.table` (the caller sets the header). The title (test set, distinct images and, with
    `count_cells`, the number of cells), the axis labels, the [0, 1] x range and the legend are shared.
    """
    tests = levels(sel, "test_dataset")
    n_per = pool.distinct(sel)
    mpl_fig, axes = _panels(plt, len(tests), height=height)
    for ax, ds in zip(axes, tests):
        cells = [r for r in sel if r["test_dataset"] == ds]
        fig.table.extend(panel(ax, ds, cells))
        n_cells = f", {len(cells)} cell{'s' if len(cells) > 1 else ''}" if count_cells else ""
        ax.set_title(f"{ds} (n={n_per.get(ds, 0)} images{n_cells})", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, 1)
        ax.legend(fontsize=6, loc=legend_loc)
    return mpl_fig


def _fig_roc(rows, plt, pool: Pooling):
    sel = [r for r in _scored_rows(rows) if len(np.unique(r[SCORES].label)) == 2]
    fig = Figure("roc", "ROC curves per test set",
                 "One panel per test set, within-dataset rows with per-image scores (test transform = train "
                 "transform). For each backbone, thin lines are the ROC curves of its individual cells and the thick "
                 "line is their vertical average (mean true-positive rate at each false-positive rate); the legend "
                 "gives the mean ROC AUC over those cells.",
                 marks=[("colour", "backbone"), ("thin line", "one cell's ROC curve"),
                        ("thick line", "vertical average of the backbone's curves"),
                        ("grey dashed diagonal", "chance: a detector that ignores the image (AUC 0.5)")],
                 n_text=pool.n_text(sel) if sel else "")
    if not sel:
        fig.skipped = (_NO_SCORES if not any(r.get(SCORES) is not None for r in rows)
                       else "no test set with both real and fake images among the rows with per-image scores.")
        return fig, None
    backbones = levels(sel, "backbone")
    colours = palette(len(backbones), plt)

    def panel(ax, ds, cells):
        table = []
        for colour, bb in zip(colours, backbones):
            mine = [r for r in cells if r["backbone"] == bb]
            if mine:
                auc = _roc_curves(ax, mine, colour, bb)
                table.append([ds, bb, str(len(mine)), f"{auc:.3f}"])
        ax.plot([0, 1], [0, 1], label="chance (AUC 0.5)", **CHANCE_STYLE)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        return table

    fig.table = [["test set", "backbone", "cells", "mean ROC AUC"]]
    mpl_fig = _per_test_set(fig, sel, plt, pool, panel, xlabel="false-positive rate (real called fake)",
                            ylabel="true-positive rate (fake caught)", legend_loc="lower right")
    return fig, mpl_fig


def _roc_curves(ax, cells: list[dict], colour, backbone: str) -> float:
    """One backbone's thin per-cell ROC curves and their thick vertical average; returns the mean AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    grid = np.linspace(0.0, 1.0, 201)
    tprs, aucs = [], []
    for r in cells:
        s = r[SCORES]
        fpr, tpr, _ = roc_curve(s.label, s.p_fake)
        ax.plot(fpr, tpr, color=colour, alpha=0.15, lw=0.6)
        tprs.append(np.interp(grid, fpr, tpr))
        aucs.append(roc_auc_score(s.label, s.p_fake))
    mean = np.mean(tprs, axis=0)
    mean[0] = 0.0
    auc = np.mean(aucs)
    ax.plot(grid, mean, color=colour, lw=2.2,
            label=f"{backbone}: AUC {auc:.2f} ({len(cells)} cell{'s' if len(cells) > 1 else ''})")
    return auc


def _fig_scores(rows, plt, pool: Pooling):
    sel = _scored_rows(rows)
    fig = Figure("scores", "Per-image scores per test set",
                 "One panel per test set: the distribution of p(fake) over the real and the fake test images, pooled "
                 "over the within-dataset cells with per-image scores (test transform = train transform; each image "
                 "counts once per cell). Overlap is where any threshold errs.",
                 marks=[(f"blue ({OKABE_ITO[0]})", "real images"), (f"orange ({OKABE_ITO[1]})", "fake images"),
                        ("black dotted line", "median decision threshold of the cells"),
                        ("grey dashed line", "p(fake) = 0.5")],
                 n_text=pool.n_text(sel) if sel else "")
    if not sel:
        fig.skipped = _NO_SCORES
        return fig, None
    bins = np.linspace(0.0, 1.0, 26)

    def panel(ax, ds, cells):
        p = np.concatenate([r[SCORES].p_fake for r in cells])
        y = np.concatenate([r[SCORES].label for r in cells])
        thr = float(np.median([r["threshold"] for r in cells]))
        for cls, colour, name in ((0, OKABE_ITO[0], "real"), (1, OKABE_ITO[1], "fake")):
            if (y == cls).any():
                ax.hist(np.clip(p[y == cls], 0, 1), bins=bins, density=True, histtype="stepfilled", alpha=0.45,
                        color=colour, edgecolor=colour, label=f"{name} ({int((y == cls).sum() / len(cells))} images)")
        ax.axvline(thr, color="black", linestyle=":", linewidth=1.5, label=f"median threshold {thr:.2f}")
        ax.axvline(0.5, **CHANCE_STYLE, label="p(fake) = 0.5")
        med = [f"{np.median(p[y == c]):.3f}" if (y == c).any() else "n/a" for c in (0, 1)]
        return [[ds, str(len(cells)), *med, f"{thr:.3f}"]]

    fig.table = [["test set", "cells", "real: median p(fake)", "fake: median p(fake)", "median threshold"]]
    mpl_fig = _per_test_set(fig, sel, plt, pool, panel, xlabel="p(fake)", ylabel="density", legend_loc="upper center",
                            count_cells=True, height=2.8)
    return fig, mpl_fig


FIGURES = [_fig_transforms, _fig_reducers, _fig_classifiers, _fig_backbones, _fig_cross, _fig_roc, _fig_scores]


def _save(mpl_fig, path_stem: Path) -> list[Path]:
    written = []
    for fmt in FIGURE_FORMATS:
        final = path_stem.with_suffix("." + fmt)
        with atomic_path(final) as tmp:
            # no creation date in the SVG: redrawing the same table gives the same file
            mpl_fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight",
                            metadata={"Date": None} if fmt == "svg" else None)
        written.append(final)
    return written


def draw_figures(rows: list[dict], fig_dir: Path, pool: Pooling) -> list[Figure]:
    """Every figure of FIGURES, saved as PNG and SVG under `fig_dir` unless it is skipped."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    with matplotlib.rc_context({"svg.hashsalt": "deepfake-report", "svg.fonttype": "path"}):
        from deepfake_cli.report.protocols import fig_generators, fig_laundering  # built on this module's helpers

        for make in [*FIGURES, fig_generators, fig_laundering]:
            fig, mpl_fig = make(rows, plt, pool)
            if fig is None:  # a protocol's figure, for a table that did not run that protocol
                continue
            if mpl_fig is not None:
                mpl_fig.suptitle(fig.title, fontsize=11)
                _save(mpl_fig, fig_dir / fig.name)
                plt.close(mpl_fig)
            figures.append(fig)
    return figures
