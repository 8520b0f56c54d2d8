"""The loss of a training batch (what :class:`~.trainer.HeadsurgeonTrainer` minimises).

- :func:`weighted_cross_entropy`: cross-entropy of each example, weighted (replay, class and
  new-label weights are in the rows' ``weight``);
- :func:`distillation`: KL between the parent's and the child's old-label distributions at
  temperature T, scaled by T² (sequence classification, ``--distill``);
- :func:`target_cross_entropy`: cross-entropy against a target distribution per scored position
  (token classification: one-hot for gold tags, the parent's old-tag distribution for the ``O``
  words of data annotated for the new types only, as ExtendNER distils them).

``across`` is how a sum over this process's slice of the batch becomes one over the whole batch:
the trainer's per-process mean (see :meth:`~.trainer.HeadsurgeonTrainer.per_process_mean`),
the identity with one process.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Across = Callable[[torch.Tensor], torch.Tensor]


def _local(total: torch.Tensor) -> torch.Tensor:
    return total


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, across: Across = _local
) -> torch.Tensor:
    """Example-weighted cross-entropy: ``sum(weight * ce) / sum(weight)``."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (ce * weight).sum() / across(weight.sum())


def distillation(
    logits: torch.Tensor,
    parent: torch.Tensor,
    old_ids: torch.Tensor,
    scale: float,
    temperature: float,
    across: Across = _local,
) -> torch.Tensor:
    """``scale`` × KL(parent ‖ child) over the old labels at ``temperature`` T, × T², averaged
    over the examples (``parent``: the parent's old-label logits of the batch)."""
    t = temperature
    child_old = logits[:, old_ids.to(logits.device)] / t
    kl = F.kl_div(
        F.log_softmax(child_old, -1),
        F.log_softmax(parent.float() / t, -1),
        reduction="sum",
        log_target=True,
    ) / across(torch.tensor(float(len(logits)), device=logits.device))
    return scale * kl * t * t


def target_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, across: Across = _local
) -> torch.Tensor:
    """Cross-entropy against a target distribution per scored position, weighted; positions of
    weight 0 (a word's later subwords, padding) do not count."""
    ce = -(target * F.log_softmax(logits, -1)).sum(-1)
    return (ce * weight).sum() / across(weight.sum()).clamp_min(1e-12)
