"""Every method trains end to end through the trainer on the targets the store builds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_weakseg.nets.model_folder import load_model
from napari_weakseg.training.config import TrainConfig
from napari_weakseg.training.data import TrainingVolume, normalise_intensity
from napari_weakseg.training.trainer import Trainer
from napari_weakseg.weak.simulate import simulate
from napari_weakseg.weak.targets import SimpleAnnotation, build_targets

NAMES = ["background", "RV", "MYO", "LV"]
C = len(NAMES)


def annotations_for(kind: str, case, index: int) -> list:
    truth = case.ground_truth
    if kind == "scribble":
        return [SimpleAnnotation("scribble", case.scribble)]
    if kind == "dense":
        return [SimpleAnnotation("dense", truth.astype(np.int64) + 1)]
    if kind == "coarse":
        pos = simulate("coarse_pos", truth, C, radius=1)
        neg = simulate("coarse_neg", truth, C, radius=2)
        return [SimpleAnnotation("coarse_pos", pos.data), SimpleAnnotation("coarse_neg", neg.data)]
    if kind == "partial+sparse":  # one source annotates LV+MYO, the other every 2nd slice
        sim = (simulate("partial", truth, C, keep=[2, 3]) if index % 2 == 0
               else simulate("sparse", truth, C, every=2))
        return [SimpleAnnotation(sim.kind, sim.data, declared_classes=sim.declared_classes,
                                 declared_slices=sim.declared_slices)]
    raise ValueError(kind)


@pytest.fixture(scope="module")
def cases():
    from napari_weakseg.synthetic import make_cohort

    return make_cohort(2, seed=7, shape=(4, 32, 32))


@pytest.mark.parametrize("method, kind, options", [
    ("pce", "scribble", {}),
    ("full", "dense", {}),
    ("effdnet", "scribble", {"fbsl_k": 4}),
    ("effdnet", "scribble", {"fbsl_k": 4, "use_fadc": False, "use_fbsl": False}),
    ("refineseg", "coarse", {}),
    ("refineseg", "coarse", {"ablation": "no_heads"}),
    ("disambig", "partial+sparse", {}),
    ("pce", "coarse", {}),
])
def test_method_trains_and_resumes(tmp_path, cases, method, kind, options):
    volumes = []
    for i, case in enumerate(cases[:3]):
        targets = build_targets(annotations_for(kind, case, i), C, case.ground_truth.shape)
        volumes.append(TrainingVolume(case.name, normalise_intensity(case.image),
                                      targets.as_dict(), case.ground_truth,
                                      case.geometry.spatial_spacing))
    train, val = volumes[:2], volumes[2:]
    config = TrainConfig(method=method, iterations=4, batch_size=2, size=32, base_width=4,
                         val_every=4, checkpoint_every=2, device="cpu", threads=1,
                         method_options=options)
    events = []
    result = Trainer(config, train, val, NAMES, tmp_path / "run", emit=events.append).run()
    assert result.status == "completed", [e for e in events if e.type == "failed"]
    losses = [e.losses for e in events if e.type == "progress"]
    assert losses and all(np.isfinite(v) for row in losses for v in row.values())
    net, _ = load_model(result.model_dir)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    # the checkpoint holds the method's extra modules and state, and resumes
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 4
    longer = TrainConfig(**{**config.to_dict(), "iterations": 6})
    resumed = Trainer(longer, train, val, NAMES, tmp_path / "run").run()
    assert resumed.iteration == 6
