"""Batched evaluation: a classifier's logits on many examples, fast on CPU and GPU.

:func:`predict_logits` runs one pass over the texts, sorted by token length so that each batch
pads little, and returns the logits in input order. :func:`predict_pair` evaluates a parent and a
child: when they differ only in their heads (``add-label``, a frozen-backbone ``train``), the
backbone runs once and both heads read its features, which halves the cost; otherwise each model
gets its own pass. Torch and transformers are imported inside the functions.

The "texts" are what the tokenizer given takes: texts for a tokenizer, the examples' keys for a
task's view of its preprocessor (an image processor, a feature extractor: see
:class:`headsurgeon.tasks.base.Inputs`), which also measures its inputs for the batching.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import CheckpointError, HeadSurgeonError, OptionsError

logger = logging.getLogger(__name__)

#: texts per forward pass
DEFAULT_BATCH_SIZE = 64
#: files of which at least one must be in a model folder for it to have a tokenizer
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "sentencepiece.model",
)


def predict_logits(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    device=None,
    progress: bool = False,
    desc: str = "evaluating",
):
    """Return the model's logits for ``texts`` in one batched evaluation pass.

    Texts are sorted by token length so each batch pads little (much faster on CPU), and the
    logits come back in the input order. The model runs in eval mode under
    ``torch.no_grad()``; its mode and device are restored afterwards.

    Args:
        model: a transformers sequence-classification model.
        tokenizer: its tokenizer (must be able to pad).
        texts: the texts.
        batch_size: texts per forward pass.
        max_length: truncate to this many tokens; default: the tokenizer's ``model_max_length``
            when it is a real limit, else the model's ``max_position_embeddings``.
        device: where to run; default: where the model is.
        progress: report the pass as a :class:`~headsurgeon.progress.Step` (texts done).
        desc: the step's label (what is measured, e.g. ``scoring holdout``).

    Returns:
        a float32 CPU tensor ``[len(texts), num_labels]``.

    Raises:
        OptionsError: ``batch_size`` below 1 or a tokenizer without a pad token.

    Example:
        >>> logits = predict_logits(model, tokenizer, ["my card was stolen", "refund please"])
        >>> logits.shape
        torch.Size([2, 50])
    """
    import torch

    if batch_size < 1:
        raise OptionsError(f"batch_size must be at least 1, got {batch_size}")
    texts = list(texts)
    if len(texts) > 1 and getattr(tokenizer, "pad_token", "") is None:  # a tokenizer's
        raise OptionsError(
            "the tokenizer has no pad token, so texts cannot be batched: set "
            "tokenizer.pad_token (e.g. to tokenizer.eos_token) and model.config.pad_token_id"
        )
    width = None if texts else model.config.num_labels
    out = torch.empty(len(texts), width or 0, dtype=torch.float32)
    for idx, enc in eval_batches(
        model, tokenizer, texts, batch_size=batch_size, max_length=max_length, device=device,
        progress=progress, desc=desc,
    ):  # fmt: skip
        output = model(**enc)
        logits = (output.logits if hasattr(output, "logits") else output[0]).float().cpu()
        if width is None:  # from the first batch: a shared pass returns both heads
            width = logits.shape[-1]
            out = torch.empty(len(texts), width, dtype=torch.float32)
        out[torch.tensor(idx)] = logits
    return out


def eval_batches(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    device=None,
    progress: bool = False,
    desc: str = "evaluating",
    unit: str = "texts",
):
    """Yield ``(indices, encoding)`` over ``texts`` in batches of similar token length.

    Texts are sorted longest first (little padding: much faster on CPU; the first batch shows
    the memory peak). While the caller consumes the batches the model is in eval mode under
    ``torch.no_grad()`` on ``device``; its mode and device are restored afterwards. Every
    batched pass over texts (prediction, feature caching) goes through here; with ``progress``
    the pass is a :class:`~headsurgeon.progress.Step` labelled ``desc`` (what the pass
    computes) that counts the ``texts`` done in ``unit`` (a bar on a terminal, lines in a log:
    see :mod:`headsurgeon.progress`).
    """
    import torch

    from .progress import Step

    texts = list(texts)
    unit = getattr(tokenizer, "unit", None) or unit  # a task's view names what it counts
    max_length = max_length or _max_length(model, tokenizer)
    order = _by_length(tokenizer, texts, max_length)
    home = next(model.parameters()).device
    device = torch.device(device) if device is not None else home
    was_training = model.training
    model.to(device).eval()
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    step = Step(desc, total=len(texts), unit=unit, enabled=progress and bool(texts))
    try:
        # no_grad, not inference_mode: a tensor a model caches during the pass (BEiT's
        # relative position index) must stay usable when training follows
        with torch.no_grad(), step:
            for idx in batches:
                enc = tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(device)
                yield idx, enc
                step.advance(len(idx))
    finally:
        model.train(was_training)
        if device != home:
            model.to(home)


def _max_length(model, tokenizer) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return getattr(model.config, "max_position_embeddings", None)


def _token_ids(tokenizer, texts: list[str], max_length: int | None) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if texts else []


def _by_length(tokenizer, texts: list[str], max_length: int | None) -> list[int]:
    """Indices of ``texts``, longest first (so the first batch shows the memory peak); a
    task's view of another preprocessor measures its inputs itself
    (:meth:`~headsurgeon.tasks.base.Inputs.lengths`)."""
    measure = getattr(tokenizer, "lengths", None)
    if callable(measure):
        lengths = measure(texts) if texts else []
    else:
        lengths = [len(ids) for ids in _token_ids(tokenizer, texts, max_length)]
    return sorted(range(len(texts)), key=lambda i: -lengths[i])


def predict_pair(
    parent,
    child,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    device=None,
    progress: bool = False,
    desc: str = "evaluating",
):
    """Return ``(parent_logits, child_logits)`` for ``texts``.

    When the two models differ only in their heads (same class, every other tensor equal, same
    tokenization) the backbone runs once and both heads read its output: identical numbers to two
    separate passes, at half the cost. Otherwise one :func:`predict_logits` pass per model.

    Args:
        parent, child: ``(model, tokenizer)`` pairs.
        texts, batch_size, max_length, device, progress: as in :func:`predict_logits`.
        desc: what the passes do; each pass's step says whose it is (``scoring holdout
            (parent and child)`` for the shared pass, else ``(parent)`` then ``(child)``).

    Returns:
        two float32 CPU tensors ``[len(texts), num_labels]`` of the parent and of the child.
    """
    texts = list(texts)
    kwargs = {"batch_size": batch_size, "device": device, "progress": progress}
    max_length = max_length or _max_length(*parent)
    both = f"{desc} (parent and child)"
    if parent[0] is child[0] and parent[1] is child[1]:  # one model checked against itself
        logits = predict_logits(*parent, texts, max_length=max_length, desc=both, **kwargs)
        return logits, logits.clone()
    paths = _shared_head_paths(parent, child, texts, max_length)
    if paths is not None:
        logger.info("parent and child differ only in the head: one pass for both")
        shared = _predict_shared(
            parent, child, paths, texts, max_length=max_length, desc=both, **kwargs
        )
        if shared is not None:
            return shared
    return tuple(
        predict_logits(
            model, tokenizer, texts, max_length=max_length, desc=f"{desc} ({who})", **kwargs
        )
        for who, (model, tokenizer) in zip(("parent", "child"), (parent, child), strict=True)
    )


def _shared_head_paths(parent, child, texts, max_length) -> tuple[str, ...] | None:
    """The head paths when parent and child differ only in their head tensors, else ``None``."""
    import torch

    from .locate import locate_head

    (pm, ptok), (cm, ctok) = parent, child
    if type(pm) is not type(cm):
        return None
    try:
        paths = locate_head(pm).paths
        if locate_head(cm).paths != paths:
            return None
    except HeadSurgeonError:
        return None
    heads = tuple(f"{p}." for p in paths)
    ps, cs = pm.state_dict(), cm.state_dict()
    if ps.keys() != cs.keys():
        return None
    for key, a in ps.items():
        if key.startswith(heads):
            continue
        b = cs[key]
        if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a, b.to(a.device)):
            return None
    return paths if _same_inputs(ptok, ctok, texts, max_length) else None


def _same_inputs(ptok, ctok, texts, max_length) -> bool:
    """Whether the two preprocessors make the same inputs of ``texts``."""
    same_inputs = getattr(ptok, "same_inputs", None)  # a task's view of another preprocessor
    if callable(same_inputs):
        return ptok is ctok or same_inputs(ctok)
    same_tokens = (ptok.pad_token_id, ptok.padding_side) == (ctok.pad_token_id, ctok.padding_side)
    return not (
        not same_tokens
        or ptok is not ctok
        and (_token_ids(ptok, texts, max_length) != _token_ids(ctok, texts, max_length))
    )


def _predict_shared(parent, child, paths, texts, *, device, **kwargs):
    """One pass of the parent whose head(s) also run the child's head(s) on the same input.

    Returns ``None`` when the model reshapes the head's output so that the two cannot be told
    apart (then the caller runs two passes).
    """
    import torch

    (pm, ptok), (cm, _) = parent, child
    n_parent, n_child = pm.config.num_labels, cm.config.num_labels
    device = torch.device(device) if device is not None else next(pm.parameters()).device
    child_heads = [cm.get_submodule(p) for p in paths]
    homes = [next(h.parameters()).device for h in child_heads]

    def hook_for(head):
        def hook(module, args, output):
            return torch.cat([output, head(args[0]).to(output.dtype)], dim=-1)

        return hook

    handles = [
        pm.get_submodule(p).register_forward_hook(hook_for(h))
        for p, h in zip(paths, child_heads, strict=True)
    ]
    try:
        for head in child_heads:
            head.to(device)
        logits = predict_logits(pm, ptok, texts, device=device, **kwargs)
    except (RuntimeError, ValueError) as e:  # the model reshapes its head's output
        logger.info("the shared pass failed (%s): two passes", e)
        return None
    finally:
        for handle in handles:
            handle.remove()
        for head, home in zip(child_heads, homes, strict=True):
            head.to(home)
    if logits.shape[-1] != n_parent + n_child:
        logger.info(
            "the shared pass gave %d columns, not %d: two passes",
            logits.shape[-1],
            n_parent + n_child,
        )
        return None
    return logits[:, :n_parent].contiguous(), logits[:, n_parent:].contiguous()


def load_text_tokenizer(folder: str | os.PathLike, trust_remote_code: bool = False):
    """The tokenizer saved in ``folder`` (a text or token classifier's preprocessor).

    Raises:
        CheckpointError: the folder has no tokenizer files, or they do not load.
        UnsupportedModelError: custom code without ``trust_remote_code``.
    """
    from .models import load_tokenizer

    folder = Path(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"{folder} has no tokenizer files; expected one of {', '.join(TOKENIZER_FILES)}: "
            "copy the parent's tokenizer files into it (tokenizer.save_pretrained)"
        )
    try:
        return load_tokenizer(folder, trust_remote_code)
    except HeadSurgeonError:
        raise
    except (OSError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"could not load the tokenizer in {folder}: {first}") from e


def load_for_prediction(
    folder: str | os.PathLike,
    *,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    preprocessor=None,
):
    """Load the classifier and its preprocessor saved in ``folder`` (on CPU) ready for batching.

    A tokenizer without a pad token (decoder models) pads with its EOS token.
    ``trust_remote_code`` and ``allow_pickle``: see :func:`headsurgeon.models.load_model`.
    ``preprocessor``: ``(folder, trust_remote_code)`` → the model's preprocessor (a task's
    :meth:`~headsurgeon.tasks.base.Task.preprocessor`); default: its tokenizer
    (:func:`load_text_tokenizer`).

    Returns:
        ``(model, preprocessor)``.

    Raises:
        CheckpointError: the folder has no model, no preprocessor (tokenizer files, ...), or
            they do not load.
    """
    from .models import load_model, read_config

    folder = Path(folder)
    read_config(folder)
    tokenizer = (preprocessor or load_text_tokenizer)(folder, trust_remote_code)
    model = load_model(folder, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    if getattr(tokenizer, "pad_token", "") is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_and_tokenizer(
    source, *, trust_remote_code: bool = False, allow_pickle: bool = False, preprocessor=None
):
    """``(model, preprocessor)`` of ``source``: a model folder (:func:`load_for_prediction`,
    ``preprocessor`` its loader) or a ``(model, preprocessor)`` pair, returned as is."""
    if isinstance(source, (str, os.PathLike)):
        return load_for_prediction(
            source,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            preprocessor=preprocessor,
        )
    model, tokenizer = source
    return model, tokenizer


def labels_of_source(source) -> list[str]:
    """The labels, in class-id order, of a model folder (its ``config.json``) or of a
    ``(model, tokenizer)`` pair."""
    from .labels import labels_of
    from .models import read_config

    if isinstance(source, (str, os.PathLike)):
        return labels_of(read_config(source))
    return labels_of(source[0].config)


def predict_labels(model, tokenizer, texts: Sequence[str], **kwargs) -> list[list[str]]:
    """The labels a text classifier gives each of ``texts``, as its config says to decide them:
    a multi-label model (``problem_type: multi_label_classification``) every label whose sigmoid
    reaches its threshold (config ``label_thresholds``, 0.5 when unset: what ``check`` and
    ``train``'s gate score), any other the argmax.

    Args:
        model, tokenizer: a text classifier and its tokenizer.
        texts: the texts.
        **kwargs: as :func:`predict_logits` (``batch_size``, ``max_length``, ``device``...).

    Example:
        >>> predict_labels(model, tokenizer, ["charged twice for my card"])
        [['billing', 'card']]
    """
    import torch

    from .labels import labels_of
    from .tasks import MULTI_LABEL, problem_type_of
    from .tasks.multilabel.gate import thresholds_of

    names = labels_of(model.config)
    logits = predict_logits(model, tokenizer, texts, **kwargs).float().cpu()
    if problem_type_of(model.config) != MULTI_LABEL:
        return [[names[i]] for i in logits.argmax(-1).tolist()]
    fired = torch.sigmoid(logits) >= torch.tensor(thresholds_of(model.config, names))
    return [[names[j] for j in row.nonzero().flatten().tolist()] for row in fired]
