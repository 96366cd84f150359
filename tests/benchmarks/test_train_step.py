"""benchmarks/train_step.py --vs-baseline and the plain reference loops it times (issue 20):
the loops run, their FBSL is the oracle-tested one, and the CLI prints the ratio column."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_weakseg.nets.unet import build_network, default_config
from napari_weakseg.training.sources import synthetic_data

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _module(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def baseline():
    return _module("baseline_loop")


@pytest.mark.parametrize("method,options", [("pce", {}), ("effdnet", {"use_fadc": True}),
                                            ("effdnet", {"use_fadc": False})])
def test_baseline_loops_train(baseline, method, options):
    torch.set_num_threads(1)
    data = synthetic_data(subjects=2, val_subjects=0, shape=(4, 32, 32))
    torch.manual_seed(0)
    net = build_network(default_config(num_classes=len(data.class_names), base_width=4))
    before = [p.detach().clone() for p in net.parameters()]
    seen = []
    baseline.BASELINES[method](net, data.train, 32, 3, 3, torch.device("cpu"), workers=0,
                               on_iteration=seen.append, **options)
    assert seen == [1, 2, 3]
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_baseline_fbsl_is_the_oracle_tested_fbsl(baseline):
    from napari_weakseg.methods.effdnet import fbsl_loss

    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(2, 5, 32, 32)).astype(np.float32))
    labels = np.full((2, 32, 32), -1, np.int64)
    labels[0, 3:5, 2:20] = 1
    labels[1, 20, 5:30] = 0
    labels[1, 10:12, 10:12] = 3
    labels = torch.from_numpy(labels)
    ours = fbsl_loss(features, labels, 8, 0.07)
    theirs = baseline._fbsl(features, labels, 8, 0.07)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


def test_reference_dataset_augments_and_resizes(baseline):
    images = [np.random.default_rng(i).random((20, 28), dtype=np.float32) for i in range(3)]
    labels = [np.full((20, 28), -1, np.int64) for _ in range(3)]
    dataset = baseline.ReferenceSlices(images, labels, 16)
    image, label = dataset[1]
    assert image.shape == (1, 16, 16) and label.shape == (16, 16)
    assert set(np.unique(label.numpy())) <= {-1}


def test_gpu_script_parses_and_refuses_without_a_gpu(tmp_path):
    import subprocess

    script = BENCHMARKS / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run the script itself")
    done = subprocess.run(["bash", str(script), "--quick"], capture_output=True, text=True,
                          env={**__import__("os").environ, "OUT": str(tmp_path / "gpu"),
                               "PYTHON": sys.executable})
    assert done.returncode == 2 and "no CUDA GPU" in done.stderr
    assert not (tmp_path / "gpu" / "gpu.md").exists()
