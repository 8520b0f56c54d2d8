"""The old-label gate of multi-label classifiers: micro-F1 on the parent's labels, before vs
after, each label at its own decision threshold.

A multi-label classifier decides every label on its own (a sigmoid against the label's
threshold), so accuracy means nothing here: the gate scores what users of such models score,
the micro-averaged F1 over the old labels' (text, label) decisions on the holdout, for the parent
(before) and the child (after), and the drop in F1 points with a 95 % interval from a seeded
paired bootstrap over the holdout texts (both models answer the same texts: each resample
draws texts with replacement and recomputes both F1s). Per old label: support, precision,
recall and F1 before and after. New labels: precision, recall, F1, and how often each fires on
holdout texts that carry none of the new labels (its false-fire rate: the failure of a new
label learnt from its positives only is to fire on everything).

:class:`MultiLabelReport` is a :class:`~headsurgeon.tasks.base.GateReport` (``kind`` is
``"multi-label"``). Thresholds come from the models' configs (:func:`thresholds_of`). No torch at
import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ...gate import DEFAULT_SHOW, beyond_reason, check_max_drop, labels_beyond
from ...uncertainty import f1_drop_interval

#: largest allowed drop of old-label micro-F1, in points
DEFAULT_MAX_DROP = 1.0
#: the ``kind`` of a multi-label report's dict
KIND = "multi-label"
#: the config key of the per-label decision thresholds (label name -> probability)
THRESHOLDS_KEY = "label_thresholds"
#: a label's threshold when its config records none
DEFAULT_THRESHOLD = 0.5
#: bootstrap resamples, level and seed of the drop's interval
RESAMPLES, LEVEL, SEED = 1000, 0.95, 0


def thresholds_of(config: Any, labels: Sequence[str]) -> list[float]:
    """Each label's decision threshold (a probability) from a config's ``label_thresholds``
    (a dict or a transformers config), :data:`DEFAULT_THRESHOLD` for a label it lacks."""
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    recorded = get(THRESHOLDS_KEY)
    recorded = recorded if isinstance(recorded, Mapping) else {}
    out = []
    for name in labels:
        value = recorded.get(name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1
        out.append(float(value) if ok else DEFAULT_THRESHOLD)
    return out


def multilabel_failure_of(check: dict[str, Any]) -> str | None:
    """Why a multi-label check failed, in one sentence, from its dict (``None``: no reason)."""
    num = (int, float)
    reasons = []
    drop, max_drop = check.get("drop_pts"), check.get("max_drop")
    if isinstance(drop, num) and (not isinstance(max_drop, num) or drop > max_drop):
        text = f"old-label micro-F1 dropped {drop:.2f} pt"
        before, after, n = (check.get(k) for k in ("f1_before", "f1_after", "n_texts"))
        if isinstance(before, num) and isinstance(after, num) and isinstance(n, int):
            text += f" ({100 * before:.2f}% -> {100 * after:.2f}% on {n} holdout texts)"
        if isinstance(max_drop, num):
            text += f", more than the {max_drop:g} pt allowed"
        reasons.append(text)
    beyond = beyond_reason(check, "old label(s) lost more F1 than {limit} allowed per label")
    if beyond:
        reasons.append(beyond)
    return "; ".join(reasons) or None


@dataclass
class MultiLabelReport:
    """What the multi-label gate found. P/R/F1 are fractions; ``*_pts`` points of F1.

    Attributes:
        parent_labels, child_labels: the two models' labels, in class-id order.
        old_labels, new_labels, removed_labels: the parent's labels; the child's the parent
            lacks; the parent's the child lacks (never predicted after).
        n_texts: holdout texts; n_old_positives: their (text, old label) positives.
        precision_before ... f1_after: micro scores over the old labels.
        drop_pts: ``100 * (f1_before - f1_after)``; negative: the child improved.
        drop_low_pts, drop_high_pts: the drop's 95 % paired-bootstrap interval.
        per_label: per old label with support or predictions, worst change first
            (``label, support, before, after, change_pts`` with before/after its F1, and
            ``precision_*``/``recall_*``).
        flipped_wrong, flipped_fixed: old (text, label) decisions right before and wrong after,
            and the reverse.
        flipped_to_new: of ``flipped_wrong``, those on texts where a new label fires.
        new_label_metrics: per new label ``precision, recall, f1, support, predicted,
            false_fire_rate`` (on the texts carrying no new label).
        false_fire_rate: fraction of the texts carrying no new label where some new label fires.
        thresholds: the child's decision threshold of each label.
        max_drop, max_label_drop, labels_beyond, passed: as every gate's.
    """

    parent_labels: list[str]
    child_labels: list[str]
    old_labels: list[str]
    new_labels: list[str]
    removed_labels: list[str]
    n_texts: int
    n_old_positives: int
    precision_before: float
    recall_before: float
    f1_before: float
    precision_after: float
    recall_after: float
    f1_after: float
    drop_pts: float
    drop_low_pts: float
    drop_high_pts: float
    per_label: list[dict[str, Any]]
    flipped_wrong: int
    flipped_fixed: int
    flipped_to_new: int
    new_label_metrics: dict[str, dict[str, float]]
    false_fire_rate: float | None
    thresholds: dict[str, float]
    max_drop: float
    max_label_drop: float | None
    labels_beyond: list[str]
    passed: bool
    kind: str = KIND

    KIND: ClassVar[str | None] = KIND
    NAME: ClassVar[str] = "old-label check"
    MEASURES: ClassVar[tuple[tuple[str, str], ...]] = (
        ("f1_before", "micro-F1 before"),
        ("f1_after", "after"),
    )
    ABOUT: ClassVar[str | None] = (
        "Micro-averaged F1 over the parent's labels, each label decided at its own threshold "
        "(config `label_thresholds`, 0.5 when unset), of the parent (before) and this model "
        "(after) on the same holdout texts."
    )
    ROW: ClassVar[str] = "old label"
    NEW: ClassVar[str] = "labels"
    COLUMNS: ClassVar[dict[str, str]] = {
        "label": "label",
        "support": "support",
        "before": "F1 before",
        "after": "F1 after",
        "change_pts": "change pts",
        "precision_before": "P before",
        "precision_after": "P after",
        "recall_before": "R before",
        "recall_after": "R after",
    }
    OLD_UNITS: ClassVar[str] = "old (text, label) decisions"

    @staticmethod
    def failure_of(check: dict[str, Any]) -> str | None:
        """Why a recorded multi-label check failed (:func:`multilabel_failure_of`)."""
        return multilabel_failure_of(check)

    @property
    def holdout_size(self) -> int:
        """The holdout texts the report scored."""
        return self.n_texts

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data (with ``"kind": "multi-label"``)."""
        return asdict(self)

    def worst(self, n: int = 3) -> list[dict[str, Any]]:
        """Up to ``n`` old labels whose F1 fell the most (only those that fell)."""
        return [row for row in self.per_label if row["change_pts"] < 0][:n]

    def failure(self) -> str | None:
        """Why the check failed, in one sentence (``None`` when it passed)."""
        return None if self.passed else multilabel_failure_of(self.to_dict())

    def render(self, show: int = DEFAULT_SHOW) -> str:
        """A readable report: summary, interval, the most changed old labels, new labels."""
        verdict = "PASSED" if self.passed else "FAILED"
        per = "" if self.max_label_drop is None else f", {self.max_label_drop:g} pt per label"
        drop = self.drop_pts
        lines = [
            f"old-label check {verdict}: micro-F1 on {self.n_texts} holdout texts, "
            f"{self.n_old_positives} old-label positives of {len(self.old_labels)} labels "
            f"{100 * self.f1_before:.2f}% -> {100 * self.f1_after:.2f}% (drop {drop:.2f} pt"
            f"{' (an improvement)' if drop < 0 else ''}, allowed {self.max_drop:g} pt{per})",
            f"95% CI of the drop [{self.drop_low_pts:.2f}, {self.drop_high_pts:.2f}] pt (paired "
            f"bootstrap over texts); precision {100 * self.precision_before:.2f}% -> "
            f"{100 * self.precision_after:.2f}%, recall {100 * self.recall_before:.2f}% -> "
            f"{100 * self.recall_after:.2f}%",
            f"old decisions right before and wrong after: {self.flipped_wrong} "
            f"({self.flipped_to_new} on texts where a new label fires); wrong before and right "
            f"after: {self.flipped_fixed}",
        ]
        if self.removed_labels:
            lines.append(f"old labels the child lacks: {', '.join(self.removed_labels)}")
        if self.labels_beyond:
            lines.append(
                f"old labels beyond the per-label tolerance: {', '.join(self.labels_beyond)}"
            )
        changed = [r for r in self.per_label if r["change_pts"] != 0]
        lines += _old_table(changed[:show])
        rest = len(changed) - min(show, len(changed))
        lines.append(
            f"{len(changed)} old label(s) changed"
            + (f" ({rest} more not shown)" if rest else "")
            + f", {len(self.old_labels) - len(changed)} unchanged"
        )
        lines += _new_table(self.new_label_metrics, self.thresholds)
        if self.false_fire_rate is not None:
            lines.append(
                f"a new label fires on {100 * self.false_fire_rate:.1f}% of the holdout texts "
                "that carry none"
            )
        return "\n".join(lines)

    def chart(self) -> tuple[str, str]:
        """``(x-axis label, title)`` of the per-label chart."""
        title = (
            f"old-label check {'passed' if self.passed else 'FAILED'}: micro-F1 "
            f"{100 * self.f1_before:.2f} -> {100 * self.f1_after:.2f} (drop {self.drop_pts:.2f} "
            f"pt, allowed {self.max_drop:g} pt"
            + ("" if self.max_label_drop is None else f", {self.max_label_drop:g} pt per label")
            + f")\n{self.n_texts} holdout texts, 95% CI [{self.drop_low_pts:.2f}, "
            f"{self.drop_high_pts:.2f}] pt"
        )
        return "F1 of the label on the holdout", title


def _old_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["no old label's F1 changed"]
    width = max(len("old label"), *(len(r["label"]) for r in rows))
    out = [f"{'old label':<{width}}  support  {'precision %':>14}  {'recall %':>14}  "
           f"{'F1 %':>14}  change"]  # fmt: skip

    def pair(a: float, b: float) -> str:
        return f"{100 * a:5.1f} -> {100 * b:5.1f}"

    for r in rows:
        out.append(
            f"{r['label']:<{width}}  {r['support']:>7}  "
            f"{pair(r['precision_before'], r['precision_after']):>14}  "
            f"{pair(r['recall_before'], r['recall_after']):>14}  "
            f"{pair(r['before'], r['after']):>14}  {r['change_pts']:+.1f} pt"
        )
    return out


def _new_table(metrics: dict[str, dict[str, float]], thresholds: dict[str, float]) -> list[str]:
    if not metrics:
        return []
    width = max(len("new label"), *(len(n) for n in metrics))
    out = [f"{'new label':<{width}}  support  predicted  precision  recall     f1  false fires  "
           "threshold"]  # fmt: skip
    for name, m in metrics.items():
        fire = m.get("false_fire_rate")
        fire = "-" if fire is None else f"{100 * fire:.1f}%"
        out.append(
            f"{name:<{width}}  {m['support']:>7}  {m['predicted']:>9}  {m['precision']:>9.3f}  "
            f"{m['recall']:>6.3f}  {m['f1']:>5.3f}  {fire:>11}  {thresholds.get(name, 0.5):>9.3g}"
        )
    return out


@dataclass
class Decisions:
    """Gold and predicted decisions of the holdout (bool tensors ``[texts, labels]``)."""

    gold: Any
    before: Any
    after: Any


def compare_multilabel(
    parent_logits, child_logits, examples, parent_labels: Sequence[str],
    child_labels: Sequence[str], thresholds: tuple[Sequence[float], Sequence[float]], *,
    max_drop: float = DEFAULT_MAX_DROP, max_label_drop: float | None = None,
) -> MultiLabelReport:  # fmt: skip
    """The gate from the parent's and the child's logits on the same holdout texts.

    Args:
        parent_logits: ``[texts, parent labels]`` (or over its old labels: the same thing).
        child_logits: ``[texts, child labels]``.
        examples: the holdout's :class:`~.data.LabelledText` s.
        thresholds: each model's per-label thresholds (probabilities, class-id order).
    """
    import torch

    check_max_drop(max_drop, max_label_drop)
    parent_labels, child_labels = list(parent_labels), list(child_labels)
    old = parent_labels
    removed = [n for n in old if n not in child_labels]
    new = [n for n in child_labels if n not in set(old)]
    gold = torch.tensor([[n in e.labels for n in old] for e in examples], dtype=torch.bool)
    before = _decide(parent_logits, thresholds[0])
    child = _decide(child_logits, thresholds[1])
    after = torch.zeros_like(before)
    for j, name in enumerate(old):
        if name in child_labels:
            after[:, j] = child[:, child_labels.index(name)]
    d = Decisions(gold, before, after)
    report = _scores(d, old)
    per_label = _per_label(d, old)
    beyond = labels_beyond(per_label, max_label_drop)
    new_cols = [child_labels.index(n) for n in new]
    fires = child[:, new_cols].any(1) if new_cols else torch.zeros(len(examples), dtype=torch.bool)
    wrong = (before == gold) & (after != gold)
    return MultiLabelReport(
        parent_labels=parent_labels, child_labels=child_labels, old_labels=old, new_labels=new,
        removed_labels=removed, n_texts=len(examples), n_old_positives=int(gold.sum()),
        **report, per_label=per_label,
        flipped_wrong=int(wrong.sum()),
        flipped_fixed=int(((before != gold) & (after == gold)).sum()),
        flipped_to_new=int(wrong[fires].sum()),
        new_label_metrics=_new_metrics(examples, child, child_labels, new),
        false_fire_rate=_false_fire(examples, fires, new),
        thresholds=dict(zip(child_labels, map(float, thresholds[1]), strict=True)),
        max_drop=max_drop, max_label_drop=max_label_drop, labels_beyond=beyond,
        passed=report["drop_pts"] <= max_drop and not beyond,
    )  # fmt: skip


def _decide(logits, thresholds):
    import torch

    t = torch.tensor([float(x) for x in thresholds][: logits.shape[1]])
    return torch.sigmoid(logits.float()) >= t


def _counts(gold, pred):
    """Per text: true positives, false positives, false negatives (``[texts, 3]``)."""
    import torch

    return torch.stack(
        [(gold & pred).sum(1), (~gold & pred).sum(1), (gold & ~pred).sum(1)], 1
    ).double()


def _prf(tp, fp, fn) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return float(p), float(r), float(f)


def _scores(d: Decisions, old) -> dict[str, float]:
    """Micro P/R/F1 before and after, the drop and its paired-bootstrap interval."""
    cb, ca = _counts(d.gold, d.before), _counts(d.gold, d.after)
    pb, rb, fb = _prf(*cb.sum(0).tolist())
    pa, ra, fa = _prf(*ca.sum(0).tolist())
    drop = 100 * (fb - fa)
    low, high = f1_drop_interval(cb, ca, level=LEVEL, resamples=RESAMPLES, seed=SEED)
    return {
        "precision_before": pb, "recall_before": rb, "f1_before": fb,
        "precision_after": pa, "recall_after": ra, "f1_after": fa,
        "drop_pts": round(drop, 6), "drop_low_pts": round(min(low, drop), 4),
        "drop_high_pts": round(max(high, drop), 4),
    }  # fmt: skip


def _per_label(d: Decisions, old) -> list[dict[str, Any]]:
    rows = []
    for j, name in enumerate(old):
        g, b, a = d.gold[:, j], d.before[:, j], d.after[:, j]
        if not (g.any() or b.any() or a.any()):
            continue
        pb, rb, fb = _prf(int((g & b).sum()), int((~g & b).sum()), int((g & ~b).sum()))
        pa, ra, fa = _prf(int((g & a).sum()), int((~g & a).sum()), int((g & ~a).sum()))
        rows.append({
            "label": name, "support": int(g.sum()), "before": fb, "after": fa,
            "change_pts": round(100 * (fa - fb), 6), "precision_before": pb,
            "precision_after": pa, "recall_before": rb, "recall_after": ra,
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["change_pts"])


def _new_metrics(examples, child, child_labels, new) -> dict[str, dict[str, float]]:
    import torch

    out = {}
    none = torch.tensor([not (set(e.labels) & set(new)) for e in examples], dtype=torch.bool)
    for name in new:
        g = torch.tensor([name in e.labels for e in examples], dtype=torch.bool)
        p = child[:, child_labels.index(name)]
        prec, rec, f1 = _prf(int((g & p).sum()), int((~g & p).sum()), int((g & ~p).sum()))
        if not g.any():
            f1 = 0.0
        fire = float(p[none].double().mean()) if none.any() else None
        out[name] = {
            "precision": prec, "recall": rec, "f1": f1, "support": int(g.sum()),
            "predicted": int(p.sum()), "false_fire_rate": fire,
        }  # fmt: skip
    return out


def _false_fire(examples, fires, new) -> float | None:
    import torch

    if not new:
        return None
    none = torch.tensor([not (set(e.labels) & set(new)) for e in examples], dtype=torch.bool)
    return float(fires[none].double().mean()) if none.any() else None
