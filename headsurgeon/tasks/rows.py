"""Rows held in memory (tuples, dicts) as a task's examples: the checks every task's
:meth:`~headsurgeon.tasks.base.Task.examples` shares.

A row is a tuple (or list) in the order of the task's columns, or a dict with its columns
(:func:`fields`); each value is checked with one sentence naming the row
(``data row 3: ...``), as the file readers name a file's line. No torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DataError, LabelError
from ..labels import check_name


def where(source: str, number: int) -> str:
    """How a message names row ``number`` (from 1) of ``source`` (``data row 3``)."""
    return f"{source} row {number}"


def fields(
    row: Any, columns: Sequence[str], at: str, *, optional: Sequence[str] = (), advice: str = ""
) -> list:
    """The values of ``columns`` in ``row``: a dict's keys, or a tuple's items in that order.

    Args:
        optional: columns a dict may leave out (``None`` then).
        advice: how to name other columns, for the message of a missing one.

    Raises:
        DataError: a dict without a column (naming the keys it has), a tuple of another
            length, or a row of another type.
    """
    if isinstance(row, Mapping):
        missing = [c for c in columns if c not in row and c not in optional]
        if missing:
            found = ", ".join(repr(k) for k in list(row)[:10]) or "none"
            raise DataError(f"{at}: no column {missing[0]!r} (found: {found}){advice}")
        return [row.get(c) for c in columns]
    if isinstance(row, tuple | list) and len(row) == len(columns):
        return list(row)
    shape = f"a {len(row)}-item {type(row).__name__}" if isinstance(row, tuple | list) else None
    raise DataError(
        f"{at}: expected ({', '.join(columns)}) as a tuple or a dict, found "
        f"{shape or 'a ' + type(row).__name__}"
    )


def text(value: Any, at: str, column: str) -> str:
    """A non-empty text.

    Raises:
        DataError: an empty text, or another type.
    """
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{at}: empty or non-text {column!r} ({_shown(value)})")
    return value


def label(value: Any, at: str, column: str) -> str:
    """A label name (a string, or a number written as one).

    Raises:
        DataError: a missing or empty label, another type, or an invalid name.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{at}: empty {column!r}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DataError(f"{at}: {column!r} is a {type(value).__name__}, expected a label name")
    try:
        return check_name(str(value).strip())
    except LabelError as e:
        raise DataError(f"{at}: {e}") from e


def names(value: Any, at: str, column: str, sep: str) -> tuple[str, ...]:
    """Any number of label names: a list, a string of names separated by ``sep``, or
    ``None`` (no label); repeated names are kept once.

    Raises:
        DataError: another type, or an invalid name.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        value = [p for p in (part.strip() for part in value.split(sep)) if p]
    if not isinstance(value, list | tuple):
        raise DataError(
            f"{at}: {column!r} is a {type(value).__name__}, expected a list of label names "
            f"(or names separated by {sep!r})"
        )
    return tuple(dict.fromkeys(label(v, at, column) for v in value))


def words(value: Any, at: str, column: str) -> tuple[str, ...]:
    """A list of strings (a sentence's words or tags).

    Raises:
        DataError: not a list of strings, or empty.
    """
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise DataError(f"{at}: {column!r} must be a non-empty list of strings ({_shown(value)})")
    bad = next((v for v in value if not isinstance(v, str) or not v), None)
    if bad is not None or any(not isinstance(v, str) for v in value):
        raise DataError(f"{at}: {column!r} holds {_shown(bad)}, expected non-empty strings")
    return tuple(value)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
