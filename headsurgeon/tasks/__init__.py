"""The task of a classifier (sequence, token, image, audio classification), from its class name.

transformers names a model class after its task (``BertForTokenClassification``), and a saved
config keeps that name in ``architectures``. The task decides what a label is (a token model's
labels are tags of entity types) and, later, how data is read and scored.

No torch, no transformers: the on-disk path (``inspect``, ``add-label``) imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UnsupportedModelError

SEQUENCE = "sequence-classification"
TOKEN = "token-classification"
IMAGE = "image-classification"
AUDIO = "audio-classification"
MULTIPLE_CHOICE = "multiple-choice"
UNKNOWN = "unknown"

#: class-name endings of each task (``...ForImageClassificationWithTeacher`` is an image model)
_MARKERS = (
    ("ForTokenClassification", TOKEN),
    ("ForSequenceClassification", SEQUENCE),
    ("ForImageClassification", IMAGE),
    ("ForAudioClassification", AUDIO),
    ("ForMultipleChoice", MULTIPLE_CHOICE),
)
#: speech models whose audio classifier is named ``...ForSequenceClassification``
AUDIO_MODEL_TYPES = frozenset(
    {
        "data2vec-audio",
        "hubert",
        "sew",
        "sew-d",
        "unispeech",
        "unispeech-sat",
        "wav2vec2",
        "wav2vec2-bert",
        "wav2vec2-conformer",
        "wavlm",
    }
)


def task_of_name(name: str | None, model_type: str | None = None) -> str:
    """The task of the model class called ``name`` (``"unknown"`` when the name says none).

    Args:
        name: a class name such as ``"BertForTokenClassification"``.
        model_type: the config's ``model_type``; tells a speech model's ``...ForSequenceClassification``
            (an audio classifier) from a text one.

    Example:
        >>> task_of_name("DeiTForImageClassificationWithTeacher")
        'image-classification'
    """
    if not isinstance(name, str):
        return UNKNOWN
    found = next((task for marker, task in _MARKERS if marker in name), UNKNOWN)
    if found == SEQUENCE and model_type in AUDIO_MODEL_TYPES:
        return AUDIO
    return found


def task_of(config: Any) -> str:
    """The task of a saved model, from its config's ``architectures`` (``"unknown"`` without).

    Args:
        config: a ``config.json`` dict or a transformers config.
    """
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    architectures = get("architectures")
    name = architectures[0] if isinstance(architectures, (list, tuple)) and architectures else None
    return task_of_name(name, get("model_type"))


def task_of_model(model: Any) -> str:
    """The task of an in-memory model, from its class name (a config built in code often has no
    ``architectures``)."""
    config = getattr(model, "config", None)
    return task_of_name(type(model).__name__, getattr(config, "model_type", None))


#: ``config.problem_type`` of a multi-label classifier (transformers trains it with BCE)
MULTI_LABEL = "multi_label_classification"
#: the tasks ``train``, ``check`` and ``sweep`` handle today (surgery handles every task)
TRAINABLE = (SEQUENCE, TOKEN)


def problem_type_of(config: Any) -> str | None:
    """The config's ``problem_type`` (``None`` when unset), from a dict or a transformers config."""
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    value = get("problem_type")
    return value if isinstance(value, str) else None


def require_trainable(task: str, config: Any, what: str) -> str:
    """Refuse a model that ``train``/``check``/``sweep`` would handle wrongly; return its task.

    Sequence classifiers (single-label) and token classifiers are trained and checked; a
    multi-label classifier would be trained with softmax cross-entropy and gated on argmax
    accuracy (a silent wrong result), and image, audio or unknown tasks have no data reader.

    Args:
        task: the model's task (:func:`task_of` or :func:`task_of_model`).
        config: its config (dict or transformers config), for ``problem_type``.
        what: who refuses, for the message (``"train"``, ``"check"``, a folder name, ...).

    Raises:
        UnsupportedModelError: naming what was found and what is supported.
    """
    problem = problem_type_of(config)
    if task == SEQUENCE and problem == MULTI_LABEL:
        raise UnsupportedModelError(
            f"{what}: this is a multi-label classifier (config problem_type "
            f"'{MULTI_LABEL}'); train, check and sweep support single-label sequence "
            "classifiers and token classifiers only, and would train and gate it as "
            "single-label (softmax, argmax): refused. add-label, remove-label, rename-label, "
            "inspect, diff and push work on it"
        )
    if task == SEQUENCE and problem not in (None, "single_label_classification"):
        raise UnsupportedModelError(
            f"{what}: config problem_type is {problem!r}; train, check and sweep support "
            "single-label classifiers only: refused"
        )
    if task not in TRAINABLE:
        raise UnsupportedModelError(
            f"{what}: this is a {task.replace('-', ' ')} model; train, check and sweep support "
            "sequence (text) classifiers and token classifiers (NER) only: refused. add-label, "
            "remove-label, rename-label, inspect, diff and push work on it"
        )
    return task
