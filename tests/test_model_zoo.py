"""The shipped zoo models load safely and segment real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.nets.model_folder import load_model

MODELS = Path(__file__).resolve().parents[1] / "models"
ZOO = sorted(p for p in MODELS.iterdir() if (p / "config.json").exists())


def test_zoo_is_not_empty():
    assert ZOO, "models/ should ship at least one model"


@pytest.mark.parametrize("folder", ZOO, ids=[p.name for p in ZOO])
def test_zoo_model_folder_is_complete(folder):
    config = json.loads((folder / "config.json").read_text())
    assert {"network", "classes", "preprocessing", "method"} <= set(config)
    card = (folder / "README.md").read_text()
    assert "Dice" in card and "HD95" in card
    net, loaded = load_model(folder)  # weights_only=True inside
    assert loaded["classes"] == config["classes"]
    assert (folder / "weights.pt").stat().st_size < 20 * 2 ** 20


def test_cardiac_zoo_model_segments_acdc_val(acdc_dir):
    from napari_weakseg.evaluation.metrics import evaluate_volume
    from napari_weakseg.inference.export import keep_largest_component
    from napari_weakseg.inference.predict import predict_volume
    from napari_weakseg.io import read_labels, read_volume

    net, config = load_model(MODELS / "acdc-cine-pce")
    splits = json.loads((acdc_dir / "splits.json").read_text())
    scores = []
    for name in splits["val"][:2]:
        image = read_volume(acdc_dir / "images" / f"{name}.nii.gz")
        truth = read_labels(acdc_dir / "labels" / f"{name}.nii.gz", like=image.geometry)
        labels = predict_volume(net, image.data, config["preprocessing"]["size"]).labels
        labels = keep_largest_component(labels, 4)
        result = evaluate_volume(labels, truth.data, image.geometry.spatial_spacing,
                                 classes={2: "MYO", 3: "LV"})
        scores += [result["MYO"]["dice"], result["LV"]["dice"]]
    assert np.mean(scores) > 0.7, scores
