"""Batch export: geometry round trip (ACDC), measurements on a phantom, resume after a kill,
bad inputs, sharding, cancel, post-processing."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_weakseg.inference.export import (
    CARDIAC_CSV, LABELS_DIR, MANIFEST_DIR, MEASUREMENTS_CSV, STAGING_DIR, Cohort, ExportItem,
    ExportOptions, ModelPredictor, _Prefetcher, cardiac_function, discover_inputs,
    export_cohort, fill_holes, keep_largest_component, measure_volume, parse_shard,
    resolve_shard, shard_items)
from napari_weakseg.inference.predict import Prediction
from napari_weakseg.io import VolumeGeometry, write_volume
from napari_weakseg.io.paths import LEDGER
from napari_weakseg.nets.model_folder import save_model_folder
from napari_weakseg.schema import LabelSchema

CLASSES = ["background", "RV", "MYO", "LV"]
SPACING = (10.0, 1.5, 1.25)  # mm (z, y, x): one voxel = 18.75 mm³ = 0.01875 mL
SHAPE = (4, 40, 40)


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """An untrained width-4 U-Net with a 32² input: a valid model folder, fast on CPU."""
    import torch

    from napari_weakseg.nets.unet import build_network, default_config

    torch.manual_seed(seed)
    network = default_config(base_width=4)
    config = {"network": network, "classes": CLASSES,
              "preprocessing": {"normalisation": "wsl4mis-p99-minmax", "size": [32, 32],
                                "slice_axis": "z", "resize": "bilinear"}}
    return save_model_folder(folder, build_network(network), config, "# tiny test model\n")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


class PhantomModel:
    """A 'model' that reads the labels off the image (intensity = 100 × class) and reports a
    constant entropy of 0.25 nats, so every measurement has a hand-computable value."""

    classes = CLASSES

    def __init__(self, identity: str = "phantom-1"):
        self.identity = identity
        self.calls: list[tuple[int, ...]] = []

    def predict(self, image, flip_tta=False):
        self.calls.append(image.shape)
        labels = np.clip(np.rint(np.asarray(image) / 100.0), 0, 3).astype(np.uint8)
        probabilities = np.stack([(labels == c) for c in range(4)]).astype(np.float32)
        return Prediction(labels, probabilities, np.full(labels.shape, 0.25, np.float32))


def write_image(path: Path, data: np.ndarray, spacing=SPACING) -> Path:
    return write_volume(path, np.asarray(data, np.float32),
                        VolumeGeometry.from_spacing(data.shape, spacing))


def random_image(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, size=shape).astype(np.float32) * 100


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as handle:
        return {row.get("name") or row["subject"]: row for row in csv.DictReader(handle)}


# -- sharding -----------------------------------------------------------------------------------
NAMES = ["patient001_frame01", "patient001_frame12", "patient002_frame01", "patient002_frame09",
         "patient003_frame01", "patient003_frame14", "extra_a", "extra_b", "extra_c"]


def cohort_of(names) -> list[ExportItem]:
    from napari_weakseg.store.importers import acdc_tags

    tags = acdc_tags(names)
    return sorted((ExportItem(n, Path(f"{n}.nii.gz"), tags.get(n, {})) for n in names),
                  key=lambda item: item.name)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 12])
def test_shards_cover_every_volume_exactly_once_and_keep_pairs_together(count):
    items = cohort_of(NAMES)
    shards = [shard_items(items, i, count) for i in range(count)]
    names = [item.name for shard in shards for item in shard]
    assert sorted(names) == sorted(NAMES) and len(names) == len(set(names))
    for shard in shards:
        subjects = {item.tags["subject"] for item in shard if "subject" in item.tags}
        for subject in subjects:
            assert sum(item.tags.get("subject") == subject for item in shard) == 2
    assert shards == [shard_items(cohort_of(list(reversed(NAMES))), i, count) for i in range(count)]


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("2/4", (2, 4)), (" 1 / 3 ", (1, 3)),
                                            ("4/4", None), ("1", None), ("-1/2", None),
                                            ("0/0", None), ("a/b", None)])
def test_parse_shard(text, expected):
    if expected is None:
        with pytest.raises(ValueError):
            parse_shard(text)
    else:
        assert parse_shard(text) == expected


@pytest.mark.parametrize("shard, env, expected", [
    (None, {}, (0, 1)),
    ((1, 3), {}, (1, 3)),
    (None, {"RANK": "1", "WORLD_SIZE": "4"}, (1, 4)),
    ((1, 2), {"RANK": "3", "WORLD_SIZE": "4"}, (7, 8)),
])
def test_resolve_shard_under_torchrun(shard, env, expected):
    assert resolve_shard(shard, env) == expected


@pytest.mark.parametrize("mode", ["--shard", "torchrun ranks"])
def test_sharded_runs_into_one_folder_export_each_volume_once(tmp_path, monkeypatch, mode):
    folder = tmp_path / "in"
    for i, name in enumerate(NAMES[:5]):
        write_image(folder / f"{name}.nii.gz", random_image(i))
    out = tmp_path / "out"
    exported = []
    for index in range(2):
        if mode == "--shard":
            options = ExportOptions(shard=(index, 2), prefetch=0)
        else:  # what torchrun sets (no MASTER_ADDR here: no process group is joined)
            monkeypatch.setenv("RANK", str(index))
            monkeypatch.setenv("WORLD_SIZE", "2")
            options = ExportOptions(prefetch=0)
        report = export_cohort(PhantomModel(), [folder], out, options)
        assert report.ok and report.cohort == 5 and not report.skipped
        exported += report.exported
    assert sorted(exported) == sorted(NAMES[:5])
    rows = read_csv(out / MEASUREMENTS_CSV)  # the last shard's table has every volume
    assert [rows[n]["status"] for n in NAMES[:5]] == ["ok"] * 5


# -- measurements on a phantom ------------------------------------------------------------------
def phantom_pair() -> tuple[np.ndarray, np.ndarray]:
    """Images whose labels (intensity / 100) have known voxel counts:
    ED: LV 1000, RV 800, MYO 600 (one piece each); ES: LV 400, RV 400 + 50 + 50 (three
    pieces: 20 % outside the largest, "fragmented"), MYO 0 ("empty")."""
    ed = np.zeros(SHAPE, np.float32)
    ed[0:2, 0:20, 0:25] = 300      # LV  2·20·25 = 1000
    ed[0:2, 25:40, 0:20] = 100     # RV  2·15·20 =  600
    ed[2:4, 25:35, 0:10] = 100     #   + 2·10·10 =  200 (touching) → 800
    ed[0:2, 0:20, 28:40] = 200     # MYO 2·20·12 =  480
    ed[2, 0:20, 34:40] = 200       #   + 1·20·6  =  120 (touching) → 600
    es = np.zeros(SHAPE, np.float32)
    es[0:2, 0:10, 0:20] = 300      # LV  2·10·20 =  400
    es[0:2, 20:30, 0:20] = 100     # RV  2·10·20 =  400
    es[3, 35:40, 30:40] = 100      #   + 1·5·10  =   50 (apart)
    es[3, 0:5, 30:40] = 100        #   + 1·5·10  =   50 (apart) → 500
    return ed, es


def test_phantom_voxel_counts_are_what_the_hand_computation_assumes():
    ed, es = phantom_pair()
    assert [int((ed == 100 * c).sum()) for c in (1, 2, 3)] == [800, 600, 1000]
    assert [int((es == 100 * c).sum()) for c in (1, 2, 3)] == [500, 0, 400]


# Hand computation: voxel = 10 × 1.5 × 1.25 mm = 18.75 mm³ = 0.01875 mL.
HAND = {
    "ED": {"RV_voxels": "800", "RV_ml": 15.0, "MYO_voxels": "600", "MYO_ml": 11.25,
           "LV_voxels": "1000", "LV_ml": 18.75, "qc": "ok"},
    "ES": {"RV_voxels": "500", "RV_ml": 9.375, "MYO_voxels": "0", "MYO_ml": 0.0,
           "LV_voxels": "400", "LV_ml": 7.5, "qc": "fragmented:RV;empty:MYO"},
    "pair": {"LV_EDV_ml": 18.75, "LV_ESV_ml": 7.5, "LV_SV_ml": 11.25, "LV_EF_pct": 60.0,
             "RV_EDV_ml": 15.0, "RV_ESV_ml": 9.375, "RV_SV_ml": 5.625, "RV_EF_pct": 37.5,
             "MYO_mass_g": 11.8125},  # 11.25 mL × 1.05 g/mL
}


@pytest.mark.parametrize("source", ["folder with ACDC names", "project with ED/ES tags"])
def test_measurements_match_a_hand_computation_on_a_phantom(tmp_path, source):
    from napari_weakseg.store import Project

    ed, es = phantom_pair()
    if source == "folder with ACDC names":
        names = {"ED": "patient007_frame01", "ES": "patient007_frame11"}
        inputs = [tmp_path / "in"]
        for frame, data in (("ED", ed), ("ES", es)):
            write_image(tmp_path / "in" / f"{names[frame]}.nii.gz", data)
        subject = "patient007"
    else:  # names say nothing; the tags say which frame is which (ED is the later name)
        names = {"ED": "case_b", "ES": "case_a"}
        subject = "subject-x"
        with Project.create(tmp_path / "project", LabelSchema.cardiac()) as project:
            for frame, data in (("ED", ed), ("ES", es)):
                path = write_image(tmp_path / f"{names[frame]}.nii.gz", data)
                project.add_volume(path, tags={"subject": subject, "frame": frame})
        inputs = [tmp_path / "project"]
    report = export_cohort(PhantomModel(), inputs, tmp_path / "out", ExportOptions())
    assert report.ok and sorted(report.exported) == sorted(names.values())

    rows = read_csv(tmp_path / "out" / MEASUREMENTS_CSV)
    for frame in ("ED", "ES"):
        row = rows[names[frame]]
        assert row["status"] == "ok" and row["subject"] == subject and row["frame"] == frame
        assert float(row["voxel_ml"]) == pytest.approx(0.01875)
        for column, value in HAND[frame].items():
            if isinstance(value, float):
                assert float(row[column]) == pytest.approx(value, abs=1e-9), column
            else:
                assert row[column] == value, column
        assert float(row["mean_uncertainty"]) == pytest.approx(0.25 / math.log(4), rel=1e-6)
        for column, value in HAND["pair"].items():  # both rows carry the pair's function
            assert float(row[column]) == pytest.approx(value, abs=1e-9), column
    pair = read_csv(tmp_path / "out" / CARDIAC_CSV)[subject]
    assert (pair["ED"], pair["ES"], pair["status"]) == (names["ED"], names["ES"], "ok")
    for column, value in HAND["pair"].items():
        assert float(pair[column]) == pytest.approx(value, abs=1e-9), column


@pytest.mark.parametrize("ed, es, expected", [
    ({"LV": 100.0, "RV": 80.0, "MYO": 50.0}, {"LV": 40.0, "RV": 60.0, "MYO": 55.0},
     {"LV_SV_ml": 60.0, "LV_EF_pct": 60.0, "RV_SV_ml": 20.0, "RV_EF_pct": 25.0,
      "MYO_mass_g": 52.5}),
    ({"LV": 0.0}, {"LV": 0.0}, {"LV_SV_ml": 0.0, "LV_EF_pct": None}),
    ({"MYO": 10.0}, {}, {"MYO_mass_g": 10.5}),
])
def test_cardiac_function_formulas(ed, es, expected):
    result = cardiac_function(ed, es)
    for key, value in expected.items():
        assert result[key] == (None if value is None else pytest.approx(value))
    assert ("RV_EF_pct" in result) == ("RV" in ed and "RV" in es)


# -- post-processing ----------------------------------------------------------------------------
def _plane(rows: list[str]) -> np.ndarray:
    return np.array([[int(ch) for ch in row] for row in rows], np.uint8)[None]


@pytest.mark.parametrize("before, after", [
    # a ring of class 2 around a background hole: filled with 2
    (["00000", "02220", "02020", "02220", "00000"], ["00000", "02220", "02220", "02220", "00000"]),
    # a hole bordering both MYO (2) and LV (3): ambiguous, left alone
    (["022220", "023020", "022220"], ["022220", "023020", "022220"]),
    # background touching the border is no hole
    (["2220", "2000", "2220"], ["2220", "2000", "2220"]),
    # the LV inside the myocardium ring is not background: untouched
    (["02220", "02320", "02220"], ["02220", "02320", "02220"]),
])
def test_fill_holes(before, after):
    np.testing.assert_array_equal(fill_holes(_plane(before)), _plane(after))


@pytest.mark.parametrize("before, after", [
    (["1100", "1100", "0001"], ["1100", "1100", "0000"]),
    (["1102", "0002", "1100"], ["1102", "0002", "0000"]),  # each class separately
    (["1000", "0100", "0010"], ["1000", "0100", "0010"]),  # diagonal: one 26-component
])
def test_keep_largest_component(before, after):
    np.testing.assert_array_equal(keep_largest_component(_plane(before), 4), _plane(after))


def test_measure_volume_flags_empty_and_fragmented_classes():
    labels = _plane(["1100", "1100", "0003"])
    result = measure_volume(labels, 0.5, CLASSES, entropy=np.full(labels.shape, math.log(4)))
    assert result["voxels"] == {"RV": 4, "MYO": 0, "LV": 1}
    assert result["ml"] == {"RV": 2.0, "MYO": 0.0, "LV": 0.5}
    assert result["qc"] == ["empty:MYO"] and result["mean_uncertainty"] == pytest.approx(1.0)
    raw = _plane(["1101", "1100", "0003"])  # 1 of 5 RV voxels outside the largest part
    flagged = measure_volume(labels, 0.5, CLASSES, raw_labels=raw)
    assert flagged["qc"] == ["fragmented:RV", "empty:MYO"]
    assert flagged["voxels"]["RV"] == 4 and flagged["fragments"]["RV"] == 2


# -- bad inputs ---------------------------------------------------------------------------------
def make_bad(path: Path, kind: str) -> tuple[Path, str]:
    """A bad input of ``kind`` at ``path``; returns it and a phrase of its error."""
    if kind == "unreadable":
        path.write_bytes(b"this is not a NIfTI file")
        return path, "not a readable NIfTI"
    if kind == "2d":
        nib.Nifti1Image(np.zeros((16, 16), np.float32), np.eye(4)).to_filename(path)
        return path, "2D"
    if kind == "nan":
        data = random_image(9)
        data[1, 2, 3] = np.nan
        write_image(path, data)
        return path, "NaN"
    if kind == "truncated":
        write_image(path, random_image(9))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path, "truncated"
    if kind == "missing":
        return path, "does not exist"
    raise AssertionError(kind)


BAD_KINDS = ["unreadable", "2d", "nan", "truncated", "missing"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_is_reported_skipped_and_the_rest_exported(tmp_path, kind):
    folder = tmp_path / "in"
    goods = [write_image(folder / f"good{i}.nii.gz", random_image(i)) for i in range(2)]
    bad, phrase = make_bad(folder / "broken.nii.gz", kind)
    out = tmp_path / "out"
    messages = []
    report = export_cohort(PhantomModel(), [*goods, bad], out, ExportOptions(),
                           message=messages.append)
    assert report.exit_code == 1 and not report.ok
    assert sorted(report.exported) == ["good0", "good1"] and list(report.failed) == ["broken"]
    assert phrase in report.failed["broken"] and str(bad) in report.failed["broken"]
    rows = read_csv(out / MEASUREMENTS_CSV)
    assert rows["broken"]["status"] == "failed" and phrase in rows["broken"]["error"]
    assert rows["good0"]["status"] == rows["good1"]["status"] == "ok"
    assert any(m.startswith("failed broken") and phrase in m for m in messages)
    assert phrase in (out / "export.log").read_text()
    assert not (out / LABELS_DIR / "broken.nii.gz").exists()
    assert sorted(p.name for p in (out / LABELS_DIR).iterdir()) == ["good0.nii.gz",
                                                                   "good1.nii.gz"]
    # a rerun retries the failed volume only
    again = export_cohort(PhantomModel(), [*goods, bad], out, ExportOptions())
    assert sorted(again.skipped) == ["good0", "good1"] and list(again.failed) == ["broken"]


@pytest.mark.parametrize("kind", ["unreadable", "2d", "nan", "truncated"])
def test_a_failed_volume_overwrites_nothing_already_written(tmp_path, kind):
    image = write_image(tmp_path / "in" / "vol.nii.gz", random_image(3))
    out = tmp_path / "out"
    options = ExportOptions(probabilities=True, uncertainty=True)
    assert export_cohort(PhantomModel(), [image], out, options).ok
    written = {p: p.read_bytes() for p in out.rglob("*.nii.gz")}
    assert len(written) == 3
    time.sleep(0.01)  # a new mtime even on coarse file systems
    make_bad(image, kind)
    report = export_cohort(PhantomModel(), [image], out, options)
    assert report.exit_code == 1 and list(report.failed) == ["vol"]
    assert {p: p.read_bytes() for p in out.rglob("*.nii.gz")} == written
    assert "earlier outputs kept" in (out / "export.log").read_text()
    assert read_csv(out / MEASUREMENTS_CSV)["vol"]["status"] == "failed"


def test_a_changed_project_image_is_reported(tmp_path):
    from napari_weakseg.store import Project

    with Project.create(tmp_path / "project") as project:
        for i in range(2):
            path = write_image(tmp_path / f"v{i}.nii.gz", random_image(i))
            project.add_volume(path, copy=False)
    write_image(tmp_path / "v1.nii.gz", random_image(7))  # changed behind the store's back
    report = export_cohort(PhantomModel(), [tmp_path / "project"], tmp_path / "out")
    assert report.exported == ["v0"] and "changed since it was added" in report.failed["v1"]


# -- resume -------------------------------------------------------------------------------------
def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (folder / LABELS_DIR).iterdir()}


@pytest.mark.parametrize("change, redone", [
    ("nothing", []),
    ("touch an input (same bytes)", []),
    ("change an input", ["v1"]),
    ("--force", ["v0", "v1", "v2"]),
    ("another model", ["v0", "v1", "v2"]),
    ("largest component", ["v0", "v1", "v2"]),
    ("also probabilities", ["v0", "v1", "v2"]),
    ("delete an output", ["v2"]),
])
def test_rerun_skips_what_is_done_with_the_same_model(tmp_path, change, redone):
    folder = tmp_path / "in"
    paths = [write_image(folder / f"v{i}.nii.gz", random_image(i)) for i in range(3)]
    out = tmp_path / "out"
    assert export_cohort(PhantomModel(), [folder], out).ok
    model, options = PhantomModel(), ExportOptions()
    if change == "touch an input (same bytes)":
        os.utime(paths[0], ns=(1, 1))
    elif change == "change an input":
        write_image(paths[1], random_image(11))
    elif change == "--force":
        options = ExportOptions(force=True)
    elif change == "another model":
        model = PhantomModel(identity="phantom-2")
    elif change == "largest component":
        options = ExportOptions(largest_component=True)
    elif change == "also probabilities":
        options = ExportOptions(probabilities=True)
    elif change == "delete an output":
        (out / LABELS_DIR / "v2.nii.gz").unlink()
    report = export_cohort(model, [folder], out, options)
    assert sorted(report.exported) == redone
    assert sorted(report.skipped) == sorted({"v0", "v1", "v2"} - set(redone))
    assert len(model.calls) == len(redone)
    assert [r["status"] for r in read_csv(out / MEASUREMENTS_CSV).values()] == ["ok"] * 3


KILLED_EXPORT = textwrap.dedent("""
    import sys, time
    from napari_weakseg.inference.export import ExportOptions, export_cohort

    def slow(event):  # give the parent time to kill us between (and during) volumes
        if event.status == "exported":
            print(event.name, flush=True)
            time.sleep(0.4)

    export_cohort(sys.argv[1], [sys.argv[2]], sys.argv[3],
                  ExportOptions(device="cpu", uncertainty=True, threads=1), progress=slow)
""")


def test_resume_after_a_kill(tmp_path, tiny_model):
    folder = tmp_path / "in"
    names = [f"patient{i:03d}_frame{f:02d}" for i in (1, 2, 3) for f in (1, 10)]
    for i, name in enumerate(names):
        write_image(folder / f"{name}.nii.gz", random_image(i, (3, 48, 40)))
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(tiny_model),
                              str(folder), str(out)], stdout=subprocess.PIPE, text=True)
    finished = [child.stdout.readline().strip() for _ in range(2)]
    assert all(finished), "the export stopped before two volumes were done"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    # nothing half-written under a final name: every labels/uncertainty file reads whole
    final = list(out.glob("labels/*.nii.gz")) + list(out.glob("uncertainty/*.nii.gz"))
    for path in final:
        np.asarray(nib.load(path).dataobj)
    done_before = {p.name for p in (out / LABELS_DIR).iterdir()}
    assert {f"{n}.nii.gz" for n in finished} <= done_before
    mtimes = _mtimes(out)

    report = export_cohort(tiny_model, [folder], out, ExportOptions(device="cpu", threads=1,
                                                                    uncertainty=True))
    assert report.ok
    recorded = {p.stem for p in (out / MANIFEST_DIR).glob("*.json")}
    assert sorted(report.skipped) == sorted(finished)
    assert sorted(report.skipped + report.exported) == sorted(names)
    assert set(report.skipped) | set(report.exported) == recorded
    assert all(_mtimes(out)[f"{n}.nii.gz"] == mtimes[f"{n}.nii.gz"] for n in report.skipped)
    assert not (out / STAGING_DIR).exists()
    assert not [p for p in out.rglob("*") if (p.name.startswith(".") or ".tmp" in p.name)
                and p.name != LEDGER]  # the ledger of the files the tool wrote (QC report)
    rows = read_csv(out / MEASUREMENTS_CSV)
    assert [rows[n]["status"] for n in names] == ["ok"] * len(names)


# -- cancel, prefetch, inputs -------------------------------------------------------------------
def test_cancel_stops_after_the_current_volume(tmp_path):
    folder = tmp_path / "in"
    for i in range(4):
        write_image(folder / f"v{i}.nii.gz", random_image(i))
    cancel = threading.Event()
    events = []

    def on_progress(event):
        events.append(event)
        if event.status == "exported":
            cancel.set()

    report = export_cohort(PhantomModel(), [folder], tmp_path / "out", ExportOptions(prefetch=2),
                           progress=on_progress, cancel=cancel)
    assert report.cancelled and report.exit_code == 130
    assert report.exported == ["v0"] and report.not_done == ["v1", "v2", "v3"]
    assert [e.status for e in events] == ["started", "exported", "cancelled"]
    rows = read_csv(tmp_path / "out" / MEASUREMENTS_CSV)
    assert [rows[f"v{i}"]["status"] for i in range(4)] == ["ok"] + ["pending"] * 3
    assert not [t for t in threading.enumerate() if t.name == "weakseg-export-prefetch"]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetcher_keeps_order_passes_errors_and_reads_in_the_background(depth):
    items = cohort_of([f"v{i}" for i in range(5)])
    threads = []

    def read(item):
        threads.append(threading.current_thread().name)
        if item.name == "v2":
            raise ValueError("bad v2")
        return item.name.upper()

    loader = _Prefetcher(items, read, depth)
    try:
        got = [(item.name, str(value)) for item, value in loader]
    finally:
        loader.close()
    assert got == [("v0", "V0"), ("v1", "V1"), ("v2", "bad v2"), ("v3", "V3"), ("v4", "V4")]
    expected = "MainThread" if depth == 0 else "weakseg-export-prefetch"
    assert set(threads) == {expected}


def test_discovery_leaves_label_files_out_and_refuses_clashing_names(tmp_path):
    for name in ("a", "a_gt", "b_seg", "c"):
        write_image(tmp_path / "one" / f"{name}.nii.gz", random_image(0, (2, 8, 8)))
    write_image(tmp_path / "two" / "c.nii", random_image(0, (2, 8, 8)))
    with discover_inputs([tmp_path / "one"]) as cohort:
        assert [item.name for item in cohort.items] == ["a", "c"]
        assert len(cohort.ignored) == 2 and "a_gt" in cohort.ignored[0]
    with pytest.raises(ValueError, match="output name 'c'"):
        discover_inputs([tmp_path / "one", tmp_path / "two"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no input volumes"):
        export_cohort(PhantomModel(), [tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ValueError, match="no input volumes"):
        export_cohort(PhantomModel(), Cohort([]), tmp_path / "out")


def test_outputs_never_replace_an_input(tmp_path):
    image = write_image(tmp_path / LABELS_DIR / "v.nii.gz", random_image(0))
    with pytest.raises(ValueError, match="would replace this input"):
        export_cohort(PhantomModel(), [image], tmp_path)
    assert image.exists()


# -- real model, real data ------------------------------------------------------------------------
def test_model_folder_export_with_all_maps(tmp_path, tiny_model):
    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (3, 37, 50)))
    report = export_cohort(tiny_model, [image], tmp_path / "out",
                           ExportOptions(probabilities=True, uncertainty=True, flip_tta=True,
                                         largest_component=True, fill_holes=True, device="cpu",
                                         threads=1))
    assert report.ok
    labels = nib.load(tmp_path / "out" / "labels" / "v.nii.gz")
    probabilities = nib.load(tmp_path / "out" / "probabilities" / "v.nii.gz")
    entropy = np.asarray(nib.load(tmp_path / "out" / "uncertainty" / "v.nii.gz").dataobj)
    assert labels.shape == (50, 37, 3) and labels.get_data_dtype() == np.uint8
    assert probabilities.shape == (50, 37, 3, 4)
    np.testing.assert_allclose(np.asarray(probabilities.dataobj).sum(-1), 1.0, atol=1e-5)
    assert 0 <= entropy.min() and entropy.max() <= math.log(4) + 1e-5
    assert ModelPredictor(tiny_model).identity != ModelPredictor(
        make_tiny_model(tmp_path / "other", seed=1)).identity


def test_acdc_round_trip_keeps_the_geometry(tmp_path, tiny_model, acdc_dir):
    from napari_weakseg.plugin import nifti_layer_data

    names = ["patient002_frame01", "patient002_frame12"]
    inputs = [acdc_dir / "images" / f"{name}.nii.gz" for name in names]
    out = tmp_path / "out"
    report = export_cohort(tiny_model, inputs, out,
                           ExportOptions(probabilities=True, uncertainty=True, device="cpu",
                                         threads=1))
    assert report.ok and sorted(report.exported) == names
    for name, source in zip(names, inputs):
        image = nib.load(source)
        for kind in ("labels", "probabilities", "uncertainty"):
            written = nib.load(out / kind / f"{name}.nii.gz")
            assert written.shape[:3] == image.shape, kind
            np.testing.assert_array_equal(written.affine, image.affine)
            for get in ("get_qform", "get_sform"):
                (a, a_code), (b, b_code) = (getattr(x, get)(coded=True) for x in (written, image))
                assert a_code == b_code, (kind, get)
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(written.header["pixdim"][1:4],
                                          image.header["pixdim"][1:4])
        assert nib.load(out / "labels" / f"{name}.nii.gz").get_data_dtype() == np.uint8
        # the prediction opens in napari (our reader) as labels, aligned with the image
        data, image_kwargs, image_type = nifti_layer_data(source)
        labels, label_kwargs, label_type = nifti_layer_data(out / "labels" / f"{name}.nii.gz")
        assert (image_type, label_type) == ("image", "labels")
        assert labels.shape == data.shape
        assert label_kwargs["scale"] == image_kwargs["scale"]
        np.testing.assert_array_equal(label_kwargs["metadata"]["affine"],
                                      image_kwargs["metadata"]["affine"])
    pair = read_csv(out / CARDIAC_CSV)["patient002"]
    assert (pair["ED"], pair["ES"]) == tuple(names)


def test_rerun_on_a_project_skips_by_the_store_checksum(tmp_path):
    from napari_weakseg.store import Project

    with Project.create(tmp_path / "project") as project:
        for i in range(2):
            project.add_volume(write_image(tmp_path / f"v{i}.nii.gz", random_image(i)))
    out = tmp_path / "out"
    assert export_cohort(PhantomModel(), [tmp_path / "project"], out).exported == ["v0", "v1"]
    model = PhantomModel()
    report = export_cohort(model, [tmp_path / "project"], out)
    assert report.skipped == ["v0", "v1"] and not report.exported and not model.calls
