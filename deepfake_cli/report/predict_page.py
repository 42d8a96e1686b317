"""`predict --html FILE`: one self-contained offline page to browse a predict run.

On top: each model with its threshold, what its verdicts rest on (`PredictResult.evidence_lines`), the
warnings and the accuracy on labelled inputs (`.summary`), as predict prints them. Below: one card per
row (image x model) with a thumbnail, sorted by p_fake (highest first), filtered by label, novelty, true
label (errors only) and model; with `explain_dir` (a folder written by `stages.explain`) each card's map
of the evidence is one click away, with its method and whether it is exact.

Nothing is fetched from anywhere: thumbnails and maps are base64 JPEGs inside the file, styles and the
script are inline, and a Content-Security-Policy lets the page load nothing but its own data URIs and run
nothing but its own script (by hash), so a hostile file name that got past the escaping still could not
run or fetch anything. Every text from the run (paths, evidence lines) reaches the page escaped: in the
HTML through `html.escape`, in the card data as JSON with `<`, `>` and `&` as \\u escapes, and the script
only ever sets it as text (`textContent`), never as markup.

Many rows: the cards are built by the script from a JSON blob, a chunk at a time as the reader scrolls,
so a page of thousands of images opens at once; thumbnails are THUMB_PX on the long side (about 3-6 kB
each as JPEG) and maps MAP_PX, so 1000 images make a page of a few MB (more with maps).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
from html import escape
from pathlib import Path
from typing import Any, Iterable

from deepfake_cli.data.skips import shorten, summary_lines
from deepfake_cli.safety.fileio import atomic_write_text, unguard_cell

THUMB_PX = 128        # thumbnails: long side in pixels
MAP_PX = 320          # maps (overlays) shown on click: long side in pixels
JPEG_QUALITY = 80
MAX_SHOWN_PATH = 400  # characters of a path shown on a card (longer ones keep their start and end)
GENERATOR = "deepfake-cli predict --html"  # in the page's first bytes: how the output guards know the file

CSS = """
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; margin: 0; color: #1b1b1b;
       background: #f4f5f7; line-height: 1.4; }
header { background: #fff; padding: 0.8em 1.4em 0.6em; border-bottom: 1px solid #ddd; }
h1 { font-size: 1.35em; margin: 0.1em 0 0.4em; }
h2 { font-size: 1em; margin: 0.8em 0 0.2em; }
ul.lines { margin: 0.2em 0 0.4em 1.2em; padding: 0; font-size: 0.88em; }
ul.warnings li { color: #7a4a00; }
.models { font-size: 0.95em; }
.models code { background: #eef1f5; padding: 0 0.3em; border-radius: 3px; }
.note { color: #555; font-size: 0.85em; }
details { font-size: 0.88em; margin: 0.3em 0; }
#controls { position: sticky; top: 0; z-index: 2; background: #fafbfc; border-bottom: 1px solid #ddd;
            padding: 0.5em 1.4em; display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center;
            font-size: 0.9em; }
#controls label { white-space: nowrap; }
#controls input[type=search] { width: 14em; }
#count { color: #444; margin-left: auto; }
#cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px;
         padding: 12px 1.4em 2em; }
.card { background: #fff; border: 1px solid #d6d9de; border-radius: 5px; padding: 6px; font-size: 0.8em;
        display: flex; flex-direction: column; gap: 3px; }
.card.error { border: 2px solid #c62828; }
.thumb { width: 100%; height: 140px; display: flex; align-items: center; justify-content: center;
         background: #eceef1; border-radius: 3px; overflow: hidden; }
.thumb img { width: 100%; height: 100%; object-fit: contain; }
.thumb.none { color: #777; font-size: 0.9em; text-align: center; padding: 0 6px; }
.path { font-family: "DejaVu Sans Mono", monospace; font-size: 0.92em; word-break: break-all; color: #333; }
.row { display: flex; justify-content: space-between; gap: 4px; align-items: center; }
.badge { border-radius: 3px; padding: 0 5px; font-weight: bold; color: #fff; }
.badge.fake { background: #c62828; } .badge.real { background: #2e7d32; }
.bar { height: 4px; background: #e3e5e8; border-radius: 2px; position: relative; }
.bar span { position: absolute; left: 0; top: 0; bottom: 0; background: #c62828; border-radius: 2px; }
.bar i { position: absolute; top: -2px; bottom: -2px; width: 2px; background: #222; }
.novel { color: #8a5a00; font-weight: bold; }
.err { color: #c62828; font-weight: bold; }
button.map { font-size: 0.95em; cursor: pointer; }
#more { display: block; margin: 0 auto 2em; font-size: 0.95em; }
#box { position: fixed; inset: 0; background: rgba(0, 0, 0, 0.78); z-index: 5; display: none;
       align-items: center; justify-content: center; }
#box.open { display: flex; }
#box .inner { background: #fff; padding: 12px 14px; border-radius: 6px; max-width: 92vw; max-height: 92vh;
              overflow: auto; font-size: 0.88em; }
#box .pics { display: flex; gap: 10px; flex-wrap: wrap; }
#box .pics img { width: min(42vw, 420px); height: auto; image-rendering: auto; background: #eee; }
#box .path { margin-bottom: 6px; }
"""

# The page's script: builds the cards from the JSON blob with textContent/setAttribute only (never
# innerHTML), keeps the filters in the URL's #fragment (so a view can be linked, and a headless browser
# can open one), and renders CHUNK cards at a time.
SCRIPT = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var CHUNK = 150;
  var ctl = {
    label: document.getElementById("f-label"), novel: document.getElementById("f-novel"),
    truth: document.getElementById("f-truth"), model: document.getElementById("f-model"),
    q: document.getElementById("f-q"), sort: document.getElementById("f-sort"),
    maps: document.getElementById("f-maps")
  };
  var cards = document.getElementById("cards"), more = document.getElementById("more");
  var count = document.getElementById("count");
  var shown = [], done = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(x, d) { return (x === null || x === undefined) ? "n/a" : Number(x).toFixed(d); }

  function readHash() {
    var h = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("=");
      var k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i));
      h[k] = i < 0 ? "1" : decodeURIComponent(kv.slice(i + 1).replace(/\+/g, " "));
    });
    Object.keys(ctl).forEach(function (k) {
      if (!ctl[k]) return;
      if (ctl[k].type === "checkbox") { ctl[k].checked = h[k] === "1"; return; }
      var v = h[k] === undefined ? (k === "sort" ? "p_desc" : "") : h[k];
      if (ctl[k].tagName === "SELECT" && !Array.prototype.some.call(ctl[k].options, function (o) {
        return o.value === v; })) v = ctl[k].options[0].value;
      ctl[k].value = v;
    });
    return h;
  }
  function writeHash() {
    var parts = [];
    Object.keys(ctl).forEach(function (k) {
      var c = ctl[k];
      if (c && c.type === "checkbox") { if (c.checked) parts.push(k + "=1"); return; }
      if (c && c.value && !(k === "sort" && c.value === "p_desc"))
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(c.value));
    });
    var h = parts.length ? "#" + parts.join("&") : " ";
    try {  // a page opened from disk may refuse; the view then just is not in the address
      history.replaceState(null, "", h === " " ? location.pathname + location.search : h);
    } catch (e) { /* ignored */ }
  }

  function keep(r) {
    var v = ctl.label.value;
    if (v && r.label !== v) return false;
    v = ctl.novel.value;
    if (v === "novel" && !(r.novelty !== null && r.novelty > 1)) return false;
    if (v === "familiar" && !(r.novelty !== null && r.novelty <= 1)) return false;
    if (v === "unknown" && r.novelty !== null) return false;
    if (ctl.truth) {
      v = ctl.truth.value;
      if ((v === "real" || v === "fake") && r.true_label !== v) return false;
      if (v === "errors" && !(r.true_label && r.true_label !== r.label)) return false;
      if (v === "correct" && !(r.true_label && r.true_label === r.label)) return false;
      if (v === "unlabelled" && r.true_label) return false;
    }
    if (ctl.model && ctl.model.value && D.models[r.model] !== ctl.model.value) return false;
    v = ctl.q.value.toLowerCase();
    if (v && r.shown.toLowerCase().indexOf(v) < 0) return false;
    return true;
  }
  function sorter() {
    var s = ctl.sort.value;
    if (s === "p_asc") return function (a, b) { return a.p_fake - b.p_fake || a.i - b.i; };
    if (s === "novelty") return function (a, b) {
      return (b.novelty === null ? -1 : b.novelty) - (a.novelty === null ? -1 : a.novelty) || a.i - b.i; };
    if (s === "path") return function (a, b) { return a.shown < b.shown ? -1 : a.shown > b.shown ? 1 : a.i - b.i; };
    return function (a, b) { return a.i - b.i; };  // rows come sorted by p_fake, highest first
  }

  function card(r) {
    var c = el("div", "card");
    var wrong = r.true_label && r.true_label !== r.label;
    if (wrong) c.classList.add("error");
    c.setAttribute("data-label", r.label);
    c.setAttribute("data-p", String(r.p_fake));
    c.setAttribute("data-path", r.shown);
    var t = D.thumbs[r.thumb];
    var inPlace = ctl.maps && ctl.maps.checked && r.map !== null;  // the map instead of the image
    if (inPlace) t = D.maps[r.map].overlay;
    var th;
    if (t) {
      th = el("div", "thumb");
      var img = el("img");
      img.src = "data:image/jpeg;base64," + t;
      img.alt = "";
      img.loading = "lazy";
      th.appendChild(img);
    } else {
      th = el("div", "thumb none", "no preview" + (D.no_thumb[r.thumb] ? ": " + D.no_thumb[r.thumb] : ""));
    }
    c.appendChild(th);
    c.appendChild(el("div", "path", r.shown));
    var row = el("div", "row");
    var b = el("span", "badge " + r.label, r.label);
    row.appendChild(b);
    row.appendChild(el("span", "", "p_fake " + fmt(r.p_fake, 3)));
    c.appendChild(row);
    var bar = el("div", "bar");
    var fill = el("span");
    fill.style.width = Math.max(0, Math.min(100, r.p_fake * 100)).toFixed(1) + "%";
    var mark = el("i");
    mark.style.left = Math.max(0, Math.min(100, r.threshold * 100)).toFixed(1) + "%";
    mark.title = "threshold " + fmt(r.threshold, 3);
    bar.appendChild(fill);
    bar.appendChild(mark);
    c.appendChild(bar);
    row = el("div", "row");
    var novel = r.novelty !== null && r.novelty > 1;
    var nov = el("span", novel ? "novel" : "", "novelty " +
                 fmt(r.novelty, r.novelty > 0.99 && r.novelty < 1.01 ? 3 : 2) + (novel ? " (novel)" : ""));
    row.appendChild(nov);
    if (D.models.length > 1) row.appendChild(el("span", "", D.models[r.model]));
    c.appendChild(row);
    if (r.true_label) {
      c.appendChild(el("div", wrong ? "err" : "",
                       "true label " + r.true_label + (wrong ? " \u2717 error" : " \u2713")));
    }
    if (r.map !== null && r.map !== undefined) {
      var m = D.maps[r.map];
      var btn = el("button", "map", "map (" + m.method + ", " + (m.exact ? "exact" : "approximation") + ")");
      btn.type = "button";
      btn.addEventListener("click", function () { openBox(r); });
      c.appendChild(btn);
    }
    return c;
  }

  function renderMore() {
    var end = Math.min(shown.length, done + CHUNK);
    var frag = document.createDocumentFragment();
    for (; done < end; done++) frag.appendChild(card(shown[done]));
    cards.appendChild(frag);
    more.style.display = done < shown.length ? "block" : "none";
    more.textContent = "show " + Math.min(CHUNK, shown.length - done) + " more (" + (shown.length - done) + " left)";
  }
  function render() {
    shown = D.rows.filter(keep).sort(sorter());
    done = 0;
    cards.textContent = "";
    count.textContent = "showing " + shown.length + " of " + D.rows.length;
    renderMore();
  }

  var box = document.getElementById("box");
  function openBox(r) {
    var m = D.maps[r.map];
    var inner = box.querySelector(".inner");
    inner.textContent = "";
    inner.appendChild(el("div", "path", r.shown));
    inner.appendChild(el("div", "", D.models[r.model] + ": p_fake " + fmt(r.p_fake, 3) + ", " + r.label +
      "; map by " + m.method + " (" + (m.exact ? "exact" : "approximation") + "), " + fmt(m.seconds, 2) + " s"));
    if (D.map_note) inner.appendChild(el("div", "note", D.map_note));
    var pics = el("div", "pics");
    if (D.thumbs[r.thumb]) {
      var a = el("img"); a.src = "data:image/jpeg;base64," + D.thumbs[r.thumb]; a.alt = "image"; pics.appendChild(a);
    }
    var o = el("img"); o.src = "data:image/jpeg;base64," + m.overlay; o.alt = "map"; pics.appendChild(o);
    inner.appendChild(pics);
    inner.appendChild(el("div", "note", "Red: evidence for fake; blue: for real; grey: pixels the model never " +
      "saw. Click or press Esc to close."));
    box.classList.add("open");
  }
  box.addEventListener("click", function () { box.classList.remove("open"); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") box.classList.remove("open"); });

  Object.keys(ctl).forEach(function (k) {
    if (ctl[k]) ctl[k].addEventListener(k === "q" ? "input" : "change", function () { writeHash(); render(); });
  });
  function showFromHash(h) {  // #show=I opens the map of row I (0: the highest p_fake): a map can be linked
    var r = D.rows[parseInt(h.show, 10)];
    if (r && r.map !== null && r.map !== undefined) openBox(r);
  }
  window.addEventListener("hashchange", function () { var h = readHash(); render(); showFromHash(h); });
  more.addEventListener("click", renderMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (es) {
      if (es.some(function (e) { return e.isIntersecting; }) && done < shown.length) renderMore();
    }, {rootMargin: "600px"}).observe(more);
  }
  var h0 = readHash();
  render();
  showFromHash(h0);
})();
"""


# ------------------------------------------------------------------------------------------ images

class _Pixels:
    """Reads a row's image the way predict read it: through the items `collect_images` makes of the run's
    inputs (a tar member, a Parquet row and an in-memory image included), else from the row's path alone
    (a plain file, or the member of the shard or list file its path starts with)."""

    def __init__(self, inputs: Any = None):
        self.items: dict[str, Any] = {}
        self.containers: set[str] = set()
        if inputs is not None:
            self._add(inputs)

    def _add(self, inputs: Any) -> None:
        from deepfake_cli.inference.memory import collect_images

        try:
            items, _ = collect_images(inputs)
        except Exception:  # noqa: BLE001 -- the inputs changed since predict read them: those rows get placeholders
            return
        for it in items:
            self.items.setdefault(it.rel, it)

    def item(self, rel: str):
        if rel in self.items:
            return self.items[rel]
        from deepfake_cli.data import ImageItem

        if os.path.isfile(rel):
            return ImageItem(Path(rel), rel, -1)
        parts = rel.split("/")
        for k in range(len(parts) - 1, 0, -1):  # `<shard>.tar/<member>`: the longest prefix that is a file
            prefix = "/".join(parts[:k])
            if prefix and prefix not in self.containers and os.path.isfile(prefix):
                self.containers.add(prefix)
                self._add([prefix])
                return self.items.get(rel)
        return None

    def thumbnail(self, rel: str, px: int) -> tuple[str | None, str]:
        """(base64 JPEG of the image at most `px` on the long side, "") or (None, why there is none)."""
        it = self.item(rel)
        if it is None:
            return None, "not found"
        try:
            img = _decode_small(it, px)
            return _jpeg_b64(img, px), ""
        except Exception as exc:  # noqa: BLE001 -- a page never fails over one picture: a placeholder says why
            reason = getattr(exc, "reason", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
            return None, shorten(reason, 80)


def _decode_small(item, px: int):
    """The item decoded as `data.decode_image` decodes it (size rule, EXIF orientation, `to_rgb`), letting
    the JPEG decoder skip to a smaller scale first: a thumbnail needs no full-size decode."""
    from PIL import ImageOps

    from deepfake_cli.data import ImageItem, item_bytes, open_image, to_rgb

    if not isinstance(item, ImageItem):  # an image in memory (inference.memory.MemoryImage)
        return item.read()[0]
    img = open_image(io.BytesIO(item_bytes(item)))
    img.draft("RGB", (2 * px, 2 * px))  # JPEG only (a no-op elsewhere): at least twice the thumbnail's size
    img.load()
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 -- as decode_image: a broken EXIF block keeps the image
        pass
    return to_rgb(img)


def _jpeg_b64(img, px: int) -> str:
    from PIL import Image

    img = img.convert("RGB")
    img.thumbnail((px, px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------------------- maps

def read_maps(explain_dir, px: int = MAP_PX) -> tuple[dict, list[dict], str]:
    """The maps of a folder written by `stages.explain`: ({(path, model): map index}, maps, method note).

    Each map: overlay (base64 JPEG, at most `px` on the long side), method, exact, seconds. An index row
    whose overlay is missing, unreadable or outside the folder is left out (that card has no map)."""
    from deepfake_cli.data import open_image

    folder = Path(explain_dir)
    note = ""
    try:
        meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
        note = str(meta.get("method_note") or "") if isinstance(meta, dict) else ""
    except (OSError, ValueError):
        pass
    keys: dict = {}
    maps: list[dict] = []
    try:
        with open(folder / "index.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return keys, maps, note
    root = folder.resolve()
    for r in rows:
        path, model, overlay = (unguard_cell(r.get(k) or "") for k in ("path", "model", "overlay"))
        file = (folder / overlay).resolve()
        if not overlay or not file.is_relative_to(root) or not file.is_file():
            continue
        try:
            with open_image(str(file)) as img:
                img.load()
                b64 = _jpeg_b64(img.convert("RGB"), px)
        except Exception:  # noqa: BLE001 -- one bad overlay leaves its card without a map, not the page
            continue
        try:
            seconds = float(r.get("seconds") or "nan")
        except ValueError:
            seconds = math.nan
        keys[(path, model)] = len(maps)
        keys.setdefault((path, None), len(maps))  # for rows whose model the index names otherwise
        maps.append({"overlay": b64, "method": str(r.get("method") or "?"),
                     "exact": str(r.get("exact", "")).strip().lower() in ("true", "1", "yes"),
                     "seconds": seconds if math.isfinite(seconds) else None})
    return keys, maps, note


# ------------------------------------------------------------------------------------------- page

def _clean(text: Any) -> str:
    """Text that encodes as UTF-8 (a file name's undecodable bytes shown as \\udcXX escapes)."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _json_for_script(obj: Any) -> str:
    """JSON that can sit inside <script type="application/json">: no '<' (no `</script>` nor `<!--`), no
    '>' or '&', and ASCII only (a lone surrogate from a file name stays an escape, U+2028 cannot break it)."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _lines(items: Iterable[str], cls: str = "lines") -> str:
    items = [i for i in items if str(i).strip()]
    if not items:
        return ""
    return f'<ul class="{cls}">' + "".join(f"<li>{escape(_clean(i))}</li>" for i in items) + "</ul>"


def _select(ident: str, label: str, options: list[tuple[str, str]]) -> str:
    opts = "".join(f'<option value="{escape(v)}">{escape(_clean(t))}</option>' for v, t in options)
    return f'<label>{escape(label)} <select id="{ident}">{opts}</select></label>'


def build_page(rows: list[dict], *, evidence_lines: Iterable[str] = (), warnings: Iterable[str] = (),
               summary: Iterable[str] = (), explain_dir=None, inputs: Any = None, skipped: Iterable[dict] = (),
               notes: Iterable[str] = (), title: str | None = None, thumb_px: int = THUMB_PX,
               map_px: int = MAP_PX) -> str:
    """The page's HTML text (see `write_predict_page`)."""
    def key(r: dict) -> tuple:
        p = _num(r.get("p_fake"))
        return (-p if p is not None else math.inf,)

    rows = sorted(rows, key=key)  # stable: equal p_fake keeps predict's order
    models: list[str] = []
    thresholds: dict[str, float | None] = {}
    for r in rows:
        m = _clean(r.get("model", ""))
        if m not in thresholds:
            models.append(m)
            thresholds[m] = _num(r.get("threshold"))

    pixels = _Pixels(inputs)
    thumb_of: dict[str, int] = {}
    thumbs: list[str | None] = []
    no_thumb: list[str] = []
    map_keys, maps, method_note = read_maps(explain_dir, map_px) if explain_dir is not None else ({}, [], "")
    data_rows = []
    for i, r in enumerate(rows):
        rel = str(r.get("path", ""))
        if rel not in thumb_of:
            thumb_of[rel] = len(thumbs)
            b64, why = pixels.thumbnail(rel, thumb_px)
            thumbs.append(b64)
            no_thumb.append(_clean(why))
        m = _clean(r.get("model", ""))
        mi = map_keys.get((rel, str(r.get("model", ""))), map_keys.get((rel, None)))
        label = "fake" if str(r.get("label")) == "fake" else "real"
        truth = str(r.get("true_label") or "")
        data_rows.append({
            "i": i, "shown": _clean(shorten(rel, MAX_SHOWN_PATH)), "p_fake": _num(r.get("p_fake")),
            "label": label, "model": models.index(m), "threshold": _num(r.get("threshold")),
            "score": _num(r.get("score")), "novelty": _num(r.get("novelty")),
            "true_label": truth if truth in ("real", "fake") else "", "thumb": thumb_of[rel], "map": mi})
    data = {"rows": data_rows, "models": models, "thumbs": thumbs, "no_thumb": no_thumb, "maps": maps,
            "map_note": _clean(method_note)}

    n_images = len(thumb_of)
    labelled = any(d["true_label"] for d in data_rows)
    no_novelty = any(d["novelty"] is None for d in data_rows)
    fake = sum(d["label"] == "fake" for d in data_rows)
    e = escape
    head_title = title or f"Predictions: {n_images} image(s)"
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    # nothing loads from anywhere (data: images only); no script runs but the page's own (by its hash)
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; "
           "base-uri 'none'; form-action 'none'")
    models_html = "; ".join(
        f"<code>{e(m)}</code> threshold {e('n/a' if thresholds[m] is None else f'{thresholds[m]:.3f}')}"
        for m in models) or "none"
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f'<meta name="generator" content="{e(GENERATOR)}">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(_clean(head_title))}</title>", f"<style>{CSS}</style>", "</head>", "<body>", "<header>",
        f"<h1>{e(_clean(head_title))}</h1>",
        f'<div class="models">Model{"s" if len(models) > 1 else ""}: {models_html}. '
        f"{len(data_rows)} row(s): {fake} labelled fake, {len(data_rows) - fake} real.</div>",
        '<p class="note">p_fake: the calibrated probability that the image is generated; label: fake when p_fake '
        "reaches the model's threshold (the black tick on each bar); novelty: distance to the training images "
        "over their 99th percentile (over 1: unlike anything the model was trained on, so its verdict is less "
        "trustworthy).</p>",
    ]
    if evidence_lines:
        parts += ["<h2>What the verdicts rest on</h2>", _lines(evidence_lines)]
    if warnings:
        parts += ["<h2>Warnings</h2>", _lines(warnings, "lines warnings")]
    if summary:
        parts += ["<h2>Accuracy on the labelled inputs</h2>", _lines(summary)]
    if notes:
        parts += ["<h2>Notes</h2>", _lines(notes)]
    if explain_dir is not None:
        secs = [m["seconds"] for m in maps if m["seconds"] is not None]
        cost = f", {sum(secs) / len(secs):.2f} s per image" if secs else ""
        what = (f"{len(maps)} map(s) from <code>{e(_clean(explain_dir))}</code>{cost}"
                + (f": {e(_clean(method_note).rstrip('. '))}" if method_note else ""))
        parts.append(f'<p class="note">Evidence maps: {what}. A card\'s map button shows its map (red: evidence '
                     "for fake, blue: for real, grey: pixels the model never saw).</p>")
    skipped = list(skipped)
    if skipped:
        parts += [f"<details><summary>{len(skipped)} image(s) skipped (not scored)</summary>",
                  _lines(summary_lines(skipped)), "</details>"]
    parts.append("</header>")

    controls = [_select("f-label", "label", [("", "all"), ("fake", "fake"), ("real", "real")]),
                _select("f-novel", "novelty", [("", "all"), ("novel", "novel only (> 1)"),
                                               ("familiar", "familiar only (<= 1)")]
                        + ([("unknown", "no novelty (model without a reference)")] if no_novelty else []))]
    if labelled:
        controls.append(_select("f-truth", "true label", [
            ("", "all"), ("errors", "errors only (true label differs)"), ("correct", "correct only"),
            ("real", "real"), ("fake", "fake"), ("unlabelled", "unlabelled")]))
    if len(models) > 1:
        controls.append(_select("f-model", "model", [("", "all")] + [(m, m) for m in models]))
    controls.append('<label>path <input type="search" id="f-q" placeholder="contains..."></label>')
    if maps:
        controls.append('<label><input type="checkbox" id="f-maps"> maps in place of the images</label>')
    controls.append(_select("f-sort", "sort", [("p_desc", "p_fake, highest first"), ("p_asc", "p_fake, lowest first"),
                                               ("novelty", "novelty, highest first"), ("path", "path")]))
    parts += ['<div id="controls">', *controls, '<span id="count"></span>', "</div>",
              "<noscript><p>The cards are drawn by this page's script; with JavaScript off, read the same rows in "
              "predict's CSV output.</p></noscript>",
              '<main id="cards"></main>', '<button id="more" type="button">show more</button>',
              '<div id="box"><div class="inner"></div></div>',
              f'<script type="application/json" id="data">{_json_for_script(data)}</script>',
              f"<script>{SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(p for p in parts if p)


def write_predict_page(path, rows: list[dict], *, evidence_lines: Iterable[str] = (), warnings: Iterable[str] = (),
                       summary: Iterable[str] = (), explain_dir=None, inputs: Any = None,
                       skipped: Iterable[dict] = (), notes: Iterable[str] = (), title: str | None = None,
                       thumb_px: int = THUMB_PX, map_px: int = MAP_PX) -> Path:
    """Write the page of a predict run to `path` (atomically); returns the path.

    rows            `PredictResult.rows` (path, p_fake, label, model, threshold, score, novelty[, true_label])
    evidence_lines, warnings, summary, notes, skipped
                    the rest of the `PredictResult`, shown on top as predict prints it
    explain_dir     a folder written by `stages.explain` (index.csv, overlays): each card gets its map
    inputs          what predict was given (paths, in-memory images): thumbnails are read through the same
                    items; without it, from each row's path (a plain file, or a member of the .tar shard
                    its path starts with). An image that cannot be read gets a placeholder, never an error.
    """
    text = build_page(list(rows), evidence_lines=list(evidence_lines), warnings=list(warnings),
                      summary=list(summary), explain_dir=explain_dir, inputs=inputs, skipped=skipped,
                      notes=list(notes), title=title, thumb_px=thumb_px, map_px=map_px)
    return atomic_write_text(path, text)
