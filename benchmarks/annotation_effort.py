"""Annotation effort versus model quality: a simulated annotator works the real loop
(issue 21).

    .venv/bin/python benchmarks/annotation_effort.py --quick --out OUT          # CI: seconds
    .venv/bin/python benchmarks/annotation_effort.py --init zoo,scratch \\
        --methods pce,mixed --kinds scribble,correct --strategies random,suggest \\
        --rounds 5 --k 6 --iterations 300 --patients 10 --out runs/effort

Headless, through the same core the napari panels call: a project store
(``store.Project``: volumes referenced, annotations saved as versions), the one
``inference.predictor.Predictor`` (suggestions, the predictions a reviewer corrects,
evaluation), the accept logic of the Review tab (``weak.accept``: corrected slices →
``sparse``, merged into the current annotation) and the training runner
(``training.project_runs.start_run`` → its own process, events, model registered).

The annotator "knows" ``--patients`` ACDC train-split patients (both frames): their real
manual scribbles where the slice has strokes, the scribble simulator
(``weak.simulate.simulate_scribbles``) elsewhere, and their dense labels. Every round it
spends a fixed effort — ``--k`` slices — of one *kind*:

* ``scribble``: draws the slice's scribbles (kind ``scribble``);
* ``coarse``: draws coarse positive masks of the slice (``coarse_pos``, Morpho-MNIST
  erosion of the truth);
* ``correct``: corrects the current model's prediction of the slice to the truth and
  accepts it (``sparse``, slice complete) — the Review tab's "Accept into annotations".

on slices chosen by a *strategy*: ``random``; ``coverage`` (spread over volumes, then over
positions within a volume); ``suggest`` (the tool's suggestion: slices ranked by the
``--measure`` of ``inference.suggest``, default ``mean_entropy`` = the Review tab's;
``suggest:foreground_entropy`` etc. picks another measure; the top ``k`` pooled over
volumes); ``suggest-spread[:MEASURE]`` (the same scores, spread over the volumes by
``inference.suggest.spread_over_volumes``: every volume's best slice before any volume's
second); ``suggest-cold[:MEASURE]`` (while the project holds no annotation, every volume's
middle slice, volumes with the highest score first — ``cold_start_picks``
—, then pooled like ``suggest``; measured, not adopted); a suggesting strategy picks at random while every score is 0 (a starting model
that predicts no possible foreground anywhere) and by coverage before there is a model. Then it fine-tunes the previous
round's model (``--init``: ``zoo`` = ``zoo.default_model()``, ``scratch``, or a model
folder) for ``--iterations`` (and at most ``--minutes``) with each ``--methods`` method that
learns from the kind, and scores the last model on held-out ACDC val (``--val-limit``
volumes; the model's recorded post-processing): mean 3D Dice over RV/MYO/LV and HD95.

Effort per round: slices touched, strokes, painted/changed pixels, path length, and
estimated seconds (``weak.effort.EffortModel``: per-slice and per-stroke overheads, path
length / drawing speed; the constants are assumptions, options below). Output in ``--out``:
``annotation_effort.json`` (every round), ``annotation_effort.md`` (table + effort needed
to reach ``--target`` Dice per arm) and ``annotation_effort.png`` (Dice vs estimated
minutes and vs strokes, one line per arm; Pillow). Seeded. ``--quick``: a tiny synthetic
cohort (``napari_weakseg.synthetic``), 32² slices, a few iterations — checks the mechanics,
not the values.

The annotator's patients are, by default, the 10 inner-validation patients of the default
zoo model (``models/acdc-cine-effdnet`` trained on the other 60 train patients and chose its
checkpoint on these — it never trained on their scribbles), so "from zoo" starts from a
model that has not seen them (``--any-patients``: any train patients).

``--shift invert`` inverts the contrast of every image (the annotator's and val; written
once under WORK/acdc-invert) — a crude stand-in for another sequence that the zoo model
does not know (it scores 0.007 mean Dice there), so the loop has something to learn.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DEFAULT_ACDC = ROOT.parent / "shared" / "data" / "acdc"
#: The annotation kind the annotator's work is stored as.
STORED_KIND = {"scribble": "scribble", "coarse": "coarse_pos", "correct": "sparse"}
KINDS = tuple(STORED_KIND)
STRATEGIES = ("random", "coverage", "suggest", "suggest-spread", "suggest-cold")
#: Strategies that rank slices by a ``--measure`` of ``inference.suggest``.
SUGGESTING = ("suggest", "suggest-spread", "suggest-cold")
AUTHOR = "simulated-annotator"


@dataclass(frozen=True)
class Arm:
    init: str       # zoo | scratch | a model folder
    method: str
    kind: str       # scribble | coarse | correct
    strategy: str   # random | coverage | suggest | suggest-spread | suggest-cold
    measure: str = "mean_entropy"

    @property
    def name(self) -> str:
        init = self.init if self.init in ("zoo", "scratch") else Path(self.init).name
        strategy = (f"{self.strategy}-{self.measure}" if self.strategy in SUGGESTING
                    else self.strategy)
        return f"{init}-{self.method}-{self.kind}-{strategy}"


# -- the annotator's knowledge -------------------------------------------------------------
class Oracle:
    """Images, dense truth and real scribbles of the volumes the annotator knows."""

    def __init__(self, root: Path, names: list[str], num_classes: int, seed: int):
        from napari_weakseg.io import read_labels, read_volume
        from napari_weakseg.weak.encoding import from_wsl4mis

        self.root, self.names, self.num_classes, self.seed = root, names, num_classes, seed
        self.images, self.truth, self.scribbles, self._simulated = {}, {}, {}, {}
        for name in names:
            image = read_volume(root / "images" / f"{name}.nii.gz", allow_4d=False)
            self.images[name] = image
            self.truth[name] = read_labels(root / "labels" / f"{name}.nii.gz",
                                           like=image.geometry).data.astype(np.int64)
            path = root / "scribbles" / f"{name}.nii.gz"
            if path.exists():
                raw = read_labels(path, like=image.geometry).data
                self.scribbles[name] = from_wsl4mis(raw, num_classes)
        self.real_slices = 0
        self.simulated_slices = 0

    def scribble_slice(self, name: str, z: int) -> np.ndarray:
        real = self.scribbles.get(name)
        if real is not None and np.any(real[z]):
            self.real_slices += 1
            return real[z].astype(np.uint8)
        if name not in self._simulated:
            from napari_weakseg.weak.simulate import simulate_scribbles

            index = self.names.index(name)
            self._simulated[name] = simulate_scribbles(
                self.truth[name], self.num_classes, seed=self.seed * 1000 + index,
                spacing=self.images[name].geometry.spatial_spacing)
        self.simulated_slices += 1
        return self._simulated[name][z].astype(np.uint8)

    def coarse_slice(self, name: str, z: int) -> np.ndarray:
        from napari_weakseg.weak.simulate import simulate_coarse_pos

        return simulate_coarse_pos(self.truth[name][z:z + 1], self.num_classes)[0]


# -- choosing slices -------------------------------------------------------------------------
def middle_out(depth: int, exclude: Iterable[int] = ()) -> list[int]:
    """The slices of a ``depth``-slice stack from its middle outwards (nearer the middle
    first, the lower z on ties), without ``exclude``."""
    skip = {int(z) for z in exclude}
    middle = (depth - 1) / 2
    return sorted((z for z in range(depth) if z not in skip), key=lambda z: (abs(z - middle), z))


def cold_start_picks(scores: dict, k: int, exclude: dict | None = None
                     ) -> list[tuple[str, int]]:
    """``k`` ``(volume, z)`` picks for a project that holds no annotation yet: each volume's
    middle slice (:func:`middle_out`), one per volume per pass, volumes whose best slice
    scores highest first (then by name). The ``suggest-cold`` strategy; **measured, not
    adopted** by the Review tab, so it lives here and not in ``inference.suggest``.

    The idea: before the first strokes the model knows nothing about *this* data (another
    sequence, another scanner), so its structure areas — and with them
    ``inference.suggest.structure_presence`` — are noise (on inverted-contrast ACDC half of the
    all-structures-entropy picks of round 1 lacked the RV, against one in six random
    picks), while the middle of a stack shows every structure. Measured over 6 seeds it
    did not beat random slices at equal effort (docs/results.md, session 9): the middle
    slices of the two frames of a patient are near-duplicates, and random slices vary in
    position and patient."""
    remaining = {name: middle_out(len(values), (exclude or {}).get(name, ()))
                 for name, values in scores.items()}
    best = {name: float(np.max(values)) if len(values) else 0.0
            for name, values in scores.items()}
    order = sorted(remaining, key=lambda name: (-best[name], name))
    picks: list[tuple[str, int]] = []
    while len(picks) < k and any(remaining.values()):
        for name in order:
            if len(picks) == k:
                break
            if remaining[name]:
                picks.append((name, remaining[name].pop(0)))
    return picks


def choose_slices(strategy: str, k: int, depths: dict[str, int], touched: dict[str, set],
                  rng: random.Random, scores: dict[str, np.ndarray] | None = None
                  ) -> list[tuple[str, int]]:
    """``k`` untouched ``(volume, z)`` by ``strategy`` (:data:`STRATEGIES`).

    ``depths``: slices per volume; ``touched``: slices already annotated (skipped);
    ``scores``: per-volume slice scores, higher first (``suggest``: pooled over volumes;
    ``suggest-spread``: one per volume per pass; ``suggest-cold``: while nothing is
    annotated, ``cold_start_picks`` — every volume's middle slice —, then
    pooled like ``suggest``).
    """
    free = [(name, z) for name in depths for z in range(depths[name])
            if z not in touched.get(name, set())]
    k = min(k, len(free))
    if strategy == "random":
        return sorted(rng.sample(free, k))
    if strategy == "suggest-cold" and scores is not None and \
            not any(touched.get(name) for name in depths):
        return cold_start_picks({n: scores[n] for n in depths}, k, touched)
    if strategy in ("suggest", "suggest-cold"):
        if scores is None:
            raise ValueError(f"{strategy} needs slice scores")
        ranked = sorted(free, key=lambda item: (-float(scores[item[0]][item[1]]), item))
        return ranked[:k]
    if strategy == "suggest-spread":
        if scores is None:
            raise ValueError("suggest-spread needs slice scores")
        from napari_weakseg.inference.suggest import spread_over_volumes

        return spread_over_volumes({n: scores[n] for n in depths}, k, touched)
    if strategy == "coverage":
        taken = {name: set(touched.get(name, set())) for name in depths}
        order = list(depths)
        rng.shuffle(order)
        picks = []
        for _ in range(k):
            candidates = [n for n in order if len(taken[n]) < depths[n]]
            name = min(candidates, key=lambda n: len(taken[n]))
            nz = depths[name]

            def spread(z: int, name=name, nz=nz) -> float:
                if not taken[name]:
                    return -abs(z - (nz - 1) / 2)  # the first slice of a volume: its middle
                return min(abs(z - t) for t in taken[name]) / max(nz - 1, 1)

            z = max((z for z in range(nz) if z not in taken[name]),
                    key=lambda z: (spread(z), -z))
            taken[name].add(z)
            picks.append((name, z))
        return picks
    raise ValueError(f"unknown strategy {strategy!r}; strategies: {', '.join(STRATEGIES)}")


# -- one arm ---------------------------------------------------------------------------------
def evaluate(model_dir: Path, val: list[tuple[str, object, np.ndarray]], classes) -> dict:
    """Mean 3D Dice / HD95 (mm) of a model folder on the val volumes."""
    from napari_weakseg.evaluation.metrics import evaluate_volume
    from napari_weakseg.inference.predictor import Predictor

    predictor = Predictor(model_dir, device="cpu")
    per_class = {c: [] for c in classes[1:]}
    hd95 = []
    for _name, image, truth in val:
        labels = predictor.predict(image.data, image.geometry.spatial_spacing).labels
        scores = evaluate_volume(labels, truth, image.geometry.spatial_spacing,
                                 classes={i: c for i, c in enumerate(classes) if i})
        for cls, row in scores.items():
            if row["status"] in ("ok", "pred_empty"):
                per_class[cls].append(row["dice"])
            if np.isfinite(row.get("hd95_mm", np.nan)) and row["status"] == "ok":
                hd95.append(row["hd95_mm"])
    means = {c: float(np.mean(v)) if v else float("nan") for c, v in per_class.items()}
    return {"mean_dice": float(np.nanmean(list(means.values()))), "dice": means,
            "hd95_mm": float(np.mean(hd95)) if hd95 else float("nan")}


def predict_known(model_dir: Path | None, oracle: Oracle, measure: str | None) -> dict:
    """Per known volume: the post-processed labels a reviewer sees and the slice scores."""
    from napari_weakseg.inference import suggest
    from napari_weakseg.inference.predictor import Predictor

    if model_dir is None:
        return {}
    predictor = Predictor(model_dir, device="cpu")
    out = {}
    for name in oracle.names:
        image = oracle.images[name]
        spacing = image.geometry.spatial_spacing
        members = None
        if measure and suggest.needs_members(measure):
            members = suggest.flip_members(predictor, image.data, spacing)
        prediction = predictor.predict(image.data, spacing)
        scores = suggest.slice_scores(measure, prediction, members=members,
                                      num_classes=len(predictor.classes)) if measure else None
        out[name] = (prediction.labels.astype(np.int64), scores)
    return out


def train_round(project, arm: Arm, init_model: Path | None, args, round_no: int):
    """Fine-tune (or train) through the project's training runner; → (model dir, info)."""
    from napari_weakseg.training.config import profile
    from napari_weakseg.training.project_runs import RunOutcome, start_run, training_stream

    overrides = dict(method=arm.method, iterations=args.iterations, threads=args.threads,
                     seed=args.seed + round_no, val_every=10 ** 9, checkpoint_every=10 ** 9,
                     device="cpu", init_model=None if init_model is None else str(init_model))
    if args.minutes:
        overrides["max_seconds"] = args.minutes * 60.0
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = json.loads(value)
    if args.quick:
        overrides.update(size=32, base_width=4, batch_size=2)
    config = profile(args.profile, **overrides).validate(project.num_classes)
    started = time.perf_counter()
    handle = start_run(project, config)
    outcome, iterations = None, 0
    for event in training_stream(handle, project.root):
        if isinstance(event, RunOutcome):
            outcome = event
        elif getattr(event, "type", "") == "finished":
            iterations = int(event.iteration)
    if outcome is None or outcome.model_path is None:
        raise RuntimeError(f"{arm.name} round {round_no}: training failed: "
                           f"{getattr(outcome, 'error', '?')} (log {handle.run_dir})")
    # the last model (no validation during training: nothing chose it on val)
    return outcome.model_path, {"iterations": iterations, "train_seconds":
                                round(time.perf_counter() - started, 1),
                                "stopped": outcome.status}


def run_arm(arm: Arm, args, oracle: Oracle, val, classes, work: Path, effort_model) -> list:
    from napari_weakseg.schema import LabelSchema
    from napari_weakseg.store import Project
    from napari_weakseg.weak import accept
    from napari_weakseg.weak.effort import (Effort, correction_effort, region_effort,
                                            scribble_effort)
    from napari_weakseg.zoo import default_model

    folder = work / arm.name
    shutil.rmtree(folder, ignore_errors=True)
    project = Project.create(folder / "project", LabelSchema.cardiac())
    records = []
    try:
        for name in oracle.names:
            project.add_volume(oracle.root / "images" / f"{name}.nii.gz", copy=False,
                               tags={"split": "train"})
        if arm.init == "zoo":
            model = default_model()
            if model is None:
                raise RuntimeError("the model zoo is empty")
        elif arm.init == "scratch":
            model = None
        else:
            model = Path(arm.init)
        rng = random.Random(f"{args.seed}-{arm.name}")
        depths = {n: oracle.truth[n].shape[0] for n in oracle.names}
        touched: dict[str, set] = {n: set() for n in oracle.names}
        drawn: dict[str, np.ndarray] = {}
        total = Effort()

        def record(round_no, round_effort, picks, strategy_used, train_info, scores):
            row = {"arm": arm.name, **asdict(arm), "round": round_no,
                   "picks": [[n, int(z)] for n, z in picks], "strategy_used": strategy_used,
                   "round_effort": round_effort.to_dict(),
                   "round_seconds": effort_model.seconds(round_effort),
                   "effort": total.to_dict(), "seconds": effort_model.seconds(total),
                   "minutes": effort_model.seconds(total) / 60.0,
                   **train_info, **(scores or {"mean_dice": None, "dice": {},
                                               "hd95_mm": None})}
            records.append(row)
            dice = row["mean_dice"]
            print(f"  {arm.name} round {round_no}: {total.slices} slices, {total.strokes} "
                  f"strokes, {row['minutes']:.1f} min → mean Dice "
                  f"{'—' if dice is None else f'{dice:.3f}'}", flush=True)

        record(0, Effort(), [], None, {"iterations": 0, "train_seconds": 0.0},
               evaluate(model, val, classes) if model is not None else None)
        for round_no in range(1, args.rounds + 1):
            strategy = arm.strategy
            if strategy in SUGGESTING and model is None:
                strategy = "coverage"  # nothing to rank with yet
            need_prediction = arm.kind == "correct" or strategy in SUGGESTING
            predicted = predict_known(model, oracle, arm.measure if strategy in SUGGESTING
                                      else None) if need_prediction else {}
            scores = {n: s for n, (_, s) in predicted.items()} if strategy in SUGGESTING \
                else None
            if scores is not None and not any(np.any(s > 0) for s in scores.values()):
                strategy, scores = "random", None  # the model sees nothing: no ranking
            picks = choose_slices(strategy, args.k, depths, touched, rng, scores)
            round_effort = Effort()
            by_volume: dict[str, list[int]] = {}
            for name, z in picks:
                by_volume.setdefault(name, []).append(z)
                touched[name].add(z)
            for name, zs in by_volume.items():
                truth = oracle.truth[name]
                if arm.kind == "correct":
                    original = predicted[name][0] if name in predicted \
                        else np.zeros_like(truth)
                    for z in zs:
                        edited = original.copy()
                        edited[z] = truth[z]
                        round_effort += correction_effort(original[z], edited[z],
                                                          effort_model.brush_px)
                        mode = "corrected_slices" if np.any(edited[z] != original[z]) \
                            else "current_slice"
                        accepted = accept.accepted_annotation(
                            edited, original, mode, project.num_classes, current_slice=z,
                            class_names=project.schema.names)
                        accept.save_accepted(project, name, accepted, author=AUTHOR)
                    continue
                data = drawn.setdefault(name, np.zeros(truth.shape, np.uint8))
                for z in zs:
                    if arm.kind == "scribble":
                        data[z] = oracle.scribble_slice(name, z)
                        effort = scribble_effort(data[z])
                    else:
                        data[z] = oracle.coarse_slice(name, z)
                        effort = region_effort(data[z])
                    effort.slices = 1
                    round_effort += effort
                project.save_annotation(name, STORED_KIND[arm.kind], data, author=AUTHOR,
                                        if_changed=True, allow_empty=True)
            total += round_effort
            model, train_info = train_round(project, arm, model, args, round_no)
            record(round_no, round_effort, picks, strategy, train_info,
                   evaluate(model, val, classes))
    finally:
        project.close()
    return records


# -- data --------------------------------------------------------------------------------------
def quick_data(folder: Path, seed: int) -> Path:
    """A tiny synthetic cohort in the ACDC layout: 2 train subjects, 1 val subject."""
    from napari_weakseg.synthetic import make_cohort, write_cohort

    shape = (6, 48, 48)
    spacing = (10.0, 1.5625 * 128 / shape[1], 1.5625 * 128 / shape[2])
    cases = make_cohort(3, seed=seed, shape=shape, spacing=spacing)
    write_cohort(folder, cases)
    names = [c.name for c in cases]
    (folder / "splits.json").write_text(json.dumps({"train": names[:4], "val": names[4:]}))
    return folder


def known_and_val(root: Path, patients: int, val_limit: int | None, seed: int,
                  unseen: bool = True):
    """The annotator's cases and the val cases. ``unseen``: the patients are the zoo
    model's inner-validation patients (``training.sources.inner_val_patients``, 10 patients,
    seed 0) — the default zoo model never trained on them — else a seeded draw."""
    splits = json.loads((root / "splits.json").read_text())
    subjects = sorted({n.split("_")[0] for n in splits["train"]})
    if unseen and len(subjects) > 10:  # (the --quick cohort is smaller)
        from napari_weakseg.training.sources import inner_val_patients

        held = inner_val_patients(subjects, 10, 0)
        chosen = sorted(random.Random(seed).sample(held, min(patients, len(held))))
    else:
        chosen = sorted(random.Random(seed).sample(subjects, min(patients, len(subjects))))
    known = [n for n in splits["train"] if n.split("_")[0] in chosen]
    return known, splits["val"][:val_limit]


def _inverted(data: np.ndarray) -> np.ndarray:
    """Contrast inverted between the 0.5th and 99.5th percentiles (scaled to 0–1000)."""
    low, high = np.percentile(data, [0.5, 99.5])
    unit = np.clip((data.astype(np.float32) - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    return (1000.0 * (1.0 - unit)).astype(np.float32)


#: Named intensity shifts standing in for another scanner or sequence (``--shift``).
SHIFTS = {"invert": _inverted}


def shifted_copy(root: Path, names: list[str], shift: str, folder: Path) -> Path:
    """The ``names`` of the cohort at ``root`` with their images transformed by
    ``SHIFTS[shift]`` (labels and scribbles copied unchanged), in the same layout under
    ``folder``; the geometry (header, affine, spacing) is kept. → the new root."""
    from napari_weakseg.io import read_volume, write_volume

    transform = SHIFTS[shift]
    for sub in ("images", "labels", "scribbles"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        target = folder / "images" / f"{name}.nii.gz"
        if not target.exists():
            image = read_volume(root / "images" / f"{name}.nii.gz", allow_4d=False)
            write_volume(target, transform(image.data), image.geometry, dtype=np.float32)
        for sub in ("labels", "scribbles"):
            source = root / sub / f"{name}.nii.gz"
            if source.exists() and not (folder / sub / source.name).exists():
                shutil.copyfile(source, folder / sub / source.name)
    splits = json.loads((root / "splits.json").read_text())
    kept = {split: [n for n in members if n in names] for split, members in splits.items()}
    (folder / "splits.json").write_text(json.dumps(kept))
    return folder


# -- reporting -------------------------------------------------------------------------------
def _fmt(value, spec=".3f") -> str:
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) \
        else format(value, spec)


def markdown(result: dict) -> str:
    rows, target = result["rounds"], result["settings"]["target"]
    classes = result["classes"][1:]
    lines = [f"### Annotation effort vs Dice ({result['settings']['data']})", "",
             "| arm | round | slices | strokes | est. min | iterations | "
             + " | ".join(classes) + " | mean Dice | HD95 mm |",
             "|---|---|---|---|---|---|" + "---|" * (len(classes) + 2)]
    for r in rows:
        lines.append(f"| {r['arm']} | {r['round']} | {r['effort']['slices']} | "
                     f"{r['effort']['strokes']} | {r['minutes']:.1f} | {r['iterations']} | "
                     + " | ".join(_fmt(r['dice'].get(c)) for c in classes)
                     + f" | {_fmt(r['mean_dice'])} | {_fmt(r['hd95_mm'], '.1f')} |")
    lines += ["", f"Effort to reach mean Dice {target} (first round at or above it):", "",
              "| arm | reached at round | slices | strokes | est. min | best mean Dice |",
              "|---|---|---|---|---|---|"]
    for arm, reached in result["summary"].items():
        hit = reached["reached"]
        lines.append(f"| {arm} | {'—' if hit is None else hit['round']} | "
                     f"{'—' if hit is None else hit['slices']} | "
                     f"{'—' if hit is None else hit['strokes']} | "
                     f"{'—' if hit is None else format(hit['minutes'], '.1f')} | "
                     f"{_fmt(reached['best_mean_dice'])} |")
    model = result["settings"]["effort_model"]
    lines += ["", f"Estimated seconds = slices × {model['slice_s']} + strokes × "
              f"{model['stroke_s']} + scribble px / {model['free_speed_px_s']} + outline/"
              f"correction px / {model['trace_speed_px_s']} (assumed constants)."]
    return "\n".join(lines) + "\n"


def summarise(rows: list[dict], target: float) -> dict:
    out = {}
    for row in rows:
        entry = out.setdefault(row["arm"], {"reached": None, "best_mean_dice": None})
        dice = row["mean_dice"]
        if dice is None or not np.isfinite(dice):
            continue
        if entry["best_mean_dice"] is None or dice > entry["best_mean_dice"]:
            entry["best_mean_dice"] = dice
        if entry["reached"] is None and dice >= target:
            entry["reached"] = {"round": row["round"], "slices": row["effort"]["slices"],
                                "strokes": row["effort"]["strokes"],
                                "minutes": row["minutes"]}
    return out


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def plot_png(rows: list[dict], path: Path, target: float) -> None:
    """Mean Dice vs estimated minutes (left) and vs strokes (right), one line per arm."""
    from PIL import Image, ImageDraw

    series: dict[str, list[dict]] = {}
    for row in rows:
        if row["mean_dice"] is not None and np.isfinite(row["mean_dice"]):
            series.setdefault(row["arm"], []).append(row)
    width, height, panel_w = 1400, 520 + 18 * max(1, len(series)), 620
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    top, plot_h = 40, 400
    lowest = min([r["mean_dice"] for rs in series.values() for r in rs] + [target])
    ylo = max(0.0, np.floor((lowest - 0.05) * 10) / 10)
    for panel, (key, label) in enumerate((("minutes", "estimated annotation minutes"),
                                          ("strokes", "strokes"))):
        left = 70 + panel * (panel_w + 80)
        values = [r["minutes"] if key == "minutes" else r["effort"]["strokes"]
                  for rs in series.values() for r in rs] or [1.0]
        xmax = max(max(values), 1e-9) * 1.05
        xfmt = ".2f" if xmax < 2 else (".1f" if xmax < 20 else ".0f")

        def xy(x, y, left=left, xmax=xmax):
            return (left + x / xmax * panel_w, top + (1.0 - (y - ylo) / (1 - ylo)) * plot_h)

        draw.rectangle([left, top, left + panel_w, top + plot_h], outline="black")
        for tick in np.linspace(0, 1, 6):
            x0, y0 = xy(0, ylo + tick * (1 - ylo))
            draw.line([x0 - 4, y0, x0, y0], fill="black")
            draw.text((x0 - 34, y0 - 6), f"{ylo + tick * (1 - ylo):.2f}", fill="black")
            xt, yt = xy(tick * xmax / 1.05, ylo)
            draw.line([xt, yt, xt, yt + 4], fill="black")
            draw.text((xt - 10, yt + 8), format(tick * xmax / 1.05, xfmt), fill="black")
        ty = xy(0, target)[1]
        draw.line([left, ty, left + panel_w, ty], fill=(200, 200, 200))
        draw.text((left + 4, ty - 14), f"Dice {target}", fill=(120, 120, 120))
        draw.text((left + panel_w / 2 - 80, top + plot_h + 24), label, fill="black")
        draw.text((left, 12), f"mean Dice vs {label}", fill="black")
        for i, (arm, rs) in enumerate(series.items()):
            colour = _COLOURS[i % len(_COLOURS)]
            points = [xy(r["minutes"] if key == "minutes" else r["effort"]["strokes"],
                          min(max(r["mean_dice"], ylo), 1.0)) for r in rs]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    for i, arm in enumerate(series):
        y = top + plot_h + 50 + 18 * i
        colour = _COLOURS[i % len(_COLOURS)]
        draw.line([70, y + 6, 100, y + 6], fill=colour, width=3)
        draw.text((108, y), arm, fill="black")
    image.save(path)


# -- main --------------------------------------------------------------------------------------
def _clean(value):
    """JSON-safe: NaN/inf → None, numpy scalars → Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny synthetic cohort, from scratch, correct-and-accept on "
                             "suggested slices, 2 rounds of 3 iterations (CI); the lists "
                             "below still apply when given")
    parser.add_argument("--acdc", type=Path, default=DEFAULT_ACDC)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, help="projects and runs (default OUT/work)")
    parser.add_argument("--init", default=None, help="zoo, scratch or a model folder; "
                        "comma-separated for several (default zoo; quick: scratch)")
    parser.add_argument("--methods", default="pce", help="pce, effdnet, mixed, ...")
    parser.add_argument("--kinds", default=None, help=f"of {', '.join(KINDS)} "
                        "(default scribble,correct; quick: correct)")
    parser.add_argument("--strategies", default=None,
                        help="random, coverage, suggest[:MEASURE], suggest-spread[:MEASURE], "
                             "suggest-cold[:MEASURE] "
                             "(default random,suggest; quick: suggest)")
    parser.add_argument("--measure", default="mean_entropy",
                        help="the ranking measure of plain 'suggest' (inference.suggest)")
    parser.add_argument("--rounds", type=int, default=None, help="default 5 (quick: 2)")
    parser.add_argument("--k", type=int, default=None, help="slices per round (default 6; "
                        "quick: 2)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="training iterations per round (default 300; quick: 3)")
    parser.add_argument("--minutes", type=float, help="at most this many minutes per round")
    parser.add_argument("--profile", default="quick-cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a TrainConfig field for every round (JSON value), e.g. "
                             "parent_distillation=0; repeatable")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--patients", type=int, default=10,
                        help="ACDC train patients the annotator knows (both frames)")
    parser.add_argument("--any-patients", action="store_true",
                        help="draw the annotator's patients from the whole train split "
                             "(default: the zoo model's inner-validation patients, which it "
                             "never trained on; at most 10)")
    parser.add_argument("--val-limit", type=int, help="first N volumes of ACDC val")
    parser.add_argument("--shift", choices=sorted(SHIFTS),
                        help="transform every image (the annotator's and val) — a stand-in "
                             "for another scanner or sequence the starting model knows "
                             "badly; written under WORK/acdc-SHIFT")
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slice-s", type=float, default=3.0)
    parser.add_argument("--stroke-s", type=float, default=1.0)
    parser.add_argument("--free-speed", type=float, default=60.0,
                        help="scribbling speed, image px/s (assumption)")
    parser.add_argument("--trace-speed", type=float, default=20.0,
                        help="outline/correction speed, image px/s (assumption)")
    args = parser.parse_args(argv)
    q = args.quick
    args.init = args.init or ("scratch" if q else "zoo")
    args.kinds = args.kinds or ("correct" if q else "scribble,correct")
    args.strategies = args.strategies or ("suggest" if q else "random,suggest")
    args.rounds = args.rounds or (2 if q else 5)
    args.k = args.k or (2 if q else 6)
    args.iterations = args.iterations or (3 if q else 300)

    import torch

    from napari_weakseg.inference.suggest import MEASURES
    from napari_weakseg.io import read_labels, read_volume
    from napari_weakseg.methods import get_method
    from napari_weakseg.schema import LabelSchema
    from napari_weakseg.weak.effort import EffortModel

    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or out / "work"
    work.mkdir(parents=True, exist_ok=True)
    if q:
        root = quick_data(work / "synthetic", args.seed)
        known, val_names = known_and_val(root, 2, args.val_limit, args.seed)
        data = "synthetic quick cohort (4 known volumes, 2 val volumes, 6×48×48)"
    else:
        root = args.acdc
        if not (root / "splits.json").exists():
            print(f"ACDC data not found at {root}", file=sys.stderr)
            return 2
        known, val_names = known_and_val(root, args.patients, args.val_limit, args.seed,
                                         unseen=not args.any_patients)
        data = (f"ACDC: {len(known)} known train volumes, {len(val_names)} val volumes")
        if args.shift:
            root = shifted_copy(root, known + val_names, args.shift,
                                work / f"acdc-{args.shift}")
            data += f", images shifted: {args.shift}"
    classes = LabelSchema.cardiac().names
    oracle = Oracle(root, known, len(classes), args.seed)
    val = []
    for name in val_names:
        image = read_volume(root / "images" / f"{name}.nii.gz", allow_4d=False)
        val.append((name, image, read_labels(root / "labels" / f"{name}.nii.gz",
                                             like=image.geometry).data))
    effort_model = EffortModel(args.slice_s, args.stroke_s, args.free_speed, args.trace_speed)
    arms, skipped = [], []
    for init in _list(args.init):
        for method in _list(args.methods):
            kinds_learnt = get_method(method).kinds
            for kind in _list(args.kinds):
                if kind not in KINDS:
                    parser.error(f"--kinds: unknown kind {kind!r} ({', '.join(KINDS)})")
                if STORED_KIND[kind] not in kinds_learnt:
                    skipped.append(f"{method} × {kind}: {method} does not learn from "
                                   f"{STORED_KIND[kind]}")
                    continue
                for spec in _list(args.strategies):
                    strategy, _, measure = spec.partition(":")
                    measure = measure or args.measure
                    if strategy not in STRATEGIES or measure not in MEASURES:
                        parser.error(f"--strategies: {spec!r} (strategies "
                                     f"{', '.join(STRATEGIES)}; measures "
                                     f"{', '.join(MEASURES)})")
                    arms.append(Arm(init, method, kind, strategy, measure))
    for note in skipped:
        print(f"skipped {note}")
    started = time.perf_counter()
    rows = []
    for arm in arms:
        print(f"{arm.name}", flush=True)
        rows += run_arm(arm, args, oracle, val, classes, work, effort_model)
    result = {
        "settings": {"data": data, "known": known, "val": val_names, "rounds": args.rounds,
                     "k": args.k, "iterations": args.iterations, "minutes": args.minutes,
                     "profile": args.profile, "threads": args.threads, "seed": args.seed,
                     "shift": args.shift,
                     "target": args.target, "quick": q, "skipped": skipped,
                     "effort_model": effort_model.to_dict(),
                     "real_scribble_slices": oracle.real_slices,
                     "simulated_scribble_slices": oracle.simulated_slices,
                     "seconds": round(time.perf_counter() - started, 1)},
        "classes": classes, "rounds": rows, "summary": summarise(rows, args.target)}
    (out / "annotation_effort.json").write_text(json.dumps(_clean(result), indent=1))
    (out / "annotation_effort.md").write_text(markdown(result))
    plot_png(rows, out / "annotation_effort.png", args.target)
    print(markdown(result))
    print(f"wrote {out / 'annotation_effort.json'}, .md, .png "
          f"({result['settings']['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
