"""What the WeakSeg panels do, without Qt or napari: the panels are thin faces over this.

Everything here is callable from a plain script or a test; heavy imports (torch, the
methods) happen inside the functions that need them. Functions that take time (loading a
volume, saving, training-stream reading, prediction) are run by the panels through their
executor, off the Qt main thread.

Size: the Qt-free logic of all five panels in one module, the one API the panels call and
their tests patch; small independent functions grouped by panel (a split per panel is
possible but would move that API).
"""

from __future__ import annotations

import getpass
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..inference.suggest import SuggestFor
from ..training import project_runs
from ..training.project_runs import (  # noqa: F401  (the panels' API)
    RunHandle,
    find_run_id,
    finalise_run,
    lower_priority,
    resumable_run,
    training_stream,
)

#: Annotation kinds offered for painting, with a one-line explanation.
KINDS = {
    "scribble": "Scribble — strokes: this voxel is the class",
    "coarse_pos": "Coarse + — rough mask inside a structure",
    "coarse_neg": "Coarse − — this voxel is NOT the class",
    "partial": "Partial — full masks of some classes only",
    "sparse": "Sparse — full masks on some slices",
}
#: Training profiles shown in the Train panel (``training.config.PROFILES`` keys).
PROFILE_LABELS = {"cpu": "CPU (default): 128² patches at the data's spacing, width 8, "
                         "1000 it.",
                  "paper": "paper (WSL4MIS recipe, 256², 60k it.)",
                  "quick-cpu": "quick (CPU): 128² whole slices, width 8, 600 it."}
#: How "Accept" turns a (corrected) prediction into an annotation.
ACCEPT_MODES = {
    "corrected_slices": "Corrected slices → sparse (each slice complete)",
    "current_slice": "Current slice → sparse (slice complete)",
    "corrected_classes": "Corrected classes → partial (classes complete)",
    "volume": "Whole volume → partial (every class complete)",
}
ZOO_ENV = "WEAKSEG_MODELS"


def current_author() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user database (containers)
        return None


# -- project & volumes ---------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeStatus:
    """One row of the Project panel's volume table."""

    name: str
    split: str
    kinds: tuple[str, ...]
    declared: str
    last_edit: str
    has_truth: bool


def volume_statuses(project) -> list[VolumeStatus]:
    """Every volume with its annotation status (kinds present, declarations, last edit)."""
    latest: dict[str, list] = {}
    for record in project.annotations():
        latest.setdefault(record.volume_name, []).append(record)
    names = project.schema.names
    rows = []
    for volume in project.volumes():
        records = latest.get(volume.name, [])
        declared = []
        for record in records:
            if record.kind == "sparse" and record.declared_slices:
                declared.append(f"sparse: {len(record.declared_slices)} slices")
            elif record.declared_classes:
                declared.append(f"{record.kind}: "
                                + ",".join(names[c] for c in record.declared_classes))
        last = max((r.created_at for r in records), default="")
        rows.append(VolumeStatus(
            name=volume.name, split=volume.tags.get("split", ""),
            kinds=tuple(sorted({r.kind for r in records})), declared="; ".join(declared),
            last_edit=local_time(last),
            has_truth=project.has_ground_truth(volume)))
    return rows


def local_time(stamp: str) -> str:
    """A store timestamp (ISO, UTC) as local ``YYYY-MM-DD HH:MM``."""
    from datetime import datetime

    if not stamp:
        return ""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp[:16].replace("T", " ")


def project_kinds(project) -> set[str]:
    """Annotation kinds present anywhere in the project."""
    return {record.kind for record in project.annotations()}


@dataclass(frozen=True)
class LoadedVolume:
    record: Any
    image: Any                    # io.Volume: data (Z, Y, X) + geometry
    annotations: list             # store.Annotation, latest version of each kind


def load_volume(project, name: str) -> LoadedVolume:
    """Image (checksum verified) and latest annotations of one volume."""
    record = project.volume(name)
    image = project.read_image(record)
    annotations = [a for a in project.latest_annotations(record) if a.record.strategy
                   == "default"]
    return LoadedVolume(record, image, annotations)


def add_images(project, paths: Iterable[str | os.PathLike], *, copy: bool = True,
               split: str | None = None) -> tuple[list[str], list[str]]:
    """Add NIfTI images (folders are imported with the importer of their format).

    Returns ``(added volume names, problems)``; a bad file is reported, never fatal.
    """
    from ..store.importers import import_source

    added, problems = [], []
    for path in map(Path, paths):
        try:
            if path.is_dir():
                report = import_source(project, path)
                added += report.added
                problems += report.errors
            else:
                tags = {"split": split} if split else None
                added.append(project.add_volume(path, copy=copy, tags=tags).name)
        except Exception as exc:
            problems.append(f"{path}: {exc}")
    return added, problems


# -- annotations ---------------------------------------------------------------------------
# the autosave's store call and fingerprint live in the core (store/autosave.py)
from ..store.autosave import (declarations_for, fingerprint,  # noqa: E402,F401
                              save_layer_annotation)


def toggle_slice(slices: Mapping[int, Sequence[int] | None] | None, z: int,
                 classes: Sequence[int] | None = None) -> dict[int, tuple[int, ...] | None]:
    """Mark slice ``z`` complete (for ``classes``; ``None`` = every class) or unmark it."""
    out = dict(slices or {})
    if int(z) in out:
        del out[int(z)]
    else:
        out[int(z)] = None if classes is None else tuple(sorted(int(c) for c in classes))
    return dict(sorted(out.items()))


def version_label(record, class_names: Sequence[str]) -> str:
    """One line describing a saved version (restore list)."""
    parts = [f"v{record.version}", local_time(record.created_at)]
    if record.author:
        parts.append(record.author)
    voxels = sum(record.counts.values())
    parts.append(f"{voxels} voxels")
    if record.declared_slices:
        parts.append(f"{len(record.declared_slices)} slices complete")
    elif record.declared_classes:
        parts.append("complete: " + ",".join(class_names[c] for c in record.declared_classes))
    if record.note:
        parts.append(record.note)
    return " · ".join(parts)


# -- review: accepting a prediction (the logic lives in the core: weak/accept.py) ---------------
from ..weak.accept import (Accepted, accepted_annotation, corrected_classes,  # noqa: E402,F401
                           corrected_slices, merge_accepted, save_accepted)


# -- prediction & uncertainty --------------------------------------------------------------
_MODEL_CACHE: dict[tuple[str, str, float, float], Any] = {}
_MODEL_LOCK = threading.Lock()


def load_predictor(model_path: str | os.PathLike, device: str = "auto"):
    """The shared :class:`~napari_weakseg.inference.predictor.Predictor` of a model folder,
    loaded once per weights/config file version and device."""
    from ..inference.predictor import Predictor
    from ..nets.model_folder import CONFIG, WEIGHTS
    from ..preprocess import select_device

    torch_device = select_device(device)
    folder = Path(model_path)
    stamps = tuple((folder / name).stat().st_mtime if (folder / name).exists() else 0.0
                   for name in (WEIGHTS, CONFIG))
    key = (str(folder.resolve()), str(torch_device), *stamps)
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE.clear()
            predictor = Predictor(folder, device=torch_device)
            predictor.load()
            _MODEL_CACHE[key] = predictor
        return _MODEL_CACHE[key]


def load_model_cached(model_path: str | os.PathLike, device: str = "auto"):
    """``(net, config, device)`` of the cached predictor (older callers)."""
    predictor = load_predictor(model_path, device)
    return predictor.net, predictor.config, predictor.device


def recommended_postprocess(model_path: str | os.PathLike) -> str:
    """The post-processing a model folder records (what the GUI uses by default)."""
    from ..nets.model_folder import read_config
    from ..postprocess import Postprocessing

    return Postprocessing.from_config(read_config(model_path).get("postprocessing")).name


def predict_image(model_path: str | os.PathLike, image: np.ndarray, device: str = "auto",
                  spacing=None, postprocess: str | None = None, tta: str | None = None):
    """Predict a (Z, Y, X) image with a model folder → ``inference.predict.Prediction``,
    through the shared predictor: the model's pre-processing (``spacing`` (z, y, x) mm is
    needed by a model that resamples to a target spacing) and post-processing
    (``postprocess`` overrides it: none, largest, anatomy) and test-time augmentation
    (``tta``: ``none`` for live previews and rankings, which must be quick; ``None``: the
    model's).

    In the viewer's process torch uses at most ``default_threads()`` CPU threads, so one
    core stays free for napari's event loop.
    """
    import torch

    if torch.get_num_threads() > default_threads():
        torch.set_num_threads(default_threads())
    predictor = load_predictor(model_path, device)
    with _MODEL_LOCK:  # one prediction at a time per process: the net is shared
        return predictor.predict(np.asarray(image), spacing, postprocess=postprocess, tta=tta)


#: Review tab "Annotate next": what the suggested slices are for → the combo's text.
SUGGEST_PURPOSES = {
    SuggestFor.CORRECTION: "Suggest slices to correct (most uncertain)",
    SuggestFor.SCRIBBLES: "Suggest slices to scribble (uncertain, every structure shown)"}


def rank_slices(entropy: np.ndarray, exclude: Iterable[int] = (),
                probabilities: np.ndarray | None = None,
                purpose: SuggestFor | str = SuggestFor.CORRECTION
                ) -> list[tuple[int, float]]:
    """Slices to annotate next, best first (``exclude``: already complete).

    With ``probabilities`` (C, Z, Y, X), the measure of ``purpose``
    (``inference.suggest.SuggestFor``): for correction the entropy averaged over each
    slice's possible foreground (``foreground_entropy``) — on ACDC val it separates bad
    slices from good ones (Spearman ρ −0.65 against slice Dice; the top-2 slices per volume
    score Dice 0.54 vs 0.86 for the rest), where the plain mean entropy does not (ρ −0.00);
    for scribbles the same, times how fully the slice shows every structure
    (``all_structures_entropy``). Without probabilities: the mean entropy per slice."""
    from ..inference.suggest import mean_entropy, purpose_scores, rank_by

    if probabilities is None:
        return rank_by(mean_entropy(entropy), exclude)
    return rank_by(purpose_scores(purpose, probabilities, entropy), exclude)


def complete_slices(annotations: Iterable) -> set[int]:
    """Slices already declared complete (sparse) for a volume's annotations."""
    out: set[int] = set()
    for annotation in annotations:
        record = getattr(annotation, "record", annotation)
        if record.kind == "sparse" and record.declared_slices:
            out |= set(record.declared_slices)
    return out


@dataclass(frozen=True)
class GroundTruthCheck:
    """The shown prediction against the volume's stored ground truth (Review tab).

    ``scores``: ``evaluation.metrics.evaluate_volume`` per foreground class (3D Dice,
    HD95 in mm on the volume's ``spacing`` (z, y, x)); ``truth`` is kept for rescoring
    after corrections."""

    truth: np.ndarray
    spacing: tuple[float, float, float]
    scores: dict


#: Score predictions against ground truth in a separate process (:func:`score_prediction`).
SCORE_IN_SUBPROCESS = True
#: Niceness of that process: a short background job, it yields the CPU to napari's event
#: loop (and to a training run) on a machine with few cores.
SCORING_NICENESS = 10
_scorer = None
_scorer_lock = threading.Lock()


def _lower_priority(niceness: int) -> None:
    """Initializer of the scoring process: background work yields the CPU to the GUI."""
    if hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:
            pass


def _stop_scoring_process() -> None:
    """At exit, before the interpreter tears modules down (else the pool's manager thread
    reports an ignored exception)."""
    global _scorer
    with _scorer_lock:
        scorer, _scorer = _scorer, None
    if scorer is not None:
        scorer.shutdown(wait=True, cancel_futures=True)


def _scoring_process():
    """The one spawned worker process that scores (created on first use, reused; at
    :data:`SCORING_NICENESS`)."""
    global _scorer
    with _scorer_lock:
        if _scorer is None:
            import atexit
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _scorer = ProcessPoolExecutor(max_workers=1,
                                          mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_lower_priority,
                                          initargs=(SCORING_NICENESS,))
            atexit.register(_stop_scoring_process)
        return _scorer


def score_prediction(labels: np.ndarray, truth: np.ndarray, spacing,
                     class_names: Sequence[str]) -> dict:
    """Per foreground class, Dice and HD95 (mm) of ``labels`` against ``truth``
    (:func:`napari_weakseg.evaluation.metrics.evaluate_volume`, strict empty rule).

    Computed in a separate process (:data:`SCORE_IN_SUBPROCESS`; the calling thread waits
    without holding the GIL): HD95 needs two Euclidean distance transforms per class, and
    scipy's holds the GIL for each call — up to ~100 ms on a whole ACDC-sized volume when a
    poor prediction spreads over it —, so scoring in a thread of the GUI process starved
    napari's event loop (a 488 ms stall, ``benchmarks/gui_latency.py``). Falls back to this
    process if the worker cannot run."""
    from ..evaluation.metrics import evaluate_volume

    classes = {c: name for c, name in enumerate(class_names) if c}
    labels, truth = np.asarray(labels), np.asarray(truth)
    if SCORE_IN_SUBPROCESS:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return _scoring_process().submit(evaluate_volume, labels, truth, spacing,
                                             classes).result()
        except (BrokenProcessPool, OSError, RuntimeError):
            global _scorer
            with _scorer_lock:
                _scorer = None  # a new one next time
    return evaluate_volume(labels, truth, spacing, classes)


def check_ground_truth(project, volume, labels: np.ndarray) -> GroundTruthCheck | None:
    """Read the volume's stored ground truth and score ``labels`` against it; ``None``
    when it has none or its shape differs from the prediction's."""
    record = project.volume(volume)
    truth = project.ground_truth(record)
    if truth is None or tuple(np.shape(truth)) != tuple(np.shape(labels)):
        return None
    spacing = tuple(float(s) for s in record.spacing)
    return GroundTruthCheck(np.asarray(truth), spacing,
                            score_prediction(labels, truth, spacing, project.schema.names))


#: How the Review tab names a class's agreement status (``evaluate_volume``'s ``status``).
SCORE_STATUS = {"ok": "", "both_empty": "absent in both",
                "pred_empty": "missed (not predicted)", "gt_empty": "not in the ground truth"}


def score_rows(scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """The Review tab's table: ``(class, Dice, HD95 mm, note)`` per class, then the mean
    (Dice over the classes; HD95 over the classes where it is defined)."""
    rows = []
    for name, row in scores.items():
        hd = row["hd95_mm"]
        rows.append((name, f"{row['dice']:.3f}", "–" if not np.isfinite(hd) else f"{hd:.1f}",
                     SCORE_STATUS.get(row["status"], row["status"])))
    if scores:
        dice = [float(r["dice"]) for r in scores.values()]
        hds = [float(r["hd95_mm"]) for r in scores.values() if np.isfinite(r["hd95_mm"])]
        rows.append(("mean", f"{np.mean(dice):.3f}",
                     f"{np.mean(hds):.1f}" if hds else "–", ""))
    return rows


def rank_volumes(project_root: str | os.PathLike, model_path: str | os.PathLike,
                 names: Sequence[str] | None = None, device: str = "auto",
                 limit: int = 50) -> list[tuple[str, float]]:
    """Training-candidate volumes (not val/test) by mean predicted uncertainty."""
    from ..store import Project

    project = Project.open(project_root)
    try:
        records = [r for r in project.volumes() if r.tags.get("split") not in ("val", "test")]
        if names is not None:
            records = [r for r in records if r.name in set(names)]
        scores = []
        for record in records[:limit]:
            image = project.read_image(record, verify=False)
            prediction = predict_image(model_path, image.data, device,
                                       spacing=image.geometry.spatial_spacing, tta="none")
            scores.append((record.name, float(prediction.entropy.mean())))
    finally:
        project.close()
    return sorted(scores, key=lambda item: -item[1])


# -- models & methods ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    label: str
    path: Path | None   # None = a new network
    source: str         # new | project | zoo


def zoo_dir() -> Path:
    """The model zoo: ``$WEAKSEG_MODELS``, the wheel's package data, else the checkout's
    ``models/`` (:func:`napari_weakseg.zoo.zoo_dir`)."""
    from ..zoo import zoo_dir as _zoo_dir

    return _zoo_dir()


def model_choices(project=None, zoo: str | os.PathLike | None = None) -> list[ModelChoice]:
    """"New model", then the project's registered models (newest first), then the zoo."""
    choices = [ModelChoice("New model (random init)", None, "new")]
    if project is not None:
        for record in reversed(project.models()):
            if (record.path / "config.json").exists():
                choices.append(ModelChoice(f"project: {record.name}", record.path, "project"))
    folder = Path(zoo) if zoo is not None else zoo_dir()
    if folder.is_dir():
        for sub in sorted(p for p in folder.iterdir() if (p / "config.json").exists()):
            choices.append(ModelChoice(f"zoo: {sub.name}", sub, "zoo"))
    return choices


@dataclass(frozen=True)
class MethodChoice:
    id: str
    description: str
    kinds: tuple[str, ...]
    optimizer: str
    lr: float


def method_choices(kinds: Iterable[str]) -> list[MethodChoice]:
    """Methods that learn from at least one of ``kinds`` (imports the methods: torch);
    ``mixed`` only when the project holds more than one kind (with one it is that kind's
    method)."""
    from ..methods import available_methods

    present = set(kinds)
    out = []
    for method_id, cls in sorted(available_methods().items()):
        if method_id == "mixed" and len(present) < 2:
            continue
        if set(cls.kinds) & present:
            out.append(MethodChoice(method_id, cls.description, tuple(sorted(cls.kinds)),
                                    cls.optimizer.name, cls.optimizer.lr))
    return out


def preferred_method(offered: Iterable[str], kinds: Iterable[str],
                     current: str | None = None) -> str | None:
    """The method to select among ``offered`` for a project holding ``kinds``: ``current``
    when it learns from every kind present, else the default for the kinds
    (``training.sources.default_method``: ``mixed`` when no single method uses them all),
    else ``current``. So Retrain after accepting corrected slices trains a method that
    uses them."""
    from ..methods import get_method
    from ..training.sources import default_method

    offered = list(offered)
    present = set(kinds)
    if current in offered and present <= set(get_method(current).kinds):
        return current
    wanted = default_method(present)
    if wanted in offered:
        return wanted
    return current if current in offered else (offered[0] if offered else None)


def unused_note(project, method: str) -> str:
    """What ``method`` leaves out of the project's training annotations, as one line
    ("effdnet will not use your 12 corrected or sparse slices (sparse): choose mixed …"),
    or "" (``training.sources.unused_annotations``; reads annotation files: run it in the
    background)."""
    from ..training.sources import unused_annotations, unused_message

    return unused_message(method, unused_annotations(project, method)) or ""


def available_devices() -> list[str]:
    """``auto``, ``cpu``, then ``cuda:N`` for each GPU and ``mps`` where present."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask — a container's or a
    ``taskset``'s limit — where the platform tells it, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """CPU threads for a run started from the GUI: the machine's cores less one for napari's
    event loop (at least 1). The training runs in its own process at normal priority."""
    return max(1, usable_cores() - 1)


def train_config(profile_name: str, method: str, **overrides):
    """A :class:`TrainConfig` from a profile, the method and the form's values."""
    from ..training.config import profile

    clean = {k: v for k, v in overrides.items() if v is not None}
    return profile(profile_name, method=method, **clean)


# -- training runs -------------------------------------------------------------------------
#: Niceness added to a training process started from the GUI. 0: it runs at normal
#: priority (issue 17: nice +10 with 1 thread trained at half the CLI's speed); the viewer
#: stays responsive because training leaves it a core (:func:`default_threads`) and runs
#: in its own process.
TRAINING_NICENESS = 0
#: Seconds between two live previews of a run started from the GUI (Train tab default).
PREVIEW_EVERY_S = 15.0


def start_run(project, config, **options) -> RunHandle:
    """:func:`~napari_weakseg.training.project_runs.start_run` (the GUI's priority)."""
    if TRAINING_NICENESS:
        options["nice"] = TRAINING_NICENESS
    return project_runs.start_run(project, config, **options)


def resume_run(project, run_dir: str | os.PathLike, extra_env: dict | None = None
               ) -> RunHandle:
    """:func:`~napari_weakseg.training.project_runs.resume_run` (the GUI's priority)."""
    options = {"nice": TRAINING_NICENESS} if TRAINING_NICENESS else {}
    return project_runs.resume_run(project, run_dir, extra_env, **options)


def model_method(model_path: str | os.PathLike | None) -> str | None:
    """The method a model folder was trained with (its ``config.json``), or ``None``."""
    if model_path is None:
        return None
    try:
        from ..nets.model_folder import read_config

        method = read_config(model_path).get("method")
    except Exception:  # not a model folder: the caller keeps its choice
        return None
    return method if isinstance(method, str) and method else None


@dataclass(frozen=True)
class ValidationSummary:
    """What a run started now would validate on: volumes tagged ``split=val``, and those of
    them with a reference mask (ground truth or a ``dense`` annotation); without any, the
    accepted slices held out of training (``training.holdout``): ``held_out`` slices of
    ``held_out_volumes`` volumes."""

    tagged: int
    with_reference: int
    held_out: int = 0
    held_out_volumes: int = 0

    def curve(self) -> str:
        """What the Dice curve is computed on, for its title ("" without validation)."""
        if self.with_reference:
            return f"on {self.with_reference} split=val volume(s)"
        if self.held_out:
            from ..training.holdout import describe_held_out

            return describe_held_out(self.held_out).removeprefix("validation Dice ")
        return ""

    def message(self) -> str:
        if self.with_reference:
            return f"{self.with_reference} validation volume(s) with a reference mask."
        if self.held_out:
            from ..training.holdout import describe_held_out

            text = describe_held_out(self.held_out, self.held_out_volumes)
            return (f"{text[0].upper()}{text[1:]}: no split=val volume has a reference mask, "
                    "so every 5th accepted slice is kept out of training and scored. Tag "
                    "volumes split=val with ground truth to validate on whole volumes.")
        why = (f"{self.tagged} volume(s) tagged split=val, none with a reference mask"
               if self.tagged else "no volume is tagged split=val")
        return (f"0 validation volumes: tag some volumes split=val with a reference mask "
                f"(ground truth or a dense annotation; Project tab: right-click ▸ Split) — "
                f"{why}. Without them there is no Dice curve and the last model is kept.")


def validation_summary(project) -> ValidationSummary:
    """Count the project's validation volumes, or else the accepted slices a run would
    hold out (see :class:`ValidationSummary`; reads the manifest only)."""
    from ..training.holdout import held_out_slices

    tagged = project.volumes(split="val")
    with_reference = 0
    for record in tagged:
        if project.has_ground_truth(record) or any(
                a.kind == "dense" for a in project.annotations(record)):
            with_reference += 1
    if with_reference:
        return ValidationSummary(len(tagged), with_reference)
    held = held_out_slices(project)
    return ValidationSummary(len(tagged), 0, sum(len(zs) for zs in held.values()), len(held))


#: The splits offered in the Project tab (``None``: no split tag; the volume trains).
SPLITS = ("train", "val", "test")


def set_split(project, names: Iterable[str], split: str | None) -> list[str]:
    """Tag volumes ``split=SPLIT`` (``None`` removes the tag) → the names changed."""
    changed = []
    for name in names:
        record = project.volume(name)
        if split is None:
            if "split" not in record.tags:
                continue
            project.set_tags(record, split=None)
        elif record.tags.get("split") != split:
            project.set_tags(record, split=split)
        else:
            continue
        changed.append(name)
    return changed


def format_eta(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


@dataclass
class CurveData:
    """Series of (x, y) points for the live curves (loss, validation Dice)."""

    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, name: str, x: float, y: float) -> None:
        if y is None or not np.isfinite(y):
            return
        self.series.setdefault(name, []).append((float(x), float(y)))

    def clear(self) -> None:
        self.series.clear()

    def bounds(self) -> tuple[float, float, float, float] | None:
        points = [p for values in self.series.values() for p in values]
        if not points:
            return None
        xs, ys = zip(*points)
        return min(xs), max(xs), min(ys), max(ys)


__all__ = [name for name in dir() if not name.startswith("_")]
