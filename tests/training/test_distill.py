"""Learning without forgetting: a fine-tune adds the parent's KL term on unannotated pixels
only, reuses the method's own forward pass, reports the term, stays bit-exact on resume,
and is absent from scratch or when switched off."""

from __future__ import annotations


import pytest
import torch

from napari_weakseg.errors import OptionError
from napari_weakseg.nets.unet import build_network, default_config
from napari_weakseg.training.config import TrainConfig
from napari_weakseg.training.distill import ParentDistillation, step_loss
from napari_weakseg.training.events import Progress
from napari_weakseg.training.sources import synthetic_data
from napari_weakseg.training.trainer import Trainer
from tests.training.test_trainer import straight_and_resumed, tiny_config, weights


def tiny_net(seed: int):
    torch.manual_seed(seed)
    return build_network(default_config(base_width=4)).eval()


def batch_with_valid(valid_fraction: float | None):
    torch.manual_seed(5)
    batch = {"image": torch.randn(2, 1, 32, 32)}
    if valid_fraction is not None:
        valid = torch.zeros(2, 32, 32, dtype=torch.bool)
        valid[:, : int(32 * valid_fraction)] = True
        batch["valid"] = valid
    return batch


def manual_kl(parent, student, batch):
    p = torch.softmax(parent(batch["image"])[0], 1)
    log_q = torch.log_softmax(student(batch["image"])[0], 1)
    kl = (p * (p.log() - log_q)).sum(1)
    free = ~batch["valid"] if "valid" in batch else torch.ones_like(kl, dtype=torch.bool)
    return kl[free].mean()


@pytest.mark.parametrize("valid_fraction", [None, 0.25, 0.75])
def test_the_term_is_the_kl_on_unannotated_pixels(valid_fraction):
    parent, student = tiny_net(0), tiny_net(1)
    batch = batch_with_valid(valid_fraction)
    term = ParentDistillation(parent, 2.0).loss(student, batch)
    with torch.no_grad():
        expected = 2.0 * manual_kl(parent, student, batch)
    torch.testing.assert_close(term.detach(), expected, rtol=1e-4, atol=1e-6)


def test_no_term_where_the_student_is_its_parent_or_everything_is_annotated():
    parent = tiny_net(0)
    same = tiny_net(0)
    with torch.no_grad():
        assert float(ParentDistillation(parent, 1.0).loss(same, batch_with_valid(0.5))) \
            == pytest.approx(0.0, abs=1e-6)
        assert float(ParentDistillation(parent, 1.0).loss(tiny_net(1),
                                                          batch_with_valid(1.0))) == 0


class CountingMethod:
    """A method whose loss runs the network once on the batch image."""

    def __init__(self):
        self.calls = 0

    def loss(self, net, batch, step):
        from napari_weakseg.methods.base import LossOutput

        logits, _ = net(batch["image"])
        return LossOutput(total=logits.mean(), terms={})


def test_the_methods_forward_pass_is_reused_and_the_term_reported():
    parent, student = tiny_net(0), tiny_net(1)
    calls = []
    student.register_forward_hook(lambda *args: calls.append(1))
    batch = batch_with_valid(0.5)
    out = step_loss(CountingMethod(), student, student, batch, 0,
                    ParentDistillation(parent, 1.0))
    assert len(calls) == 1  # the hook caught the method's pass: no second student pass
    assert "parent_kl" in out.terms and float(out.terms["parent_kl"]) > 0
    out.total.backward()
    assert all(p.grad is None for p in parent.parameters())  # the parent stays frozen
    plain = step_loss(CountingMethod(), student, student, batch, 0, None)
    assert "parent_kl" not in plain.terms


@pytest.fixture(scope="module")
def data():
    return synthetic_data(subjects=2, val_subjects=1, shape=(4, 32, 32))


@pytest.fixture(scope="module")
def parent(tmp_path_factory, data):
    run = tmp_path_factory.mktemp("parent")
    return Trainer(tiny_config(iterations=6), data.train, data.val, data.class_names,
                   run).run().model_dir


def test_off_by_default():
    assert TrainConfig().parent_distillation == 0.0


def test_a_fine_tune_reports_the_term_and_scratch_does_not(tmp_path, data, parent):
    for init, expected in ((str(parent), True), (None, False)):
        events = []
        Trainer(tiny_config(iterations=2, init_model=init, parent_distillation=1.0),
                data.train, data.val,
                data.class_names, tmp_path / str(expected), emit=events.append).run()
        losses = [e.losses for e in events if isinstance(e, Progress)]
        assert losses and all(("parent_kl" in loss) == expected for loss in losses)


def test_switching_it_off_changes_the_fine_tune(tmp_path, data, parent, monkeypatch):
    from napari_weakseg.training import distill

    monkeypatch.setattr(distill, "TRUST_AGREEMENT", 0.0)  # the 6-iteration parent is poor
    on = Trainer(tiny_config(iterations=3, init_model=str(parent), parent_distillation=1.0),
                 data.train, data.val, data.class_names, tmp_path / "on").run()
    off = Trainer(tiny_config(iterations=3, init_model=str(parent), parent_distillation=0.0),
                  data.train, data.val, data.class_names, tmp_path / "off").run()
    a, b = weights(on.model_dir.parent / "model_last"), weights(off.model_dir.parent /
                                                                "model_last")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_a_distilled_fine_tune_resumes_bit_exactly(tmp_path, data, parent, monkeypatch):
    from napari_weakseg.training import distill

    monkeypatch.setattr(distill, "TRUST_AGREEMENT", 0.0)
    config = tiny_config(iterations=8, init_model=str(parent), parent_distillation=1.0)
    first, second = straight_and_resumed(config, data, tmp_path)
    a, b = weights(first / "model_last"), weights(second / "model_last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("weight", [-0.5, "1"])
def test_a_bad_weight_is_refused(weight):
    with pytest.raises(OptionError, match="parent"):
        TrainConfig(parent_distillation=weight).validate()


def test_slices_where_the_parent_contradicts_the_user_are_left_to_the_user():
    parent, student = tiny_net(0), tiny_net(1)
    batch = batch_with_valid(0.25)  # rows 0–7 annotated on both slices
    with torch.no_grad():
        parent_labels = parent(batch["image"])[0].argmax(1)
    labels = parent_labels.clone()
    labels[1] = (parent_labels[1] + 1) % 4          # slice 1: the user says otherwise
    labels[0, 0, :2] = (parent_labels[0, 0, :2] + 1) % 4  # slice 0: 2 of 256 disagree
    batch["labels"] = labels
    trusted = ParentDistillation.trusted(parent_labels, batch)
    assert trusted.tolist() == [True, False]
    term = ParentDistillation(parent, 1.0).loss(student, batch)
    only_first = {"image": batch["image"][:1], "valid": batch["valid"][:1]}
    with torch.no_grad():
        expected = manual_kl(parent, student, only_first)
    torch.testing.assert_close(term.detach(), expected, rtol=1e-4, atol=1e-6)
    unlabelled = {**batch, "labels": torch.full_like(labels, -1)}  # no evidence: trusted
    assert ParentDistillation.trusted(parent_labels, unlabelled).tolist() == [True, True]
