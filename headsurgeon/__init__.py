"""headsurgeon: grow the label set of a trained Hugging Face classifier, safely.

The public API is re-exported here lazily, so ``import headsurgeon`` (and the CLI's ``--help``)
does not import torch or transformers.

Example:
    >>> from transformers import AutoModelForSequenceClassification
    >>> import headsurgeon
    >>> model = AutoModelForSequenceClassification.from_pretrained("parent/")
    >>> result = headsurgeon.add_labels(model, ["lost_or_stolen_card"])
    >>> model.save_pretrained("grown/")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "HeadSurgeonError": "errors",
    "HeadNotFoundError": "errors",
    "AmbiguousHeadError": "errors",
    "UnsupportedModelError": "errors",
    "LabelError": "errors",
    "CheckpointError": "errors",
    "ModelMismatchError": "errors",
    "DataError": "errors",
    "OptionsError": "errors",
    "GateFailedError": "errors",
    "HubError": "errors",
    "labels_of": "labels",
    "task_of": "tasks",
    "task_of_model": "tasks",
    "HeadRef": "locate",
    "locate_head": "locate",
    "add_labels": "surgery",
    "remove_labels": "surgery",
    "rename_label": "surgery",
    "SurgeryResult": "surgery",
    "Example": "data",
    "Columns": "data",
    "Tolerance": "gate",
    "read_examples": "data",
    "GateReport": "tasks.base",
    "INIT_POLICIES": "surgery",
    "BIAS_POLICIES": "surgery",
    "push": "hub",
    "PushResult": "hub",
    "build_card": "card",
    "check_old_labels": "checks",
    "compare": "tasks.accuracy",
    "enforce": "checks",
    "predict_logits": "predict",
    "predict_pair": "predict",
    "predict_labels": "predict",
    "MultiLabelReport": "tasks.multilabel.gate",
    "compare_multilabel": "tasks.multilabel.gate",
    "LabelledText": "tasks.multilabel.data",
    "read_labelled": "tasks.multilabel.data",
    "CheckReport": "tasks.accuracy",
    "compare_entities": "tasks.token.gate",
    "EntityCheckReport": "tasks.token.gate",
    "check_old_types": "tasks.token.gate",
    "Sentence": "tasks.token.data",
    "read_sentences": "tasks.token.data",
    "task_for": "tasks",
    "record_check": "checks",
    "plot_report": "plot",
    "add_labels_to_checkpoint": "checkpoint",
    "remove_labels_from_checkpoint": "checkpoint",
    "rename_label_in_checkpoint": "checkpoint",
    "diff_checkpoints": "diff",
    "DiffReport": "diff",
    # headsurgeon.sweep is a module: its verb is headsurgeon.sweep.sweep
    "SweepReport": "sweep",
    "plot_sweep": "sweep",
    # headsurgeon.train is a sub-package: its file-level verb is headsurgeon.train.train
    "TrainOptions": "train",
    "train_model": "train",
    "TrainOutcome": "train",
    "TrainResult": "train",
}

#: sub-packages whose verbs are theirs: ``headsurgeon.train.train``, ``headsurgeon.sweep.sweep``
_MODULES = ("train", "sweep")

__all__ = ["__version__", *_EXPORTS, *_MODULES]

if TYPE_CHECKING:  # what a type checker sees of the lazy names above (kept in step by a test)
    from . import (
        sweep as sweep,
    )
    from . import (
        train as train,
    )
    from .card import (
        build_card as build_card,
    )
    from .checkpoint import (
        add_labels_to_checkpoint as add_labels_to_checkpoint,
    )
    from .checkpoint import (
        remove_labels_from_checkpoint as remove_labels_from_checkpoint,
    )
    from .checkpoint import (
        rename_label_in_checkpoint as rename_label_in_checkpoint,
    )
    from .checks import (
        check_old_labels as check_old_labels,
    )
    from .checks import (
        enforce as enforce,
    )
    from .checks import (
        record_check as record_check,
    )
    from .data import (
        Columns as Columns,
    )
    from .data import (
        Example as Example,
    )
    from .data import (
        read_examples as read_examples,
    )
    from .diff import (
        DiffReport as DiffReport,
    )
    from .diff import (
        diff_checkpoints as diff_checkpoints,
    )
    from .errors import (
        AmbiguousHeadError as AmbiguousHeadError,
    )
    from .errors import (
        CheckpointError as CheckpointError,
    )
    from .errors import (
        DataError as DataError,
    )
    from .errors import (
        GateFailedError as GateFailedError,
    )
    from .errors import (
        HeadNotFoundError as HeadNotFoundError,
    )
    from .errors import (
        HeadSurgeonError as HeadSurgeonError,
    )
    from .errors import (
        HubError as HubError,
    )
    from .errors import (
        LabelError as LabelError,
    )
    from .errors import (
        ModelMismatchError as ModelMismatchError,
    )
    from .errors import (
        OptionsError as OptionsError,
    )
    from .errors import (
        UnsupportedModelError as UnsupportedModelError,
    )
    from .gate import (
        Tolerance as Tolerance,
    )
    from .hub import (
        PushResult as PushResult,
    )
    from .hub import (
        push as push,
    )
    from .labels import (
        labels_of as labels_of,
    )
    from .locate import (
        HeadRef as HeadRef,
    )
    from .locate import (
        locate_head as locate_head,
    )
    from .plot import (
        plot_report as plot_report,
    )
    from .predict import (
        predict_labels as predict_labels,
    )
    from .predict import (
        predict_logits as predict_logits,
    )
    from .predict import (
        predict_pair as predict_pair,
    )
    from .surgery import (
        BIAS_POLICIES as BIAS_POLICIES,
    )
    from .surgery import (
        INIT_POLICIES as INIT_POLICIES,
    )
    from .surgery import (
        SurgeryResult as SurgeryResult,
    )
    from .surgery import (
        add_labels as add_labels,
    )
    from .surgery import (
        remove_labels as remove_labels,
    )
    from .surgery import (
        rename_label as rename_label,
    )
    from .sweep import (
        SweepReport as SweepReport,
    )
    from .sweep import (
        plot_sweep as plot_sweep,
    )
    from .tasks import (
        task_for as task_for,
    )
    from .tasks import (
        task_of as task_of,
    )
    from .tasks import (
        task_of_model as task_of_model,
    )
    from .tasks.accuracy import (
        CheckReport as CheckReport,
    )
    from .tasks.accuracy import (
        compare as compare,
    )
    from .tasks.base import (
        GateReport as GateReport,
    )
    from .tasks.multilabel.data import (
        LabelledText as LabelledText,
    )
    from .tasks.multilabel.data import (
        read_labelled as read_labelled,
    )
    from .tasks.multilabel.gate import (
        MultiLabelReport as MultiLabelReport,
    )
    from .tasks.multilabel.gate import (
        compare_multilabel as compare_multilabel,
    )
    from .tasks.token.data import (
        Sentence as Sentence,
    )
    from .tasks.token.data import (
        read_sentences as read_sentences,
    )
    from .tasks.token.gate import (
        EntityCheckReport as EntityCheckReport,
    )
    from .tasks.token.gate import (
        check_old_types as check_old_types,
    )
    from .tasks.token.gate import (
        compare_entities as compare_entities,
    )
    from .train import (
        TrainOptions as TrainOptions,
    )
    from .train import (
        TrainOutcome as TrainOutcome,
    )
    from .train import (
        TrainResult as TrainResult,
    )
    from .train import (
        train_model as train_model,
    )


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headsurgeon' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
