"""Write docs/API.md from the docstrings of `deepfake_cli.api`: `python docs/make_api_md.py`.

tests/test_api.py checks that docs/API.md is what this script writes (so the reference never drifts
from the code) and runs every example in it.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "API.md"
FUNCTIONS = ["extract", "reduce", "train", "evaluate", "predict", "explain", "audit", "read_features", "load_model", "embed",
             "list_backbones", "list_classifiers", "list_reducers"]
CLASSES = {"Detector": ["score", "predict_proba", "predict", "p_fake_from_features"], "Scores": [],
           "Evaluation": ["matrix"]}


def _annotation(a) -> str:
    if a is inspect.Parameter.empty:
        return ""
    text = a if isinstance(a, str) else getattr(a, "__name__", str(a))
    return text.strip("'\"")


def signature(name: str, obj, method: bool = False) -> str:
    """`def name(arg: type = default, ...) -> type`, one argument per line when long."""
    sig = inspect.signature(obj)
    parts, star = [], False
    for p in sig.parameters.values():
        if method and p.name == "self":
            continue
        if p.kind == p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = p.name
        ann = _annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}" if ann else f"={p.default!r}"
        parts.append(text)
    ret = _annotation(sig.return_annotation)
    head = f"{name}("
    one = head + ", ".join(parts) + ")" + (f" -> {ret}" if ret else "")
    if len(one) <= 100:
        return one
    return head + "\n" + "".join(f"    {p},\n" for p in parts) + ")" + (f" -> {ret}" if ret else "")


def markdown(doc: str) -> str:
    """A numpydoc docstring as markdown: sections in bold, parameters as a list, examples as code."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    i = 0
    section = ""
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"-{3,}", nxt.strip()):  # a section header
            section = line.strip()
            out += ["", f"**{section}**", ""]
            i += 2
            continue
        if line.lstrip().startswith(">>>"):  # an example: the doctest lines and their expected output
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i].strip() if lines[i].lstrip().startswith((">>>", "...")) else lines[i].strip())
                i += 1
            out += ["```python", *block, "```"]
            continue
        if section in ("Parameters", "Returns", "Attributes") and line.strip() and not line.startswith(" "):
            m = re.match(r"^(.+?)\s+:\s*(.*)$", line)
            name, kind = (m.group(1), m.group(2)) if m else (line, "")
            desc = []
            i += 1
            while i < len(lines) and lines[i].startswith(" "):
                desc.append(lines[i].strip())
                i += 1
            names = ", ".join(f"`{n.strip()}`" for n in name.split(",") if n.strip())
            out.append(f"- {names}" + (f" ({kind.strip()})" if kind.strip() else "") + (": " + " ".join(desc) if desc else ""))
            continue
        if line.startswith("    ") and section == "":  # an indented code block in prose
            block = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["```python", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from deepfake_cli import api

    parts = ["# Python API", "",
             "<!-- Generated from the docstrings of deepfake_cli/api.py by `python docs/make_api_md.py`; "
             "tests/test_api.py checks that this file is in step and runs every example. -->", "",
             markdown(api.__doc__), "## Contents", ""]
    parts += [f"- [`dfc.{n}`](#dfc{n.lower()})" for n in FUNCTIONS]
    parts += [f"- [`{n}`](#{n.lower()})" for n in CLASSES]
    parts.append("")
    for name in FUNCTIONS:
        fn = getattr(api, name)
        parts += [f"## dfc.{name}", "", "```python", signature(f"dfc.{name}", fn), "```", "", markdown(fn.__doc__)]
    for cls_name, methods in CLASSES.items():
        cls = getattr(api, cls_name)
        parts += [f"## {cls_name}", "", markdown(cls.__doc__)]
        for m in methods:
            meth = getattr(cls, m)
            parts += [f"### {cls_name}.{m}", "", "```python", signature(m, meth, method=True), "```", "",
                      markdown(meth.__doc__)]
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
