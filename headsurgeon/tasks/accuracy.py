"""The accuracy gate of single-label tasks (one label per example: text classification today).

:func:`compare` turns the parent's and the child's logits on the same holdout examples into a
:class:`CheckReport`: old-label accuracy before/after, the drop in percentage points, per-label
changes, how many old examples flipped (and how many of those to a new label), the drop's 95 %
interval and exact McNemar p-value from the paired predictions (:mod:`headsurgeon.uncertainty`:
noise or regression), and the new labels' precision/recall/F1.

Predictions are compared by label NAME, not by class id, so a child whose labels were re-ordered
or removed is judged fairly. An old label the child no longer has can never be predicted by it:
the holdout examples of that label count as wrong after (remove them from the holdout if the
removal was intended).

Pure and light: torch is imported inside :func:`compare`. :mod:`headsurgeon.checks` runs the
gate on model folders (and re-exports these names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ..data import Example, check_labels
from ..errors import DataError, OptionsError
from ..gate import DEFAULT_SHOW, beyond_reason, check_max_drop, labels_beyond
from ..uncertainty import PairedDrop, mcnemar_exact_p, paired_drop

__all__ = [
    "DEFAULT_MAX_DROP",
    "DEFAULT_MAX_LABEL_DROP",
    "CheckReport",
    "compare",
    "failure_of",
]

#: largest allowed drop of old-label accuracy, in percentage points
DEFAULT_MAX_DROP = 0.5
#: largest allowed drop of one old label's accuracy (recall), in points; None: not checked
DEFAULT_MAX_LABEL_DROP: float | None = None
#: a passed report without a per-label tolerance points at ``--max-label-drop`` when one old
#: label lost at least this many points (the aggregate can hide it)
LABEL_HINT_PTS = 10.0
#: the default per-label guard (when no ``max_label_drop`` is given): an old label with at least
#: GUARD_MIN_SUPPORT holdout examples fails the gate when it loses more than GUARD_PTS points of
#: recall AND its loss is beyond noise: an exact one-sided McNemar test on its own examples
#: (right -> wrong against wrong -> right) below GUARD_P. A near-synonym new label that takes
#: half of one old label's examples is refused even when the aggregate passes; a label of a few
#: examples that lost one or two of them, or whose losses are matched by fixes, is not.
GUARD_PTS = 20.0
GUARD_MIN_SUPPORT = 10
GUARD_P = 0.05


def failure_of(check: dict[str, Any]) -> str | None:
    """Why a check failed, in one sentence, from its dict (:meth:`CheckReport.to_dict`, or the
    ``check`` a ``headsurgeon.json`` event records); ``None`` when no reason is found.

    Works on partial dicts (an older or hand-written record): what is missing is left out.
    :func:`headsurgeon.checks.failure_of` reads a dict of any gate.
    """
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
    guard = check.get("label_guard")
    if isinstance(guard, dict) and check.get("labels_beyond"):
        reasons.append(_guard_reason(check, guard))
    else:
        beyond = beyond_reason(check, "old label(s) dropped more than {limit} allowed per label")
        if beyond:
            reasons.append(beyond)
    return "; ".join(reasons) or None


def _guard_reason(check: dict[str, Any], guard: dict[str, Any]) -> str:
    """The default per-label guard's part of a failure: each collapsed label (worst three),
    its loss, the new label that took its examples, and the test."""
    rows = {str(r.get("label")): r for r in check.get("per_label") or [] if isinstance(r, dict)}
    parts = []
    for name in [str(n) for n in check["labels_beyond"]][:3]:
        r = rows.get(name, {})
        text = name
        if isinstance(r.get("change_pts"), (int, float)):
            text += f" lost {-r['change_pts']:.1f} pt"
            if isinstance(r.get("right_to_wrong"), int) and isinstance(r.get("support"), int):
                text += f" ({r['right_to_wrong']} of {r['support']} holdout examples"
                text += f", most to {r['taken_by']})" if r.get("taken_by") else ")"
            if isinstance(r.get("p_value"), (int, float)):
                text += f", p = {r['p_value']:.2g}"
        parts.append(text)
    more = len(check["labels_beyond"]) - 3
    return (
        f"old label(s) collapsed: {', '.join(parts)}{f' and {more} more' if more > 0 else ''}: "
        f"more than the {guard.get('pts', GUARD_PTS):g} pt one old label may lose, beyond noise "
        "(exact one-sided McNemar test on its own examples); --max-label-drop PTS sets another "
        "per-label limit"
    )


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
        labels_beyond: old labels whose ``change_pts`` is below ``-max_label_drop``; without
            ``max_label_drop``, the old labels the default guard refused (``label_guard``).
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
    #: the default per-label guard's rule when it applied (no ``max_label_drop``): ``{"pts",
    #: "min_support", "p"}`` (:data:`GUARD_PTS`...); ``labels_beyond`` then holds the labels it
    #: refused. ``None`` when ``max_label_drop`` was given (it replaces the guard).
    label_guard: dict[str, float] | None = None

    #: how checks, cards and pushes name this gate and read its recorded dict (see
    #: :class:`headsurgeon.tasks.base.GateReport`); a label check's dict has no ``kind``
    KIND: ClassVar[str | None] = None
    NAME: ClassVar[str] = "old-label check"
    MEASURES: ClassVar[tuple[tuple[str, str], ...]] = (
        ("accuracy_before", "accuracy before"),
        ("accuracy_after", "after"),
    )
    ABOUT: ClassVar[str | None] = None
    ROW: ClassVar[str] = "old label"
    NEW: ClassVar[str] = "labels"
    COLUMNS: ClassVar[dict[str, str]] = {}
    OLD_UNITS: ClassVar[str] = "old example(s)"

    @staticmethod
    def failure_of(check: dict[str, Any]) -> str | None:
        """Why a recorded check of this gate failed (:func:`failure_of`)."""
        return failure_of(check)

    @property
    def holdout_size(self) -> int:
        """The holdout examples the report scored."""
        return self.n_old_examples + self.n_new_examples

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
        row = worst[0]
        why = (
            f"under the {GUARD_PTS:g} pt the default per-label guard refuses"
            if -row["change_pts"] <= GUARD_PTS
            else "within noise or on too few examples for the default per-label guard"
        )
        return (
            f"note: old label {row['label']} lost {-row['change_pts']:.1f} pt ({why}); "
            "--max-label-drop PTS refuses any one old label losing more than PTS"
        )

    def render(self, show: int = DEFAULT_SHOW) -> str:
        """Return a readable report: summary, up to ``show`` changed old labels (losses worst
        first, then gains largest first), new labels."""
        verdict = "PASSED" if self.passed else "FAILED"
        per_label = (
            f", {self.max_label_drop:g} pt per label"
            if self.max_label_drop is not None
            else f", {GUARD_PTS:g} pt per label beyond noise"
            if self.label_guard
            else ""
        )
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
        if self.labels_beyond and self.label_guard:
            lines.append(_guard_reason(self.to_dict(), self.label_guard))
        elif self.labels_beyond:
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
                taken = (
                    f"  (most to {r['taken_by']})"
                    if r.get("taken_by") and r["change_pts"] < 0
                    else ""
                )
                lines.append(
                    f"{r['label']:<{width}}  {r['support']:>7}  {r['before']:>6.1%}  "
                    f"{r['after']:>6.1%}  {r['change_pts']:+.1f} pt{taken}"
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

    def chart(self) -> tuple[str, str]:
        """``(x-axis label, title)`` of the per-label chart (:func:`headsurgeon.plot.plot_report`)."""
        title = (
            f"old-label check {'passed' if self.passed else 'FAILED'}: "
            f"{self.accuracy_before:.1%} -> {self.accuracy_after:.1%} "
            f"(drop {self.drop_pts:.2f} pt, allowed {self.max_drop:g} pt"
            + ("" if self.max_label_drop is None else f", {self.max_label_drop:g} pt per label")
            + ")"
            + ("" if self.drop_uncertainty is None else "\n" + self.drop_uncertainty.describe())
        )
        return "accuracy (recall) on the label's holdout examples", title


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
    _check_shapes(len(gold), (parent_logits, parent_labels), (child_logits, child_labels))
    parent_labels, child_labels = list(parent_labels), list(child_labels)
    olds = old_indices(gold, parent_labels, child_labels, "the holdout")
    before = [parent_labels[i] for i in parent_logits.argmax(-1).tolist()]
    after = [child_labels[i] for i in child_logits.argmax(-1).tolist()]
    return _report(gold, before, after, olds, parent_labels, child_labels, max_drop, max_label_drop)


def _check_shapes(n: int, parent: tuple, child: tuple) -> None:
    """Refuse logits that are not ``[n, len(labels)]`` (``parent``, ``child``: logits, labels)."""
    for name, (logits, labels) in (("parent", parent), ("child", child)):
        if tuple(logits.shape) != (n, len(labels)):
            raise OptionsError(
                f"{name} logits have shape {tuple(logits.shape)}, expected "
                f"({n}, {len(labels)}) for {n} examples and {len(labels)} labels"
            )


def _report(gold, before, after, olds, parent_labels, child_labels, max_drop, max_label_drop):
    """The :class:`CheckReport` of the gold and predicted label names (``olds``: the indices of
    the old-label examples)."""
    new = [n for n in child_labels if n not in set(parent_labels)]
    right_before = sum(before[i] == gold[i] for i in olds)
    right_after = sum(after[i] == gold[i] for i in olds)
    flips = [i for i in olds if before[i] != after[i]]
    drop_pts = 100.0 * (right_before - right_after) / len(olds)
    per_label = _per_label(gold, before, after, olds, parent_labels, new)
    flipped_wrong = sum(before[i] == gold[i] != after[i] for i in flips)
    flipped_fixed = sum(before[i] != gold[i] == after[i] for i in flips)
    guarded = max_label_drop is None
    beyond = _collapsed(per_label) if guarded else labels_beyond(per_label, max_label_drop)
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
        label_guard=dict(GUARD) if guarded else None,
    )


#: the default per-label guard, as a report records it
GUARD = {"pts": GUARD_PTS, "min_support": GUARD_MIN_SUPPORT, "p": GUARD_P}


def _collapsed(per_label: list[dict[str, Any]]) -> list[str]:
    """The old labels the default guard refuses (see :data:`GUARD_PTS`)."""
    return [
        r["label"]
        for r in per_label
        if r["support"] >= GUARD_MIN_SUPPORT
        and -r["change_pts"] > GUARD_PTS
        and r["p_value"] < GUARD_P
    ]


def old_indices(gold: list[str], parent_labels, child_labels, source: str) -> list[int]:
    """Validate the gold label names of a holdout (``source`` names it); return the indices of
    the old-label examples.

    Raises:
        DataError: a gold label neither model has, or no example of an old label.
    """
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


def _per_label(gold, before, after, olds, labels, new=()) -> list[dict[str, Any]]:
    """Per old label: support, recall before/after, the change, its examples right -> wrong and
    wrong -> right, the one-sided exact McNemar p-value of its loss, and the new label that took
    most of the examples it lost (``None``: none did)."""
    from collections import Counter

    rows = []
    for label in labels:
        idx = [i for i in olds if gold[i] == label]
        if not idx:
            continue
        b = sum(before[i] == label for i in idx)
        a = sum(after[i] == label for i in idx)
        lost = [after[i] for i in idx if before[i] == label != after[i]]
        fixed = sum(before[i] != label == after[i] for i in idx)
        taken = Counter(p for p in lost if p in set(new)).most_common(1)
        rows.append(
            {
                "label": label,
                "support": len(idx),
                "before": b / len(idx),
                "after": a / len(idx),
                "change_pts": 100.0 * (a - b) / len(idx),
                "right_to_wrong": len(lost),
                "wrong_to_right": fixed,
                "p_value": _one_sided_p(len(lost), fixed),
                "taken_by": taken[0][0] if taken else None,
            }
        )
    return sorted(rows, key=lambda r: r["change_pts"])  # stable: ties keep id order


def _one_sided_p(lost: int, fixed: int) -> float:
    """P(at least ``lost`` of ``lost + fixed`` changes are losses) under no change at all (the
    exact McNemar test, one-sided: a loss, not a gain, is what the guard asks about)."""
    if lost <= fixed:
        return 1.0
    return min(1.0, mcnemar_exact_p(lost, fixed) / 2)


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
