"""In-memory surgery: grow (or shrink) a model's classifier head and update its config.

Each head is replaced by a *new* ``nn.Linear`` on the same device and dtype; old rows (and old
biases) are copied bit for bit under ``torch.no_grad()``, new rows come from a named init policy.
The config's ``id2label``/``label2id`` are set directly, and every cached integer ``num_labels``
(config and submodules) is updated, since models use it to shape the loss.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import labels as _labels
from .errors import OptionsError, UnsupportedModelError
from .lineage import mark_surgery
from .locate import HeadRef, locate_head
from .tasks import task_of_model

logger = logging.getLogger(__name__)

#: how new rows start: mean of the old rows; zeros; normal(0, initializer_range); imprinting
#: (normalised mean feature of the new label's examples, scaled to the old rows' mean norm)
INIT_POLICIES = ("mean", "zeros", "normal", "imprint")
#: how new biases start: mean / minimum of the old biases, or zero
BIAS_POLICIES = ("mean", "min", "zeros")
DEFAULT_INIT = "mean"
DEFAULT_BIAS = "mean"


@dataclass
class SurgeryResult:
    """What a surgery did.

    Attributes:
        head: the head after surgery.
        labels_before: label names before, by id.
        labels_after: label names after, by id.
        added: names appended (empty for a removal/rename).
        removed: names dropped.
        init: new-row init policy used (``None`` when no row was added).
        bias: new-bias policy used.
    """

    head: HeadRef
    labels_before: list[str]
    labels_after: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    init: str | None = None
    bias: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head.to_dict(),
            "labels_before": self.labels_before,
            "labels_after": self.labels_after,
            "added": self.added,
            "removed": self.removed,
            "init": self.init,
            "bias": self.bias,
        }


def add_labels(
    model,
    names: Sequence[str],
    *,
    init: str = DEFAULT_INIT,
    bias: str = DEFAULT_BIAS,
    head_path: str | Sequence[str] | None = None,
    features: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> SurgeryResult:
    """Append one row per new label to the model's head(s), keeping every old weight.

    Args:
        model: a transformers classification model (changed in place: its head(s), its
            config's labels, and a note of the labels it had before, which
            :func:`~headsurgeon.train.train_model` protects by default).
        names: new label names, appended in order after the old ids. On a token classifier
            an entity type (``PRODUCT``) adds every tag of the model's scheme for it
            (``B-PRODUCT``, ``I-PRODUCT`` in BIO); a tag (``B-PRODUCT``) adds itself.
        init: new-row policy, one of :data:`INIT_POLICIES`.
        bias: new-bias policy, one of :data:`BIAS_POLICIES`.
        head_path: explicit head path(s); found automatically when ``None``.
        features: for ``init="imprint"``: ``{name: tensor[k, in_features]}``, the head's inputs
            for a few examples of each new label.
        seed: seed of the ``normal`` policy's generator (``None``: torch's global RNG).

    Returns:
        a :class:`SurgeryResult`.

    Raises:
        LabelError: empty, duplicate or existing names. OptionsError: unknown policy or
        missing imprint features. UnsupportedModelError / HeadNotFoundError /
        AmbiguousHeadError: from :func:`locate_head` or a layout that changes with the count.

    Example:
        >>> result = add_labels(model, ["lost_or_stolen_card"], init="mean")
        >>> result.labels_after[-1]
        'lost_or_stolen_card'
    """
    _check_policy("init", init, INIT_POLICIES)
    _check_policy("bias", bias, BIAS_POLICIES)
    before = _labels.labels_of(model.config)
    after = _labels.grown(before, names, task=task_of_model(model))
    added = after[len(before) :]
    if init == "imprint":
        _check_features(features, added)
    head = locate_head(model, head_path)
    _check_layout(model, len(after))
    for path in head.paths:
        old = model.get_submodule(path)
        rows, biases = _new_rows(model, old, added, init, bias, features, seed)
        _swap(model, path, _grow_linear(old, rows, biases))
    _set_label_count(model, after, len(before))
    result = SurgeryResult(
        locate_head(model, head.paths), before, after, added=added, init=init, bias=bias
    )
    mark_surgery(model, "add-label", before, **result.to_dict())  # train_model's old labels
    return result


def remove_labels(
    model,
    names: Sequence[str],
    *,
    head_path: str | Sequence[str] | None = None,
    force: bool = False,
) -> SurgeryResult:
    """Drop the rows of ``names`` and re-index the remaining labels densely (old order kept).

    On a token classifier an entity type (``PER``) stands for all its tags; removing ``O``, or
    some tags of a type while others stay, breaks its tagging scheme and is refused unless
    ``force``.

    Raises:
        LabelError: unknown names, removing every label, or breaking the tagging scheme.
    """
    import torch

    before = _labels.labels_of(model.config)
    after, kept = _labels.without(before, names, task=task_of_model(model), force=force)
    head = locate_head(model, head_path)
    _check_layout(model, len(after))
    index = torch.tensor(kept)
    for path in head.paths:
        old = model.get_submodule(path)
        new = _empty_like(old, len(kept))
        with torch.no_grad():
            new.weight.copy_(old.weight.index_select(0, index.to(old.weight.device)))
            if old.bias is not None:
                new.bias.copy_(old.bias.index_select(0, index.to(old.bias.device)))
        _swap(model, path, new)
    _set_label_count(model, after, len(before))
    removed = [n for n in before if n not in set(after)]
    result = SurgeryResult(locate_head(model, head.paths), before, after, removed=removed)
    mark_surgery(model, "remove-label", before, **result.to_dict())
    return result


def rename_label(model, old: str, new: str) -> list[str]:
    """Rename a label in the model's config (weights untouched); return the new label list.

    On a token classifier ``old`` may be an entity type: all its tags are renamed
    (``B-PER`` → ``B-PERSON``, ``I-PER`` → ``I-PERSON``).
    """
    before = _labels.labels_of(model.config)
    after = _labels.renamed(before, old, new, task=task_of_model(model))
    _labels.apply_to_config(model.config, after)
    mark_surgery(model, "rename-label", before, old=old, new=new, labels_after=after)
    return after


def _check_policy(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise OptionsError(f"unknown {what} policy {value!r}: expected one of {', '.join(allowed)}")


def _check_features(features, added: list[str]) -> None:
    missing = [n for n in added if not features or n not in features or len(features[n]) == 0]
    if missing:
        raise OptionsError(
            f"init 'imprint' needs example features of every new label; none for: {', '.join(missing)} "
            "(give training examples, or choose --init mean)"
        )


def _check_layout(model, count: int) -> None:
    """Refuse when the class built with ``count`` labels has other parameters than ``model``."""
    from .models import meta_model

    try:
        probe = meta_model(type(model), model.config, count)
    except Exception as e:  # constructor cannot run on meta: nothing to compare against
        logger.debug("layout check of %s skipped: %s", type(model).__name__, e)
        return
    have = {name for name, _ in model.named_parameters()}
    want = {name for name, _ in probe.named_parameters()}
    if have != want:
        raise UnsupportedModelError(
            f"{type(model).__name__} builds a different head layout with {count} labels "
            f"(parameters {sorted(have ^ want)[:4]}): a grown model would not reload; "
            "headsurgeon refuses rather than write a model that loads with a random head"
        )


def _new_rows(model, old, added, init, bias, features, seed):
    """Return ``(rows[k, in], biases[k] | None)`` in float32 for the new labels."""
    import torch

    weight = old.weight.detach().float()
    k = len(added)
    if init == "mean":
        rows = weight.mean(0, keepdim=True).expand(k, -1).clone()
    elif init == "zeros":
        rows = torch.zeros(k, weight.shape[1], device=weight.device)
    elif init == "normal":
        std = float(getattr(model.config, "initializer_range", None) or 0.02)
        gen = torch.Generator(device=weight.device)
        gen.manual_seed(seed) if seed is not None else gen.seed()
        rows = torch.randn(k, weight.shape[1], generator=gen, device=weight.device) * std
    else:  # imprint
        norm = weight.norm(dim=1).mean() if len(weight) else weight.new_tensor(1.0)
        means = torch.stack(
            [torch.as_tensor(features[n]).float().to(weight.device).mean(0) for n in added]
        )
        rows = torch.nn.functional.normalize(means, dim=1) * norm
    biases = None
    if old.bias is not None:
        b = old.bias.detach().float()
        if bias == "zeros" or not len(b):  # no old bias to take a mean or minimum of
            value = torch.zeros((), device=b.device)
        else:
            value = b.mean() if bias == "mean" else b.min()
        biases = value.expand(k).clone()
    return rows, biases


def _empty_like(old, out_features: int):
    import torch.nn as nn

    new = nn.Linear(
        old.in_features,
        out_features,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    new.weight.requires_grad_(old.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(old.bias.requires_grad)
    return new


def _grow_linear(old, rows, biases):
    import torch

    n = old.out_features
    new = _empty_like(old, n + rows.shape[0])
    with torch.no_grad():
        new.weight[:n].copy_(old.weight)
        new.weight[n:].copy_(rows.to(new.weight.dtype))
        if old.bias is not None:
            new.bias[:n].copy_(old.bias)
            new.bias[n:].copy_(biases.to(new.bias.dtype))
    return new


def _swap(model, path: str, new) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, new)


def _set_label_count(model, names: list[str], old_count: int) -> None:
    """Set the config's label maps and every cached ``num_labels`` equal to the old count."""
    _labels.apply_to_config(model.config, names)
    for module in model.modules():
        value = module.__dict__.get("num_labels")
        if isinstance(value, int) and not isinstance(value, bool) and value == old_count:
            module.num_labels = len(names)
