"""Pieces of the training loop: the learning-rate schedule (poly, driven by iterations or a
time budget), and what keeps the accelerator busy — the next batch prepared in a
background thread while the current step runs (:class:`BatchPrefetcher`), and finiteness
checks of the loss deferred to the moments the loop talks to the host anyway
(:class:`DeferredFiniteCheck`) — no per-step device→host synchronisation.

Resume stays bit-exact: ``SliceDataset.batch(t)`` depends only on ``(seed, t, rank)``, so
preparing it earlier, in another thread, changes nothing in what step ``t`` sees.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


def schedule_progress(iteration: int, iterations: int, elapsed_s: float = 0.0,
                      max_seconds: float | None = None) -> float:
    """Fraction of the schedule done: iterations, or the time budget when that runs out
    first."""
    progress = iteration / iterations
    if max_seconds:
        progress = max(progress, min(elapsed_s / max_seconds, 1.0))
    return progress


def poly_lr(base_lr: float, progress: float, power: float = 0.9) -> float:
    """``base_lr · (1 − progress)^power`` (``progress`` in [0, 1])."""
    return base_lr * (1.0 - progress) ** power


class BatchPrefetcher:
    """Batches of iterations ``start … stop − 1`` of ``dataset`` (a ``SliceDataset``), each
    prepared one step ahead in one worker thread; ``enabled=False`` prepares them in line.

    Only the worker thread calls ``dataset.batch`` while prefetching (its lazy slice cache
    is not shared between threads)."""

    def __init__(self, dataset, batch_size: int, start: int, stop: int, enabled: bool = True):
        self.dataset = dataset
        self.batch_size = batch_size
        self.stop = stop
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="weakseg-batches") \
            if enabled else None
        self._pending: dict[int, Future] = {}
        if self._pool is not None and start < stop:
            self._submit(start)

    def _submit(self, iteration: int) -> None:
        self._pending[iteration] = self._pool.submit(self.dataset.batch, iteration,
                                                     self.batch_size)

    def take(self, iteration: int) -> dict[str, np.ndarray]:
        """The batch of ``iteration``; starts preparing ``iteration + 1``."""
        if self._pool is None:
            return self.dataset.batch(iteration, self.batch_size)
        future = self._pending.pop(iteration, None)
        for stale in self._pending.values():  # out of order (not in the trainer): drop
            stale.cancel()
        self._pending.clear()
        if future is None:
            future = self._pool.submit(self.dataset.batch, iteration, self.batch_size)
        batch = future.result()  # re-raises an error of the worker here
        if iteration + 1 < self.stop:
            self._submit(iteration + 1)
        return batch

    def close(self) -> None:
        """Drop what is pending and join the worker."""
        if self._pool is None:
            return
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)
        self._pool = None


class DeferredFiniteCheck:
    """Remembers each step's loss (a detached device scalar) and checks them all at once
    when asked — one synchronisation per report instead of one per step."""

    def __init__(self):
        self._pending: list[tuple[int, object]] = []

    def check_later(self, loss, iteration: int) -> None:
        self._pending.append((iteration, loss.detach()))

    def raise_if_not_finite(self) -> None:
        """``FloatingPointError`` naming the first iteration whose loss was NaN or ±inf."""
        if not self._pending:
            return
        import torch

        values = torch.stack([loss.float().reshape(()) for _, loss in self._pending]).cpu()
        finite = torch.isfinite(values)
        pending, self._pending = self._pending, []
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0, 0])
            raise FloatingPointError(f"loss became {float(values[first])} at iteration "
                                     f"{pending[first][0]}")
