from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.catalog.shards import (
    HEADER_INTS,
    SHARD_MAGIC,
    SHARD_VERSION,
    ShardHeader,
    read_shard,
    read_shard_header,
    write_shard,
)
from orchestrator.errors import DataFormatError


def _raw_shard(path: Path, header: list[int], tokens: bytes) -> Path:
    ints = np.zeros(HEADER_INTS, dtype="<i4")
    ints[: len(header)] = header
    path.write_bytes(ints.tobytes() + tokens)
    return path


def test_round_trip_preserves_tokens_and_header(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 2, 65535, 50256, 7], dtype=np.int64)
    path = tmp_path / "train_000000.bin"
    write_shard(path, tokens)

    assert read_shard_header(path) == ShardHeader(SHARD_MAGIC, SHARD_VERSION, tokens.size)
    out = read_shard(path)
    assert out.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(out, tokens)


def test_layout_is_the_fineweb_format(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, [3, 258])
    raw = path.read_bytes()
    header = np.frombuffer(raw[: HEADER_INTS * 4], dtype="<i4")
    assert header[:3].tolist() == [20240520, 1, 2]
    assert not header[3:].any()
    assert raw[HEADER_INTS * 4 :] == bytes([3, 0, 2, 1])  # little-endian uint16


def test_empty_shard_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    write_shard(path, np.zeros(0, dtype=np.uint16))
    assert read_shard(path).size == 0


def test_write_leaves_no_temp_files(tmp_path: Path) -> None:
    write_shard(tmp_path / "a.bin", [1, 2, 3])
    write_shard(tmp_path / "a.bin", [4])  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    assert read_shard(tmp_path / "a.bin").tolist() == [4]


def test_written_shards_are_world_readable(tmp_path: Path) -> None:
    write_shard(tmp_path / "a.bin", [1])
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("bad", [[65536], [-1], [1, 2, 70000]])
def test_write_refuses_tokens_outside_uint16(tmp_path: Path, bad: list[int]) -> None:
    path = tmp_path / "bad.bin"
    with pytest.raises(ValueError, match="65536"):
        write_shard(path, bad)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_non_integer_tokens(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="integers"):
        write_shard(tmp_path / "f.bin", np.array([1.5, 2.0]))


def test_bad_magic(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "m.bin", [1234, 1, 0], b"")
    with pytest.raises(DataFormatError, match=r"m\.bin.*bad magic 1234"):
        read_shard(path)


def test_bad_version(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "v.bin", [SHARD_MAGIC, 7, 0], b"")
    with pytest.raises(DataFormatError, match=r"v\.bin.*unsupported version 7"):
        read_shard_header(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "h.bin"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(DataFormatError, match=r"h\.bin.*truncated header"):
        read_shard(path)


def test_truncated_tokens(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    write_shard(path, np.arange(10))
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DataFormatError, match=r"t\.bin.*truncated.*10 tokens"):
        read_shard(path)


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    write_shard(path, np.arange(10))
    path.write_bytes(path.read_bytes() + b"\x01\x00")
    with pytest.raises(DataFormatError, match=r"x\.bin.*2 unexpected trailing bytes"):
        read_shard(path)


def test_negative_token_count(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "n.bin", [SHARD_MAGIC, SHARD_VERSION, -5], b"")
    with pytest.raises(DataFormatError, match="negative token count"):
        read_shard(path)
