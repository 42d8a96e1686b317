"""`deepfake study`, `deepfake report` and `deepfake audit`: grid runs, figures, shortcut audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from deepfake_cli.cli.common import QUIET, console, echo, err_console, heartbeat, make_progress, print_json, safe, \
    typer_command
from deepfake_cli.cli.extract_cmds import SOURCES_HELP
from deepfake_cli.options import AuditOptions, ReportOptions, StudyOptions, values


def default_study_out(config: Path) -> Path:
    """`study CONFIG` without --out: a folder named after the config in the current folder
    (`examples/study.toml` -> `./study/`)."""
    return Path.cwd() / Path(config).stem


@typer_command(o=AuditOptions)
def audit_cmd(
    datasets: Annotated[list[str], typer.Argument(
        metavar="[NAME=]PATH...",
        help=f"Datasets, optionally named NAME=PATH: {SOURCES_HELP}")],
    *,
    o: AuditOptions,
    top: Annotated[int, typer.Option("--top", min=1, help="How many single cues to list per dataset.")] = 3,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object per dataset, one per line.")] = False,
) -> None:
    """Shortcut audit: can file metadata alone (no pixels) tell real from fake?

    Header fields only: format, JPEG tables, size, EXIF, file size, mode. A depth-4 decision tree on those header fields is cross-validated (stratified, seeded). A dataset
    is FLAGGED when the 95% Wilson lower bound of its accuracy exceeds max(0.6, chance + 0.1):
    a detector trained on it can score high without learning anything about generation.

    With --model, also where that model finds its evidence (evidence maps, as `deepfake explain` makes them):
    for fake in each dataset's fake images, for real in its real images; the share in the outer 10% border
    (0.36 if spread evenly) and how
    often the peak sits in the same place (a quarter of the width by a quarter of the height); it warns
    when the border share exceeds 0.6 or one place other than the centre holds the peak of more than half
    the images: a watermark or a border, not a generator trace.
    """
    from deepfake_cli import api
    from deepfake_cli.safety.fileio import to_json

    with heartbeat("audit", disable=quiet or json_out):  # one long step: the elapsed time shows it is alive
        results = api.audit(datasets, **values(o))
    if json_out:
        for r in results:
            echo(to_json(r.to_dict()) + "\n")
        return
    console.print(_audit_table(results, o.align, top))
    for r in results:
        if r.skipped:
            err_console.print(f"[yellow]{escape(r.dataset)}: skipped {len(r.skipped)} unreadable file(s)[/], e.g. "
                              f"{escape(r.skipped[0]['path'])}: {escape(r.skipped[0]['reason'])}", highlight=False)
        if r.flagged:
            console.print(_shortcut_warning(r))
        for line in r.evidence_lines:
            console.print(escape(line), highlight=False)
        for w in r.evidence_warnings:
            console.print(f"[bold red]WARNING:[/] {escape(w)}", highlight=False)
    if not quiet:
        console.print(f"[dim]Rule: {results[0].rule}.[/]" if results else "", highlight=False)
        rules = [r.evidence["rule"] for r in results if r.evidence is not None]
        if rules:
            console.print(f"[dim]Evidence rule: {escape(rules[0])}.[/]", highlight=False)


def _audit_table(results, align: str | None, top: int):
    from rich.table import Table

    from deepfake_cli.metrics.stats import format_accuracy

    title = "Shortcut audit: metadata-only classifier (no pixels)"
    if align:
        title += f", images aligned to {align}"
    table = Table(title=title, show_lines=False)
    table.add_column("dataset", overflow="fold")
    table.add_column("real/fake", justify="right")
    table.add_column("metadata accuracy\n[95% CI] n", justify="right")
    table.add_column("chance", justify="right")
    table.add_column("strongest single cues")
    table.add_column("verdict")
    for r in results:
        # Cues no better than chance are noise in this column.
        above = [c for c in r.cues[:top] if c["accuracy"] > r.chance + 0.02]
        cues = "\n".join(f"{c['cue']} {c['accuracy']:.2f}" for c in above) or "[dim]none above chance[/]"
        verdict = "[bold red]FLAGGED[/]" if r.flagged else "[green]ok[/]"
        table.add_row(escape(r.dataset), f"{r.n_real}/{r.n_fake}", format_accuracy(r.metadata_accuracy, r.n, r.ci_low, r.ci_high),
                      f"{r.chance:.2f}", cues, verdict)
    return table


def _shortcut_warning(r):
    from rich.panel import Panel

    fmts = ", ".join(f"{cls}: " + ", ".join(f"{k} {v}" for k, v in r.formats[cls].items()) for cls in ("real", "fake"))
    sizes = ", ".join(f"{cls}: " + ", ".join(r.sizes[cls]) for cls in ("real", "fake"))
    best = r.cues[0]
    return Panel(
        f"[bold]{escape(r.dataset)}[/]: real and fake can be told apart from file metadata alone with accuracy "
        f"{r.metadata_accuracy:.3f} (95% CI {r.ci_low:.3f}-{r.ci_high:.3f}, n={r.n}, chance {r.chance:.2f}).\n"
        f"Strongest single cue: {best['cue']} ({best['feature']}), accuracy {best['accuracy']:.3f}.\n"
        f"Formats: {escape(fmts)}.\nMost common sizes: {escape(sizes)}.\n"
        "A detector trained or tested on this set may learn the file container instead of generation "
        "traces. Report results with both classes brought to one size and encoding too: "
        "`deepfake extract ... --align SIZE:QUALITY` (check with `deepfake audit --align SIZE:QUALITY`).",
        title="[bold red]WARNING: shortcut in dataset[/]", border_style="red")


@typer_command(o=StudyOptions)
def study_cmd(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Study TOML (see examples/study.toml).")],
    *,
    o: StudyOptions,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead (no progress bars).")] = False,
) -> None:
    """Run a grid study: backbones x transforms x reducers x classifiers, and zoo models (`zoo` in [grid]),
    within and cross dataset.

    Every finished piece (features, reducers, models, evaluated cells) is cached under --out (default: a
    folder named after CONFIG in the current folder): rerunning the same command resumes and redoes
    nothing that is done."""
    from deepfake_cli.study import run_study
    from deepfake_cli.study.runner import LARGE_GRID

    out = o.out if o.out is not None else default_study_out(config)
    if o.out is None:
        err_console.print(f"study folder: {safe(out)} (named after {safe(config.name)}; --out to choose)",
                          highlight=False)
    with make_progress(console=console, disable=quiet or json_out) as bars:
        s = run_study(config, out, jobs=o.jobs, progress=_study_bars(bars), max_cells=None if o.yes else LARGE_GRID,
                      raw_csv=o.raw_csv)
    if json_out:
        print_json(s)
        return
    console.print(
        f"features: {s.features_extracted} extracted, {s.features_combined} combined, {s.features_reused} reused; "
        f"reducers: {s.reducers_fitted} fitted, {s.reducers_reused} reused; "
        f"cells: {s.cells_trained} trained, {s.cells_evaluated} evaluated, {s.cells_reused} reused "
        f"({s.seconds:.0f} s)", highlight=False)
    console.print(f"{s.n_rows} result rows -> {s.results_csv} and {s.results_json}", highlight=False)
    if s.failures:
        err_console.print(f"[yellow]{len(s.failures)} part(s) of the grid could not run[/] "
                          f"(listed in {s.out / 'failures.json'}); first: {s.failures[0]['what']} "
                          f"{s.failures[0]['key']}: {s.failures[0]['error']}", highlight=False)
    if s.report:
        console.print(f"report -> {s.report} (figures in {s.out / 'figures'})", highlight=False)


def _study_bars(bars):
    """The rich bars behind a study's `StudyProgress`. The class is made here, not at import:
    `deepfake_cli.study` loads the stages (torch, scikit-learn), and `deepfake --help` must not."""
    from deepfake_cli.study.progress import StudyProgress

    class _StudyBars(StudyProgress):
        """One bar per phase of the study, and one for the images of the feature file being extracted."""

        def __init__(self, bars):
            self.bars = bars
            self.tasks: dict[str, object] = {}
            self.image_task = None

        def grid(self, size) -> None:
            # on stderr and also under -q / --json: a run's size is known before its hours start
            err_console.print(size.describe(), highlight=False, markup=False)

        def phase(self, name: str, total: int) -> None:
            self.tasks[name] = self.bars.add_task(name, total=total)

        def unit(self, name: str, label: str) -> None:
            self.bars.update(self.tasks[name], description=f"{name}: {label}")
            if self.image_task is not None:
                self.bars.reset(self.image_task, total=None)  # a new file: its count starts again

        def images(self, done: int, total: int) -> None:
            if self.image_task is None:
                self.image_task = self.bars.add_task("  images", total=total, completed=done)
            else:
                self.bars.update(self.image_task, total=total, completed=done)

        def advance(self, name: str) -> None:
            self.bars.advance(self.tasks[name])

        def phase_done(self, name: str) -> None:
            self.bars.update(self.tasks[name], description=name)
            if self.image_task is not None:
                self.bars.remove_task(self.image_task)
                self.image_task = None

    return _StudyBars(bars)


@typer_command(o=ReportOptions)
def report_cmd(
    results: Annotated[Path, typer.Argument(metavar="RESULTS_CSV", help="results.csv of `study` (or eval.csv of `eval`).")],
    *,
    o: ReportOptions,
    quiet: Annotated[bool, QUIET] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the files written as JSON instead.")] = False,
) -> None:
    """Draw the study figures (PNG and SVG), report.md and a self-contained report.html from a results table.

    Per-image scores kept beside the table (a study's cells/images/, eval's eval_images.csv) add ROC
    curves and score histograms."""
    from deepfake_cli.report import render_report

    with heartbeat("report", disable=quiet or json_out):
        path = render_report(results, o.out, config_path=o.config, overwrite=o.overwrite)
    figures = Path(o.out) / "figures"
    if json_out:
        print_json({"report": str(path), "html": str(path.with_name("report.html")), "figures": str(figures)})
        return
    console.print(f"report -> {safe(path)} and {safe(path.with_name('report.html'))} (figures in {safe(figures)})",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command("study")(study_cmd)
    app.command("report")(report_cmd)
    app.command("audit")(audit_cmd)
