"""Batch export of predictions for a cohort (see ``docs/export.md``).

A model folder is applied to every volume of a project, a folder or a list of files; the
output folder ``OUT`` receives::

    OUT/labels/NAME.nii.gz          class indices (uint8/uint16) on the input's grid and header
    OUT/probabilities/NAME.nii.gz   optional: softmax, float32, NIfTI (X, Y, Z, C)
    OUT/uncertainty/NAME.nii.gz     optional: voxel entropy of the softmax, float32, nats
    OUT/measurements.csv            one row per volume of the cohort (status, mL, QC, cardiac)
    OUT/cardiac.csv                 one row per ED/ES pair (LV/RV EDV, ESV, SV, EF; LV mass)
    OUT/manifest/NAME.json          what was exported, from which input and model (resume)
    OUT/export.log                  one line per volume and run (appended)
    OUT/qc/index.html               QC report: tables, EF/EDV plot, PNGs of volumes to check

Conventions: arrays are ``(Z, Y, X)``, probabilities ``(C, Z, Y, X)`` in memory; volumes
in mL are voxel counts × the voxel volume from the header's pixdim (mm³ / 1000); entropy is
in nats; ``mean_uncertainty`` is the mean entropy / ln C over the voxels predicted as
foreground (over all voxels when none is), in [0, 1].

Prediction goes through :class:`~napari_weakseg.inference.predictor.Predictor`: the
model's recorded pre-processing and, by default, its recorded post-processing
(``ExportOptions.postprocess`` overrides it explicitly: ``none``, ``largest``, ``anatomy``;
the manifest records which was used and where the choice came from).

QC that cannot lie: ``cardiac.csv`` has a ``qc`` column — ``ok`` only when no measurement
of the pair comes from a fragmented mask (a class with ≥ 5 % of its voxels outside its
largest 3D component, as measured), an ejection fraction outside 5–90 %, an empty cavity, or
a class not enclosed by the class the label schema says encloses it (e.g. LV by MYO).

Resume: a volume is skipped when its manifest record says it was exported by the same
model (hash of the weights and of the network/classes/pre-processing config) with the same
label options from the same input (size and mtime, else SHA-256), and its outputs exist.
Every output is first written (by :mod:`napari_weakseg.io`, atomically) into a staging
folder, then renamed into place, then the record is written — so a killed run leaves no
half-written file under a final name, and a failed volume replaces nothing.

Sharding: the cohort (sorted by name) is grouped by subject so that an ED/ES pair stays
together; group ``g`` goes to shard ``g mod n``. Under ``torchrun`` the shard is
``(i·WORLD_SIZE + RANK) / (n·WORLD_SIZE)``. Qt- and napari-free.

Modules: :mod:`.cohort` (inputs, sharding), :mod:`.records` (output layout, the manifest
record), :mod:`.measure` (measurements, cardiac maths, QC), :mod:`.tables` (CSV tables),
:mod:`.options` (options, progress events, report), :mod:`.qc` (the QC report),
:mod:`.run` (the run). Every name
below is importable from ``napari_weakseg.inference.export``.
"""

from __future__ import annotations

import importlib

#: name → the module (relative to this package) that defines it. Loaded on first use, so
#: ``weakseg --help`` (which builds the export flags from :class:`ExportOptions`) does not
#: import scipy, the model folder code and the QC report.
_SOURCES = {
    "model_identity": "...nets.model_folder",
    "fill_holes": "...postprocess", "keep_largest_component": "...postprocess",
    **dict.fromkeys(("Cohort", "ExportItem", "discover_inputs", "parse_shard",
                     "resolve_shard", "safe_name", "shard_items"), ".cohort"),
    **dict.fromkeys(("CARDIAC_ALIASES", "CARDIAC_COLUMNS", "EF_RANGE", "ENCLOSED_FRACTION",
                     "FRAGMENT_FRACTION", "MYOCARDIUM_DENSITY_G_PER_ML",
                     "cardiac_class_names", "cardiac_function", "cardiac_pairs", "cardiac_qc",
                     "measure_volume", "postprocess"), ".measure"),
    **dict.fromkeys(("ExportOptions", "ExportProgress", "ExportReport"), ".options"),
    "write_qc_report": ".qc",
    **dict.fromkeys(("CARDIAC_CSV", "LABELS_DIR", "LOG_FILE", "MANIFEST_DIR", "MAP_DIRS",
                     "MEASUREMENTS_CSV", "PROBABILITIES_DIR", "QC_DIR", "QC_INDEX",
                     "RECORD_VERSION", "STAGING_DIR", "UNCERTAINTY_DIR", "ExportRecord",
                     "read_record", "read_records"), ".records"),
    **dict.fromkeys(("ModelPredictor", "Predictor", "_Prefetcher", "export_cohort"), ".run"),
}

__all__ = sorted(name for name in _SOURCES if not name.startswith("_"))


def __getattr__(name: str):
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_SOURCES))
