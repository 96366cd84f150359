"""Live previews (issue 17): a run with ``preview_every_s`` rewrites ``model_preview/`` with
its current weights and announces it, so a viewer can predict with them while it trains."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakseg.errors import OptionError
from napari_weakseg.inference.predictor import Predictor
from napari_weakseg.training.config import TrainConfig
from napari_weakseg.training.events import Preview, parse_event
from napari_weakseg.training.sources import synthetic_data
from napari_weakseg.training.trainer import PREVIEW_DIR, Trainer


def tiny_config(**overrides) -> TrainConfig:
    base = dict(method="pce", iterations=5, batch_size=2, size=32, base_width=4,
                val_every=5, checkpoint_every=5, device="cpu", threads=1)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return synthetic_data(subjects=1, val_subjects=1, shape=(4, 32, 32))


def test_previews_are_written_and_announced(tmp_path, data):
    events = []
    Trainer(tiny_config(preview_every_s=1e-6), data.train, data.val, data.class_names,
            tmp_path, emit=events.append).run()
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.iteration for p in previews] == [1, 2, 3, 4]  # not after the last: the model
    assert all(parse_event(p.to_json()) == p for p in previews)
    folder = tmp_path / PREVIEW_DIR
    assert previews[-1].model_dir == str(folder)
    predictor = Predictor(folder, device="cpu")  # the one predictor reads it
    assert predictor.config["method"] == "pce"
    prediction = predictor.predict(data.val[0].image, data.val[0].spacing)
    assert prediction.labels.shape == data.val[0].image.shape


def test_no_previews_unless_asked(tmp_path, data):
    events = []
    Trainer(tiny_config(), data.train, data.val, data.class_names, tmp_path,
            emit=events.append).run()
    assert not [e for e in events if e.type == "preview"]
    assert not (tmp_path / PREVIEW_DIR).exists()


def test_preview_interval_is_checked():
    with pytest.raises(OptionError, match="preview_every_s"):
        tiny_config(preview_every_s=-1.0).validate()
    assert np.isclose(tiny_config(preview_every_s=15).validate().preview_every_s, 15)
