"""Per-class 3D Dice / HD95 / ASSD (medpy definitions) vs the WSL4MIS oracle and by hand."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from napari_weakseg.evaluation import (asd, assd, dice, evaluate_volume, hd95, summarise,
                                       surface_distances, write_csv, write_json)

CLASSES = {1: "RV", 2: "MYO", 3: "LV"}


def test_matches_wsl4mis_test_metrics_in_mm(oracle):
    d = oracle("wsl4mis_eval_pipeline")
    spacing = tuple(d["voxelspacing_passed_to_medpy"])     # the script's (z, x, y) order
    result = evaluate_volume(d["pred"], d["label"], spacing, CLASSES)
    got = np.array([[result[n]["dice"], result[n]["hd95_mm"], result[n]["asd_mm"]]
                    for n in CLASSES.values()])
    np.testing.assert_allclose(got, d["test_metric_dice_hd95_asd_mm"], rtol=1e-6)
    for name in CLASSES.values():
        assert result[name]["status"] == "ok"
        assert result[name]["assd_mm"] == pytest.approx(
            assd(d["pred"] == result[name]["class_id"], d["label"] == result[name]["class_id"],
                 spacing))


def test_matches_wsl4mis_validation_metrics_in_voxels(oracle):
    d = oracle("wsl4mis_eval_pipeline")
    result = evaluate_volume(d["pred"], d["label"], None, [1, 2, 3], empty="wsl4mis")
    got = np.array([[result[str(c)]["dice"], result[str(c)]["hd95_mm"]] for c in (1, 2, 3)])
    np.testing.assert_allclose(got, d["val_metric_dice_hd95_voxel"], rtol=1e-6)


@pytest.mark.parametrize("spacing,expected", [
    ((1.0, 1.0, 1.0), 3.0),
    ((1.0, 1.0, 2.0), 6.0),
    ((5.0, 0.5, 2.0), 6.0),
    (2.5, 7.5),                    # scalar spacing broadcasts
])
def test_single_voxels_distance_in_mm(spacing, expected):
    pred = np.zeros((3, 4, 6), bool)
    gt = np.zeros_like(pred)
    pred[1, 2, 1], gt[1, 2, 4] = True, True                   # 3 voxels apart along axis 2
    assert hd95(pred, gt, spacing) == pytest.approx(expected)
    assert assd(pred, gt, spacing) == pytest.approx(expected)
    assert asd(pred, gt, spacing) == pytest.approx(expected)
    assert dice(pred, gt) == 0.0


def test_surface_is_mask_minus_erosion_with_connectivity_one():
    # A 3×3 square: the 8 ring voxels are surface; the centre is not. Distances from a
    # square to itself are 0; to a copy shifted by one column: 4 ring voxels lie on the
    # copy's ring (0), the other 4 are 1 voxel away.
    pred = np.zeros((7, 7), bool)
    pred[2:5, 2:5] = True
    assert np.all(surface_distances(pred, pred) == 0)
    assert surface_distances(pred, pred).size == 8
    shifted = np.roll(pred, 1, axis=1)
    d = surface_distances(pred, shifted)
    assert sorted(d.tolist()) == [0.0] * 4 + [1.0] * 4
    assert asd(pred, shifted) == pytest.approx(0.5)
    assert assd(pred, shifted) == pytest.approx(0.5)
    assert dice(pred, shifted) == pytest.approx(2 * 6 / 18)


def test_hd95_pools_both_directions_and_interpolates():
    pred = np.zeros((1, 1, 30), bool)
    gt = np.zeros_like(pred)
    pred[0, 0, 0:20] = True            # long segment
    gt[0, 0, 0:2] = True               # short segment at its start
    d_pg = surface_distances(pred, gt)
    d_gp = surface_distances(gt, pred)
    expected = np.percentile(np.hstack((d_pg, d_gp)), 95)
    assert hd95(pred, gt) == pytest.approx(expected)
    assert asd(pred, gt) != pytest.approx(asd(gt, pred))       # asd is directed
    assert assd(pred, gt) == pytest.approx(assd(gt, pred))     # assd is symmetric


@pytest.mark.parametrize("rule,pred_has,gt_has,status,dice_v,dist", [
    ("strict", False, False, "both_empty", 1.0, 0.0),
    ("strict", False, True, "pred_empty", 0.0, math.nan),
    ("strict", True, False, "gt_empty", 0.0, math.nan),
    ("wsl4mis", False, False, "both_empty", 0.0, 0.0),
    ("wsl4mis", False, True, "pred_empty", 0.0, 0.0),
    ("wsl4mis", True, False, "gt_empty", 0.0, 0.0),
])
def test_empty_mask_rules(rule, pred_has, gt_has, status, dice_v, dist):
    pred = np.zeros((2, 5, 5), np.uint8)
    gt = np.zeros_like(pred)
    pred[0, 1, 1] = 1 if pred_has else 0
    gt[1, 3, 3] = 1 if gt_has else 0
    row = evaluate_volume(pred, gt, (2.0, 1.0, 1.0), {1: "fg"}, empty=rule)["fg"]
    assert row["status"] == status
    assert row["dice"] == dice_v
    for key in ("hd95_mm", "assd_mm", "asd_mm"):
        assert (math.isnan(row[key]) and math.isnan(dist)) or row[key] == dist


@pytest.mark.parametrize("kwargs,match", [
    ({"gt": np.zeros((3, 3))}, "shape"),
    ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
    ({"spacing": (1.0, 1.0)}, "3 values"),
    ({"empty": "medpy"}, "empty"),
])
def test_bad_arguments_refused(kwargs, match):
    args = {"pred": np.ones((2, 3, 3), np.uint8), "gt": np.ones((2, 3, 3), np.uint8),
            "spacing": None, "classes": [1]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate_volume(**args)


def test_default_classes_are_nonzero_ids_of_either_volume():
    pred = np.array([[0, 1], [5, 5]])
    gt = np.array([[0, 2], [5, 0]])
    assert list(evaluate_volume(pred, gt)) == ["1", "2", "5"]


def _row(d, h, a):
    return {"class_id": 1, "dice": d, "hd95_mm": h, "assd_mm": a, "asd_mm": a,
            "pred_voxels": 1, "gt_voxels": 1, "status": "ok" if not math.isnan(h) else "gt_empty"}


def test_summarise_mean_std_and_nan_counting():
    results = {
        "v1": {"RV": _row(0.8, 2.0, 1.0), "LV": _row(0.6, 4.0, 3.0)},
        "v2": {"RV": _row(0.4, 6.0, 2.0), "LV": _row(0.0, math.nan, math.nan)},
    }
    s = summarise(results)
    assert s["n_volumes"] == 2
    rv = s["per_class"]["RV"]
    assert rv["dice"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.2), "n": 2,
                          "n_nan": 0}
    lv = s["per_class"]["LV"]["hd95_mm"]
    assert (lv["mean"], lv["std"], lv["n"], lv["n_nan"]) == (4.0, 0.0, 1, 1)
    # overall: per-volume class means (NaN left out), then mean ± std over volumes.
    assert s["overall"]["dice"]["mean"] == pytest.approx((0.7 + 0.2) / 2)
    assert s["overall"]["hd95_mm"]["mean"] == pytest.approx((3.0 + 6.0) / 2)
    assert s["overall"]["hd95_mm"]["std"] == pytest.approx(1.5)


def test_json_and_csv_outputs(tmp_path):
    results = {
        "case1": {"RV": _row(0.8, 2.0, 1.0), "LV": _row(0.0, math.nan, math.nan)},
        "case2": {"RV": _row(0.6, 3.0, 2.0), "LV": _row(0.5, 1.0, 1.0)},
    }
    jpath = write_json(tmp_path / "metrics.json", results, spacing_convention="array order")
    payload = json.loads(jpath.read_text())       # strict JSON: NaN → null
    assert payload["volumes"]["case1"]["LV"]["hd95_mm"] is None
    assert payload["summary"]["per_class"]["RV"]["dice"]["mean"] == pytest.approx(0.7)
    assert payload["spacing_convention"] == "array order"
    cpath = write_csv(tmp_path / "metrics.csv", results)
    rows = list(csv.DictReader(cpath.open()))
    per_volume = [r for r in rows if r["volume"] in results]
    assert len(per_volume) == 4
    lv1 = next(r for r in per_volume if r["volume"] == "case1" and r["class"] == "LV")
    assert lv1["hd95_mm"] == "nan" and lv1["status"] == "gt_empty"
    mean_rv = next(r for r in rows if r["volume"] == "mean" and r["class"] == "RV")
    assert float(mean_rv["dice"]) == pytest.approx(0.7)
    assert any(r["volume"] == "std" and r["class"] == "overall" for r in rows)


def test_metrics_module_does_not_import_torch_qt_or_napari():
    code = ("import sys, napari_weakseg.evaluation.metrics; "
            "bad = [m for m in ('torch', 'napari', 'qtpy', 'PyQt5') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
