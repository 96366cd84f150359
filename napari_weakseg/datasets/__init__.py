"""Datasets that training and the benchmarks read besides a project: each module builds
the :class:`~napari_weakseg.datasets.base.TrainingData` of one dataset (its volumes, their
targets, validation and report splits). Training reaches them through the sources of
:mod:`napari_weakseg.training.sources` (``{"kind": "acdc" | "synthetic", ...}``).

Layering: below the training stage, beside it — datasets import ``io``, the schema, the
weak labels, pre-processing and the volume type of ``training.data``; never Qt, napari or
the widgets (``tests/test_layering_contracts.py``).
"""
