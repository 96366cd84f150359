"""Whole-volume prediction with the 2D network, back on the volume's own grid.

Each volume is normalised with its own statistics (the model's recorded normaliser), each
slice brought to the network's resolution by the model's pre-processing
(:class:`napari_weakseg.preprocess.Preprocessing`: ``resize`` to the training size, or
``spacing``: resampled to the target spacing and padded to a multiple of 16), predicted in
batches of slices, and the softmax probabilities are mapped back (bilinear) onto the slice
grid before the argmax — so the label map lies exactly on the input grid. Optional
test-time augmentation ``mirror`` (nnU-Net's mirroring, in 2D) averages the probabilities
of the plain slice and of its left-right, up-down and both-ways flips (4 passes; the
``flip_tta`` flag of the functions below). A model folder may record it as its default
(``config["inference"]["tta"]``, :mod:`napari_weakseg.tta`); chosen for the zoo model on
the inner split (docs/results.md). ``pipeline="wsl4mis"`` instead reproduces the reference
evaluation (nearest-neighbour resize of the image to the training size and of the *label map* back;
methods-as-coded §2.8).

Every path (CLI, demo, widgets, export, the trainer's validation) goes through
:class:`napari_weakseg.inference.predictor.Predictor`, which reads the pre- and
post-processing a model records; :func:`predict_volume` is the low-level ``resize`` call.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

import numpy as np


@dataclass(eq=False)
class Prediction:
    """``labels`` (Z, Y, X) uint8/uint16 class indices, ``probabilities`` (C, Z, Y, X)
    float32 (``None`` for the wsl4mis pipeline), ``entropy`` (Z, Y, X) float32 in nats.
    From a :class:`~napari_weakseg.inference.predictor.Predictor`: ``labels`` are
    post-processed (``postprocess`` names how), ``raw_labels`` is the argmax before."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    entropy: np.ndarray | None
    raw_labels: np.ndarray | None = None
    postprocess: str | None = None


def predict_volume(net, image: np.ndarray, size: int | tuple[int, int], *, device="cpu",
                   batch_slices: int = 16, flip_tta: bool = False, normalise: bool = True,
                   pipeline: str = "bilinear") -> Prediction:
    """Predict every slice of ``image`` (Z, Y, X) resized whole to ``size`` (the legacy
    ``resize`` pre-processing with the WSL4MIS normaliser); see the module docstring."""
    from ..preprocess import Preprocessing, normalise_intensity, resize_slice

    size = (size, size) if isinstance(size, int) else tuple(size)
    if pipeline != "wsl4mis":
        return predict_with(net, image, Preprocessing("resize", size=size), device=device,
                            batch_slices=batch_slices, flip_tta=flip_tta,
                            normalise=normalise)
    import torch

    volume = normalise_intensity(image) if normalise else np.asarray(image, np.float32)
    nz, h, w = volume.shape
    was_training = net.training
    net.eval()
    labels = np.zeros((nz, h, w), np.int64)
    try:
        with torch.inference_mode():
            for start in range(0, nz, batch_slices):
                block = volume[start:start + batch_slices]
                x = np.stack([resize_slice(s, size, 0) for s in block])
                x = torch.from_numpy(np.ascontiguousarray(x[:, None], np.float32)).to(device)
                small = _forward_probs(net, x, flip_tta).argmax(1).cpu().numpy()
                labels[start:start + len(block)] = np.stack(
                    [resize_slice(s, (h, w), 0) for s in small])
    finally:
        net.train(was_training)
    return Prediction(labels.astype(np.uint8), None, None)


def predict_with(net, image: np.ndarray, preprocessing, *, spacing=None, device="cpu",
                 batch_slices: int = 16, flip_tta: bool = False,
                 normalise: bool = True) -> Prediction:
    """Predict ``image`` (Z, Y, X; voxel ``spacing`` (z, y, x) mm, needed by the
    ``spacing`` pre-processing) through ``preprocessing``; labels = the argmax (no
    post-processing). ``normalise=False``: ``image`` is normalised already."""
    import torch

    volume = preprocessing.normalise(image) if normalise else np.asarray(image, np.float32)
    nz, h, w = volume.shape
    was_training = net.training
    net.eval()
    chunks = []
    try:
        with torch.inference_mode():
            for start in range(0, nz, batch_slices):
                block = volume[start:start + batch_slices]
                probs = preprocessing.forward_probabilities(
                    lambda x: _forward_probs(net, x, flip_tta), block, spacing, device)
                chunks.append(probs.cpu().numpy().astype(np.float32))
    finally:
        net.train(was_training)
    if not chunks:
        raise InputError(f"nothing to predict: the volume has shape {volume.shape}")
    probs_out = np.concatenate(chunks, axis=0).transpose(1, 0, 2, 3)  # C, Z, Y, X
    probs_out /= probs_out.sum(axis=0, keepdims=True)
    labels = probs_out.argmax(axis=0)
    entropy = -(probs_out * np.log(np.clip(probs_out, 1e-12, None))).sum(axis=0)
    dtype = np.uint8 if probs_out.shape[0] <= 256 else np.uint16
    return Prediction(labels.astype(dtype), probs_out, entropy.astype(np.float32))


def _forward_probs(net, x, flip_tta: bool):
    import torch

    def probs_of(inp):
        out = net(inp)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        return torch.softmax(logits.float(), dim=1)

    probs = probs_of(x)
    if flip_tta:  # "mirror": every combination of the two in-plane flips
        for dims in ((-1,), (-2,), (-2, -1)):
            probs = probs + probs_of(x.flip(dims)).flip(dims)
        probs = probs / 4.0
    return probs
