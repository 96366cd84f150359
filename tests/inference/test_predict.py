"""Whole-volume prediction: back on the input grid; the WSL4MIS pipeline oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_weakseg.evaluation.metrics import evaluate_volume
from napari_weakseg.inference.predict import predict_volume
from napari_weakseg.io import read_volume, write_labels
from napari_weakseg.nets.unet import build_network, default_config
from napari_weakseg.synthetic import make_cardiac_volume


class ToyNet(torch.nn.Module):
    """The oracle's fixed 'network': logits_k = −20·(x − k/3)², k = 0..3."""

    def forward(self, x):
        k = torch.arange(4, dtype=x.dtype).view(1, 4, 1, 1) / 3.0
        return -20.0 * (x - k) ** 2, x


def test_wsl4mis_pipeline_matches_oracle(oracle):
    ref = oracle("wsl4mis_eval_pipeline")
    prediction = predict_volume(ToyNet(), ref["image"], 256, normalise=False,
                                pipeline="wsl4mis")
    np.testing.assert_array_equal(prediction.labels, ref["pred"])
    scores = evaluate_volume(prediction.labels, ref["label"], spacing=(10.0, 1.5, 1.25),
                             classes=[1, 2, 3])
    measured = np.array([[scores[str(c)]["dice"], scores[str(c)]["hd95_mm"]] for c in (1, 2, 3)])
    np.testing.assert_allclose(measured, ref["test_metric_dice_hd95_asd_mm"][:, :2], rtol=1e-5)


@pytest.mark.parametrize("shape, flip_tta", [((3, 37, 50), False), ((2, 64, 48), True)])
def test_prediction_lies_on_the_input_grid(shape, flip_tta):
    torch.manual_seed(0)
    net = build_network(default_config(base_width=4))
    image = np.random.default_rng(0).random(shape).astype(np.float32) * 300
    prediction = predict_volume(net, image, 32, flip_tta=flip_tta, batch_slices=2)
    assert prediction.labels.shape == shape and prediction.labels.dtype == np.uint8
    assert prediction.probabilities.shape == (4,) + shape
    np.testing.assert_allclose(prediction.probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(prediction.labels, prediction.probabilities.argmax(0))
    assert prediction.entropy.shape == shape
    assert 0 <= prediction.entropy.min() and prediction.entropy.max() <= np.log(4) + 1e-5
    assert net.training  # the caller's mode is restored


def test_predicted_labels_write_on_the_image_affine(tmp_path):
    case = make_cardiac_volume(1, shape=(3, 40, 40))
    net = build_network(default_config(base_width=4))
    prediction = predict_volume(net, case.image, 32)
    write_labels(tmp_path / "pred.nii.gz", prediction.labels, case.geometry)
    back = read_volume(tmp_path / "pred.nii.gz")
    np.testing.assert_array_equal(back.data, prediction.labels)
    np.testing.assert_array_equal(back.geometry.affine, case.geometry.affine)
