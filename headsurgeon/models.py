"""Load a classifier folder, or build its skeleton on the ``meta`` device (no weights).

Heavy imports (torch, transformers) happen inside the functions.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

from .errors import CheckpointError, UnsupportedModelError
from .weights import check_weights

logger = logging.getLogger(__name__)

#: files whose ``auto_map`` makes transformers import Python code shipped with the model
REMOTE_CODE_FILES = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
)
TRUST_HINT = "pass --trust-remote-code (trust_remote_code=True) only if you trust that code"


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


def refuse_remote_code(folder: str | os.PathLike, trust_remote_code: bool = False) -> None:
    """Refuse a folder whose configs ask transformers to run code shipped with the model.

    A non-empty ``auto_map`` in ``config.json`` (or the tokenizer's or processor's config)
    names Python files of the folder that transformers imports when ``trust_remote_code`` is
    on. headsurgeon never turns it on by itself, so such a folder is refused before
    transformers reads it, unless the user trusts it.

    Raises:
        UnsupportedModelError: an ``auto_map`` was found and ``trust_remote_code`` is false.
    """
    if trust_remote_code:
        return
    folder = Path(folder)
    for name in REMOTE_CODE_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # absent or unreadable: read_config / transformers report it
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        if auto_map:
            refs = list(auto_map.values()) if isinstance(auto_map, dict) else list(auto_map)
            shown = ", ".join(str(r) for r in refs[:2] if r)
            raise UnsupportedModelError(
                f"{folder / name} asks to run Python code shipped with the model (auto_map: "
                f"{shown}); headsurgeon never runs it by default: {TRUST_HINT}"
            )


def load_config(folder: str | os.PathLike, trust_remote_code: bool = False):
    """Return the transformers config of ``folder`` (custom code only with ``trust_remote_code``).

    Raises:
        CheckpointError: missing folder or config. UnsupportedModelError: custom code refused.
    """
    read_config(folder)  # clear error for a missing folder/config before transformers speaks
    refuse_remote_code(folder, trust_remote_code)
    # an explicit False: transformers would otherwise ask on a terminal whether to run the code
    return transformers_config(folder, trust_remote_code=bool(trust_remote_code))


def load_tokenizer(folder: str | os.PathLike, trust_remote_code: bool = False):
    """Return the tokenizer saved in ``folder`` (custom code only with ``trust_remote_code``).

    Raises:
        UnsupportedModelError: custom code refused. Whatever ``AutoTokenizer`` raises otherwise.
    """
    from transformers import AutoTokenizer

    refuse_remote_code(folder, trust_remote_code)
    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=bool(trust_remote_code))


def model_class(config: Any, *, trust_remote_code: bool = False, folder=None):
    """Return the transformers model class named by ``config.architectures[0]``.

    With ``trust_remote_code`` and a ``folder``, a class transformers does not have is looked
    up in the config's ``auto_map`` and imported from the folder's code.

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
    if cls is None and trust_remote_code and folder is not None:
        cls = _remote_class(config, archs[0], folder)
    if cls is None:
        raise UnsupportedModelError(
            f"transformers {transformers.__version__} has no class {archs[0]!r} (from config.json)"
        )
    return cls


def _remote_class(config: Any, arch: str, folder):
    """The class ``arch`` from the folder's own code, as its ``auto_map`` names it (or ``None``)."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    auto_map = getattr(config, "auto_map", None) or {}
    ref = next(
        (r for r in auto_map.values() if isinstance(r, str) and r.endswith("." + arch)), None
    )
    return get_class_from_dynamic_module(ref, str(folder)) if ref else None


def weights_kwargs(folder: str | os.PathLike, allow_pickle: bool = False) -> dict[str, Any]:
    """``from_pretrained`` keywords that keep pickle weights out unless ``allow_pickle``.

    Safetensors weights are loaded as safetensors only; a pickle-only folder needs
    ``allow_pickle`` and is then unpickled with ``weights_only=True`` (tensors and plain
    containers only: a pickle that would run code fails to load).

    Raises:
        CheckpointError: pickle weights (or a config naming a non-safetensors weight file)
        without ``allow_pickle``.
    """
    from .weights import PICKLE_PATTERNS, SAFE_INDEX, SAFE_SINGLE

    folder = Path(folder)
    explicit = read_config(folder).get("transformers_weights")  # transformers loads it first
    if explicit is not None and not str(explicit).endswith(
        (".safetensors", ".safetensors.index.json")
    ):
        pickles = [str(explicit)]
    elif (folder / SAFE_SINGLE).is_file() or (folder / SAFE_INDEX).is_file():
        return {"use_safetensors": True, "weights_only": True}
    else:
        pickles = sorted(p.name for pat in PICKLE_PATTERNS for p in folder.glob(pat))
    if pickles and not allow_pickle:
        raise CheckpointError(
            f"{folder} holds pickle weights ({pickles[0]}): unpickling can run code from the file; "
            "pass --allow-pickle (allow_pickle=True) if you trust it (loaded with weights_only=True)"
        )
    return {"weights_only": True}


def load_model(
    folder: str | os.PathLike,
    *,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    **kwargs: Any,
):
    """Load the classifier saved in ``folder`` with its own architecture class.

    Args:
        folder: a folder saved with ``save_pretrained``.
        trust_remote_code: allow a model whose config names custom code (``auto_map``) to run it.
        allow_pickle: accept ``pytorch_model*.bin`` weights (unpickled with ``weights_only=True``).
        kwargs: passed to ``from_pretrained``.

    Raises:
        CheckpointError: missing folder/config, pickle weights refused, or weights that do not load.
        UnsupportedModelError: custom code without ``trust_remote_code``; unknown architecture.
    """
    config = load_config(folder, trust_remote_code)
    check_weights(folder)  # a corrupt safetensors file named, not "SafetensorError: ..."
    cls = model_class(config, trust_remote_code=trust_remote_code, folder=folder)
    kwargs = {**weights_kwargs(folder, allow_pickle), **kwargs}
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    try:
        return cls.from_pretrained(str(folder), config=config, **kwargs)
    except pickle.UnpicklingError as e:  # weights_only=True met something other than tensors
        lines = [ln.strip() for ln in str(e).splitlines() if "WeightsUnpickler" in ln]
        why = lines[0] if lines else type(e).__name__
        raise CheckpointError(
            f"refused to unpickle the weights in {folder} ({why}): the file holds more than "
            "tensors and could run code; convert it to safetensors only where you trust it"
        ) from e
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
