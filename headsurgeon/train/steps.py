"""The steps of :func:`~headsurgeon.train.core.train_model`: features, init,
the top-blocks cache, holdout prediction and scoring."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import OptionsError
from .options import TrainOptions

logger = logging.getLogger(__name__)


def imprint_wanted(options: TrainOptions) -> bool:
    return options.init in (None, "imprint")


class FeatureStore:
    """Backbone features (the head's inputs) of texts, from a cache or one batched pass.

    ``task`` (:mod:`.tasks`) picks the features of a text (one vector, or one per word) and
    stacks those of many (:meth:`of`); :meth:`each` returns them one list entry per text."""

    def __init__(self, model, tokenizer, head_path, options, cache, task=None):
        from .tasks import SequenceTask

        self.model, self.tokenizer, self.head_path, self.options = (
            model,
            tokenizer,
            head_path,
            options,
        )
        self.task = task or SequenceTask()
        self.cache = {} if cache is None else cache

    def of(self, texts: Sequence[str]):
        return self.task.stack(self.each(texts))

    def each(self, texts: Sequence[str]) -> list:
        from .modules import head_inputs

        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            logger.info("computing backbone features of %d texts", len(missing))
            values = head_inputs(
                self.model,
                self.tokenizer,
                missing,
                self.head_path,
                batch_size=max(self.options.batch_size, 64),
                max_length=self.options.max_length,
                progress=self.options.progress,
                pick=None if self.task.name == "sequence-classification" else self.task.pick,
            )
            self.cache.update(zip(missing, values, strict=True))
        return [self.cache[t] for t in texts]


def parent_head(model, path: str, old_ids: Sequence[int]):
    """The parent's old-label head as a function: features → old-label logits (CPU, float32)."""
    import torch

    head = model.get_submodule(path)
    idx = torch.tensor(list(old_ids), dtype=torch.long)
    w = head.weight.detach().float().cpu()[idx].clone()
    b = None if head.bias is None else head.bias.detach().float().cpu()[idx].clone()

    def logits(x):
        return torch.nn.functional.linear(x.float(), w, b)

    return logits


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


def right_padded(tokenizer):
    """``tokenizer``, or a copy of it that pads on the right when it pads on the left.

    Cached block inputs are stored per text without padding and re-padded on the right, so
    every pass of a training pads on the right. For the models that pad on the left (decoders
    such as Llama) that is also the batch whose real tokens see what they see unbatched. The
    original tokenizer is not changed.
    """
    import copy

    if getattr(tokenizer, "padding_side", "right") == "right":
        return tokenizer
    logger.info("padding on the right during training (the tokenizer pads on the left)")
    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return right


def top_cut(model, tokenizer, head, options, neck=()):
    """``(blocks, index)`` when the top-blocks path applies (``train_layers`` K: the inputs of
    the K-th block from the top are cached; K=0 with a ``neck``: the blocks' output), else
    ``None``."""
    from .modules import encoder_blocks

    if options.freeze != "backbone" or not (options.train_layers or neck):
        return None
    if getattr(tokenizer, "padding_side", "right") != "right":  # see right_padded
        return None
    _, blocks = encoder_blocks(model, head.paths)
    index = len(blocks) - options.train_layers
    return (blocks, index) if index > 0 else None


def cache_inputs(plan, texts, hidden_cache, feature_cache=None):
    """Fill ``hidden_cache`` with the block inputs of ``texts`` at ``plan.cut``, and with a
    ``feature_cache`` that too with the head's inputs from the same pass (the bottom blocks run
    once, not once per cache). ``False`` when the blocks do not take one hidden-states tensor
    (the top-blocks path then does not apply)."""
    from ..errors import UnsupportedModelError
    from .modules import block_inputs

    with_features = feature_cache is not None
    missing = list(
        dict.fromkeys(
            t for t in texts if t not in hidden_cache or (with_features and t not in feature_cache)
        )
    )
    if not missing:
        return True
    what = "inputs and features" if with_features else "inputs"
    logger.info("computing block-%d %s of %d texts", plan.cut[1], what, len(missing))
    task = plan.task
    try:
        values = block_inputs(
            plan.model,
            plan.tokenizer,
            missing,
            *plan.cut,
            batch_size=max(plan.options.batch_size, 64),
            max_length=plan.options.max_length,
            progress=plan.options.progress,
            head_path=plan.head.paths[0] if with_features else None,
            pick=None if task.name == "sequence-classification" else task.pick,
        )
    except UnsupportedModelError as e:
        logger.info("%s", e)
        return False
    hidden = values[0] if with_features else values
    hidden_cache.update(zip(missing, hidden, strict=True))
    if with_features:
        feature_cache.update(zip(missing, values[1], strict=True))
    return True


def top_blocks(plan, keys):
    """With the top-blocks path (``plan.cut``, see :func:`top_cut`): cache the block inputs of
    ``keys`` and wrap the model so only the top blocks run (K=0 with a neck: only the neck and
    the head). ``None`` when not applicable."""
    from .modules import TopBlocks

    if plan.cut is None:
        return None
    if not cache_inputs(plan, keys, plan.hidden_cache):
        return None
    return TopBlocks(plan.model, *plan.cut, plan.probe.as_tuple)


def predictor(plan, examples, x, top):
    """A function returning the current model's logits for ``examples`` (CPU float32; per word
    for tokens), by the cheapest path: the head on their cached features ``x``, the top blocks
    on their cached block inputs, or the whole model."""
    import torch

    model, task, options = plan.model, plan.task, plan.options

    def predict():
        if plan.features_only:
            linear = model.get_submodule(plan.head.paths[0])
            with torch.no_grad():
                return linear(x.to(next(linear.parameters()).device)).float().cpu()
        if top is not None:
            collate = task.collator(plan.tokenizer, options.max_length)
            rows = [
                {"text": k, "hidden": plan.hidden_cache[k], "label": 0, "weight": 1.0}
                for k in map(task.key, examples)
            ]
            out = []
            device = next(model.parameters()).device
            with torch.no_grad():
                for start in range(0, len(rows), 64):
                    batch = collate(rows[start : start + 64])
                    inputs = {k: v.to(device) for k, v in batch.items() if k not in _NOT_INPUTS}
                    logits = top(**inputs).logits.float().cpu()
                    out.append(task.from_batch(logits, batch))
            return torch.cat(out)
        return task.predict(model, plan.tokenizer, examples, options)

    return predict


#: what a training batch holds beside the model's inputs (targets and bookkeeping)
_NOT_INPUTS = ("labels", "weight", "target", "word_index", "parent_logits")


def holdout_scorer(plan, predict, holdout):
    """Holdout score of the model being trained (accuracy, or entity F1 for tokens)."""
    model = plan.model
    if plan.task.name == "sequence-classification":
        score_logits = plan.task.scorer(holdout, plan.labels)
    else:
        score_logits = plan.task.scorer(holdout, plan.labels, plan.holdout_lengths)

    def score(_trained) -> float:
        was = model.training
        model.eval()
        try:
            logits = predict()
        finally:
            model.train(was)
        return score_logits(logits)

    return score
