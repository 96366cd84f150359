"""Whole-volume prediction with the 2D network, back on the volume's own grid.

Each slice is normalised with the volume's statistics (the training rule), resized to the
model's training size (bilinear), predicted in batches of slices, and the softmax
probabilities are resized back (bilinear) to the slice size before the argmax — so the
label map lies exactly on the input grid. Optional flip test-time augmentation averages
the probabilities of the plain, left-right and up-down flipped slices. ``pipeline="wsl4mis"``
instead reproduces the reference evaluation (nearest-neighbour resize of the image to the
training size and of the *label map* back; methods-as-coded §2.8).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Prediction:
    """``labels`` (Z, Y, X) uint8/uint16 class indices, ``probabilities`` (C, Z, Y, X)
    float32 (``None`` for the wsl4mis pipeline), ``entropy`` (Z, Y, X) float32 in nats."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    entropy: np.ndarray | None


def predict_volume(net, image: np.ndarray, size: int | tuple[int, int], *, device="cpu",
                   batch_slices: int = 16, flip_tta: bool = False, normalise: bool = True,
                   pipeline: str = "bilinear") -> Prediction:
    """Predict every slice of ``image`` (Z, Y, X); see the module docstring."""
    import torch
    import torch.nn.functional as F

    from ..training.data import normalise_intensity, resize_slice

    size = (size, size) if isinstance(size, int) else tuple(size)
    volume = normalise_intensity(image) if normalise else np.asarray(image, np.float32)
    nz, h, w = volume.shape
    was_training = net.training
    net.eval()
    probs_out = None if pipeline == "wsl4mis" else np.zeros((0,), np.float32)
    labels = np.zeros((nz, h, w), np.int64)
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, nz, batch_slices):
                block = volume[start:start + batch_slices]
                if pipeline == "wsl4mis":
                    x = np.stack([resize_slice(s, size, 0) for s in block])
                else:
                    x = resize_slice(block, size, 1)
                x = torch.from_numpy(np.ascontiguousarray(x[:, None], np.float32)).to(device)
                probs = _forward_probs(net, x, flip_tta)
                if pipeline == "wsl4mis":
                    small = probs.argmax(1).cpu().numpy()
                    labels[start:start + len(block)] = np.stack(
                        [resize_slice(s, (h, w), 0) for s in small])
                else:
                    probs = F.interpolate(probs, size=(h, w), mode="bilinear",
                                          align_corners=False)
                    chunks.append(probs.cpu().numpy().astype(np.float32))
    finally:
        net.train(was_training)
    if pipeline == "wsl4mis":
        return Prediction(labels.astype(np.uint8), None, None)
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
    if flip_tta:
        probs = probs + probs_of(x.flip(-1)).flip(-1) + probs_of(x.flip(-2)).flip(-2)
        probs = probs / 3.0
    return probs
