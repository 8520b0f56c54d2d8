"""Data in any usual form, as the Python API takes it: the generic half of reading examples.

Every API function that takes examples (:func:`~headsurgeon.train.train_model`,
:func:`~headsurgeon.train.train`, :func:`~headsurgeon.check_old_labels`) accepts:

- the model's task's own examples (:class:`~headsurgeon.data.Example`,
  :class:`~headsurgeon.tasks.multilabel.data.LabelledText`,
  :class:`~headsurgeon.tasks.token.data.Sentence`, an image's or a clip's example);
- tuples in the order of the task's columns: ``(text, label)``, ``(text, [labels])``,
  ``(tokens, tags)``, ``(path, label)``;
- dicts with the task's columns (``text``/``label`` by default, chosen with ``text_column``,
  ``label_column``... as the CLI's ``--text-column``/``--label-column``), or a dict of columns;
- a pandas ``DataFrame`` or a ``datasets.Dataset`` (``ClassLabel`` ids are read as their names);
- a data file's path, read as the CLI reads it; a ``.parquet`` file (pandas) or a folder a
  ``datasets.Dataset`` was saved to with ``save_to_disk`` (datasets) is read as a table
  (:func:`is_table`), the CLI's ``--data``/``--replay``/``--holdout`` too.

This module turns such an object into rows (dicts or tuples of plain Python values) and hands
them to the task (:meth:`Task.examples <headsurgeon.tasks.base.Task.examples>`), which knows
what an example is: the generic code never names a task. pandas and datasets are optional:
they are never imported here (an object is recognised by its type's module).

No torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from .data import Columns
from .errors import DataError

#: what the API's ``data``, ``replay`` and ``holdout`` take (see the module docstring)
Data = Union[Iterable[Any], Mapping[str, Sequence[Any]], str, "os.PathLike[str]"]


@dataclass
class _OneFile:
    """One data file as a task's ``read_data`` reads ``train``'s files (the data's role)."""

    data: Any
    replay: Any = None
    holdout: Any = None

    def given(self) -> list[tuple[str, Any]]:
        return [("--data", self.data)]


def is_path(obj: Any) -> bool:
    """Whether ``obj`` names a file or folder (rather than holding examples)."""
    return isinstance(obj, str | os.PathLike)


def is_table(obj: Any) -> bool:
    """Whether ``obj`` names a table read through an optional library: a ``.parquet`` file, or
    a folder ``datasets``' ``save_to_disk`` wrote (``dataset_info.json`` or ``state.json``)."""
    if not is_path(obj):
        return False
    path = Path(obj)
    if path.suffix.lower() == ".parquet":
        return True
    return path.is_dir() and any((path / n).is_file() for n in ("dataset_info.json", "state.json"))


def read_table(path: Any, role: str = "data") -> Any:
    """The DataFrame of a ``.parquet`` file, or the ``datasets.Dataset`` saved in a folder.

    Raises:
        DataError: the library is not installed, or the file cannot be read.
    """
    parquet = Path(path).suffix.lower() == ".parquet"
    library = "pandas" if parquet else "datasets"
    try:
        module = __import__(library)
    except ImportError as e:
        raise DataError(
            f'{role} {path}: reading it needs {library} (pip install "headsurgeon[data]")'
        ) from e
    try:
        return module.read_parquet(path) if parquet else module.load_from_disk(str(path))
    except Exception as e:  # the libraries' own errors (pyarrow's, FileNotFoundError...)
        raise DataError(f"{role} {path}: cannot read it ({type(e).__name__}: {e})") from e


def as_examples(
    task: Any,
    obj: Any,
    labels: Sequence[str] | None = None,
    columns: Columns | None = None,
    role: str = "data",
) -> list[Any]:
    """``obj`` (any form of the module docstring) as ``task``'s examples.

    Args:
        task: the model's :class:`~headsurgeon.tasks.base.Task`.
        obj: the examples, rows, a DataFrame, a ``datasets.Dataset``, or a file's path.
        labels: the model's labels (a token classifier's tags are written in its scheme);
            ``None``: as given.
        columns: the columns of dict rows and files (:class:`~headsurgeon.data.Columns`).
        role: the parameter's name, for messages (``data``, ``replay``, ``holdout``).

    Raises:
        DataError: an unknown form, or a bad row (named by its number).
    """
    columns = Columns.of(columns)
    if is_table(obj):
        obj = read_table(obj, role)
    if is_path(obj):
        if role == "holdout" and labels is not None:
            return task.read_holdout(obj, list(labels), list(labels), columns)
        return task.read_data(_OneFile(obj), list(labels or []), True, columns)[0]
    return task.examples(rows_of(obj, role), columns, labels, role)


def rows_of(obj: Any, role: str = "data") -> list[Any]:
    """The rows of ``obj``: a DataFrame's or a ``datasets.Dataset``'s as dicts of plain values,
    a dict of columns as dicts, any other iterable as it is.

    Raises:
        DataError: a ``DatasetDict`` (no split chosen) or an object that is not iterable.
    """
    library = type(obj).__module__.partition(".")[0]
    if library == "pandas" and hasattr(obj, "to_dict"):
        if not hasattr(obj, "columns"):
            raise DataError(f"{role}: a pandas Series holds one column; give the DataFrame")
        return [_plain_row(r) for r in obj.to_dict("records")]
    if library == "datasets":
        return _dataset_rows(obj, role)
    if isinstance(obj, Mapping):
        return _column_rows(obj, role)
    if isinstance(obj, bytes) or not isinstance(obj, Iterable):
        raise DataError(
            f"{role}: expected examples (tuples, dicts, the task's examples), a DataFrame, a "
            f"datasets.Dataset or a file's path, found a {type(obj).__name__}"
        )
    return list(obj)


def _dataset_rows(dataset: Any, role: str) -> list[dict[str, Any]]:
    """A ``datasets.Dataset``'s rows, ``ClassLabel`` ids (and lists of them) as names."""
    if not hasattr(dataset, "features") or isinstance(dataset, Mapping):
        splits = ", ".join(repr(k) for k in dataset) if isinstance(dataset, Mapping) else ""
        raise DataError(
            f"{role}: a {type(dataset).__name__} holds several splits ({splits}); pass one, "
            f"e.g. {role}=dataset['train']"
        )
    names = {}
    for column, feature in (dataset.features or {}).items():
        inner = getattr(feature, "feature", None)  # Sequence(ClassLabel) / List(ClassLabel)
        found = getattr(feature, "names", None) or getattr(inner, "names", None)
        if found:
            names[column] = list(found)
    return [_named(_plain_row(row), names) for row in dataset]


def _named(row: dict[str, Any], names: dict[str, list[str]]) -> dict[str, Any]:
    for column, table in names.items():
        value = row.get(column)
        if isinstance(value, int) and 0 <= value < len(table):
            row[column] = table[value]
        elif isinstance(value, list):
            row[column] = [table[v] if isinstance(v, int) and 0 <= v < len(table) else v
                           for v in value]  # fmt: skip
    return row


def _column_rows(columns: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    """``{"text": [...], "label": [...]}`` as one dict per row."""
    values = {k: list(v) for k, v in columns.items() if not isinstance(v, str | bytes)}
    lengths = {len(v) for v in values.values()}
    if len(values) != len(columns) or len(lengths) != 1:
        raise DataError(
            f"{role}: a dict of columns needs one list per column, all of one length "
            f"(found {', '.join(f'{k!r}' for k in columns) or 'no column'})"
        )
    return [
        _plain_row(dict(zip(values, row, strict=True)))
        for row in zip(*values.values(), strict=True)
    ]


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values and lists; a missing value (NaN, ``pd.NA``)
    as ``None``."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()
    if type(value).__name__ == "NAType" or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
