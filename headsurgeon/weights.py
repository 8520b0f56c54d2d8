"""The weight files of a model folder: their names, and a validation of their headers.

Which files hold weights (:data:`WEIGHT_PATTERNS`: safetensors, single or sharded by an index,
and the pickle files), :func:`read_weights` (the safetensors headers, checked, no tensor data),
:func:`check_weights` and :func:`require_weights` (refuse corrupt or missing weights before a
loader or an edit reads them). Below :mod:`.models` (loading), :mod:`.shards` (the streamed
head) and :mod:`.checkpoint` (surgery on disk); no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .safetensors_io import SafetensorsHeader, read_header

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
WEIGHT_PATTERNS = (
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*.bin",
    "pytorch_model.bin.index.json",
)
PICKLE_PATTERNS = WEIGHT_PATTERNS[3:]


def read_weights(
    folder: str | os.PathLike,
) -> tuple[dict[str, SafetensorsHeader], dict[str, Any] | None] | None:
    """Read and validate the safetensors headers of a model folder (no tensor data).

    ``model.safetensors`` if present (as transformers prefers it), else the shards named by
    ``model.safetensors.index.json``; every header is checked (:func:`read_header`) and the index
    must agree with its shards.

    Returns:
        ``(headers by file name, parsed index or None)``, or ``None`` when the folder has no
        safetensors weights (pickle or nothing: the caller decides).

    Raises:
        CheckpointError: a corrupt, truncated or missing file, naming it and what is wrong.
    """
    folder = Path(folder)
    if (folder / SAFE_SINGLE).is_file():
        headers = {SAFE_SINGLE: read_header(folder / SAFE_SINGLE)}
        _check_not_empty(headers)
        return headers, None
    if not (folder / SAFE_INDEX).is_file():
        return None
    index = _read_index(folder / SAFE_INDEX)
    headers = {
        name: read_header(folder / name) for name in sorted(set(index["weight_map"].values()))
    }
    for tensor, shard in index["weight_map"].items():
        if tensor not in headers[shard].tensors:
            raise CheckpointError(
                f"{SAFE_INDEX} says {_short(tensor)} is in {shard}, but {shard} has no such "
                "tensor: the index and the shards disagree; re-download or re-save the model"
            )
    for shard, header in headers.items():
        unlisted = next((t for t in header.tensors if index["weight_map"].get(t) != shard), None)
        if unlisted is not None:  # a loader would skip it, or take it from another shard
            raise CheckpointError(
                f"{shard} holds {_short(unlisted)}, which {SAFE_INDEX} does not place there: "
                "the index and the shards disagree; re-download or re-save the model"
            )
    _check_not_empty(headers)
    return headers, index


def check_weights(folder: str | os.PathLike) -> None:
    """Refuse a folder whose safetensors weights are corrupt, before a loader reads them.

    A one-line :class:`CheckpointError` naming the file beats the loaders' own errors
    (``SafetensorError: ... incomplete metadata``). Pickle-only folders are left to the loader.

    Raises:
        CheckpointError: see :func:`read_weights`.
    """
    read_weights(folder)


def require_weights(folder: str | os.PathLike) -> list[str]:
    """Refuse a folder with corrupt safetensors weights or no weights at all, before any edit.

    Returns:
        the pickle weight files when the folder has no safetensors (``[]`` otherwise).

    Raises:
        CheckpointError: see :func:`read_weights`; or no weight file at all.
    """
    folder = Path(folder)
    if read_weights(folder) is not None:
        return []
    pickles = sorted(p.name for pat in PICKLE_PATTERNS for p in folder.glob(pat))
    if not pickles:
        raise CheckpointError(
            f"{folder} has no model.safetensors, model.safetensors.index.json or "
            "pytorch_model.bin: no weights to edit; point MODEL at a saved model folder"
        )
    return pickles


def _check_not_empty(headers: dict[str, SafetensorsHeader]) -> None:
    if not any(h.tensors for h in headers.values()):
        path = next(iter(headers.values())).path
        raise CheckpointError(f"{path} holds no tensors: re-download or re-save the model")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"{path} is not valid JSON ({first}); re-download or re-save the model"
        ) from e
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise CheckpointError(f"{path} has no 'weight_map' object: it is not a safetensors index")
    meta = index.get("metadata", {})
    total = meta.get("total_size", 0) if isinstance(meta, dict) else None
    if isinstance(total, bool) or not isinstance(total, int):
        raise CheckpointError(
            f"{path} has a 'metadata' that is not an object with an integer 'total_size' "
            f"({_short(meta)}): re-download or re-save the model"
        )
    if not index["weight_map"]:
        raise CheckpointError(f"{path} has an empty 'weight_map': re-download or re-save the model")
    for shard in index["weight_map"].values():
        if not isinstance(shard, str) or not _plain_file_name(shard):
            raise CheckpointError(
                f"{path} names an invalid shard {_short(shard)}: expected a file name in "
                f"{path.parent}"
            )
    for shard in sorted(set(index["weight_map"].values())):
        if not (path.parent / shard).is_file():
            raise CheckpointError(
                f"{path.name} names the shard {shard}, which is missing from {path.parent}: "
                "the checkpoint is incomplete; download it again"
            )
    return index


def _plain_file_name(name: str) -> bool:
    """A file name in the folder itself: no separators, no ``..``, no NUL, printable."""
    return (
        name not in ("", ".", "..") and not any(c in name for c in "/\\\x00") and name.isprintable()
    )
