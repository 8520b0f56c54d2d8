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
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..data import Columns
from ..errors import DataError
from .single import OneLabelTask

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


class FileTask(OneLabelTask):
    """What the one-label tasks whose examples are files share (an image, an audio clip): keys
    of their content (:class:`FileKeys`), ``train``'s and ``check``'s files read with every
    file probed before any work, and the preprocessor seen through the task's view (it is
    called with keys, as a tokenizer with texts).

    A subclass names what differs: :attr:`path_column` (the :class:`~headsurgeon.data.Columns`
    field of the paths), and the methods :meth:`load_preprocessor`, :meth:`read_examples`,
    :meth:`check_labels`, :meth:`probe`, :meth:`view_type` and :meth:`make_collator`.
    """

    #: the :class:`~headsurgeon.data.Columns` field naming the files' path column
    path_column: str

    def __init__(self) -> None:
        self._keys = FileKeys()

    # --- what a file task supplies ------------------------------------------------------
    def load_preprocessor(self, model_dir):
        """The image processor / feature extractor saved in ``model_dir`` (refused, saying
        how to add it, when there is none)."""
        raise NotImplementedError

    def read_examples(self, path, path_column: str, label_column: str) -> list:
        """The examples listed by ``path`` (a folder or a file of paths)."""
        raise NotImplementedError

    def check_labels(self, examples, known, **where) -> None:
        """Refuse examples whose labels are not ``known`` (the reader's own wording)."""
        raise NotImplementedError

    def probe(self, examples) -> None:
        """Refuse, naming it, the first file whose header cannot be read."""
        raise NotImplementedError

    def view_type(self) -> type:
        """The class of the preprocessor's view (called as ``view(preprocessor, keys)``)."""
        raise NotImplementedError

    def make_collator(self, view) -> Callable[[list[dict]], dict]:
        """The batches of training rows, through ``view``."""
        raise NotImplementedError

    # --- in-memory rows -----------------------------------------------------------------
    def input_column(self, columns) -> str:
        """The paths' column (``columns.image``, ``columns.audio``)."""
        return getattr(columns, self.path_column)

    @property
    def path_param(self) -> str:
        """The :class:`~headsurgeon.data.Columns` field naming the paths' column (``image``)."""
        return self.path_column

    def make_example(self, value, label: str, source: str, number: int, at: str):
        """The example of the file ``value`` (a path, or a dict with ``path`` as a
        ``datasets`` ``Image``/``Audio`` column without decoding gives).

        Raises:
            DataError: not a path, or no such file.
        """
        if isinstance(value, Mapping):
            value = value.get("path")
        if not isinstance(value, str | os.PathLike) or not str(value):
            raise DataError(
                f"{at}: expected the path of a file, found a {type(value).__name__} (a decoded "
                "datasets column: cast it with decode=False to keep the paths)"
            )
        path = Path(value)
        if not path.is_file():
            raise DataError(f"{at}: no such file: {path}")
        return self.example_type(path, label, source, number)

    # --- the Task methods they make -----------------------------------------------------
    def preprocessor(self, model_dir, trust_remote_code: bool = False):
        """The preprocessor saved in ``model_dir`` (:meth:`load_preprocessor`)."""
        return self.load_preprocessor(model_dir)

    def _reader(self, columns, probe: bool) -> Callable[[Any], list]:
        columns = Columns.of(columns)

        def read(path):
            examples = self.read_examples(path, getattr(columns, self.path_column), columns.label)
            if probe:
                self.probe(examples)
            return examples

        return read

    def read_data(self, files, labels, add, columns):
        """``(data, replay, holdout or None, labels to add)`` from ``files`` (a
        :class:`~headsurgeon.train.folders.DataFiles`: folders or files of paths; ``columns``:
        a :class:`~headsurgeon.data.Columns`), every file's header checked."""
        read_files = self._read_files(
            files, labels, add, self._reader(columns, probe=False), check=self.check_labels
        )
        data, replay, holdout, _ = read_files
        self.probe([*data, *replay, *(holdout or [])])
        return read_files

    def read_holdout(self, holdout, parent_labels, child_labels, columns) -> list:
        """``check``'s holdout files (a folder or a file of paths), once they hold only the two
        models' labels and some old one, and every file's header reads."""
        read = self._reader(columns, probe=True)
        return self._read_holdout(holdout, parent_labels, child_labels, read)

    def key(self, example) -> str:
        """A file's key: the sha256 of its bytes and its path (:func:`file_key`)."""
        return self._keys.key(example)

    def tokenizer(self, tokenizer):
        """The preprocessor as the batched passes use it (the task's view)."""
        view = self.view_type()
        return tokenizer if isinstance(tokenizer, view) else view(tokenizer, self._keys)

    def collator(self, tokenizer, max_length: int):
        """:meth:`make_collator` through the view (``max_length`` unused)."""
        return self.make_collator(self.tokenizer(tokenizer))
