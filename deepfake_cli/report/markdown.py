"""report.md: the Document as Markdown, figures linked from figures/."""

from __future__ import annotations

from deepfake_cli.report.document import BEST_CELLS_NOTE, PER_TEST_SET_NOTE, TITLE, Document


def md_table(table: list[list[str]]) -> str:
    if not table:
        return ""
    head, *body = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def markdown_report(doc: Document) -> str:
    md = [f"# {TITLE}", "",
          f"Generated {doc.generated} from `{doc.results_csv}` ({doc.summary}). The same report with the figures "
          "embedded, in one file: [report.html](report.html).", "",
          f"**How accuracies are pooled.** {doc.method}", ""]
    if doc.scores_note:
        md += [doc.scores_note, ""]
    md += ["## Overall", "", doc.overall, "", PER_TEST_SET_NOTE, "", md_table(doc.per_test_set), "",
           "### Best cells", "", BEST_CELLS_NOTE, "", md_table(doc.best_cells), ""]
    for i, f in enumerate(doc.drawn, 1):
        marks = "; ".join(f"{mark}: {meaning}" for mark, meaning in f.marks)
        md += [f"## {i}. {f.title}", "", f"![{f.title}](figures/{f.name}.png)", "",
               f"*Figure {i}.* {f.caption} {f.n_text}. Vector version: [figures/{f.name}.svg](figures/{f.name}.svg).",
               "", f"Legend: {marks}.", "", md_table(f.table), ""]
    if doc.skipped:
        md += ["## Figures not drawn", ""] + [f"- **{f.title}**: skipped, {f.skipped}" for f in doc.skipped] + [""]
    if doc.config_text is not None:
        md += ["## Configuration", "", f"From `{doc.config_path}`:", "", "```toml", doc.config_text, "```", ""]
    md += ["## Versions", "", md_table(doc.versions), ""]
    return "\n".join(md)
