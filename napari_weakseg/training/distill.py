"""Learning without forgetting for fine-tunes: the parent model keeps its say where the
user said nothing.

A fine-tune (``TrainConfig.init_model``) on a few annotated slices sees only those slices,
and a scribble constrains a few pixels of each: the rest of the network's behaviour drifts
away from the parent's (measured with the previous zoo model: fine-tuned with ``mixed`` on
6–30 scribbled slices it fell from 0.857 to 0.18–0.74 mean Dice on ACDC val; the current
one does not collapse, so the term is off by default, ``TrainConfig.parent_distillation``;
docs/results.md). As
in *Learning without Forgetting* (Li & Hoiem, ECCV 2016 / TPAMI 2018), the frozen parent
predicts every training batch, and the loss adds

    ``weight · mean over the unannotated pixels of trusted slices of KL(p_parent ‖ p_student)``

(temperature 1; "unannotated": the batch's ``valid`` mask is false — a scribble, a
corrected/complete slice or a partial label is the user's word and is left to the method;
a batch without ``valid`` counts every pixel). "Trusted": the parent agrees with at least
:data:`TRUST_AGREEMENT` of the slice's annotated pixels (its argmax equals the user's
label), or the slice has no labelled pixel. On data like the parent's training data it
agrees with nearly every stroke and keeps its say; where the user corrects it, or on
another scanner's images where it is wrong, the slices it contradicts are left to the
user's annotation alone, so the fine-tune is not held to a parent that is wrong there.
The 0.9 was set, not tuned.

The student's logits are the method's own forward pass of ``batch["image"]``, caught by a
forward hook on the network, so the term costs one extra forward pass of the parent (no
gradient) per step; a method that never runs the network on the batch image as it is pays
one more student pass.

The parent is the ``init_model`` folder, in eval mode (dropout off): deterministic, so a
resumed run stays bit-exact. torch is imported by the caller's process only.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

#: a slice keeps the parent's term when the parent's argmax agrees with at least this
#: fraction of its annotated (labelled, valid) pixels
TRUST_AGREEMENT = 0.9


class ParentDistillation:
    """The frozen parent network and the weight of its KL term (see the module docstring)."""

    def __init__(self, parent_net, weight: float):
        self.parent = parent_net.eval()
        for parameter in self.parent.parameters():
            parameter.requires_grad_(False)
        self.weight = float(weight)
        self.caught = None  # the student's output on the batch image, while watching

    @classmethod
    def for_config(cls, config, device) -> ParentDistillation | None:
        """The term of a fine-tune whose ``parent_distillation`` weight is positive; else
        ``None`` (training from scratch, or switched off)."""
        if not config.init_model or config.parent_distillation <= 0:
            return None
        from ..nets.model_folder import load_model

        parent, _ = load_model(config.init_model, device=str(device))
        return cls(parent, config.parent_distillation)

    @contextmanager
    def watch(self, net, image):
        """While the method computes its loss, keep the first output of ``net`` on
        ``image`` (the very tensor) in ``self.caught``."""
        self.caught = None

        def hook(module, args, output):
            if self.caught is None and args and args[0] is image:
                self.caught = output

        handle = net.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()

    def loss(self, net, batch: dict[str, Any]):
        """``weight · KL(parent ‖ student)`` averaged over the unannotated pixels of the
        batch's trusted slices (:meth:`trusted`; a zero when there are none)."""
        import torch
        import torch.nn.functional as F

        image = batch["image"]
        output, self.caught = (self.caught if self.caught is not None else net(image)), None
        logits = output[0] if isinstance(output, (tuple, list)) else output
        with torch.no_grad():
            parent_out = self.parent(image)
            parent_logits = parent_out[0] if isinstance(parent_out, (tuple, list)) \
                else parent_out
            parent_log_p = F.log_softmax(parent_logits.float(), dim=1)
        log_q = F.log_softmax(logits.float(), dim=1)
        kl = (parent_log_p.exp() * (parent_log_p - log_q)).sum(dim=1)  # B, H, W
        valid = batch.get("valid")
        free = torch.ones_like(kl, dtype=torch.bool) if valid is None else ~valid.bool()
        free = free & self.trusted(parent_log_p.argmax(1), batch)[:, None, None]
        count = free.sum()
        return self.weight * (kl * free).sum() / count.clamp(min=1)

    @staticmethod
    def trusted(parent_labels, batch: dict[str, Any]):
        """``(B,)`` bool: the parent's labels ``(B, H, W)`` agree with at least
        :data:`TRUST_AGREEMENT` of each slice's labelled pixels (``labels`` ≥ 0 inside
        ``valid``); a slice without any is trusted."""
        import torch

        labels, valid = batch.get("labels"), batch.get("valid")
        if labels is None:
            return torch.ones(parent_labels.shape[0], dtype=torch.bool,
                              device=parent_labels.device)
        known = labels >= 0
        if valid is not None:
            known = known & valid.bool()
        known = known.flatten(1)
        agree = ((parent_labels == labels).flatten(1) & known).sum(1)
        total = known.sum(1)
        return (total == 0) | (agree >= TRUST_AGREEMENT * total)


def step_loss(method, model, net, batch: dict[str, Any], iteration: int,
              distillation: ParentDistillation | None):
    """The method's :class:`~napari_weakseg.methods.base.LossOutput` for one step, with
    the parent's term added to ``total`` (and reported as ``parent_kl``) for a fine-tune."""
    if distillation is None:
        return method.loss(model, batch, iteration)
    with distillation.watch(net, batch["image"]):
        out = method.loss(model, batch, iteration)
    term = distillation.loss(net, batch)
    out.total = out.total + term
    out.terms = {**out.terms, "parent_kl": term.detach()}
    return out
