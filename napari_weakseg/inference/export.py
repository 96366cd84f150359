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
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import queue
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..io.atomic import fsync_dir, write_bytes_atomic
from ..io.errors import VolumeError
from ..io.nifti import (LABEL_NAME_PATTERN, Volume, is_nifti_path, read_volume,
                        strip_nifti_suffix, write_labels, write_volume)
from ..io.formats import read_any, volume_format, volume_name
from ..errors import InputError, OptionError, OutputError
from ..nets.model_folder import model_identity
from ..postprocess import (POSTPROCESSORS, Postprocessing, component_count, enclosed_fraction,
                           fill_holes, keep_largest_component)
from .predictor import Predictor as _Predictor

log = logging.getLogger(__name__)

LABELS_DIR = "labels"
PROBABILITIES_DIR = "probabilities"
UNCERTAINTY_DIR = "uncertainty"
MANIFEST_DIR = "manifest"
STAGING_DIR = ".staging"
MEASUREMENTS_CSV = "measurements.csv"
CARDIAC_CSV = "cardiac.csv"
LOG_FILE = "export.log"
RECORD_VERSION = 1
MAP_DIRS = {"labels": LABELS_DIR, "probabilities": PROBABILITIES_DIR,
            "uncertainty": UNCERTAINTY_DIR}
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
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


# -- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportItem:
    """One input volume. ``name`` (unique in the cohort) names the outputs; ``tags`` may
    hold ``subject`` and ``frame`` (``ED``/``ES``); ``sha256`` is known for project volumes,
    whose ``reader`` (the project's checked read) replaces a plain file read."""

    name: str
    path: Path
    tags: Mapping[str, str] = field(default_factory=dict)
    sha256: str | None = None
    reader: Callable[[], Volume] | None = field(default=None, compare=False, repr=False)

    @property
    def group(self) -> str:
        """Sharding unit: the subject (keeps ED/ES pairs together), else the name."""
        return self.tags.get("subject") or self.name


@dataclass
class Cohort:
    """The discovered inputs, sorted by name; ``ignored`` says which files were left out
    and why. Close it (or use ``with``) to close the projects it opened."""

    items: list[ExportItem]
    ignored: list[str] = field(default_factory=list)
    projects: list[Any] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for project in self.projects:
            project.close()
        self.projects.clear()

    def __enter__(self) -> Cohort:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def safe_name(name: str) -> str:
    """A file-name-safe stem (letters, digits, ``._-``)."""
    return _SAFE.sub("_", name).strip(".") or "volume"


def discover_inputs(sources: Iterable[str | os.PathLike], *,
                    tags: Mapping[str, str] | None = None) -> Cohort:
    """Inputs of ``sources``: a project folder (its volumes, filtered by ``tags``), a folder
    (its ``.nii``/``.nii.gz`` files, not recursive; files named like labels — ``_gt``,
    ``_seg``, … — are left out and listed in ``ignored``) or single files (a missing or bad
    file stays in the cohort and fails when read, so it is reported).

    Cardiac tags (``subject``, ``frame`` ED/ES) come from the store, else from ACDC-style
    names (``patientNNN_frameFF``, ED = the lower frame number). Raises ``ValueError`` for
    two inputs with the same output name or tag filters without a project.
    """
    from ..store.importers import acdc_tags
    from ..store.manifest import MANIFEST_NAME
    from ..store.project import Project

    items: list[ExportItem] = []
    ignored: list[str] = []
    projects: list[Any] = []
    try:
        for source in sources:
            path = Path(source)
            if path.is_dir() and (path / MANIFEST_NAME).exists():
                project = Project.open(path)
                projects.append(project)
                for record in project.volumes(**dict(tags or {})):
                    items.append(ExportItem(
                        record.name, record.image_path, dict(record.tags), record.sha256,
                        _project_reader(project, record.id)))
            elif path.is_dir():
                for file in sorted(p for p in path.iterdir()
                                   if p.is_file() and volume_format(p) in ("nifti", "sitk")
                                   and not p.name.startswith(".")):
                    if LABEL_NAME_PATTERN.search(file.name):
                        ignored.append(f"{file}: named like a label file; not exported")
                        continue
                    items.append(ExportItem(volume_name(file), file))
            else:
                items.append(ExportItem(volume_name(path), path))
        if tags and not projects:
            raise OptionError("tag filters select volumes of a project; no project was given")
        parsed = acdc_tags(item.name for item in items)
        items = [ExportItem(item.name, item.path, {**parsed.get(item.name, {}), **item.tags},
                            item.sha256, item.reader) for item in items]
        seen: dict[str, ExportItem] = {}
        for item in items:
            key = safe_name(item.name).lower()
            if key in seen:
                raise OutputError(f"{item.path}: its output name {safe_name(item.name)!r} is "
                                 f"also that of {seen[key].path}; export them separately")
            seen[key] = item
    except BaseException:
        for project in projects:
            project.close()
        raise
    items.sort(key=lambda item: item.name)
    return Cohort(items, ignored, projects)


def _project_reader(project, volume_id: int) -> Callable[[], Volume]:
    def read() -> Volume:
        return project.read_image(volume_id)  # checks the SHA-256 and the recorded grid
    return read


# -- sharding ----------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based ``i`` < ``n``) → ``(i, n)``; ``ValueError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise OptionError(f"shard must read i/n (e.g. 0/4), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise OptionError(f"shard {text!r}: need 0 <= i < n (i is 0-based)")
    return index, count


def resolve_shard(shard: tuple[int, int] | None,
                  environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The effective ``(index, count)``: ``shard`` split further over the ``torchrun``
    ranks (``RANK``/``WORLD_SIZE`` in ``environ``) when those are set."""
    environ = os.environ if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    rank = int(environ.get("RANK", "0") or 0)
    if not 0 <= rank < world:
        raise OptionError(f"RANK {rank} is outside WORLD_SIZE {world}")
    index, count = shard if shard is not None else (0, 1)
    if count < 1 or not 0 <= index < count:
        raise OptionError(f"shard {index}/{count}: need 0 <= i < n")
    return index * world + rank, count * world


def shard_items(items: Sequence[ExportItem], index: int, count: int) -> list[ExportItem]:
    """The items of shard ``index`` of ``count``: subject groups sorted by key, group ``g``
    to shard ``g mod count``; order within the shard as in ``items``."""
    groups = sorted({item.group for item in items})
    mine = set(groups[index::count])
    return [item for item in items if item.group in mine]


# -- the model ---------------------------------------------------------------------------------
class Predictor(Protocol):
    """What the export needs from a model: class names (index 0 background), an identity
    string (changes when the model does) and ``predict(image (Z, Y, X), flip_tta)`` →
    :class:`~napari_weakseg.inference.predict.Prediction` with probabilities and entropy."""

    classes: list[str]
    identity: str

    def predict(self, image: np.ndarray, flip_tta: bool = False): ...


class ModelPredictor(_Predictor):
    """A model folder for export: the shared
    :class:`~napari_weakseg.inference.predictor.Predictor` (recorded pre- and
    post-processing; ``postprocess`` overrides the latter)."""

    def __init__(self, folder: str | os.PathLike, device: str = "auto",
                 batch_slices: int = 16, postprocess: str | None = None):
        super().__init__(folder, device or "auto", postprocess, batch_slices=batch_slices)


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
    from scipy import ndimage

    num_classes = len(classes)
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64),
                         minlength=num_classes)[:num_classes]
    raw = labels if raw_labels is None else raw_labels
    structure = ndimage.generate_binary_structure(3, 3)
    voxels, ml, flags, fragments = {}, {}, [], {}
    for c, name in enumerate(classes):
        if c == 0:
            continue
        voxels[name] = int(counts[c])
        ml[name] = float(counts[c]) * float(voxel_ml)
        if counts[c] == 0:
            flags.append(f"empty:{name}")
        mask = raw == c
        components, n = ndimage.label(mask, structure) if mask.any() else (None, 0)
        fragments[name] = int(n)
        if n > 1:
            sizes = np.bincount(components.ravel())[1:]
            if 1.0 - sizes.max() / sizes.sum() >= FRAGMENT_FRACTION:
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


# -- options, events, report -------------------------------------------------------------------
@dataclass(frozen=True)
class ExportOptions:
    """What to write and how. ``shard``: ``(i, n)`` 0-based (``None``: the whole cohort,
    or the ``torchrun`` rank's part); ``prefetch``: volumes read ahead by a background
    thread (0: read inline); ``threads``: torch CPU threads (``None``: torch's default).
    ``postprocess``: ``none``, ``largest`` or ``anatomy`` (``None``: the model's recorded
    post-processing); ``largest_component`` is the old spelling of ``postprocess="largest"``."""

    probabilities: bool = False
    uncertainty: bool = False
    largest_component: bool = False
    fill_holes: bool = False
    flip_tta: bool = False
    device: str = "auto"
    force: bool = False
    shard: tuple[int, int] | None = None
    prefetch: int = 1
    threads: int | None = None
    batch_slices: int = 16
    postprocess: str | None = None

    def __post_init__(self):
        if self.postprocess is not None and self.postprocess not in POSTPROCESSORS:
            raise OptionError(f"--postprocess: {self.postprocess!r} is not one of "
                              f"{', '.join(POSTPROCESSORS)}")
        if self.postprocess not in (None, "largest") and self.largest_component:
            raise OptionError(f"--largest-component contradicts --postprocess "
                              f"{self.postprocess}")

    def requested_postprocess(self) -> str | None:
        """The explicit choice (``largest_component`` means ``largest``), else ``None``."""
        return self.postprocess or ("largest" if self.largest_component else None)

    def label_options(self, recorded: str = "none") -> dict:
        """The options that change the labels (a change redoes the volume); ``recorded``:
        the model's post-processing, used unless one is requested."""
        return {"flip_tta": self.flip_tta,
                "postprocess": self.requested_postprocess() or recorded,
                "fill_holes": self.fill_holes}

    def maps(self) -> list[str]:
        return ["labels"] + [m for m in ("probabilities", "uncertainty") if getattr(self, m)]


@dataclass(frozen=True)
class ExportProgress:
    """One step of a run. ``status``: ``started`` (``total`` known), ``exported``,
    ``skipped``, ``failed`` (``message`` is the error), ``finished`` or ``cancelled``;
    ``done`` counts volumes of this shard handled so far; ``seconds`` the volume's time."""

    status: str
    done: int
    total: int
    name: str | None = None
    message: str = ""
    seconds: float = 0.0


@dataclass
class ExportReport:
    """Outcome of :func:`export_cohort` for this shard; ``exit_code`` 0 all done, 1 a
    volume failed, 130 cancelled (without failures)."""

    out_dir: Path
    cohort: int
    shard: tuple[int, int]
    total: int = 0
    exported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_done: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    cancelled: bool = False
    csv_path: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.cancelled

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else (130 if self.cancelled else 0)

    def summary(self) -> str:
        text = (f"{len(self.exported)} exported, {len(self.skipped)} already done, "
                f"{len(self.failed)} failed of {self.total} volumes")
        if self.shard[1] > 1:
            text += f" (shard {self.shard[0]}/{self.shard[1]} of a {self.cohort}-volume cohort)"
        if self.cancelled:
            text += f"; cancelled, {len(self.not_done)} not done"
        return text + f" in {self.seconds:.1f} s"


# -- the run -----------------------------------------------------------------------------------
def export_cohort(model: str | os.PathLike | Predictor,
                  sources: Iterable[str | os.PathLike] | Cohort,
                  out_dir: str | os.PathLike, options: ExportOptions | None = None, *,
                  tags: Mapping[str, str] | None = None,
                  progress: Callable[[ExportProgress], None] | None = None,
                  cancel: threading.Event | None = None,
                  message: Callable[[str], None] | None = None) -> ExportReport:
    """Export this shard of the cohort of ``sources`` (see :func:`discover_inputs`) with
    ``model`` (a model folder or a :class:`Predictor`) into ``out_dir``.

    ``progress`` is called (in this thread) after each volume; setting ``cancel`` stops
    after the current volume; ``message`` receives the log lines. A bad input is reported
    (log, CSV, report) and skipped. Errors that concern the whole run (no inputs, a bad
    model folder, outputs that would replace an input) raise ``ValueError``.
    """
    options = options or ExportOptions()
    cohort = sources if isinstance(sources, Cohort) else discover_inputs(sources, tags=tags)
    owns_cohort = not isinstance(sources, Cohort)
    try:
        return _Export(model, cohort, Path(out_dir), options, progress, cancel,
                       message).run()
    finally:
        if owns_cohort:
            cohort.close()


class _Export:
    def __init__(self, model, cohort: Cohort, out_dir: Path, options: ExportOptions,
                 progress, cancel, message):
        if not cohort.items:
            raise InputError("no input volumes found" + (
                f" ({len(cohort.ignored)} files left out: {cohort.ignored[0]} …)"
                if cohort.ignored else ""))
        self.model = model
        self.cohort = cohort
        self.out = out_dir
        self.options = options
        self.progress = progress or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.message = message
        self.shard = resolve_shard(options.shard)
        self.items = shard_items(cohort.items, *self.shard)
        self._check_outputs_do_not_replace_inputs()

    # -- helpers -------------------------------------------------------------------------
    def _check_outputs_do_not_replace_inputs(self) -> None:
        inputs = {str(item.path.resolve()) for item in self.cohort.items}
        for item in self.cohort.items:
            for folder in MAP_DIRS.values():
                target = (self.out / folder / f"{safe_name(item.name)}.nii.gz").resolve()
                if str(target) in inputs:
                    raise OutputError(f"{target}: the export would replace this input; choose "
                                     "another output folder")

    def _output(self, kind: str, item: ExportItem) -> Path:
        return self.out / MAP_DIRS[kind] / f"{safe_name(item.name)}.nii.gz"

    def _record_path(self, item: ExportItem) -> Path:
        return self.out / MANIFEST_DIR / f"{safe_name(item.name)}.json"

    def _log(self, text: str) -> None:
        shard = f" [shard {self.shard[0]}/{self.shard[1]}]" if self.shard[1] > 1 else ""
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}{shard} {text}"
        log.info(text)
        try:
            with open(self.out / LOG_FILE, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:  # the log must never stop the export
            log.warning("cannot write %s: %s", self.out / LOG_FILE, exc)
        if self.message:
            self.message(text)

    def read_record(self, item: ExportItem) -> dict | None:
        path = self._record_path(item)
        try:
            record = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return None
        return record if record.get("version") == RECORD_VERSION else None

    def _write_record(self, item: ExportItem, record: dict) -> None:
        write_bytes_atomic(self._record_path(item),
                           json.dumps(record, indent=1, default=_json_default).encode())

    def _record_is_current(self, record: dict | None) -> bool:
        return (record is not None and record.get("status") == "ok"
                and record.get("model_id") == self.model_id
                and record.get("options") == self.label_options
                and set(self.options.maps()) <= set(record.get("outputs", {})))

    def _up_to_date(self, item: ExportItem) -> bool:
        record = self.read_record(item)
        if not self._record_is_current(record):
            return False
        if any(not (self.out / rel).is_file() for rel in record["outputs"].values()):
            return False
        known = record.get("input", {})
        if item.sha256 is not None:
            return known.get("sha256") == item.sha256
        try:
            stat = item.path.stat()
        except OSError:
            return False
        if known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
            return True
        from ..store.project import sha256_file

        return known.get("sha256") == sha256_file(item.path)

    def _clean_leftovers(self) -> None:
        """Remove what a killed run of this shard left: staging folders and temporary
        manifest files of this shard's volumes (nothing under a final name)."""
        for item in self.items:
            stem = safe_name(item.name)
            shutil.rmtree(self.out / STAGING_DIR / stem, ignore_errors=True)
            for tmp in (self.out / MANIFEST_DIR).glob(f".{stem}.json.*.tmp"):
                tmp.unlink(missing_ok=True)

    def _read(self, item: ExportItem):
        """Runs in the prefetch thread: the volume and what identifies the input."""
        from ..store.project import sha256_file

        stat = item.path.stat() if item.path.exists() else None
        volume = item.reader() if item.reader else read_any(item.path, allow_4d=False)
        digest = item.sha256 or sha256_file(item.path)
        return volume, {"path": str(item.path.resolve()),
                        "size": stat.st_size if stat else None,
                        "mtime_ns": stat.st_mtime_ns if stat else None, "sha256": digest}

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> ExportReport:
        started = time.perf_counter()
        predictor = self.model if not isinstance(self.model, (str, os.PathLike)) \
            else self._load_model()  # a bad model folder raises before anything is written
        self.predictor = predictor
        self.model_id = predictor.identity
        self.classes = list(predictor.classes)
        recorded = getattr(predictor, "recorded_postprocessing", None) or Postprocessing("none")
        requested = self.options.requested_postprocess()
        self.post = recorded.with_name(requested)
        self.postprocess_info = {"name": self.post.name,
                                 "source": "override" if requested else "model",
                                 "model": recorded.name, "rules": dict(recorded.rules)}
        self.label_options = self.options.label_options(recorded.name)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / MANIFEST_DIR).mkdir(exist_ok=True)
        distributed = _init_distributed()
        report = ExportReport(self.out, len(self.cohort.items), self.shard,
                              total=len(self.items), ignored=list(self.cohort.ignored))
        try:
            self._clean_leftovers()
            for text in self.cohort.ignored:
                self._log(f"ignored {text}")
            todo = []
            for item in self.items:
                if not self.options.force and self._up_to_date(item):
                    report.skipped.append(item.name)
                else:
                    todo.append(item)
            self._log(f"export of {len(self.items)} volumes with model {self.model_id} "
                      f"({len(report.skipped)} already done) into {self.out}")
            self.progress(ExportProgress("started", len(report.skipped), report.total))
            for name in report.skipped:
                self._log(f"skipped {name}: already exported with this model")
            done = len(report.skipped)
            if todo and hasattr(predictor, "load"):
                predictor.load()
            threads_before = None
            if self.options.threads:
                import torch

                threads_before = torch.get_num_threads()
                torch.set_num_threads(self.options.threads)
            loader = _Prefetcher(todo, self._read, self.options.prefetch)
            try:
                for item, loaded in loader:
                    if self.cancel.is_set():
                        break
                    status, text, seconds = self._export_one(item, loaded)
                    done += 1
                    if status == "exported":
                        report.exported.append(item.name)
                    else:
                        report.failed[item.name] = text
                    self.progress(ExportProgress(status, done, report.total, item.name,
                                                 text, seconds))
            finally:
                loader.close()
                if threads_before is not None:
                    import torch

                    torch.set_num_threads(threads_before)  # the caller's setting again
                try:
                    (self.out / STAGING_DIR).rmdir()  # only when empty (no other shard busy)
                except OSError:
                    pass
            handled = set(report.exported) | set(report.failed) | set(report.skipped)
            report.not_done = [i.name for i in self.items if i.name not in handled]
            report.cancelled = bool(report.not_done) and self.cancel.is_set()
        finally:
            if distributed:
                _barrier_and_destroy()
        rank0 = int(os.environ.get("RANK", "0") or 0) == 0 or not distributed
        if rank0:
            report.csv_path = self.write_tables()
        report.seconds = time.perf_counter() - started
        self._log(("cancelled: " if report.cancelled else "finished: ") + report.summary())
        self.progress(ExportProgress("cancelled" if report.cancelled else "finished",
                                     report.total - len(report.not_done), report.total))
        return report

    def _load_model(self) -> ModelPredictor:
        return ModelPredictor(self.model, self.options.device, self.options.batch_slices,
                              postprocess=self.options.requested_postprocess())

    def _predict(self, volume):
        """The prediction with the effective post-processing: through the shared
        :class:`Predictor`, or (another object with ``predict(image, flip_tta)``) its raw
        labels post-processed here by name."""
        if isinstance(self.predictor, _Predictor):
            return self.predictor.predict(volume.data, volume.geometry.spatial_spacing,
                                          flip_tta=self.options.flip_tta,
                                          postprocess=self.post.name)
        prediction = self.predictor.predict(volume.data, flip_tta=self.options.flip_tta)
        raw = np.asarray(prediction.labels)
        prediction.raw_labels = raw
        prediction.labels = self.post(raw, self.classes, prediction.probabilities)
        prediction.postprocess = self.post.name
        return prediction

    def _export_one(self, item: ExportItem, loaded) -> tuple[str, str, float]:
        start = time.perf_counter()
        try:
            if isinstance(loaded, BaseException):
                raise loaded
            volume, input_info = loaded
            prediction = self._predict(volume)
            raw = np.asarray(prediction.raw_labels if prediction.raw_labels is not None
                             else prediction.labels)
            labels = np.asarray(prediction.labels)
            if self.options.fill_holes:
                labels = fill_holes(labels)
            geometry = volume.geometry
            measurements = measure_volume(labels, geometry.voxel_volume_ml, self.classes,
                                          entropy=prediction.entropy, raw_labels=raw,
                                          rules=self.post.rules)
            outputs = self._write_outputs(item, geometry, labels, prediction)
        except Exception as exc:  # one bad volume never stops the cohort
            seconds = time.perf_counter() - start
            text = str(exc) if isinstance(exc, VolumeError) else \
                f"{item.path}: {type(exc).__name__}: {exc}"
            kept = [str(p) for p in (self._output(k, item) for k in MAP_DIRS) if p.exists()]
            self._write_record(item, {
                "version": RECORD_VERSION, "name": item.name, "status": "failed",
                "error": text, "input": {"path": str(item.path)}, "model_id": self.model_id,
                "options": self.label_options, "postprocess": self.postprocess_info,
                "tags": dict(item.tags), "kept_outputs": kept, "finished_at": _now()})
            self._log(f"failed {item.name}: {text}"
                      + (f" (earlier outputs kept: {', '.join(kept)})" if kept else ""))
            if not isinstance(exc, VolumeError):
                self._log("".join(traceback.format_exception(exc)).rstrip())
            return "failed", text, seconds
        seconds = time.perf_counter() - start
        self._write_record(item, {
            "version": RECORD_VERSION, "name": item.name, "status": "ok", "error": None,
            "input": input_info, "model_id": self.model_id,
            "options": self.label_options, "postprocess": self.postprocess_info,
            "preprocessing": getattr(self.predictor, "config", {}).get("preprocessing"),
            "outputs": outputs,
            "tags": dict(item.tags), "shape": list(geometry.spatial_shape),
            "spacing_mm": list(geometry.spatial_spacing), "voxel_ml": geometry.voxel_volume_ml,
            "measurements": measurements, "seconds": round(seconds, 3), "finished_at": _now()})
        self._log(f"exported {item.name} in {seconds:.2f} s"
                  + (f" (QC: {', '.join(measurements['qc'])})" if measurements["qc"] else ""))
        return "exported", outputs["labels"], seconds

    def _write_outputs(self, item: ExportItem, geometry, labels: np.ndarray,
                       prediction) -> dict[str, str]:
        """Write every map into the staging folder, then rename each into place."""
        staging = self.out / STAGING_DIR / safe_name(item.name)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        staged = {"labels": write_labels(staging / "labels.nii.gz", labels, geometry)}
        if self.options.probabilities:
            if prediction.probabilities is None:
                raise ValueError("the model gave no probabilities")
            staged["probabilities"] = write_volume(
                staging / "probabilities.nii.gz", prediction.probabilities, geometry,
                dtype=np.float32)
        if self.options.uncertainty:
            if prediction.entropy is None:
                raise ValueError("the model gave no uncertainty")
            staged["uncertainty"] = write_volume(staging / "uncertainty.nii.gz",
                                                 prediction.entropy, geometry,
                                                 dtype=np.float32)
        outputs = {}
        for kind, path in staged.items():
            target = self._output(kind, item)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            fsync_dir(target.parent)
            outputs[kind] = target.relative_to(self.out).as_posix()
        shutil.rmtree(staging, ignore_errors=True)
        return outputs

    # -- tables --------------------------------------------------------------------------
    def write_tables(self) -> Path:
        """Rebuild ``measurements.csv`` (and ``cardiac.csv``) from the manifest records of
        the whole cohort — volumes of other shards included once their records exist."""
        records = {item.name: self.read_record(item) for item in self.cohort.items}
        current = {name: rec for name, rec in records.items()
                   if rec is not None and rec.get("model_id") == self.model_id}
        ok = {name: rec for name, rec in current.items() if self._record_is_current(rec)}
        cardiac = cardiac_class_names(self.classes)
        pairs = cardiac_pairs(self.cohort.items) if cardiac else {}
        function: dict[str, dict] = {}
        for subject, (ed, es) in pairs.items():
            if ed in ok and es in ok:
                ed_ml = {c: ok[ed]["measurements"]["ml"][n] for c, n in cardiac.items()}
                es_ml = {c: ok[es]["measurements"]["ml"][n] for c, n in cardiac.items()}
                function[subject] = cardiac_function(ed_ml, es_ml)
        subject_of = {n: s for s, pair in pairs.items() for n in pair}
        class_columns = [f"{name}_{unit}" for name in self.classes[1:]
                         for unit in ("voxels", "ml")]
        cardiac_columns = [c for c in CARDIAC_COLUMNS if c.split("_")[0] in cardiac]
        columns = (["name", "status", "error", "subject", "frame", "input", "labels",
                    "probabilities", "uncertainty", "shape_zyx", "spacing_zyx_mm", "voxel_ml"]
                   + class_columns + ["mean_uncertainty", "qc"] + cardiac_columns
                   + ["model_id", "exported_at"])
        rows = []
        for item in self.cohort.items:
            rec = records[item.name]
            row = {"name": item.name, "subject": item.tags.get("subject", ""),
                   "frame": item.tags.get("frame", ""), "input": str(item.path)}
            if item.name in ok:
                m = rec["measurements"]
                row.update({
                    "status": "ok", "input": rec["input"]["path"],
                    **{k: rec["outputs"].get(k, "") for k in MAP_DIRS},
                    "shape_zyx": "x".join(str(s) for s in rec["shape"]),
                    "spacing_zyx_mm": "x".join(_fmt(s) for s in rec["spacing_mm"]),
                    "voxel_ml": _fmt(rec["voxel_ml"]),
                    "mean_uncertainty": _fmt(m["mean_uncertainty"]),
                    "qc": ";".join(m["qc"]) or "ok", "model_id": rec["model_id"],
                    "exported_at": rec["finished_at"]})
                for name in self.classes[1:]:
                    row[f"{name}_voxels"] = m["voxels"][name]
                    row[f"{name}_ml"] = _fmt(m["ml"][name])
                row.update({k: _fmt(v) for k, v in
                            function.get(subject_of.get(item.name, ""), {}).items()})
            elif item.name in current and rec.get("status") == "failed":
                row.update({"status": "failed", "error": rec.get("error", ""),
                            "model_id": rec["model_id"], "exported_at": rec["finished_at"]})
            else:
                row["status"] = "pending"
            rows.append(row)
        path = self.out / MEASUREMENTS_CSV
        _write_csv(path, columns, rows)
        if pairs:
            subject_columns = ["subject", "ED", "ES", "status"] + cardiac_columns + ["qc"]
            subject_rows = [{"subject": s, "ED": ed, "ES": es,
                             "status": "ok" if s in function else "incomplete",
                             **{k: _fmt(v) for k, v in function.get(s, {}).items()},
                             "qc": ";".join(cardiac_qc(
                                 function[s], ok[ed]["measurements"], ok[es]["measurements"],
                                 cardiac)) or "ok" if s in function else ""}
                            for s, (ed, es) in pairs.items()]
            _write_csv(self.out / CARDIAC_CSV, subject_columns, subject_rows)
        return path


class _Prefetcher:
    """Reads the next ``depth`` volumes in a background thread while the caller predicts;
    yields ``(item, (volume, input) | exception)`` in order. ``depth`` 0 reads inline."""

    _END = object()

    def __init__(self, items: Sequence[ExportItem], read, depth: int):
        self.items, self.read, self.depth = list(items), read, depth
        self.stop = threading.Event()
        self.queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self.thread = None
        if depth > 0 and self.items:
            self.thread = threading.Thread(target=self._run, name="weakseg-export-prefetch",
                                           daemon=True)
            self.thread.start()

    def _load(self, item):
        try:
            return self.read(item)
        except Exception as exc:
            return exc

    def _put(self, entry) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        for item in self.items:
            if self.stop.is_set() or not self._put((item, self._load(item))):
                return
        self._put(self._END)

    def __iter__(self) -> Iterator:
        if self.thread is None:
            for item in self.items:
                yield item, self._load(item)
            return
        while True:
            entry = self.queue.get()
            if entry is self._END:
                return
            yield entry

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def _init_distributed() -> bool:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 with a rendezvous address), join a gloo group
    so that rank 0 can write the tables once every rank is done. True if we joined."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
    return True


def _barrier_and_destroy() -> None:
    import torch.distributed as dist

    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    write_bytes_atomic(path, buffer.getvalue().encode())


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(float(value), ".10g")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


__all__ = [
    "Cohort", "ExportItem", "ExportOptions", "ExportProgress", "ExportReport",
    "ModelPredictor", "Predictor", "cardiac_class_names", "cardiac_function", "cardiac_pairs",
    "cardiac_qc",
    "discover_inputs", "export_cohort", "fill_holes", "keep_largest_component",
    "measure_volume", "model_identity", "parse_shard", "postprocess", "resolve_shard",
    "safe_name", "shard_items",
]
