"""What one ``train_model`` call takes, read and checked before any model work.

- the examples, in any usual form (:func:`headsurgeon.api_data.as_examples`: the task's own,
  tuples, dicts, a DataFrame, a ``datasets.Dataset``, a file), checked against the model's
  labels;
- the old labels (protected and gated): given, else the labels the model had before
  headsurgeon's surgery (:func:`headsurgeon.lineage.parent_labels`), else (a model with no
  such record) the labels with no example in the data, with a warning;
- examples of old labels only found in the data, moved to the replay with a warning: an old
  label never stops being protected because the new data holds one of its examples;
- what the record says of the data (:func:`~.outcome.memory_ref`,
  :func:`~headsurgeon.record.file_ref`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import lineage
from .. import record as _record
from ..api_data import as_examples, is_path
from ..data import Columns
from ..errors import LabelError, OptionsError
from .outcome import memory_ref

logger = logging.getLogger(__name__)


@dataclass
class RunInputs:
    """The examples of one run, the old labels and how the record names the data."""

    data: list
    replay: list
    holdout: list | None
    old_labels: list[str]
    refs: tuple[Any, Any, Any]


def read_inputs(task, model, labels, data, replay, holdout, old_labels, columns) -> RunInputs:
    """The examples of ``data``/``replay``/``holdout`` for ``task``, checked against the
    model's ``labels``; the old labels; old-only examples of ``data`` moved to the replay.

    Raises:
        DataError: a bad row or file, a label the model does not have.
        LabelError: ``old_labels`` naming a label the model does not have.
    """
    columns = Columns.of(columns)
    given = {"data": data, "replay": replay, "holdout": holdout}
    read = {
        role: None if obj is None else as_examples(task, obj, labels, columns, role)
        for role, obj in given.items()
    }
    data_x, replay_x, holdout_x = read["data"], read["replay"] or [], read["holdout"]
    task.check_data(data_x, replay_x, holdout_x, labels)
    old = old_labels_of(model, task, labels, data_x, old_labels)
    data_x, moved = old_only(task, data_x, old)
    refs = tuple(data_ref(given[role], examples)
                 for role, examples in (("data", data_x + moved), ("replay", replay_x),
                                        ("holdout", holdout_x)))  # fmt: skip
    return RunInputs(data_x, replay_x + moved, holdout_x, old, refs)


def old_labels_of(model, task, labels: list[str], data: list, old_labels) -> list[str]:
    """The protected labels, in id order (see the module docstring).

    Raises:
        OptionsError: ``old_labels`` is a string; LabelError: it names an unknown label.
    """
    if old_labels is not None:
        if isinstance(old_labels, str):
            raise OptionsError(f"`old_labels` must be a list of label names, got {old_labels!r}")
        unknown = [n for n in old_labels if n not in labels]
        if unknown:
            raise LabelError(
                f"`old_labels` names label(s) the model does not have: {', '.join(unknown)} "
                f"(its labels: {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''})"
            )
        return [n for n in labels if n in set(old_labels)]
    found = lineage.parent_labels(model)
    if found is not None and found[0]:
        return found[0]
    seen = set().union(*(task.labels_in(e) for e in data)) if data else set()
    old = [n for n in labels if n not in seen]
    logger.warning(
        "old_labels not given and nothing records the labels the model had before surgery "
        "(no %s where it was loaded from, no add_labels in this process): the labels with "
        "examples in data are taken as new (%s); pass old_labels= to protect any of them",
        _record.RECORD_NAME,
        ", ".join(n for n in labels if n in seen),
    )
    return old


def old_only(task, data: list, old: Sequence[str]) -> tuple[list, list]:
    """``(data, moved)``: the examples of ``data`` that teach old labels only (no new one)
    moved out, with a warning naming their labels; they join the replay."""
    old_set = set(old)
    moved = [e for e in data if (found := task.labels_in(e)) and found <= old_set]
    if not moved:
        return data, []
    counts = Counter(n for e in moved for n in task.labels_in(e))
    shown = ", ".join(f"{n} ({c})" for n, c in counts.most_common(10))
    logger.warning(
        "data holds %d example(s) of old labels only (%s%s): they are used as replay, and "
        "those labels stay protected and checked",
        len(moved),
        shown,
        " ..." if len(counts) > 10 else "",
    )
    ids = {id(e) for e in moved}
    return [e for e in data if id(e) not in ids], moved


def data_ref(given, examples: list | None):
    """How the record names one of the run's inputs: a file by name and hash, examples in
    memory by their form and a hash of what they hold."""
    if given is None or examples is None:
        return None
    if is_path(given):
        return _record.file_ref(given, len(examples))
    keys = [repr(e) for e in examples]  # the examples as given (no file is read again)
    return memory_ref(type(given).__name__, keys)
