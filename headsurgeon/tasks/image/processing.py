"""Turn image examples into the ``pixel_values`` a model takes, with the model's own processor.

An image model is only as good as the preprocessing it was trained with (size, crop, mean and
std): the processor comes from the model folder's ``preprocessor_config.json``, never from a
default. torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, OptionsError
from ...record import hub_id_of, read_record
from .loading import open_rgb
from .reading import ImageExample, check_image_labels

PROCESSOR_FILE = "preprocessor_config.json"
#: images decoded and processed at a time by :func:`pixel_batches`
DEFAULT_BATCH_SIZE = 32


def load_image_processor(model_dir: str | os.PathLike) -> Any:
    """The image processor saved with the model in ``model_dir`` (``AutoImageProcessor``).

    Args:
        model_dir: a model folder holding ``preprocessor_config.json`` beside ``config.json``.

    Returns:
        the processor, checked to make images of the size the model's config takes.

    Raises:
        CheckpointError: no ``preprocessor_config.json`` (the message gives the line that adds
            the backbone's), one transformers cannot load, or one that makes images of another
            size than the config's ``image_size``.

    Example:
        >>> processor = load_image_processor("vit-pets")
    """
    folder = Path(model_dir)
    if not (folder / PROCESSOR_FILE).is_file():
        raise CheckpointError(_no_processor(folder))
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise CheckpointError(
            f"{folder / PROCESSOR_FILE}: transformers cannot load this image processor "
            f"({reason}); replace it with the one of the model's backbone"
        ) from e
    _check_size(folder, processor)
    return processor


def _no_processor(folder: Path) -> str:
    backbone = _backbone_of(folder) or "<the backbone's Hub id or folder>"
    return (
        f"{folder} has no {PROCESSOR_FILE}: an image model needs the image processor it was "
        "trained with (size, crop, normalisation) saved beside its weights; save the one of the "
        'model it was fine-tuned from into it: python -c "from transformers import '
        f"AutoImageProcessor; AutoImageProcessor.from_pretrained('{backbone}')"
        f".save_pretrained('{folder}')\""
    )


def _backbone_of(folder: Path) -> str | None:
    """The Hub id of the model ``folder`` was made from, when its record or config names one."""
    try:
        record = read_record(folder) or {}
    except CheckpointError:
        record = {}
    config = _config(folder)
    for name in (record.get("base_model"), record.get("parent"), config.get("_name_or_path")):
        if hub_id_of(name):
            return name
    return None


def _config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def processed_size(processor: Any) -> tuple[int, int] | None:
    """``(height, width)`` of the images ``processor`` makes, or ``None`` when it depends on
    the image (a shortest-edge resize without a crop)."""
    for flag, attr in (("do_center_crop", "crop_size"), ("do_resize", "size")):
        size = getattr(processor, attr, None)
        if getattr(processor, flag, False) and size is not None:
            get = size.get if isinstance(size, Mapping) else lambda k, s=size: getattr(s, k, None)
            height, width = get("height"), get("width")  # a dict, or transformers' SizeDict
            if isinstance(height, int) and isinstance(width, int):
                return height, width
    return None


def _check_size(folder: Path, processor: Any) -> None:
    expected = _config(folder).get("image_size")
    if isinstance(expected, int) and not isinstance(expected, bool):
        expected = (expected, expected)
    made = processed_size(processor)
    if made is None or not isinstance(expected, (list, tuple)) or len(expected) != 2:
        return
    if tuple(made) != tuple(expected):
        raise CheckpointError(
            f"{folder / PROCESSOR_FILE}: the image processor makes {made[0]}x{made[1]} images "
            f"but the model takes {expected[0]}x{expected[1]} (config.json image_size); save "
            "the processor of the model's own backbone into the folder"
        )


def pixel_batches(
    examples: Sequence[ImageExample],
    processor: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    label2id: Mapping[str, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Decode and process ``examples`` in order, ``batch_size`` at a time.

    Args:
        examples: the images (:func:`~headsurgeon.tasks.image.reading.read_image_examples`).
        processor: the model's image processor (:func:`load_image_processor`).
        batch_size: images per batch (the last batch may be smaller).
        label2id: the model's label ids; given, each batch also holds ``labels``.

    Yields:
        dicts with ``pixel_values`` (a float tensor ``batch x 3 x H x W``), whatever else the
        processor returns (``pixel_mask``...), and ``labels`` (a long tensor) with ``label2id``.

    Raises:
        OptionsError: ``batch_size`` below 1.
        DataError: a label ``label2id`` lacks (checked before any image is read), or an image
            that cannot be read (naming it and the row listing it).

    Example:
        >>> for batch in pixel_batches(examples, processor, label2id=model.config.label2id):
        ...     loss = model(**batch).loss
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionsError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    if label2id is not None:
        check_image_labels(examples, list(label2id))
    import torch

    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = dict(processor(images=[open_rgb(e) for e in chunk], return_tensors="pt"))
        if label2id is not None:
            batch["labels"] = torch.tensor([label2id[e.label] for e in chunk], dtype=torch.long)
        yield batch
