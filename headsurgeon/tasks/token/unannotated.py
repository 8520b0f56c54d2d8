"""Replayed words that may be unannotated mentions of the new types.

The replay is annotated for the old types only: a mention of a new type in it reads ``O``, and
training on it as ``O`` teaches the new type that its own mentions are no entity. On the NER
benchmark's DBPedia parent sentences (551 NORP and 923 CARDINAL mentions among 3,000) replaying
all of them took two new types' F1 from 59.4 to 40.5. :func:`unannotated_guard` leaves such words
out of the loss: a replayed word the parent reads as ``O`` whose nearest word of the new data
(cosine of the parent's word features) is a new type's. The other replayed ``O`` words stay the
new types' negatives, which is what a larger replay is for (forum posts: NORP F1 45.6 -> 68.6
with every parent sentence replayed, joint retraining 72.5): docs/benchmarks.md (NER).

No torch at import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

#: on (the default); the NER benchmark turns it off to measure what it does
ENABLED = True
#: a replayed word is left out when a new type's word is among its this many nearest words of
#: the new data (1: the nearest; the NER benchmark's ``guard-k5`` measures 5)
NEIGHBOURS = 1


def unannotated_guard(
    plan, examples: Sequence, features: Sequence, is_new: Callable[[Any], bool]
) -> Callable | None:
    """``guard(x) -> bool[words]``: which of a replayed sentence's words (features ``x``, one row
    per word) lie nearer a new type's word of the new data than any other new-data word (with
    :data:`NEIGHBOURS` > 1: have one among their nearest); ``None``
    when off, when the new data has no word of a new type or none of another tag, or when the
    replay is annotated for the new types (a replayed sentence holds one: its ``O`` is then ``O``).

    Args:
        plan: the run's plan (its ``new_labels``).
        examples: the training sentences (new and replayed), ``features`` their word features.
        is_new: whether a sentence is of the new data (else replayed).
    """
    import torch

    new = set(plan.new_labels)
    if not ENABLED or not new:
        return None
    pos: list = []
    neg: list = []
    for s, x in zip(examples, features, strict=True):
        tags = s.tags[: len(x)]
        if not is_new(s):
            if new & set(tags):
                return None  # the replay is annotated for the new types
            continue
        for w, tag in enumerate(tags):
            (pos if tag in new else neg).append(x[w])
    if not pos or not neg:
        return None
    unit = torch.nn.functional.normalize
    near_pos = unit(torch.stack(pos).float(), dim=-1)
    near_neg = unit(torch.stack(neg).float(), dim=-1)
    k = NEIGHBOURS

    def guard(x) -> torch.Tensor:  # a new type's word nearer than the k-th nearest other word
        x = unit(x.float(), dim=-1)
        if k > len(near_neg):  # fewer other words than neighbours: a new type's is among them
            return torch.ones(len(x), dtype=torch.bool)
        return (x @ near_pos.T).max(-1).values > (x @ near_neg.T).topk(k, -1).values[:, -1]

    return guard
