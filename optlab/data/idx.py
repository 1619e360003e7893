"""Read and write IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

The format (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"), all integers big-endian:

    bytes 0-1   0x00 0x00                     magic
    byte  2     type code                     0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                              0x0D float32, 0x0E float64
    byte  3     ndim                          number of dimensions (1..255)
    then        ndim x uint32                 the size of each dimension
    then        prod(dims) x itemsize bytes   the data, C order, big-endian

So MNIST's train-images file starts 00 00 08 03 | 60000 | 28 | 28 and holds 47,040,000 pixel bytes.

Every problem with a file is a `DataError` naming the file and what is wrong with it; no numpy, gzip,
zlib or struct exception escapes `read_idx`. The size the header claims is checked against the data
actually present *before* anything that large is allocated, so a corrupt header claiming terabytes
costs nothing.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from optlab.errors import DataError

# type byte -> big-endian numpy dtype of the data
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
# Decompress in pieces of this size so that memory follows the data really present, never the header.
_CHUNK = 1 << 20


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or gzip, detected by its first bytes) into a native-endian array.

    The dtype comes from the type byte and the shape from the header. Raises `DataError`, naming the
    file, when it is missing, not IDX, truncated, longer than its header says, or a corrupt gzip stream.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
            f.seek(0)
            if path.name.endswith(".gz") and not compressed:
                raise DataError(f"{path}: named .gz but is not gzip-compressed (its first bytes are not 1f 8b)")
            return _read_gzip(path, f) if compressed else _read_raw(path, f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an IDX file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({_describe(e)})") from None


def _read_raw(path: Path, f: BinaryIO) -> np.ndarray:
    dtype, shape, header_len = _read_header(path, f)
    available = os.fstat(f.fileno()).st_size - header_len
    _check_size(path, dtype, shape, available)
    data = f.read(available)
    return _to_array(data, dtype, shape)


def _read_gzip(path: Path, raw: BinaryIO) -> np.ndarray:
    try:
        with gzip.GzipFile(fileobj=raw, mode="rb") as f:
            dtype, shape, _ = _read_header(path, f, compressed=True)
            wanted = _nbytes(dtype, shape)
            # Read one byte more than the header claims: finding it means trailing data. Asking for it
            # also drives the reader to the end of the gzip member, which is where the CRC is checked.
            data = bytearray()
            while len(data) <= wanted:
                piece = f.read(min(_CHUNK, wanted + 1 - len(data)))
                if not piece:
                    break
                data += piece
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile, a CRC or length mismatch, a stream that stops early: all land here.
        raise DataError(f"{path}: corrupt gzip data ({_describe(e)})") from None
    _check_size(path, dtype, shape, len(data), compressed=True)
    return _to_array(data, dtype, shape)


def _read_header(path: Path, f: BinaryIO, compressed: bool = False) -> tuple[np.dtype, tuple[int, ...], int]:
    """Parse magic, type and dimensions; return (big-endian dtype, shape, header length in bytes)."""
    where = " (after decompression)" if compressed else ""
    head = _read_exactly(f, 4)
    if len(head) < 4:
        raise DataError(f"{path}: truncated header: {len(head)} bytes{where}, an IDX header needs at least 4")
    if head[:2] != b"\x00\x00":
        raise DataError(
            f"{path}: not an IDX file: magic bytes {head[:2].hex(' ')}{where}, expected 00 00 "
            "followed by a type byte and a dimension count"
        )
    type_byte, ndim = head[2], head[3]
    if type_byte not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X} {dt.name}" for code, dt in IDX_TYPES.items())
        raise DataError(f"{path}: unknown IDX type byte 0x{type_byte:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    dims = _read_exactly(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(
            f"{path}: truncated header: {ndim} dimensions need {4 + 4 * ndim} header bytes, "
            f"found {4 + len(dims)}{where}"
        )
    shape = struct.unpack(f">{ndim}I", dims)
    return IDX_TYPES[type_byte], shape, 4 + 4 * ndim


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """Read n bytes, or fewer only at end of file (a gzip stream may return short reads)."""
    out = b""
    while len(out) < n:
        piece = f.read(n - len(out))
        if not piece:
            break
        out += piece
    return out


def _nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=object)) * dtype.itemsize  # object: exact, no int64 overflow


def _check_size(path: Path, dtype: np.dtype, shape: tuple[int, ...], available: int, compressed: bool = False) -> None:
    wanted = _nbytes(dtype, shape)
    if available == wanted:
        return
    dims = "x".join(map(str, shape))
    claim = f"header claims {dims} {dtype.name} ({wanted:,} data bytes)"
    where = " after decompression" if compressed else ""
    if available < wanted:
        raise DataError(f"{path}: truncated: {claim} but only {available:,} follow the header{where}")
    extra = "more data follows" if compressed else f"{available - wanted:,} bytes more follow"
    raise DataError(f"{path}: size mismatch: {claim} but {extra}{where} (trailing data)")


def _to_array(data: bytes | bytearray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if not data:  # a dimension of 0; frombuffer refuses an empty buffer on some numpy versions
        return np.zeros(shape, dtype.newbyteorder("="))
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if dtype.itemsize == 1:
        return array.view(dtype.newbyteorder("="))  # no copy; bytearray data stays writable
    return array.astype(dtype.newbyteorder("="))


def _describe(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file; gzip it when `compress`, or by default when the name ends in .gz.

    The dtype must be one the format knows (uint8, int8, int16, int32, float32, float64) and every
    dimension below 2**32. The gzip header carries no name or time, so equal arrays give equal files.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot hold dtype {array.dtype} (use one of {', '.join(d.name for d in codes)})")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX cannot hold shape {array.shape}: 1..255 dimensions, each below 2**32")
    header = bytes([0, 0, codes[native], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if path.name.endswith(".gz") if compress is None else compress:
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as g:
            g.write(payload)
        payload = buffer.getvalue()
    path.write_bytes(payload)
    return path
