"""Which task a data file is for: token sentences (CoNLL, JSONL with tokens or entities) or
labelled texts (a text and one label per row), sniffed from its first lines.

Each task's reader refuses the other task's data with one line naming the file and the line
that gave it away (:func:`check_data_task`), before any model is loaded. No torch.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import DataError
from .token.data import DOCSTART, JSONL_SUFFIXES, _fields

_SNIFF_BYTES = 1 << 16
_SNIFF_LINES = 200
_TAG_SHAPED = re.compile(r"O|[A-Z][-_]\S+")


def looks_like_token_data(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like token-classification data (cheap: reads at most 64 KiB).

    True for a ``-DOCSTART-`` line, CoNLL-shaped lines (a word, then a tag-shaped last column:
    ``O``, ``B-PER``...), or JSON lines with ``tokens`` or character ``entities``. Never raises:
    an unreadable file is False (its reader then says what is wrong).
    """
    return _sniff(Path(path))[0] == "token"


def check_data_task(path: str | os.PathLike, *, token_model: bool, option: str = "--data") -> None:
    """Refuse a data file written for the other task than the model's.

    Args:
        path: the data file.
        token_model: the model tags tokens (else it classifies sequences).
        option: how the user gave the file, for the message (``--holdout``...).

    Raises:
        DataError: one line naming the file and the line that gave it away (or a folder:
            images or clips, for a model that reads files of texts); files the sniff cannot
            place pass (their reader reports what is wrong).
    """
    if Path(path).is_dir():  # image or audio data by label, for another kind of model
        wanted = (
            "tags tokens; give a CoNLL or JSONL file of sentences"
            if token_model
            else "classifies texts; give a .csv/.tsv/.jsonl file of texts and their labels"
        )
        raise DataError(f"{path}: {option} is a folder, but the model {wanted}")
    verdict, line = _sniff(Path(path))
    if token_model and verdict == "sequence":
        raise DataError(
            f"{path}:{line}: {option} looks like sequence-classification data (a text and one "
            "label per row) but the model tags tokens; give CoNLL (token<TAB>tag per line, "
            "blank line between sentences) or JSONL with tokens+tags or text+entities"
        )
    if not token_model and verdict == "token":
        raise DataError(
            f"{path}:{line}: {option} looks like token-classification data (a tag per word) but "
            "the model classifies whole texts; give .csv/.tsv/.jsonl rows with a text and its "
            "label, or a token-classification model"
        )


def _sniff(path: Path) -> tuple[str | None, int]:
    """``("token" | "sequence" | None, line that decided)``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return None, 0
    text = head.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()[:_SNIFF_LINES]
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut
    if path.suffix.lower() in JSONL_SUFFIXES:
        return _sniff_json(lines)
    return _sniff_table(lines, path.suffix.lower())


def _sniff_json(lines: list[str]) -> tuple[str | None, int]:
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(row, dict):
            continue
        label = row.get("label")
        if (
            "tokens" in row
            or "entities" in row
            or (isinstance(label, list) and all(isinstance(x, (list, dict)) for x in label))
        ):
            return "token", n
        if "text" in row and isinstance(label, (str, int, float)):
            return "sequence", n
    return None, 0


def _sniff_table(lines: list[str], suffix: str) -> tuple[str | None, int]:
    rows = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    for n, line in rows:
        if line.split() and line.split()[0] == DOCSTART:
            return "token", n
    body = rows[1:] if len(rows) > 1 else rows  # the first line may be a header
    if not body:
        return None, 0
    tokenish = [n for n, line in rows if _token_line(line)]  # the header too: to name a line
    if len(set(tokenish) & {n for n, _ in body}) >= 0.8 * len(body):
        return "token", tokenish[0]
    texts = [n for n, line in body if _text_line(line)]
    if suffix == ".csv" or len(texts) >= 0.5 * len(body):
        return "sequence", (texts or [body[0][0]])[0]
    return None, 0


def _token_line(line: str) -> bool:
    fields = _fields(line)
    return (
        2 <= len(fields) <= 10
        and not any(c.isspace() for c in fields[0])
        and bool(_TAG_SHAPED.fullmatch(fields[-1]))
    )


def _text_line(line: str) -> bool:
    """A row whose first delimited field is a text of several words."""
    sep = "\t" if "\t" in line else ","
    first, _, rest = line.partition(sep)
    return bool(rest.strip()) and len(first.split()) >= 2
