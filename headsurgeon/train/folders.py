"""``train``: from a model folder and data files to a gated, atomically written model folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import labels as _labels
from .. import record as _record
from ..atomic import check_output
from ..data import LABEL_COLUMN, TEXT_COLUMN, check_labels, read_examples
from ..errors import GateFailedError
from .core import train_model
from .options import TrainOptions


@dataclass
class TrainResult:
    """What :func:`train` did: the output folder (``None`` when the gate refused), the check
    report, the options and the stats of :class:`TrainOutcome`."""

    output: Path | None
    report: Any
    options: TrainOptions
    stats: dict[str, Any]
    added: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": None if self.output is None else str(self.output),
            "options": self.options.to_dict(),
            "added": self.added,
            **self.stats,
            "check": None if self.report is None else self.report.to_dict(),
        }


def train(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    replay: str | os.PathLike | None = None,
    holdout: str | os.PathLike | None = None,
    options: TrainOptions | None = None,
    add: bool = False,
    force: bool = False,
    max_drop: float | None = None,
    max_label_drop: float | None = None,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    head_path: str | Sequence[str] | None = None,
) -> TrainResult:
    """Train the model saved in ``model_dir`` on ``data`` and write it to ``output``, gated.

    Old labels are the record's ``parent_labels`` (``headsurgeon.json``) when the model has
    one, else every label of the model; the others are new. With ``holdout``, the parent (the
    model in ``model_dir``, restricted to the old labels) and the trained child are compared
    on it; a drop beyond ``max_drop`` raises :class:`GateFailedError` and writes nothing,
    unless ``force``, which writes the model and records the failed check.

    Args:
        model_dir: a folder saved with ``save_pretrained`` (with its tokenizer).
        data: training file (``.csv``/``.tsv``/``.jsonl``) of the new labels' examples.
        output: a new (or empty) folder; written atomically, tokenizer files carried over.
        replay: file of old labels' examples to replay; holdout: file to check on.
        options: :class:`TrainOptions`.
        add: first add the data's labels the model does not have (imprinted from their examples).
        force: write even when the check fails (the failure is recorded).
        max_drop: check tolerance in points (default ``checks.DEFAULT_MAX_DROP``).
        max_label_drop: per-label check tolerance in points (default: not checked).
        text_column, label_column: column names of the data files.
        head_path: explicit head path(s).

    Returns:
        a :class:`TrainResult`.

    Raises:
        DataError: unreadable files or labels the model does not have (without ``add``).
        CheckpointError: ``output`` exists and is not empty, is ``model_dir`` or inside it.
        GateFailedError: the old-label check failed (``.report`` holds the report).

    Example:
        >>> result = train("grown/", "new.csv", "tuned/", replay="old.csv", holdout="test.csv")
        >>> result.report.drop_pts
        0.1
    """
    from transformers import AutoTokenizer

    from ..checkpoint import write_model
    from ..models import load_model, read_config
    from ..surgery import add_labels

    options = options or TrainOptions()
    src, output = Path(model_dir), Path(output)
    check_output(src, output)  # the check every writing command shares
    read = {"text_column": text_column, "label_column": label_column}
    examples = read_examples(data, **read)
    replayed = read_examples(replay, **read) if replay else []
    held = read_examples(holdout, **read) if holdout else None
    labels = _labels.labels_of(read_config(src))
    record = _record.record_for(src, labels)
    added = [n for n in dict.fromkeys(e.label for e in examples) if n not in labels] if add else []
    check_labels(examples, labels + added, source=str(data))

    model = load_model(src)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    if added:
        add_labels(model, added, init="mean", head_path=head_path)
    labels = _labels.labels_of(model.config)
    old = [n for n in record["parent_labels"] if n in labels] or labels
    trained_before = [
        n
        for event in record["events"]
        if event.get("op") == "train"
        for n in event.get("trained_labels", [])
    ]
    outcome = train_model(
        model,
        tokenizer,
        examples,
        replay=replayed,
        holdout=held,
        options=options,
        old_labels=old,
        trained_labels=trained_before,
        max_drop=max_drop,
        max_label_drop=max_label_drop,
        head_path=head_path,
    )
    result = TrainResult(None, outcome.report, options, outcome.stats, added)
    if added:
        _record.add_event(record, "add-label", labels=added, init="imprint", by="train --add")
    event = {
        "options": options.to_dict(),
        "data": str(data),
        "replay": replay and str(replay),
        "holdout": holdout and str(holdout),
        "trained_labels": [n for n in labels if n not in set(old)],
        **{k: v for k, v in outcome.stats.items() if k != "seeds"},
        "seeds": [{k: v for k, v in r.items() if k != "history"} for r in outcome.stats["seeds"]],
    }
    if outcome.report is not None:
        event["check"] = {"passed": outcome.report.passed, **outcome.report.to_dict()}
    _record.add_event(record, "train", **event)
    if outcome.report is not None and not outcome.report.passed and not force:
        raise GateFailedError(
            f"{outcome.report.failure()}: {output} not written; "
            "add replay (--replay), keep the backbone frozen, or --force to write it anyway",
            report=outcome.report,
        )
    model.to("cpu")
    result.output = write_model(model, record, src, output)
    return result
