"""The old-type gate of token classifiers: entity-level F1 on the parent's types, before vs after.

Token accuracy is dominated by ``O`` and hides regressions, so a token classifier (NER) is judged
as NER users judge it: entity-level (span) micro F1 with strict matching, computed by
``seqeval`` (its ``mode="strict"`` entity extraction, the library the transformers examples
use). :func:`compare_entities` turns the gold, parent and child tag sequences of a holdout into
an :class:`EntityCheckReport`, a :class:`~headsurgeon.tasks.base.GateReport` as the accuracy
gate's :class:`~headsurgeon.tasks.accuracy.CheckReport` is (``passed``, ``drop_pts``,
``per_label``, ``to_dict``, ``worst``, ``failure``, ``render``) with ``kind == "entities"``, so
it goes wherever a check report goes (``enforce``, ``record_check``, ``--json``, ``--plot``, the
model card). :func:`check_old_types` runs the gate's passes on a holdout (both models tag its
sentences).

How it is scored:

- The scheme (BIO, BIOES, BILOU, IO) is detected from the child's labels; the parent's labels
  must fit it. Old types are the parent's entity types, new types the child's types the parent
  lacks.
- Old-type F1: gold and predicted sequences are filtered to the old types (tags of other types
  become ``O``), then entities are extracted strictly: an ill-formed prediction (``I-PER`` after
  ``O`` in BIO, ``B-PER`` without ``E-PER`` in BIOES) is no entity, and an entity counts only
  when its span and type equal a gold entity's (a partial span is wrong). So an old entity the
  child now tags as a new type is an old-type recall loss.
- Gold is read leniently first (IOB1 ``I-X`` opening an entity is normalised to the scheme), as
  the data readers do: gold is the truth, predictions are judged strictly.
- New types: the child's P/R/F1 on the gold filtered to the new types.
- Noise: the drop's 95 % interval from a seeded paired bootstrap over the sentences
  (:func:`~headsurgeon.uncertainty.f1_drop_interval`); it informs, the verdict is the measured
  drop against ``max_drop``.

Light: no torch, no transformers at import (seqeval and the passes import them inside the
functions).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ...errors import DataError, LabelError, OptionsError
from ...gate import DEFAULT_SHOW, Tolerance, beyond_reason, check_max_drop, labels_beyond
from ...uncertainty import f1_drop_interval
from ..sniff import check_data_task
from .data import read_holdout
from .schemes import Scheme, detect, spans
from .words import predict_word_logits, tags_from_logits

__all__ = [
    "DEFAULT_MAX_DROP",
    "DEFAULT_MAX_LABEL_DROP",
    "KIND",
    "EntityCheckReport",
    "compare_entities",
    "entity_failure_of",
]

#: largest allowed drop of old-type entity F1 (strict, micro), in points (the issue's target)
DEFAULT_MAX_DROP = 1.0
#: largest allowed drop of one old type's F1, in points; None: not checked
DEFAULT_MAX_LABEL_DROP: float | None = None
#: the ``kind`` of an entity report's dict (an accuracy report's has none)
KIND = "entities"

#: seqeval's strict scheme class of each of our schemes (IO is turned into BIO first)
_SEQEVAL_SCHEMES = {"BIO": "IOB2", "BIOES": "IOBES", "BILOU": "BILOU", "IO": "IOB2"}

_Entity = tuple[int, int, int, str]  # (sentence, start, end exclusive, type)


def entity_failure_of(check: dict[str, Any]) -> str | None:
    """Why an entity check failed, in one sentence, from its dict
    (:meth:`EntityCheckReport.to_dict`, or the check a ``headsurgeon.json`` event records);
    ``None`` when no reason is found. Works on partial dicts: what is missing is left out.
    """
    num = (int, float)
    reasons = []
    drop, max_drop = check.get("drop_pts"), check.get("max_drop")
    if isinstance(drop, num) and (not isinstance(max_drop, num) or drop > max_drop):
        text = f"old-type entity F1 dropped {drop:.2f} pt"
        before, after, n = (check.get(k) for k in ("f1_before", "f1_after", "n_old_entities"))
        if isinstance(before, num) and isinstance(after, num) and isinstance(n, int):
            text += f" ({100 * before:.2f}% -> {100 * after:.2f}% on {n} old holdout entities)"
        if isinstance(max_drop, num):
            text += f", more than the {max_drop:g} pt allowed"
        reasons.append(text)
    beyond = beyond_reason(check, "old entity type(s) lost more F1 than {limit} allowed per type")
    if beyond:
        reasons.append(beyond)
    return "; ".join(reasons) or None


@dataclass
class EntityCheckReport:
    """What the old-type gate of a token classifier found. Precision, recall and F1 are fractions
    (entity level, strict matching); ``*_pts`` are points of F1 (``100 *`` the fraction).

    Attributes:
        parent_labels, child_labels: the two models' tags, in class-id order.
        scheme: the tagging scheme of the child's labels (``BIO``, ``BIOES``, ``BILOU``, ``IO``).
        old_labels: the parent's entity types (what must not be forgotten).
        new_labels: the child's entity types the parent does not have.
        removed_labels: old types the child has no tag for (their entities are missed after; one
            the holdout has no entity of is not scored, so a removal the holdout follows is fair).
        n_sentences: holdout sentences.
        n_old_entities, n_new_entities: gold entities of an old / a new type.
        precision_before, recall_before, f1_before: the parent's micro scores on the old types.
        precision_after, recall_after, f1_after: the child's, on the same old types.
        drop_pts: ``100 * (f1_before - f1_after)``; negative means the child improved.
        per_label: per old type with gold entities, worst change first: ``{"label", "support",
            "before", "after", "change_pts", "precision_before", "recall_before",
            "precision_after", "recall_after"}`` (``before``/``after`` are the type's F1;
            ``change_pts = 100 * (after - before)``).
        flipped_wrong: old gold entities the parent found and the child misses.
        flipped_fixed: old gold entities the parent missed and the child finds.
        flipped_to_new: of ``flipped_wrong``, those where the child tags at least one token of
            the entity's span with a tag of a new type (the new type swallowed it).
        new_label_metrics: ``{type: {"precision", "recall", "f1", "support", "predicted"}}`` of
            the child on every new type (0.0 when nothing was predicted or there is no support).
        max_drop: the tolerance in F1 points.
        max_label_drop: the per-type tolerance in F1 points (``None``: not checked).
        labels_beyond: old types whose ``change_pts`` is below ``-max_label_drop``.
        passed: ``drop_pts <= max_drop`` and no type beyond ``max_label_drop``.
        kind: always ``"entities"``: how a report's dict tells this gate from the label gate.
        drop_low_pts, drop_high_pts: the drop's 95 % interval, from a seeded paired bootstrap
            over the holdout's sentences (both models tag the same sentences: each resample
            draws sentences with replacement and recomputes both F1s). It informs: pass/fail
            is the measured drop against ``max_drop``.
    """

    parent_labels: list[str]
    child_labels: list[str]
    scheme: str
    old_labels: list[str]
    new_labels: list[str]
    removed_labels: list[str]
    n_sentences: int
    n_old_entities: int
    n_new_entities: int
    precision_before: float
    recall_before: float
    f1_before: float
    precision_after: float
    recall_after: float
    f1_after: float
    drop_pts: float
    per_label: list[dict[str, Any]]
    flipped_wrong: int
    flipped_fixed: int
    flipped_to_new: int
    new_label_metrics: dict[str, dict[str, float]]
    max_drop: float
    max_label_drop: float | None
    labels_beyond: list[str]
    passed: bool
    kind: str = KIND
    drop_low_pts: float = 0.0
    drop_high_pts: float = 0.0

    #: how checks, cards and pushes name this gate and read its recorded dict (see
    #: :class:`headsurgeon.tasks.base.GateReport`)
    KIND: ClassVar[str | None] = KIND
    NAME: ClassVar[str] = "old-type check"
    MEASURES: ClassVar[tuple[tuple[str, str], ...]] = (
        ("f1_before", "entity F1 before"),
        ("f1_after", "after"),
    )
    ABOUT: ClassVar[str | None] = (
        "Entity-level F1 with strict matching (seqeval), micro-averaged over the parent's "
        "entity types, of the parent (before) and this model (after) on the same holdout."
    )
    ROW: ClassVar[str] = "old entity type"
    NEW: ClassVar[str] = "entity types"
    #: the per-type columns, as the card names them (before/after are F1)
    COLUMNS: ClassVar[dict[str, str]] = {
        "label": "type",
        "support": "support",
        "before": "F1 before",
        "after": "F1 after",
        "change_pts": "change pts",
        "precision_before": "P before",
        "precision_after": "P after",
        "recall_before": "R before",
        "recall_after": "R after",
    }
    OLD_UNITS: ClassVar[str] = "old entities"

    @staticmethod
    def failure_of(check: dict[str, Any]) -> str | None:
        """Why a recorded entity check failed (:func:`entity_failure_of`)."""
        return entity_failure_of(check)

    @property
    def holdout_size(self) -> int:
        """The holdout sentences the report scored."""
        return self.n_sentences

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-able data (with ``"kind": "entities"``)."""
        return asdict(self)

    def worst(self, n: int = 3) -> list[dict[str, Any]]:
        """Return up to ``n`` old types whose F1 fell the most (only those that fell)."""
        return [row for row in self.per_label if row["change_pts"] < 0][:n]

    def failure(self) -> str | None:
        """Why the check failed, in one sentence (``None`` when it passed)."""
        return None if self.passed else entity_failure_of(self.to_dict())

    def coarse(self) -> str | None:
        """A line saying the holdout is too small to resolve the gate (the drop's 95 % interval
        reaches further than ``max_drop`` from the drop on one side or both), else ``None``."""
        reach = max(self.drop_pts - self.drop_low_pts, self.drop_high_pts - self.drop_pts)
        if reach <= self.max_drop:
            return None
        return (
            f"the holdout is too small for a {self.max_drop:g} pt gate: the drop's 95% interval "
            f"reaches {reach:.2f} pt from it on {self.n_old_entities} old entities; hold out "
            "more sentences (about 1,000 old entities or more for 1 pt)"
        )

    def render(self, show: int = DEFAULT_SHOW) -> str:
        """Return a readable report: summary, the ``show`` most changed old types, new types."""
        verdict = "PASSED" if self.passed else "FAILED"
        per_type = "" if self.max_label_drop is None else f", {self.max_label_drop:g} pt per type"
        lines = [
            f"old-type check {verdict}: entity F1 (strict, micro) on {self.n_sentences} holdout "
            f"sentences, {self.n_old_entities} old entities of {len(self.old_labels)} types "
            f"{100 * self.f1_before:.2f}% -> {100 * self.f1_after:.2f}% (drop {self.drop_pts:.2f} "
            f"pt, allowed {self.max_drop:g} pt{per_type})",
            f"precision {100 * self.precision_before:.2f}% -> {100 * self.precision_after:.2f}%, "
            f"recall {100 * self.recall_before:.2f}% -> {100 * self.recall_after:.2f}% "
            f"({self.scheme} scheme); 95% CI of the drop [{self.drop_low_pts:.2f}, "
            f"{self.drop_high_pts:.2f}] pt (paired bootstrap over sentences)",
            f"old entities found before and missed after: {self.flipped_wrong} "
            f"({self.flipped_to_new} now tagged as a new type); missed before and found after: "
            f"{self.flipped_fixed}",
        ]
        coarse = self.coarse()
        if coarse:
            lines.append(coarse)
        if self.removed_labels:
            lines.append(f"old types the child lacks: {', '.join(self.removed_labels)}")
        if self.labels_beyond:
            lines.append(
                f"old types beyond the per-type tolerance: {', '.join(self.labels_beyond)}"
            )
        lines += _old_table(self.per_label[:show])
        if len(self.per_label) > show:
            lines.append(f"({len(self.per_label) - show} more old type(s) not shown)")
        lines += _new_table(self.new_label_metrics)
        return "\n".join(lines)

    def chart(self) -> tuple[str, str]:
        """``(x-axis label, title)`` of the per-type chart (:func:`headsurgeon.plot.plot_report`)."""
        title = (
            f"old-type check {'passed' if self.passed else 'FAILED'}: entity F1 "
            f"{100 * self.f1_before:.2f} -> {100 * self.f1_after:.2f} "
            f"(drop {self.drop_pts:.2f} pt, allowed {self.max_drop:g} pt"
            + ("" if self.max_label_drop is None else f", {self.max_label_drop:g} pt per type")
            + f")\n{self.n_old_entities} old entities in {self.n_sentences} sentences, "
            f"{self.scheme} scheme"
        )
        return "entity F1 (strict)", title


def _old_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per old type: support, then precision, recall and F1 before -> after, in
    percent (as the aggregate, so the change reads in points)."""
    width = max(len("old type"), *(len(r["label"]) for r in rows))
    heads = f"{'precision %':>14}  {'recall %':>14}  {'F1 %':>14}"
    out = [f"{'old type':<{width}}  support  {heads}  change"]

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


def _new_table(metrics: dict[str, dict[str, float]]) -> list[str]:
    if not metrics:
        return []
    width = max(len("new type"), *(len(n) for n in metrics))
    out = [f"{'new type':<{width}}  support  predicted  precision  recall     f1"]
    for name, m in metrics.items():
        out.append(
            f"{name:<{width}}  {m['support']:>7}  {m['predicted']:>9}  "
            f"{m['precision']:>9.3f}  {m['recall']:>6.3f}  {m['f1']:>5.3f}"
        )
    return out


def compare_entities(
    gold: Sequence[Sequence[str]],
    parent_tags: Sequence[Sequence[str]],
    child_tags: Sequence[Sequence[str]],
    parent_labels: Sequence[str],
    child_labels: Sequence[str],
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    max_label_drop: float | None = DEFAULT_MAX_LABEL_DROP,
) -> EntityCheckReport:
    """Compare the parent's and the child's tags with the gold tags on the old entity types.

    Pure: works from tag names, one sequence per sentence (a word-level prediction, after
    subword alignment), so training code can call it on its own predictions.

    Args:
        gold: the holdout's gold tags per sentence (the child's scheme; IOB1 is read leniently).
        parent_tags: the parent's predicted tags per sentence (names of ``parent_labels``).
        child_tags: the child's predicted tags per sentence (names of ``child_labels``).
        parent_labels, child_labels: the two models' tags in class-id order.
        max_drop: tolerated drop of old-type entity F1 (strict, micro), in points.
        max_label_drop: tolerated drop of any one old type's F1, in points; ``None``: only
            the aggregate is checked.

    Returns:
        an :class:`EntityCheckReport` (``kind == "entities"``).

    Raises:
        LabelError: the child's labels follow no tagging scheme, or a parent label is not of it.
        OptionsError: different numbers of sentences, a sentence whose three sequences differ
            in length (its index is named), a predicted tag that is not a label of its model,
            or a negative ``max_drop``/``max_label_drop``.
        DataError: no sentence, a gold tag neither model has, or no gold entity of an old type.

    Example:
        >>> report = compare_entities(gold, parent_tags, child_tags, parent_labels, child_labels)
        >>> print(report.render())
        >>> report.drop_pts, report.passed
        (0.35, True)
    """
    check_max_drop(max_drop, max_label_drop)
    scheme = _scheme_of(child_labels, parent_labels)
    parent_labels, child_labels = list(parent_labels), list(child_labels)
    old = scheme.entity_types(parent_labels)
    child_types = scheme.entity_types(child_labels)
    new = [t for t in child_types if t not in set(old)]
    gold = _checked_gold(gold, parent_tags, child_tags, parent_labels, child_labels, scheme)

    removed = [t for t in old if t not in set(child_types)]
    gold_old, old = _scored_old(gold, scheme, old, removed)
    before, after = _entities(parent_tags, scheme, old), _entities(child_tags, scheme, old)
    measures = _old_measures(gold_old, before, after, old, max_label_drop)
    low, high = f1_drop_interval(
        _counts(gold_old, before, len(gold)), _counts(gold_old, after, len(gold))
    )
    lost = [e for e in gold_old if e in before and e not in after]
    gold_new, child_new = _entities(gold, scheme, new), _entities(child_tags, scheme, new)
    return EntityCheckReport(
        parent_labels=parent_labels,
        child_labels=child_labels,
        scheme=scheme.name,
        old_labels=old,
        new_labels=new,
        removed_labels=removed,
        n_sentences=len(gold),
        n_old_entities=len(gold_old),
        n_new_entities=len(gold_new),
        **measures,
        flipped_wrong=len(lost),
        flipped_to_new=sum(_tagged_new(e, child_tags, scheme, set(new)) for e in lost),
        new_label_metrics={t: _type_metrics(gold_new, child_new, t) for t in new},
        max_drop=float(max_drop),
        max_label_drop=None if max_label_drop is None else float(max_label_drop),
        passed=measures["drop_pts"] <= max_drop and not measures["labels_beyond"],
        drop_low_pts=round(min(low, measures["drop_pts"]), 4),
        drop_high_pts=round(max(high, measures["drop_pts"]), 4),
    )


def _counts(gold: set[_Entity], predicted: set[_Entity], sentences: int):
    """Per sentence: true positives, false positives, false negatives (``[sentences, 3]``)."""
    import torch

    counts = torch.zeros(sentences, 3, dtype=torch.float64)
    for e in predicted:
        counts[e[0], 0 if e in gold else 1] += 1
    for e in gold - predicted:
        counts[e[0], 2] += 1
    return counts


def _scored_old(gold, scheme: Scheme, old: list[str], removed: list[str]):
    """``(the gold entities of the old types, the old types scored)``.

    Raises:
        DataError: the holdout holds no entity of an old type.
    """
    gold_old = _entities(gold, scheme, old)
    supported = {e[3] for e in gold_old}
    # a removed type the holdout has no entity of (removal intended, the holdout cut to match)
    # is not scored: the parent's predictions of it would count against "before" alone
    old = [t for t in old if t in supported or t not in set(removed)]
    if not gold_old:
        raise DataError(
            f"the holdout's {len(gold)} sentence(s) hold no entity of an old type "
            f"({', '.join(old)}): add held-out sentences with the parent's entity types"
        )
    return gold_old, old


def _old_measures(gold_old, before, after, old, max_label_drop) -> dict[str, Any]:
    """The old types' scores of an :class:`EntityCheckReport`: precision, recall and F1 before
    and after, the drop, the per-type rows, the types beyond ``max_label_drop`` and the old
    entities the child finds that the parent missed."""
    p_before, r_before, f1_before = _prf(gold_old, before)
    p_after, r_after, f1_after = _prf(gold_old, after)
    per_label = _per_type(gold_old, before, after, old)
    return {
        "precision_before": p_before,
        "recall_before": r_before,
        "f1_before": f1_before,
        "precision_after": p_after,
        "recall_after": r_after,
        "f1_after": f1_after,
        "drop_pts": 100.0 * (f1_before - f1_after),
        "per_label": per_label,
        "labels_beyond": labels_beyond(per_label, max_label_drop),
        "flipped_fixed": sum(e in after and e not in before for e in gold_old),
    }


def _checked_gold(gold, parent_tags, child_tags, parent_labels, child_labels, scheme):
    """The gold tags in the child's scheme (IOB1 read leniently), once the three sequences of
    every sentence agree in length and hold only their models' tags (see
    :func:`compare_entities` for the errors)."""
    _check_shapes(gold, parent_tags, child_tags)
    _check_tags(gold, set(parent_labels) | set(child_labels), "gold", DataError)
    _check_tags(parent_tags, set(parent_labels), "parent", OptionsError)
    _check_tags(child_tags, set(child_labels), "child", OptionsError)
    return [scheme.encode(spans(s, scheme), len(s)) for s in gold]


def _scheme_of(child_labels: Sequence[str], parent_labels: Sequence[str]) -> Scheme:
    """The child's scheme; the parent's labels must be tags of it too."""
    scheme = detect(list(child_labels))
    if scheme is None:
        shown = ", ".join(list(child_labels)[:6]) + (", ..." if len(child_labels) > 6 else "")
        raise LabelError(
            f"the child's labels ({shown}) follow no tagging scheme: expected O plus "
            "B-/I- (BIO), B-/I-/E-/S- (BIOES), B-/I-/L-/U- (BILOU) or I- (IO) tags; the entity "
            "check needs a token classifier with such labels"
        )
    for tag in parent_labels:
        try:
            scheme.split(tag)
        except LabelError as e:
            raise LabelError(
                f"parent label {tag!r} is not a tag of the child's {scheme.name} scheme: parent "
                "and child must tag in one scheme"
            ) from e
    return scheme


def _check_shapes(gold, parent_tags, child_tags) -> None:
    sizes = (len(gold), len(parent_tags), len(child_tags))
    if len(set(sizes)) != 1:
        raise OptionsError(
            f"gold, parent and child tags hold {sizes[0]}, {sizes[1]} and {sizes[2]} sentences: "
            "expected one tag sequence per holdout sentence in each"
        )
    if not gold:
        raise DataError("the holdout holds no sentences")
    for i, seqs in enumerate(zip(gold, parent_tags, child_tags, strict=True)):
        lengths = tuple(len(s) for s in seqs)
        if len(set(lengths)) != 1:
            raise OptionsError(
                f"sentence {i} (0-based) has {lengths[0]} gold, {lengths[1]} parent and "
                f"{lengths[2]} child tags: expected one tag per word in each"
            )


def _check_tags(sequences, allowed: set[str], whose: str, error: type[Exception]) -> None:
    for i, seq in enumerate(sequences):
        for k, tag in enumerate(seq):
            if tag not in allowed:
                what = "either model's labels" if whose == "gold" else f"the {whose}'s labels"
                raise error(
                    f"sentence {i} (0-based), token {k}: {whose} tag {tag!r} is not one of {what}"
                )


def _entities(sequences, scheme: Scheme, types: Sequence[str]) -> set[_Entity]:
    """Strict entities of ``types`` in ``sequences`` (tags of other types read as ``O``),
    extracted by seqeval. Types are renamed ``T0``, ``T1``, ... for seqeval, whose parser would
    mangle a type name starting with the separator, and back."""
    from seqeval import scheme as seqeval_scheme

    codes = {t: f"T{i}" for i, t in enumerate(types)}
    names = {c: t for t, c in codes.items()}
    converted = []
    for seq in sequences:
        tags = []
        for tag in seq:
            parts = scheme.split(tag)
            known = parts is not None and parts[1] in codes
            tags.append(f"{parts[0]}-{codes[parts[1]]}" if known else "O")
        if scheme.name == "IO":  # every run of one type is an entity: spell it in BIO
            tags = Scheme("BIO").encode(spans(tags, Scheme("IO")), len(tags))
        converted.append(tags)
    kind = getattr(seqeval_scheme, _SEQEVAL_SCHEMES[scheme.name])
    found = seqeval_scheme.Entities(converted, kind).entities
    return {(e.sent_id, e.start, e.end, names[e.tag]) for sent in found for e in sent}


def _prf(gold: set[_Entity], predicted: set[_Entity]) -> tuple[float, float, float]:
    """Precision, recall, F1 of exact matches (0.0 on a zero division, as seqeval's
    ``zero_division=0``)."""
    tp = len(gold & predicted)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _of_type(entities: set[_Entity], entity_type: str) -> set[_Entity]:
    return {e for e in entities if e[3] == entity_type}


def _per_type(gold, before, after, types) -> list[dict[str, Any]]:
    rows = []
    for t in types:
        g = _of_type(gold, t)
        if not g:
            continue
        pb, rb, fb = _prf(g, _of_type(before, t))
        pa, ra, fa = _prf(g, _of_type(after, t))
        rows.append(
            {
                "label": t,
                "support": len(g),
                "before": fb,
                "after": fa,
                "change_pts": 100.0 * (fa - fb),
                "precision_before": pb,
                "recall_before": rb,
                "precision_after": pa,
                "recall_after": ra,
            }
        )
    return sorted(rows, key=lambda r: r["change_pts"])  # stable: ties keep type order


def _type_metrics(gold, predicted, entity_type: str) -> dict[str, float]:
    g, p = _of_type(gold, entity_type), _of_type(predicted, entity_type)
    precision, recall, f1 = _prf(g, p)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": len(g),
        "predicted": len(p),
    }


def _tagged_new(entity: _Entity, child_tags, scheme: Scheme, new: set[str]) -> bool:
    sentence, start, end, _ = entity
    return any(scheme.type_of(tag) in new for tag in child_tags[sentence][start:end])


def check_old_types(parent, child, holdout, *, max_drop=None, max_label_drop=None, **run):
    """:func:`~headsurgeon.checks.check_old_labels` for token classifiers: tag the holdout's
    sentences with both models (a word's tag is its first subword's) and compare them with
    :func:`compare_entities`.

    Args:
        parent, child: model folders, or ``(model, tokenizer)`` pairs (fast tokenizers).
        holdout: a CoNLL/JSONL file (:func:`headsurgeon.tasks.token.data.read_sentences`) or a
            list of :class:`~headsurgeon.tasks.token.data.Sentence`.
        max_drop: tolerated drop of old-type entity F1 in points (default
            :data:`DEFAULT_MAX_DROP`); max_label_drop: per type.
        run: ``batch_size``, ``max_length``, ``device``, ``progress``, ``trust_remote_code``,
            ``allow_pickle`` (as for ``check_old_labels``).

    Raises:
        DataError: an unreadable holdout, a tag neither model has, no old-type entity.
    """
    from ...predict import labels_of_source, model_and_tokenizer

    max_drop = DEFAULT_MAX_DROP if max_drop is None else max_drop
    check_max_drop(max_drop, max_label_drop)
    parent_labels, child_labels = labels_of_source(parent), labels_of_source(child)
    sentences = read_holdout_sentences(holdout, parent_labels, child_labels)
    trust = {k: run.pop(k, False) for k in ("trust_remote_code", "allow_pickle")}
    return tag_and_compare(
        parent, child, sentences, parent_labels, child_labels,
        Tolerance(max_drop, max_label_drop), load=lambda s: model_and_tokenizer(s, **trust), **run,
    )  # fmt: skip


def read_holdout_sentences(holdout, parent_labels, child_labels) -> list:
    """The holdout's sentences: a CoNLL/JSONL file's, in the child's scheme, or a list of
    :class:`~headsurgeon.tasks.token.data.Sentence` as given.

    Raises:
        DataError: a file of the other task's data, an unreadable file, no sentence.
    """
    if isinstance(holdout, (str, os.PathLike)):
        check_data_task(holdout, token_model=True, option="--holdout")
        # the parent's types too: entities of a type the child lost are missed after, as a
        # text check counts a removed label's examples wrong (cut them to O if intended)
        both = [*child_labels, *(t for t in parent_labels if t not in set(child_labels))]
        sentences = read_holdout(holdout, both)
    else:
        sentences = list(holdout)
    if not sentences:
        raise DataError("the holdout holds no sentence")
    return sentences


def tag_and_compare(
    parent, child, sentences, parent_labels, child_labels, tolerance: Tolerance, *, load, **run
) -> EntityCheckReport:
    """Tag ``sentences`` with the parent, then with the child (``load``: source → ``(model,
    tokenizer)``; ``run``: ``batch_size``, ``max_length``, ``device``, ``progress``) and compare
    their tags on the old types (:func:`compare_entities`)."""
    words = [s.tokens for s in sentences]
    lengths = [len(w) for w in words]
    tags = []
    for who, source, labels in (("parent", parent, parent_labels), ("child", child, child_labels)):
        model, tokenizer = load(source)
        kwargs = {k: v for k, v in run.items() if v is not None}
        logits = predict_word_logits(
            model, tokenizer, words, desc=f"tagging holdout ({who})", unit="sentences", **kwargs
        )
        tags.append(tags_from_logits(logits, labels, lengths))
    return compare_entities(
        [list(s.tags) for s in sentences], *tags, parent_labels, child_labels,
        max_drop=tolerance.max_drop, max_label_drop=tolerance.max_label_drop,
    )  # fmt: skip
