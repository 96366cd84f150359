"""The QC report of an export, ``OUT/qc/index.html``, rebuilt with the tables from the
manifest records of the whole cohort (:func:`~.tables.summarise`):

* ``qc/v-STEM.png`` for every volume worth a look — flagged (its own QC flags or its ED/ES
  pair's) or among the ``lowest`` of highest ``mean_uncertainty``: up to four slices over
  the middle of the predicted foreground (a heart's mid-ventricular ones), the image in
  grey (1st–99th percentile), the labels alpha-blended in napari's class colours, a legend;
* cardiac cohorts: LV EF against LV EDV (an inline SVG, each point a link to its subject's
  row) and the subjects' table; then the volumes' table (mL per class, EF, flags, mean
  uncertainty). Row ids ``s-STEM`` / ``v-STEM`` (:func:`~.records.qc_anchors`) are the
  targets of the CSVs' ``qc_report`` links; flagged rows are highlighted.

Pillow and numpy only; no JavaScript, nothing fetched at view time. Every name is
HTML-escaped, every file name a ``safe_stem``; files go through
:class:`~napari_weakseg.io.paths.OutputFolder` (atomic, in its ledger): a rerun replaces
what it wrote (keeping a PNG newer than its volume's record) and removes the PNGs it no
longer shows; a file the tool did not write is replaced only with ``force``.
"""

from __future__ import annotations

import functools
import html
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import OutputError
from ...io import read_any, read_labels
from ...io.atomic import atomic_path, write_text_atomic
from ...io.paths import OutputFolder
from ...schema import LabelSchema
from .cohort import ExportItem, safe_name
from .measure import CARDIAC_COLUMNS, EF_RANGE, FRAGMENT_FRACTION
from .records import QC_DIR, QC_INDEX, ExportRecord, qc_anchors, record_path
from .tables import Summary, summarise

TILE, PAD, TITLE, CAPTION, LEGEND_ROW = 192, 8, 20, 16, 18  # montage layout, pixels
MAX_SLICES, ALPHA, BACKDROP, NOTE_KEY = 4, 0.45, (24, 24, 24), "weakseg-note"


def check_qc_output(out: str | os.PathLike, items: Sequence[ExportItem],
                    force: bool = False, *, enabled: bool = True) -> OutputFolder | None:
    """The report's folder, checked before any work: ``OutputError`` when
    ``qc/index.html`` exists and the tool did not write it (unless ``force``)."""
    if not enabled:
        return None
    folder = OutputFolder(out, inputs=[item.path for item in items], force=force)
    try:
        folder.path_for("index", ".html", subfolder=QC_DIR, source=QC_INDEX)
    except OutputError as exc:
        raise OutputError(f"{exc} (or --no-qc-report)") from None
    return folder


# -- the montage -------------------------------------------------------------------------
def class_colours(classes: Sequence[str]) -> np.ndarray:
    """RGB (uint8, one row per class) as napari's label layers draw them."""
    try:
        schema = LabelSchema.from_names(list(classes))
    except ValueError:  # duplicate names: colours by index
        schema = LabelSchema.from_names([f"c{i}" for i in range(max(len(classes), 2))])
    return np.array([[round(255 * v) for v in c.color[:3]] for c in schema.classes], np.uint8)


def pick_slices(labels: np.ndarray, count: int = MAX_SLICES) -> list[int]:
    """Up to ``count`` slices (axis 0) spread over the foreground's extent, its first and
    last left out when there are enough (the whole volume when nothing is predicted)."""
    depth = labels.shape[0]
    found = np.flatnonzero(labels.reshape(depth, -1).any(axis=1))
    lo, hi = (int(found[0]), int(found[-1])) if found.size else (0, depth - 1)
    spots = np.linspace(lo, hi, count + 2)[1:-1] if hi - lo + 1 >= count + 2 else \
        np.linspace(lo, hi, min(count, hi - lo + 1))
    return sorted({int(round(s)) for s in spots})


def crop_box(labels: np.ndarray, slices: Sequence[int]) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` shown: the foreground of ``slices`` (fragments included) with a
    third of its size (10 pixels at least) around it; the whole slice without foreground."""
    found = np.asarray(labels)[list(slices)].any(axis=0)
    if not found.any():
        return 0, found.shape[0], 0, found.shape[1]
    ys, xs = np.flatnonzero(found.any(axis=1)), np.flatnonzero(found.any(axis=0))
    margin = max(10, (max(ys[-1] - ys[0], xs[-1] - xs[0]) + 1) // 3)
    return (int(max(0, ys[0] - margin)), int(min(found.shape[0], ys[-1] + 1 + margin)),
            int(max(0, xs[0] - margin)), int(min(found.shape[1], xs[-1] + 1 + margin)))


def tile_box(index: int, shape_yx: Sequence[int], spacing_yx: Sequence[float]
             ) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` of slice ``index``'s pixels in the montage: centred
    in its TILE × TILE square, in its physical aspect, the longest side TILE."""
    h_mm, w_mm = shape_yx[0] * spacing_yx[0], shape_yx[1] * spacing_yx[1]
    h, w = (max(1, min(TILE, round(v * TILE / max(h_mm, w_mm)))) for v in (h_mm, w_mm))
    return (PAD + index * (TILE + PAD) + (TILE - w) // 2, PAD + TITLE + CAPTION + (TILE - h) // 2,
            w, h)


def nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``array`` (2D) resampled to ``height × width`` by the nearest pixel centre."""
    rows = ((np.arange(height) + 0.5) * array.shape[0] / height).astype(int)
    cols = ((np.arange(width) + 0.5) * array.shape[1] / width).astype(int)
    return array[rows[:, None], cols[None, :]]


@functools.lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=12)
    except (TypeError, OSError, ImportError):  # no FreeType: the bitmap font
        return ImageFont.load_default()


def _ascii(text: str) -> str:
    return str(text).encode("ascii", "replace").decode()


def _legend(classes: Sequence[str], width: int) -> list[tuple[int, int, int]]:
    """``(class, x, row)`` of each legend entry, wrapped at ``width``."""
    places, x, row = [], PAD, 0
    for c in range(1, len(classes)):
        need = 30 + int(_font().getlength(_ascii(classes[c])))
        if x > PAD and x + need > width - PAD:
            x, row = PAD, row + 1
        places.append((c, x, row))
        x += need
    return places


def montage_size(slices: int, classes: Sequence[str]) -> tuple[int, int]:
    """``(width, height)`` of the PNG of ``slices`` slices (room for two at least)."""
    width = max(slices, 2) * (TILE + PAD) + PAD
    rows = max((row for _, _, row in _legend(classes, width)), default=0) + 1
    return width, PAD + TITLE + CAPTION + TILE + PAD + rows * LEGEND_ROW + PAD


def render_montage(image: np.ndarray, labels: np.ndarray, spacing_zyx: Sequence[float],
                   classes: Sequence[str], title: str):
    """The PNG's picture (a PIL image): title, slices (:func:`pick_slices`, cropped to
    :func:`crop_box`) with captions, legend."""
    from PIL import Image, ImageDraw

    slices = pick_slices(labels)
    r0, r1, c0, c1 = crop_box(labels, slices)
    image = np.asarray(image, np.float64)[:, r0:r1, c0:c1]
    labels = np.asarray(labels)[:, r0:r1, c0:c1]
    colours = class_colours(classes)
    width, height = montage_size(len(slices), classes)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw, font = ImageDraw.Draw(canvas), _font()
    draw.text((PAD, PAD + 3), _ascii(title), fill=(0, 0, 0), font=font)
    lo, hi = (float(v) for v in np.percentile(image[slices], [1, 99]))
    for i, z in enumerate(slices):  # grey in the window, labels blended at ALPHA
        x0, y0 = PAD + i * (TILE + PAD), PAD + TITLE + CAPTION
        draw.rectangle((x0, y0, x0 + TILE - 1, y0 + TILE - 1), fill=BACKDROP)
        left, top, w, h = tile_box(i, labels.shape[1:], spacing_zyx[1:])
        grey = np.rint(np.clip((image[z] - lo) / max(hi - lo, 1e-12), 0, 1) * 255)
        grey = Image.fromarray(grey.astype(np.uint8)).resize((w, h), Image.BILINEAR)
        rgb = np.repeat(np.asarray(grey, np.float64)[..., None], 3, axis=2)
        lab = nearest(labels[z], h, w)
        mask = (lab > 0) & (lab < len(colours))
        rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * colours[lab[mask]]
        canvas.paste(Image.fromarray(np.rint(rgb).astype(np.uint8)), (left, top))
        draw.text((x0, y0 - CAPTION + 2), f"z = {z}  (slices 0-{labels.shape[0] - 1})",
                  fill=(60, 60, 60), font=font)
    for c, x, row in _legend(classes, width):
        y = PAD + TITLE + CAPTION + TILE + PAD + row * LEGEND_ROW
        draw.rectangle((x, y + 2, x + 11, y + 13), fill=tuple(int(v) for v in colours[c]),
                       outline=(80, 80, 80))
        draw.text((x + 16, y + 1), _ascii(classes[c]), fill=(0, 0, 0), font=font)
    return canvas


# -- the report --------------------------------------------------------------------------
@dataclass
class _Entry:
    item: ExportItem
    anchor: str
    status: str
    record: ExportRecord | None = None
    flags: list[str] = field(default_factory=list)
    png: str | None = None
    note: str = ""
    rank: int = 0  # among the least confident, from 1 (0: not among them)
    uncertainty: float | None = None


def _entries(items: Sequence[ExportItem], summary: Summary, lowest: int) -> list[_Entry]:
    anchors = qc_anchors((item.name for item in items), "v-")
    entries = []
    for item in items:
        rec = summary.ok.get(item.name) or summary.current.get(item.name)
        status = "ok" if item.name in summary.ok else (
            "failed" if rec is not None and rec.status == "failed" else "pending")
        entry = _Entry(item, anchors[item.name], status, rec if status != "pending" else None)
        if status == "ok":
            entry.uncertainty = rec.measurements.get("mean_uncertainty")
            frame = str(item.tags.get("frame", "")).upper()
            # a raw-output fragment that post-processing removed does not need a look:
            # only fragments of the measured mask count here (as in cardiac.csv)
            outside = rec.measurements.get("measured_outside", {})
            flags = [f for f in rec.measurements.get("qc", [])
                     if not f.startswith("fragmented:") or
                     outside.get(f.partition(":")[2], 1.0) >= FRAGMENT_FRACTION]
            for flag in summary.pair_qc.get(summary.subject_of.get(item.name, ""), []):
                kind, _, where = flag.partition("@")
                if not where or where == frame:
                    flags.append(kind)
            entry.flags = list(dict.fromkeys(flags))
        entries.append(entry)
    ranked = sorted((e for e in entries if e.status == "ok" and e.uncertainty is not None),
                    key=lambda e: (-e.uncertainty, e.item.name))
    for rank, entry in enumerate(ranked[:lowest], start=1):
        entry.rank = rank
    return entries


def _write_png(folder: OutputFolder, out: Path, entry: _Entry, classes: Sequence[str]) -> None:
    from PIL import Image, PngImagePlugin

    target = folder.path_for(entry.anchor, ".png", subfolder=QC_DIR, source=entry.item.name)
    entry.png = target.name
    labels_path = entry.record.labels_path(out)
    manifest = record_path(out, safe_name(entry.item.name))
    try:
        if target.stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in (labels_path,
                                                                             manifest)):
            with Image.open(target) as old:  # drawn after the volume's last export
                entry.note = old.text.get(NOTE_KEY, "")
            return
    except OSError:
        pass
    labels = np.asarray(read_labels(labels_path).data)
    try:
        volume = entry.item.reader() if entry.item.reader else \
            read_any(entry.item.path, allow_4d=False)
        image = np.asarray(volume.data, np.float64)
        if image.shape != labels.shape:
            raise ValueError(f"image {image.shape} and labels {labels.shape} differ")
    except Exception as exc:  # the labels alone, on black
        image = np.zeros(labels.shape)
        entry.note = f"image not shown: {exc}"
    frame = entry.item.tags.get("frame")
    picture = render_montage(image, labels, entry.record.spacing_mm or [1.0] * 3, classes,
                             entry.item.name + (f" ({frame})" if frame else ""))
    info = PngImagePlugin.PngInfo()
    info.add_text(NOTE_KEY, entry.note)
    with atomic_path(target, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", pnginfo=info)
    folder.record(target)


def write_qc_report(out: str | os.PathLike, items: Sequence[ExportItem],
                    records: Mapping[str, ExportRecord | None], classes: Sequence[str],
                    model_id: str, is_current: Callable[[ExportRecord | None], bool], *,
                    lowest: int = 10, force: bool = False) -> Path:
    """Write ``OUT/qc/index.html`` and its PNGs (see the module docstring); ``records`` and
    ``is_current`` as for :func:`~.tables.write_tables`. Returns the index path."""
    out = Path(out)
    folder = check_qc_output(out, items, force)
    summary = summarise(items, records, classes, model_id, is_current)
    entries = _entries(items, summary, lowest)
    for entry in entries:
        if entry.flags or entry.rank:
            try:
                _write_png(folder, out, entry, classes)
            except Exception as exc:  # one bad picture never stops the report
                entry.png, entry.note = None, f"no picture: {type(exc).__name__}: {exc}"
    index = folder.path_for("index", ".html", subfolder=QC_DIR, source=QC_INDEX)
    write_text_atomic(index, _page(out, entries, summary, classes, model_id, lowest))
    folder.record(index)
    shown = {entry.png for entry in entries if entry.png}
    for path in sorted((out / QC_DIR).glob("*.png")):
        if path.name not in shown:
            folder.remove(path)  # only PNGs the tool wrote
    return index


# -- HTML --------------------------------------------------------------------------------
_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin-bottom:1.5em}th{background:#f0f0f0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
td.n{text-align:right}tr.flagged{background:#fff3cd}tr.failed{background:#f8d7da}
tr.pending{color:#888}tr:target,figure:target{outline:3px solid #0b5ed7}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #555;margin:0 4px 0 12px}
figure{display:inline-block;margin:0 1em 1.5em 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #ccc}figcaption{max-width:808px}
svg text{font:12px sans-serif;fill:#333}a:hover .pt{stroke:#000;stroke-width:2}"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


class _Num(str):
    """A number's table cell."""


def _num(value, digits: int = 1) -> _Num:
    return _Num("" if value is None else f"{float(value):.{digits}f}")


def _heading(column: str) -> str:
    for suffix, unit in (("_ml", " (mL)"), ("_pct", " (%)"), ("_g", " (g)")):
        if column.endswith(suffix):
            return column[: -len(suffix)].replace("_", " ") + unit
    return column.replace("_", " ")


def scatter_svg(points: Sequence[tuple[float, float, str, str, bool]]) -> str:
    """LV EF (%) against LV EDV (mL): ``points`` ``(edv, ef, anchor, label, flagged)``;
    the plausible EF band shaded; EF clamped to −50…150 %."""
    width, height, left, right, top, bottom = 560, 340, 56, 16, 14, 44
    edv_max = max(max(p[0] for p in points), 1e-9)
    power = 10 ** math.floor(math.log10(edv_max / 5))
    x_step = next(m * power for m in (1, 2, 5, 10) if m * power >= edv_max / 5)
    x_max = math.ceil(edv_max / x_step) * x_step
    efs = [min(150.0, max(-50.0, p[1])) for p in points]
    y_min, y_max = min(0, math.floor(min(efs) / 10) * 10), max(100, math.ceil(max(efs) / 10) * 10)

    def sx(v):
        return left + v / x_max * (width - left - right)

    def sy(v):
        return height - bottom - (v - y_min) / (y_max - y_min) * (height - top - bottom)

    low, high = EF_RANGE
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="LV EF against LV EDV">'
             f'<rect x="{left}" y="{sy(high):.1f}" width="{width - left - right}" '
             f'height="{sy(low) - sy(high):.1f}" fill="#e8f5e9"/><text x="{width - right - 4}" '
             f'y="{sy(high) + 14:.1f}" text-anchor="end">plausible EF {low:g}–{high:g} %</text>']
    grid = '<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#eee"/>'
    for i in range(int(round(x_max / x_step)) + 1):
        parts.append(grid.format(sx(i * x_step), top, sx(i * x_step), height - bottom)
                     + f'<text x="{sx(i * x_step):.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{i * x_step:g}</text>')
    for v in range(int(y_min), int(y_max) + 1, 10 if y_max - y_min <= 100 else 25):
        parts.append(grid.format(left, sy(v), width - right, sy(v)) + f'<text x="{left - 6}" '
                     f'y="{sy(v) + 4:.1f}" text-anchor="end">{v}</text>')
    parts.append(f'<path d="M{left} {top}V{height - bottom}H{width - right}" fill="none" '
                 f'stroke="#333"/><text x="{(left + width - right) / 2:.0f}" '
                 f'y="{height - 8}" text-anchor="middle">LV end-diastolic volume (mL)</text>'
                 f'<text transform="translate(14 {(top + height - bottom) / 2:.0f}) '
                 f'rotate(-90)" text-anchor="middle">LV ejection fraction (%)</text>')
    for (edv, _, anchor, label, flagged), ef in zip(points, efs):
        parts.append(f'<a href="#{_e(anchor)}"><circle class="pt" stroke="#fff" fill="'
                     f'{"#d62728" if flagged else "#1f77b4"}" cx="{sx(edv):.1f}" '
                     f'cy="{sy(ef):.1f}" r="5"><title>{_e(label)}</title></circle></a>')
    return "".join(parts) + "</svg>"


def _table(headers: Sequence[str], rows: Sequence[str]) -> str:
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"
            + "".join(rows) + "</table>")


def _row(anchor: str, css: str, cells: Sequence[str]) -> str:
    """A row with id ``anchor``; ``cells``: HTML (:class:`_Num`: right-aligned)."""
    return (f'<tr id="{_e(anchor)}"' + (f' class="{css}"' if css else "") + ">"
            + "".join(f'<td class="n">{c}</td>' if isinstance(c, _Num) else f"<td>{c}</td>"
                      for c in cells) + "</tr>")


def _subjects(summary: Summary, entries: Mapping[str, _Entry], columns: list[str]) -> str:
    anchors = qc_anchors(summary.pairs, "s-")
    points, rows = [], []
    for s, (ed, es) in summary.pairs.items():
        f, flags = summary.function.get(s, {}), summary.pair_qc.get(s, [])
        if f.get("LV_EF_pct") is not None:
            points.append((f["LV_EDV_ml"], f["LV_EF_pct"], anchors[s],
                           f"{s}: EF {f['LV_EF_pct']:.1f} %, EDV {f['LV_EDV_ml']:.1f} mL"
                           + (f" ({'; '.join(flags)})" if flags else ""), bool(flags)))
        links = [f'<a href="#{_e(entries[n].anchor)}">{_e(n)}</a>' for n in (ed, es)]
        rows.append(_row(anchors[s], "flagged" if flags else "", [
            _e(s), *links, "ok" if f else "incomplete",
            *(_num(f.get(c)) for c in columns), _e("; ".join(flags))]))
    plot = (scatter_svg(points) + f"<p>{len(points)} subjects; red: flagged; each point "
            "links to its row.</p>") if points else ""
    return ('<h2 id="subjects">Subjects (cardiac.csv)</h2>' + plot
            + _table(["subject", "ED", "ES", "status", *map(_heading, columns), "QC flags"],
                     rows))


def _page(out: Path, entries: Sequence[_Entry], summary: Summary, classes: Sequence[str],
          model_id: str, lowest: int) -> str:
    colours = class_colours(classes)
    legend = "".join(f'<span class="sw" style="background:rgb{tuple(int(v) for v in colours[c])}">'
                     f"</span>{_e(classes[c])}" for c in range(1, len(classes)))
    counts = {s: sum(e.status == s for e in entries) for s in ("ok", "failed", "pending")}
    shown = sorted((e for e in entries if e.flags or e.rank),  # flagged first
                   key=lambda e: (not e.flags, e.rank if not e.flags else 0))
    columns = [c for c in CARDIAC_COLUMNS if c.split("_")[0] in summary.cardiac]
    body = [f"<h1>QC report: {_e(out.name)}</h1>",
            f"<p>Model <code>{_e(model_id)}</code> · {len(entries)} volumes: {counts['ok']} ok, "
            f"{counts['failed']} failed, {counts['pending']} pending · "
            f"{sum(bool(e.flags) for e in entries)} flagged · written "
            f"{time.strftime('%Y-%m-%d %H:%M')}.</p><p>Classes:{legend}</p>",
            "<p>" + " · ".join(f'<a href="#{k}">{k}</a>' for k in
                               (["subjects"] if summary.pairs else []) + ["volumes", "pictures"])
            + "</p>"]
    if summary.pairs:
        body.append(_subjects(summary, {e.item.name: e for e in entries}, columns))
    ef_columns = [c for c in ("LV_EF_pct", "RV_EF_pct") if c in columns]
    rows = []
    for e in entries:
        ml = e.record.measurements.get("ml", {}) if e.status == "ok" else {}
        f = summary.function.get(summary.subject_of.get(e.item.name, ""), {})
        css = e.status if e.status != "ok" else "flagged" if e.flags else ""
        text = e.record.error if e.status == "failed" else "; ".join(e.flags)
        rows.append(_row(e.anchor, css, [
            _e(e.item.name), e.status, _e(e.item.tags.get("subject", "")),
            _e(e.item.tags.get("frame", "")), *(_num(ml.get(n), 2) for n in classes[1:]),
            *(_num(f.get(c)) for c in ef_columns), _num(e.uncertainty, 3),
            _e(text or ""), f'<a href="#p-{_e(e.anchor)}">picture</a>' if e.png else _e(e.note)]))
    body.append('<h2 id="volumes">Volumes (measurements.csv)</h2>' + _table(
        ["name", "status", "subject", "frame", *(f"{n} (mL)" for n in classes[1:]),
         *map(_heading, ef_columns), "mean uncertainty (0–1)", "QC flags / error", ""], rows))
    body.append(f'<h2 id="pictures">Volumes worth a look ({len(shown)})</h2><p>Every flagged '
                f"volume, then the {lowest} of highest mean uncertainty (entropy / ln C over "
                f"the predicted foreground): labels over the image, {ALPHA:.0%} opaque.</p>")
    for e in shown:
        caption = _e("; ".join(([f"flags: {'; '.join(e.flags)}"] if e.flags else [])
                               + ([f"least confident #{e.rank}"] if e.rank else [])
                               + ([e.note] if e.note else [])))
        image = f'<img src="{_e(e.png)}" alt="{_e(e.item.name)}">' if e.png else ""
        body.append(f'<figure id="p-{_e(e.anchor)}">{image}<figcaption><a href="#'
                    f'{_e(e.anchor)}">{_e(e.item.name)}</a>: {caption}</figcaption></figure>')
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>QC report: {_e(out.name)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


__all__ = ["check_qc_output", "class_colours", "crop_box", "montage_size", "nearest", "pick_slices",
           "render_montage", "scatter_svg", "tile_box", "write_qc_report"]
