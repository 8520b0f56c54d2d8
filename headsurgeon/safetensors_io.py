"""Read safetensors headers and tensors lazily; write a safetensors file by streaming byte ranges.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, offsets
relative to the end of the header), then the tensor bytes. Nothing here imports torch or numpy:
tensors are bytes. Untouched tensors are copied from file to file by the kernel
(``os.copy_file_range``), so rewriting a shard costs no memory beyond the tensors that change.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError

logger = logging.getLogger(__name__)

#: safetensors dtype → bytes per element
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E4M3FNUZ": 1,
    "F8_E5M2FNUZ": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
#: dtype → bits per element, including the sub-byte ones (their tensors fill whole bytes)
DTYPE_BITS = {**{k: 8 * v for k, v in DTYPE_SIZES.items()}, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
#: a header larger than this is corrupt (safetensors itself refuses headers over 100 MB)
MAX_HEADER_BYTES = 100_000_000
_COPY_CHUNK = 1 << 30


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in a safetensors header; ``begin``/``end`` are absolute file offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed, validated header of one safetensors file."""

    path: Path
    tensors: dict[str, TensorInfo]  # in data order
    metadata: dict[str, str] | None
    data_start: int

    def read(self, name: str) -> bytes:
        """Return the raw bytes of tensor ``name`` (reads only that range of the file)."""
        info = self.tensors[name]
        with open(self.path, "rb") as fh:
            raw = os.pread(fh.fileno(), info.nbytes, info.begin)
        if len(raw) != info.nbytes:
            raise CheckpointError(f"{self.path} is truncated inside tensor {name!r}")
        return raw


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Parse and validate the header of the safetensors file at ``path``.

    Checks that tensors tile the data area exactly and that the file is as long as the header
    says, so a truncated or corrupt shard is refused before anything is written.

    Raises:
        CheckpointError: missing file, corrupt header, or a size that does not match it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path} is truncated: {size} bytes, not a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER_BYTES or 8 + length > size:
                raise CheckpointError(
                    f"{path} has a corrupt or truncated header (length field {length}, file "
                    f"{size} bytes): re-download or re-save this file"
                )
            text = fh.read(length)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete") from e
    except OSError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"cannot read {path}: {e}") from e
    try:
        raw = json.loads(text.decode("utf-8"))
        if not isinstance(raw, dict):
            raise ValueError(f"a {type(raw).__name__}, expected an object")
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(
            f"{path} has a corrupt header (not JSON: {_first_line(e)}); "
            "re-download or re-save this file"
        ) from e
    return _validated(path, raw, 8 + length, size)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _validated(path: Path, raw: dict, data_start: int, size: int) -> SafetensorsHeader:
    metadata = raw.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise CheckpointError(
            f"{path} has a corrupt header: __metadata__ must map names to strings; re-save this file"
        )
    tensors = [_tensor(path, name, entry, data_start) for name, entry in raw.items()]
    tensors.sort(key=lambda t: (t.begin, t.end))
    cursor = data_start
    for t in tensors:
        if t.begin != cursor:
            raise CheckpointError(
                f"{path} has a corrupt header: tensor {_short(t.name)} starts at byte {t.begin}, "
                f"expected {cursor} (gap or overlap); re-save this file"
            )
        cursor = t.end
    if cursor != size:
        raise CheckpointError(
            f"{path} is {'truncated' if size < cursor else 'corrupt'}: the header promises "
            f"{cursor} bytes, the file has {size}; re-download or re-save this file"
        )
    return SafetensorsHeader(path, {t.name: t for t in tensors}, metadata, data_start)


def _tensor(path: Path, name: str, entry: Any, data_start: int) -> TensorInfo:
    """One header entry, checked: a known dtype, a shape of naturals, offsets of its byte size."""
    problem = _entry_problem(entry)
    if problem:
        raise CheckpointError(
            f"{path} has a corrupt header entry for tensor {_short(name)}: {problem}; "
            "re-download or re-save this file"
        )
    begin, end = entry["data_offsets"]
    return TensorInfo(
        name, entry["dtype"], tuple(entry["shape"]), data_start + begin, data_start + end
    )


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with a header entry, or ``None``."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, expected an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        return f"unknown dtype {_short(dtype)} (expected one of {', '.join(DTYPE_BITS)})"
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        return f"shape {_short(shape)} is not a list of non-negative integers"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))):
        return f"data_offsets {_short(offsets)} is not a pair of non-negative integers"
    span = offsets[1] - offsets[0]
    bits = _bits(shape, DTYPE_BITS[dtype], limit=8 * max(span, 0))
    if bits != 8 * span:
        takes = "more" if bits is None else f"{bits // 8}" if bits % 8 == 0 else f"{bits / 8:g}"
        return (
            f"data_offsets {_short(offsets)} span {span} bytes, but a {dtype} tensor of shape "
            f"{_short(shape)} takes {takes}"
        )
    return None


def _bits(shape: list[int], bits: int, limit: int) -> int | None:
    """Size of a tensor in bits, or ``None`` once it exceeds ``limit`` (a hostile shape)."""
    if 0 in shape:
        return 0
    for d in shape:
        bits *= d
        if bits > limit:
            return None
    return bits


def _natural(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class Entry:
    """A tensor to write: its bytes, or (when ``data`` is ``None``) a copy of ``source``'s range."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: bytes | None = None
    source: TensorInfo | None = None

    @property
    def nbytes(self) -> int:
        return len(self.data) if self.data is not None else self.source.nbytes


def header_bytes(entries: Iterable[Entry], metadata: dict[str, Any] | None) -> bytes:
    """Serialise a header for ``entries`` in order: length prefix + JSON padded to 8 bytes."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for e in entries:
        header[e.name] = {
            "dtype": e.dtype,
            "shape": list(e.shape),
            "data_offsets": [offset, offset + e.nbytes],
        }
        offset += e.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_file(
    path: Path, entries: list[Entry], metadata: dict[str, Any] | None, source: Path
) -> None:
    """Write a new safetensors file at ``path`` (which must not exist; the caller syncs it).

    Tensors with ``data`` are written from memory; the others are copied from the file
    ``source`` by the kernel, adjacent ranges in one call.
    """
    with open(path, "xb") as out, open(source, "rb") as src:
        out.write(header_bytes(entries, metadata))
        out.flush()
        run: list[int] = []  # [begin, end] of the pending range of ``source``
        for e in entries:
            if e.data is None and run and run[1] == e.source.begin:
                run[1] = e.source.end
                continue
            if run:
                copy_range(src.fileno(), out.fileno(), run[0], run[1] - run[0])
                run = []
            if e.data is None:
                run = [e.source.begin, e.source.end]
            else:
                out.write(e.data)
                out.flush()
        if run:
            copy_range(src.fileno(), out.fileno(), run[0], run[1] - run[0])


def copy_range(src_fd: int, dst_fd: int, offset: int, count: int) -> None:
    """Append ``count`` bytes of ``src_fd`` from ``offset`` to ``dst_fd`` without user-space buffers."""
    os.lseek(dst_fd, 0, os.SEEK_END)
    while count > 0:
        try:
            done = os.copy_file_range(src_fd, dst_fd, min(count, _COPY_CHUNK), offset)
        except (AttributeError, OSError):  # not Linux, or a filesystem pair it does not support
            done = _copy_slow(src_fd, dst_fd, offset, count)
        if done <= 0:
            raise CheckpointError(f"unexpected end of file while copying {count} bytes")
        offset += done
        count -= done


def _copy_slow(src_fd: int, dst_fd: int, offset: int, count: int) -> int:
    chunk = os.pread(src_fd, min(count, 64 << 20), offset)
    os.write(dst_fd, chunk)
    return len(chunk)


def copy_file(src: Path, dst: Path) -> None:
    """Copy a whole file at kernel speed (``copy_file_range``; a reflink where the filesystem can).

    Like ``cp``, the copy is not forced to disk: the source stays intact, so a power cut can
    cost the copy but not the model.
    """
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        copy_range(fin.fileno(), fout.fileno(), 0, os.fstat(fin.fileno()).st_size)
    shutil.copystat(src, dst)
