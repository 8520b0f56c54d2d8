"""Which old examples training replays, and which it holds out for calibration.

- :func:`~headsurgeon.data.split_slice`: a seeded slice of each old label's examples held out of training, for the
  calibration against the gate (:mod:`.calibration`);
- :func:`~headsurgeon.data.sample_replay`: up to ``per_label`` examples of each old label
  (class-balanced, seeded), the whole of the *confusable* labels (a text task's replay);
- :func:`confusable_labels`: the old labels the parent reads each new label's examples as (its
  near-synonyms): replaying all of their examples teaches the trained layers the boundary where
  the new label's false positives and misses are;
- :func:`example_sets`: which examples one run trains on, replays, holds out and scores
  (:class:`ExampleSets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..data import (
    Example,
    sample_replay,  # noqa: F401  (headsurgeon.train.sample_replay)
    split_slice,  # noqa: F401  (held here before)
)


def confusable_labels(parent_logits, data: Sequence[Example], old_labels: Sequence[str], k: int):
    """The ``k`` old labels the parent gives most probability to, on average over each new
    label's examples (``parent_logits``: the parent's old-label logits of ``data``)."""
    if k <= 0 or not len(data):
        return []
    probs = parent_logits.float().softmax(-1)
    chosen: dict[str, None] = {}
    for name in dict.fromkeys(e.label for e in data if e.label not in set(old_labels)):
        rows = [i for i, e in enumerate(data) if e.label == name]
        top = probs[rows].mean(0).topk(min(k, probs.shape[1])).indices.tolist()
        chosen.update(dict.fromkeys(old_labels[i] for i in top))
    return list(chosen)


@dataclass
class ExampleSets:
    """The examples of one run: the new data plus the sampled replay, the holdout, the slice
    held out of the replay for calibration, and the old labels replayed whole."""

    train: list
    replayed: list
    holdout: list | None
    held: list
    confusable: list[str]
    #: each new label's nearest old label by the parent's reading of its examples
    #: (:func:`near_synonyms`; a task that reads one label per example)
    pairs: dict[str, dict] = field(default_factory=dict)

    @property
    def scored(self) -> list:
        return [*(self.holdout or []), *self.held]


def example_sets(plan, data, replay, holdout) -> ExampleSets:
    """Split one run's examples (see :class:`ExampleSets`)."""
    options = plan.options
    per_label = options.calibrate_per_label if plan.calibrating else 0
    if plan.task.calibrates:
        held, rest = plan.task.hold_out(replay, plan.old_labels, per_label, options.seed)
    else:
        held, rest = [], list(replay)
    confusable = []
    wanted = options.replay_per_label and options.replay_confusable and replay
    if wanted and plan.task.replays_confusable:
        data_x = plan.features.of(plan.keys(data))  # a few examples: the new ones
        parent = plan.parent(data_x)
        confusable = confusable_labels(parent, data, plan.old_labels, options.replay_confusable)
    replayed = plan.task.sample_replay(
        rest, plan.old_labels, options.replay_per_label, options.seed, whole=confusable
    )
    return ExampleSets(list(data) + replayed, replayed, holdout, held, confusable)


def pair_new_labels(plan, sets: ExampleSets, data) -> None:
    """Fill ``sets.pairs`` (:func:`near_synonyms`) from the new examples' cached features (after
    the caching pass, so that no pass runs for them alone); a task that reads one label per
    example only."""
    if plan.task.replays_confusable and plan.new_labels and data:
        parent = plan.parent(plan.features.of(plan.keys(data)))
        sets.pairs = near_synonyms(parent, data, plan.old_labels, plan.new_labels)


def near_synonyms(parent_logits, data, old_labels, new_labels) -> dict[str, dict]:
    """Each new label's nearest old label: the one the parent gives most probability to, on
    average over the new label's examples (``parent_logits``: its old-label logits of
    ``data``), and that probability. A near-synonym new label (``parent_probability`` well
    above chance) is where an old label's examples are at risk (the gate's per-label guard
    names the label that took them)."""
    probs = parent_logits.float().softmax(-1)
    out = {}
    for name in new_labels:
        rows = [i for i, e in enumerate(data) if e.label == name]
        if rows:
            mean = probs[rows].mean(0)
            j = int(mean.argmax())
            out[name] = {"old_label": old_labels[j], "parent_probability": round(float(mean[j]), 3)}
    return out
