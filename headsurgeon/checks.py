"""The old-label gate: evaluate parent and child on a holdout, compare, report, enforce.

A child model (the parent with labels added, trained, ...) must still know what the parent knew.
:func:`check_old_labels` runs ONE batched evaluation pass per model over the holdout examples
(a single pass for both when they differ only in their heads, see :mod:`headsurgeon.predict`), then :func:`compare` turns the two logit matrices into a :class:`CheckReport`: old-label accuracy
before/after, the drop in percentage points, per-label changes, how many old examples flipped
(and how many of those to a new label), the drop's 95 % interval and exact McNemar p-value from
the paired predictions (:mod:`headsurgeon.uncertainty`: noise or regression), and the new
labels' precision/recall/F1.
:func:`enforce` raises :class:`GateFailedError` (exit code 3 in the CLI) when the drop is beyond
the tolerance.

Predictions are compared by label NAME, not by class id, so a child whose labels were re-ordered
or removed is judged fairly. An old label the child no longer has can never be predicted by it:
the holdout examples of that label count as wrong after (remove them from the holdout if the
removal was intended).

Torch and transformers are imported inside the functions; importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import record as _record
from .data import LABEL_COLUMN, TEXT_COLUMN, Example, check_labels, read_examples
from .errors import DataError, GateFailedError, OptionsError
from .predict import DEFAULT_BATCH_SIZE, predict_logits, predict_pair
from .uncertainty import PairedDrop, paired_drop

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

logger = logging.getLogger(__name__)

#: largest allowed drop of old-label accuracy, in percentage points
DEFAULT_MAX_DROP = 0.5
#: largest allowed drop of one old label's accuracy (recall), in points; None: not checked
DEFAULT_MAX_LABEL_DROP: float | None = None
#: changed labels shown by :meth:`CheckReport.render`
DEFAULT_SHOW = 10
#: a passed report without a per-label tolerance points at ``--max-label-drop`` when one old
#: label lost at least this many points (the aggregate can hide it)
LABEL_HINT_PTS = 10.0


def failure_of(check: dict[str, Any]) -> str | None:
    """Why a check failed, in one sentence, from its dict (:meth:`CheckReport.to_dict`, or the
    ``check`` a ``headsurgeon.json`` event records); ``None`` when no reason is found.

    Works on partial dicts (an older or hand-written record): what is missing is left out. An
    entity check's dict (``kind == "entities"``, token classifiers) is read by
    :func:`headsurgeon.entity_check.entity_failure_of`.
    """
    if check.get("kind") == "entities":
        from .entity_check import entity_failure_of

        return entity_failure_of(check)
    num = (int, float)
    reasons = []
    drop, max_drop = check.get("drop_pts"), check.get("max_drop")
    if isinstance(drop, num) and (not isinstance(max_drop, num) or drop > max_drop):
        text = f"old-label accuracy dropped {drop:.2f} pt"
        keys = ("accuracy_before", "accuracy_after", "n_old_examples")
        before, after, n = (check.get(k) for k in keys)
        if isinstance(before, num) and isinstance(after, num) and isinstance(n, int):
            text += f" ({before:.2%} -> {after:.2%} on {n} holdout examples)"
        if isinstance(max_drop, num):
            text += f", more than the {max_drop:g} pt allowed"
        reasons.append(text)
    beyond = beyond_reason(check, "old label(s) dropped more than {limit} allowed per label")
    if beyond:
        reasons.append(beyond)
    return "; ".join(reasons) or None


def beyond_reason(check: dict[str, Any], phrase: str) -> str | None:
    """The per-label part of a failure, from a check's dict: how many labels went beyond the
    per-label tolerance and the worst three (``phrase`` holds ``{limit}``), or ``None``."""
    num = (int, float)
    beyond = [str(n) for n in check.get("labels_beyond") or []]
    if not beyond:
        return None
    rows = {
        str(r.get("label")): r.get("change_pts")
        for r in check.get("per_label") or []
        if isinstance(r, dict)
    }
    shown = ", ".join(
        f"{n} ({rows[n]:+.1f} pt)" if isinstance(rows.get(n), num) else n for n in beyond[:3]
    )
    more = f" and {len(beyond) - 3} more" if len(beyond) > 3 else ""
    limit = check.get("max_label_drop")
    limit = f"the {limit:g} pt" if isinstance(limit, num) else "the tolerance"
    return f"{len(beyond)} {phrase.format(limit=limit)}: {shown}{more}"


@dataclass
class CheckReport:
    """What the gate found. Accuracies are fractions; ``*_pts`` are percentage points.

    Attributes:
        parent_labels, child_labels: the two models' labels, in class-id order.
        old_labels: the parent's labels (what must not be forgotten).
        new_labels: child labels the parent does not have.
        removed_labels: old labels the child does not have (their examples are wrong after).
        n_old_examples, n_new_examples: holdout examples whose gold label is old / new.
        accuracy_before, accuracy_after: parent's and child's accuracy on the old examples.
        drop_pts: ``100 * (accuracy_before - accuracy_after)``; negative means the child improved.
        per_label: per old label with holdout support, worst change first:
            ``{"label", "support", "before", "after", "change_pts"}`` (before/after are the
            label's recall; ``change_pts = 100 * (after - before)``).
        flipped: old examples whose predicted label name changed.
        flipped_to_new: of those, how many the child now predicts as a new label.
        flipped_wrong: old examples right before and wrong after.
        flipped_fixed: old examples wrong before and right after.
        new_label_metrics: ``{name: {"precision", "recall", "f1", "support", "predicted"}}`` over
            the whole holdout (precision counts every example predicted as that label; 0.0 when
            nothing was predicted or the label has no support, as scikit-learn's zero_division=0).
        max_drop: the tolerance in points.
        max_label_drop: the per-label tolerance in points (``None``: not checked).
        labels_beyond: old labels whose ``change_pts`` is below ``-max_label_drop``.
        passed: ``drop_pts <= max_drop`` and no label beyond ``max_label_drop``.
        drop_uncertainty: the drop's 95 % interval (seeded paired bootstrap over the old
            examples), the exact McNemar p-value on ``flipped_wrong`` against ``flipped_fixed``
            and whether the drop is ``within noise``, ``beyond noise`` or ``borderline`` (see
            :mod:`headsurgeon.uncertainty`). It informs; ``passed`` is still the tolerance.
            ``None`` only in a report built without :func:`compare`.
    """

    parent_labels: list[str]
    child_labels: list[str]
    old_labels: list[str]
    new_labels: list[str]
    removed_labels: list[str]
    n_old_examples: int
    n_new_examples: int
    accuracy_before: float
    accuracy_after: float
    drop_pts: float
    per_label: list[dict[str, Any]]
    flipped: int
    flipped_to_new: int
    flipped_wrong: int
    flipped_fixed: int
    new_label_metrics: dict[str, dict[str, float]]
    max_drop: float
    max_label_drop: float | None
    labels_beyond: list[str]
    passed: bool
    drop_uncertainty: PairedDrop | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-able data."""
        return asdict(self)

    def worst(self, n: int = 3) -> list[dict[str, Any]]:
        """Return up to ``n`` old labels that lost the most (only those that lost)."""
        return [row for row in self.per_label if row["change_pts"] < 0][:n]

    def failure(self) -> str | None:
        """Why the check failed, in one sentence (``None`` when it passed)."""
        return None if self.passed else failure_of(self.to_dict())

    def _most_changed(self, show: int) -> list[dict[str, Any]]:
        """Up to ``show`` changed old labels: those that lost, worst first, then those that
        gained, largest gain first."""
        lost = [r for r in self.per_label if r["change_pts"] < 0]
        gained = [r for r in self.per_label if r["change_pts"] > 0][::-1]
        return (lost + gained)[:show]

    def _label_hint(self) -> str | None:
        """A passed check whose per-label losses are not gated, where one old label lost at
        least :data:`LABEL_HINT_PTS`: say so, and how to gate it (``None`` otherwise)."""
        worst = self.worst(1)
        if not (self.passed and self.max_label_drop is None and worst):
            return None
        if -worst[0]["change_pts"] < LABEL_HINT_PTS:
            return None
        return (
            f"note: old label {worst[0]['label']} lost {-worst[0]['change_pts']:.1f} pt; "
            "per-label losses are not gated (--max-label-drop PTS refuses any one old label "
            "losing more than PTS)"
        )

    def render(self, show: int = DEFAULT_SHOW) -> str:
        """Return a readable report: summary, up to ``show`` changed old labels (losses worst
        first, then gains largest first), new labels."""
        verdict = "PASSED" if self.passed else "FAILED"
        per_label = "" if self.max_label_drop is None else f", {self.max_label_drop:g} pt per label"
        lines = [
            f"old-label check {verdict}: accuracy on {self.n_old_examples} holdout examples of "
            f"{len(self.old_labels)} old labels {self.accuracy_before:.2%} -> "
            f"{self.accuracy_after:.2%} (drop {self.drop_pts:.2f} pt, allowed {self.max_drop:g} pt"
            f"{per_label})",
        ]
        if self.drop_uncertainty is not None:
            lines.append(self.drop_uncertainty.describe())
        lines += [
            f"flipped predictions: {self.flipped} of {self.n_old_examples} "
            f"({self.flipped_to_new} to a new label, {self.flipped_wrong} right -> wrong, "
            f"{self.flipped_fixed} wrong -> right)",
        ]
        if self.removed_labels:
            lines.append(f"old labels the child lacks: {', '.join(self.removed_labels)}")
        if self.labels_beyond:
            lines.append(
                f"old labels beyond the per-label tolerance: {', '.join(self.labels_beyond)}"
            )
        hint = self._label_hint()
        if hint:
            lines.append(hint)
        changed = [row for row in self.per_label if row["change_pts"] != 0]
        shown = self._most_changed(show)
        if shown:
            width = max(len("old label"), *(len(r["label"]) for r in shown))
            lines.append(f"{'old label':<{width}}  support  before   after  change")
            for r in shown:
                lines.append(
                    f"{r['label']:<{width}}  {r['support']:>7}  {r['before']:>6.1%}  "
                    f"{r['after']:>6.1%}  {r['change_pts']:+.1f} pt"
                )
        rest = len(changed) - len(shown)
        unchanged = len(self.per_label) - len(changed)
        lines.append(
            f"{len(changed)} old label(s) changed"
            + (f" ({rest} more not shown)" if rest else "")
            + f", {unchanged} unchanged"
        )
        if self.new_label_metrics:
            width = max(len("new label"), *(len(n) for n in self.new_label_metrics))
            lines.append(f"{'new label':<{width}}  support  predicted  precision  recall     f1")
            for name, m in self.new_label_metrics.items():
                lines.append(
                    f"{name:<{width}}  {m['support']:>7}  {m['predicted']:>9}  "
                    f"{m['precision']:>9.3f}  {m['recall']:>6.3f}  {m['f1']:>5.3f}"
                )
        return "\n".join(lines)


def compare(
    parent_logits,
    child_logits,
    examples: Sequence[Example | str],
    parent_labels: Sequence[str],
    child_labels: Sequence[str],
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    max_label_drop: float | None = DEFAULT_MAX_LABEL_DROP,
) -> CheckReport:
    """Compare the parent's and the child's predictions on the same holdout examples.

    Pure: works from logits, so training code that caches features can call it directly.
    Predictions are compared by label name (see the module docstring for removed labels).

    Args:
        parent_logits, child_logits: ``[n, len(parent_labels)]`` and ``[n, len(child_labels)]``
            (tensors or array-likes), row ``i`` for ``examples[i]``.
        examples: the holdout :class:`Example` s, or just their gold label names.
        parent_labels, child_labels: label names in class-id order.
        max_drop: tolerated drop of old-label accuracy, in percentage points.
        max_label_drop: tolerated drop of any one old label's accuracy (its recall on its
            holdout examples), in points; ``None``: only the aggregate is checked.

    Returns:
        a :class:`CheckReport`, with the drop's paired interval and exact test
        (:func:`headsurgeon.uncertainty.paired_drop`; about a millisecond).

    Raises:
        OptionsError: logits whose shapes do not match the examples or the labels, or a
            negative ``max_drop`` or ``max_label_drop``.
        DataError: a gold label neither model has, or no example of an old label.

    Example:
        >>> report = compare(parent_logits, child_logits, holdout, parent_labels, child_labels)
        >>> report.drop_pts, report.passed
        (0.25, True)
    """
    import torch

    check_max_drop(max_drop, max_label_drop)
    gold = [getattr(e, "label", e) for e in examples]
    parent_logits, child_logits = torch.as_tensor(parent_logits), torch.as_tensor(child_logits)
    for name, logits, labels in (
        ("parent", parent_logits, parent_labels),
        ("child", child_logits, child_labels),
    ):
        if tuple(logits.shape) != (len(gold), len(labels)):
            raise OptionsError(
                f"{name} logits have shape {tuple(logits.shape)}, expected "
                f"({len(gold)}, {len(labels)}) for {len(gold)} examples and {len(labels)} labels"
            )
    parent_labels, child_labels = list(parent_labels), list(child_labels)
    olds = _old_indices(gold, parent_labels, child_labels, "the holdout")
    before = [parent_labels[i] for i in parent_logits.argmax(-1).tolist()]
    after = [child_labels[i] for i in child_logits.argmax(-1).tolist()]
    new = [n for n in child_labels if n not in set(parent_labels)]
    right_before = sum(before[i] == gold[i] for i in olds)
    right_after = sum(after[i] == gold[i] for i in olds)
    flips = [i for i in olds if before[i] != after[i]]
    drop_pts = 100.0 * (right_before - right_after) / len(olds)
    per_label = _per_label(gold, before, after, olds, parent_labels)
    flipped_wrong = sum(before[i] == gold[i] != after[i] for i in flips)
    flipped_fixed = sum(before[i] != gold[i] == after[i] for i in flips)
    beyond = (
        []
        if max_label_drop is None
        else [r["label"] for r in per_label if -r["change_pts"] > max_label_drop]
    )
    return CheckReport(
        parent_labels=parent_labels,
        child_labels=child_labels,
        old_labels=list(parent_labels),
        new_labels=new,
        removed_labels=[n for n in parent_labels if n not in set(child_labels)],
        n_old_examples=len(olds),
        n_new_examples=sum(g in set(new) for g in gold),
        accuracy_before=right_before / len(olds),
        accuracy_after=right_after / len(olds),
        drop_pts=drop_pts,
        per_label=per_label,
        flipped=len(flips),
        flipped_to_new=sum(after[i] in set(new) for i in flips),
        flipped_wrong=flipped_wrong,
        flipped_fixed=flipped_fixed,
        new_label_metrics={n: _prf(gold, after, n) for n in new},
        max_drop=float(max_drop),
        max_label_drop=None if max_label_drop is None else float(max_label_drop),
        labels_beyond=beyond,
        passed=drop_pts <= max_drop and not beyond,
        drop_uncertainty=paired_drop(len(olds), flipped_wrong, flipped_fixed),
    )


def _old_indices(gold: list[str], parent_labels, child_labels, source: str) -> list[int]:
    """Validate the gold labels; return the indices of the old-label examples."""
    check_labels(
        [Example("", g) for g in gold],
        list(parent_labels) + list(child_labels),
        source=source,
        only_known="a holdout must hold only the parent's and the child's labels",
    )
    old = set(parent_labels)
    olds = [i for i, g in enumerate(gold) if g in old]
    if not olds:
        found = sorted(set(gold))
        raise DataError(
            f"{source} has no example of an old label (it has {len(gold)} example(s) of "
            f"{', '.join(found[:5]) or 'no label'}{', ...' if len(found) > 5 else ''}): "
            "add held-out examples of the parent's labels"
        )
    return olds


def check_max_drop(max_drop: float, max_label_drop: float | None = None) -> None:
    """Refuse a negative or NaN tolerance (in points) before any work.

    Raises:
        OptionsError: naming the value found.
    """
    if not max_drop >= 0:  # also refuses NaN
        raise OptionsError(f"max_drop must be >= 0 percentage points, got {max_drop}")
    if max_label_drop is not None and not max_label_drop >= 0:
        raise OptionsError(f"max_label_drop must be >= 0 percentage points, got {max_label_drop}")


def _per_label(gold, before, after, olds, labels) -> list[dict[str, Any]]:
    rows = []
    for label in labels:
        idx = [i for i in olds if gold[i] == label]
        if not idx:
            continue
        b = sum(before[i] == label for i in idx)
        a = sum(after[i] == label for i in idx)
        rows.append(
            {
                "label": label,
                "support": len(idx),
                "before": b / len(idx),
                "after": a / len(idx),
                "change_pts": 100.0 * (a - b) / len(idx),
            }
        )
    return sorted(rows, key=lambda r: r["change_pts"])  # stable: ties keep id order


def _prf(gold, predicted, label: str) -> dict[str, float]:
    support = sum(g == label for g in gold)
    n_pred = sum(p == label for p in predicted)
    tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "predicted": n_pred,
    }


def check_old_labels(
    parent,
    child,
    holdout,
    *,
    max_drop: float | None = None,
    max_label_drop: float | None = DEFAULT_MAX_LABEL_DROP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    max_length: int | None = None,
    device=None,
    progress: bool = False,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> CheckReport:
    """Evaluate parent and child on the holdout and compare them on the parent's labels.

    One batched evaluation pass per model, or a single pass for both when they differ only in
    their heads (see :func:`headsurgeon.predict.predict_pair`). Folders are loaded on the CPU
    (both models at once) and moved in turn to the evaluation device.

    Args:
        parent, child: model folders, or ``(model, tokenizer)`` pairs.
        holdout: a ``.csv``/``.tsv``/``.jsonl`` file or a list of :class:`Example`.
        max_drop: tolerated drop of old-label accuracy, in percentage points (default
            :data:`DEFAULT_MAX_DROP`; token classifiers: of old-type entity F1, default
            :data:`headsurgeon.entity_check.DEFAULT_MAX_DROP`).
        max_label_drop: tolerated drop of any one old label's accuracy, in points (``None``:
            not checked).
        batch_size, max_length, progress: see :func:`predict_logits`.
        text_column, label_column: columns of the holdout file.
        device: where to evaluate; default: CUDA when available, else where the models are
            (models are moved back afterwards).
        trust_remote_code: let folders whose config names custom code (``auto_map``) run it.
        allow_pickle: accept ``pytorch_model*.bin`` folders (unpickled with ``weights_only=True``).

    A token classifier (the child's task) is checked by
    :func:`headsurgeon.entity_check.check_old_types` on a CoNLL/JSONL holdout.

    Returns:
        a :class:`CheckReport`, or an :class:`~headsurgeon.entity_check.EntityCheckReport` for
        token classifiers (call :func:`enforce` to refuse a failed one).

    Raises:
        DataError: unreadable holdout, a holdout label neither model has, no old-label example.
        CheckpointError: a folder without a model or without tokenizer files, or pickle weights
            without ``allow_pickle``.
        UnsupportedModelError: custom code without ``trust_remote_code``.
        OptionsError: a bad ``max_drop``, ``max_label_drop`` or ``batch_size``.

    Example:
        >>> report = check_old_labels("parent/", "child/", "holdout.csv")
        >>> print(report.render())
        >>> enforce(report)
    """
    run = {"batch_size": batch_size, "max_length": max_length, "device": device}
    trust = {"trust_remote_code": trust_remote_code, "allow_pickle": allow_pickle}
    _is_token_model(parent)  # refuses a model check would score wrongly (multi-label, image, ...)
    if _is_token_model(child):  # entity-level F1 on the old types
        from .entity_check import check_old_types

        return check_old_types(
            parent, child, holdout, max_drop=max_drop, max_label_drop=max_label_drop,
            progress=progress, **run, **trust,
        )  # fmt: skip
    max_drop = DEFAULT_MAX_DROP if max_drop is None else max_drop
    check_max_drop(max_drop, max_label_drop)
    if isinstance(holdout, (str, os.PathLike)):
        from .token_data import check_data_task

        check_data_task(holdout, token_model=False, option="--holdout")
    examples = (
        read_examples(holdout, text_column=text_column, label_column=label_column)
        if isinstance(holdout, (str, os.PathLike))
        else list(holdout)
    )
    if not examples:
        raise DataError("the holdout holds no examples")
    parent_labels, child_labels = _labels_of(parent), _labels_of(child)
    source = str(holdout) if isinstance(holdout, (str, os.PathLike)) else "the holdout"
    _old_indices([e.label for e in examples], parent_labels, child_labels, source)  # fail early
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    parent, child = (_model_and_tokenizer(s, **trust) for s in (parent, child))
    logger.info("evaluating parent and child on %d holdout examples", len(examples))
    logits = predict_pair(
        parent,
        child,
        [e.text for e in examples],
        batch_size=batch_size,
        max_length=max_length,
        device=device,
        progress=progress,
        desc="scoring holdout",
    )
    return compare(
        *logits,
        examples,
        parent_labels,
        child_labels,
        max_drop=max_drop,
        max_label_drop=max_label_drop,
    )


def _is_token_model(source) -> bool:
    from .models import read_config
    from .tasks import TOKEN, require_trainable, task_of, task_of_model

    if isinstance(source, (str, os.PathLike)):
        config = read_config(source)
        return require_trainable(task_of(config), config, str(source)) == TOKEN
    model = source[0]
    return require_trainable(task_of_model(model), model.config, "check") == TOKEN


def _model_and_tokenizer(source, **trust: bool):
    if isinstance(source, (str, os.PathLike)):
        from .predict import load_for_prediction

        return load_for_prediction(source, **trust)
    model, tokenizer = source
    return model, tokenizer


def _labels_of(source) -> list[str]:
    from .labels import labels_of
    from .models import read_config

    if isinstance(source, (str, os.PathLike)):
        return labels_of(read_config(source))
    return labels_of(source[0].config)


def enforce(report: CheckReport, record: dict[str, Any] | None = None) -> None:
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
        + f"; {report.flipped_to_new} {_old_units(report)} now predict a new label. "
        + (f"Train with {untried}, or raise" if untried else "Raise")
        + " --max-drop/--max-label-drop if this is intended",
        report=report,
    )


def _old_units(report) -> str:
    return "old entities" if getattr(report, "kind", None) == "entities" else "old example(s)"


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
    report: CheckReport,
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
        holdout=_record.file_ref(holdout, _holdout_size(report)) if holdout else None,
        passed=report.passed,
        max_drop=report.max_drop,
        max_label_drop=report.max_label_drop,
        report=report.to_dict(),
    )
    return _record.write_record(child, record)


def _holdout_size(report) -> int:
    """The holdout's examples (sentences for an entity check) the report scored."""
    sentences = getattr(report, "n_sentences", None)
    return sentences if sentences is not None else report.n_old_examples + report.n_new_examples
