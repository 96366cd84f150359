"""Mixed supervision (issue 16): the composite objective is exactly the sum of the single
methods' (oracle-tested) objectives on the samples of each kind; empty kinds add nothing;
training resumes bit for bit."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_weakseg.methods import get_method
from napari_weakseg.methods.disambig import SelfDisambiguation
from napari_weakseg.methods.effdnet import EFFDNet
from napari_weakseg.methods.full import FullSupervision
from napari_weakseg.methods.mixed import Mixed
from napari_weakseg.methods.pce import PartialCrossEntropy
from napari_weakseg.methods.refineseg import RefineSeg
from napari_weakseg.weak.targets import KIND_BITS, SimpleAnnotation, build_targets

C, H, Z, F = 4, 24, 3, 6


def _truth() -> np.ndarray:
    """(Z, H, H): LV disc (3) in a MYO ring (2), an RV block (1)."""
    yy, xx = np.mgrid[:H, :H]
    r = np.hypot(yy - 12, xx - 14)
    s = np.zeros((H, H), np.int64)
    s[r < 7] = 2
    s[r < 4] = 3
    s[5:19, 1:5] = 1
    return np.repeat(s[None], Z, 0)


TRUTH = _truth()


def _strokes() -> np.ndarray:
    """A scribble (our encoding): every 5th voxel of each class on a diagonal band."""
    yy, xx = np.mgrid[:H, :H]
    band = ((yy + xx) % 5 == 0) & (np.abs(yy - xx) < 9)
    data = np.where(band[None], TRUTH + 1, 0).astype(np.uint8)
    data[:, 5:19, 2] = 2  # an RV stroke
    return data


def _annotation(name: str) -> list[SimpleAnnotation]:
    if name == "scribble":
        return [SimpleAnnotation("scribble", _strokes())]
    if name == "coarse":
        from napari_weakseg.weak.simulate import simulate

        return [SimpleAnnotation("coarse_pos", simulate("coarse_pos", TRUTH, C, radius=1).data),
                SimpleAnnotation("coarse_neg", simulate("coarse_neg", TRUTH, C, radius=2).data)]
    if name == "partial":  # LV + MYO delineated
        data = np.where(np.isin(TRUTH, [2, 3]), TRUTH + 1, 0).astype(np.uint8)
        return [SimpleAnnotation("partial", data, declared_classes=(2, 3))]
    if name == "sparse":   # RV only, on the slice sampled (incomplete → disambiguation)
        data = np.where(TRUTH == 1, 2, 0).astype(np.uint8)
        return [SimpleAnnotation("sparse", data, declared_slices={z: (1,) for z in range(Z)})]
    if name == "dense":
        return [SimpleAnnotation("dense", (TRUTH + 1).astype(np.uint8))]
    if name == "corrected":  # accepted corrected slices: sparse, every class declared
        return [SimpleAnnotation("sparse", (TRUTH + 1).astype(np.uint8),
                                 declared_slices={z: tuple(range(C)) for z in range(Z)})]
    return [a for part in name.split("+") for a in _annotation(part)]


#: the annotation kinds feeding each term group, and the single method that owns it
GROUP_KINDS = {"scribble": {"scribble"}, "coarse": {"coarse_pos", "coarse_neg"},
               "partial": {"partial", "sparse"}, "dense": {"dense", "partial", "sparse"}}


def _sample(annotations, z: int, kinds=None) -> dict[str, np.ndarray]:
    t = build_targets(annotations, C, TRUTH.shape, pos_strategies=("default",),
                      neg_strategies=("default",), kinds=kinds)
    out = {k: v.copy() for k, v in t.slice(z).items()}
    out["kind"] = t.kind_mask[z].copy()
    return out


def _stack(samples: list[dict]) -> dict[str, torch.Tensor]:
    batch = {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}
    ids = torch.arange(len(samples), dtype=torch.float32)
    batch["image"] = ids[:, None, None, None].expand(len(samples), 1, H, H).clone()
    return batch


class FixedNet:
    """Returns fixed outputs per sample; the sample id is the image value."""

    def __init__(self, n: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.logits = torch.randn(n, C, H, H, generator=g, requires_grad=True)
        self.features = torch.randn(n, F, H, H, generator=g, requires_grad=True)

    def __call__(self, image):
        ids = image[:, 0, 0, 0].long()
        return self.logits[ids], self.features[ids]


def _fixed_pseudo(image):
    ids = image[:, 0, 0, 0].long()
    return ((ids[:, None, None] + torch.arange(H)[None, :, None]) % C).expand(-1, H, H)


def _mixed(effdnet_terms=False, **options) -> Mixed:
    method = Mixed(C, F, effdnet_terms=effdnet_terms, effdnet={"fbsl_k": 4}, **options)
    if method.effdnet is not None:
        method.effdnet.pseudo_labels = _fixed_pseudo
    return method


def _expected(names, mixed: Mixed, net, effdnet_terms=False) -> tuple[float, dict]:
    """Σ over groups of the single method's loss on the samples carrying the group, each
    sample's targets built from that group's annotations only (what the method sees)."""
    samples = [_sample(_annotation(n), 1) for n in names]
    groups_of = [{g for g, bit in KIND_BITS.items() if (s["kind"] & bit).any()} for s in samples]
    total, per_group = 0.0, {}
    for group in KIND_BITS:
        idx = [i for i, groups in enumerate(groups_of) if group in groups]
        if not idx:
            continue
        own = [_sample(_annotation(names[i]), 1, GROUP_KINDS[group]) for i in idx]
        batch = _stack(own)
        batch["image"] = torch.tensor(idx, dtype=torch.float32)[:, None, None, None] \
            .expand(len(idx), 1, H, H).clone()
        if group == "scribble":
            batch = {k: v for k, v in batch.items() if k not in ("coarse_pos", "coarse_neg")}
            if effdnet_terms:
                method = EFFDNet(C, F, fbsl_k=4, use_fadc=False)
                method.pseudo_labels = _fixed_pseudo
            else:
                method = PartialCrossEntropy(C, F)
        elif group == "coarse":
            method = RefineSeg(C, F, num_positive=1, num_negative=1)
            method.aux.load_state_dict(mixed.refineseg.aux.state_dict())
        elif group == "partial":
            method = SelfDisambiguation(C, F, entropy_weight=0.0)
        else:
            method = FullSupervision(C, F)
        value = float(method.loss(net, batch, 0).total.detach())
        per_group[group] = value
        total += value
    return total, per_group


COMBINATIONS = [
    ["scribble", "coarse", "partial", "sparse", "dense", "corrected"],   # every kind
    ["scribble+partial", "coarse", "dense"],      # a volume carrying two kinds
    ["scribble+corrected", "sparse"],             # scribbles + accepted corrected slices
    ["scribble", "scribble+corrected"],
    ["coarse+partial", "scribble"],
    ["coarse"],
    ["partial", "sparse"],
    ["dense", "corrected", "coarse"],
]


@pytest.mark.parametrize("effdnet_terms", [False, True])
@pytest.mark.parametrize("names", COMBINATIONS, ids=["|".join(c) for c in COMBINATIONS])
def test_mixed_batch_is_the_sum_of_the_single_method_terms(names, effdnet_terms):
    mixed = _mixed(effdnet_terms)
    net = FixedNet(len(names))
    batch = _stack([_sample(_annotation(n), 1) for n in names])
    out = mixed.loss(net, batch, 0)
    expected, per_group = _expected(names, mixed, net, effdnet_terms)
    assert float(out.total.detach()) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    for group, value in per_group.items():  # each group's term is logged under its name
        assert out.scalar_terms()[group] == pytest.approx(value, rel=1e-6, abs=1e-7)
    assert set(out.terms) & set(KIND_BITS) == set(per_group)
    out.total.backward()
    assert torch.isfinite(net.logits.grad).all()
    assert net.features.grad is None or torch.isfinite(net.features.grad).all()


def test_weights_scale_each_group():
    names = ["scribble", "coarse", "partial", "dense"]
    net = FixedNet(len(names))
    batch = _stack([_sample(_annotation(n), 1) for n in names])
    torch.manual_seed(0)  # the same annotation heads in both
    base = _mixed().loss(net, batch, 0).scalar_terms()
    weights = {"scribble": 0.5, "coarse": 2.0, "partial": 0.0, "dense": 3.0}
    torch.manual_seed(0)
    out = _mixed(**{f"{g}_weight": w for g, w in weights.items()}).loss(net, batch, 0)
    assert float(out.total.detach()) == pytest.approx(sum(w * base[g] for g, w in weights.items()),
                                             rel=1e-6)


@pytest.mark.parametrize("names", [["scribble"], ["dense"], ["coarse"], ["partial"]])
def test_absent_kinds_contribute_nothing(names):
    net = FixedNet(len(names))
    batch = _stack([_sample(_annotation(n), 1) for n in names])
    out = _mixed().loss(net, batch, 0)
    present = {g for g in KIND_BITS if g in out.terms}
    assert len(present) == 1 and np.isfinite(float(out.total.detach()))
    assert float(out.total.detach()) == pytest.approx(out.scalar_terms()[present.pop()], rel=1e-7)


def test_a_batch_without_any_supervision_is_a_finite_zero():
    net = FixedNet(2)
    batch = _stack([_sample(_annotation("scribble"), 1) for _ in range(2)])
    batch["kind"][:] = 0
    batch["coarse_pos"][:] = -1
    batch["coarse_neg"][:] = False
    out = _mixed(effdnet_terms=True).loss(net, batch, 0)
    assert float(out.total.detach()) == 0.0 and out.terms == {}
    out.total.backward()
    assert (net.logits.grad == 0).all()


def test_partial_term_merges_labels_outside_the_declared_classes():
    """Strokes of undeclared classes on a partial slice do not reach the disambiguation Dice
    (they are trained by the scribble term)."""
    net = FixedNet(1)
    both = _mixed().loss(net, _stack([_sample(_annotation("scribble+partial"), 1)]), 0).scalar_terms()
    alone = _mixed().loss(net, _stack([_sample(_annotation("partial"), 1)]), 0).scalar_terms()
    assert both["partial"] == pytest.approx(alone["partial"], rel=1e-7)


def test_options_are_checked():
    with pytest.raises(ValueError, match="FADC"):
        Mixed(C, F, effdnet={"use_fadc": True})
    with pytest.raises(Exception, match="unknown options"):
        Mixed(C, F, no_such_option=1)
    assert get_method("mixed") is Mixed
    assert Mixed.kinds >= {"scribble", "coarse_pos", "coarse_neg", "partial", "sparse", "dense"}


# ------------------------------------------------------------------ training: resume bit-exact
@pytest.fixture(scope="module")
def mixed_volumes():
    from napari_weakseg.synthetic import make_cohort
    from napari_weakseg.training.data import TrainingVolume, normalise_intensity
    from napari_weakseg.weak.simulate import simulate

    cases = make_cohort(2, seed=7, shape=(4, 32, 32))
    volumes = []
    for i, case in enumerate(cases):
        truth = case.ground_truth
        if i == 0:    # scribbles + two accepted corrected slices
            data = np.zeros(truth.shape, np.uint8)
            data[[1, 2]] = truth[[1, 2]] + 1
            every = tuple(range(C))
            anns = [SimpleAnnotation("scribble", case.scribble),
                    SimpleAnnotation("sparse", data, declared_slices={1: every, 2: every})]
        elif i == 1:  # coarse +/−
            anns = [SimpleAnnotation("coarse_pos", simulate("coarse_pos", truth, C, radius=1).data),
                    SimpleAnnotation("coarse_neg", simulate("coarse_neg", truth, C, radius=2).data)]
        elif i == 2:  # partial LV + MYO
            sim = simulate("partial", truth, C, keep=[2, 3])
            anns = [SimpleAnnotation("partial", sim.data, declared_classes=sim.declared_classes)]
        else:         # validation
            anns = [SimpleAnnotation("dense", truth.astype(np.int64) + 1)]
        targets = build_targets(anns, C, truth.shape).as_dict(kind=True)
        volumes.append(TrainingVolume(case.name, normalise_intensity(case.image), targets,
                                      case.ground_truth, case.geometry.spatial_spacing))
    return volumes[:3], volumes[3:]


def _weights(folder):
    from napari_weakseg.nets.model_folder import load_model

    net, _ = load_model(folder)
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_mixed_training_resumes_bit_exact(tmp_path, mixed_volumes):
    from napari_weakseg.training.config import TrainConfig
    from napari_weakseg.training.events import Checkpoint, Progress
    from napari_weakseg.training.trainer import Trainer

    train, val = mixed_volumes
    names = ["background", "RV", "MYO", "LV"]
    config = TrainConfig(method="mixed", iterations=8, batch_size=4, size=32, base_width=4,
                         val_every=4, checkpoint_every=3, device="cpu", threads=1,
                         method_options={"effdnet": {"fbsl_k": 4}})
    events = []
    straight = Trainer(config, train, val, names, tmp_path / "a", emit=events.append).run()
    assert straight.status == "completed"
    terms = set().union(*(e.losses for e in events if isinstance(e, Progress)))
    assert {"total", "scribble", "coarse", "partial", "dense"} <= terms  # losses per term
    state = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert "refineseg" in state["extras"] and "teacher" in state["method_state"]["effdnet"]

    cancel = threading.Event()

    def stop(event):
        if isinstance(event, Checkpoint) and event.iteration == 3:
            cancel.set()

    first = Trainer(config, train, val, names, tmp_path / "b", emit=stop, cancel=cancel).run()
    assert first.status == "cancelled" and first.iteration == 3
    second = Trainer(config, train, val, names, tmp_path / "b").run()
    assert second.status == "completed"
    a, b = _weights(tmp_path / "a" / "model_last"), _weights(tmp_path / "b" / "model_last")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert straight.history == second.history
