"""optlab.data.idx: IDX round trips, the exact bytes of the format, and a DataError for every kind of bad file."""

from __future__ import annotations

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optlab.data.idx import read_idx, write_idx
from optlab.errors import DataError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
SHAPES = [(7,), (3, 5), (4, 28, 28), (2, 3, 4, 5), (0, 28, 28)]


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        return rng.normal(0, 1e3, size=shape).astype(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip(tmp_path, dtype, shape, suffix):
    array = sample(dtype, shape)
    path = write_idx(tmp_path / f"a-idx{len(shape)}-ubyte{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_header_and_data_bytes_are_the_documented_format(tmp_path):
    write_idx(tmp_path / "u8", np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert (tmp_path / "u8").read_bytes() == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])
    write_idx(tmp_path / "i16", np.array([1, -2], dtype="<i2"))  # little-endian in memory, big on disk
    assert (tmp_path / "i16").read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x00, 0x01, 0xFF, 0xFE])
    write_idx(tmp_path / "f64", np.array([1.5]))
    assert (tmp_path / "f64").read_bytes()[2] == 0x0E
    assert (tmp_path / "f64").read_bytes()[8:] == struct.pack(">d", 1.5)


def test_gzip_is_detected_by_its_magic_bytes_not_the_name(tmp_path):
    array = sample("int32", (3, 4))
    path = write_idx(tmp_path / "no-suffix", array, compress=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(path), array)


def test_write_gzip_is_reproducible(tmp_path):
    a = write_idx(tmp_path / "a.gz", sample("uint8", (5, 5))).read_bytes()
    b = write_idx(tmp_path / "b.gz", sample("uint8", (5, 5))).read_bytes()
    assert a == b  # no file name or time stamp in the gzip header


def test_write_rejects_what_idx_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        write_idx(tmp_path / "x", np.zeros((), dtype=np.uint8))


# ---------------------------------------------------------------- corrupt files: each a DataError naming the file

def header(type_byte: int, *dims: int) -> bytes:
    return bytes([0, 0, type_byte, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


VALID = header(0x08, 2, 3) + bytes(range(6))

CORRUPT = {
    "bad magic": (b"\x08\x03" + VALID[2:], "", "magic bytes 08 03"),
    "wrong type byte": (bytes([0, 0, 0x07, 2]) + VALID[4:], "", "unknown IDX type byte 0x07"),
    "empty file": (b"", "", "truncated header: 0 bytes"),
    "truncated first 4 bytes": (b"\x00\x00\x08", "", "truncated header: 3 bytes"),
    "truncated dimensions": (header(0x08, 2, 3)[:9], "", "2 dimensions need 12 header bytes, found 9"),
    "zero dimensions": (bytes([0, 0, 0x08, 0]), "", "0 dimensions"),
    "truncated data": (VALID[:-1], "", "only 5 follow the header"),
    "truncated int32 data": (header(0x0C, 2) + b"\x00" * 7, "", "2 int32 (8 data bytes) but only 7"),
    "trailing garbage": (VALID + b"junk", "", "4 bytes more follow"),
    "gz truncated data": (gz(VALID[:-2]), ".gz", "only 4 follow the header after decompression"),
    "gz trailing data": (gz(VALID + b"!"), ".gz", "more data follows after decompression"),
    "gz bad magic inside": (gz(b"PK\x03\x04" + VALID[4:]), ".gz", "magic bytes 50 4b (after decompression)"),
    "not gzip but named .gz": (VALID, ".gz", "named .gz but is not gzip"),
    "gzip stream cut short": (gz(VALID)[:-6], ".gz", "corrupt gzip data"),
    "gzip CRC wrong": (gz(VALID)[:-8] + b"\x00\x00\x00\x00" + gz(VALID)[-4:], ".gz", "corrupt gzip data"),
    "gzip deflate garbage": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 20, ".gz", "corrupt gzip data"),
    "gzip header only": (b"\x1f\x8b", "", "corrupt gzip data"),
}


@pytest.mark.parametrize("case", CORRUPT)
def test_corrupt_file_raises_data_error_naming_it(tmp_path, case):
    content, suffix, expected = CORRUPT[case]
    path = tmp_path / f"broken-idx-ubyte{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("compressed", [False, True])
def test_huge_claimed_dimensions_fail_fast_without_allocating(tmp_path, compressed):
    # 2**96 bytes claimed, 10 present: must be reported, not attempted.
    content = header(0x08, 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\x00" * 10
    path = tmp_path / ("huge.gz" if compressed else "huge")
    path.write_bytes(gz(content) if compressed else content)
    start = time.perf_counter()
    with pytest.raises(DataError, match="truncated: header claims 4294967295x4294967295x4294967295 uint8"):
        read_idx(path)
    assert time.perf_counter() - start < 0.5


def test_zero_sized_dimension_with_huge_others_is_an_empty_array(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(header(0x08, 0, 2**31))
    assert read_idx(path).shape == (0, 2**31)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.gz'}: file not found"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="is a folder"):
        read_idx(tmp_path)


# ---------------------------------------------------------------- fuzzing: parse or DataError, never anything else

FUZZ = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def parses_or_data_error(path: Path) -> None:
    start = time.perf_counter()
    try:
        array = read_idx(path)
    except DataError as e:
        assert str(path) in str(e)
    else:
        assert isinstance(array, np.ndarray)
    assert time.perf_counter() - start < 0.5


@FUZZ
@given(content=st.binary(max_size=200), suffix=st.sampled_from(["", ".gz"]))
def test_fuzz_random_bytes(tmp_path, content, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    parses_or_data_error(path)


@FUZZ
@given(
    compressed=st.booleans(),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
    extra=st.binary(max_size=8),
)
def test_fuzz_mutations_of_a_valid_file(tmp_path, compressed, edits, cut, extra):
    raw = header(0x0C, 3, 4) + np.arange(12, dtype=">i4").tobytes()
    content = bytearray(gz(raw) if compressed else raw)
    for position, value in edits:
        content[position % len(content)] = value
    if cut is not None:
        content = content[: cut % (len(content) + 1)]
    path = tmp_path / ("m.gz" if compressed else "m")
    path.write_bytes(bytes(content) + extra)
    parses_or_data_error(path)
