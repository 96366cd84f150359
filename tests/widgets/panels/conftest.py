"""Fixtures of the panel tests: a fresh tiny project per test, a tiny model folder,
captured napari notifications."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import build_tiny_project


@pytest.fixture(scope="session")
def _tiny_template(tmp_path_factory) -> Path:
    return build_tiny_project(tmp_path_factory.mktemp("tiny-template"))


@pytest.fixture
def tiny_project(_tiny_template, tmp_path) -> Path:
    """A fresh copy of the tiny project (paths inside are relative: copying is enough)."""
    target = tmp_path / "project"
    shutil.copytree(_tiny_template, target)
    return target


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained model folder on the tiny config (no training needed to predict)."""
    import torch

    from napari_weakseg.nets.model_folder import save_model_folder
    from napari_weakseg.nets.unet import build_network, default_config
    from napari_weakseg.schema import LabelSchema

    torch.manual_seed(0)
    net_config = default_config(num_classes=4, base_width=4)
    net = build_network(net_config)
    folder = tmp_path_factory.mktemp("model") / "tiny-model"
    return save_model_folder(folder, net, {"network": net_config,
                                           "classes": LabelSchema.cardiac().names,
                                           "preprocessing": {"size": 32}}, "tiny test model")


@pytest.fixture
def notifications():
    """Notifications dispatched during the test (napari's notification manager)."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    records = notification_manager.records

    class View:
        def messages(self, severity: str | None = None) -> list[str]:
            return [str(n.message) for n in records[start:]
                    if severity is None or str(n.severity).lower().endswith(severity)]

    return View()


