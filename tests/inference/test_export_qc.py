"""The export's QC report (``qc/index.html``): a PNG per flagged and least confident volume,
the overlay where the mask is, the CSVs' links to the report's rows, escaped names that stay
inside the folder, ``--no-qc-report``, and reruns into the same folder."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_weakseg.errors import OutputError
from napari_weakseg.inference.export import (CARDIAC_CSV, MEASUREMENTS_CSV, Cohort, ExportItem,
                                             ExportOptions, ExportRecord, export_cohort,
                                             read_records)
from napari_weakseg.inference.export.qc import (ALPHA, BACKDROP, class_colours, crop_box,
                                                montage_size, nearest, pick_slices,
                                                scatter_svg, tile_box)
from napari_weakseg.inference.export.records import qc_anchors
from napari_weakseg.io import read_labels
from napari_weakseg.io.paths import LEDGER
from tests.inference.test_export import write_image
from tests.inference.test_predictor import CLASSES, CardiacPhantom, heart

#: subject → (ED, ES) changes to a plausible heart; what each is flagged for
CASES = {"patient001": ({}, {}),
         "patient002": ({"blob": True}, {}),          # fragmented:RV at ED
         "patient003": ({}, {"lv_radius": None}),     # ES = ED: EF 0 %, both frames
         "patient004": ({"lv_outside": True}, {})}    # not_enclosed:LV at ED
FLAGGED = {"patient002_frame01", "patient003_frame01", "patient003_frame10",
           "patient004_frame01"}


class UncertainPhantom(CardiacPhantom):
    """Labels read off the image; a constant entropy that differs from image to image."""

    identity = "qc-phantom"

    def predict(self, image, flip_tta=False):
        prediction = super().predict(image, flip_tta)
        value = float(np.asarray(image).sum() % 997) / 997
        prediction.entropy = np.full(prediction.labels.shape, value, np.float32)
        return prediction


def make_cohort(folder: Path) -> Path:
    for i, (subject, (ed_kw, es_kw)) in enumerate(CASES.items()):
        radius = 6.0 + 0.5 * i
        ed = heart(**{"lv_radius": radius, "rv_width": 8, **ed_kw})
        es = heart(**{"rv_width": 6, **es_kw, "lv_radius": es_kw.get("lv_radius", 4.0)
                      or radius})
        write_image(folder / f"{subject}_frame01.nii.gz", ed)
        write_image(folder / f"{subject}_frame10.nii.gz", es)
    for i, name in enumerate(("extra_a", "extra_b", "extra_c")):
        write_image(folder / f"{name}.nii.gz", heart(5.0 + i, 7))
    return folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class Page(HTMLParser):
    """The ids, internal links, image sources and text of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.links, self.images, self.tags, self.text = [], [], [], [], []
        self.row_class: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.append(attrs["id"])
            if tag == "tr":
                self.row_class[attrs["id"]] = attrs.get("class") or ""
        if attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"][1:])
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


def least_confident(out: Path, count: int) -> set[str]:
    rows = [r for r in read_rows(out / MEASUREMENTS_CSV) if r["status"] == "ok"]
    rows.sort(key=lambda r: (-float(r["mean_uncertainty"]), r["name"]))
    return {r["name"] for r in rows[:count]}


@pytest.fixture
def exported(tmp_path):
    folder = make_cohort(tmp_path / "in")
    out = tmp_path / "out"
    report = export_cohort(UncertainPhantom(), [folder], out,
                           ExportOptions(prefetch=0, qc_lowest=2))
    assert report.ok and report.qc_path == out / "qc" / "index.html"
    return folder, out


def test_one_png_per_flagged_and_least_confident_volume(exported):
    _, out = exported
    rows = {r["name"]: r for r in read_rows(out / MEASUREMENTS_CSV)}
    pairs = {r["subject"]: r for r in read_rows(out / CARDIAC_CSV)}
    # the fixture is what it claims: these are the volumes the CSVs flag
    assert {n for n, r in rows.items() if r["qc"] != "ok"} == \
        {"patient002_frame01", "patient004_frame01"}
    assert pairs["patient003"]["qc"].startswith("implausible_EF:LV=0.0")
    assert [s for s, r in pairs.items() if r["qc"] != "ok"] == ["patient002", "patient003",
                                                                 "patient004"]
    expected = FLAGGED | least_confident(out, 2)
    assert len(expected) > len(FLAGGED)  # the least confident are not all flagged ones
    anchors = qc_anchors(rows, "v-")
    assert sorted(p.name for p in (out / "qc").glob("*.png")) == \
        sorted(f"{anchors[n]}.png" for n in expected)
    page = Page((out / "qc" / "index.html").read_text())
    assert sorted(page.images) == sorted(f"{anchors[n]}.png" for n in expected)
    for name in rows:  # every volume has a row; the flagged ones are highlighted
        assert page.row_class[anchors[name]] == ("flagged" if name in FLAGGED else "")
    assert page.tags.count("svg") == 1 and page.tags.count("circle") == 4
    assert "script" not in page.tags  # no JavaScript
    assert "http" not in (out / "qc" / "index.html").read_text().replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched at view time
    # the report is recorded as written by the tool; the records still round-trip
    written = json.loads((out / LEDGER).read_text())
    assert sorted(written) == sorted(["qc/index.html"] + [f"qc/{anchors[n]}.png"
                                                          for n in expected])
    records = read_records(out)
    assert len(records) == 11
    assert all(ExportRecord.from_json(r.to_json()) == r for r in records)


@pytest.mark.parametrize("name, box, size", [
    # heart and blob span rows 2-33, columns 2-39: margin 38 // 3; 46 × 1.5 mm high
    ("patient002_frame01", (0, 46, 0, 48), (167, 192)),
    # the heart alone: rows 15-33, columns 11-39, margin 10; 47 × 1.25 mm wide
    ("patient003_frame01", (5, 44, 1, 48), (192, 191)),
])
def test_pngs_decode_with_their_size_and_show_the_overlay_where_the_mask_is(exported, name,
                                                                            box, size):
    _, out = exported
    colours = class_colours(CLASSES).astype(float)
    record = next(r for r in read_records(out) if r.name == name)
    labels = np.asarray(read_labels(record.labels_path(out)).data)
    slices = pick_slices(labels)
    assert slices == [0, 1, 2]  # a 3-slice heart: every slice
    assert crop_box(labels, slices) == box
    y0, y1, x0, x1 = box
    labels = labels[:, y0:y1, x0:x1]
    with Image.open(out / "qc" / f"v-{name}.png") as png:
        assert png.format == "PNG" and png.mode == "RGB"
        assert png.size == montage_size(3, CLASSES) and png.size[0] == 3 * 192 + 4 * 8
        pixels = np.asarray(png, float)
    for i, z in enumerate(slices):
        left, top, width, height = tile_box(i, labels.shape[1:], record.spacing_mm[1:])
        assert (width, height) == size  # in mm: columns × 1.25 wide, rows × 1.5 high
        tile = pixels[top:top + height, left:left + width]
        mask = nearest(labels[z], height, width)
        y0, x0 = top - (192 - height) // 2, left - (192 - width) // 2  # the tile's square
        square = pixels[y0:y0 + 192, x0:x0 + 192].copy()
        square[top - y0:top - y0 + height, left - x0:left - x0 + width] = BACKDROP
        assert (square == BACKDROP).all()  # around the slice: the letterbox
        background = tile[mask == 0]
        assert (background.max(-1) == background.min(-1)).all()  # grey: no overlay
        for c in (1, 2, 3):
            painted = tile[mask == c]
            assert painted.size, (z, c)
            grey = (painted - ALPHA * colours[c]) / (1 - ALPHA)  # the image under the colour
            assert (grey.max(-1) - grey.min(-1)).max() < 2.5, (z, c)
            dominant = int(np.argmax(colours[c]))  # the class colour shows
            others = [k for k in range(3) if k != dominant]
            assert (painted[:, dominant] - painted[:, others].max(-1)).mean() > 40, (z, c)


def test_every_csv_row_links_to_an_anchor_of_the_report(exported):
    folder, out = exported
    (folder / "broken.nii.gz").write_bytes(b"not a volume")
    report = export_cohort(UncertainPhantom(), [folder], out,
                           ExportOptions(prefetch=0, qc_lowest=2))
    assert list(report.failed) == ["broken"] and report.qc_path
    page = Page((out / "qc" / "index.html").read_text())
    assert len(page.ids) == len(set(page.ids))
    assert set(page.links) <= set(page.ids)  # internal links all land
    assert all((out / "qc" / src).is_file() for src in page.images)
    for table, count in ((MEASUREMENTS_CSV, 12), (CARDIAC_CSV, 4)):
        rows = read_rows(out / table)
        assert len(rows) == count
        for row in rows:
            page_name, _, anchor = row["qc_report"].partition("#")
            assert page_name == "qc/index.html" and anchor in page.ids, row["qc_report"]
            assert (out / page_name).is_file()
    rows = {r["name"]: r for r in read_rows(out / MEASUREMENTS_CSV)}
    assert page.row_class[rows["broken"]["qc_report"].partition("#")[2]] == "failed"
    assert rows["patient001_frame01"]["qc_report"] == "qc/index.html#v-patient001_frame01"
    assert rows["patient001_frame01"]["qc"] == "ok"  # the flags' column is unchanged


def test_a_hostile_name_is_escaped_and_stays_inside_the_folder(tmp_path):
    blob = write_image(tmp_path / "in" / "a.nii.gz", heart(6.0, 8, blob=True))
    plain = write_image(tmp_path / "in" / "b.nii.gz", heart(4.0, 6))
    subject = '<img src=x onerror="alert(1)">'
    cohort = Cohort([ExportItem("../x<script>", blob, {"subject": subject, "frame": "ED"}),
                     ExportItem("..", plain, {"subject": subject, "frame": "ES"})])
    out = tmp_path / "deep" / "out"
    before = set(tmp_path.rglob("*"))
    report = export_cohort(UncertainPhantom(), cohort, out, ExportOptions(prefetch=0))
    assert report.ok and report.qc_path
    assert all(out in p.parents for p in set(tmp_path.rglob("*")) - before - {out, out.parent})
    assert sorted(p.name for p in (out / "qc").iterdir()) == ["index.html", "v-_x_script_.png",
                                                               "v-volume.png"]
    text = (out / "qc" / "index.html").read_text()
    assert "<script" not in text.lower() and "<img src=x" not in text
    assert "../x&lt;script&gt;" in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" \
        in text
    page = Page(text)
    assert "script" not in page.tags and page.images == ["v-_x_script_.png", "v-volume.png"]
    (pair,) = read_rows(out / CARDIAC_CSV)
    assert pair["subject"] == subject
    assert pair["qc_report"] == "qc/index.html#s-_img_src_x_onerror_alert_1_"
    assert pair["qc_report"].partition("#")[2] in page.ids


def test_no_qc_report_writes_none(tmp_path):
    folder = make_cohort(tmp_path / "in")
    out = tmp_path / "out"
    report = export_cohort(UncertainPhantom(), [folder], out,
                           ExportOptions(prefetch=0, qc_report=False))
    assert report.ok and report.qc_path is None
    assert not (out / "qc").exists() and not (out / LEDGER).exists()
    for table in (MEASUREMENTS_CSV, CARDIAC_CSV):
        assert {r["qc_report"] for r in read_rows(out / table)} == {""}
    with pytest.raises(ValueError, match="qc-lowest"):
        ExportOptions(qc_lowest=-1)


def test_cli_no_qc_report(tmp_path, capsys):
    from napari_weakseg.cli import main
    from tests.inference.test_export import make_tiny_model

    model = make_tiny_model(tmp_path / "model")
    inputs = [write_image(tmp_path / "in" / f"v{i}.nii.gz", heart(5.0 + i, 7)) for i in range(2)]
    args = ["export", str(model), *map(str, inputs), "--device", "cpu", "--threads", "1"]
    assert main([*args, "--out", str(tmp_path / "off"), "--no-qc-report"]) == 0
    assert "QC report" not in capsys.readouterr().out
    assert not (tmp_path / "off" / "qc").exists()
    assert main([*args, "--out", str(tmp_path / "on"), "--qc-lowest", "1"]) == 0
    assert f"QC report: {tmp_path / 'on' / 'qc' / 'index.html'}" in capsys.readouterr().out
    assert len(list((tmp_path / "on" / "qc").glob("*.png"))) >= 1


def test_rerun_into_the_same_folder_follows_the_overwrite_rules(exported):
    folder, out = exported
    qc = out / "qc"
    pngs = {p.name: p.stat().st_mtime_ns for p in qc.glob("*.png")}
    # a rerun rewrites its own report, keeps the pictures of volumes not redone, and removes
    # the pictures it no longer shows (here: no least-confident ones beyond the flagged)
    report = export_cohort(UncertainPhantom(), [folder], out,
                           ExportOptions(prefetch=0, qc_lowest=0))
    assert len(report.skipped) == 11 and report.qc_path
    anchors = qc_anchors([n for n in sorted(FLAGGED)], "v-")
    assert sorted(p.name for p in qc.glob("*.png")) == sorted(f"{a}.png" for a in
                                                              anchors.values())
    assert all(p.stat().st_mtime_ns == pngs[p.name] for p in qc.glob("*.png"))
    assert sorted(json.loads((out / LEDGER).read_text())) == sorted(
        ["qc/index.html"] + [f"qc/{a}.png" for a in anchors.values()])
    # a file the tool did not write is not replaced: the picture is left out, noted
    foreign = qc / "v-patient001_frame01.png"
    foreign.write_bytes(b"the user's own file")
    report = export_cohort(UncertainPhantom(), [folder], out,
                           ExportOptions(prefetch=0, qc_lowest=11))
    assert report.qc_path and foreign.read_bytes() == b"the user's own file"
    page = Page((qc / "index.html").read_text())
    assert "v-patient001_frame01.png" not in page.images
    assert any("not written by weakseg" in t for t in page.text)
    # a report the tool did not write stops the run before any work, unless --force
    (qc / "index.html").unlink()
    (qc / "index.html").write_text("<p>my notes</p>")
    ledger = json.loads((out / LEDGER).read_text())
    (out / LEDGER).write_text(json.dumps([n for n in ledger if n != "qc/index.html"]))
    model = UncertainPhantom()
    with pytest.raises(OutputError, match="not written by weakseg.*--no-qc-report"):
        export_cohort(model, [folder], out, ExportOptions(prefetch=0))
    assert (qc / "index.html").read_text() == "<p>my notes</p>"
    assert export_cohort(model, [folder], out, ExportOptions(prefetch=0, qc_report=False)).ok
    assert (qc / "index.html").read_text() == "<p>my notes</p>"
    report = export_cohort(model, [folder], out, ExportOptions(prefetch=0, force=True))
    assert report.ok and "QC report" in (qc / "index.html").read_text()


@pytest.mark.parametrize("depth, foreground, expected", [
    (10, None, [2, 4, 5, 7]),         # nothing predicted: spread over the volume
    (12, (3, 8), [4, 5, 6, 7]),       # six slices of heart: the middle four
    (12, (3, 9), [4, 5, 7, 8]),       # seven
    (5, (1, 3), [1, 2, 3]),           # three: all of them
    (1, (0, 0), [0]),
])
def test_pick_slices_takes_the_middle_of_the_foreground(depth, foreground, expected):
    labels = np.zeros((depth, 4, 4), np.uint8)
    if foreground:
        labels[foreground[0]:foreground[1] + 1, 1, 1] = 2
    assert pick_slices(labels) == expected


def test_crop_box_keeps_every_fragment_of_the_shown_slices_in_view():
    labels = np.zeros((3, 100, 120), np.uint8)
    labels[:, 40:60, 50:70] = 3
    assert crop_box(labels, [0, 1, 2]) == (30, 70, 40, 80)  # 20 px: margin 10 at least
    labels[1, 90:95, 5:8] = 1  # a fragment on a shown slice widens the box
    assert crop_box(labels, [1]) == (19, 100, 0, 91)  # rows 40-94, columns 5-69: margin 21
    assert crop_box(labels, [0]) == (30, 70, 40, 80)  # not on this one
    assert crop_box(np.zeros((2, 9, 7)), [0, 1]) == (0, 9, 0, 7)


def test_anchors_are_unique_and_safe():
    anchors = qc_anchors(["a b", "a_b", "A_B", "../x", "a b"], "v-")
    assert anchors == {"a b": "v-a_b", "a_b": "v-a_b-2", "A_B": "v-A_B-3", "../x": "v-_x"}


def test_scatter_is_well_formed_svg_with_linked_points():
    svg = scatter_svg([(120.0, 55.0, "s-p1", "p1 <ok>", False),
                       (80.0, 0.0, "s-p2", "p2 & co", True),
                       (300.0, 400.0, "s-p3", "off the chart", True)])
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    links = root.findall(f"{ns}a")
    assert [a.get("href") for a in links] == ["#s-p1", "#s-p2", "#s-p3"]
    circles = [a.find(f"{ns}circle") for a in links]
    assert [c.get("fill") for c in circles] == ["#1f77b4", "#d62728", "#d62728"]
    assert circles[0].find(f"{ns}title").text == "p1 <ok>"
    top = float(root.get("height"))
    assert all(0 <= float(c.get("cy")) <= top for c in circles)  # clamped EF stays inside
