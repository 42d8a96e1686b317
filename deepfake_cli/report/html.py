"""report.html: the Document as one self-contained page. Figures are embedded as base64 SVG data URIs
(vector, sharp in print), styles are inline, and nothing is fetched from anywhere: the file can be mailed,
archived or opened offline as it is."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from deepfake_cli.report.document import BEST_CELLS_NOTE, PER_TEST_SET_NOTE, TITLE, Document

CSS = """
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1.2em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.7em 0 1.2em; }
th, td { border: 1px solid #c8c8c8; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #efefef; } tr:nth-child(even) td { background: #fafafa; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.4em 0; padding: 0.8em; border: 1px solid #ddd; border-radius: 4px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 0.92em; margin-top: 0.7em; }
figcaption .n { font-weight: bold; }
figcaption ul { margin: 0.3em 0 0 1.2em; padding: 0; }
.note { color: #444; font-size: 0.93em; }
.headline { font-size: 1.1em; padding: 0.5em 0.8em; background: #f3f6fa; border-left: 4px solid #00224e; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
nav ol { columns: 2; }
"""


def data_uri(path: Path) -> str:
    mime = {".svg": "image/svg+xml", ".png": "image/png"}[path.suffix]
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def svg_size(path: Path) -> tuple[int, int] | None:
    """The pixel size of a matplotlib SVG (its width/height are in pt), so the page lays out before the
    images are decoded (links to a figure then land on it)."""
    import re

    head = path.read_text(encoding="utf-8")[:2000]
    w = re.search(r'<svg[^>]*\bwidth="([0-9.]+)pt"', head)
    h = re.search(r'<svg[^>]*\bheight="([0-9.]+)pt"', head)
    if not (w and h):
        return None
    return round(float(w.group(1)) * 4 / 3), round(float(h.group(1)) * 4 / 3)


def _table(table: list[list[str]]) -> str:
    if not table:
        return ""
    head, *body = table
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in head) + "</tr></thead>", "<tbody>"]
    for row in body:
        cells = []
        for c in row:
            text = str(c)
            cls = ' class="num"' if text[:1].isdigit() or text.startswith("n/a") else ""
            cells.append(f"<td{cls}>{escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def html_report(doc: Document, fig_dir: Path) -> str:
    e = escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(TITLE)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{e(TITLE)}</h1>",
             f'<p class="note">Generated {e(doc.generated)} from <code>{e(str(doc.results_csv))}</code> '
             f"({e(doc.summary)}).</p>",
             f"<p><strong>How accuracies are pooled.</strong> {e(doc.method)}</p>"]
    if doc.scores_note:
        parts.append(f'<p class="note">{e(doc.scores_note)}</p>')
    if doc.drawn:
        parts.append("<nav><strong>Figures</strong><ol>" + "".join(
            f'<li><a href="#fig-{e(f.name)}">{e(f.title)}</a></li>' for f in doc.drawn) + "</ol></nav>")
    parts += ["<h2>Overall</h2>", f'<p class="headline">{e(doc.overall)}</p>',
              f'<p class="note">{e(PER_TEST_SET_NOTE)}</p>', _table(doc.per_test_set),
              "<h3>Best cells</h3>", f'<p class="note">{e(BEST_CELLS_NOTE)}</p>', _table(doc.best_cells)]
    for i, f in enumerate(doc.drawn, 1):
        svg = fig_dir / f"{f.name}.svg"
        cmap = f' data-colormap="{e(f.colormap)}"' if f.colormap else ""
        wh = svg_size(svg)
        size = f' width="{wh[0]}" height="{wh[1]}"' if wh else ""
        marks = "".join(f"<li><em>{e(mark)}</em>: {e(meaning)}</li>" for mark, meaning in f.marks)
        parts += [f'<h2 id="sec-{e(f.name)}">{i}. {e(f.title)}</h2>',
                  f'<figure id="fig-{e(f.name)}" data-figure="{e(f.name)}"{cmap}>',
                  f'<img src="{data_uri(svg)}"{size} alt="{e(f.title)}">',
                  f"<figcaption><strong>Figure {i}. {e(f.title)}.</strong> {e(f.caption)} "
                  f'<span class="n">{e(f.n_text)}.</span>'
                  f"<div><strong>Legend</strong><ul>{marks}</ul></div></figcaption>",
                  "</figure>", _table(f.table)]
    if doc.skipped:
        parts += ["<h2>Figures not drawn</h2>", "<ul>"] + [
            f"<li><strong>{e(f.title)}</strong>: skipped, {e(f.skipped)}</li>" for f in doc.skipped] + ["</ul>"]
    if doc.config_text is not None:
        parts += ["<h2>Configuration</h2>", f"<p>From <code>{e(str(doc.config_path))}</code>:</p>",
                  f"<pre>{e(doc.config_text)}</pre>"]
    parts += ["<h2>Versions</h2>", _table(doc.versions), "</body>", "</html>", ""]
    return "\n".join(parts)
