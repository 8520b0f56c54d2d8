"""Image classification's task: one label per image (``...ForImageClassification``).

:class:`ImageTask` is what ``train``, ``check`` and ``sweep`` ask of an image classifier:
examples are :class:`~.reading.ImageExample` s read from an ``imagefolder`` or a
``.csv``/``.tsv``/``.jsonl`` of paths (every file's header checked before any work), keyed by
their content and path (:mod:`headsurgeon.tasks.files`); their model inputs are the
``pixel_values`` of the model folder's image processor (:class:`ImageInputs`, the view the
batched passes use); the rest (rows, scoring, the accuracy gate) is the single-label tasks'
(:class:`~headsurgeon.tasks.single.OneLabelTask`).

Cached block inputs: every image makes the same number of positions (ViT/DeiT/BEiT patches,
a CNN stage's ``[channels, height, width]``), so the inputs of a block are cached whole, and
when only the top blocks run, the model is fed zero ``pixel_values`` of the processor's size in
place of the images (what runs below the cut is replaced by the cache: no image is decoded
again).

No torch, Pillow or transformers at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import IMAGE
from ..files import FileKeys, FileTask
from ..single import label_batch, pad_stack
from .loading import check_images, open_rgb, require_pillow
from .processing import load_image_processor, processed_size
from .reading import ImageExample, check_image_labels, read_image_examples

#: the key of the blank image of one-example probes (no file: not a :func:`file_key`)
BLANK = "blank"
#: the blank's side when the processor does not say its size
_BLANK_SIDE = 32


class ImageTask(FileTask):
    """One label per image (see the module docstring); implements
    :class:`~headsurgeon.tasks.base.Task`."""

    name = IMAGE
    unit = "images"
    #: every image makes as many positions: there is no padding to save
    batches_by_length = False
    path_column = "image"
    example_type = ImageExample

    def load_preprocessor(self, model_dir):
        """:func:`~.processing.load_image_processor`."""
        return load_image_processor(model_dir)

    def read_examples(self, path, path_column: str, label_column: str) -> list:
        """:func:`~.reading.read_image_examples`."""
        return read_image_examples(path, image_column=path_column, label_column=label_column)

    def check_labels(self, examples, known, **where) -> None:
        """:func:`~.reading.check_image_labels`."""
        check_image_labels(examples, known, **where)

    def probe(self, examples) -> None:
        """:func:`~.loading.check_images`."""
        check_images(examples)

    def view_type(self) -> type:
        """:class:`ImageInputs`."""
        return ImageInputs

    def make_collator(self, view):
        """:func:`make_image_collator`."""
        return make_image_collator(view)


class ImageInputs:
    """An image processor seen as the batched passes of training and ``check`` see a
    tokenizer: called with the keys of images (:meth:`ImageTask.key`), it returns their
    ``pixel_values`` (decoded to RGB: :func:`~.loading.open_rgb`).

    Args:
        processor: the model's image processor.
        keys: the task's keys, to name the data row of an image that cannot be read.
    """

    #: what the passes' progress counts
    unit = "images"
    #: the one-example probe of the blocks runs on a blank image
    probe_keys = (BLANK,)

    def __init__(self, processor, keys: FileKeys | None = None):
        self.processor = processor
        self.keys = keys or FileKeys()
        self._shape: dict[str, Any] | None = None

    def __call__(self, keys: Sequence[str], **_) -> Any:
        images = [self._image(k) for k in ([keys] if isinstance(keys, str) else keys)]
        return self.processor(images=images, return_tensors="pt")

    def _image(self, key: str):
        if key == BLANK:
            height, width = processed_size(self.processor) or (_BLANK_SIDE, _BLANK_SIDE)
            return require_pillow().new("RGB", (width, height), (255, 255, 255))
        return open_rgb(self.keys.example(key, lambda path: path))

    def lengths(self, keys: Sequence[str]) -> list[int]:
        """Each image's length in a batch: all alike (no padding to save)."""
        return [1] * len(keys)

    def stand_in(self, keys: Sequence[str]) -> dict[str, Any]:
        """Inputs that stand in for the images of ``keys`` when their block inputs are cached:
        zeros of the processor's size (what runs below the cut is replaced), or the images
        themselves when the processor's size depends on the image."""
        if processed_size(self.processor) is None:
            return dict(self(keys))
        if self._shape is None:  # the processor's output for one image: its shape, once
            self._shape = {k: v.shape[1:] for k, v in self([BLANK]).items()}
        import torch

        return {k: torch.zeros(len(keys), *shape) for k, shape in self._shape.items()}

    def block_lengths(self, model, batch, hidden, keys) -> list[int] | None:
        """Every image's cached block input is whole (``None``: not one tensor with a row per
        image: MobileViT's blocks see patches)."""
        if hidden is None or hidden.dim() < 3 or hidden.shape[0] != len(keys):
            return None
        return [hidden.shape[1]] * hidden.shape[0]

    def same_inputs(self, other) -> bool:
        """Whether ``other`` makes the same inputs of the same images (``check`` then runs
        the backbone once for parent and child)."""
        mine, theirs = self.processor, getattr(other, "processor", None)
        return type(mine) is type(theirs) and mine.to_dict() == theirs.to_dict()


def make_image_collator(inputs: ImageInputs):
    """Batch image rows: stack features; or stack cached block inputs with zero images
    standing in (:meth:`ImageInputs.stand_in`); or the images' ``pixel_values``."""

    def collate(rows: list[dict]) -> dict:
        batch = label_batch(rows)
        if "features" in rows[0]:
            batch["features"] = pad_stack([r["features"] for r in rows])
            return batch
        keys = [r["text"] for r in rows]
        if "hidden" in rows[0]:
            batch.update(inputs.stand_in(keys))
            batch["hidden"] = pad_stack([r["hidden"] for r in rows])
        else:
            batch.update(inputs(keys))
        return batch

    return collate
