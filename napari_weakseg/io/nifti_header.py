"""What a NIfTI file's fixed-size header claims, parsed and checked without trusting it:
the layout (NIfTI-1 or -2, byte order), magic, dimensions, voxel type and data offset, the
size it claims against a ceiling (:func:`max_volume_bytes`), and — once nibabel has read it —
a finite, non-singular affine and valid voxel sizes. Every refusal is a :class:`Refused`
that :func:`napari_weakseg.io.nifti.read_volume` turns into a ``VolumeError`` naming the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

MAX_VOLUME_BYTES = 2**31
"""Default ceiling on the voxel data a header may claim (bytes as stored on disk)."""
MAX_VOLUME_BYTES_ENV = "WEAKSEG_MAX_VOLUME_BYTES"
"""Environment variable that overrides :data:`MAX_VOLUME_BYTES` (an integer, in bytes)."""

# NIfTI datatype codes we can hand on as plain numeric arrays, and the ones we refuse by name.
SUPPORTED_DATATYPES = {2: "uint8", 4: "int16", 8: "int32", 16: "float32", 64: "float64",
                       256: "int8", 512: "uint16", 768: "uint32", 1024: "int64",
                       1280: "uint64"}
REFUSED_DATATYPES = {1: "1-bit binary", 32: "complex64", 128: "RGB24", 1536: "float128",
                     1792: "complex128", 2048: "complex256", 2304: "RGBA32"}


def max_volume_bytes(override: int | None = None) -> int:
    """The ceiling on claimed voxel data: ``override``, else ``$WEAKSEG_MAX_VOLUME_BYTES``,
    else :data:`MAX_VOLUME_BYTES`."""
    from ..errors import OptionError

    if override is not None:
        value, source = override, "max_bytes"
    else:
        raw = os.environ.get(MAX_VOLUME_BYTES_ENV, "").strip()
        if not raw:
            return MAX_VOLUME_BYTES
        source = MAX_VOLUME_BYTES_ENV
        try:
            value = int(float(raw)) if any(c in raw for c in ".eE") else int(raw)
        except (ValueError, OverflowError):
            raise OptionError(f"{MAX_VOLUME_BYTES_ENV}={raw!r} is not a number of bytes") \
                from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise OptionError(f"{source}={value!r}: the volume size ceiling must be a positive "
                          "number of bytes")
    return int(value)


class Refused(Exception):
    """Internal: the file is refused with ``problem`` (becomes a VolumeError)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class RawHeader:
    """What the fixed-size header claims, parsed without trusting it."""

    version: int  # 1 or 2
    sizeof_hdr: int  # 348 or 540
    shape: tuple[int, ...]  # NIfTI order (i, j, k[, t, ...])
    dtype: np.dtype  # with the header's byte order
    vox_offset: int
    data_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.vox_offset + self.data_bytes


def header_layout(first4: bytes) -> tuple[int, int, str]:
    """``(version, sizeof_hdr, byte order)`` from the header's first field."""
    if len(first4) < 4:
        raise Refused(f"not a readable NIfTI file (only {len(first4)} bytes)")
    for order, name in (("<", "little"), (">", "big")):
        value = int.from_bytes(first4, name)
        if value == 348:
            return 1, 348, order
        if value == 540:
            return 2, 540, order
    raise Refused("not a readable NIfTI file (header size field is "
                  f"{int.from_bytes(first4, 'little')}, expected 348 or 540)")


def parse_raw_header(block: bytes, version: int, order: str) -> RawHeader:
    import nibabel as nib

    template = nib.nifti1.header_dtype if version == 1 else nib.nifti2.header_dtype
    fields = np.frombuffer(block, dtype=template.newbyteorder(order), count=1)[0]
    sizeof_hdr = template.itemsize
    magic = bytes(fields["magic"]).rstrip(b"\0")
    expected = b"n+1" if version == 1 else b"n+2"
    if magic != expected:
        if magic == expected.replace(b"+", b"i"):
            raise Refused("is the header of a .hdr/.img pair, not a single-file NIfTI image")
        raise Refused(f"not a readable NIfTI file (magic {magic[:8]!r}, expected "
                      f"{expected!r})")
    dim = [int(d) for d in fields["dim"]]
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise Refused(f"has a corrupt header: dim[0] = {ndim} is not a number of "
                      "dimensions (1 to 7)")
    shape = tuple(dim[1: ndim + 1])
    shown = "×".join(str(d) for d in shape)
    if any(d < 0 for d in shape):
        raise Refused(f"has a corrupt header: negative dimension in shape {shown}")
    if any(d == 0 for d in shape):
        raise Refused(f"has a zero-size volume (shape {shown} in the header)")
    code = int(fields["datatype"])
    if code in REFUSED_DATATYPES:
        raise Refused(f"holds {REFUSED_DATATYPES[code]} voxels (NIfTI datatype {code}); "
                      "only real-valued integer or float volumes are supported")
    if code not in SUPPORTED_DATATYPES:
        raise Refused(f"has a corrupt header: unknown NIfTI datatype code {code}")
    dtype = np.dtype(SUPPORTED_DATATYPES[code]).newbyteorder(order)
    offset = float(fields["vox_offset"])
    if not math.isfinite(offset):
        raise Refused(f"has a corrupt header: vox_offset is {offset}")
    vox_offset = int(offset)
    if vox_offset < sizeof_hdr + 4:
        raise Refused(f"has a corrupt header: vox_offset {vox_offset} points inside the "
                      f"{sizeof_hdr + 4}-byte header")
    return RawHeader(version, sizeof_hdr, shape, dtype, vox_offset,
                     math.prod(shape) * dtype.itemsize)


def check_header(raw: RawHeader, limit: int, allow_4d: bool) -> tuple[int, ...]:
    """Refuse a claim over the ceiling or of the wrong dimensionality, before any voxel is
    read; return the shape without trailing singleton axes (e.g. X, Y, Z, 1)."""
    if raw.data_bytes > limit or raw.vox_offset > limit:
        shown = "×".join(str(d) for d in raw.shape)
        what = (f"{raw.data_bytes} bytes of voxel data (shape {shown}, {raw.dtype.name})"
                if raw.data_bytes > limit else f"a {raw.vox_offset}-byte header")
        raise Refused(f"claims {what}, more than the limit of {limit} bytes (raise it with "
                      f"{MAX_VOLUME_BYTES_ENV} or max_bytes=)")
    shape = raw.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3:
        raise Refused(f"is {len(shape)}D with shape {tuple(shape)}; a 3D volume "
                      "(or a 4D cine series) is required")
    if len(shape) > 4 or (len(shape) == 4 and not allow_4d):
        raise Refused(f"has shape {tuple(shape)}; a 3D volume is required here")
    return shape


def check_geometry(image, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
    affine = np.asarray(image.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise Refused("has a corrupt header: the voxel-to-world affine is not finite "
                      f"({np.array2string(affine, precision=4)})")
    det = float(np.linalg.det(affine[:3, :3]))
    if not math.isfinite(det) or det == 0.0:
        raise Refused("has a corrupt header: the voxel-to-world affine is singular")
    zooms = tuple(float(z) for z in image.header.get_zooms()[: len(shape)])
    for axis, zoom in enumerate(zooms):
        spatial = axis < 3
        if not math.isfinite(zoom) or zoom < 0 or (spatial and zoom == 0):
            raise Refused(f"has a corrupt header: pixdim[{axis + 1}] = {zoom} is not a "
                          f"valid {'voxel size' if spatial else 'time step'}")
    return affine, zooms
