"""The new labels' decision thresholds of a multi-label classifier, calibrated on held-out old
texts under a false-positive budget.

A new label trained from a handful of positives against hundreds of replayed negatives comes out
with badly placed scores: too shy (it never fires) or, trained on its positives alone, firing on
everything. Its threshold is what decides. Held-out old texts (kept out of training) carry none
of the new labels, so each new label's scores on them are its negatives': the label's bias is
shifted so that it fires on at most ``budget`` of them, and as many as that (the highest recall
the budget allows). The budget is the smaller of

- the false positives a ``calibrate_precision`` precision allows, assuming the new label is as
  frequent as an average old label of the held-out texts, and
- ``FALSE_FIRE_CAP`` of the held-out texts (``calibrate``, when a number, is that share in
  percent instead),

times ``calibrate_safety`` (the part of it calibration may spend, as for single-label
calibration). A held-out slice too small to resolve that rate (the budget comes to less than one
text) cannot say how far up a label may go: the label is then not raised, only lowered until it
fires on at most one held-out text (and the record says ``"resolved": false``). Shifting the bias instead of storing a threshold keeps the new labels' threshold
at 0.5: a plain ``sigmoid(logits) > 0.5`` (what transformers' pipelines and most users apply)
decides as the gate measured. Old labels are never touched: in a multi-label head each label
decides alone, so the new labels' calibration cannot move an old label's decisions.

No torch at import.
"""

from __future__ import annotations

import math
from typing import Any

#: at most this share of the held-out texts may fire a new label (before ``calibrate_safety``)
FALSE_FIRE_CAP = 0.01
#: a label fires this far past its boundary (logit units)
_EPS = 1e-4


class ThresholdCalibration:
    """One calibration of the new labels' biases (see the module docstring).

    Args:
        labels: every label of the model (class-id order).
        new_labels: the labels to calibrate.
        options: :class:`~headsurgeon.train.options.TrainOptions` (``calibrate*`` fields).
        thresholds: each label's decision threshold (probability; class-id order).
    """

    def __init__(self, labels, new_labels, options, thresholds):
        self.labels, self.options = list(labels), options
        self.new_ids = [self.labels.index(n) for n in new_labels]
        self.old_ids = [i for i in range(len(self.labels)) if i not in set(self.new_ids)]
        self.thresholds = list(thresholds)

    def budget(self, examples) -> int:
        """How many held-out texts each new label may fire on."""
        n = len(examples)
        if isinstance(self.options.calibrate, (int, float)):
            allowed = self.options.calibrate / 100 * n
        else:
            allowed = FALSE_FIRE_CAP * n
            p = self.options.calibrate_precision
            if p is not None:
                old = [self.labels[i] for i in self.old_ids]
                positives = sum(len(set(e.labels) & set(old)) for e in examples)
                per_label = positives / max(1, len(old))
                allowed = min(allowed, (1 - p) / p * per_label)
        return int(self.options.calibrate_safety * allowed + 1e-6)

    def run(self, data, linear) -> dict[str, Any]:
        """Shift ``linear``'s new-label biases in place (``data``: a
        :class:`~headsurgeon.train.calibration.CalibrationSet` of old texts); return what was
        done (JSON-able)."""
        import torch

        logits = data.predict().float()
        k = self.budget(data.examples)
        shifts, fired = {}, {}
        for j in self.new_ids:
            boundary = math.log(self.thresholds[j] / (1 - self.thresholds[j]))
            margin = (logits[:, j] - boundary).sort(descending=True).values
            shift = _shift_firing(margin, k) if k else min(0.0, _shift_firing(margin, 1))
            with torch.no_grad():
                linear.bias[j] += shift
            name = self.labels[j]
            shifts[name] = round(shift, 4)
            fired[name] = int((margin + shift > 0).sum())
        return {
            "method": "thresholds",
            "examples": len(data.examples),
            "held_out": data.held_out,
            "shifts": shifts,
            "allowed_false_positives": k,
            "resolved": k > 0,
            "false_positives": fired,
            "thresholds": {self.labels[j]: self.thresholds[j] for j in self.new_ids},
        }


def _shift_firing(margins_desc, k: int) -> float:
    """The shift after which exactly the ``k`` largest of the (descending) margins are above 0
    (all of them when ``k`` is at least their number; ``0.0`` with no margin)."""
    if not len(margins_desc):
        return 0.0
    if k >= len(margins_desc):
        return -margins_desc[-1].item() + _EPS
    return -margins_desc[k].item() - _EPS
