"""``TrainPlan``: what one ``train_model`` call works on, decided once and handed to every stage.

Labels (old, new, their ids), the task (:mod:`.tasks`), the head, the device, what trains (the
probe of the blocks, the neck, features only or the top blocks and where they are cut), the
caches and the parent's old-label head. Stages take the plan instead of 8–13 arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import labels as _labels
from ..errors import OptionsError
from . import processes
from .calibration import Tolerance
from .options import TrainOptions


@dataclass
class TrainPlan:
    """What a training run works on (see the module docstring).

    Attributes:
        model, tokenizer: the model and its tokenizer (the task's view of it: right padded,
            words split for token classification).
        task: :class:`~.tasks.SequenceTask` or :class:`~.tasks.TokenTask`.
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
        features: the :class:`~.features.FeatureStore` (the head's inputs of texts).
        hidden_cache: text → input of the lowest trained block.
        parent: the parent's old-label head, features → old-label logits.
        tolerance: the gate's tolerances.
        data_keys: keys of the new data's examples (token targets depend on it).
        holdout_lengths: words per holdout sentence that have features (token classification).
        token_new_weight: the new types' word weight used (token classification).
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
    token_new_weight: float | None = None

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


def make_plan(model, tokenizer, data, *, old_labels, options, tolerance, head_path, caches):
    """Decide everything :class:`TrainPlan` holds (one probe pass at most; no data pass).

    Raises:
        OptionsError: a model with parallel heads asked to train on cached features.
    """
    from ..locate import locate_head
    from .features import FeatureStore, parent_head, probe_model, right_padded, top_cut
    from .freezing import model_blocks, neck_parameters
    from .tasks import task_for

    task = task_for(model)
    labels = _labels.labels_of(model.config)
    if old_labels is None:
        seen = set().union(*(task.labels_in(e) for e in data)) if data else set()
        old_labels = [n for n in labels if n not in seen]
    old_labels = [n for n in labels if n in set(old_labels)]
    new_labels = [n for n in labels if n not in set(old_labels)]
    # the task's defaults where options leave them None
    blocks = model_blocks(model, head_path)
    options = options.for_task(task.name, blocks, len(old_labels), len(new_labels))
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


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``mps`` when available, else ``cpu``; under a
    launcher ``cuda`` is this process's GPU (``cuda:LOCAL_RANK``)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    return processes.local_device(device)


def keys(plan: TrainPlan, examples: Sequence[Any]) -> list[str]:
    return [plan.task.key(e) for e in examples]
