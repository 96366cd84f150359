"""The iteration-based trainer: one objective (a :class:`~napari_weakseg.methods.Method`),
poly learning rate, validation on held-out volumes, best/last checkpoints, resume, cancel.

Determinism: the batch of iteration ``t`` and every random draw inside it (dropout,
teacher noise, FADC) are seeded from ``(seed, t)``, and checkpoints hold the network, the
method's extra modules and state, the optimiser and the history — so a run resumed from
its last checkpoint continues exactly as an uninterrupted run would (tested).

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each rank draws its own batch
(seeded by its rank), the network is wrapped in ``DistributedDataParallel`` (gloo on CPU,
nccl on CUDA) and only rank 0 validates, saves and reports. A fine-tune can learn without
forgetting its parent (:mod:`.distill`, ``parent_distillation``; off by default).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import OptionError
from ..nets.model_folder import (atomic_torch_save, load_model, load_state_checked, read_config,
                                 save_model_folder)
from ..postprocess import Postprocessing
from ..preprocess import Preprocessing, median_spacing, select_device  # noqa: F401 (re-export)
from ..runtime import dist_rank, dist_world_size, mix_seed
from .config import TrainConfig
from .data import SliceDataset, TrainingVolume, to_tensors
from .distill import ParentDistillation, step_loss
from .events import Checkpoint, Event, Finished, Preview, Progress, Started, Validation
from .loop import BatchPrefetcher, DeferredFiniteCheck, poly_lr, schedule_progress  # noqa: F401

LAST_CHECKPOINT = "checkpoints/last.pt"
#: The model folder a run with ``preview_every_s`` rewrites with its current weights.
PREVIEW_DIR = "model_preview"


def inherit_from_parent(config: TrainConfig) -> TrainConfig:
    """A fine-tune (``init_model``) keeps its parent's network width, training size,
    normaliser, pre-processing (target spacing included) and post-processing: the form's
    values for those are replaced, so the run's config records the parent's."""
    from dataclasses import replace

    if not config.init_model:
        return config
    parent = read_config(config.init_model)
    pre = Preprocessing.from_config(parent["preprocessing"])
    post = Postprocessing.from_config(parent.get("postprocessing"))
    return replace(config, size=int(pre.size[0]),
                   base_width=int(parent["network"].get("base_width", config.base_width)),
                   preprocessing=pre.name, normalisation=pre.normalisation,
                   target_spacing=list(pre.target_spacing) if pre.target_spacing else None,
                   postprocessing=post.name)


def training_pipeline(config: TrainConfig, volumes: list[TrainingVolume]
                      ) -> tuple[Preprocessing, Postprocessing | None]:
    """The pre-processing a run trains with (and records), and the parent's post-processing
    for a fine-tune (``None`` otherwise). ``spacing``: the target is ``target_spacing``, or
    the median in-plane spacing of the training ``volumes``."""
    if config.init_model:
        parent = read_config(config.init_model)
        return (Preprocessing.from_config(parent["preprocessing"]),
                Postprocessing.from_config(parent.get("postprocessing")))
    size = (config.size, config.size)
    if config.preprocessing == "spacing" or config.target_spacing:
        spacing = config.target_spacing or median_spacing([v.spacing for v in volumes])
        return Preprocessing("spacing", config.normalisation, size, tuple(spacing)), None
    return Preprocessing("resize", config.normalisation, size), None


def data_options(method_cls, volumes: list[TrainingVolume]) -> dict:
    """The method's options implied by the training data (``Method.options_from_data``):
    the first volume's, with whole-number options raised to the largest over all volumes
    (volumes of different kinds may carry different numbers of coarse strategies)."""
    options = method_cls.options_from_data(volumes[0].targets) if volumes else {}
    for volume in volumes[1:]:
        for key, value in method_cls.options_from_data(volume.targets).items():
            if isinstance(value, int) and isinstance(options.get(key), int):
                options[key] = max(options[key], value)
            else:
                options.setdefault(key, value)
    return options


@dataclass
class TrainResult:
    status: str
    iteration: int
    model_dir: Path
    best_mean_dice: float | None
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Train ``config.method`` on ``train`` volumes, validating on ``val`` volumes.

    ``run_dir`` receives ``checkpoints/last.pt``, ``model/`` (best), ``model_last/`` and
    ``events.jsonl``. ``emit`` receives every :class:`Event` (rank 0 only). ``cancel`` is a
    ``threading.Event``; when set, the run stops after the current iteration and saves a
    checkpoint it can be resumed from.
    """

    def __init__(self, config: TrainConfig, train: list[TrainingVolume],
                 val: list[TrainingVolume], class_names: list[str], run_dir: str | Path,
                 emit: Callable[[Event], None] | None = None,
                 cancel: threading.Event | None = None, data_description: str = "",
                 rules: dict | None = None):
        self.config = inherit_from_parent(config)
        self.preprocessing, parent_post = training_pipeline(self.config, train)
        #: recorded in the model; ``rules``: the label schema's (``LabelSchema.rules()``)
        self.postprocessing = parent_post or Postprocessing(self.config.postprocessing,
                                                            dict(rules or {}))
        #: a fine-tune records its parent's test-time augmentation (from scratch: none)
        self.inference = config.init_model and read_config(config.init_model).get("inference")
        self.train_volumes = train
        self.val_volumes = [v for v in val if v.reference is not None]
        self.class_names = list(class_names)
        self.run_dir = Path(run_dir)
        self.emit_fn = emit
        self.cancel = cancel or threading.Event()
        self.data_description = data_description
        self.rank = dist_rank()
        self.world_size = dist_world_size()

    # -- helpers ------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        if self.rank == 0 and self.emit_fn is not None:
            self.emit_fn(event)

    def _build(self, device):
        import torch

        from ..methods import get_method
        from ..nets.unet import build_network, default_config

        cfg = self.config
        num_classes = len(self.class_names)
        if cfg.init_model:
            net, init_config = load_model(cfg.init_model)
            if init_config["classes"] != self.class_names:
                raise OptionError(f"{cfg.init_model}: model classes {init_config['classes']} "
                                 f"differ from the project's {self.class_names}")
            net_config = init_config["network"]
        else:
            net_config = default_config(num_classes=num_classes, base_width=cfg.base_width)
            torch.manual_seed(cfg.seed)
            net = build_network(net_config)
        net = net.to(device)
        method_cls = get_method(cfg.method)
        options = {**data_options(method_cls, self.train_volumes), **cfg.method_options}
        method = method_cls(num_classes=num_classes, feature_channels=net.feature_channels,
                            **options)
        torch.manual_seed(cfg.seed + 1)
        method.setup(net)
        extras = {k: m.to(device) for k, m in method.extra_modules().items()}
        spec = method.optimizer
        lr = cfg.lr if cfg.lr is not None else spec.lr * (
            cfg.fine_tune_lr_scale if cfg.init_model else 1.0)
        params = list(net.parameters()) + [p for m in extras.values() for p in m.parameters()]
        if spec.name == "adamw":
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=lr, momentum=spec.momentum,
                                        weight_decay=spec.weight_decay)
        return net, net_config, method, extras, optimizer, lr

    def _checkpoint_state(self, iteration, net, method, extras, optimizer, best, history):
        return {
            "iteration": iteration,
            "net": net.state_dict(),
            "extras": {k: m.state_dict() for k, m in extras.items()},
            "method_state": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best_mean_dice": -1.0 if best is None else float(best),
            "history": history,
            "config": self.config.to_dict(),
        }

    # -- the run ------------------------------------------------------------------------
    def run(self) -> TrainResult:
        import torch

        cfg = self.config
        distributed = self.world_size > 1
        device = select_device(cfg.device)
        if distributed:
            import torch.distributed as dist

            if device.type == "cuda":
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        started = time.time()
        net, net_config, method, extras, optimizer, base_lr = self._build(device)
        history: list[dict] = []
        best: float | None = None
        start = 0
        checkpoint_path = self.run_dir / LAST_CHECKPOINT
        if checkpoint_path.exists():
            state = torch.load(checkpoint_path, map_location=device, weights_only=True)
            load_state_checked(net, state["net"], checkpoint_path)
            for k, m in extras.items():
                m.load_state_dict(state["extras"][k])
            method.load_state_dict(state["method_state"])
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["iteration"])
            best = None if state["best_mean_dice"] < 0 else float(state["best_mean_dice"])
            history = list(state["history"])
        if cfg.channels_last:  # NHWC convolutions (weights and inputs); same maths
            net = net.to(memory_format=torch.channels_last)
        model_for_step = net
        if distributed:
            from torch.nn.parallel import DistributedDataParallel

            model_for_step = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None)
        dataset = SliceDataset(self.train_volumes, self.preprocessing.size, seed=cfg.seed,
                               rank=self.rank, sampling=cfg.sampling or method.sampling,
                               pipeline=self.preprocessing,
                               intensity_augmentation=cfg.intensity_augmentation,
                               kind_masks=method.kind_masks)
        use_amp = cfg.amp and device.type == "cuda"
        if device.type == "cuda":  # fixed patch size: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        distill = ParentDistillation.for_config(cfg, device)  # None unless asked for
        self.emit(Started(run_dir=str(self.run_dir), method=cfg.method,
                          iterations=cfg.iterations, start_iteration=start,
                          device=str(device), train_slices=len(dataset),
                          val_volumes=len(self.val_volumes)))
        best_dir = self.run_dir / "model"
        last_dir = self.run_dir / "model_last"
        prefetch = BatchPrefetcher(dataset, cfg.batch_size, start, cfg.iterations,
                                   enabled=cfg.prefetch)
        finite = DeferredFiniteCheck()
        timer_start, timer_iters = time.time(), 0
        last_emit = 0.0
        last_preview = time.time()
        iteration = start
        status = "completed"
        try:
            for iteration in range(start, cfg.iterations):
                if self.cancel.is_set():
                    status = "cancelled"
                    break
                if cfg.max_seconds is not None and time.time() - started > cfg.max_seconds:
                    status = "budget"
                    break
                progress = schedule_progress(iteration, cfg.iterations, time.time() - started,
                                             cfg.max_seconds)
                lr = poly_lr(base_lr, progress, method.optimizer.poly_power)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = to_tensors(prefetch.take(iteration), device)
                if cfg.channels_last:
                    batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
                torch.manual_seed(mix_seed(cfg.seed, iteration * 7919 + self.rank))
                np_state = np.random.default_rng([cfg.seed, iteration, self.rank, 1])
                batch["rng"] = np_state
                net.train()
                for m in extras.values():
                    m.train()
                with torch.autocast(device.type, enabled=use_amp):
                    out = step_loss(method, model_for_step, net, batch, iteration, distill)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(out.total).backward()
                if distributed and extras:
                    self._all_reduce_extras(extras)
                scaler.step(optimizer)
                scaler.update()
                method.after_step(net, iteration)
                done = iteration + 1
                timer_iters += 1
                now = time.time()
                # no host sync per step: non-finite losses are collected on the device and
                # checked (one sync) whenever the loop reports, validates or saves
                finite.check_later(out.total, done)
                validate_now = self.rank == 0 and (done % cfg.val_every == 0 or
                                                   done == cfg.iterations)
                save_now = self.rank == 0 and done % cfg.checkpoint_every == 0 and \
                    done < cfg.iterations
                if now - last_emit > 0.25 or done == cfg.iterations or validate_now or save_now:
                    finite.raise_if_not_finite()
                if now - last_emit > 0.25 or done == cfg.iterations:
                    rate = timer_iters / max(now - timer_start, 1e-9)
                    eta = (cfg.iterations - done) / max(rate, 1e-9)
                    if cfg.max_seconds:
                        eta = min(eta, max(cfg.max_seconds - (now - started), 0.0))
                    self.emit(Progress(iteration=done, iterations=cfg.iterations, lr=lr,
                                       losses={"total": float(out.total.detach()),
                                               **out.scalar_terms()}, it_per_s=rate, eta_s=eta))
                    last_emit = now
                if validate_now:
                    best = self._validate_and_keep_best(net, device, done, best, history,
                                                        net_config, started)
                if save_now:
                    self._save_checkpoint(done, net, method, extras, optimizer, best, history)
                if self.rank == 0 and cfg.preview_every_s and done < cfg.iterations and \
                        time.time() - last_preview >= cfg.preview_every_s:
                    self._save_preview(net, net_config, done, started, history, best)
                    last_preview = time.time()
            else:
                iteration = cfg.iterations
        finally:
            prefetch.close()
        finite.raise_if_not_finite()
        final_iteration = cfg.iterations if status == "completed" else iteration
        if status == "budget" and self.rank == 0 and (not history or
                                                      history[-1]["iteration"] != iteration):
            best = self._validate_and_keep_best(net, device, iteration, best, history,
                                                net_config, started)
        if self.rank == 0:
            self._save_checkpoint(final_iteration, net, method, extras, optimizer, best, history)
            self._save_model(last_dir, net, net_config, final_iteration, started, history, best)
            if not best_dir.exists():  # no validation data: the last model is the model
                self._save_model(best_dir, net, net_config, final_iteration, started, history,
                                 best)
        if distributed:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        self.emit(Finished(status=status, iteration=final_iteration, model_dir=str(best_dir),
                           best_mean_dice=best, seconds=time.time() - started))
        return TrainResult(status, final_iteration, best_dir, best, history)

    def _all_reduce_extras(self, extras) -> None:
        """Average the gradients of the method's own modules (DDP wraps only the network)."""
        import torch
        import torch.distributed as dist

        for module in extras.values():
            for p in module.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= self.world_size

    def _save_preview(self, net, net_config, iteration, started, history, best) -> None:
        """Write the current weights to ``RUN_DIR/model_preview`` (atomic files: a reader
        sees a whole weights file) and announce it with a :class:`Preview` event."""
        folder = self.run_dir / PREVIEW_DIR
        self._save_model(folder, net, net_config, iteration, started, history, best)
        self.emit(Preview(iteration=iteration, model_dir=str(folder),
                          seconds=time.time() - started))

    def _save_checkpoint(self, iteration, net, method, extras, optimizer, best, history):
        path = self.run_dir / LAST_CHECKPOINT
        atomic_torch_save(self._checkpoint_state(iteration, net, method, extras, optimizer,
                                                 best, history), path)
        self.emit(Checkpoint(iteration=iteration, path=str(path)))

    def _validate_and_keep_best(self, net, device, iteration, best, history, net_config,
                                started) -> float | None:
        """Validate; record the scores; save the model folder when they are the best yet."""
        dice = self.validate(net, device, net_config)
        if dice is None:
            return best
        mean = float(np.mean(list(dice.values())))
        is_best = best is None or mean > best
        history.append({"iteration": iteration, "dice": dice, "mean_dice": mean})
        if is_best:
            best = mean
            self._save_model(self.run_dir / "model", net, net_config, iteration, started,
                             history, best)
        self.emit(Validation(iteration=iteration, dice=dice, mean_dice=mean, best=is_best))
        return best

    def validate(self, net, device, net_config: dict | None = None) -> dict[str, float] | None:
        """Mean 3D Dice per foreground class over the validation volumes, predicted by the
        shared :class:`~napari_weakseg.inference.predictor.Predictor` with the pre- and
        post-processing the model will record. Voxels whose reference is −1 are not scored
        (held-out slices: only those slices count)."""
        from ..evaluation.metrics import dice
        from ..inference.predictor import Predictor

        if not self.val_volumes:
            return None
        if net_config is None:
            net_config = {"num_classes": len(self.class_names)}
        predictor = Predictor((net, self.model_config(net_config)), device=device,
                              flip_tta=self.config.flip_tta_validation)
        scores: dict[str, list[float]] = {name: [] for name in self.class_names[1:]}
        for volume in self.val_volumes:
            prediction = predictor.predict(volume.image, volume.spacing, normalised=True)
            scored = np.asarray(volume.reference) >= 0
            for c, name in enumerate(self.class_names[1:], start=1):
                value = dice((prediction.labels == c) & scored, volume.reference == c)
                scores[name].append(1.0 if np.isnan(value) else value)  # both empty: perfect
        return {name: float(np.mean(values)) for name, values in scores.items()}

    def model_config(self, net_config: dict) -> dict:
        """What prediction needs of the model config: network, classes, pipelines."""
        return {"network": net_config, "classes": self.class_names,
                "preprocessing": self.preprocessing.to_config(),
                "postprocessing": self.postprocessing.to_config(),
                **({"inference": dict(self.inference)} if self.inference else {})}

    def _save_model(self, folder, net, net_config, iteration, started, history, best):
        cfg = self.config
        latest = history[-1] if history else None
        config = {
            **self.model_config(net_config),
            "method": cfg.method,
            "method_options": cfg.method_options,
            "training": {**cfg.to_dict(), "iterations_done": iteration,
                         "seconds": round(time.time() - started, 1),
                         "data": self.data_description},
            "validation": {"best_mean_dice": best, "latest": latest},
        }
        save_model_folder(folder, net, config, model_card(config),
                          half_precision=cfg.half_precision_weights)


def model_card(config: dict) -> str:
    """A Markdown model card from a model folder's config."""
    training = config["training"]
    lines = [f"# {config['method']} model ({', '.join(config['classes'][1:])})", "",
             f"- method: `{config['method']}` {config.get('method_options') or ''}",
             f"- data: {training.get('data') or 'not recorded'}",
             f"- training: {training['iterations_done']} / {training['iterations']} iterations, "
             f"batch {training['batch_size']}, {training['size']}² input, width "
             f"{training['base_width']}, device {training['device']}, "
             f"{training['seconds']:.0f} s",
             f"- pre-processing: {config['preprocessing']}",
             f"- post-processing: {config.get('postprocessing')}",
             f"- test-time augmentation: {config.get('inference', {}).get('tta', 'none')}", ""]
    latest = config["validation"].get("latest")
    if latest:
        lines += ["## Validation (3D Dice per class, validation volumes, never the test set)", "",
                  "| class | Dice |", "|---|---|"]
        lines += [f"| {name} | {value:.3f} |" for name, value in latest["dice"].items()]
        lines += [f"| mean | {latest['mean_dice']:.3f} |", ""]
    else:
        lines += ["No validation data was available for this run.", ""]
    return "\n".join(lines)


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
