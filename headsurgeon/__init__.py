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
    "SurgeryResult": "surgery",
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

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headsurgeon' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__():
    return sorted(__all__)
