"""The report's figures for the field's protocols (issue 19): the per-generator table and bars of a
cross-generator study (leave-one-out, train-on-one, or the cross rows of a matrix), and the laundering
curves (AUC and TPR at 5% FPR against the severity of JPEG, downscaling, blur and their chain).

Both read the operating-point columns eval writes (`metrics.operating`); a table without the rows a figure
needs (no cross rows, no laundering transforms, or made before operating points) does not get it.
"""

from __future__ import annotations

import math

import numpy as np

from deepfake_cli.data.transforms import LAUNDERING, laundering_family
from deepfake_cli.report.figures import Figure, group, levels, palette
from deepfake_cli.report.pooling import Pooling


def _f(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "n/a"


def _ci(r: dict, name: str) -> str:
    lo, hi = r.get(f"{name}_ci_low"), r.get(f"{name}_ci_high")
    if isinstance(lo, float) and math.isfinite(lo):
        return f"{_f(r.get(name))} [{lo:.3f}, {hi:.3f}]"
    return _f(r.get(name))


def _has_points(rows: list[dict]) -> bool:
    return any(isinstance(r.get("tpr_at_fpr_5"), float) and math.isfinite(r["tpr_at_fpr_5"]) for r in rows)


def _model(r: dict) -> str:
    return f"{r['backbone']} / {r['reducer']} / {r['classifier']}"


def generator_rows(rows: list[dict]) -> list[dict]:
    """The cross-generator rows the field tabulates: cross rows under no test transform."""
    return [r for r in rows if r.get("kind") == "cross" and r.get("test_transform") in ("none", "", None)]


def generator_table(rows: list[dict]) -> list[list[str]]:
    """The field's per-generator table: one row per (model, training set, test generator) with real and fake
    accuracy, their mean, AP, TPR at 5% FPR (oracle) and n; then one pooled row per model and training
    set: the unweighted mean over its generators (each generator counts once, whatever its size)."""
    table = [["model", "trained on", "test generator", "real acc", "fake acc", "mean acc", "AP", "TPR@5%FPR [95% CI]",
              "n (real/fake)", "real pool"]]
    for (model, train), rs in group(rows, _model, "train_datasets").items():
        for r in rs:
            table.append([model, train, r["test_dataset"], _f(r.get("accuracy_real")), _f(r.get("accuracy_fake")),
                          _f(r.get("balanced_accuracy")), _f(r.get("average_precision")), _ci(r, "tpr_at_fpr_5"),
                          f"{int(r.get('n_real', 0))}/{int(r.get('n_fake', 0))}", r.get("reals_pool") or ""])
        mean = {k: float(np.nanmean([r.get(k, math.nan) for r in rs])) if rs else math.nan
                for k in ("accuracy_real", "accuracy_fake", "balanced_accuracy", "average_precision", "tpr_at_fpr_5")}
        table.append([model, train, f"mean of {len(rs)} generators", *(_f(mean[k]) for k in mean),
                      f"{int(sum(r.get('n', 0) for r in rs))} images", ""])
    return table


def fig_generators(rows, plt, pool: Pooling):
    sel = generator_rows(rows)
    fig = Figure("generators", "Per test generator: TPR at 5% FPR",
                 "Each cross-generator row (a model tested on a generator it was not trained on, no test transform) "
                 "in the field's format. TPR at 5% FPR is the oracle reading: the threshold is set on that test "
                 "set's own reals, as AUC is. The pooled row per model is the unweighted mean over generators.",
                 marks=[("bar", "TPR at 5% FPR of one model on one test generator"),
                        ("black error bar", "95% bootstrap interval over the test images"),
                        ("grey dashed line", "0.05: what a detector with no signal flags at 5% false alarms")])
    if not sel or not _has_points(sel):
        return None, None  # no cross-generator rows, or a table from before operating points: not its figure
    fig.table = generator_table(sel)
    fig.n_text = pool.n_text(sel)
    generators = levels(sel, "test_dataset")
    series = levels(sel, lambda r: f"{_model(r)} [{r['train_datasets']}]")
    g = group(sel, "test_dataset", lambda r: f"{_model(r)} [{r['train_datasets']}]")
    colours = palette(len(series), plt)
    mpl_fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(generators) * max(1, len(series)) + 2), 4))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(generators))
    for i, s in enumerate(series):
        vals = [g.get((gen, s), [None])[0] for gen in generators]
        y = np.array([v["tpr_at_fpr_5"] if v else np.nan for v in vals])
        lo = np.array([v["tpr_at_fpr_5"] - v.get("tpr_at_fpr_5_ci_low", np.nan) if v else np.nan for v in vals])
        hi = np.array([v.get("tpr_at_fpr_5_ci_high", np.nan) - v["tpr_at_fpr_5"] if v else np.nan for v in vals])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, y, width, yerr=[np.nan_to_num(lo), np.nan_to_num(hi)],
               capsize=2, label=s, color=colours[i], error_kw={"elinewidth": 1, "ecolor": "black"}, zorder=2)
    ax.axhline(0.05, color="0.3", linestyle="--", linewidth=1.2, zorder=1)
    ax.set_xticks(x, generators, rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("TPR at 5% FPR (oracle)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, title="model [trained on]", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig, mpl_fig


def laundering_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if laundering_family(str(r.get("test_transform", ""))) is not None]


def fig_laundering(rows, plt, pool: Pooling):
    import warnings

    with warnings.catch_warnings():  # a level whose rows are all NaN (one class missing) is a gap, not noise
        warnings.simplefilter("ignore", RuntimeWarning)
        return _fig_laundering(rows, plt, pool)


def _fig_laundering(rows, plt, pool: Pooling):
    sel = laundering_rows(rows)
    fig = Figure("laundering", "Laundering: AUC and TPR at 5% FPR against severity",
                 "Each line is one model (backbone / reducer / classifier, training set) tested on the same images "
                 "after sharing-style processing of growing severity (severity 0: untouched). A point is the mean "
                 "over the model's test sets; its bar is the mean of their 95% bootstrap intervals (each set's own "
                 "interval, averaged: not a joint interval).",
                 marks=[("line colour", "model [trained on]"), ("panel", "laundering family; top AUC, bottom TPR@5%FPR"),
                        ("error bar", "mean of the per-test-set 95% bootstrap intervals")])
    families = [f for f in LAUNDERING if any(laundering_family(r["test_transform"])[0] == f for r in sel)]
    if not families or not _has_points(sel):
        return None, None  # no laundering sweep in this table (or one from before operating points)
    series = levels(sel, lambda r: f"{_model(r)} [{r['train_datasets']}]")
    colours = palette(len(series), plt)
    mpl_fig, axes = plt.subplots(2, len(families), figsize=(3.4 * len(families) + 2, 6), squeeze=False, sharey="row")
    table = [["model [trained on]", "family", "severity", "transform", "AUC", "TPR@5%FPR", "rows"]]
    for j, fam in enumerate(families):
        for i, s in enumerate(series):
            mine = [r for r in sel if f"{_model(r)} [{r['train_datasets']}]" == s]
            by_level = group([r for r in mine if laundering_family(r["test_transform"])[0] in (fam, "none")],
                             lambda r: laundering_family(r["test_transform"])[1])
            xs = sorted(k[0] for k in by_level)
            for row, metric in ((0, "roc_auc"), (1, "tpr_at_fpr_5")):
                y = [float(np.nanmean([r[metric] for r in by_level[(x,)]])) for x in xs]
                lo = [float(np.nanmean([r.get(f"{metric}_ci_low", np.nan) for r in by_level[(x,)]])) for x in xs]
                hi = [float(np.nanmean([r.get(f"{metric}_ci_high", np.nan) for r in by_level[(x,)]])) for x in xs]
                err = [np.nan_to_num(np.subtract(y, lo)), np.nan_to_num(np.subtract(hi, y))]
                axes[row][j].errorbar(xs, y, yerr=err, marker="o", capsize=2, color=colours[i], label=s)
            for x in xs:
                rs = by_level[(x,)]
                table.append([s, fam, str(x), rs[0]["test_transform"],
                              _f(float(np.nanmean([r["roc_auc"] for r in rs]))),
                              _f(float(np.nanmean([r["tpr_at_fpr_5"] for r in rs]))), str(len(rs))])
        specs = ["none", *LAUNDERING[fam]]
        for row in (0, 1):
            axes[row][j].set_xticks(range(len(specs)), specs, rotation=35, ha="right", fontsize=7)
            axes[row][j].set_ylim(0, 1.05)
            axes[row][j].grid(alpha=0.3)
        axes[0][j].set_title(fam, fontsize=9)
    axes[0][0].set_ylabel("ROC AUC")
    axes[1][0].set_ylabel("TPR at 5% FPR (oracle)")
    axes[0][-1].legend(fontsize=7, title="model [trained on]", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.table = table
    fig.n_text = pool.n_text(sel)
    return fig, mpl_fig
