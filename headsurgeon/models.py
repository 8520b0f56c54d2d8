"""Load a classifier folder, or build its skeleton on the ``meta`` device (no weights).

Heavy imports (torch, transformers) happen inside the functions.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UnsupportedModelError
from .shards import check_weights

logger = logging.getLogger(__name__)


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Return ``config.json`` of a model folder as a dict.

    Raises:
        CheckpointError: the folder or its config is missing or not JSON.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json: is it a saved transformers model?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path} is not valid JSON: {first}") from e
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{path} holds a JSON {type(config).__name__}, expected an object: "
            "is it a saved transformers config?"
        )
    for key, types, expected in _CONFIG_TYPES:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise CheckpointError(
                f"{path}: {key!r} is a {type(value).__name__}, expected {expected}; fix config.json"
            )
    archs = config.get("architectures") or []
    if not all(isinstance(a, str) for a in archs):
        raise CheckpointError(f"{path}: 'architectures' must list class names; fix config.json")
    return config


#: keys of config.json that headsurgeon and transformers read before anything else checks them
_CONFIG_TYPES = (
    ("architectures", list, "a list of class names"),
    ("model_type", str, "a string"),
    ("id2label", dict, 'an object {"0": "name", ...}'),
    ("label2id", dict, 'an object {"name": 0, ...}'),
    ("num_labels", int, "an integer"),
)


def transformers_config(folder: str | os.PathLike, **kwargs: Any):
    """``AutoConfig.from_pretrained(folder)``, its errors turned into one line naming the file.

    Raises:
        CheckpointError: transformers cannot build a config from ``config.json`` (no or unknown
            ``model_type``, values of the wrong type, ...).
    """
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder), **kwargs)
    except Exception as e:  # transformers' (and huggingface_hub's) errors on a user's file
        raise CheckpointError(
            f"transformers cannot read {Path(folder) / 'config.json'}: {one_line(e)}"
        ) from e


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace runs collapsed), shortened to ``limit``."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def model_class(config: Any):
    """Return the transformers model class named by ``config.architectures[0]``.

    Raises:
        UnsupportedModelError: no architecture recorded, or transformers does not know it.
    """
    import transformers

    archs = (
        config.get("architectures")
        if isinstance(config, dict)
        else getattr(config, "architectures", None)
    )
    if not archs:
        raise UnsupportedModelError(
            "config.json names no 'architectures': save the model with save_pretrained "
            "from its *ForSequenceClassification (or token/image/audio) class"
        )
    cls = getattr(transformers, archs[0], None)
    if cls is None:
        raise UnsupportedModelError(
            f"transformers {transformers.__version__} has no class {archs[0]!r} (from config.json)"
        )
    return cls


def load_model(folder: str | os.PathLike, **kwargs: Any):
    """Load the classifier saved in ``folder`` with its own architecture class.

    Raises:
        CheckpointError: missing folder/config, or weights that do not load.
    """
    from transformers import AutoConfig

    read_config(folder)  # clear error for a missing folder/config before transformers speaks
    check_weights(folder)  # a corrupt safetensors file named, not "SafetensorError: ..."
    config = AutoConfig.from_pretrained(str(folder))
    cls = model_class(config)
    try:
        return cls.from_pretrained(str(folder), config=config, **kwargs)
    except (OSError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"could not load the model in {folder}: {first}") from e


def meta_model(cls, config: Any, num_labels: int | None = None):
    """Instantiate ``cls`` on the ``meta`` device (shapes only), optionally with ``num_labels``.

    Raises whatever the model's constructor raises; callers decide what that means.
    """
    import torch

    from .labels import apply_to_config, labels_of

    config = copy.deepcopy(config)
    if num_labels is not None:
        try:
            names = labels_of(config)
        except Exception:
            names = []
        names = (names + [f"__headsurgeon_{i}" for i in range(num_labels)])[:num_labels]
        apply_to_config(config, names)
    with torch.device("meta"):
        return cls(config)
