"""The one predictor: every path uses it (CLI, demo, export, widgets, trainer validation),
old model folders predict as before, an override is explicit and recorded, a fine-tune
inherits its parent's pipeline, and cardiac.csv flags measurements it cannot vouch for."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_weakseg.inference.export import (CARDIAC_CSV, MANIFEST_DIR, MEASUREMENTS_CSV,
                                             ExportOptions, export_cohort)
from napari_weakseg.inference.predict import Prediction, predict_volume
from napari_weakseg.inference.predictor import Predictor
from napari_weakseg.nets.model_folder import CONFIG, load_model
from napari_weakseg.postprocess import Postprocessing, keep_largest_component
from napari_weakseg.schema import LabelSchema
from tests.inference.test_export import (CLASSES, SPACING, make_tiny_model, random_image,
                                         write_image)


def with_config(folder: Path, **entries) -> Path:
    config = json.loads((folder / CONFIG).read_text())
    config.update(entries)
    (folder / CONFIG).write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def legacy_model(tmp_path_factory) -> Path:
    """A model folder as written before pre-/post-processing were recorded."""
    return make_tiny_model(tmp_path_factory.mktemp("legacy") / "model")


@pytest.fixture(scope="module")
def anatomy_model(tmp_path_factory) -> Path:
    folder = make_tiny_model(tmp_path_factory.mktemp("anatomy") / "model", seed=2)
    return with_config(folder, postprocessing={"name": "anatomy",
                                               "rules": LabelSchema.cardiac().rules()})


@pytest.fixture
def spy(monkeypatch) -> list[str]:
    """Every call of ``Predictor.predict`` (subclasses included), by class name."""
    calls: list[str] = []
    original = Predictor.predict

    def predict(self, image, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", predict)
    return calls


# -- every path -----------------------------------------------------------------------------------
def path_cli_predict(model, tmp_path):
    from napari_weakseg.cli import main

    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (2, 24, 20)))
    assert main(["predict", str(model), str(image), "--out", str(tmp_path / "pred"),
                 "--device", "cpu"]) == 0


def path_export(model, tmp_path):
    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (2, 24, 20)))
    assert export_cohort(model, [image], tmp_path / "out",
                         ExportOptions(device="cpu", threads=1, prefetch=0)).ok


def path_widgets(model, tmp_path):
    from napari_weakseg.widgets import logic

    prediction = logic.predict_image(model, random_image(0, (2, 24, 20)), "cpu",
                                     spacing=SPACING)
    assert prediction.labels.shape == (2, 24, 20)


def path_trainer_validation(model, tmp_path):
    from napari_weakseg.training.config import TrainConfig
    from napari_weakseg.training.sources import synthetic_data
    from napari_weakseg.training.trainer import Trainer

    data = synthetic_data(subjects=1, val_subjects=1, shape=(2, 32, 32))
    config = TrainConfig(method="pce", iterations=1, batch_size=2, size=32, base_width=4,
                         val_every=1, checkpoint_every=1, device="cpu", threads=1)
    result = Trainer(config, data.train, data.val, data.class_names, tmp_path / "run").run()
    assert result.best_mean_dice is not None


def path_demo(model, tmp_path):
    from napari_weakseg.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--iterations", "2",
                 "--subjects", "2"]) == 0


PATHS = {"weakseg predict": path_cli_predict, "batch export": path_export,
         "widgets (Review tab)": path_widgets, "trainer validation": path_trainer_validation,
         "demo": path_demo}


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_predicts_through_the_predictor(path, spy, anatomy_model, tmp_path):
    PATHS[path](anatomy_model, tmp_path)
    assert spy, f"{path} did not use the Predictor"


# -- old model folders ----------------------------------------------------------------------------
@pytest.mark.parametrize("postprocessing, expected", [
    (None, "none"),                             # no record: the argmax, as before
    ({"largest_component": True}, "largest"),   # the zoo model's legacy record
])
def test_a_config_without_the_new_fields_predicts_as_before(tmp_path, postprocessing,
                                                            expected):
    folder = make_tiny_model(tmp_path / "model", seed=3)
    if postprocessing is not None:
        with_config(folder, postprocessing=postprocessing)
    image = random_image(4, (3, 37, 50))
    predictor = Predictor(folder, device="cpu")
    assert predictor.postprocess == expected and predictor.preprocessing.name == "resize"
    prediction = predictor.predict(image)  # no spacing needed for the resize pipeline
    net, _ = load_model(folder)
    before = predict_volume(net, image, 32)
    np.testing.assert_array_equal(prediction.raw_labels, before.labels)
    np.testing.assert_allclose(prediction.probabilities, before.probabilities, atol=1e-6)
    want = keep_largest_component(before.labels, 4) if expected == "largest" else before.labels
    np.testing.assert_array_equal(prediction.labels, want)


def test_override_beats_the_recorded_postprocessing(anatomy_model):
    assert Predictor(anatomy_model, device="cpu").postprocess == "anatomy"
    assert Predictor(anatomy_model, device="cpu", postprocess="none").postprocess == "none"
    with pytest.raises(ValueError, match="unknown post-processing"):
        Predictor(anatomy_model, device="cpu", postprocess="blobs")


# -- export: the model's default, an explicit override, recorded ----------------------------------
def manifest(out: Path, name: str = "v") -> dict:
    return json.loads((out / MANIFEST_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("options, name, source", [
    ({}, "anatomy", "model"),
    ({"postprocess": "none"}, "none", "override"),
    ({"postprocess": "largest"}, "largest", "override"),
    ({"largest_component": True}, "largest", "override"),   # the old flag is an alias
])
def test_export_uses_the_models_postprocessing_unless_overridden(tmp_path, anatomy_model,
                                                                 options, name, source):
    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (2, 24, 20)))
    out = tmp_path / "out"
    report = export_cohort(anatomy_model, [image], out,
                           ExportOptions(device="cpu", threads=1, **options))
    assert report.ok
    record = manifest(out)
    assert record["postprocess"]["name"] == name and record["postprocess"]["source"] == source
    assert record["postprocess"]["model"] == "anatomy"
    assert record["options"]["postprocess"] == name
    # another choice is another export: the volume is redone
    other = "none" if name != "none" else "largest"
    again = export_cohort(anatomy_model, [image], out,
                          ExportOptions(device="cpu", threads=1, postprocess=other))
    assert again.exported == ["v"] and manifest(out)["postprocess"]["name"] == other


def test_cli_postprocess_override_is_recorded(tmp_path, anatomy_model):
    from napari_weakseg.cli import main

    image = write_image(tmp_path / "in" / "v.nii.gz", random_image(0, (2, 24, 20)))
    assert main(["export", str(anatomy_model), str(image), "--out", str(tmp_path / "out"),
                 "--device", "cpu", "--threads", "1", "--postprocess", "none"]) == 0
    assert manifest(tmp_path / "out")["postprocess"] == {
        "name": "none", "source": "override", "model": "anatomy",
        "rules": {"LV": {"enclosed_by": "MYO"}}}
    with pytest.raises(SystemExit):
        main(["export", str(anatomy_model), str(image), "--out", str(tmp_path / "o"),
              "--postprocess", "blobs"])


def test_bad_export_postprocess_option_is_refused():
    with pytest.raises(ValueError, match="--postprocess"):
        ExportOptions(postprocess="blobs")
    with pytest.raises(ValueError, match="contradicts"):
        ExportOptions(postprocess="anatomy", largest_component=True)


# -- fine-tune inherits ---------------------------------------------------------------------------
def test_fine_tune_inherits_the_parents_pipeline_width_and_size(tmp_path):
    from napari_weakseg.preprocess import Preprocessing
    from napari_weakseg.training.config import TrainConfig
    from napari_weakseg.training.sources import synthetic_data
    from napari_weakseg.training.trainer import Trainer

    parent = make_tiny_model(tmp_path / "parent")
    pre = Preprocessing("spacing", "zscore", (32, 32), (1.3, 1.3)).to_config()
    with_config(parent, preprocessing=pre, postprocessing={"name": "largest"})
    data = synthetic_data(subjects=1, val_subjects=1, shape=(2, 32, 32),
                          normalisation="zscore")
    form = TrainConfig(method="pce", iterations=1, batch_size=2, size=64, base_width=8,
                       val_every=1, checkpoint_every=1, device="cpu", threads=1,
                       postprocessing="anatomy", init_model=str(parent))
    result = Trainer(form, data.train, data.val, data.class_names, tmp_path / "run").run()
    _, config = load_model(result.model_dir)
    assert config["preprocessing"] == pre
    assert config["postprocessing"]["name"] == "largest"
    assert config["network"]["base_width"] == 4
    training = config["training"]
    assert (training["size"], training["base_width"], training["postprocessing"],
            training["normalisation"], training["preprocessing"]) == \
        (32, 4, "largest", "zscore", "spacing")


def test_new_model_records_its_pipeline_and_the_schema_rules(tmp_path):
    from napari_weakseg.training.config import TrainConfig
    from napari_weakseg.training.sources import synthetic_data
    from napari_weakseg.training.trainer import Trainer

    data = synthetic_data(subjects=1, val_subjects=1, shape=(2, 32, 32))
    config = TrainConfig(method="pce", iterations=1, batch_size=2, size=32, base_width=4,
                         val_every=1, checkpoint_every=1, device="cpu", threads=1,
                         preprocessing="spacing")
    result = Trainer(config, data.train, data.val, data.class_names, tmp_path / "run",
                     rules=data.rules).run()
    _, recorded = load_model(result.model_dir)
    spacing = data.train[0].spacing[1:]
    assert recorded["preprocessing"]["name"] == "spacing"
    assert recorded["preprocessing"]["target_spacing"] == pytest.approx(list(spacing))
    assert recorded["postprocessing"] == {"name": "anatomy",
                                          "rules": {"LV": {"enclosed_by": "MYO"}},
                                          "apply_rules": True}
    predictor = Predictor(result.model_dir, device="cpu")
    image = random_image(0, (2, 45, 37))
    assert predictor.predict(image, (10.0, 0.9, 1.7)).labels.shape == (2, 45, 37)


# -- QC in cardiac.csv ----------------------------------------------------------------------------
class CardiacPhantom:
    """Labels read off the image (intensity = 100 × class); records the cardiac schema's
    rules and no post-processing, like a model folder would."""

    classes = CLASSES
    identity = "cardiac-phantom"
    recorded_postprocessing = Postprocessing("none", LabelSchema.cardiac().rules())

    def predict(self, image, flip_tta=False):
        labels = np.clip(np.rint(np.asarray(image) / 100.0), 0, 3).astype(np.uint8)
        probabilities = np.stack([(labels == c) for c in range(4)]).astype(np.float32)
        return Prediction(labels, probabilities, np.zeros(labels.shape, np.float32))


def heart(lv_radius: float, rv_width: int, *, blob=False, lv_outside=False) -> np.ndarray:
    """3 slices: an LV disk inside a MYO ring, an RV beside it; optionally a far RV blob
    (a second component with a third of the RV's voxels), or the LV outside the ring."""
    labels = np.zeros((3, 48, 48), np.uint8)
    yy, xx = np.mgrid[:48, :48]
    r = np.hypot(yy - 24, xx - 20)
    labels[:, r < lv_radius + 3] = 2
    labels[:, r < lv_radius] = 3
    labels[:, 18:30, 32:32 + rv_width] = 1
    if blob:
        labels[:, 2:8, 2:10] = 1
    if lv_outside:
        labels[labels == 3] = 2
        labels[:, 38:46, 2:10] = 3
    return labels.astype(np.float32) * 100


QC_CASES = {
    "plausible": ({}, {}, "ok"),
    "fragmented RV": ({"blob": True}, {"blob": True}, "fragmented:RV@ED;fragmented:RV@ES"),
    "EF 0 %": ({}, {"lv_radius": 6.0}, "implausible_EF:LV=0.0"),
    "LV outside the MYO": ({"lv_outside": True}, {}, "not_enclosed:LV@ED"),
}


@pytest.mark.parametrize("case", list(QC_CASES))
def test_cardiac_csv_flags_what_it_cannot_vouch_for(tmp_path, case):
    ed_kw, es_kw, expected = QC_CASES[case]
    ed = heart(**{"lv_radius": 6.0, "rv_width": 8, **ed_kw})
    es = heart(**{"lv_radius": 4.0, "rv_width": 6, **es_kw})
    for name, data in (("patient009_frame01", ed), ("patient009_frame10", es)):
        write_image(tmp_path / "in" / f"{name}.nii.gz", data)
    report = export_cohort(CardiacPhantom(), [tmp_path / "in"], tmp_path / "out",
                           ExportOptions(prefetch=0))
    assert report.ok
    with open(tmp_path / "out" / CARDIAC_CSV, newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["status"] == "ok" and row["qc"] == expected
    if case == "LV outside the MYO":
        with open(tmp_path / "out" / MEASUREMENTS_CSV, newline="") as handle:
            rows = {r["name"]: r for r in csv.DictReader(handle)}
        assert "not_enclosed:LV" in rows["patient009_frame01"]["qc"]
        assert rows["patient009_frame10"]["qc"] == "ok"


# -- layering: inference no longer imports training -----------------------------------------------
def test_inference_and_the_pipeline_stages_do_not_import_training():
    import ast
    import subprocess
    import sys

    package = Path(__file__).resolve().parents[2] / "napari_weakseg"
    files = [*sorted((package / "inference").glob("*.py")), package / "preprocess.py",
             package / "postprocess.py", *sorted((package / "nets").glob("*.py"))]
    offenders = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                if "training" in module.split("."):
                    offenders.append(f"{file.name}: from {module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{file.name}: import {a.name}" for a in node.names
                              if ".training" in a.name]
    assert not offenders
    code = ("import sys, napari_weakseg.preprocess, napari_weakseg.postprocess\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'"
            " or m.startswith('napari_weakseg.training'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
