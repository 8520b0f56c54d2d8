"""Read audio-classification data into :class:`AudioExample` s: names and paths, no decoding.

No torch, no soundfile (files are decoded by :mod:`.waveform`). Labelled audio comes as
``datasets`` reads it, so folders users already have work unchanged:

- a folder in the ``audiofolder`` layout: ``DIR/<label>/<file>`` for every file with one of
  :data:`AUDIO_EXTENSIONS`, all at one depth (``DIR/train/<label>/...`` works too), each file's
  label the name of its folder; or, when the folder holds ``metadata.csv`` or
  ``metadata.jsonl`` files, the files they list in ``file_name`` (relative to the metadata file)
  with the label in a ``label`` column (files they do not list are ignored, as ``datasets`` does);
- a ``.csv``, ``.tsv`` or ``.jsonl`` file with an ``audio`` column of file paths (relative to
  the data file, or absolute) and a ``label`` column, like :mod:`headsurgeon.data`'s text files.

A missing audio file, a malformed row or a bad label raises :class:`~headsurgeon.errors.DataError`
naming the data file and line. Validate labels against a model's with
:func:`headsurgeon.data.check_labels` (it reads ``example.label``).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ...data import AUDIO_COLUMN, LABEL_COLUMN, _columns, _jsonl_rows, _table_rows
from ...errors import DataError, LabelError
from ...labels import check_name

logger = logging.getLogger(__name__)

#: the metadata files' column naming each audio file (``datasets``' ``audiofolder`` convention)
FILE_NAME_COLUMN = "file_name"
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl")
#: the suffixes of ``datasets``' ``audiofolder`` (libsndfile's formats, read by soundfile)
AUDIO_EXTENSIONS = (
    ".aiff", ".au", ".avr", ".caf", ".flac", ".htk", ".svx", ".mat4", ".mat5", ".mpc2k", ".ogg",
    ".paf", ".pvf", ".raw", ".rf64", ".sd2", ".sds", ".ircam", ".voc", ".w64", ".wav", ".nist",
    ".wavex", ".wve", ".xi", ".mp3", ".opus",
)  # fmt: skip
#: what an audio classifier reads, for messages about data of another kind
EXPECTED = (
    "an audio classifier reads labelled audio files: a folder DIR/<label>/<file>.wav (the "
    "audiofolder layout; or a DIR/metadata.csv with file_name and label columns), or a .csv, "
    ".tsv or .jsonl file with an 'audio' column of file paths (relative to that file) and a "
    "'label' column"
)
_TABLE_ADVICE = "choose columns with --audio-column/--label-column"
_METADATA_ADVICE = (
    "a metadata file names each audio file in a 'file_name' column (relative to it) and its "
    "label in a label column (--label-column)"
)


@dataclass(frozen=True)
class AudioExample:
    """One labelled audio file.

    Attributes:
        path: the audio file (a data file's paths joined to its folder, normalised).
        label: its label name.
        source: the data file (CSV, JSONL, metadata file) or folder it was found in.
        line: its line in ``source`` (``None`` for a file found by the folder layout).
    """

    path: Path
    label: str
    source: str
    line: int | None = None

    @property
    def where(self) -> str:
        """Where the example comes from, for messages: ``data.csv:3`` or the audio file."""
        return f"{self.source}:{self.line}" if self.line is not None else str(self.path)


def read_audio_examples(
    path: str | os.PathLike,
    *,
    audio_column: str = AUDIO_COLUMN,
    label_column: str = LABEL_COLUMN,
) -> list[AudioExample]:
    """Read labelled audio files from a folder (:func:`read_audiofolder`) or a data file
    (:func:`read_audio_table`).

    Args:
        path: an ``audiofolder`` folder, or a ``.csv``/``.tsv``/``.jsonl`` file.
        audio_column: the data file's column of audio paths (a folder's metadata files use
            ``file_name``, as ``datasets`` does).
        label_column: the label column of a data file or metadata file.

    Returns:
        the examples, in file order (a folder's in sorted path order).

    Raises:
        DataError: naming the file (and line) of a missing, malformed or misplaced entry.

    Example:
        >>> read_audio_examples("clips/")[0]
        AudioExample(path=PosixPath('clips/dog/1.wav'), label='dog', source='clips', line=None)
    """
    path = Path(path)
    if path.is_dir():
        return read_audiofolder(path, label_column=label_column)
    if not path.exists():
        raise DataError(f"data not found: {path}; {EXPECTED}")
    return read_audio_table(path, audio_column=audio_column, label_column=label_column)


def read_audio_table(
    path: str | os.PathLike,
    *,
    audio_column: str = AUDIO_COLUMN,
    label_column: str = LABEL_COLUMN,
) -> list[AudioExample]:
    """Read a ``.csv``/``.tsv``/``.jsonl`` file of audio paths (relative to it) and labels.

    Raises:
        DataError: missing file, another format (a CoNLL file, one audio file), a missing
            column (text data: no ``audio`` column), a missing audio file, an empty or bad
            label, no examples. The message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        raise DataError(f"{path} is an audio file, not a list of them; {EXPECTED}")
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unknown format {suffix or '(no suffix)'!r}; {EXPECTED}")
    columns = (audio_column, label_column)
    examples = [
        _example(path, line, row, columns, path.parent, _TABLE_ADVICE)
        for line, row in _rows(path, columns, _TABLE_ADVICE)
    ]
    if not examples:
        raise DataError(f"{path} holds no examples")
    return examples


def read_audiofolder(
    folder: str | os.PathLike, *, label_column: str = LABEL_COLUMN
) -> list[AudioExample]:
    """Read a folder in ``datasets``' ``audiofolder`` layout (see the module's docstring).

    Hidden files and folders (``.name``) are skipped; other files that are neither audio nor
    metadata are ignored (logged).

    Raises:
        DataError: no audio file (a folder of images says so), audio files directly in
            ``folder`` or at different depths (no label folder), a bad label folder name, both
            ``metadata.csv`` and ``metadata.jsonl`` files, or a metadata error (file and line).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    audio, metadata, other = _walk(folder)
    if metadata:
        return _from_metadata(folder, metadata, audio, label_column)
    if not audio:
        seen = sorted({p.suffix.lower() or p.name for p in other})
        found = f" (found {len(other)} other file(s): {', '.join(seen[:8])})" if other else ""
        raise DataError(
            f"{folder} holds no audio file ({', '.join(AUDIO_EXTENSIONS[:6])}, ...) and no "
            f"{' or '.join(METADATA_FILES)}{found}; {EXPECTED}"
        )
    if other:
        logger.info("%s: %d file(s) that are not audio ignored", folder, len(other))
    return _from_label_folders(folder, audio)


def _walk(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Audio files, metadata files and other files under ``folder`` (sorted, hidden skipped)."""
    audio, metadata, other = [], [], []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            p = Path(root, name)
            if name in METADATA_FILES:
                metadata.append(p)
            elif p.suffix.lower() in AUDIO_EXTENSIONS:
                audio.append(p)
            else:
                other.append(p)
    return audio, metadata, other


def _from_label_folders(folder: Path, audio: list[Path]) -> list[AudioExample]:
    depths: dict[int, Path] = {}
    for p in audio:
        depths.setdefault(len(p.relative_to(folder).parts), p)
    if 1 in depths:
        p = depths[1]
        raise DataError(
            f"{p}: an audio file directly in {folder}; the audiofolder layout takes each file's "
            f"label from its folder: move it to {folder / '<label>' / p.name}, or list the files "
            f"and their labels in {folder / 'metadata.csv'} (columns file_name,label)"
        )
    if len(depths) > 1:
        a, b = (depths[d] for d in sorted(depths)[:2])
        raise DataError(
            f"audio files at different depths under {folder} ({a} and {b}); the audiofolder "
            "layout takes each file's label from its folder, all at one depth "
            f"({folder / '<label>' / '<file>'}): move them, or list them in a metadata.csv"
        )
    examples = []
    for p in audio:
        try:
            label = check_name(p.parent.name)
        except LabelError as e:
            raise DataError(f"{p.parent}: the folder's name is not a label name: {e}") from e
        examples.append(AudioExample(p, label, str(folder)))
    return examples


def _from_metadata(
    folder: Path, metadata: list[Path], audio: list[Path], label_column: str
) -> list[AudioExample]:
    kinds = {m.name for m in metadata}
    if len(kinds) > 1:
        raise DataError(
            f"{folder} holds both metadata.csv and metadata.jsonl files "
            f"({', '.join(str(m) for m in metadata[:4])}): keep one format (datasets refuses "
            "the mix too)"
        )
    columns = (FILE_NAME_COLUMN, label_column)
    examples = []
    for m in metadata:
        rows = _rows(m, columns, _METADATA_ADVICE)
        examples += [
            _example(m, line, row, columns, m.parent, _METADATA_ADVICE) for line, row in rows
        ]
    if not examples:
        raise DataError(f"{', '.join(str(m) for m in metadata)} list(s) no audio file")
    unlisted = len(set(audio) - {e.path for e in examples})
    if unlisted:
        logger.warning(
            "%s: %d audio file(s) not listed in its metadata file(s): ignored", folder, unlisted
        )
    return examples


def _rows(path: Path, columns: tuple[str, str], advice: str) -> list[tuple[int, dict]]:
    """The rows of a data or metadata file with their line numbers; a table's header must hold
    ``columns`` (checked first, so another task's file is named as such before any row)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return list(_jsonl_rows(path))
        delimiter = "\t" if suffix == ".tsv" else ","
        header = _header(path, delimiter)
        for column in columns if header is not None else ():
            if column not in header:
                raise _no_column(path, 1, column, header, advice, hint=column == columns[0])
        return list(_table_rows(path, delimiter, ()))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


def _header(path: Path, delimiter: str) -> list[str] | None:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        try:
            return next(csv.reader(fh, delimiter=delimiter), None)
        except csv.Error as e:
            raise DataError(f"{path}:1: malformed header: {e}") from e


def _example(
    path: Path, line: int, row: dict, columns: tuple[str, str], base: Path, advice: str
) -> AudioExample:
    audio_column, label_column = columns
    for column in columns:
        if column not in row:
            raise _no_column(path, line, column, row, advice, hint=column == audio_column)
    value = row[audio_column]
    if not isinstance(value, str) or not value.strip():
        shown = "empty" if value in ("", None) else f"a {type(value).__name__}"
        raise DataError(f"{path}:{line}: {audio_column!r} is {shown}, expected an audio file path")
    audio = Path(os.path.normpath(base / value.strip()))  # one path per file (no '..')
    if not audio.is_file():
        what = "is a folder, not an audio file" if audio.is_dir() else "not found"
        raise DataError(f"{path}:{line}: audio file {what}: {audio}")
    return AudioExample(audio, _label(path, line, row[label_column], label_column), str(path), line)


def _label(path: Path, line: int, label, label_column: str) -> str:
    if label is None or not str(label).strip():
        raise DataError(f"{path}:{line}: empty {label_column!r}")
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise DataError(
            f"{path}:{line}: {label_column!r} is a {type(label).__name__}, expected a label name"
        )
    try:
        return check_name(str(label))
    except LabelError as e:
        raise DataError(f"{path}:{line}: {e}") from e


def _no_column(
    path: Path, line: int, column: str, found, advice: str, hint: bool = False
) -> DataError:
    """A missing column; with ``hint`` (the audio column is missing), a file of another task
    (a ``text`` column: text classification) is named as such with what an audio model reads."""
    found = list(found)
    kind = next((k for c, k in _OTHER_TASKS if c in found), None) if hint else None
    other = (
        f"; this looks like {kind} data, and this model classifies audio: {EXPECTED}"
        if kind
        else ""
    )
    return DataError(
        f"{path}:{line}: no column {column!r} (found: {_columns(found) or 'none'}){other}; {advice}"
    )


#: a column that tells another task's data file (for the message about a missing audio column)
_OTHER_TASKS = (
    ("text", "text-classification"),
    ("tokens", "token-classification (NER)"),
    ("image", "image-classification"),
)
