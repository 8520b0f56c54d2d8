"""Where a model in memory comes from: its labels before surgery, and the surgery it went through.

On disk the record ``headsurgeon.json`` says which labels a model had before headsurgeon first
changed it (``parent_labels``) and what was done to it (:mod:`headsurgeon.record`). A model
grown in memory (:func:`headsurgeon.add_labels`) has no file yet, so the surgery functions
note the same facts on the model object (:data:`ATTRIBUTE`: ``parent_labels`` and the events
to record), and :func:`parent_labels` reads them back: the protected labels of
:func:`~headsurgeon.train.train_model` default to them, and
:meth:`~headsurgeon.train.TrainOutcome.save` records the events. A model loaded from a folder
that has a record (``from_pretrained`` keeps the folder in ``name_or_path``) answers from it.

No torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import labels as _labels
from . import record as _record

#: the attribute surgery in memory sets on the model (a dict: ``parent_labels``, ``events``)
ATTRIBUTE = "headsurgeon_lineage"


def mark_surgery(model: Any, op: str, before: list[str], **fields: Any) -> None:
    """Note on ``model`` the event ``op`` (``add-label``, ``remove-label``, ``rename-label``,
    ``train``; ``fields``: what the record's event holds). ``before``: its labels before
    surgery (the old labels of a ``train``); the first event's are its parent labels, which a
    rename or removal renames or drops as the record does
    (:func:`~headsurgeon.record.follow_labels`)."""
    lineage = getattr(model, ATTRIBUTE, None)
    if not isinstance(lineage, dict):
        lineage = {"parent_labels": list(before), "events": []}
        setattr(model, ATTRIBUTE, lineage)
    if op in ("remove-label", "rename-label"):
        _record.follow_labels(lineage, before, _labels.labels_of(model.config))
    lineage["events"].append({"op": op, **fields})


def lineage_of(model: Any) -> dict[str, Any] | None:
    """What surgery in memory noted on ``model`` (``None``: none)."""
    lineage = getattr(model, ATTRIBUTE, None)
    return lineage if isinstance(lineage, dict) else None


def source_folder(model: Any) -> Path | None:
    """The local folder ``model`` was loaded from (``None``: built in code, or from the Hub)."""
    name = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
    if not isinstance(name, str | os.PathLike) or not name:
        return None
    folder = Path(name)
    return folder if (folder / "config.json").is_file() else None


def source_record(model: Any) -> dict[str, Any] | None:
    """The record of the folder ``model`` was loaded from, if it has one."""
    folder = source_folder(model)
    return _record.read_record(folder) if folder is not None else None


def parent_labels(model: Any) -> tuple[list[str], str] | None:
    """The labels ``model`` had before headsurgeon's surgery that it still has, and where that
    is known from: the record of the folder it was loaded from (``headsurgeon.json``), else
    what surgery in memory noted (``add_labels``); ``None`` when neither says."""
    labels = _labels.labels_of(model.config)
    record = source_record(model)
    if record is not None and record.get("parent_labels"):
        where = f"the record of {source_folder(model)} ({_record.RECORD_NAME})"
        return [n for n in record["parent_labels"] if n in labels], where
    lineage = lineage_of(model)
    if lineage is not None:
        return [n for n in lineage["parent_labels"] if n in labels], "add_labels in memory"
    return None
