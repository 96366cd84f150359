"""Training and prediction on a CUDA GPU (issue 20): every method under AMP, resume, DDP over
NCCL on the available GPUs, and GPU predictions agreeing with the CPU's.
Marked ``cuda``: skipped without a GPU; ``benchmarks/gpu.sh`` runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from napari_weakseg.training.config import TrainConfig
from napari_weakseg.training.events import parse_event
from napari_weakseg.training.runner import TrainingRun
from napari_weakseg.training.sources import synthetic_data
from napari_weakseg.training.trainer import Trainer

pytestmark = pytest.mark.cuda

SOURCE = {"kind": "synthetic", "subjects": 2, "val_subjects": 1, "shape": [4, 64, 64]}


@pytest.fixture(scope="module")
def data():
    return synthetic_data(subjects=2, val_subjects=1, shape=(4, 64, 64))


def _config(**overrides):
    base = dict(method="pce", iterations=12, batch_size=4, size=64, base_width=8,
                val_every=6, checkpoint_every=4, device="cuda", amp=True)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["pce", "effdnet", "refineseg", "disambig", "mixed"])
def test_amp_training_on_cuda_finishes_with_finite_weights(tmp_path, data, method):
    import torch

    from napari_weakseg.nets.model_folder import load_model

    result = Trainer(_config(method=method, iterations=8), data.train, data.val,
                     data.class_names, tmp_path / method).run()
    assert result.status == "completed"
    net, _ = load_model(tmp_path / method / "model_last")
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_resume_on_cuda_matches_uninterrupted(tmp_path, data):
    """Bit-exact on the CPU (tests/training/test_trainer.py); on a GPU cuDNN may pick
    non-deterministic kernels, so the weights must agree closely, not bitwise."""
    import torch

    from napari_weakseg.nets.model_folder import load_model

    from tests.training.test_trainer import straight_and_resumed

    first, second = straight_and_resumed(_config(amp=False), data, tmp_path)
    (a, _), (b, _) = load_model(first / "model_last"), load_model(second / "model_last")
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-4, rtol=1e-3)


def test_ddp_over_nccl_on_the_available_gpus(tmp_path):
    import torch

    gpus = torch.cuda.device_count()
    run = TrainingRun(tmp_path / "ddp", _config(iterations=6, val_every=6, checkpoint_every=3),
                      SOURCE)
    process = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={gpus}", "-m", "napari_weakseg.training.worker", str(run.run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    events = [e for e in (parse_event(line) for line in stdout.splitlines()) if e is not None]
    assert events[-1].type == "finished" and events[-1].status == "completed"
    started = next(e for e in events if e.type == "started")
    assert started.device.startswith("cuda")


def test_gpu_prediction_agrees_with_cpu(data):
    import torch

    from napari_weakseg.inference.predict import predict_volume
    from napari_weakseg.nets.unet import build_network, default_config

    torch.manual_seed(0)
    net = build_network(default_config(num_classes=4, base_width=8))
    image = data.val[0].image
    on_cpu = predict_volume(net, image, 64, device="cpu")
    on_gpu = predict_volume(net.to("cuda"), image, 64, device="cuda")
    np.testing.assert_allclose(on_gpu.probabilities, on_cpu.probabilities, atol=1e-3)
    assert (on_gpu.labels == on_cpu.labels).mean() > 0.999
