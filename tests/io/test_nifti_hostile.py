"""Hostile and corrupt NIfTI files: refused cheaply, as VolumeError naming the file, and the
file (and its folder) left exactly as it was.

Each hostile file is built from a small valid image whose header fields are patched in
place, so a row states exactly what is wrong with it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import time
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_weakseg.errors import OptionError
from napari_weakseg.io import VolumeError, read_labels, read_volume
from napari_weakseg.io import nifti as nifti_module

# -- building blocks -------------------------------------------------------------------------


def valid_bytes(shape_xyz=(40, 40, 8), dtype=np.float32, version=1, affine=None) -> bytes:
    """A valid single-file NIfTI (uncompressed), voxel ``n`` holding ``n``."""
    data = np.arange(int(np.prod(shape_xyz))).reshape(shape_xyz).astype(dtype)
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    return klass(data, np.diag([1.5, 1.5, 8.0, 1.0]) if affine is None else affine).to_bytes()


def patch(raw: bytes, version=1, **fields) -> bytes:
    """``raw`` with header fields replaced (``dim=[...]``, ``datatype=32``, ...)."""
    template = nib.nifti1.header_dtype if version == 1 else nib.nifti2.header_dtype
    size = template.itemsize
    header = np.frombuffer(bytearray(raw[:size]), dtype=template)  # nibabel writes native
    for name, value in fields.items():
        header[name] = value
    return header.tobytes() + raw[size:]


def set_item(raw: bytes, field: str, index: int, value, version=1) -> bytes:
    template = nib.nifti1.header_dtype if version == 1 else nib.nifti2.header_dtype
    header = np.frombuffer(bytearray(raw[: template.itemsize]), dtype=template)
    header[field][0][index] = value
    return header.tobytes() + raw[template.itemsize:]


def gz(raw: bytes, **kwargs) -> bytes:
    return gzip.compress(raw, mtime=0, **kwargs)


def flip(blob: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(blob)
    out[index] ^= 1 << bit
    return bytes(out)


def folder_state(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (names included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _fifo(path: Path) -> None:
    os.mkfifo(path)


# -- the table: one row per hostile input ----------------------------------------------------

VALID = valid_bytes()
HEADER_ONLY_800 = patch(valid_bytes((2, 2, 2)), dim=[3, 800, 800, 800, 1, 1, 1, 1])[:352]

HOSTILE = [
    # id, file name, content (bytes, or a callable making the path), error class, message
    ("zero-dim-gz", "a.nii.gz", gz(patch(VALID, dim=[3, 40, 40, 0, 1, 1, 1, 1])),
     VolumeError, r"zero-size volume \(shape 40×40×0"),
    ("zero-dim-nii", "a.nii", patch(VALID, dim=[3, 0, 40, 40, 1, 1, 1, 1]),
     VolumeError, "zero-size volume"),
    ("negative-dim", "a.nii.gz", gz(patch(VALID, dim=[3, 40, -40, 8, 1, 1, 1, 1])),
     VolumeError, "negative dimension"),
    ("dim0-out-of-range", "a.nii", patch(VALID, dim=[9, 40, 40, 8, 1, 1, 1, 1]),
     VolumeError, r"dim\[0\] = 9"),
    ("dim0-zero", "a.nii.gz", gz(patch(VALID, dim=[0, 40, 40, 8, 1, 1, 1, 1])),
     VolumeError, r"dim\[0\] = 0"),
    # refused on its header alone: a 400 MB 2D claim in a header-only file is never read
    ("two-d-header-only", "a.nii.gz",
     gz(patch(valid_bytes((2, 2, 2), np.uint8), dim=[2, 20000, 20000, 1, 1, 1, 1, 1])[:352]),
     VolumeError, "is 2D with shape"),
    ("five-d", "a.nii.gz", gz(patch(VALID, dim=[5, 40, 40, 2, 2, 2, 1, 1])),
     VolumeError, "a 3D volume is required"),
    ("truncated-nii", "a.nii", VALID[: len(VALID) // 2],
     VolumeError, r"truncated or corrupt: the file holds \d+ bytes but its header claims"),
    ("truncated-gz", "a.nii.gz", gz(VALID)[: len(gz(VALID)) // 2],
     VolumeError, "truncated or corrupt"),
    ("gzip-header-only", "a.nii.gz", gz(VALID)[:10], VolumeError, "truncated or corrupt"),
    ("gz-without-trailer", "a.nii.gz", gz(VALID)[:-8], VolumeError, "ends early"),
    ("bomb-header-claims-800^3-float32", "a.nii.gz", gz(HEADER_ONLY_800),
     VolumeError, "decompresses to 352 bytes but its header claims 2048000352"),
    ("nii-claims-16GiB", "a.nii", patch(VALID, dim=[3, 2048, 2048, 1024, 1, 1, 1, 1]),
     VolumeError, "more than the limit of 2147483648 bytes"),
    ("nifti2-claims-2^62", "a.nii.gz",
     gz(patch(valid_bytes(version=2), version=2, dim=[3, 2**40, 2**20, 1, 1, 1, 1, 1])),
     VolumeError, "more than the limit"),
    ("gz-extra-member", "a.nii.gz", gz(VALID) + gz(b"x" * 100),
     VolumeError, "decompresses to more than the"),
    ("gz-trailing-garbage", "a.nii.gz", gz(VALID) + b"garbage!",
     VolumeError, "unexpected bytes after the end of the gzip stream"),
    ("gz-crc-bit-flip", "a.nii.gz", flip(gz(VALID), -8), VolumeError, "corrupt: gzip CRC-32"),
    ("gz-isize-bit-flip", "a.nii.gz", flip(gz(VALID), -4), VolumeError, "length check"),
    # stored (level 0) deflate: the flipped bit decodes "fine"; only the CRC catches it
    ("gz-stored-voxel-bit-flip", "a.nii.gz", flip(gz(VALID, compresslevel=0), 10 + 5 + 4000, 3),
     VolumeError, "corrupt: gzip CRC-32"),
    ("gz-deflate-byte-corrupt", "a.nii.gz", flip(gz(VALID), 200, 5),
     VolumeError, "corrupt"),
    ("complex64", "a.nii.gz", gz(patch(VALID, datatype=32, bitpix=64)),
     VolumeError, "complex64 voxels"),
    ("complex128", "a.nii", patch(VALID, datatype=1792, bitpix=128), VolumeError, "complex128"),
    ("rgb24", "a.nii.gz", gz(patch(VALID, datatype=128, bitpix=24)), VolumeError, "RGB24"),
    ("rgba32", "a.nii.gz", gz(patch(VALID, datatype=2304, bitpix=32)), VolumeError, "RGBA32"),
    ("binary", "a.nii", patch(VALID, datatype=1, bitpix=1), VolumeError, "1-bit binary"),
    ("unknown-datatype", "a.nii.gz", gz(patch(VALID, datatype=999)),
     VolumeError, "unknown NIfTI datatype code 999"),
    ("vox-offset-inside-header", "a.nii", patch(VALID, vox_offset=100.0),
     VolumeError, "vox_offset 100 points inside"),
    ("vox-offset-nan", "a.nii.gz", gz(patch(VALID, vox_offset=np.nan)),
     VolumeError, "vox_offset is nan"),
    ("vox-offset-huge", "a.nii.gz", gz(patch(VALID, vox_offset=3e9)),
     VolumeError, "byte header, more than the limit"),
    ("pixdim-nan", "a.nii.gz", gz(set_item(VALID, "pixdim", 2, np.nan)),
     VolumeError, r"pixdim\[2\] = nan"),
    ("pixdim-inf", "a.nii", set_item(VALID, "pixdim", 3, np.inf),
     VolumeError, r"pixdim\[3\] = inf"),
    ("sform-inf", "a.nii.gz", gz(set_item(VALID, "srow_x", 0, np.inf)),
     VolumeError, "affine is not finite"),
    ("sform-singular", "a.nii.gz",
     gz(patch(VALID, srow_x=[0, 0, 0, 1], srow_y=[0, 0, 0, 2], srow_z=[0, 0, 0, 3])),
     VolumeError, "affine is singular"),
    ("scl-inter-inf", "a.nii.gz", gz(patch(VALID, scl_slope=2.0, scl_inter=np.inf)),
     VolumeError, "not a readable NIfTI file \\(HeaderDataError"),
    ("nan-voxels", "a.nii.gz",
     gz(VALID[:352] + np.full(40 * 40 * 8, np.nan, np.float32).tobytes()),
     VolumeError, "12800 NaN/Inf intensities"),
    ("pair-magic", "a.nii", patch(VALID, magic=b"ni1"), VolumeError, ".hdr/.img pair"),
    ("bad-magic", "a.nii.gz", gz(patch(VALID, magic=b"abc")), VolumeError, "magic"),
    ("header-size-garbage", "a.nii", b"\x01\x02\x03\x04" + VALID[4:],
     VolumeError, "header size field"),
    ("ends-inside-header", "a.nii.gz", gz(VALID[:200]), VolumeError, "ends inside the 348-byte"),
    ("empty-nii", "a.nii", b"", VolumeError, "not a readable NIfTI file \\(the file is empty"),
    ("empty-gz", "a.nii.gz", b"", VolumeError, "not a readable NIfTI file \\(the file is empty"),
    ("tiny-nii", "a.nii", b"\x5c\x01", VolumeError, "only 2 bytes"),
    ("binary-not-gzip", "a.nii.gz", bytes(range(256)), VolumeError, "not gzip data"),
    ("text", "a.nii.gz", b"not an image\n" * 30, VolumeError, "not a readable NIfTI"),
    ("uncompressed-named-gz", "a.nii.gz", VALID, VolumeError, "rename it to .nii"),
    ("directory", "a.nii.gz", lambda path: path.mkdir(), VolumeError, "is a directory"),
    ("fifo", "a.nii", _fifo, VolumeError, "not a regular file"),
]


@pytest.mark.parametrize("name, content, error, message",
                         [row[1:] for row in HOSTILE], ids=[row[0] for row in HOSTILE])
def test_hostile_file_is_refused_and_left_untouched(tmp_path, name, content, error, message):
    path = tmp_path / name
    if callable(content):
        content(path)
    else:
        path.write_bytes(content)
    before = folder_state(tmp_path)
    started = time.perf_counter()
    with pytest.raises(error, match=message) as info:
        read_volume(path)
    assert time.perf_counter() - started < 5.0
    assert type(info.value) is VolumeError
    assert str(path) in str(info.value) and info.value.path == str(path)
    with pytest.raises(VolumeError):
        read_labels(path)
    assert folder_state(tmp_path) == before  # same names, same checksums: nothing changed


def test_header_claiming_2gb_in_a_tiny_gzip_is_refused_without_allocating(tmp_path):
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gz(HEADER_ONLY_800))
    assert path.stat().st_size < 120  # a few dozen bytes claiming 800³ float32 (2.05 GB)
    assert 800**3 * 4 < nifti_module.MAX_VOLUME_BYTES  # under the ceiling: the stream decides
    tracemalloc.start()
    try:
        with pytest.raises(VolumeError, match="truncated or corrupt"):
            read_volume(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak traced allocation {peak} bytes"


def test_ceiling_from_keyword_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "v.nii.gz"
    path.write_bytes(gz(VALID))  # 40×40×8 float32 = 51200 bytes of voxel data
    assert read_volume(path, max_bytes=51200).data.shape == (8, 40, 40)
    with pytest.raises(VolumeError, match="51200 bytes of voxel data .* limit of 51199"):
        read_volume(path, max_bytes=51199)
    env = nifti_module.MAX_VOLUME_BYTES_ENV
    monkeypatch.setenv(env, "50000")
    with pytest.raises(VolumeError, match=f"limit of 50000 bytes.*{env}"):
        read_volume(path)
    assert read_volume(path, max_bytes=10**6).data.shape == (8, 40, 40)  # keyword wins
    monkeypatch.setenv(env, "lots")
    with pytest.raises(OptionError, match=env):
        read_volume(path)
    monkeypatch.delenv(env)
    with pytest.raises(OptionError, match="positive"):
        read_volume(path, max_bytes=0)


@pytest.mark.parametrize("exc", [
    struct.error("unpack requires a buffer of 4 bytes"),
    nib.spatialimages.HeaderDataError("bad header"),
    MemoryError(),
    IndexError("index 7 is out of bounds"),
    OverflowError("cannot fit 'int'"),
    OSError(5, "Input/output error"),
], ids=lambda e: type(e).__name__)
def test_any_failure_inside_the_reader_becomes_a_volume_error(tmp_path, monkeypatch, exc):
    path = tmp_path / "v.nii.gz"
    path.write_bytes(gz(VALID))

    def explode(cls, *args, **kwargs):
        raise exc

    monkeypatch.setattr(nib.Nifti1Image, "from_bytes", classmethod(explode))
    with pytest.raises(VolumeError) as info:
        read_volume(path)
    assert type(info.value) is VolumeError and str(path) in str(info.value)


# -- what must keep working ------------------------------------------------------------------


def reference(raw: bytes, version=1) -> np.ndarray:
    """nibabel's own decode of uncompressed bytes, in memory order."""
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    return np.asanyarray(klass.from_bytes(raw).dataobj).T


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti2_reads(tmp_path, suffix):
    raw = valid_bytes((9, 7, 5), np.int16, version=2)
    path = tmp_path / f"v{suffix}"
    path.write_bytes(gz(raw) if suffix.endswith("gz") else raw)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, reference(raw, 2))
    assert volume.data.dtype == np.int16 and volume.geometry.spacing == (8.0, 1.5, 1.5)
    assert isinstance(volume.geometry.header, nib.Nifti2Header)


def test_scaled_image_matches_nibabel(tmp_path):
    raw = patch(valid_bytes((9, 7, 5), np.int16), scl_slope=0.5, scl_inter=-3.0)
    path = tmp_path / "scaled.nii.gz"
    path.write_bytes(gz(raw))
    volume = read_volume(path)
    expected = reference(raw)
    assert volume.data.dtype == expected.dtype and volume.data.dtype.kind == "f"
    np.testing.assert_array_equal(volume.data, expected)
    assert volume.data[1, 0, 0] == 0.5 * 1 - 3.0  # nifti[0, 0, 1] holds 1


def test_big_endian_file_reads(tmp_path):
    image = nib.Nifti1Image(np.arange(60, dtype=">i2").reshape(5, 4, 3), np.eye(4),
                            header=nib.Nifti1Header(endianness=">"))
    raw = image.to_bytes()
    assert raw[:4] == (348).to_bytes(4, "big")
    path = tmp_path / "be.nii"
    path.write_bytes(raw)
    np.testing.assert_array_equal(read_volume(path).data,
                                  np.arange(60).reshape(5, 4, 3).T)


def test_multi_member_gzip_zero_padding_and_extensions_read(tmp_path):
    image = nib.Nifti1Image(np.arange(300, dtype=np.int16).reshape(10, 6, 5), np.eye(4))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment, 26 bytes long."))
    raw = image.to_bytes()
    assert nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(raw))["vox_offset"] > 352
    path = tmp_path / "multi.nii.gz"
    path.write_bytes(gz(raw[:500]) + gz(raw[500:]) + b"\0" * 16)  # pigz/bgzip style
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, reference(raw))
    assert volume.geometry.header.extensions[0].get_content().startswith(b"a comment")


def test_trailing_singleton_axis_and_longer_uncompressed_file_read(tmp_path):
    raw = valid_bytes((6, 5, 4, 1), np.uint8)
    path = tmp_path / "v.nii"
    path.write_bytes(raw + b"junk after the data is ignored in a .nii")
    volume = read_volume(path)
    assert volume.data.shape == (4, 5, 6)
    np.testing.assert_array_equal(volume.data, reference(raw)[0])
    assert volume.data.flags.writeable and volume.data.flags.c_contiguous


def test_plugin_reader_gives_a_clean_error_and_none_for_other_files(tmp_path):
    from napari_weakseg.plugin import get_reader

    assert get_reader(str(tmp_path / "image.png")) is None
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gz(HEADER_ONLY_800))
    before = folder_state(tmp_path)
    reader = get_reader(str(path))
    assert reader is not None
    with pytest.raises(VolumeError, match="truncated or corrupt") as info:
        reader(str(path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert folder_state(tmp_path) == before
    good = tmp_path / "good.nii.gz"
    good.write_bytes(gz(VALID))
    [(data, kwargs, kind)] = reader(str(good))
    assert kind == "image" and data.shape == (8, 40, 40) and kwargs["scale"] == (8.0, 1.5, 1.5)
