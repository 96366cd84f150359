"""Plain eager PyTorch training loops, written the way the reference code is, for
``benchmarks/train_step.py --vs-baseline`` (issue 20).

They share nothing with the engine but the U-Net (``nets.unet``, the same architecture the
methods train) and the already-normalised training slices, so the ratio of iterations per
second measures what our loop does better or worse:

* ``pce`` — WSL4MIS ``train_weakly_supervised_pCE_2D.py``: a ``torch.utils.data.Dataset``
  of slices with the reference ``RandomGenerator`` (p 0.5 rot90 + flip, else p 0.5 rotation
  by an integer angle in [−20°, 19°] with ``ndimage.rotate(order=0)``, then
  ``ndimage.zoom(order=0)`` to the training size) in a ``DataLoader`` (shuffle, workers as
  given), CE with ``ignore_index``, SGD (momentum 0.9, weight decay 1e-4), poly learning
  rate, ``loss.item()`` logged every iteration. The slices are held in memory (the
  reference reads an HDF5 file per slice), which can only make the baseline faster.
* ``effdnet`` — EFFDNet ``train_EFFDNet.py`` with ``--use_aa --use_contrast``
  (methods-as-coded §2.4–2.6): noisy mean-teacher pass under ``no_grad``, hard
  pseudo-labels, FADC cut-and-paste per sample with ``ndimage.zoom`` on the CPU, FBSL with
  the region embeddings built block by block and the SupCon loss over all regions, one
  backward, SGD, EMA of the teacher's parameters.

Labels use our encoding: −1 = unlabelled (the reference's 4), 0 = background, 1.. classes.
"""

from __future__ import annotations

import copy
import random
import time

import numpy as np
from scipy import ndimage

IGNORE = -1


class ReferenceSlices:
    """``torch.utils.data.Dataset`` of (image, scribble) slices with WSL4MIS's
    ``RandomGenerator`` (the ``random`` module draws, as the reference does)."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], size: int):
        self.images, self.labels, self.size = images, labels, size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch

        image, label = self.images[i], self.labels[i]
        if random.random() > 0.5:
            k = np.random.randint(0, 4)
            image, label = np.rot90(image, k), np.rot90(label, k)
            axis = np.random.randint(0, 2)
            image, label = np.flip(image, axis).copy(), np.flip(label, axis).copy()
        elif random.random() > 0.5:
            angle = np.random.randint(-20, 20)
            image = ndimage.rotate(image, angle, order=0, reshape=False)
            label = ndimage.rotate(label, angle, order=0, reshape=False, mode="constant",
                                   cval=IGNORE)
        x, y = image.shape
        image = ndimage.zoom(image, (self.size / x, self.size / y), order=0)
        label = ndimage.zoom(label, (self.size / x, self.size / y), order=0)
        return (torch.from_numpy(image.astype(np.float32)).unsqueeze(0),
                torch.from_numpy(label.astype(np.int64)))


def slices_of(volumes) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every supervised slice of ``TrainingVolume``s: normalised image, scribble labels."""
    images, labels = [], []
    for volume in volumes:
        for z in volume.supervised_slices():
            images.append(np.asarray(volume.image[z], np.float32))
            labels.append(np.asarray(volume.targets["labels"][z], np.int64))
    return images, labels


def _loader(volumes, size, batch, workers, seed):
    import torch

    images, labels = slices_of(volumes)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    def worker_init_fn(worker_id):
        random.seed(seed + worker_id)
        np.random.seed(seed + worker_id)

    return torch.utils.data.DataLoader(
        ReferenceSlices(images, labels, size), batch_size=batch, shuffle=True,
        num_workers=workers, pin_memory=torch.cuda.is_available(), drop_last=False,
        worker_init_fn=worker_init_fn, persistent_workers=workers > 0)


def _batches(loader):
    while True:
        yield from loader


def run_pce(net, volumes, size, batch, iterations, device, workers=1, seed=2022,
            on_iteration=None) -> None:
    """WSL4MIS's pCE loop for ``iterations`` steps; ``on_iteration(i)`` after each."""
    import torch

    net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    ce_loss = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    batches = _batches(_loader(volumes, size, batch, workers, seed))
    for iteration in range(iterations):
        image, label = next(batches)
        image, label = image.to(device), label.to(device)
        out = net(image)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        torch.softmax(logits, dim=1)  # the reference computes outputs_soft (unused by pCE)
        loss = ce_loss(logits, label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr = 0.01 * (1.0 - iteration / 60000) ** 0.9
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss.item()  # logged every iteration by the reference
        if on_iteration:
            on_iteration(iteration + 1)


def _fadc(image, scribble, pseudo):
    """FADC as coded (methods-as-coded §2.6) on CPU tensors, in place; returns them."""
    b = image.shape[0]
    boxes = []
    for i in range(b):
        rows, cols = np.nonzero(scribble[i].numpy() >= 0)
        boxes.append((rows.min(), rows.max(), cols.min(), cols.max()) if len(rows)
                     else (0, 0, 0, 0))
    crops = [(image[i, :, r0:r1, c0:c1], scribble[i, r0:r1, c0:c1], pseudo[i, r0:r1, c0:c1])
             for i, (r0, r1, c0, c1) in enumerate(boxes)]
    random.shuffle(crops)
    for i, (r0, r1, c0, c1) in enumerate(boxes):
        for _ in range(3):  # three draws per sample the reference never uses
            random.randint(0, image.shape[-1])
        if r1 - r0 == 0 or c1 - c0 == 0:
            continue
        for _ in range(b):
            crop = crops[random.randint(0, b - 1)]
            if crop[1].shape[-1] != 0:
                break
        else:
            continue
        h, w = r1 - r0, c1 - c0
        ch, cw = crop[1].shape
        zoom = (h / ch, w / cw)
        image[i, 0, r0:r1, c0:c1] = _as_tensor(ndimage.zoom(crop[0][0].numpy(), zoom, order=0),
                                               h, w, image.dtype)
        scribble[i, r0:r1, c0:c1] = _as_tensor(ndimage.zoom(crop[1].numpy(), zoom, order=0),
                                               h, w, scribble.dtype)
        pseudo[i, r0:r1, c0:c1] = _as_tensor(ndimage.zoom(crop[2].numpy(), zoom, order=0),
                                             h, w, pseudo.dtype)
    return image, scribble, pseudo


def _as_tensor(array, h, w, dtype):
    import torch

    out = np.zeros((h, w), array.dtype)
    out[:min(h, array.shape[0]), :min(w, array.shape[1])] = array[:h, :w]
    return torch.from_numpy(out).to(dtype)


def _fbsl(features, scribble, k=8, tau=0.07):
    """FBSL as coded (§2.5): block means, L2-normalised, SupCon over all B·K² regions."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = features.shape
    block = -(-w // k)
    embeddings, region_labels = [], []
    for i in range(k):
        for j in range(k):
            region = features[:, :, i * block:(i + 1) * block, j * block:(j + 1) * block]
            embeddings.append(F.normalize(region.mean(dim=(2, 3)), dim=1))
            strokes = scribble[:, i * block:(i + 1) * block, j * block:(j + 1) * block]
            region_labels.append((strokes.clamp(min=0).flatten(1).sum(1) > 0).long())
    z = torch.stack(embeddings, 1).reshape(b * k * k, -1)
    labels = torch.stack(region_labels, 1).reshape(-1)
    similarity = torch.exp(z @ z.T / tau)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    positive = (same & ~eye).float()
    negative = (~same).float()
    negatives = (similarity * negative).sum(1, keepdim=True)
    log_prob = torch.log((similarity + 1e-12) / (similarity + negatives + 1e-12))
    per_anchor = -(log_prob * positive).sum(1) / (positive.sum(1) + 1e-12)
    return per_anchor.mean()


def run_effdnet(net, volumes, size, batch, iterations, device, workers=1, seed=2022,
                on_iteration=None, use_fadc: bool = True) -> None:
    """EFFDNet's loop as coded (FBSL on; FADC unless ``use_fadc=False``) for
    ``iterations`` steps."""
    import torch
    import torch.nn.functional as F

    net.to(device).train()
    teacher = copy.deepcopy(net)
    for p in teacher.parameters():
        p.detach_()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    batches = _batches(_loader(volumes, size, batch, workers, seed))
    for iteration in range(iterations):
        image, scribble = next(batches)
        image, scribble = image.to(device), scribble.to(device)
        logits, features = net(image)
        noise = torch.clamp(torch.randn_like(image) * 0.1, -0.05, 0.05)
        with torch.no_grad():
            teacher_logits, _ = teacher(image + noise)
            pseudo = torch.argmax(torch.softmax(teacher_logits, dim=1), dim=1)
        loss = (F.cross_entropy(logits, scribble, ignore_index=IGNORE)
                + 0.6 * (F.cross_entropy(logits, pseudo) + 0.3 * _fbsl(features, scribble)))
        if use_fadc:
            aug_image, aug_scribble, aug_pseudo = _fadc(
                image.detach().cpu().clone(), scribble.cpu().clone(), pseudo.cpu().clone())
            aug_logits, _ = net(aug_image.to(device))
            loss = (loss + F.cross_entropy(aug_logits, aug_scribble.to(device),
                                           ignore_index=IGNORE)
                    + 0.6 * F.cross_entropy(aug_logits, aug_pseudo.to(device)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        alpha = min(1 - 1 / (iteration + 1), 0.99)
        with torch.no_grad():
            for t, s in zip(teacher.parameters(), net.parameters()):
                t.mul_(alpha).add_(s, alpha=1 - alpha)
        lr = 0.01 * (1.0 - iteration / 60000) ** 0.9
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss.item()
        if on_iteration:
            on_iteration(iteration + 1)


BASELINES = {"pce": run_pce, "effdnet": run_effdnet}


def iterations_per_second(run, warmup: int, measured: int, **kwargs) -> float:
    """Run ``warmup + measured`` iterations of ``run``; it/s over the measured ones."""
    marks = {}

    def mark(i):
        marks[i] = time.perf_counter()

    run(iterations=warmup + measured, on_iteration=mark, **kwargs)
    return measured / (marks[warmup + measured] - marks[warmup])
