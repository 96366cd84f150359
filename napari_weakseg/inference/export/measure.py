"""Measurements of one exported volume and the cardiac maths of an ED/ES pair: class
volumes in mL, the QC flags (empty, fragmented, not enclosed, implausible EF), LV/RV
EDV/ESV/SV/EF and the myocardial mass. Pure numpy/scipy; no file is read or written here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...postprocess import (Postprocessing, component_count, enclosed_fraction, fill_holes,
                            keep_largest_component)
from .cohort import ExportItem

#: density of myocardium used for the LV mass (g/mL)
MYOCARDIUM_DENSITY_G_PER_ML = 1.05
#: a class is "fragmented" when at least this fraction of its voxels lies outside its
#: largest connected component (26-connectivity, raw network output)
FRAGMENT_FRACTION = 0.05
#: a class with an ``enclosed_by`` rule is "not enclosed" when less than this fraction of
#: its voxels lies inside the enclosing class (hole-filled, per slice). On the 160 ACDC
#: ground-truth masks the LV-in-MYO fraction is ≥ 0.71 (1st percentile 0.88).
ENCLOSED_FRACTION = 0.7
#: plausible ejection fraction (%); outside it the cardiac row is flagged
EF_RANGE = (5.0, 90.0)
CARDIAC_ALIASES = {
    "LV": ("lv", "lv_cavity", "left_ventricle", "left_ventricular_cavity"),
    "RV": ("rv", "rv_cavity", "right_ventricle", "right_ventricular_cavity"),
    "MYO": ("myo", "myocardium", "lv_myocardium", "left_ventricular_myocardium"),
}
CARDIAC_COLUMNS = ("LV_EDV_ml", "LV_ESV_ml", "LV_SV_ml", "LV_EF_pct",
                   "RV_EDV_ml", "RV_ESV_ml", "RV_SV_ml", "RV_EF_pct", "MYO_mass_g")


# -- post-processing ---------------------------------------------------------------------------
def postprocess(labels: np.ndarray, num_classes: int, *, largest_component: bool = False,
                holes: bool = False) -> np.ndarray:
    """Largest component per class first, then hole filling (each optional). Legacy
    helper: the export post-processes by name (:mod:`napari_weakseg.postprocess`)."""
    if largest_component:
        labels = keep_largest_component(labels, num_classes)
    if holes:
        labels = fill_holes(labels)
    return labels


# -- measurements ------------------------------------------------------------------------------
def measure_volume(labels: np.ndarray, voxel_ml: float, classes: Sequence[str], *,
                   entropy: np.ndarray | None = None,
                   raw_labels: np.ndarray | None = None,
                   rules: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Per foreground class: ``voxels`` and ``ml`` (voxels × ``voxel_ml``); the QC:
    ``mean_uncertainty`` (mean ``entropy`` / ln C over predicted foreground, all voxels
    when there is none; ``None`` without entropy) and ``qc`` flags — ``empty:CLASS`` (no
    voxel in ``labels``) and ``fragmented:CLASS`` (in ``raw_labels``, default ``labels``,
    ≥ :data:`FRAGMENT_FRACTION` of the class outside its largest 26-connected component),
    ``not_enclosed:CLASS`` (a schema rule ``enclosed_by`` in ``rules`` and less than
    :data:`ENCLOSED_FRACTION` of the class inside its enclosing class). Also returned:
    ``measured_fragments`` / ``measured_outside`` (components of ``labels`` itself and the
    fraction outside the largest) and ``enclosed`` (class → fraction inside)."""
    num_classes = len(classes)
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64),
                         minlength=num_classes)[:num_classes]
    raw = labels if raw_labels is None else raw_labels
    voxels, ml, flags, fragments = {}, {}, [], {}
    for c, name in enumerate(classes):
        if c == 0:
            continue
        voxels[name] = int(counts[c])
        ml[name] = float(counts[c]) * float(voxel_ml)
        if counts[c] == 0:
            flags.append(f"empty:{name}")
        fragments[name], outside = component_count(raw == c)
        if fragments[name] > 1 and outside >= FRAGMENT_FRACTION:
            flags.append(f"fragmented:{name}")
    measured_fragments, measured_outside = {}, {}
    for c, name in enumerate(classes):
        if c:
            measured_fragments[name], measured_outside[name] = component_count(
                np.asarray(labels) == c)
    enclosed = {}
    for inner, outer in Postprocessing("none", dict(rules or {})).enclosures(classes):
        fraction = enclosed_fraction(labels, inner, outer)
        if fraction is not None:
            enclosed[classes[inner]] = fraction
            if fraction < ENCLOSED_FRACTION:
                flags.append(f"not_enclosed:{classes[inner]}")
    mean_uncertainty = None
    if entropy is not None:
        foreground = np.asarray(labels) > 0
        values = entropy[foreground] if foreground.any() else entropy
        mean_uncertainty = float(values.mean() / math.log(num_classes)) if values.size else 0.0
    return {"voxels": voxels, "ml": ml, "mean_uncertainty": mean_uncertainty,
            "qc": flags, "fragments": fragments, "measured_fragments": measured_fragments,
            "measured_outside": measured_outside, "enclosed": enclosed}


def cardiac_class_names(classes: Sequence[str]) -> dict[str, str]:
    """Canonical ``LV``/``RV``/``MYO`` → the model's class name, for those it has."""
    found = {}
    for name in classes[1:]:
        key = re.sub(r"[\s-]+", "_", name.strip().lower())
        for canonical, aliases in CARDIAC_ALIASES.items():
            if key in aliases and canonical not in found:
                found[canonical] = name
    return found


def cardiac_function(ed_ml: Mapping[str, float], es_ml: Mapping[str, float]
                     ) -> dict[str, float | None]:
    """From canonical class volumes (mL) at ED and ES: ``{LV,RV}_{EDV,ESV,SV}_ml``,
    ``{LV,RV}_EF_pct`` = (EDV − ESV) / EDV · 100 (``None`` when EDV is 0) and
    ``MYO_mass_g`` = ED myocardium mL × 1.05 g/mL, for the classes present."""
    out: dict[str, float | None] = {}
    for cavity in ("LV", "RV"):
        if cavity in ed_ml and cavity in es_ml:
            edv, esv = float(ed_ml[cavity]), float(es_ml[cavity])
            out[f"{cavity}_EDV_ml"] = edv
            out[f"{cavity}_ESV_ml"] = esv
            out[f"{cavity}_SV_ml"] = edv - esv
            out[f"{cavity}_EF_pct"] = (edv - esv) / edv * 100.0 if edv > 0 else None
    if "MYO" in ed_ml:
        out["MYO_mass_g"] = float(ed_ml["MYO"]) * MYOCARDIUM_DENSITY_G_PER_ML
    return out


def cardiac_qc(function: Mapping[str, float | None], ed: Mapping[str, Any],
               es: Mapping[str, Any], cardiac: Mapping[str, str]) -> list[str]:
    """Flags of one ED/ES pair's cardiac row (empty: ok). ``ed``/``es``: the frames'
    measurements (:func:`measure_volume`), ``cardiac``: canonical → class name.

    ``fragmented:CLASS@FRAME`` (the measured mask has ≥ :data:`FRAGMENT_FRACTION` of the
    class outside its largest 3D component), ``empty:CLASS@FRAME``,
    ``not_enclosed:CLASS@FRAME`` (a schema ``enclosed_by`` rule fails, see
    :func:`measure_volume`), ``implausible_EF:LV=…`` (EF outside :data:`EF_RANGE`, or none)."""
    flags = []
    for frame, m in (("ED", ed), ("ES", es)):
        for canonical in ("LV", "RV", "MYO"):
            name = cardiac.get(canonical)
            if name is None:
                continue
            if not m["voxels"].get(name):
                flags.append(f"empty:{name}@{frame}")
                continue
            outside = m.get("measured_outside", {}).get(name)
            if outside is None:  # a record without it: judge by the raw output
                outside = FRAGMENT_FRACTION if f"fragmented:{name}" in m["qc"] else 0.0
            if outside >= FRAGMENT_FRACTION:
                flags.append(f"fragmented:{name}@{frame}")
        flags += [f"{flag}@{frame}" for flag in m["qc"] if flag.startswith("not_enclosed:")]
    low, high = EF_RANGE
    for cavity in ("LV", "RV"):
        key = f"{cavity}_EF_pct"
        if key in function:
            ef = function[key]
            if ef is None or not low <= ef <= high:
                shown = "none" if ef is None else f"{ef:.1f}"
                flags.append(f"implausible_EF:{cavity}={shown}")
    return list(dict.fromkeys(flags))


def cardiac_pairs(items: Sequence[ExportItem]) -> dict[str, tuple[str, str]]:
    """``subject → (ED name, ES name)`` for subjects with exactly one volume tagged
    ``frame`` ED and one ES."""
    frames: dict[str, dict[str, list[str]]] = {}
    for item in items:
        subject, frame = item.tags.get("subject"), str(item.tags.get("frame", "")).upper()
        if subject and frame in ("ED", "ES"):
            frames.setdefault(subject, {"ED": [], "ES": []})[frame].append(item.name)
    return {subject: (f["ED"][0], f["ES"][0]) for subject, f in sorted(frames.items())
            if len(f["ED"]) == 1 and len(f["ES"]) == 1}



__all__ = ["CARDIAC_ALIASES", "CARDIAC_COLUMNS", "EF_RANGE", "ENCLOSED_FRACTION",
           "FRAGMENT_FRACTION", "MYOCARDIUM_DENSITY_G_PER_ML", "cardiac_class_names",
           "cardiac_function", "cardiac_pairs", "cardiac_qc", "measure_volume", "postprocess"]
