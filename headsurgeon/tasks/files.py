"""Cache keys of examples that are files (an image, an audio clip): their content and their path.

The feature and block-input caches of training are keyed by example (:meth:`Task.key
<headsurgeon.tasks.base.Task.key>`). A text's key is the text; a file's path alone would not
do: a file rewritten between two runs of a sweep, or two data sets reusing names
(``0001.png``), would get the features of another image. So a file's key is the sha256 of its
bytes and its path: ``"<sha256>:<path>"``. The path in the key lets a preprocessor view of the
task read the file back from the key alone (:func:`path_of`), as the token task's view splits
its keys back into words.

No torch, no Pillow, no soundfile.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import DataError

_CHUNK = 1 << 20


def file_key(path: str | Path, where: str | None = None) -> str:
    """The key of the file at ``path``: ``"<sha256 of its bytes>:<path>"``.

    Raises:
        DataError: the file cannot be read (naming ``where``, the row listing it, or the path).
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise DataError(f"{where or path}: cannot read {path}: {e.strerror or e}") from e
    return f"{digest.hexdigest()}:{path}"


def path_of(key: str) -> Path:
    """The file a :func:`file_key` key names."""
    return Path(key.partition(":")[2])


class FileKeys:
    """Keys of file examples (anything with ``path`` and ``where``), each file hashed once,
    and the example of each key (so that errors name the data file and line listing it)."""

    def __init__(self) -> None:
        self._by_path: dict[Path, str] = {}
        self._examples: dict[str, Any] = {}

    def key(self, example) -> str:
        """``example``'s key (:func:`file_key`; hashed once per path)."""
        key = self._by_path.get(example.path)
        if key is None:
            key = self._by_path[example.path] = file_key(example.path, example.where)
        self._examples.setdefault(key, example)
        return key

    def example(self, key: str, default):
        """The example ``key`` was made from, else ``default(path)`` (a key from elsewhere:
        a cache filled by another run)."""
        found = self._examples.get(key)
        return found if found is not None else default(path_of(key))
