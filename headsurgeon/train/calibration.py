"""Bias calibration of the new labels, against the gate, on old examples held out of training.

Trained from a few shots against hundreds of replayed old examples, the new labels come out
under-predicted *as a group*. One common shift of their biases (as BiC's bias correction, Wu et
al. 2019, which also fits it on a held-out split) corrects that prior without favouring one new
label over another. How far to shift is the question, and the answer comes from the gate:

- ``"gate"`` (default): a seeded slice of the replay (``calibrate_per_label`` examples per old
  label) is held out of training. The largest common shift is taken whose old-label accuracy
  drop *on that slice* (child against parent, the gate's own measure) stays within
  ``calibrate_safety`` of ``max_drop`` (and of ``max_label_drop`` per label, when set). Then
  each new label is lowered, on its own, until it takes at most the false positives a
  ``calibrate_precision`` precision allows, assuming the new label is as frequent as an average
  old label, and at most ``calibrate_label_cap`` percent of any one old label.
- a number PTS: the shift flips PTS percent of the (held-out) old examples the parent got
  right to a new label, whatever the gate's tolerance (the behaviour before ``"gate"``).

When one held-out example is worth more points than the allowance (``100 / n >
calibrate_safety * max_drop``: 21 images against 0.25 pt), the slice cannot tell what a shift
costs, so ``"gate"`` does not raise the new labels; it still lowers them when the trained model
already takes more than the allowance on the slice (the shift that flips none of its examples),
and the precision bound and the per-label cap may lower them too; the record says
``"resolved": false`` and why.

Without a held-out slice (replay too small to spare one), the training replay stands in and the record says
so: its examples were trained on, so the estimate is optimistic, and the gate rule may lower the
new labels on it but never raises them.

For one run of :func:`~.run.train_model`: :func:`calibration_set` (what to calibrate on),
:func:`calibration_skipped` (why not, warned once) and :func:`calibrate` (shift the head).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..data import Example
from ..gate import Tolerance

if TYPE_CHECKING:
    from .replay import ExampleSets

logger = logging.getLogger(__name__)

#: an example flips to a new label this far past the boundary (logit units)
_EPS = 1e-4


@dataclass
class CalibrationSet:
    """Old examples to calibrate on and how to score them.

    Attributes:
        examples: old-label examples (the held-out slice, or the training replay).
        parent_logits: the parent's old-label logits of ``examples`` (CPU float32).
        predict: returns the current child's logits of ``examples`` (every label).
        held_out: whether ``examples`` were kept out of training.
    """

    examples: list[Example]
    parent_logits: Any
    predict: Callable[[], Any]
    held_out: bool


class Calibration:
    """One calibration of the new labels' biases on a :class:`CalibrationSet`.

    Args:
        labels: every label of the model (class-id order).
        new_labels: the labels to shift.
        options: :class:`~headsurgeon.train.options.TrainOptions` (``calibrate*`` fields).
        tolerance: the gate's :class:`~headsurgeon.gate.Tolerance`.
    """

    def __init__(self, labels, new_labels, options, tolerance: Tolerance):
        self.labels, self.options, self.tolerance = list(labels), options, tolerance
        self.criterion: tuple[float, ...] | None = None
        self.new_ids = [self.labels.index(n) for n in new_labels]
        self.old_ids = [i for i in range(len(self.labels)) if i not in set(self.new_ids)]

    def run(self, data: CalibrationSet, linear) -> dict[str, Any]:
        """Shift ``linear``'s new-label biases in place; return what was done (JSON-able)."""
        import torch

        logits = data.predict().float()
        old_names = [self.labels[i] for i in self.old_ids]
        gold = torch.tensor([old_names.index(e.label) for e in data.examples])
        parent_right = data.parent_logits.argmax(-1) == gold
        shifts = torch.zeros(len(self.labels))
        unresolved = self._unresolved(len(gold))
        if self.options.calibrate != "gate":
            common = self._budget_shift(logits[parent_right], float(self.options.calibrate))
        elif unresolved:
            # the slice cannot price a raise; what it measures beyond the allowance still
            # lowers the new labels (the shift that flips none of its examples)
            common = min(0.0, self._gate_shift(logits, gold, parent_right))
            logger.info("calibration: %s", unresolved)
        else:
            common = self._gate_shift(logits, gold, parent_right)
            if not data.held_out and common > 0:
                # on examples it trained on the estimate is optimistic: lower, never raise
                unresolved = (
                    "calibrated on replayed examples the model trained on (no held-out slice "
                    "that could price the allowance), where the drop estimate is optimistic: "
                    "the new labels are not raised"
                )
                common = 0.0
        shifts[self.new_ids] = common
        self._lower_per_label(logits, gold, parent_right, shifts)
        with torch.no_grad():
            linear.bias[self.new_ids] += shifts[self.new_ids].to(linear.bias)
        after = logits + shifts
        return {
            "method": "gate" if self.options.calibrate == "gate" else "budget",
            "examples": len(data.examples),
            "held_out": data.held_out,
            "common_shift": round(float(common), 4),
            "shifts": {self.labels[j]: round(shifts[j].item(), 4) for j in self.new_ids},
            "estimated_drop_pts": round(self._drop(after, gold, parent_right), 3),
            "allowed_drop_pts": round(self._allowed(), 3),
            **self._criterion(),
            **self._resolution(unresolved),
            "false_positives": {
                self.labels[j]: int((after.argmax(-1) == j).sum()) for j in self.new_ids
            },
        }

    def _criterion(self) -> dict[str, float]:
        """What the gate rule saw (``calibrate="gate"``): the drop it measures (fixes weighed by
        ``calibrate_fixes``) of training alone and at the common shift (before the precision
        bound and the per-label cap lower any label), in points; the first beyond
        ``allowed_drop_pts`` means no held-out example was let flip."""
        if self.criterion is None:
            return {}
        trained, chosen = self.criterion
        return {
            "criterion_trained_drop_pts": round(trained, 3),
            "criterion_drop_pts": round(chosen, 3),
        }

    def _unresolved(self, n: int) -> str | None:
        """Why the gate rule cannot price a shift on ``n`` old examples (one of them is worth
        more points than the allowance), or ``None`` when it can (or does not apply)."""
        allowed, each = self._allowed(), 100 / max(n, 1)
        if self.options.calibrate != "gate" or each <= allowed + 1e-9:
            return None
        more = (
            f"hold out at least {math.ceil(100 / allowed - 1e-9)} (a larger --replay, or "
            "--calibrate-per-label)"
            if allowed > 0
            else "no number of examples prices a zero allowance"
        )
        return (
            f"one of the {n} old examples calibrated on is {each:.2f} pt of the drop, more than the "
            f"{allowed:.2f} pt allowed (calibrate_safety x max_drop): the new labels are not "
            f"raised (only lowered); {more}"
        )

    def _resolution(self, unresolved: str | None) -> dict[str, Any]:
        """``{"resolved": ...}`` (``calibrate="gate"``), with the reason when it is not."""
        if self.options.calibrate != "gate":
            return {}
        if unresolved is None:
            return {"resolved": True}
        return {"resolved": False, "unresolved_reason": unresolved}

    def _allowed(self) -> float:
        return self.options.calibrate_safety * self.tolerance.max_drop

    def _limit(self, trained: float) -> float:
        """The drop the common shift may reach on the slice, training's own (``trained``)
        included: the allowance, or what training lost plus the allowance, never past the
        gate's tolerance. The flips then spend the allowance even when training alone spent
        some of it on the parent's own training texts, where it only loses (on stackoverflow
        it had spent 0.2 of 0.25 pt: no example could flip, and one old text read as a new
        label with a margin of 7.3 lowered all five new labels by that much, recall 0.72)."""
        allowed = self._allowed()
        return max(allowed, min(trained + allowed, self.tolerance.max_drop))

    def _drop(self, logits, gold, parent_right) -> float:
        right = self._right(logits, gold).double().mean()
        return 100 * (parent_right.double().mean() - right).item()

    def _right(self, logits, gold):
        """Which examples the child gets right (a new label is always wrong on old examples)."""
        return self.old_ids_tensor(logits)[logits.argmax(-1)] == gold

    def old_ids_tensor(self, logits):
        """Class id → index among the old labels (-1 for a new label)."""
        import torch

        index = torch.full((logits.shape[1],), -1, dtype=torch.long)
        index[self.old_ids] = torch.arange(len(self.old_ids))
        return index

    def _margin(self, logits):
        """How far each example is from flipping to a new label (best new − best old)."""
        return logits[:, self.new_ids].max(1).values - logits[:, self.old_ids].max(1).values

    def _gate_shift(self, logits, gold, parent_right) -> float:
        """The largest common shift whose drop on ``logits`` stays within the safety fraction of
        the gate's tolerances (aggregate, and per old label when the gate checks labels)."""
        import torch

        margin = self._margin(logits)
        order = margin.argsort(descending=True)
        old_pred = logits[:, self.old_ids].argmax(-1)
        right_unless_flipped = (old_pred == gold)[order].double()
        n = len(gold)
        # after the k examples of largest margin flip: right = those not flipped and right
        # losses (parent right, child wrong) minus the fixes (parent wrong, child right) weighed
        # by calibrate_fixes: 1 is the gate's own net measure; below 1, fixes on replay the parent
        # was trained on count for less than losses, as they transfer to new data only in part
        parent_right_sorted = parent_right[order].double()
        kept = parent_right_sorted * right_unless_flipped
        fixed = (1 - parent_right_sorted) * right_unless_flipped
        zero = torch.zeros(1, dtype=torch.double)
        losses = parent_right.double().sum() - kept.sum() + torch.cat([zero, kept.cumsum(0)])
        fixes = fixed.sum() - torch.cat([zero, fixed.cumsum(0)])
        drop = 100 * (losses - self.options.calibrate_fixes * fixes) / n
        ok = drop <= self._limit(drop[0].item()) + 1e-6
        if self.tolerance.max_label_drop is not None:
            ok &= self._label_ok(order, gold, parent_right, right_unless_flipped)
        # the feasible k form a prefix (each flip can only lose). When training alone is beyond
        # the allowance, k = 0: no held-out example may flip. (Letting flips that add no loss
        # through instead made stackoverflow's gate fail on 5 of 5 S1 draws, against 3 of 5.)
        k = int(ok.long().cumprod(0).sum().item()) - 1 if bool(ok[0]) else 0
        self.criterion = (drop[0].item(), drop[k].item())
        return _shift_flipping(margin.sort(descending=True).values, k)

    def _label_ok(self, order, gold, parent_right, right_unless_flipped):
        """For each k = 0..n: no old label's drop beyond the safety fraction of its tolerance."""
        import torch

        allowed = self.options.calibrate_safety * self.tolerance.max_label_drop
        ok = torch.ones(len(order) + 1, dtype=torch.bool)
        sorted_gold = gold[order]
        for g in gold.unique():
            mine = (sorted_gold == g).double() * right_unless_flipped
            size = int((gold == g).sum())
            before = parent_right[gold == g].double().mean()
            right = mine.sum() - torch.cat([torch.zeros(1, dtype=torch.double), mine.cumsum(0)])
            drop = 100 * (before - right / size)
            ok &= drop <= allowed + 1e-6
        return ok

    def _budget_shift(self, logits, points: float) -> float:
        """The common shift that flips ``points`` percent of ``logits``' examples."""
        if not len(logits):
            return 0.0
        margin = self._margin(logits).sort(descending=True).values
        return _shift_flipping(margin, int(points / 100 * len(logits)))

    def _lower_per_label(self, logits, gold, parent_right, shifts) -> None:
        """Lower each new label until it respects its false-positive budget (precision) and the
        per-old-label cap; lowering one label can pass examples to another: repeat until none
        moves."""
        import torch

        caps = []
        if self.options.calibrate_precision is not None:
            p = self.options.calibrate_precision
            per_label = len(gold) / max(1, len(gold.unique()))
            caps.append((torch.ones(len(gold), dtype=torch.bool), _count((1 - p) / p * per_label)))
        if self.options.calibrate_label_cap is not None:
            for g in gold.unique():
                group = parent_right & (gold == g)
                share = self.options.calibrate_label_cap / 100 * int(group.sum())
                caps.append((group, _count(share)))
        if not caps:
            return
        for _ in range(len(self.new_ids) + 1):
            moved = False
            shifted = logits + shifts
            for j in self.new_ids:
                others = torch.cat([shifted[:, :j], shifted[:, j + 1 :]], 1).max(1).values
                m = shifted[:, j] - others
                down = min(
                    [0.0]
                    + [
                        _shift_flipping(m[group].sort(descending=True).values, cap)
                        for group, cap in caps
                        if int(group.sum()) > cap
                    ]
                )
                if down < 0:
                    shifts[j] += down
                    shifted[:, j] += down
                    moved = True
            if not moved:
                break


def _count(x: float) -> int:
    """``floor(x)``, forgiving the float error of a product such as 0.2 / 0.8 * 40."""
    return int(x + 1e-6)


def _shift_flipping(margins_desc, k: int) -> float:
    """The shift after which exactly the ``k`` largest of the (descending) ``margins`` are above 0;
    ``0.0`` when ``margins`` is empty. With ``k`` at least their number: the shift that flips all
    of them."""
    if not len(margins_desc):
        return 0.0
    if k >= len(margins_desc):
        return -margins_desc[-1].item() + _EPS
    return -margins_desc[k].item() - _EPS


def calibration_set(plan, sets: ExampleSets, top) -> CalibrationSet | None:
    """The old examples one run calibrates on (the held-out slice, else the training replay)
    with the parent's logits and the child's predictor; ``None`` when the run does not calibrate
    or nothing cheaper than the whole model can predict them (``top``: the top blocks' runner)."""
    from .scoring import predictor

    if not (plan.calibrating and (sets.held or sets.replayed)):
        return None
    if not (plan.features_only or top is not None):
        return None
    examples = sets.held or sets.replayed
    x = plan.features.of(plan.keys(examples))
    predict = predictor(plan, examples, x, top, desc="calibrating")
    return CalibrationSet(examples, plan.parent(x), predict, held_out=bool(sets.held))


def calibration_skipped(plan, replayed, calibration) -> str | None:
    """Why the default calibration does not run (warned once), or ``None``."""
    options = plan.options
    if options.calibrate is None or not plan.new_labels:
        return None
    if not plan.task.calibrates:
        return f"not for {plan.task.name}"
    if not replayed:
        logger.warning(
            "not calibrated: --calibrate counts false positives on replayed old examples and "
            "there are none; pass --replay (or --no-calibrate)"
        )
        return "no replay"
    if calibration is None:
        logger.warning(
            "not calibrated: --calibrate needs the backbone frozen (cached inputs); the new "
            "biases stay as trained"
        )
        return "backbone not frozen"
    return None


def calibrate(plan, calibration: CalibrationSet | None) -> dict[str, Any]:
    """Run the task's calibration (:meth:`~headsurgeon.tasks.base.Task.calibrator`: the bias
    shift of :class:`Calibration` for one label per example, the thresholds of a multi-label
    task); ``{}`` when there is none, or the head has no bias."""
    if calibration is None:
        return {}
    linear = plan.model.get_submodule(plan.head.paths[0])
    if linear.bias is None:
        logger.warning(
            "the head %s has no bias: --calibrate has nothing to shift", plan.head.paths[0]
        )
        return {}
    return plan.task.calibrator(plan).run(calibration, linear)
