"""Multi-label text data: a text and any number of labels per row (none is allowed).

The ``datasets`` convention, as a user of transformers keeps it:

- CSV/TSV: a ``labels`` column holding the labels separated by ``;`` (``label_sep``; an empty
  cell: no label, an all-negative text); a file with a ``label`` column instead is read the same
  way;
- JSONL: ``"labels": [...]`` (a list of names; a string is split as a cell is).

No torch.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...data import (
    LABEL_COLUMN,
    LABEL_SEP,
    SUFFIXES,
    TEXT_COLUMN,
    _jsonl_rows,
    _no_column,
    _table_rows,
)
from ...errors import DataError, LabelError
from ...labels import check_name

#: the column of a multi-label file's labels (the ``datasets`` convention)
LABELS_COLUMN = "labels"
#: what separates the labels of a CSV/TSV cell
DEFAULT_LABEL_SEP = LABEL_SEP


@dataclass(frozen=True)
class LabelledText:
    """One text and its labels (a tuple, in file order; empty: no label applies)."""

    text: str
    labels: tuple[str, ...]


def read_labelled(
    path: str | os.PathLike,
    *,
    text_column: str = TEXT_COLUMN,
    label_column: str | None = None,
    label_sep: str = DEFAULT_LABEL_SEP,
) -> list[LabelledText]:
    """Read multi-label texts from a ``.csv``, ``.tsv`` or ``.jsonl`` file.

    Args:
        path: the file; its suffix chooses the format.
        text_column: the text's column (or JSON key).
        label_column: the labels' column; ``None``: ``labels``, else ``label``, whichever the
            file has.
        label_sep: what separates the labels of a cell (and of a JSON string).

    Raises:
        DataError: a missing file, an unknown suffix, a missing column, an empty text, a label
            that is not a name, an empty file; the message names the file and line.

    Example:
        >>> read_labelled("new.csv")[0]
        LabelledText(text='the card stopped working abroad', labels=('card', 'travel'))
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: unknown format {suffix or '(no suffix)'!r}; expected one of "
            f"{', '.join(SUFFIXES)}"
        )
    if not label_sep:
        raise DataError("the label separator (--label-sep) must not be empty")
    try:
        rows = list(_rows(path, suffix, text_column))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if not rows:
        raise DataError(f"{path} holds no examples")
    column = label_column or _labels_column(rows[0][1])
    return [_example(path, line, row, text_column, column, label_sep) for line, row in rows]


def _rows(path: Path, suffix: str, text_column: str):
    if suffix == ".jsonl":
        return _jsonl_rows(path)
    return _table_rows(path, "\t" if suffix == ".tsv" else ",", (text_column,))


def _labels_column(row: dict) -> str:
    """``labels`` when the file has it, else ``label`` (a single-label file's column)."""
    return LABELS_COLUMN if LABELS_COLUMN in row or LABEL_COLUMN not in row else LABEL_COLUMN


def _example(path: Path, line: int, row: dict, text_column: str, column: str, sep: str):
    for name in (text_column, column):
        if name not in row:
            raise _no_column(path, line, name, row)
    text, value = row[text_column], row[column]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}:{line}: empty or non-text {text_column!r}")
    if value is None:
        value = []
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(sep)) if part]
    if not isinstance(value, list):
        raise DataError(
            f"{path}:{line}: {column!r} is a {type(value).__name__}, expected a list of label "
            f"names (or names separated by {sep!r})"
        )
    names = []
    for label in value:
        if isinstance(label, bool) or not isinstance(label, (str, int, float)):
            raise DataError(f"{path}:{line}: {column!r} holds {label!r}, not a label name")
        try:
            name = check_name(str(label).strip())
        except LabelError as e:
            raise DataError(f"{path}:{line}: {e}") from e
        if name not in names:
            names.append(name)
    return LabelledText(text, tuple(names))


def check_labelled(
    examples: Iterable[LabelledText],
    known: Sequence[str],
    *,
    source: str = "data",
    only_known: str | None = None,
) -> None:
    """Refuse examples carrying labels not in ``known``, naming each with its count (as
    :func:`headsurgeon.data.check_labels` does for one label per example)."""
    counts = Counter(n for e in examples for n in e.labels)
    unknown = sorted(set(counts) - set(known))
    if not unknown:
        return
    listed = ", ".join(f"{u!r} ({counts[u]} example{'s' * (counts[u] != 1)})" for u in unknown[:10])
    more = " ..." if len(unknown) > 10 else ""
    advice = (
        f"{only_known}: remove those labels from it"
        if only_known
        else "add them first (add-label or --add) or fix the data"
    )
    joined = joined_by(unknown)
    if joined:
        advice = f"they look like labels joined by {joined!r}: pass --label-sep {joined!r}"
    raise DataError(f"{source} has label(s) the model does not have: {listed}{more}; {advice}")


#: characters that join labels in the files users have
_SEPARATORS = (";", ",", "|")


def joined_by(names: Iterable[str]) -> str | None:
    """The separator that seems to join labels in ``names`` (a wrong ``label_sep``), or
    ``None``."""
    for sep in _SEPARATORS:
        if any(sep in n.strip() for n in names):
            return sep
    return None
