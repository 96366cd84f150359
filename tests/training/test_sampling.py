"""Multi-source volume sampling: exact probabilities, seeded proportions, slice choice."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from napari_weakseg.training.sampling import Draw, VolumeSampler, choose_slice

CT, MR = "ct", "mr"
VOLUMES = [
    ("a1", {"dataset": "A", "modality": CT}, [1]),
    ("a2", {"dataset": "A", "modality": CT}, [1]),
    ("a3", {"dataset": "A", "modality": CT}, [1]),
    ("b1", {"dataset": "B", "modality": CT}, [1, 2]),
    ("c1", {"dataset": "C", "modality": MR}, [2]),
]

# Hand-derived (see the derivations in each comment).
EXPECTED = {
    # class {0,1,2} 1/3 each → 0: ct/mr 1/6: A 1/12 (a_i 1/36), B 1/12; C 1/6.
    # 1: ct: A 1/6 (a_i 1/18), B 1/6. 2: ct → B 1/6; mr → C 1/6.
    ("hierarchical", True): {"a1": 1 / 12, "a2": 1 / 12, "a3": 1 / 12, "b1": 5 / 12,
                             "c1": 1 / 3},
    # classes {1,2} 1/2 each → 1: ct: A 1/4 (a_i 1/12), B 1/4. 2: ct B 1/4; mr C 1/4.
    ("hierarchical", False): {"a1": 1 / 12, "a2": 1 / 12, "a3": 1 / 12, "b1": 1 / 2,
                              "c1": 1 / 4},
    # modality 1/2 → ct: A 1/4 (a_i 1/12), B 1/4; mr: C 1/2.
    ("mdc", True): {"a1": 1 / 12, "a2": 1 / 12, "a3": 1 / 12, "b1": 1 / 4, "c1": 1 / 2},
    ("uniform", True): {v: 1 / 5 for v in ("a1", "a2", "a3", "b1", "c1")},
}


@pytest.mark.parametrize("strategy, background", sorted(EXPECTED))
def test_exact_probabilities(strategy, background):
    s = VolumeSampler(VOLUMES, strategy, include_background=background)
    probs = s.probabilities()
    assert probs == pytest.approx(EXPECTED[strategy, background], abs=1e-12)
    assert sum(probs.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("strategy, background", sorted(EXPECTED))
def test_empirical_proportions(strategy, background):
    s = VolumeSampler(VOLUMES, strategy, seed=7, include_background=background)
    n = 20000
    counts = Counter(d.volume_id for d in s.sample(n))
    for vid, p in EXPECTED[strategy, background].items():
        assert counts[vid] / n == pytest.approx(p, abs=0.015), vid


def test_category_proportions_and_consistency():
    s = VolumeSampler(VOLUMES, "hierarchical", seed=3)
    draws = s.sample(9000)
    cats = Counter(d.category for d in draws)
    for c in (0, 1, 2):
        assert cats[c] / len(draws) == pytest.approx(1 / 3, abs=0.02)
    classes = {vid: set(cl) | {0} for vid, _, cl in VOLUMES}
    assert all(d.category in classes[d.volume_id] for d in draws)


def test_uniform_draws_no_category():
    d = VolumeSampler(VOLUMES, "uniform", seed=1).draw()
    assert isinstance(d, Draw) and d.category is None


@pytest.mark.parametrize("strategy", ["hierarchical", "mdc", "uniform"])
def test_seeded_reproducibility(strategy):
    a = VolumeSampler(VOLUMES, strategy, seed=11).sample(50)
    b = VolumeSampler(VOLUMES, strategy, seed=11).sample(50)
    c = VolumeSampler(VOLUMES, strategy, seed=12).sample(50)
    assert a == b and a != c


def test_custom_level_order_equals_named_strategy():
    a = VolumeSampler(VOLUMES, "hierarchical", levels=("modality", "dataset", "class"))
    assert a.probabilities() == pytest.approx(EXPECTED["mdc", True])


def test_missing_tags_and_classless_volumes():
    vols = [("x", {}, []), ("y", {"dataset": "D"}, [3])]
    s = VolumeSampler(vols, "hierarchical")
    # class 0: modality unknown → datasets {unknown, D} → 1/4 each; class 3 → y 1/2.
    assert s.probabilities() == pytest.approx({"x": 0.25, "y": 0.75})
    with pytest.raises(ValueError):
        VolumeSampler([("x", {}, [])], "hierarchical", include_background=False)


@pytest.mark.parametrize("kwargs", [
    {"strategy": "nope"}, {"levels": ("class", "dataset")}, {"levels": ("class", "x", "y")}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        VolumeSampler(VOLUMES, **kwargs)


def test_duplicate_and_empty_volumes_rejected():
    with pytest.raises(ValueError):
        VolumeSampler(VOLUMES + [VOLUMES[0]])
    with pytest.raises(ValueError):
        VolumeSampler([])


@pytest.mark.parametrize("counts, allowed, expected", [
    ([0, 2, 6, 0], None, [0, 0.25, 0.75, 0]),          # ∝ class voxels per slice
    ([0, 2, 6, 0], [1, 1, 0, 1], [0, 1, 0, 0]),        # restricted to allowed slices
    ([5, 0, 0, 0], [0, 1, 1, 0], [0, 0.5, 0.5, 0]),    # class absent there → uniform allowed
    (None, None, [0.25] * 4),
])
def test_choose_slice_proportions(counts, allowed, expected):
    rng = np.random.default_rng(5)
    n = 8000
    freq = np.bincount([choose_slice(rng, 4, counts, allowed) for _ in range(n)],
                       minlength=4) / n
    np.testing.assert_allclose(freq, expected, atol=0.025)


@pytest.mark.parametrize("counts, allowed", [
    (None, [0, 0, 0]), ([1, 2], None), ([-1, 1, 1], None), (None, [1, 1])])
def test_choose_slice_errors(counts, allowed):
    with pytest.raises(ValueError):
        choose_slice(np.random.default_rng(0), 3, counts, allowed)


def test_sampler_choose_slice_uses_its_generator():
    a = VolumeSampler(VOLUMES, seed=4)
    b = VolumeSampler(VOLUMES, seed=4)
    assert [a.choose_slice(10) for _ in range(20)] == [b.choose_slice(10) for _ in range(20)]


def test_no_torch_qt_napari_import():
    code = ("import sys, napari_weakseg.training.sampling; "
            "print(sorted(m for m in ('torch', 'napari', 'qtpy', 'PyQt5', 'PySide2', 'PyQt6')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
