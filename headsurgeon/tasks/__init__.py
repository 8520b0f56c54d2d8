"""The task of a classifier (sequence, token, image, audio classification), and the registry of
the tasks ``train``, ``check`` and ``sweep`` handle.

transformers names a model class after its task (``BertForTokenClassification``), and a saved
config keeps that name in ``architectures`` (:func:`task_of`). The task decides what a label is
(a token model's labels are tags of entity types), how data is read and scored: one module per
task implements :class:`~.base.Task` (:mod:`.text`, :mod:`.token`), and one line of
:data:`REGISTRY` (or :func:`register`) makes it known; :func:`task_for` / :func:`task_for_config`
give a model's. The registry holds ``"module:Class"`` strings imported on demand, so this module
imports no task (and no task module imports train, checks or the CLI).

No torch, no transformers: the on-disk path (``inspect``, ``add-label``) imports this.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..errors import OptionsError, UnsupportedModelError

SEQUENCE = "sequence-classification"
TOKEN = "token-classification"
IMAGE = "image-classification"
AUDIO = "audio-classification"
#: a sequence classifier saved with ``problem_type: multi_label_classification`` (``train``,
#: ``check`` and ``sweep`` tell it from a single-label one; surgery does not need to)
MULTILABEL = "multi-label-classification"
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
#: the tasks ``train``, ``check`` and ``sweep`` handle (surgery handles every task): task name →
#: ``"module:Class"`` of its :class:`~.base.Task`, imported when first asked for
REGISTRY: dict[str, str] = {
    SEQUENCE: "headsurgeon.tasks.text:TextTask",
    TOKEN: "headsurgeon.tasks.token.task:TokenTask",
    IMAGE: "headsurgeon.tasks.image.task:ImageTask",
    AUDIO: "headsurgeon.tasks.audio.task:AudioTask",
    MULTILABEL: "headsurgeon.tasks.multilabel.task:MultiLabelTask",
}
#: what every model whose head is found supports, whatever its task
SURGERY_COMMANDS = ("inspect", "add-label", "remove-label", "rename-label", "diff", "push")
#: what a model of a registered task supports too
TRAINING_COMMANDS = ("train", "check", "sweep")


#: ``--problem-type`` choices and the ``problem_type`` each stands for
PROBLEM_TYPES = {"single": "single_label_classification", "multi": MULTI_LABEL}


def override_problem_type(config: dict[str, Any], choice: str | None, what: str) -> str | None:
    """Apply ``--problem-type`` (``single``/``multi``, ``None``: as saved) to a ``config.json``
    dict, in place; return the ``problem_type`` to set on the loaded model (``None``: none).

    Only a model saved without ``problem_type`` is overridden: one saved with another is refused
    (its config says what it was trained as).

    Raises:
        OptionsError: an unknown choice, or one the saved ``problem_type`` contradicts.
    """
    if choice is None:
        return None
    if choice not in PROBLEM_TYPES:
        raise OptionsError(
            f"--problem-type must be one of {', '.join(PROBLEM_TYPES)}, got {choice!r}"
        )
    wanted, saved = PROBLEM_TYPES[choice], problem_type_of(config)
    if saved is not None and saved != wanted:
        raise OptionsError(
            f"{what}: its config.json saves it as {saved!r}, but --problem-type {choice} asks "
            f"for {wanted!r}; --problem-type only decides for a model saved without one"
        )
    config["problem_type"] = wanted
    return wanted


def problem_type_of(config: Any) -> str | None:
    """The config's ``problem_type`` (``None`` when unset), from a dict or a transformers config."""
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    value = get("problem_type")
    return value if isinstance(value, str) else None


def require_trainable(task: str, config: Any, what: str) -> str:
    """Refuse a model that ``train``/``check``/``sweep`` would handle wrongly; return the name
    of the registered task that handles it.

    Single-label sequence (text), image and audio classifiers, multi-label text classifiers
    (``problem_type: multi_label_classification``: :data:`MULTILABEL`) and token classifiers
    are trained and checked. A multi-label image or audio classifier would be trained as
    single-label (a silent wrong result), and unknown tasks (multiple choice, ...) have no data
    reader: refused.

    Args:
        task: the model's task (:func:`task_of` or :func:`task_of_model`).
        config: its config (dict or transformers config), for ``problem_type``.
        what: who refuses, for the message (``"train"``, ``"check"``, a folder name, ...).

    Raises:
        UnsupportedModelError: naming what was found and what is supported.
    """
    problem = problem_type_of(config)
    kind = task.replace("-", " ")
    if task == SEQUENCE and problem == MULTI_LABEL:
        return MULTILABEL
    if task != TOKEN and problem == MULTI_LABEL:
        raise UnsupportedModelError(
            f"{what}: this is a multi-label {kind} model (config problem_type "
            f"'{MULTI_LABEL}'); train, check and sweep support multi-label text classifiers "
            "only, and would train and gate it as single-label (softmax, argmax): refused. "
            "add-label, remove-label, rename-label, inspect, diff and push work on it"
        )
    if task != TOKEN and problem not in (None, "single_label_classification"):
        raise UnsupportedModelError(
            f"{what}: config problem_type is {problem!r}; train, check and sweep support "
            f"single- and multi-label classifiers only ({kind}): refused"
        )
    if task not in REGISTRY:
        raise UnsupportedModelError(
            f"{what}: this is a {kind} model; train, check and sweep support "
            f"{_supported()} only: refused. add-label, remove-label, rename-label, inspect, "
            "diff and push work on it"
        )
    return task


def _supported() -> str:
    """The registered tasks, in words (``sequence classification, token classification``)."""
    return ", ".join(f"{name.replace('-', ' ')} models" for name in REGISTRY if name != MULTILABEL)


def commands_for(task: str, config: Any) -> list[str]:
    """The commands a model of ``task`` (with ``config``) supports: surgery, inspection and
    push for every model, ``train``/``check``/``sweep`` for the tasks they handle
    (:func:`require_trainable`)."""
    try:
        require_trainable(task, config, "inspect")
    except UnsupportedModelError:
        return list(SURGERY_COMMANDS)
    return [*SURGERY_COMMANDS, *TRAINING_COMMANDS]


def register(name: str, target: str) -> None:
    """Make ``train``, ``check`` and ``sweep`` handle the task ``name`` (a name
    :func:`task_of` gives) with the :class:`~.base.Task` class at ``target``
    (``"package.module:Class"``, imported when first asked for)."""
    REGISTRY[name] = target


def task_named(name: str):
    """A :class:`~.base.Task` of the registered task ``name``.

    Raises:
        UnsupportedModelError: ``name`` is not registered.
    """
    target = REGISTRY.get(name)
    if target is None:
        raise UnsupportedModelError(
            f"no task {name!r} is registered for train, check and sweep (registered: "
            f"{', '.join(REGISTRY)})"
        )
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()


def task_for_config(config: Any, what: str = "train"):
    """The :class:`~.base.Task` of a saved model (its config's ``architectures``).

    Args:
        config: a ``config.json`` dict or a transformers config.
        what: who asks, for the refusal's message (``"check"``, a folder name, ...).

    Raises:
        UnsupportedModelError: a multi-label, image, audio or unknown-task model
            (:func:`require_trainable`).
    """
    return task_named(require_trainable(task_of(config), config, what))


def task_for(model: Any, what: str = "train"):
    """The :class:`~.base.Task` of an in-memory model (its class name; see
    :func:`task_for_config`).

    Raises:
        UnsupportedModelError: as :func:`task_for_config`.
    """
    return task_named(require_trainable(task_of_model(model), model.config, what))


def registered() -> list:
    """A :class:`~.base.Task` of every registered task, in registration order."""
    return [task_named(name) for name in REGISTRY]


def report_type(check: Mapping[str, Any]) -> type:
    """The gate report class (:class:`~.base.GateReport`) whose dicts look like ``check`` (a
    report's :meth:`to_dict`, or a recorded check with its ``report`` inside): the one whose
    ``KIND`` is the dict's ``kind``; a dict of no known kind is read as the accuracy gate's."""
    inner = check.get("report")
    kind = {**check, **(inner if isinstance(inner, Mapping) else {})}.get("kind")
    types = list(dict.fromkeys(t.report_type for t in registered()))
    found = next((t for t in types if t.KIND == kind), None)
    return found or next(t for t in types if t.KIND is None)
