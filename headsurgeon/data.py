"""Read text-classification files (``.csv``, ``.tsv``, ``.jsonl``) into examples.

No torch. A file has one example per row/line with a text column and a label column (``text`` and
``label`` by default). Labels are validated against a model's label set with :func:`check_labels`.
"""

from __future__ import annotations

import csv
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, LabelError
from .keywords import checked_keywords
from .labels import check_name

TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
#: the column of image paths in an image classifier's data files
IMAGE_COLUMN = "image"
#: the column of audio file paths in an audio classifier's data files
AUDIO_COLUMN = "audio"
SUFFIXES = (".csv", ".tsv", ".jsonl")
#: what separates the labels of a multi-label CSV/TSV cell
LABEL_SEP = ";"


@checked_keywords
@dataclass(frozen=True)
class Columns:
    """The columns of labelled data files: the label's, and the input's of each kind of model
    (a text classifier reads ``text``, an image classifier ``image``, an audio classifier
    ``audio``); each task reads the one of its inputs. An unknown keyword is an
    :class:`~headsurgeon.errors.OptionsError` naming the fields and the close match.

    Example:
        >>> Columns(image="path").image
        'path'
    """

    text: str = TEXT_COLUMN
    label: str = LABEL_COLUMN
    image: str = IMAGE_COLUMN
    audio: str = AUDIO_COLUMN
    #: what separates a multi-label file's labels in one cell
    label_sep: str = LABEL_SEP

    @classmethod
    def of(cls, columns: Columns | Sequence[str] | None) -> Columns:
        """``columns`` as :class:`Columns`: itself, the defaults (``None``), or a ``(text,
        label)`` pair as the API took before images."""
        if columns is None:
            return cls()
        if isinstance(columns, Columns):
            return columns
        text, label = columns
        return cls(text=text, label=label)


@dataclass(frozen=True)
class Example:
    """One labelled text."""

    text: str
    label: str


def read_examples(
    path: str | os.PathLike, *, text_column: str = TEXT_COLUMN, label_column: str = LABEL_COLUMN
) -> list[Example]:
    """Read labelled texts from a ``.csv``, ``.tsv`` or ``.jsonl`` file.

    Args:
        path: the file; its suffix chooses the format.
        text_column, label_column: column (or JSON key) names.

    Returns:
        the examples in file order.

    Raises:
        DataError: missing file, unknown suffix, missing columns, a malformed row/line, an empty
            text or label, or no examples at all. The message names the file and line.

    Example:
        >>> read_examples("new.csv")[0]
        Example(text='my card was stolen', label='lost_or_stolen_card')
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: unknown format {suffix or '(no suffix)'!r}; expected one of {', '.join(SUFFIXES)}"
        )
    try:
        rows = list(
            _jsonl_rows(path)
            if suffix == ".jsonl"
            else _table_rows(path, "\t" if suffix == ".tsv" else ",", (text_column, label_column))
        )
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    examples = [_example(path, line, row, text_column, label_column) for line, row in rows]
    if not examples:
        raise DataError(f"{path} holds no examples")
    return examples


def _table_rows(path: Path, delimiter: str, columns: Sequence[str]):
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        try:
            header = reader.fieldnames  # a missing column is the header's fault: name its line
            for column in columns if header is not None else ():
                if column not in header:
                    raise _no_column(path, reader.line_num, column, header)
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataError(
                        f"{path}:{reader.line_num}: expected {len(reader.fieldnames)} columns "
                        f"({_columns(reader.fieldnames)}), found {len([v for v in row.values() if v is not None]) + len(row.get(None) or [])}"
                    )
                if any(v.strip() for v in row.values()):
                    yield reader.line_num, row
        except csv.Error as e:
            raise DataError(
                f"{path}:{reader.line_num}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {e}"
            ) from e


def _jsonl_rows(path: Path):
    with path.open(encoding="utf-8-sig") as fh:
        for line_num, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:  # RecursionError: absurdly deep nesting
                raise DataError(f"{path}:{line_num}: not a JSON object: {e}") from e
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{line_num}: expected a JSON object, found {type(row).__name__}"
                )
            yield line_num, row


def _example(path: Path, line: int, row: dict, text_column: str, label_column: str) -> Example:
    for column in (text_column, label_column):
        if column not in row:
            raise _no_column(path, line, column, row)
    text, label = row[text_column], row[label_column]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}:{line}: empty or non-text {text_column!r}")
    if label is None or not str(label).strip():
        raise DataError(f"{path}:{line}: empty {label_column!r}")
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise DataError(
            f"{path}:{line}: {label_column!r} is a {type(label).__name__}, expected a label name"
        )
    try:
        name = check_name(str(label))
    except LabelError as e:
        raise DataError(f"{path}:{line}: {e}") from e
    return Example(text, name)


def _no_column(path: Path, line: int, column: str, found) -> DataError:
    return DataError(
        f"{path}:{line}: no column {column!r} (found: {_columns(found) or 'none'}); "
        "choose columns with --text-column/--label-column"
    )


def _columns(names, limit: int = 10) -> str:
    """Column names for a message: quoted (they can hold line breaks), the first ``limit``."""
    names = list(names)
    shown = ", ".join(repr(n)[:60] for n in names[:limit])
    return shown + (f", ... ({len(names)} columns)" if len(names) > limit else "")


def check_labels(
    examples: Iterable[Example],
    known: Sequence[str],
    *,
    source: str = "data",
    only_known: str | None = None,
) -> None:
    """Raise :class:`DataError` naming every label in ``examples`` that is not in ``known``.

    Args:
        only_known: for a file that may hold only known labels (a replay or holdout file), what
            it must hold (e.g. ``"--holdout must hold only the model's labels"``): the advice is
            then to filter the file, not to add the labels to the model.
    """
    counts = Counter(e.label for e in examples)
    unknown = sorted(set(counts) - set(known))
    if unknown:
        listed = ", ".join(
            f"{u!r} ({counts[u]} example{'s' * (counts[u] != 1)})" for u in unknown[:10]
        )
        more = " ..." if len(unknown) > 10 else ""
        total = sum(counts[u] for u in unknown)
        advice = (
            f"{only_known}: remove those {total} example(s) from it"
            if only_known
            else "add them first (add-label or --add) or fix the data"
        )
        raise DataError(f"{source} has label(s) the model does not have: {listed}{more}; {advice}")


def by_label(examples: Iterable[Example]) -> dict[str, list[Example]]:
    """Group examples by label, keeping file order within each label."""
    groups: dict[str, list[Example]] = {}
    for e in examples:
        groups.setdefault(e.label, []).append(e)
    return groups


def sample_replay(
    replay: Sequence[Example],
    labels: Sequence[str],
    per_label: int,
    seed: int,
    whole: Collection[str] = (),
) -> list[Example]:
    """``per_label`` examples of each label in ``labels`` (all when 0, and all of the ``whole``
    labels), seeded, in a stable order."""
    groups = by_label(e for e in replay if e.label in set(labels))
    rng = random.Random(seed)
    out = []
    for name in labels:
        group = groups.get(name, [])
        capped = per_label and len(group) > per_label and name not in set(whole)
        out.extend(rng.sample(group, per_label) if capped else group)
    return out


def split_slice(
    replay: Sequence[Example], old_labels: Sequence[str], per_label: int, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold ``per_label`` examples of each old label out of ``replay`` (seeded).

    At most a third of a label's examples are held out, so training keeps the rest.

    Returns:
        ``(held_out, rest)``; both in the replay's label order.
    """
    if per_label <= 0:
        return [], [e for e in replay if e.label in set(old_labels)]
    groups = by_label(e for e in replay if e.label in set(old_labels))
    rng = random.Random(f"calibration-{seed}")
    held, rest = [], []
    for name in old_labels:
        group = groups.get(name, [])
        chosen = set(rng.sample(range(len(group)), min(per_label, len(group) // 3)))
        held.extend(e for i, e in enumerate(group) if i in chosen)
        rest.extend(e for i, e in enumerate(group) if i not in chosen)
    return held, rest
