"""The loss of a training batch (what :class:`~.trainer.HeadsurgeonTrainer` minimises).

- :func:`weighted_cross_entropy`: cross-entropy of each example, weighted (replay, class and
  new-label weights are in the rows' ``weight``);
- :func:`distillation`: KL between the parent's and the child's old-label distributions at
  temperature T, scaled by T² (sequence classification, ``--distill``);
- :func:`weighted_bce`: binary cross-entropy with logits of each (example, label) against a
  target probability, weighted per entry (multi-label classification: multi-hot gold, or the
  parent's sigmoid for labels the data was not annotated for);
- :func:`target_cross_entropy`: cross-entropy against a target distribution per scored position
  (token classification: one-hot for gold tags, the parent's old-tag distribution for the ``O``
  words of data annotated for the new types only, as ExtendNER distils them).

``across`` is how a sum over this process's slice of the batch becomes one over the whole batch:
the trainer's per-process mean (see :meth:`~.trainer.HeadsurgeonTrainer.per_process_mean`),
the identity with one process.

``parts``: a dict the loss functions add their share of the loss to, detached, for the
telemetry (:mod:`.telemetry`): ``new`` (the examples or positions of the new labels), ``other``
(replay and any other label) and ``distill``; ``new + other (+ distill)`` is the loss. A part
the batch has no example of is NaN (not 0: the telemetry leaves it out of its curves).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Across = Callable[[torch.Tensor], torch.Tensor]
Parts = dict[str, torch.Tensor]


def _local(total: torch.Tensor) -> torch.Tensor:
    return total


def _split(per_item: torch.Tensor, new, counted: torch.Tensor, denom, parts: Parts | None):
    """Add the new labels' and the others' shares of ``per_item.sum() / denom`` to ``parts``
    (``new``, ``counted``: masks of the items of a new label, of the items that count)."""
    if parts is None or new is None:
        return
    with torch.no_grad():
        for name, mask in (("new", new & counted), ("other", ~new & counted)):
            share = (per_item * mask).sum() / denom if bool(mask.any()) else math.nan
            parts[name] = parts.get(name, 0.0) + share


def weighted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    across: Across = _local,
    *,
    new_ids: torch.Tensor | None = None,
    parts: Parts | None = None,
) -> torch.Tensor:
    """Example-weighted cross-entropy: ``sum(weight * ce) / sum(weight)``; with ``parts`` and
    ``new_ids``, its new-label and other shares are added to ``parts``."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    denom = across(weight.sum())
    new = None if new_ids is None else torch.isin(labels, new_ids.to(labels.device))
    _split(ce.detach() * weight, new, weight > 0, denom, parts)
    return (ce * weight).sum() / denom


def distillation(
    logits: torch.Tensor,
    parent: torch.Tensor,
    old_ids: torch.Tensor,
    scale: float,
    temperature: float,
    across: Across = _local,
    parts: Parts | None = None,
) -> torch.Tensor:
    """``scale`` × KL(parent ‖ child) over the old labels at ``temperature`` T, × T², averaged
    over the examples (``parent``: the parent's old-label logits of the batch); added to
    ``parts["distill"]`` when given."""
    t = temperature
    child_old = logits[:, old_ids.to(logits.device)] / t
    kl = F.kl_div(
        F.log_softmax(child_old, -1),
        F.log_softmax(parent.float() / t, -1),
        reduction="sum",
        log_target=True,
    ) / across(torch.tensor(float(len(logits)), device=logits.device))
    loss = scale * kl * t * t
    if parts is not None:
        parts["distill"] = parts.get("distill", 0.0) + loss.detach()
    return loss


def target_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    across: Across = _local,
    *,
    new_ids: torch.Tensor | None = None,
    parts: Parts | None = None,
) -> torch.Tensor:
    """Cross-entropy against a target distribution per scored position, weighted; positions of
    weight 0 (a word's later subwords, padding) do not count. With ``parts`` and ``new_ids``,
    the shares of the positions whose target is mostly a new tag and of the others are added
    to ``parts``."""
    ce = -(target * F.log_softmax(logits, -1)).sum(-1)
    denom = across(weight.sum()).clamp_min(1e-12)
    new = None
    if new_ids is not None and parts is not None:
        new = torch.isin(target.argmax(-1), new_ids.to(target.device))
    _split(ce.detach() * weight, new, weight > 0, denom, parts)
    return (ce * weight).sum() / denom


def weighted_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    across: Across = _local,
    *,
    new_ids: torch.Tensor | None = None,
    parts: Parts | None = None,
) -> torch.Tensor:
    """BCE-with-logits of every (example, label) against ``target`` (probabilities),
    ``sum(weight * bce) / sum(weight)``; entries of weight 0 do not count. With ``parts`` and
    ``new_ids``, the shares of the new labels' entries and of the others are added to
    ``parts``."""
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    denom = across(weight.sum()).clamp_min(1e-12)
    new = None
    if new_ids is not None and parts is not None:
        new = torch.zeros_like(weight, dtype=torch.bool)
        new[:, new_ids.to(new.device)] = True
    _split(bce.detach() * weight, new, weight > 0, denom, parts)
    return (bce * weight).sum() / denom
