"""The new labels' rows before training: imprinted from their examples' features, or by an
explicit ``init`` policy (:func:`~headsurgeon.surgery.add_labels`'s)."""

from __future__ import annotations

from ..errors import OptionsError
from .options import TrainOptions


def imprint_wanted(options: TrainOptions) -> bool:
    return options.init in (None, "imprint")


def init_new_rows(plan, trained_labels, data, train_rows, train_x):
    """(Re)initialise new rows that were never trained (or all when ``init`` is explicit);
    ``train_x``: the features of ``train_rows`` (one per row, or a list per row for tokens)."""
    import torch

    from ..surgery import _new_rows

    model, labels, options = plan.model, plan.labels, plan.options
    explicit = options.init is not None
    targets = [n for n in plan.new_labels if explicit or n not in set(trained_labels)]
    have = set().union(*(plan.task.labels_in(e) for e in data)) if data else set()
    if not explicit:
        targets = [n for n in targets if n in have]  # imprint needs examples; others keep theirs
    if not targets:
        return {}
    init = options.init or "imprint"
    feats = None
    if init == "imprint":
        missing = [n for n in targets if n not in have]
        if missing:
            raise OptionsError(f"init 'imprint' needs examples of {', '.join(missing)} in the data")
        grouped = plan.task.labelled_features(train_rows, train_x)
        feats = {n: grouped[n] for n in targets}
    old_ids = [i for i, n in enumerate(labels) if n not in set(plan.new_labels)]
    for path in plan.head.paths:
        linear = model.get_submodule(path)
        old = torch.nn.Linear(linear.in_features, len(old_ids), bias=linear.bias is not None)
        with torch.no_grad():
            old.weight.copy_(linear.weight[old_ids])
            if linear.bias is not None:
                old.bias.copy_(linear.bias[old_ids])
            bias = "mean" if old_ids else "zeros"  # no old row to take a mean of
            rows, biases = _new_rows(model, old, targets, init, bias, feats, options.seed)
            for j, name in enumerate(targets):
                i = labels.index(name)
                linear.weight[i].copy_(rows[j].to(linear.weight))
                if biases is not None:
                    linear.bias[i].copy_(biases[j].to(linear.bias))
    return {n: init for n in targets}
