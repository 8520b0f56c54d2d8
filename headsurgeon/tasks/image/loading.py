"""Decode image files into RGB Pillow images.

Pillow is optional (``pip install "headsurgeon[image]"``) and imported only when an image is
opened. Image processors of RGB models (ViT, ConvNeXt, ...) refuse a grey image (one channel
where their mean has three), so every image comes out in RGB: grey, palette, CMYK and the like
converted, 16-bit grey scaled to 8 bits, and images with transparency laid on white, as
transformers' own ``convert_to_rgb`` does (transparent pixels' colours are often garbage).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import DataError
from .reading import ImageExample

INSTALL = 'pip install "headsurgeon[image]"'


def require_pillow():
    """Return ``PIL.Image``.

    Raises:
        DataError: Pillow is not installed (the message says how to install it).
    """
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(
            f"reading images needs Pillow, which is not installed: {INSTALL} "
            "(or pip install Pillow)"
        ) from e
    return Image


def open_rgb(image: ImageExample | str | os.PathLike) -> Any:
    """Decode an image file completely and return it as an RGB ``PIL.Image.Image``.

    Args:
        image: an example (errors then name the data file and line that list it) or a path.

    Raises:
        DataError: Pillow missing, or the file missing, unreadable, not an image, truncated or
            corrupt; the message names the file (and the row listing it).

    Example:
        >>> open_rgb(read_image_examples("photos")[0]).mode
        'RGB'
    """
    Image = require_pillow()
    path = Path(image.path if isinstance(image, ImageExample) else image)
    with _reading(Image, image, path):
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not in the processor
            rgb = to_rgb(_upright(img))
            return img.copy() if rgb is img else rgb  # closing the file frees img's pixels


def check_images(examples: Iterable[ImageExample]) -> None:
    """Open every example's image header (Pillow's ``verify``: no decoding) before any work, so
    that a missing, unreadable or corrupt file stops a run before anything is computed or
    written.

    Raises:
        DataError: Pillow missing, or a file that is not a readable image, naming the row that
            lists it (its path for the folder layout).
    """
    Image = require_pillow()
    for e in examples:
        with _reading(Image, e, e.path), Image.open(e.path) as img:
            img.verify()


@contextmanager
def _reading(Image, image, path: Path):
    """Turn what Pillow raises on a bad file into a :class:`DataError` naming it (and the row
    listing it)."""
    try:
        yield
    except FileNotFoundError as e:
        raise DataError(f"{_where(image, path)}image not found: {path}") from e
    except Image.UnidentifiedImageError as e:
        raise DataError(
            f"{_where(image, path)}{path} is not an image Pillow can read (a {path.suffix or 'file'} "
            "with other content?); expected PNG, JPEG, BMP, GIF, WebP, TIFF..."
        ) from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # OSError: unreadable or truncated; SyntaxError/ValueError: some plugins' corrupt data
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise DataError(f"{_where(image, path)}cannot read image {path}: {reason}") from e


def _where(image, path: Path) -> str:
    """``FILE:LINE: `` of the row listing the image, or nothing (the message names the path)."""
    if isinstance(image, ImageExample) and image.line is not None:
        return f"{image.where}: "
    return ""


def _upright(img):
    """The image turned as its EXIF orientation says (as transformers' ``load_image`` does)."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(img)


def to_rgb(img):
    """``img`` in RGB mode (a new image unless it already is RGB).

    16-bit or 32-bit grey is scaled to 8 bits (a plain conversion clips it to white); an image
    with transparency is laid on white.
    """
    Image = require_pillow()
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
