"""Weak labels simulated from dense masks — seeded, for benchmarks and tests.

Input: a dense mask ``(Z, Y, X)`` of plain class values (0 = background … C − 1) and,
optionally, the voxel ``spacing`` ``(sz, sy, sx)`` in mm. Everything is done per slice
(in-plane, 2D), since annotators draw on slices and ACDC slices are 5–10 mm apart. Outputs
use the stored encoding of :mod:`.encoding` (class kinds: 0 = unannotated, class c → c + 1;
``coarse_neg``: bitmask of excluded classes). Each function is a pure function of its
arguments (``seed`` included).

Scribbles (:func:`simulate_scribbles`) — our skeleton-based algorithm, written for this
project (it is *not* the WSL4MIS ``scribbles_generator.py``, whose 255 ignore value and
``skeleton == 255`` test on a boolean skeleton make it unusable as is). Per slice:

1. Foreground class c (largest connected component of at least ``min_area`` px): take the
   Euclidean distance to the structure's boundary, ``dt``, and a depth
   ``d = f · max(dt)`` with ``f ~ U(depth)``; the band ``{d ≤ dt ≤ d + band}`` is a thin
   copy of the structure's outline at that depth (a ring inside the LV cavity, the mid-wall
   of the myocardium, a crescent inside the RV). Its **skeleton** (scikit-image
   ``skeletonize``) is a one-pixel curve.
2. Background: the same with the band ``{D ≤ distance to the heart ≤ D + band}`` outside
   all foreground, ``D ~ U(background_distance_mm)`` — a loop around the heart, as
   annotators draw. Slices without foreground use the foreground of the whole volume
   (projected) as the "heart", or the image centre when the volume has none.
3. The skeleton becomes a graph (8-neighbours, edge length 1 or √2); the stroke is its
   longest geodesic path (double sweep of Dijkstra, scipy.sparse.csgraph), after cutting a
   closed loop at a random point (so loops give long open arcs, like hand-drawn circles).
4. A random contiguous part of the path, a fraction ``U(coverage)`` of its length, is kept,
   thickened to ``width`` px and clipped to the class region (strokes never cross a
   boundary, so their precision against the mask is 1).

Coarse positive masks (:func:`simulate_coarse_pos`): per slice and class, binary erosion
with a disk (an ellipse in mm when ``radius_mm`` is given). Default radius — Morpho-MNIST's
thinning rule (RefineSeg erodes "following [2]"): ``int(amount × mean(dt on the skeleton))``
px with ``amount = 0.7``, i.e. 70 % of the structure's mean half-thickness (methods-as-coded
§1.4; Morpho-MNIST measures at 4× up-sampling, we measure at native resolution).

Coarse negative masks (:func:`simulate_coarse_neg`): "not c" on every voxel outside a
dilation of class c (default 3 px); a voxel outside the dilations of several classes gets
all their bits (e.g. far from the heart: "not RV, not MYO, not LV" = 2 + 4 + 8 = 14).

Partial (:func:`simulate_partial`): the chosen classes delineated, the rest left 0.
Sparse (:func:`simulate_sparse`): every k-th slice or a random fraction of slices, each
with all foreground classes or a random subset of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from ..errors import InputError, OptionError
from .encoding import encode_not_classes

_NEIGHBOURS = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, np.sqrt(2.0)), (1, -1, np.sqrt(2.0)))


@dataclass(frozen=True, eq=False)
class SimulatedAnnotation:
    """A simulated annotation: ``data`` (Z, Y, X) in the stored encoding plus the
    declarations a careful annotator would make."""

    kind: str
    data: np.ndarray
    declared_classes: tuple[int, ...] | None = None
    declared_slices: dict[int, tuple[int, ...]] | None = None
    strategy: str = "default"


def _check_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"dense mask must be 3D (Z, Y, X), got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() >= num_classes):
        raise InputError(f"dense mask values must be 0 … {num_classes - 1}, got "
                         f"{mask.min()} … {mask.max()}")
    return mask.astype(np.int64)


def _classes(classes: Iterable[int] | None, num_classes: int, default: Iterable[int]):
    out = list(default) if classes is None else [int(c) for c in classes]
    for c in out:
        if not 0 <= c < num_classes:
            raise OptionError(f"class {c} outside 0 … {num_classes - 1}")
    return out


def _inplane(spacing: Sequence[float] | None) -> tuple[float, float]:
    if spacing is None:
        return (1.0, 1.0)
    return (float(spacing[-2]), float(spacing[-1]))


def _footprint(radius_px: float | None, radius_mm: float | None,
               spacing: Sequence[float] | None) -> np.ndarray | None:
    """Disk of ``radius_px`` px, or ellipse of ``radius_mm`` mm on the in-plane grid."""
    sy, sx = _inplane(spacing)
    if radius_mm is not None:
        ry, rx = radius_mm / sy, radius_mm / sx
    else:
        ry = rx = float(radius_px)
    if ry < 1 and rx < 1:
        return None
    ny, nx = int(np.floor(ry)), int(np.floor(rx))
    yy, xx = np.mgrid[-ny:ny + 1, -nx:nx + 1]
    return (yy / max(ry, 1e-9)) ** 2 + (xx / max(rx, 1e-9)) ** 2 <= 1.0 + 1e-9


# -- scribbles -------------------------------------------------------------------------------
def simulate_scribbles(mask: np.ndarray, num_classes: int, *, seed: int = 0,
                       spacing: Sequence[float] | None = None,
                       classes: Iterable[int] | None = None,
                       depth: tuple[float, float] = (0.3, 0.5),
                       coverage: tuple[float, float] = (0.8, 1.0),
                       background_distance_mm: tuple[float, float] = (8.0, 28.0),
                       band_px: float = 1.5, width: int = 1, connectivity: int = 4,
                       min_area: int = 12) -> np.ndarray:
    """Skeleton-based scribbles (algorithm in the module docstring).

    ``mask`` (Z, Y, X) class values; ``classes`` to scribble (default all, background
    included); ``depth``: range of the stroke's depth as a fraction of the structure's
    largest inscribed radius; ``coverage``: range of the fraction of the path kept;
    ``background_distance_mm``: range of the background loop's distance from the heart
    (pixels = mm when ``spacing`` is None); ``width``: stroke width in px (odd);
    ``connectivity``: 4 (default; a corner pixel fills each diagonal step, like a brush
    dragged in ITK-SNAP or napari) or 8 (the bare skeleton path).
    Returns (Z, Y, X) uint8, class encoding (0 = unannotated).
    """
    mask = _check_mask(mask, num_classes)
    if connectivity not in (4, 8):
        raise ValueError("connectivity must be 4 or 8")
    rng = np.random.default_rng(seed)
    classes = _classes(classes, num_classes, range(num_classes))
    sampling = _inplane(spacing)
    out = np.zeros(mask.shape, np.uint8)
    heart_all = (mask > 0).any(axis=0)
    thick = _footprint((width - 1) / 2, None, None) if width > 1 else None
    for z in range(mask.shape[0]):
        for c in classes:
            if c == 0:
                region = mask[z] == 0
                heart = mask[z] > 0
                if not heart.any():
                    heart = heart_all.copy()
                if not heart.any():
                    heart = np.zeros_like(region)
                    heart[tuple(s // 2 for s in region.shape)] = True
                dist = ndimage.distance_transform_edt(~heart, sampling=sampling)
                d = rng.uniform(*background_distance_mm)
                step = band_px * min(sampling)
                band = region & (dist >= d) & (dist <= d + step)
                while not band.any() and d > step:  # loop leaves the image: come closer
                    d /= 2
                    band = region & (dist >= d) & (dist <= d + step)
            else:
                region = _largest_component(mask[z] == c)
                if region.sum() < min_area:
                    continue
                dt = ndimage.distance_transform_edt(region)
                d = rng.uniform(*depth) * dt.max()
                band = region & (dt >= d) & (dt <= d + band_px)
            path = _stroke_path(band, rng)
            if path is None:
                continue
            keep = rng.uniform(*coverage)
            n = min(len(path), max(2, int(round(keep * len(path)))))
            start = int(rng.integers(0, len(path) - n + 1))
            stroke = np.zeros(region.shape, bool)
            part = path[start:start + n]
            stroke[tuple(part.T)] = True
            if connectivity == 4:  # a corner pixel at each diagonal step, as a brush drags
                diagonal = np.abs(np.diff(part, axis=0)).sum(axis=1) == 2
                corners = np.stack([part[:-1][diagonal, 0], part[1:][diagonal, 1]], axis=1)
                stroke[tuple(corners.T)] = True
            if thick is not None:
                stroke = ndimage.binary_dilation(stroke, thick)
            stroke &= region & (out[z] == 0)
            out[z][stroke] = c + 1
    return out


def _largest_component(binary: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(binary, structure=np.ones((3, 3)))
    if n <= 1:
        return binary
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (1 + int(np.argmax(sizes)))


def _stroke_path(band: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Longest geodesic path (N, 2) of the skeleton of ``band``; ``None`` when empty."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(band)
    if not skeleton.any():
        return None
    coords = np.argwhere(skeleton)
    graph = _pixel_graph(skeleton, coords)
    n_comp, comp = connected_components(graph, directed=False)
    if n_comp > 1:  # the biggest piece of curve
        biggest = np.argmax(np.bincount(comp))
        keep = np.flatnonzero(comp == biggest)
        coords = coords[keep]
        graph = graph[keep][:, keep]
    if len(coords) < 2:
        return coords
    best = _diameter_path(graph, start=0)
    # cut a possible loop: remove a random pixel's 3x3 neighbourhood and measure again
    cut = int(rng.integers(len(coords)))
    far = np.abs(coords - coords[cut]).max(axis=1) > 1
    if far.sum() >= 2:
        sub = np.flatnonzero(far)
        sub_graph = graph[sub][:, sub]
        n_comp, comp = connected_components(sub_graph, directed=False)
        piece = np.flatnonzero(comp == np.argmax(np.bincount(comp)))
        if len(piece) >= 2:
            opened = sub[piece][_diameter_path(sub_graph[piece][:, piece], start=0)]
            if _length(coords[opened]) > _length(coords[best]):
                best = opened
    return coords[best]


def _pixel_graph(skeleton: np.ndarray, coords: np.ndarray):
    index = -np.ones(skeleton.shape, np.int64)
    index[tuple(coords.T)] = np.arange(len(coords))
    rows, cols, weights = [], [], []
    h, w = skeleton.shape
    for dy, dx, weight in _NEIGHBOURS:
        y2, x2 = coords[:, 0] + dy, coords[:, 1] + dx
        inside = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
        target = np.full(len(coords), -1)
        target[inside] = index[y2[inside], x2[inside]]
        ok = target >= 0
        rows.append(np.flatnonzero(ok))
        cols.append(target[ok])
        weights.append(np.full(ok.sum(), weight))
    rows, cols, weights = (np.concatenate(x) for x in (rows, cols, weights))
    n = len(coords)
    return coo_matrix((weights, (rows, cols)), shape=(n, n)).tocsr()


def _diameter_path(graph, start: int) -> np.ndarray:
    """Node indices of the longest shortest path found by a double Dijkstra sweep."""
    dist = dijkstra(graph, directed=False, indices=start)
    a = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    dist, pred = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    b = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    path = [b]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    return np.asarray(path[::-1])


def _length(coords: np.ndarray) -> float:
    if len(coords) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(coords, axis=0), axis=1).sum())


# -- coarse masks ------------------------------------------------------------------------------
def morphomnist_radius(binary: np.ndarray, amount: float = 0.7) -> int:
    """Morpho-MNIST's thinning radius for a 2D structure: ``int(amount × mean distance to
    the boundary over the skeleton pixels)`` (0 for an empty mask)."""
    from skimage.morphology import skeletonize

    binary = np.asarray(binary, bool)
    if not binary.any():
        return 0
    skeleton = skeletonize(binary)
    dt = ndimage.distance_transform_edt(binary)
    return int(amount * float(dt[skeleton].mean())) if skeleton.any() else 0


def simulate_coarse_pos(mask: np.ndarray, num_classes: int, *, radius: float | None = None,
                        radius_mm: float | None = None, amount: float = 0.7,
                        spacing: Sequence[float] | None = None,
                        classes: Iterable[int] | None = None) -> np.ndarray:
    """Coarse positive masks by per-slice, per-class erosion.

    Radius: ``radius`` px, or ``radius_mm`` (needs ``spacing``), or by default the
    Morpho-MNIST rule :func:`morphomnist_radius` with ``amount`` computed per slice and
    class. ``classes``: default all, background included. The image border is not treated
    as a boundary. Returns (Z, Y, X) uint8, class encoding.
    """
    mask = _check_mask(mask, num_classes)
    if radius_mm is not None and spacing is None:
        raise OptionError("radius_mm needs the voxel spacing")
    classes = _classes(classes, num_classes, range(num_classes))
    out = np.zeros(mask.shape, np.uint8)
    for z in range(mask.shape[0]):
        for c in classes:
            region = mask[z] == c
            if not region.any():
                continue
            r = radius if (radius is not None or radius_mm is not None) else \
                morphomnist_radius(region, amount)
            footprint = _footprint(r, radius_mm, spacing)
            core = region if footprint is None else ndimage.binary_erosion(
                region, footprint, border_value=1)
            out[z][core] = c + 1
    return out


def simulate_coarse_neg(mask: np.ndarray, num_classes: int, *, radius: float = 3,
                        radius_mm: float | None = None,
                        spacing: Sequence[float] | None = None,
                        classes: Iterable[int] | None = None) -> np.ndarray:
    """"Not c" outside a per-slice dilation of class c (``radius`` px or ``radius_mm``).

    ``classes``: the classes that get a negative map (default all, background included).
    A voxel may be "not" several classes: its stored value is the sum of their bits
    ``2**c``. Returns (Z, Y, X) uint8 (uint16 above 8 classes), bitmask encoding.
    """
    mask = _check_mask(mask, num_classes)
    if radius_mm is not None and spacing is None:
        raise OptionError("radius_mm needs the voxel spacing")
    classes = _classes(classes, num_classes, range(num_classes))
    footprint = _footprint(radius, radius_mm, spacing)
    excluded = np.zeros((num_classes,) + mask.shape, bool)
    for c in classes:
        for z in range(mask.shape[0]):
            region = mask[z] == c
            near = region if footprint is None else ndimage.binary_dilation(region, footprint)
            excluded[c, z] = ~near
    return encode_not_classes(excluded)


# -- partial and sparse ----------------------------------------------------------------------
def simulate_partial(mask: np.ndarray, num_classes: int,
                     keep: Iterable[int]) -> SimulatedAnnotation:
    """Only the classes in ``keep`` delineated (class encoding); they are declared."""
    mask = _check_mask(mask, num_classes)
    keep = tuple(sorted(set(_classes(keep, num_classes, ()))))
    data = np.where(np.isin(mask, keep), mask + 1, 0).astype(np.uint8)
    return SimulatedAnnotation("partial", data, declared_classes=keep)


def simulate_sparse(mask: np.ndarray, num_classes: int, *, every: int | None = None,
                    fraction: float | None = None, offset: int = 0,
                    slices: Iterable[int] | None = None, seed: int = 0,
                    slice_classes: int | Mapping[int, Iterable[int]] | None = None
                    ) -> SimulatedAnnotation:
    """Dense labels on some slices only.

    Slices: ``slices`` explicitly, or every ``every``-th slice from ``offset``, or a random
    ``fraction`` of the slices (at least one). Per slice, the foreground classes delineated
    and declared: all (default), a random subset of ``slice_classes`` of them (int), or
    ``slice_classes[z]`` (mapping). Background completes automatically on slices declaring
    every foreground class (see :mod:`.targets`).
    """
    mask = _check_mask(mask, num_classes)
    rng = np.random.default_rng(seed)
    nz = mask.shape[0]
    if slices is not None:
        chosen = sorted({int(z) for z in slices})
    elif every is not None:
        if every < 1:
            raise OptionError("every must be ≥ 1")
        chosen = list(range(offset % every, nz, every))
    elif fraction is not None:
        if not 0 < fraction <= 1:
            raise OptionError("fraction must be in (0, 1]")
        count = max(1, int(round(fraction * nz)))
        chosen = sorted(int(z) for z in rng.choice(nz, size=count, replace=False))
    else:
        raise OptionError("give slices, every or fraction")
    for z in chosen:
        if not 0 <= z < nz:
            raise OptionError(f"slice {z} outside 0 … {nz - 1}")
    foreground = list(range(1, num_classes))
    declared: dict[int, tuple[int, ...]] = {}
    data = np.zeros(mask.shape, np.uint8)
    for z in chosen:
        if slice_classes is None:
            cls = foreground
        elif isinstance(slice_classes, Mapping):
            cls = _classes(slice_classes.get(z, foreground), num_classes, ())
        else:
            k = min(int(slice_classes), len(foreground))
            cls = sorted(int(c) for c in rng.choice(foreground, size=k, replace=False))
        declared[z] = tuple(sorted(cls))
        sel = np.isin(mask[z], declared[z])
        data[z][sel] = mask[z][sel] + 1
    return SimulatedAnnotation("sparse", data, declared_slices=declared)


def simulate(kind: str, mask: np.ndarray, num_classes: int, **options) -> SimulatedAnnotation:
    """Dispatch by kind; returns data with its declarations (``dense`` = the mask itself)."""
    if kind == "scribble":
        return SimulatedAnnotation(kind, simulate_scribbles(mask, num_classes, **options))
    if kind == "coarse_pos":
        return SimulatedAnnotation(kind, simulate_coarse_pos(mask, num_classes, **options))
    if kind == "coarse_neg":
        return SimulatedAnnotation(kind, simulate_coarse_neg(mask, num_classes, **options))
    if kind == "partial":
        return simulate_partial(mask, num_classes, **options)
    if kind == "sparse":
        return simulate_sparse(mask, num_classes, **options)
    if kind == "dense":
        mask = _check_mask(mask, num_classes)
        return SimulatedAnnotation(kind, (mask + 1).astype(np.uint8),
                                   declared_classes=tuple(range(num_classes)))
    raise OptionError(f"cannot simulate kind {kind!r}")
