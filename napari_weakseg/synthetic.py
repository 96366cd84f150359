"""Procedural short-axis cardiac cine MRI phantoms with known truth (no downloads).

Each volume has the LV blood pool, the myocardial ring, the RV crescent, surrounding tissue,
lungs, Rician-like noise and a smooth multiplicative intensity bias; slices run from base
(index 0) to apex. Dense truth uses ACDC values (0 bg, 1 RV, 2 MYO, 3 LV); the example
scribbles use the annotation encoding of :mod:`napari_weakseg.schema` (0 = unannotated,
class + 1). Every output is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io.geometry import VolumeGeometry
from .schema import UNANNOTATED, encode_class

ED, ES = 0.0, 1.0
BG, RV, MYO, LV = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class SyntheticCase:
    """One synthetic volume. Arrays are (Z, Y, X); ``scribble`` is annotation-encoded."""

    name: str
    image: np.ndarray
    ground_truth: np.ndarray
    scribble: np.ndarray
    geometry: VolumeGeometry
    tags: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Anatomy:
    """Per-subject anatomy in mm, drawn once from the seed."""

    centre: tuple[float, float]
    lv_radius: float
    wall: float
    rv_angle: float
    rv_offset: float
    rv_radii: tuple[float, float]
    body_radii: tuple[float, float]
    ejection: float
    bias: tuple[float, float, float]
    intensities: dict

    @classmethod
    def draw(cls, rng: np.random.Generator, fov_mm: tuple[float, float]) -> _Anatomy:
        fy, fx = fov_mm
        return cls(
            centre=(fy * rng.uniform(0.45, 0.55), fx * rng.uniform(0.48, 0.58)),
            lv_radius=rng.uniform(22.0, 28.0),
            wall=rng.uniform(7.0, 10.0),
            rv_angle=rng.uniform(np.deg2rad(190), np.deg2rad(220)),
            rv_offset=rng.uniform(34.0, 40.0),
            rv_radii=(rng.uniform(38.0, 44.0), rng.uniform(22.0, 28.0)),
            body_radii=(fy * rng.uniform(0.40, 0.46), fx * rng.uniform(0.44, 0.49)),
            ejection=rng.uniform(0.45, 0.65),
            bias=(rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25), rng.uniform(0.0, 2 * np.pi)),
            intensities={"blood": rng.uniform(0.85, 0.95), "myo": rng.uniform(0.25, 0.35),
                         "tissue": rng.uniform(0.45, 0.55), "lung": rng.uniform(0.05, 0.12),
                         "fat": rng.uniform(0.95, 1.05)},
        )


def _grid(shape_yx: tuple[int, int], spacing_yx: tuple[float, float]):
    y = (np.arange(shape_yx[0]) + 0.5) * spacing_yx[0]
    x = (np.arange(shape_yx[1]) + 0.5) * spacing_yx[1]
    return np.meshgrid(y, x, indexing="ij")


def _slice_masks(anat: _Anatomy, yy, xx, level: float, phase: float):
    """Masks of one slice. ``level`` 0 = base … 1 = apex, ``phase`` 0 = ED … 1 = ES."""
    cy, cx = anat.centre
    taper = np.sqrt(max(1.0 - 0.85 * level ** 1.6, 0.05))
    contraction = 1.0 - anat.ejection * 0.45 * phase
    r_lv = anat.lv_radius * taper * contraction
    wall = anat.wall * (1.0 + 0.35 * phase) * (0.9 + 0.2 * level)
    # slightly elliptic LV, rotated, so the phantom has no mirror symmetry
    dy, dx = yy - cy, xx - cx
    u = dy * np.cos(0.3) + dx * np.sin(0.3)
    v = -dy * np.sin(0.3) + dx * np.cos(0.3)
    rho = np.sqrt((u / 1.08) ** 2 + (v / 0.94) ** 2)
    lv = rho < r_lv
    myo = (rho >= r_lv) & (rho < r_lv + wall)
    rv = np.zeros_like(lv)
    if level < 0.85:
        rcy = cy + anat.rv_offset * np.sin(anat.rv_angle)
        rcx = cx + anat.rv_offset * np.cos(anat.rv_angle)
        ay, ax = (r * (1.0 - 0.7 * level) * (1.0 - 0.25 * phase) for r in anat.rv_radii)
        ang = anat.rv_angle
        pu = (yy - rcy) * np.sin(ang) + (xx - rcx) * np.cos(ang)
        pv = -(yy - rcy) * np.cos(ang) + (xx - rcx) * np.sin(ang)
        rv = ((pu / max(ax, 1e-3)) ** 2 + (pv / max(ay, 1e-3)) ** 2 < 1.0)
        rv &= rho >= r_lv + wall  # the septum borders the RV blood pool, as in cine MRI
    return lv, myo, rv, r_lv, wall


def make_cardiac_volume(seed: int = 0, *, phase: float = ED, shape: tuple[int, int, int] = (10, 128, 128),
                        spacing: tuple[float, float, float] = (10.0, 1.5625, 1.5625),
                        name: str | None = None, noise: float = 0.04) -> SyntheticCase:
    """One short-axis volume of subject ``seed`` at cardiac ``phase`` (0 ED, 1 ES)."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    anat = _Anatomy.draw(rng, (ny * spacing[1], nx * spacing[2]))
    return _render(anat, seed, phase, shape, spacing, name or f"synthetic{seed:03d}", noise)


def _render(anat: _Anatomy, seed: int, phase: float, shape, spacing, name: str,
            noise: float) -> SyntheticCase:
    nz, ny, nx = shape
    yy, xx = _grid((ny, nx), spacing[1:])
    rng = np.random.default_rng([seed, int(phase * 1000)])
    image = np.zeros(shape, np.float32)
    truth = np.zeros(shape, np.uint8)
    scribble = np.full(shape, UNANNOTATED, np.uint8)
    by, bx = anat.body_radii
    cyb, cxb = ny * spacing[1] / 2, nx * spacing[2] / 2
    body = ((yy - cyb) / by) ** 2 + ((xx - cxb) / bx) ** 2 < 1.0
    lungs = body & (
        (((yy - cyb) / (by * 0.72)) ** 2 + ((xx - cxb + bx * 0.52) / (bx * 0.36)) ** 2 < 1.0)
        | (((yy - cyb - by * 0.05) / (by * 0.68)) ** 2 + ((xx - cxb - bx * 0.55) / (bx * 0.32)) ** 2 < 1.0))
    fat_ring = body & ~(((yy - cyb) / (by - 6)) ** 2 + ((xx - cxb) / (bx - 6)) ** 2 < 1.0)
    gy, gx, gphi = anat.bias
    bias = 1.0 + gy * (yy / yy.max() - 0.5) + gx * (xx / xx.max() - 0.5) \
        + 0.08 * np.sin(yy / yy.max() * 3 + gphi)
    inten = anat.intensities
    for z in range(nz):
        level = z / max(nz - 1, 1)
        lv, myo, rv, r_lv, wall = _slice_masks(anat, yy, xx, level, phase)
        heart = lv | myo | rv
        slice_img = np.where(body, inten["tissue"], 0.0)
        slice_img = np.where(lungs & ~_dilate_mm(heart, 8.0, spacing[1]), inten["lung"], slice_img)
        slice_img = np.where(fat_ring, inten["fat"], slice_img)
        pericardium = np.zeros_like(heart)
        pericardium |= _dilate_mm(heart, 3.0, spacing[1]) & ~heart
        slice_img = np.where(pericardium, inten["tissue"] * 0.8, slice_img)
        slice_img = np.where(lv | rv, inten["blood"], slice_img)
        slice_img = np.where(myo, inten["myo"], slice_img)
        slice_img = slice_img * bias
        # Rician-like magnitude noise
        re = slice_img + rng.normal(0, noise, slice_img.shape)
        im = rng.normal(0, noise, slice_img.shape)
        image[z] = np.sqrt(re ** 2 + im ** 2)
        truth[z][rv] = RV
        truth[z][myo] = MYO
        truth[z][lv] = LV
        scribble[z] = _example_scribble(anat, yy, xx, lv, myo, rv, r_lv, wall, body, spacing[1])
    image = (image * 600.0).astype(np.float32)
    affine = np.array([[-spacing[2], 0, 0, 120.0], [0, -spacing[1], 0, 110.0],
                       [0, 0, spacing[0], -40.0], [0, 0, 0, 1.0]])
    geometry = VolumeGeometry(tuple(shape), affine, tuple(float(s) for s in spacing))
    tags = {"dataset": "synthetic", "modality": "cine-mri", "subject": f"synthetic{seed:03d}",
            "frame": "ED" if phase == ED else ("ES" if phase == ES else f"{phase:.2f}")}
    return SyntheticCase(name, image, truth, scribble, geometry, tags)


def _dilate_mm(mask: np.ndarray, mm: float, pixel_mm: float) -> np.ndarray:
    from scipy import ndimage

    iterations = max(1, int(round(mm / pixel_mm)))
    return ndimage.binary_dilation(mask, iterations=iterations)


def _example_scribble(anat, yy, xx, lv, myo, rv, r_lv, wall, body, pixel_mm) -> np.ndarray:
    """Strokes like an annotator's: an LV centre line, the MYO mid-wall arc, the RV's
    medial axis (skeleton of the crescent), and background strokes around the heart, along
    the body wall and through the air outside the body."""
    from skimage.morphology import skeletonize

    half = pixel_mm * 0.75
    cy, cx = anat.centre
    dy, dx = yy - cy, xx - cx
    u = dy * np.cos(0.3) + dx * np.sin(0.3)
    v = -dy * np.sin(0.3) + dx * np.cos(0.3)
    rho = np.sqrt((u / 1.08) ** 2 + (v / 0.94) ** 2)
    theta = np.arctan2(dy, dx)
    out = np.full(lv.shape, UNANNOTATED, np.uint8)
    heart_zone = _dilate_mm(lv | myo | rv, 6.0, pixel_mm)
    lv_line = (np.abs(dy - 0.3 * dx) < half) & (rho < 0.75 * r_lv) & lv
    myo_arc = (np.abs(rho - (r_lv + wall / 2)) < half) & (np.abs(np.sin(theta - 0.7)) < 0.85) & myo
    rv_line = skeletonize(rv & ~_dilate_mm(~rv, 1.5, pixel_mm)) if rv.any() else rv
    rv_line = _dilate_mm(rv_line, pixel_mm, pixel_mm) & rv  # a 3-px brush along the axis
    near_arc = (np.abs(rho - (r_lv + wall + 25.0)) < half) & (np.cos(theta - anat.rv_angle) < 0.2)
    ny, nx = lv.shape
    row = np.zeros_like(lv)
    row[int(ny * 0.82), int(nx * 0.04):int(nx * 0.96)] = True  # a sweep across air, wall, lung
    column = np.zeros_like(lv)
    column[int(ny * 0.06):int(ny * 0.3), int(nx * 0.12)] = True  # the air in a corner
    bg = (near_arc | row | column) & ~heart_zone
    out[bg] = encode_class(BG)
    out[rv_line] = encode_class(RV)
    out[myo_arc] = encode_class(MYO)
    out[lv_line] = encode_class(LV)
    return out


def make_cardiac_cine(seed: int = 0, *, n_frames: int = 12, **kwargs):
    """A 4D cine series ``(T, Z, Y, X)`` over one heartbeat (ED at t = 0, ES near T/3).

    Returns ``(image_4d, truth_4d, geometry_4d)``.
    """
    phases = 0.5 - 0.5 * np.cos(2 * np.pi * np.clip(np.arange(n_frames) / (n_frames * 0.7), 0, 1))
    frames = [make_cardiac_volume(seed, phase=float(p), **kwargs) for p in phases]
    image = np.stack([f.image for f in frames])
    truth = np.stack([f.ground_truth for f in frames])
    g = frames[0].geometry
    geometry = VolumeGeometry((n_frames,) + g.shape, g.affine, (1.0,) + g.spacing)
    return image, truth, geometry


def make_cohort(n_subjects: int = 4, *, seed: int = 0, frames: tuple[float, ...] = (ED, ES),
                **kwargs) -> list[SyntheticCase]:
    """``n_subjects`` subjects × ``frames``, named ``synthNNN_frameFF`` (ED = frame01)."""
    cases = []
    for s in range(n_subjects):
        for phase in frames:
            frame_no = 1 if phase == ED else 10
            cases.append(make_cardiac_volume(seed * 1000 + s, phase=phase,
                                             name=f"synth{s:03d}_frame{frame_no:02d}", **kwargs))
    return cases


def write_cohort(folder: str | Path, cases: list[SyntheticCase]) -> Path:
    """Write cases in the ACDC layout of ``../shared/data/acdc``: ``images/``, ``labels/``
    and ``scribbles/`` (scribbles in the WSL4MIS convention, 4 = unannotated)."""
    from .io import write_labels, write_volume

    folder = Path(folder)
    for case in cases:
        write_volume(folder / "images" / f"{case.name}.nii.gz", case.image, case.geometry)
        write_labels(folder / "labels" / f"{case.name}.nii.gz", case.ground_truth, case.geometry)
        wsl = np.where(case.scribble == UNANNOTATED, 4, case.scribble.astype(np.int16) - 1)
        write_labels(folder / "scribbles" / f"{case.name}.nii.gz", wsl.astype(np.uint8),
                     case.geometry)
    return folder
