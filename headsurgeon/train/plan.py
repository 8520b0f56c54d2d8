"""``TrainPlan``: what one ``train_model`` call works on, decided once and handed to every stage.

Labels (old, new, their ids), the task (:class:`~headsurgeon.tasks.base.Task`), the head, the
device, what trains (the probe of the blocks, the neck, features only or the top blocks and
where they are cut), the caches and the parent's old-label head. Stages take the plan instead of
8–13 arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import labels as _labels
from ..errors import OptionsError
from ..gate import Tolerance
from . import processes
from .options import TrainOptions
from .processes import resolve_device


@dataclass
class TrainPlan:
    """What a training run works on (see the module docstring).

    Attributes:
        model, tokenizer: the model and its tokenizer (the task's view of it: right padded,
            words split for token classification).
        task: the model's :class:`~headsurgeon.tasks.base.Task`.
        options: the :class:`TrainOptions` (``progress`` off in processes other than the main).
        labels, old_labels, new_labels: every label in class-id order; the protected and
            checked ones; the others.
        old_ids: class ids of ``old_labels``.
        head: the located head (``.paths``).
        device: where training runs.
        probe: what one pass shows about the blocks (``None`` when not needed).
        neck: parameter names of the neck that trains (frozen backbone).
        features_only: only the head trains, on cached features.
        cut: ``(blocks, index)`` of the top-blocks path, else ``None``.
        features: the :class:`~.features.FeatureStore` (the head's inputs of examples, by key).
        hidden_cache: key → input of the lowest trained block.
        parent: the parent's old-label head, features → old-label logits.
        tolerance: the gate's tolerances.
        data_keys: keys of the new data's examples (a task's targets may depend on it).
        holdout_lengths: the features' lengths of each holdout example (words that have
            features, for a task with one feature per word).
        task_stats: what the task's stages decided from the data, for the run's stats.
        callbacks, trainer_args: the caller's ``TrainerCallback`` s and ``TrainingArguments``
            overrides (:func:`~.trainer.check_hooks`).
    """

    model: Any
    tokenizer: Any
    task: Any
    options: TrainOptions
    labels: list[str]
    old_labels: list[str]
    new_labels: list[str]
    old_ids: list[int]
    head: Any
    device: str
    tolerance: Tolerance
    probe: Any = None
    neck: list[str] = field(default_factory=list)
    features_only: bool = False
    cut: Any = None
    features: Any = None
    hidden_cache: MutableMapping[str, Any] = field(default_factory=dict)
    parent: Callable[[Any], Any] | None = None
    data_keys: set[str] = field(default_factory=set)
    holdout_lengths: list[int] = field(default_factory=list)
    task_stats: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)
    trainer_args: dict[str, Any] = field(default_factory=dict)

    @property
    def frozen(self) -> bool:
        return self.options.freeze == "backbone"

    @property
    def calibrating(self) -> bool:
        return (
            self.options.calibrate is not None
            and bool(self.new_labels)
            and self.frozen
            and self.task.calibrates
        )

    def keys(self, examples: Sequence[Any]) -> list[str]:
        """The cache keys of ``examples`` (the task's)."""
        return [self.task.key(e) for e in examples]


def make_plan(model, tokenizer, data, *, old_labels, options, tolerance, head_path, caches):
    """Decide everything :class:`TrainPlan` holds (one probe pass at most; no data pass).

    Raises:
        OptionsError: a model with parallel heads asked to train on cached features.
    """
    from ..locate import locate_head
    from ..tasks import task_for
    from .blocks import model_blocks, probe_model
    from .features import FeatureStore, parent_head, right_padded, top_cut
    from .freezing import neck_parameters

    task = task_for(model)
    labels = _labels.labels_of(model.config)
    if old_labels is None:
        seen = set().union(*(task.labels_in(e) for e in data)) if data else set()
        old_labels = [n for n in labels if n not in seen]
    old_labels = [n for n in labels if n in set(old_labels)]
    new_labels = [n for n in labels if n not in set(old_labels)]
    # the task's defaults where options leave them None
    blocks = model_blocks(model, head_path)
    options = options.for_task(task, blocks, len(old_labels), len(new_labels))
    head = locate_head(model, head_path)
    tokenizer = task.tokenizer(right_padded(tokenizer))
    device = resolve_device(options.device)
    processes.start(device)
    if not processes.is_main():  # one set of bars: the main process's
        options = dataclasses.replace(options, progress=False)
    model.to(device).eval()
    frozen = options.freeze == "backbone"
    wants_probe = (frozen and (options.train_neck or options.train_layers)) or options.llrd != 1
    probe = probe_model(model, tokenizer, head.paths) if wants_probe else None
    neck = neck_parameters(model, head.paths, probe) if frozen and options.train_neck else []
    features_only = frozen and options.train_layers == 0 and not neck
    if features_only and len(head.paths) > 1:
        raise OptionsError(
            "a model with parallel heads cannot train on cached features: use --freeze none"
        )
    old_ids = [labels.index(n) for n in old_labels]
    feature_cache, hidden_cache = caches
    return TrainPlan(
        model=model,
        tokenizer=tokenizer,
        task=task,
        options=options,
        labels=labels,
        old_labels=old_labels,
        new_labels=new_labels,
        old_ids=old_ids,
        head=head,
        device=device,
        tolerance=tolerance,
        probe=probe,
        neck=neck,
        features_only=features_only,
        cut=top_cut(model, tokenizer, head, options, neck),
        features=FeatureStore(model, tokenizer, head.paths[0], options, feature_cache, task),
        hidden_cache={} if hidden_cache is None else hidden_cache,
        parent=parent_head(model, head.paths[0], old_ids),
        data_keys={task.key(e) for e in data},
    )
