"""The one pass over the data that caches the head's inputs (features) or the block inputs,
and the runner of the top blocks on them.

- :class:`FeatureStore`: the head's inputs of texts, from a cache or one batched pass
  (:func:`head_inputs`); :func:`parent_head`: the parent's old-label head on them;
- :func:`block_inputs`: the hidden states entering a block (and the features, same pass);
  :func:`cache_inputs` fills a run's caches with them, :func:`fill_caches` does every pass of a
  run (in shards under several processes);
- :class:`TopBlocks`: runs only the top blocks (and what follows them) from cached block inputs;
  :func:`run_top_blocks` wraps a run's model in it, :func:`top_cut` says where it cuts;
- :func:`right_padded`: the tokenizer every pass of a training uses.

Each example's features are what its task picks (:attr:`~headsurgeon.tasks.base.Task.pick`: one
vector, or one per word) under its key (:meth:`~headsurgeon.tasks.base.Task.key`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..errors import UnsupportedModelError
from . import processes
from .blocks import encoder_blocks
from .new_rows import imprint_wanted

if TYPE_CHECKING:
    from .replay import ExampleSets

logger = logging.getLogger(__name__)


class FeatureStore:
    """Backbone features (the head's inputs) of examples by key, from a cache or one batched pass.

    ``task`` (:class:`~headsurgeon.tasks.base.Task`) picks the features of an example (one
    vector, or one per word) and stacks those of many (:meth:`of`); :meth:`each` returns them
    one list entry per key."""

    def __init__(self, model, tokenizer, head_path, options, cache, task):
        self.model, self.tokenizer, self.head_path, self.options = (
            model,
            tokenizer,
            head_path,
            options,
        )
        self.task = task
        self.cache = {} if cache is None else cache

    def of(self, texts: Sequence[str]):
        return self.task.stack(self.each(texts))

    def each(self, texts: Sequence[str]) -> list:
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
                pick=self.task.pick,
            )
            self.cache.update(zip(missing, values, strict=True))
        return [self.cache[t] for t in texts]


def parent_head(model, path: str, old_ids: Sequence[int]):
    """The parent's old-label head as a function: features → old-label logits (CPU, float32)."""
    head = model.get_submodule(path)
    idx = torch.tensor(list(old_ids), dtype=torch.long)
    w = head.weight.detach().float().cpu()[idx].clone()
    b = None if head.bias is None else head.bias.detach().float().cpu()[idx].clone()

    def logits(x):
        return torch.nn.functional.linear(x.float(), w, b)

    return logits


def head_inputs(
    model,
    tokenizer,
    texts: Sequence[str],
    head_path: str,
    *,
    batch_size: int = 64,
    max_length: int = 128,
    device=None,
    progress: bool = False,
    pick=None,
):
    """The head's inputs (backbone features) for ``texts``, captured by a forward pre-hook.

    A head applied to every position (decoder classifiers: Llama's or GPT-2's ``score``) gives
    the model's logits at one position per example (the last real token): the feature is the
    input at the position whose head output equals the model's logits.

    One batched eval pass (``torch.no_grad``); returns ``float32[n, in_features]`` on CPU.
    With ``pick`` (a task's ``pick(head, head_path, captured, output, encoding)``, see
    :class:`~headsurgeon.tasks.base.Task`) the features of each text are what it picks,
    returned as a list.
    """
    from ..predict import eval_batches

    head = model.get_submodule(head_path)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    out = torch.zeros(len(texts), head.in_features) if pick is None else [None] * len(texts)
    try:
        for idx, batch in eval_batches(
            model, tokenizer, texts, batch_size=batch_size, max_length=max_length,
            device=device, progress=progress, desc="caching features",
        ):  # fmt: skip
            captured.clear()
            output = model(**batch)
            if pick is None:
                out[torch.tensor(idx)] = _one_vector(head, head_path, captured, output)
            else:
                for i, value in zip(
                    idx, pick(head, head_path, captured, output, batch), strict=True
                ):
                    out[i] = value
    finally:
        hook.remove()
    return out


def _one_vector(head, head_path: str, captured: list, output) -> torch.Tensor:
    """One feature per example from the head's captured input of one batch (CPU float32)."""
    x = captured[0] if len(captured) == 1 else None
    if x is not None and x.dim() == 3:
        x = _pooled_position(head, x, getattr(output, "logits", None))
    if x is None or x.dim() != 2:
        raise UnsupportedModelError(
            f"the head {head_path} is not applied once to one vector per example "
            "(nor at one position per example): train it with --freeze none"
        )
    return x.float().cpu()


def _pooled_position(head, x: torch.Tensor, logits) -> torch.Tensor | None:
    """``x[b, t]`` at the position ``t`` where ``head(x)`` is the model's ``logits[b]`` (the last
    such position), or ``None`` when some example has none."""
    if logits is None or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        return None
    per_position = head(x).float()  # [batch, tokens, labels]
    target = logits.float().unsqueeze(1)
    tol = 1e-4 * (1 + target.abs().amax(-1, keepdim=True))
    match = ((per_position - target).abs() <= tol).all(-1)  # [batch, tokens]
    if not bool(match.any(-1).all()):
        return None
    positions = torch.arange(x.shape[1], device=x.device)
    last = (match * (positions + 1)).argmax(-1)
    return x[torch.arange(x.shape[0], device=x.device), last]


def block_inputs(
    model,
    tokenizer,
    texts: Sequence[str],
    blocks: nn.ModuleList,
    index: int,
    *,
    batch_size: int = 64,
    max_length: int = 128,
    progress: bool = False,
    head_path: str | None = None,
    pick=None,
):
    """The hidden states entering ``blocks[index]`` for each text, trimmed to its tokens
    (``index == len(blocks)``: the output of the last block).

    One eval pass that stops there. Returns ``float32[tokens, hidden]`` per text (CPU). With
    ``head_path`` the pass runs to the end and also captures the head's inputs (as
    :func:`head_inputs`, ``pick`` likewise): returns ``(hidden_states, features)``, both from
    the same pass.

    Raises:
        UnsupportedModelError: the block's input is not one ``[batch, tokens, hidden]`` tensor
            (or, with ``head_path``, the head's input is not one vector per example).
    """
    from ..predict import eval_batches

    capture = _BlockCapture(model, blocks, index, head_path, pick, len(texts))
    lengths = getattr(tokenizer, "block_lengths", None)  # a task's view of another preprocessor
    try:
        for idx, batch in eval_batches(
            model, tokenizer, texts, batch_size=batch_size, max_length=max_length,
            progress=progress, desc="caching block inputs",
        ):  # fmt: skip
            keys = [texts[i] for i in idx]
            capture.take(idx, batch, None if lengths is None else partial(lengths, keys=keys))
    finally:
        capture.remove()
    return capture.out if capture.head is None else (capture.out, capture.features)


class _BlockCapture:
    """The hooks of one :func:`block_inputs` pass and what they captured: each text's block
    inputs (``out``) and, with a ``head_path``, its features (``features``)."""

    def __init__(self, model, blocks: nn.ModuleList, index: int, head_path, pick, n: int):
        self.model, self.head_path, self.pick = model, head_path, pick
        self.captured: list[torch.Tensor] = []
        self.at_head: list[torch.Tensor] = []
        self.stop = head_path is None  # nothing is needed past the block
        if index == len(blocks):
            self.hooks = [blocks[index - 1].register_forward_hook(self._grab_output)]
        else:
            self.hooks = [blocks[index].register_forward_pre_hook(self._grab)]
        self.head = None if self.stop else model.get_submodule(head_path)
        if self.head is not None:
            grab = self.head.register_forward_pre_hook(
                lambda _m, a: self.at_head.append(a[0].detach())
            )
            self.hooks.append(grab)
            self.features = torch.zeros(n, self.head.in_features) if pick is None else [None] * n
        self.out: list[torch.Tensor | None] = [None] * n

    def _grab(self, _module, args):
        self.captured.append(args[0].detach())
        if self.stop:
            raise _Stop

    def _grab_output(self, _module, _args, output):
        self.captured.append(_first(output).detach())
        if self.stop:
            raise _Stop

    def take(self, idx: list[int], batch, measure=None) -> None:
        """Run one batch (texts ``idx``) and keep what the hooks captured; ``measure(model,
        batch, hidden)`` gives each example's positions in the block input (default: its
        tokens, from the attention mask)."""
        self.captured.clear()
        self.at_head.clear()
        output = None
        try:
            output = self.model(**batch)
        except _Stop:
            pass
        h = self.captured[0] if self.captured else None
        lengths = (measure or _token_lengths)(self.model, batch, h)
        if lengths is None:
            raise UnsupportedModelError(
                "the encoder blocks do not take one [batch, positions, hidden] tensor: "
                "--train-layers runs without a cache here; use --freeze none"
            )
        for row, (i, n) in enumerate(zip(idx, lengths, strict=True)):
            self.out[i] = h[row, : int(n)].float().cpu().clone()
        if self.head is not None and self.pick is None:
            self.features[torch.tensor(idx)] = _one_vector(
                self.head, self.head_path, self.at_head, output
            )
        elif self.head is not None:
            picked = self.pick(self.head, self.head_path, self.at_head, output, batch)
            for i, value in zip(idx, picked, strict=True):
                self.features[i] = value

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def _token_lengths(_model, batch, h) -> list[int] | None:
    """Each text's tokens in a block input ``h`` of a tokenized batch (``None``: ``h`` is not
    one ``[batch, tokens, hidden]`` tensor)."""
    if h is None or h.dim() != 3 or h.shape[:2] != batch["input_ids"].shape:
        return None
    return batch["attention_mask"].sum(1).tolist()


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (the rest is not needed)."""


class _Skip(nn.Module):
    """Stands in for a frozen lower block whose output is cached: returns its input, as a
    1-tuple when the real blocks return tuples (encoders that read ``layer_outputs[0]``)."""

    def __init__(self, as_tuple: bool = False):
        super().__init__()
        self.as_tuple = as_tuple

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,) if self.as_tuple else hidden_states


class _Feed(_Skip):
    """Stands in for the last block when every block is cached: returns the cached output."""

    def __init__(self, owner: TopBlocks, as_tuple: bool = False):
        super().__init__(as_tuple)
        self.__dict__["_owner"] = owner  # not a submodule: no cycle in ``modules()``

    def forward(self, hidden_states, *args, **kwargs):
        current = self._owner._current
        return super().forward(current.to(hidden_states.device), *args, **kwargs)


def _first(output):
    return output[0] if isinstance(output, tuple | list) else output


class TopBlocks(nn.Module):
    """Runs only the top blocks of ``model`` (and what follows them), from cached block inputs.

    The blocks below ``index`` are swapped for :class:`_Skip` while this wrapper is in use, and a
    forward pre-hook feeds ``blocks[index]`` the cached hidden states of the batch. With
    ``index == len(blocks)`` no block runs: the last one is swapped for :class:`_Feed`, which
    returns the cached output of the blocks (only the neck and the head run). ``as_tuple``: the
    real blocks return tuples (see :func:`~.blocks.blocks_return_tuples`). Call :meth:`restore`
    to put the real blocks back.

    LayerDrop (a config's ``layerdrop``, wav2vec2's 0.1) is off meanwhile: a block dropped in
    training would skip the hook that feeds it, and run the blocks on what stood in for the
    inputs.
    """

    def __init__(self, model, blocks: nn.ModuleList, index: int, as_tuple: bool = False):
        super().__init__()
        self.model = model
        self._blocks, self._index = blocks, index
        self._layerdrop = _no_layerdrop(model.config)
        self._current: torch.Tensor | None = None
        self._saved = [blocks[i] for i in range(min(index, len(blocks)))]
        for i in range(len(self._saved)):
            last = index == len(blocks) and i == len(blocks) - 1
            blocks[i] = _Feed(self, as_tuple) if last else _Skip(as_tuple)
        self._hook = (
            blocks[index].register_forward_pre_hook(self._feed, with_kwargs=True)
            if index < len(blocks)
            else None
        )

    def _feed(self, _module, args, kwargs):
        hidden = self._current.to(args[0].device if args else self._current.device)
        return (hidden, *args[1:]), kwargs

    def forward(self, hidden: torch.Tensor, **inputs):
        self._current = hidden.to(next(self.model.parameters()).dtype)
        try:
            return self.model(**inputs)
        finally:
            self._current = None

    def restore(self) -> None:
        if self._hook is not None:
            self._hook.remove()
        for i, block in enumerate(self._saved):
            self._blocks[i] = block
        for name, value in self._layerdrop.items():
            setattr(self.model.config, name, value)


#: config fields of the probability that training skips a block
_LAYERDROP = ("layerdrop", "encoder_layerdrop")


def _no_layerdrop(config) -> dict[str, float]:
    """Turn ``config``'s LayerDrop off; return the values to put back."""
    saved = {}
    for name in _LAYERDROP:
        value = getattr(config, name, None)
        if isinstance(value, (int, float)) and value > 0:
            saved[name] = value
            setattr(config, name, 0.0)
    return saved


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
            pick=task.pick,
        )
    except UnsupportedModelError as e:
        logger.info("%s", e)
        return False
    hidden = values[0] if with_features else values
    hidden_cache.update(zip(missing, hidden, strict=True))
    if with_features:
        feature_cache.update(zip(missing, values[1], strict=True))
    return True


def run_top_blocks(plan, texts):
    """With the top-blocks path (``plan.cut``, see :func:`top_cut`): cache the block inputs of
    ``texts`` and wrap the model so only the top blocks run (K=0 with a neck: only the neck and
    the head). ``None`` when not applicable: the blocks' inputs cannot be cached, or the top
    blocks on one example's cached inputs do not give the whole model's logits (blocks whose
    callers read more than their output, such as Swin's stages: then the whole model runs, its
    top blocks trained all the same)."""
    if plan.cut is None:
        return None
    if not cache_inputs(plan, texts, plan.hidden_cache):
        return None
    key = _unpadded(plan.tokenizer, texts)
    whole = _whole_logits(plan, key) if key is not None else None
    top = TopBlocks(plan.model, *plan.cut, plan.probe.as_tuple)
    if whole is not None and not _reproduces(plan, top, key, whole):
        top.restore()
        logger.warning(
            "the top blocks on cached inputs do not reproduce %s's logits: the whole model "
            "runs in training (the same parameters train, more slowly)",
            type(plan.model).__name__,
        )
        return None
    return top


def _unpadded(tokenizer, texts):
    """The text to check the top blocks on: the longest (for a view that measures its inputs:
    its cached inputs were computed without padding), else the first; ``None``: no text."""
    measure = getattr(tokenizer, "lengths", None)
    if not texts or not callable(measure):
        return texts[0] if texts else None
    lengths = measure(texts)
    return texts[max(range(len(texts)), key=lambda i: lengths[i])]


def _whole_logits(plan, key):
    """The whole model's logits of one example (CPU float32)."""
    from ..predict import eval_batches

    batches = eval_batches(
        plan.model, plan.tokenizer, [key], batch_size=1, max_length=plan.options.max_length
    )
    return [_first(plan.model(**batch).logits).float().cpu() for _idx, batch in batches][0]


def _reproduces(plan, top, key, whole) -> bool:
    """Whether ``top`` on ``key``'s cached inputs gives ``whole`` (the model's logits)."""
    from .scoring import NOT_INPUTS

    row = {"text": key, "hidden": plan.hidden_cache[key], "label": 0, "weight": 1.0}
    batch = plan.task.collator(plan.tokenizer, plan.options.max_length)([row])
    device = next(plan.model.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.items() if k not in NOT_INPUTS}
    try:
        with torch.no_grad():
            cached = top(**inputs).logits.float().cpu()
    except (RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
        logger.info("the top blocks fail on cached inputs: %s", e)
        return False
    return cached.shape == whole.shape and torch.allclose(cached, whole, rtol=1e-3, atol=1e-4)


def _share_caches(plan, sets: ExampleSets, with_feats: bool) -> None:
    """Under several processes: compute the caches in shards and gather them, so each text is
    computed once (no-op with one process: the caller's passes compute them)."""
    train, held = plan.keys(sets.train), plan.keys(sets.scored)
    if plan.cut is not None:  # the block inputs of every text, with the features from the same pass
        caches = [plan.hidden_cache]
        if with_feats or sets.holdout:
            caches.append(plan.features.cache)

        def compute(part):
            return cache_inputs(plan, part, *caches)

        processes.fill(train + held, caches, compute)
    else:
        wanted = train if with_feats else []
        processes.fill(wanted + held, [plan.features.cache], plan.features.each)


def fill_caches(plan, sets: ExampleSets):
    """The passes over the data: block inputs and features. ``(train_x, hold_x)``: the
    training examples' features as the task's rows take them (``None`` when not needed), the
    holdout's stacked."""
    options, task = plan.options, plan.task
    need_train_feats = (
        task.needs_train_features
        or plan.features_only
        or options.distill > 0
        or imprint_wanted(options)
        or plan.calibrating
    )
    _share_caches(plan, sets, need_train_feats)
    if plan.cut is not None and (need_train_feats or sets.holdout):
        # the top-blocks path caches block inputs anyway: take the features from the same pass
        every = plan.keys([*sets.train, *sets.scored])
        cache_inputs(plan, every, plan.hidden_cache, plan.features.cache)
    train_x = None
    if need_train_feats:
        train_x = task.train_features(plan.features, plan.keys(sets.train))
    hold_x = plan.features.of(plan.keys(sets.holdout)) if sets.holdout else None
    if sets.holdout:
        plan.holdout_lengths = [len(plan.features.cache[k]) for k in plan.keys(sets.holdout)]
    return train_x, hold_x
