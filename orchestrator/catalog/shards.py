"""The FineWeb token shard format used by the NanoGPT speedrun.

A shard is a 1024-byte header of 256 little-endian int32 (magic, version, token count,
then zeros) followed by the tokens as little-endian uint16.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.errors import DataFormatError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.dtype("<u2")


@dataclass(frozen=True)
class ShardHeader:
    magic: int
    version: int
    num_tokens: int


def write_shard(path: Path | str, tokens: npt.ArrayLike) -> None:
    """Write ``tokens`` as a shard; readers never see a half-written file."""
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 1 << 16):
        raise ValueError(f"tokens must lie in [0, 65536) to fit uint16, got range [{arr.min()}, {arr.max()}]")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, arr.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header.tobytes())
            f.write(arr.astype(TOKEN_DTYPE, copy=False).tobytes())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; sandboxes may read as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_shard_header(path: Path | str) -> ShardHeader:
    """Read and validate the header, including that the file size matches the count."""
    path = Path(path)
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise DataFormatError(
            f"shard {path}: truncated header ({size} bytes, expected at least {HEADER_BYTES})"
        )
    with path.open("rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype="<i4")
    magic, version, num_tokens = (int(x) for x in header[:3])
    if magic != SHARD_MAGIC:
        raise DataFormatError(f"shard {path}: bad magic {magic} (expected {SHARD_MAGIC})")
    if version != SHARD_VERSION:
        raise DataFormatError(f"shard {path}: unsupported version {version} (expected {SHARD_VERSION})")
    if num_tokens < 0:
        raise DataFormatError(f"shard {path}: negative token count {num_tokens}")
    expected = HEADER_BYTES + num_tokens * TOKEN_DTYPE.itemsize
    if size < expected:
        raise DataFormatError(
            f"shard {path}: truncated: header promises {num_tokens} tokens "
            f"({expected} bytes) but the file has {size} bytes"
        )
    if size > expected:
        raise DataFormatError(
            f"shard {path}: {size - expected} unexpected trailing bytes after {num_tokens} tokens"
        )
    return ShardHeader(magic=magic, version=version, num_tokens=num_tokens)


def read_shard(path: Path | str) -> npt.NDArray[np.uint16]:
    """Return the tokens of a validated shard, memory-mapped read-only."""
    header = read_shard_header(path)
    if header.num_tokens == 0:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(header.num_tokens,))
