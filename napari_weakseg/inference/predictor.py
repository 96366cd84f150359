"""The one predictor every path uses: ``weakseg predict``, the demo, batch export, the
napari widgets (Review tab, uncertainty ranking) and the trainer's validation.

``Predictor(model, device=..., postprocess=None)`` reads what the model records in its
``config.json`` — the intensity normaliser and pre-processing
(:class:`~napari_weakseg.preprocess.Preprocessing`) and the post-processing
(:class:`~napari_weakseg.postprocess.Postprocessing`, with the label schema's rules) — so
every path predicts the same way with the same defaults. ``postprocess`` (``none``,
``largest``, ``anatomy``) overrides the recorded post-processing explicitly; ``None`` keeps
the model's. Likewise the test-time augmentation (``tta``: ``none`` or ``mirror``, see
:mod:`napari_weakseg.tta`; ``flip_tta`` is its old boolean spelling):
``None`` keeps what the model records (``config["inference"]["tta"]``, ``none`` when
absent). A model folder written before these fields existed predicts as before
(``resize`` pre-processing; post-processing ``none``, or ``largest`` for the legacy
``{"largest_component": true}``).

``model`` is a model folder, or ``(net, config)`` for a network in memory (the trainer).
The network is loaded on the first :meth:`Predictor.predict` (or :meth:`Predictor.load`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..nets.model_folder import model_identity, read_config
from ..postprocess import Postprocessing
from ..preprocess import Preprocessing, select_device
from ..tta import recorded_tta, resolve_tta
from .predict import Prediction, predict_with


class Predictor:
    """A model ready to predict volumes on their own grid (see the module docstring).

    Attributes: ``config`` (the model's config dict), ``classes`` (names, 0 = background),
    ``preprocessing``, ``postprocessing`` (the effective one), ``recorded_postprocessing``
    (the model's), ``tta`` / ``recorded_tta`` (likewise), ``identity`` (16 hex digits
    for a model folder, ``None`` in memory), ``folder``, ``device`` (after :meth:`load`).
    """

    def __init__(self, model: str | os.PathLike | tuple[Any, dict], device: Any = "auto",
                 postprocess: str | None = None, *, batch_slices: int = 16,
                 flip_tta: bool | None = None, tta: str | None = None):
        self.folder: Path | None = None
        self.net = None
        if isinstance(model, (str, os.PathLike)):
            self.folder = Path(model)
            self.config = read_config(self.folder)
            self.identity: str | None = model_identity(self.folder)
        elif isinstance(model, tuple) and len(model) == 2:
            self.net, self.config = model
            self.identity = None
        else:
            raise TypeError("Predictor needs a model folder or (net, config)")
        self.classes = list(self.config["classes"])
        self.preprocessing = Preprocessing.from_config(self.config["preprocessing"])
        self.recorded_postprocessing = Postprocessing.from_config(
            self.config.get("postprocessing"))
        self.postprocessing = self.recorded_postprocessing.with_name(postprocess)
        self.requested_device = device if device is not None else "auto"
        self.device = None
        self.batch_slices = batch_slices
        self.recorded_tta = recorded_tta(self.config)
        self.tta = resolve_tta(tta, flip_tta, self.recorded_tta)
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------
    @property
    def postprocess(self) -> str:
        """The effective post-processing's name."""
        return self.postprocessing.name

    @property
    def flip_tta(self) -> bool:
        """Whether predictions average flips by default (``tta == "mirror"``)."""
        return self.tta == "mirror"

    @property
    def size(self) -> tuple[int, int]:
        return self.preprocessing.size

    def load(self) -> None:
        """Choose the device and load the network (raises for a bad model folder).
        ``auto``: CUDA, MPS, CPU; under ``torchrun`` CUDA means ``cuda:LOCAL_RANK``."""
        with self._lock:
            if self.device is not None:
                return
            requested = self.requested_device
            chosen = select_device(requested) if isinstance(requested, str) else requested
            if getattr(chosen, "type", None) == "cuda" and chosen.index is None \
                    and "LOCAL_RANK" in os.environ:
                import torch

                chosen = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            if self.net is None:
                from ..nets.model_folder import load_model

                self.net, _ = load_model(self.folder, device=str(chosen))
            else:
                self.net = self.net.to(chosen)
            self.device = chosen

    # -- prediction ------------------------------------------------------------------------
    def predict(self, image: np.ndarray, spacing=None, *, flip_tta: bool | None = None,
                postprocess: str | None = None, normalised: bool = False,
                tta: str | None = None) -> Prediction:
        """Predict ``image`` (Z, Y, X) with voxel ``spacing`` (z, y, x) mm (needed by a
        model that resamples to a target spacing). Returns a
        :class:`~napari_weakseg.inference.predict.Prediction` on the input grid: labels
        post-processed (``postprocess`` overrides this predictor's choice for one call, and
        ``tta`` / ``flip_tta`` its test-time augmentation),
        ``raw_labels`` the argmax before. ``normalised``: the image went through the
        model's normaliser already (training volumes)."""
        self.load()
        post = self.postprocessing.with_name(postprocess)
        image = np.asarray(image)
        if image.ndim != 3:
            raise InputError(f"expected a 3D volume (Z, Y, X), got shape {image.shape}")
        prediction = predict_with(
            self.net, image, self.preprocessing, spacing=spacing, device=self.device,
            batch_slices=self.batch_slices,
            flip_tta=resolve_tta(tta, flip_tta, self.tta) == "mirror",
            normalise=not normalised)
        raw = prediction.labels
        labels = post(raw, self.classes, prediction.probabilities) \
            if post.name != "none" else raw
        return Prediction(labels.astype(raw.dtype, copy=False), prediction.probabilities,
                          prediction.entropy, raw_labels=raw, postprocess=post.name)

    def describe(self) -> str:
        def whose(effective, recorded):
            return " (model's)" if effective == recorded else f" (model's: {recorded})"

        return (f"pre-processing: {self.preprocessing.describe()}; post-processing: "
                f"{self.postprocess}"
                + whose(self.postprocess, self.recorded_postprocessing.name)
                + f"; test-time augmentation: {self.tta}" + whose(self.tta, self.recorded_tta))


__all__ = ["Predictor"]
