"""Read image-classification data into :class:`ImageExample` s (paths and labels; no pixels).

No Pillow, torch or transformers: reading checks the layout, the columns, the label names and
that every image file exists; decoding is :func:`~headsurgeon.tasks.image.loading.open_rgb`'s.
Two sources, as the ``datasets`` library's ``imagefolder`` builder reads them, so that a folder
a user already has for ``datasets`` works as it is:

* **a folder**: ``DIR/<label>/<image>`` (the folder holding an image names its label; every image
  at the same depth; hidden files and files that are not images are skipped), or, when the tree
  holds ``metadata.csv`` or ``metadata.jsonl``, the rows of those files: ``file_name`` (the image,
  relative to the metadata file's folder) and a label column (``label``). Images the metadata
  does not list are skipped, as ``datasets`` skips them (a warning says how many).
* **a file** (``.csv``, ``.tsv``, ``.jsonl``): one image per row/line, an ``image`` column with
  its path (relative to the file, or absolute) and a ``label`` column; ``file_name`` (the
  metadata files' name) is taken when there is no ``image`` column.

Errors are :class:`~headsurgeon.errors.DataError` with one line naming the file and line (the
image's path for the folder layout), as :mod:`headsurgeon.data` reports text files.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...data import IMAGE_COLUMN, LABEL_COLUMN, _columns, _jsonl_rows, _table_rows
from ...errors import DataError, LabelError
from ...labels import check_name
from ..sniff import looks_like_token_data

logger = logging.getLogger(__name__)

#: the column ``datasets``' metadata files name the image in
FILE_NAME = "file_name"
SUFFIXES = (".csv", ".tsv", ".jsonl")
#: metadata files ``datasets``' ``imagefolder`` reads (``metadata.parquet`` needs pyarrow)
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
#: the image formats a folder is searched for (Pillow opens each; ``datasets`` lists more)
IMAGE_SUFFIXES = frozenset(
    ".png .apng .jpg .jpeg .jpe .jfif .bmp .dib .gif .webp .tif .tiff .ppm .pgm .pbm .pnm "
    ".tga .ico".split()
)
#: top folders of a data set split ``datasets``-style: a folder of them is several data sets
SPLIT_NAMES = frozenset({"train", "test", "validation", "valid", "val", "dev", "eval"})
_EXPECTED = (
    "an image model reads a folder of images by label (DIR/<label>/<image>, or DIR with a "
    "metadata.csv of file_name,label) or a .csv/.tsv/.jsonl file of image paths and labels"
)
_CHOOSE = "choose columns with --image-column/--label-column"


@dataclass(frozen=True)
class ImageExample:
    """One labelled image.

    Attributes:
        path: the image file.
        label: its label name.
        source: the data file or folder it was listed in.
        line: the line of ``source`` that lists it (``None`` for the folder layout).
    """

    path: Path
    label: str
    source: str
    line: int | None = None

    @property
    def where(self) -> str:
        """``FILE:LINE`` of the row that lists the image, or the image's path (folder layout)."""
        return str(self.path) if self.line is None else f"{self.source}:{self.line}"


def read_image_examples(
    path: str | os.PathLike,
    *,
    image_column: str = IMAGE_COLUMN,
    label_column: str = LABEL_COLUMN,
) -> list[ImageExample]:
    """Read labelled images from a folder or a ``.csv``/``.tsv``/``.jsonl`` file (see the module).

    Args:
        path: a folder (``DIR/<label>/<image>``, or with ``metadata.csv``/``metadata.jsonl``)
            or a data file; a file's suffix chooses its format.
        image_column: the column (JSON key) holding image paths in a data file.
        label_column: the column holding label names, in a data file or a metadata file.

    Returns:
        the examples in file order (folder layout: sorted by path).

    Raises:
        DataError: a missing path, an unknown format, data of another task (texts, tagged
            words, audio), missing columns, a malformed row, an invalid label name, an image
            file that does not exist, no image at all. The message names the file and line.

    Example:
        >>> read_image_examples("photos")[0]  # photos/cat/001.jpg
        ImageExample(path=PosixPath('photos/cat/001.jpg'), label='cat', source='photos', line=None)
    """
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path, label_column=label_column)
    return read_image_table(path, image_column=image_column, label_column=label_column)


def read_image_table(
    path: str | os.PathLike,
    *,
    image_column: str = IMAGE_COLUMN,
    label_column: str = LABEL_COLUMN,
) -> list[ImageExample]:
    """Read a ``.csv``/``.tsv``/``.jsonl`` file of image paths (relative to the file) and labels.

    Raises:
        DataError: as :func:`read_image_examples`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown format {suffix or '(no suffix)'!r}: {_EXPECTED}")
    rows = _rows(path, lambda header: _image_key(path, 1, header, image_column, label_column))
    if not rows:
        raise DataError(f"{path} holds no examples")
    return _examples(
        path,
        rows,
        lambda row, line: _image_key(path, line, row, image_column, label_column),
        label_column,
    )


def _rows(path: Path, check_header) -> list[tuple[int, dict]]:
    """Rows of a data file as :mod:`headsurgeon.data` reads them; ``check_header(columns)`` runs
    on a table's header first (a wrong file is told by its columns, not by a later row)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return list(_jsonl_rows(path))
        delimiter = "\t" if suffix == ".tsv" else ","
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh, delimiter=delimiter), None)
        if header is not None:
            check_header(dict.fromkeys(header))
        return list(_table_rows(path, delimiter, ()))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except csv.Error as e:
        raise DataError(f"{path}:1: malformed header: {e}") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


def _image_key(path: Path, line: int, row: dict, image_column: str, label_column: str) -> str:
    """The key of ``row`` holding the image path; raise, saying what the file looks like, when
    the row has no such key or no label column."""
    key = image_column
    if key not in row and image_column == IMAGE_COLUMN and FILE_NAME in row:
        key = FILE_NAME
    if key not in row:
        raise DataError(
            f"{path}:{line}: no column {image_column!r} (found: {_found(row)}); {_guess(path, row)}"
        )
    if label_column not in row:
        raise DataError(
            f"{path}:{line}: no column {label_column!r} (found: {_found(row)}); {_CHOOSE}"
        )
    return key


def _found(row) -> str:
    return _columns(row) or "none"


def _guess(path: Path, row: dict) -> str:
    """What a file without an image column seems to hold, and what an image model wants."""
    if {"tokens", "tags", "ner_tags", "entities"} & set(row) or looks_like_token_data(path):
        seen = "this looks like token-classification data (a tag per word)"
    elif "audio" in row:
        seen = "this looks like audio data"
    elif "text" in row or "sentence" in row:
        seen = "this looks like text-classification data (a text and its label)"
    else:
        return f"{_EXPECTED}; {_CHOOSE}"
    return f"{seen}, but the model classifies images: {_EXPECTED}"


def _examples(source: Path, rows, key_of, label_column: str) -> list[ImageExample]:
    """Examples of data-file or metadata rows, image paths relative to ``source``'s folder; the
    first missing image named with its line and how many more are missing."""
    examples, missing = [], []
    for line, row in rows:
        key = key_of(row, line)
        label = _label(source, line, row[label_column], label_column)
        image = _image_path(source, line, row[key], key)
        if not image.is_file():
            missing.append((line, image))
        examples.append(ImageExample(image, label, str(source), line))
    if missing:
        line, image = missing[0]
        kind = "a folder, not an image file" if image.is_dir() else "image not found"
        more = f" (and {len(missing) - 1} more rows whose image is missing)" * (len(missing) > 1)
        raise DataError(f"{source}:{line}: {kind}: {image}{more}")
    return examples


def _image_path(source: Path, line: int, value, key: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise DataError(
            f"{source}:{line}: empty or non-text {key!r}: expected an image path "
            f"(relative to {source.parent})"
        )
    if "://" in value:
        raise DataError(
            f"{source}:{line}: {key!r} is a URL ({value[:80]!r}): images are read from local "
            "files; download them and give their paths"
        )
    # metadata files written on Windows use backslashes (datasets reads them the same way)
    return source.parent / value.replace("\\", "/")


def _label(source: Path, line: int, label, label_column: str) -> str:
    """A row's label as a checked name (an integer label is its digits)."""
    if label is None or not str(label).strip():
        raise DataError(f"{source}:{line}: empty {label_column!r}")
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise DataError(
            f"{source}:{line}: {label_column!r} is a {type(label).__name__}, expected a label name"
        )
    try:
        return check_name(str(label))
    except LabelError as e:
        raise DataError(f"{source}:{line}: {e}") from e


# --- the folder layout --------------------------------------------------------------------


def read_image_folder(
    folder: str | os.PathLike, *, label_column: str = LABEL_COLUMN
) -> list[ImageExample]:
    """Read ``DIR/<label>/<image>``, or ``DIR``'s ``metadata.csv``/``metadata.jsonl`` rows.

    Raises:
        DataError: as :func:`read_image_examples`; also images at different depths, images with
            no label folder, a folder of splits (``train/``, ``test/``), metadata files of two
            formats or in parquet.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    images, metadata, others = _walk(folder)
    if metadata:
        return _from_metadata(folder, metadata, images, label_column)
    return _from_layout(folder, images, others)


def _walk(folder: Path) -> tuple[list[Path], list[Path], Counter]:
    """Image files, metadata files and the suffixes of other files under ``folder``, sorted;
    hidden files and folders (``.name``, ``__name``) skipped, as ``datasets`` does."""
    images, metadata, others = [], [], Counter()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in sorted(files):
            path = Path(root, name)
            if name.startswith((".", "__")):
                continue
            if name in METADATA_NAMES:
                metadata.append(path)
            elif name == "metadata.parquet":
                raise DataError(
                    f"{path}: parquet metadata is not read; write it as metadata.csv or "
                    "metadata.jsonl (file_name and label columns)"
                )
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                others[path.suffix.lower() or "(no suffix)"] += 1
    return images, metadata, others


def _from_layout(folder: Path, images: list[Path], others: Counter) -> list[ImageExample]:
    if not images:
        seen = ", ".join(f"{n} {s}" for s, n in others.most_common(5))
        raise DataError(
            f"{folder} holds no image (.png, .jpg, .jpeg, .bmp, .gif, .webp, .tif, ...)"
            + (f"; found {seen} file(s)" if seen else "")
            + f": {_EXPECTED}"
        )
    depths = {len(p.relative_to(folder).parts) - 1: p for p in images}
    if 0 in depths:
        raise DataError(
            f"{depths[0]}: an image directly in {folder} has no label folder: put each image in "
            f"a folder named after its label ({folder}/<label>/{depths[0].name}), or list "
            f"images with their labels in {folder}/metadata.csv (file_name,label)"
        )
    if len(depths) > 1:
        (d1, p1), (d2, p2) = sorted(depths.items())[:2]
        raise DataError(
            f"{folder}: images at different depths ({p1.relative_to(folder)} and "
            f"{p2.relative_to(folder)}): expected {folder}/<label>/<image>, the folder holding "
            "an image naming its label"
        )
    _refuse_splits(folder, images)
    examples = [ImageExample(p, _folder_label(p.parent), str(folder)) for p in images]
    logger.info(
        "%s: %d images of %d labels", folder, len(examples), len({e.label for e in examples})
    )
    return examples


def _refuse_splits(folder: Path, images: list[Path]) -> None:
    tops = {p.relative_to(folder).parts[0] for p in images}
    if len(images[0].relative_to(folder).parts) > 2 and tops <= SPLIT_NAMES:
        listed = ", ".join(sorted(tops))
        raise DataError(
            f"{folder} holds data set splits ({listed}), each a folder of labels: give one "
            f"split as the data (e.g. {folder / sorted(tops)[-1]}) and another as the holdout"
        )


def _folder_label(parent: Path) -> str:
    try:
        return check_name(parent.name)
    except LabelError as e:
        raise DataError(f"{parent}: the folder's name is not a usable label: {e}") from e


def _from_metadata(
    folder: Path, metadata: list[Path], images: list[Path], label_column: str
) -> list[ImageExample]:
    kinds = {p.suffix for p in metadata}
    if len(kinds) > 1:
        raise DataError(
            f"{folder} holds metadata files of two formats ({', '.join(map(str, metadata[:4]))}): "
            "keep one format (metadata.csv or metadata.jsonl), as the datasets library requires"
        )
    examples: list[ImageExample] = []
    for path in metadata:
        rows = _rows(path, lambda header, p=path: _metadata_key(p, 1, header, label_column))
        examples += _examples(
            path,
            rows,
            lambda row, line, p=path: _metadata_key(p, line, row, label_column),
            label_column,
        )
    if not examples:
        raise DataError(f"{', '.join(map(str, metadata))} list(s) no image")
    _log_unlisted(folder, images, examples)
    return examples


def _metadata_key(path: Path, line: int, row: dict, label_column: str) -> str:
    if FILE_NAME not in row:
        raise DataError(
            f"{path}:{line}: no column {FILE_NAME!r} (found: {_found(row)}): a metadata file "
            "lists each image's path (relative to its folder) under file_name, as the datasets "
            "library reads it"
        )
    if label_column not in row:
        raise DataError(
            f"{path}:{line}: no column {label_column!r} (found: {_found(row)}): with a "
            "metadata file the labels come from it, not from folder names; add a label column, "
            "choose it with --label-column, or remove the metadata file to label images by folder"
        )
    return FILE_NAME


def _log_unlisted(folder: Path, images: list[Path], examples: list[ImageExample]) -> None:
    listed = {os.path.normpath(e.path) for e in examples}
    unlisted = [p for p in images if os.path.normpath(p) not in listed]
    if unlisted:
        logger.warning(
            "%s: %d image(s) not listed in its metadata file(s) are skipped (first: %s)",
            folder,
            len(unlisted),
            unlisted[0],
        )


# --- labels -------------------------------------------------------------------------------


def check_image_labels(
    examples: Iterable[ImageExample],
    known: Sequence[str],
    *,
    source: str = "data",
    only_known: str | None = None,
) -> None:
    """Raise :class:`DataError` naming every label of ``examples`` that ``known`` lacks, with
    how many images have it and where the first is listed.

    Args:
        known: the model's labels.
        source: what the examples are, for the message (``"--data new.csv"``).
        only_known: for data that may hold only known labels (replay, holdout), what it must
            hold: the advice is then to remove those images, not to add the labels.
    """
    counts: Counter = Counter()
    first: dict[str, ImageExample] = {}
    for e in examples:
        counts[e.label] += 1
        first.setdefault(e.label, e)
    unknown = sorted(set(counts) - set(known))
    if not unknown:
        return
    listed = ", ".join(
        f"{u!r} ({counts[u]} image{'s' * (counts[u] != 1)}, first at {first[u].where})"
        for u in unknown[:10]
    )
    more = " ..." if len(unknown) > 10 else ""
    total = sum(counts[u] for u in unknown)
    advice = (
        f"{only_known}: remove those {total} image(s) from it"
        if only_known
        else "add them first (add-label or --add) or fix the data"
    )
    raise DataError(f"{source} has label(s) the model does not have: {listed}{more}; {advice}")
