"""Image classification's data: reading, decoding and preprocessing images.

- :mod:`.reading`: the ``imagefolder`` layout (``DIR/<label>/<image>``, ``metadata.csv`` /
  ``metadata.jsonl``) and ``.csv``/``.tsv``/``.jsonl`` files of image paths into
  :class:`ImageExample` s; label checks against a model's labels.
- :mod:`.loading`: files to RGB Pillow images (Pillow: ``pip install "headsurgeon[image]"``).
- :mod:`.processing`: the model folder's image processor and ``pixel_values`` batches.

Importing this package imports neither Pillow, torch nor transformers: each is imported inside
the function that needs it.

Example:
    >>> from headsurgeon.tasks.image import load_image_processor, pixel_batches, read_image_examples
    >>> examples = read_image_examples("photos")  # photos/<label>/<image>
    >>> processor = load_image_processor("vit-pets")
    >>> batch = next(pixel_batches(examples, processor, batch_size=16))
    >>> batch["pixel_values"].shape
    torch.Size([16, 3, 224, 224])
"""

from __future__ import annotations

from .loading import check_images, open_rgb, require_pillow, to_rgb
from .processing import DEFAULT_BATCH_SIZE, load_image_processor, pixel_batches, processed_size
from .reading import (
    IMAGE_COLUMN,
    IMAGE_SUFFIXES,
    ImageExample,
    check_image_labels,
    read_image_examples,
    read_image_folder,
    read_image_table,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "IMAGE_COLUMN",
    "IMAGE_SUFFIXES",
    "ImageExample",
    "check_image_labels",
    "check_images",
    "load_image_processor",
    "open_rgb",
    "pixel_batches",
    "processed_size",
    "read_image_examples",
    "read_image_folder",
    "read_image_table",
    "require_pillow",
    "to_rgb",
]
