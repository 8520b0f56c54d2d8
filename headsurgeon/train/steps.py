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
    """Backbone features (the head's inputs) of texts, from a cache or one batched pass."""

    def __init__(self, model, tokenizer, head_path, options, cache):
        self.model, self.tokenizer, self.head_path, self.options = (
            model,
            tokenizer,
            head_path,
            options,
        )
        self.cache = {} if cache is None else cache

    def of(self, texts: Sequence[str]):
        import torch

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
            )
            self.cache.update(zip(missing, values, strict=True))
        return torch.stack([self.cache[t] for t in texts])


def parent_head(model, path: str, old_ids: Sequence[int]):
    """The parent's old-label head as a function: features → old-label logits (CPU, float32)."""
    import torch

    head = model.get_submodule(path)
    idx = torch.tensor(list(old_ids))
    w = head.weight.detach().float().cpu()[idx].clone()
    b = None if head.bias is None else head.bias.detach().float().cpu()[idx].clone()

    def logits(x):
        return torch.nn.functional.linear(x.float(), w, b)

    return logits


def init_new_rows(
    model, head, labels, new_labels, trained_labels, data, train_rows, train_x, options
):
    """(Re)initialise new rows that were never trained (or all when ``init`` is explicit)."""
    import torch

    from ..surgery import _new_rows

    explicit = options.init is not None
    targets = [n for n in new_labels if explicit or n not in set(trained_labels)]
    have = {e.label for e in data}
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
        feats = {n: train_x[[i for i, e in enumerate(train_rows) if e.label == n]] for n in targets}
    old_ids = [i for i, n in enumerate(labels) if n not in set(new_labels)]
    for path in head.paths:
        linear = model.get_submodule(path)
        old = torch.nn.Linear(linear.in_features, len(old_ids), bias=linear.bias is not None)
        with torch.no_grad():
            old.weight.copy_(linear.weight[old_ids])
            if linear.bias is not None:
                old.bias.copy_(linear.bias[old_ids])
            rows, biases = _new_rows(model, old, targets, init, "mean", feats, options.seed)
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


def cache_inputs(model, tokenizer, head, options, texts, cut, hidden_cache, feature_cache=None):
    """Fill ``hidden_cache`` with the block inputs of ``texts`` at ``cut``, and with a
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
    logger.info("computing block-%d %s of %d texts", cut[1], what, len(missing))
    try:
        values = block_inputs(
            model,
            tokenizer,
            missing,
            *cut,
            batch_size=max(options.batch_size, 64),
            max_length=options.max_length,
            progress=options.progress,
            head_path=head.paths[0] if with_features else None,
        )
    except UnsupportedModelError as e:
        logger.info("%s", e)
        return False
    hidden = values[0] if with_features else values
    hidden_cache.update(zip(missing, hidden, strict=True))
    if with_features:
        feature_cache.update(zip(missing, values[1], strict=True))
    return True


def top_blocks(model, tokenizer, options, train_rows, holdout, cache, cut, probe, extra=()):
    """With the top-blocks path (``cut``, see :func:`top_cut`; ``probe``: the model's
    :func:`~.modules.probe_model`): cache the block inputs (of ``extra`` examples too) and wrap
    the model so only the top blocks run (K=0 with a neck: only the neck and the head).
    ``(None, None, None)`` when not applicable."""
    from .modules import TopBlocks

    if cut is None:
        return None, None, None
    texts = [e.text for e in [*train_rows, *(holdout or []), *extra]]
    if not cache_inputs(model, tokenizer, None, options, texts, cut, cache):
        return None, None, None
    train_h = [cache[e.text] for e in train_rows]
    hold_h = [cache[e.text] for e in holdout] if holdout else None
    return TopBlocks(model, *cut, probe.as_tuple), train_h, hold_h


def predictor(model, tokenizer, head, holdout, hold_x, hold_h, top, features_only, options):
    """A function returning the current model's logits for ``holdout`` (any examples; CPU
    float32), by the cheapest path: the head on cached features ``hold_x``, the top blocks on
    cached block inputs ``hold_h``, or the whole model."""
    import torch

    from .trainer import make_collator

    def predict():
        if features_only:
            linear = model.get_submodule(head.paths[0])
            with torch.no_grad():
                return linear(hold_x.to(next(linear.parameters()).device)).float().cpu()
        if top is not None:
            collate = make_collator(tokenizer, options.max_length)
            rows = [
                {"text": e.text, "hidden": h, "label": 0, "weight": 1.0}
                for e, h in zip(holdout, hold_h, strict=True)
            ]
            out = []
            device = next(model.parameters()).device
            with torch.no_grad():
                for start in range(0, len(rows), 64):
                    batch = collate(rows[start : start + 64])
                    batch.pop("labels"), batch.pop("weight")
                    out.append(
                        top(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
                    )
            return torch.cat(out)
        from ..checks import predict_logits

        return (
            predict_logits(
                model,
                tokenizer,
                [e.text for e in holdout],
                batch_size=max(options.batch_size, 64),
                max_length=options.max_length,
                progress=options.progress,
                desc="scoring holdout",
            )
            .float()
            .cpu()
        )

    return predict


def holdout_scorer(model, predict, holdout, labels):
    """Holdout accuracy of the model being trained (every label, old and new)."""
    import torch

    gold = torch.tensor([labels.index(e.label) for e in holdout])

    def score(_trained) -> float:
        was = model.training
        model.eval()
        try:
            logits = predict()
        finally:
            model.train(was)
        return (logits.argmax(-1) == gold).float().mean().item()

    return score
