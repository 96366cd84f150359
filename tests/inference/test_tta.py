"""Test-time augmentation: ``mirror`` averages the four in-plane flips; a model folder may
record it as its default (``config["inference"]["tta"]``); every path follows the model
unless told otherwise, the choice is recorded in the export manifest, live previews and
rankings stay one pass, and a fine-tune inherits its parent's choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.errors import OptionError
from napari_weakseg.inference.export import MANIFEST_DIR, ExportOptions, export_cohort
from napari_weakseg.inference.predict import _forward_probs
from napari_weakseg.tta import resolve_tta
from napari_weakseg.inference.predictor import Predictor
from napari_weakseg.nets.model_folder import ModelFolderError, read_config
from tests.inference.test_export import make_tiny_model, random_image, write_image
from tests.inference.test_predictor import with_config


@pytest.fixture(scope="module")
def mirror_model(tmp_path_factory) -> Path:
    folder = make_tiny_model(tmp_path_factory.mktemp("mirror") / "model", seed=3)
    return with_config(folder, inference={"tta": "mirror"})


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("plain") / "model", seed=3)


def test_mirror_is_the_mean_of_the_four_flips():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 3, 3, padding=1)  # not flip-equivariant: flips change outputs
    x = torch.randn(2, 1, 8, 6)

    def probs(inp):
        return torch.softmax(net(inp), 1)

    expected = (probs(x) + probs(x.flip(-1)).flip(-1) + probs(x.flip(-2)).flip(-2)
                + probs(x.flip(-2, -1)).flip(-2, -1)) / 4
    with torch.no_grad():
        assert torch.allclose(_forward_probs(net, x, True), expected, atol=1e-6)
        assert torch.allclose(_forward_probs(net, x, False), probs(x), atol=1e-6)
        assert not torch.allclose(expected, probs(x), atol=1e-3)


@pytest.mark.parametrize("tta, flip_tta, default, expected", [
    (None, None, "mirror", "mirror"),      # the model's choice
    (None, None, "none", "none"),
    ("none", None, "mirror", "none"),      # an explicit choice wins
    (None, False, "mirror", "none"),       # the old boolean spelling
    (None, True, "none", "mirror"),
    ("mirror", True, "none", "mirror"),    # both spellings agreeing
])
def test_the_effective_tta(tta, flip_tta, default, expected):
    assert resolve_tta(tta, flip_tta, default) == expected


@pytest.mark.parametrize("tta, flip_tta", [("rot90", None), ("none", True), ("mirror", False)])
def test_a_bad_or_contradictory_tta_is_refused(tta, flip_tta):
    with pytest.raises(OptionError):
        resolve_tta(tta, flip_tta, "none")


@pytest.mark.parametrize("entry, problem", [
    ({"tta": "rot90"}, "unknown test-time augmentation"),
    ("mirror", "expected an object"),
])
def test_a_model_folder_with_a_bad_inference_entry_is_refused(tmp_path, entry, problem):
    folder = with_config(make_tiny_model(tmp_path / "m"), inference=entry)
    with pytest.raises(ModelFolderError, match=f"config.json: field 'inference': {problem}"):
        read_config(folder)


def test_the_predictor_follows_the_model_unless_told(mirror_model, plain_model):
    image = random_image(1, (2, 24, 20))
    recorded = Predictor(mirror_model, device="cpu")
    assert (recorded.tta, recorded.recorded_tta, recorded.flip_tta) == ("mirror", "mirror", True)
    assert "test-time augmentation: mirror (model's)" in recorded.describe()
    plain = Predictor(plain_model, device="cpu")  # same weights, nothing recorded
    assert plain.tta == "none"
    by_default = recorded.predict(image).probabilities
    np.testing.assert_allclose(by_default, plain.predict(image, tta="mirror").probabilities,
                               atol=1e-6)
    np.testing.assert_allclose(recorded.predict(image, tta="none").probabilities,
                               plain.predict(image).probabilities, atol=1e-6)
    assert not np.allclose(by_default, plain.predict(image).probabilities, atol=1e-4)
    overridden = Predictor(mirror_model, device="cpu", tta="none")
    assert "test-time augmentation: none (model's: mirror)" in overridden.describe()


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_DIR / "v.json").read_text())


@pytest.mark.parametrize("options, expected", [
    ({}, "mirror"), ({"tta": "none"}, "none"), ({"flip_tta": True}, "mirror"),
])
def test_export_records_the_tta_it_used(tmp_path, mirror_model, options, expected):
    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (2, 24, 20)))
    out = tmp_path / "out"
    assert export_cohort(mirror_model, [image], out,
                         ExportOptions(device="cpu", threads=1, prefetch=0, **options)).ok
    assert manifest(out)["options"]["tta"] == expected
    other = "none" if expected == "mirror" else "mirror"
    again = export_cohort(mirror_model, [image], out,
                          ExportOptions(device="cpu", threads=1, prefetch=0, tta=other))
    assert again.exported == ["v"] and manifest(out)["options"]["tta"] == other


def test_contradictory_export_tta_options_are_refused():
    with pytest.raises(OptionError, match="contradicts"):
        ExportOptions(tta="none", flip_tta=True)
    with pytest.raises(ValueError, match="--tta"):
        ExportOptions(tta="rot90")


def test_cli_predict_follows_the_model_and_says_so(tmp_path, mirror_model, capsys):
    from napari_weakseg.cli import main

    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (2, 24, 20)))
    assert main(["predict", str(mirror_model), str(image), "--out", str(tmp_path / "a"),
                 "--device", "cpu"]) == 0
    assert "test-time augmentation: mirror (model's)" in capsys.readouterr().out
    assert main(["predict", str(mirror_model), str(image), "--out", str(tmp_path / "b"),
                 "--device", "cpu", "--tta", "none"]) == 0
    assert "test-time augmentation: none (model's: mirror)" in capsys.readouterr().out


def test_previews_and_rankings_are_one_pass(mirror_model, plain_model):
    from napari_weakseg.widgets import logic

    image = random_image(2, (2, 24, 20))
    preview = logic.predict_image(mirror_model, image, "cpu", tta="none")
    plain = Predictor(plain_model, device="cpu").predict(image)
    np.testing.assert_allclose(preview.probabilities, plain.probabilities, atol=1e-6)
    final = logic.predict_image(mirror_model, image, "cpu")  # the model's default
    assert not np.allclose(final.probabilities, plain.probabilities, atol=1e-4)


@pytest.mark.parametrize("parent_inference, expected", [
    ({"tta": "mirror"}, {"tta": "mirror"}), (None, None)])
def test_a_fine_tune_records_its_parents_tta(tmp_path, parent_inference, expected):
    from napari_weakseg.nets.model_folder import load_model
    from napari_weakseg.training.config import TrainConfig
    from napari_weakseg.training.sources import synthetic_data
    from napari_weakseg.training.trainer import Trainer

    parent = make_tiny_model(tmp_path / "parent")
    if parent_inference is not None:
        with_config(parent, inference=parent_inference)
    data = synthetic_data(subjects=1, val_subjects=1, shape=(2, 32, 32))
    form = TrainConfig(method="pce", iterations=1, batch_size=2, size=32, base_width=4,
                       val_every=1, checkpoint_every=1, device="cpu", threads=1,
                       init_model=str(parent))
    result = Trainer(form, data.train, data.val, data.class_names, tmp_path / "run").run()
    _, config = load_model(result.model_dir)
    assert config.get("inference") == expected
    assert f"test-time augmentation: {(expected or {}).get('tta', 'none')}" in \
        (result.model_dir / "README.md").read_text()
