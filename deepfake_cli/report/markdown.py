"""report.md: the Document as Markdown, figures linked from figures/. Every table cell, name and path goes
through fileio's Markdown helpers: a name can neither add a column nor bring HTML."""

from __future__ import annotations

from deepfake_cli.safety.fileio import md_code, md_fence, md_table, md_text
from deepfake_cli.report.document import BEST_CELLS_NOTE, PER_TEST_SET_NOTE, TITLE, Document


def markdown_report(doc: Document) -> str:
    md = [f"# {TITLE}", "",
          f"Generated {doc.generated} from {md_code(doc.results_csv)} ({doc.summary}). The same report with the "
          "figures embedded, in one file: [report.html](report.html).", "",
          f"**How accuracies are pooled.** {doc.method}", ""]
    if doc.scores_note:
        md += [_scores_note(doc), ""]
    md += ["## Overall", "", md_text(doc.overall), "", PER_TEST_SET_NOTE, "", md_table(doc.per_test_set), "",
           "### Best cells", "", BEST_CELLS_NOTE, "", md_table(doc.best_cells), ""]
    for i, f in enumerate(doc.drawn, 1):
        # captions name the test sets (n_text): their names are text, never markup
        marks = md_text("; ".join(f"{mark}: {meaning}" for mark, meaning in f.marks))
        md += [f"## {i}. {f.title}", "", f"![{f.title}](figures/{f.name}.png)", "",
               f"*Figure {i}.* {md_text(f.caption)} {md_text(f.n_text)}. Vector version: "
               f"[figures/{f.name}.svg](figures/{f.name}.svg).", "", f"Legend: {marks}.", "", md_table(f.table), ""]
    if doc.skipped:
        md += ["## Figures not drawn", ""]
        md += [f"- **{f.title}**: skipped, {md_text(f.skipped)}" for f in doc.skipped] + [""]
    if doc.config_text is not None:
        md += ["## Configuration", "", f"From {md_code(doc.config_path)}:", "", md_fence(doc.config_text, "toml"), ""]
    md += ["## Versions", "", md_table(doc.versions), ""]
    return "\n".join(md)


def _scores_note(doc: Document) -> str:
    # the note quotes a path of the user's in backticks: quote it as a code span that no name can end
    head, quoted, tail = doc.scores_note.partition(f"`{doc.scores_where}`")
    if not quoted:
        return md_text(doc.scores_note)
    return md_text(head) + md_code(doc.scores_where) + md_text(tail)
