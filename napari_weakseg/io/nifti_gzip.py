"""A bounded gzip decompressor for ``.nii.gz`` files: it produces no more bytes than asked
(a header's claim is checked before its voxels are inflated) and verifies every gzip
member's CRC-32 and length, which nibabel's reader does not (a flipped bit would otherwise
become a silently wrong intensity).
"""

from __future__ import annotations

import zlib

from .nifti_header import Refused

READ_CHUNK = 1 << 20  # compressed bytes read from disk at a time
INFLATE_CHUNK = 16 << 20  # most decompressed bytes produced by one zlib call
GZIP_MAGIC = b"\x1f\x8b"


class GzipStream:
    """Decompress a gzip file (one or more members) on demand, never more than asked.

    zlib in gzip mode verifies each member's header, CRC-32 and length (ISIZE) when it
    reaches the member's end; zero padding after the last member is allowed (as
    :mod:`gzip` does), anything else after it is refused.
    """

    def __init__(self, fobj):
        self._file = fobj
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._file_done = False
        self._done = False

    def read_into(self, buffer: bytearray, count: int) -> int:
        """Append up to ``count`` decompressed bytes to ``buffer`` (fewer only at the end)."""
        need = count
        while need > 0 and not self._done:
            if self._inflate.eof:
                self._next_member()
                continue
            if not self._pending and not self._file_done:
                self._pending = self._file.read(READ_CHUNK)
                self._file_done = not self._pending
            piece = self._inflate.decompress(self._pending, min(need, INFLATE_CHUNK))
            # at a member's end the input left over is in unused_data (unconsumed_tail
            # may still hold a stale copy of it)
            self._pending = b"" if self._inflate.eof else self._inflate.unconsumed_tail
            if piece:
                buffer += piece
                need -= len(piece)
            elif self._file_done and not self._pending and not self._inflate.eof:
                raise Refused("is truncated or corrupt: the gzip stream ends early "
                              "(missing data or its CRC/length trailer)")
        return count - need

    def read(self, count: int) -> bytes:
        buffer = bytearray()
        self.read_into(buffer, count)
        return bytes(buffer)

    def _next_member(self) -> None:
        rest = self._inflate.unused_data
        while True:
            rest = rest.lstrip(b"\0")
            if rest or self._file_done:
                break
            rest = self._file.read(READ_CHUNK)
            self._file_done = not rest
        while 0 < len(rest) < 2 and not self._file_done:
            more = self._file.read(READ_CHUNK)
            self._file_done = not more
            rest += more
        if not rest:
            self._done = True
            return
        if rest[:2] != GZIP_MAGIC:
            raise Refused("is truncated or corrupt: unexpected bytes after the end of the "
                          "gzip stream")
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = rest


def zlib_problem(exc: zlib.error) -> str:
    text = str(exc)
    if "incorrect data check" in text:
        return ("is corrupt: gzip CRC-32 check failed (the decompressed bytes differ from "
                "what was written)")
    if "incorrect length check" in text:
        return "is corrupt: gzip length check (ISIZE) failed"
    if "incorrect header check" in text or "unknown compression method" in text:
        return f"is truncated or corrupt: damaged gzip header ({text})"
    return f"is truncated or corrupt: damaged gzip stream ({text})"
