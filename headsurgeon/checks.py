"""The old-label check: evaluate parent and child on a holdout, compare, report, enforce.

A child model (the parent with labels added, trained, ...) must still know what the parent knew.
:func:`check_old_labels` asks the child's task (:func:`headsurgeon.tasks.task_for_config`) to
read the holdout, run the passes (ONE batched evaluation pass per model, or a single pass for
both when they differ only in their heads, see :mod:`headsurgeon.predict`) and judge them with
its gate: the accuracy gate of :mod:`headsurgeon.tasks.accuracy` (:class:`CheckReport`: old-label
accuracy before/after, the drop with its 95 % interval, per-label changes, flips, the new
labels' precision/recall/F1) or the entity gate of :mod:`headsurgeon.tasks.token.gate`.
:func:`enforce` raises :class:`GateFailedError` (exit code 3 in the CLI) when the drop is beyond
the tolerance; :func:`record_check` writes the check into the child's ``headsurgeon.json``.

The accuracy gate's names (:func:`compare`, :class:`CheckReport`, :data:`DEFAULT_MAX_DROP`) are
importable from here too. Torch and transformers are imported inside the functions; importing
this module is cheap.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import record as _record
from .api_data import as_examples, is_path, is_table
from .data import Columns
from .errors import GateFailedError
from .gate import Tolerance, check_max_drop
from .legacy import bundles
from .predict import DEFAULT_BATCH_SIZE, predict_logits
from .tasks.accuracy import DEFAULT_MAX_DROP, DEFAULT_MAX_LABEL_DROP, CheckReport, compare

if TYPE_CHECKING:
    from .tasks.base import GateReport

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_DROP",
    "DEFAULT_MAX_LABEL_DROP",
    "CheckReport",
    "check_old_labels",
    "compare",
    "enforce",
    "failure_of",
    "predict_logits",
    "record_check",
]


def failure_of(check: dict[str, Any]) -> str | None:
    """Why a check failed, in one sentence, from its dict (a report's ``to_dict()``, or the
    ``check`` a ``headsurgeon.json`` event records), in its gate's words
    (:func:`headsurgeon.tasks.report_type`); ``None`` when no reason is found.

    Works on partial dicts (an older or hand-written record): what is missing is left out.
    """
    from .tasks import report_type

    return report_type(check).failure_of(check)


def check_old_labels(
    parent,
    child,
    holdout,
    *,
    tolerance: Tolerance | None = None,
    columns: Columns | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    device=None,
    progress: bool = False,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    **legacy: Any,
) -> GateReport:
    """Evaluate parent and child on the holdout and compare them on the parent's labels.

    Args:
        parent, child: model folders (loaded on the CPU, moved in turn to the evaluation
            device), or ``(model, preprocessor)`` pairs (a tokenizer, an image processor...).
        holdout: a file as the CLI reads it (texts; CoNLL/JSONL sentences; a folder or file of
            images or clips) or examples in any form :func:`~headsurgeon.train.train_model`
            takes (:mod:`headsurgeon.api_data`).
        tolerance: the gate's :class:`~headsurgeon.gate.Tolerance` in points (default
            ``max_drop``: the task's, 0.5 pt of old-label accuracy, 1.0 pt of entity F1;
            ``max_label_drop``: not checked).
        columns: the holdout's :class:`~headsurgeon.data.Columns`.
        batch_size, max_length, progress: see :func:`predict_logits`.
        device: where to evaluate; default: CUDA when available, else where the models are.
        trust_remote_code: let folders whose config names custom code (``auto_map``) run it.
        allow_pickle: accept ``pytorch_model*.bin`` folders (unpickled with ``weights_only=True``).
        **legacy: the old ``max_drop=``, ``max_label_drop=``, ``text_column=``...: deprecated
            (a ``DeprecationWarning``), set on ``tolerance`` and ``columns``.

    Returns:
        the child's gate's report: a :class:`CheckReport`, or an ``EntityCheckReport`` for
        token classifiers (:func:`enforce` refuses a failed one).

    Raises:
        DataError: a bad holdout; CheckpointError: a folder without model or preprocessor,
            or pickle without ``allow_pickle``; UnsupportedModelError: custom code without
            ``trust_remote_code``, a model the check would score wrongly; OptionsError: a bad
            tolerance or ``batch_size``, an unknown keyword.

    Example:
        >>> report = check_old_labels("parent/", "child/", "holdout.csv")
        >>> enforce(report)
    """
    from .predict import labels_of_source, model_and_tokenizer

    columns, tolerance = bundles(check_old_labels, legacy, columns, tolerance)
    _task_of(parent)  # refuses a model check would score wrongly (multi-label, ...)
    task = _task_of(child)
    tolerance = _checked(tolerance, task)
    parent_labels, child_labels = labels_of_source(parent), labels_of_source(child)
    examples = _read_holdout(task, holdout, parent_labels, child_labels, columns)
    trust = {"trust_remote_code": trust_remote_code, "allow_pickle": allow_pickle}
    return task.check(
        parent, child, examples, parent_labels, child_labels, tolerance,
        load=lambda source: model_and_tokenizer(source, preprocessor=task.preprocessor, **trust),
        batch_size=batch_size, max_length=max_length, device=_device(device), progress=progress,
    )  # fmt: skip


def _checked(tolerance: Tolerance, task) -> Tolerance:
    """``tolerance`` with the task's ``max_drop`` where it has none, checked.

    Raises:
        OptionsError: a negative or NaN tolerance.
    """
    if tolerance.max_drop is None:
        tolerance = replace(tolerance, max_drop=task.default_max_drop())
    check_max_drop(tolerance.max_drop, tolerance.max_label_drop)
    return tolerance


def _read_holdout(task, holdout, parent_labels, child_labels, columns: Columns) -> list:
    """The holdout's examples as ``task`` reads them: a file, or examples in memory."""
    if not is_path(holdout) or is_table(holdout):  # tuples, dicts, a DataFrame, parquet...
        holdout = as_examples(task, holdout, None, columns, "holdout")
    return task.read_holdout(holdout, parent_labels, child_labels, columns)


def _device(device):
    """Where the check evaluates: ``device``, else CUDA when available, else ``None`` (where
    the models are)."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else None


def _task_of(source):
    """The task of a model folder or a ``(model, tokenizer)`` pair (refusing one ``check``
    does not handle)."""
    from .models import read_config
    from .tasks import task_for, task_for_config

    if isinstance(source, (str, os.PathLike)):
        return task_for_config(read_config(source), str(source))
    return task_for(source[0], "check")


def enforce(report: GateReport, record: dict[str, Any] | None = None) -> None:
    """Raise :class:`GateFailedError` when ``report`` did not pass; do nothing otherwise.

    Args:
        record: the child's ``headsurgeon.json`` record, if any: the advice names only the
            remedies its last ``train`` did not use.

    Raises:
        GateFailedError: naming the drop, the tolerance and the worst labels (``.report`` holds
            the report).
    """
    if report.passed:
        return
    worst = ", ".join(f"{r['label']} ({r['change_pts']:+.1f} pt)" for r in report.worst(3))
    untried = _untried_remedies(record)
    raise GateFailedError(
        report.failure()
        + (f"; worst labels: {worst}" if worst and not report.labels_beyond else "")
        + f"; {report.flipped_to_new} {report.OLD_UNITS} now predict a new label. "
        + (f"Train with {untried}, or raise" if untried else "Raise")
        + " --max-drop/--max-label-drop if this is intended",
        report=report,
    )


def _untried_remedies(record: dict[str, Any] | None) -> str | None:
    """Replay and/or distillation, those the record's last ``train`` did not use (both when it
    records no ``train``; ``None`` when it used both: the advice cannot apply)."""
    trains = [e for e in (record or {}).get("events", []) if e.get("op") == "train"]
    if not trains:
        return "replay or distillation"
    last = trains[-1]
    options = last.get("options") if isinstance(last.get("options"), dict) else {}
    replayed = last.get("replay_examples")
    replayed = replayed > 0 if isinstance(replayed, int) else bool(last.get("replay"))
    untried = [
        name
        for name, used in (
            ("replay (--replay)", replayed),
            ("distillation (--distill)", options.get("distill")),
        )
        if not used
    ]
    return " or ".join(untried) or None


def record_check(
    child: str | os.PathLike,
    report: GateReport,
    *,
    parent: str | os.PathLike,
    holdout: str | os.PathLike | None,
) -> Path:
    """Append a ``check`` event to ``child``'s ``headsurgeon.json`` (created if missing).

    Returns:
        the path of the record written.
    """
    record = _record.read_record(child) or _record.new_record(str(parent), report.parent_labels)
    _record.add_event(
        record,
        "check",
        parent=_record.parent_ref(parent),  # names and hashes, no local paths
        holdout=_record.file_ref(holdout, report.holdout_size) if holdout else None,
        passed=report.passed,
        max_drop=report.max_drop,
        max_label_drop=report.max_label_drop,
        report=report.to_dict(),
    )
    return _record.write_record(child, record)
