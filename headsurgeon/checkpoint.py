"""On-disk surgery on a saved model folder: stream safetensors, rewrite only what changes.

For a safetensors checkpoint (``model.safetensors``, or shards listed by
``model.safetensors.index.json``) the head is found from ``config.json`` and the tensor headers
alone, only the head tensors are read, only the shard(s) holding them are rewritten (the other
tensors copied by the kernel), and the result is published atomically (:mod:`.atomic`). Neither
torch nor transformers is imported unless the headers leave the head ambiguous (then the
architecture is built on the ``meta`` device) or ``init="normal"`` asks for torch's generator.
New rows equal the in-memory :func:`headsurgeon.add_labels` bit for bit (:mod:`.headrows`).

Pickle checkpoints (``pytorch_model*.bin``) are refused unless ``allow_pickle=True``; they then
go through the in-memory load/grow/save path and are written back as safetensors.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import atomic
from . import labels as _labels
from . import record as _record
from .errors import CheckpointError, HeadSurgeonError, LabelError, OptionsError
from .models import read_config
from .safetensors_io import Entry, SafetensorsHeader, copy_file, write_file
from .shards import Checkpoint, locate_in_checkpoint, meta_skeleton, open_checkpoint
from .surgery import BIAS_POLICIES, DEFAULT_BIAS, DEFAULT_INIT, SurgeryResult
from .tasks import TOKEN, commands_for, task_of, task_of_name
from .tasks.token import schemes
from .weights import PICKLE_PATTERNS, SAFE_INDEX, WEIGHT_PATTERNS, require_weights

logger = logging.getLogger(__name__)

#: default of ``link``: copy unchanged files for ``-o`` (a hard link shares their bytes)
DEFAULT_LINK = False
#: init policies the streaming path applies (``imprint`` needs example features: in memory)
STREAM_INITS = ("mean", "zeros", "normal")
#: tensor name -> (new shape, new bytes)
_Changes = dict[str, tuple[tuple[int, ...], bytes]]


def inspect_checkpoint(
    folder: str | os.PathLike, *, trust_remote_code: bool = False
) -> dict[str, Any]:
    """Describe a saved classifier without loading its weights.

    Reads ``config.json`` and the safetensors headers only (no torch, no transformers): the head
    is found by names and shapes, its dtype and features read from its header entry. Only when
    the headers leave the head ambiguous, or the weights are pickle files, is the architecture
    built on the ``meta`` device (the head's ``method`` is then ``"shape-probe"``).

    Args:
        folder: a saved model folder.
        trust_remote_code: on the ``meta`` path, let a model whose config names custom code
            (``auto_map``) run it.

    Returns:
        ``{"path", "architecture", "model_type", "task", "head": HeadRef dict, "num_labels",
        "labels", "commands"}``; ``task`` is ``"sequence-classification"``,
        ``"token-classification"``, ... or ``"unknown"`` (:mod:`.tasks`); ``commands`` are the
        commands its task supports (:func:`~.tasks.commands_for`). A token classifier also has ``"scheme"`` (``"BIO"``,
        ``"BIOES"``, ``"BILOU"``, ``"IO"`` or ``None`` when none is recognised) and
        ``"entity_types"``.

    Raises:
        CheckpointError: missing or corrupt config or weights; LabelError: no usable labels;
        HeadNotFoundError, AmbiguousHeadError, UnsupportedModelError: from the head locators.

    Example:
        >>> inspect_checkpoint("model/")["head"]["paths"]
        ['classifier']
    """
    folder = Path(folder)
    raw = read_config(folder)
    labels = _labels_in(folder, raw)
    architecture = (raw.get("architectures") or [None])[0]
    # pickle weights are never unpickled here: their shapes come from the meta-device probe
    ckpt = open_checkpoint(folder, raw, allow_pickle=True)
    if ckpt is not None and architecture is not None:
        head = locate_in_checkpoint(ckpt, None, len(labels)).to_dict()
    else:
        architecture, head = _inspect_on_meta(folder, raw, trust_remote_code)
    logger.info("%s: head %s found by %s", folder, ", ".join(head["paths"]), head["method"])
    task = task_of_name(architecture, raw.get("model_type"))
    return {
        "path": str(folder),
        "architecture": architecture,
        "model_type": raw.get("model_type"),
        "task": task,
        "problem_type": raw.get("problem_type"),
        **(schemes.describe(labels) if task == TOKEN else {}),
        "commands": commands_for(task, raw),
        "head": head,
        "num_labels": len(labels),
        "labels": labels,
    }


def _inspect_on_meta(
    folder: Path, raw: dict[str, Any], trust_remote_code: bool
) -> tuple[str, dict[str, Any]]:
    """Architecture and head found on the ``meta`` device (imports torch and transformers)."""
    from .locate import locate_head

    model = meta_skeleton(folder, trust_remote_code=trust_remote_code)
    head = locate_head(model).to_dict()
    head["dtype"] = str(raw.get("dtype") or raw.get("torch_dtype") or head["dtype"])
    return type(model).__name__, head


def add_labels_to_checkpoint(
    src: str | os.PathLike,
    names: Sequence[str],
    output: str | os.PathLike | None = None,
    *,
    init: str | None = None,
    bias: str | None = None,
    head_path: str | Sequence[str] | None = None,
    seed: int | None = None,
    link: bool = DEFAULT_LINK,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    base_model: str | None = None,
) -> SurgeryResult:
    """Grow the head of the model saved in ``src``; write to ``output`` (or in place).

    Streams safetensors checkpoints: reads the config and the head tensors only, rewrites only
    the shard(s) holding the head, and publishes the result atomically.

    Args:
        src: a folder saved with ``save_pretrained``.
        names: new label names; on a token classifier an entity type (``PRODUCT``) adds every
            tag of the model's scheme for it (``B-PRODUCT``, ``I-PRODUCT`` in BIO).
        output: a new folder (must not exist, or be empty); ``None`` edits ``src`` in place.
        init, bias: ``mean`` (default), ``zeros`` or ``normal`` (σ = ``initializer_range``);
            ``mean`` (default), ``min`` or ``zeros``.
        head_path: explicit head path(s) or unique dotted suffix; found automatically if ``None``.
        seed: seed of ``init="normal"`` (torch's generator: same rows as in memory).
        link: with ``output``, hard-link the unchanged files instead of copying them.
        allow_pickle: accept ``pytorch_model*.bin`` (loaded in memory with
            ``weights_only=True``), written back as safetensors.
        trust_remote_code: let a config's custom code (``auto_map``) run when the architecture
            must be built (ambiguous head, pickle weights); streaming runs no code.
        base_model: the Hub id ``src`` came from, kept in ``headsurgeon.json`` for the card.

    Returns:
        the :class:`~headsurgeon.surgery.SurgeryResult`.

    Raises:
        CheckpointError: missing/corrupt/inconsistent files, non-empty output, pickle refused.
        LabelError, OptionsError, HeadNotFoundError, AmbiguousHeadError,
        UnsupportedModelError (custom code without ``trust_remote_code``). Nothing is written.

    Example:
        >>> add_labels_to_checkpoint("parent/", ["lost_or_stolen_card"], "grown/")
    """
    init, bias = _policies(init, bias, base_model)
    src, target, config = _prepare(src, output)
    before = _labels_in(src, config)
    after = _labels.grown(before, names, task=task_of(config))
    ckpt = open_checkpoint(src, config, allow_pickle, trust_remote_code=trust_remote_code)
    if ckpt is None:
        return _in_memory(src, target, "add-label", "add_labels", names, init=init, bias=bias,
                          head_path=head_path, seed=seed, base_model=base_model,
                          trust_remote_code=trust_remote_code)  # fmt: skip
    head = locate_in_checkpoint(ckpt, head_path, len(after))
    std = float(config.get("initializer_range") or 0.02)  # as surgery's normal policy
    changes = _grown(ckpt, head.paths, len(after) - len(before), init, bias, seed, std)
    result = SurgeryResult(head, before, after, added=after[len(before) :], init=init, bias=bias)
    _publish(ckpt, target, changes, after, result.to_dict(), "add-label", link, base_model)
    return result


def _policies(init: str | None, bias: str | None, base_model: str | None) -> tuple[str, str]:
    """The init and bias policies (the defaults for ``None``), checked with ``base_model``
    before any work.

    Raises:
        OptionsError: a policy the streaming path does not apply; ``base_model`` not a Hub id.
    """
    init, bias = init or DEFAULT_INIT, bias or DEFAULT_BIAS
    _check_choice("init", init, STREAM_INITS)
    _check_choice("bias", bias, BIAS_POLICIES)
    _record.set_base_model({}, base_model)
    return init, bias


def _grown(ckpt: Checkpoint, paths, k: int, init: str, bias: str, seed, std: float) -> _Changes:
    """New bytes and shapes of each head's weight (and bias) with ``k`` rows appended."""
    from .headrows import from_float32, new_biases, new_rows, to_float32

    changes: _Changes = {}
    for path in paths:
        w, raw = ckpt.info(path + ".weight"), ckpt.read(path + ".weight")
        rows = new_rows(to_float32(raw, w.dtype), w.shape[0], k, init, seed=seed, std=std)
        changes[w.name] = ((w.shape[0] + k, w.shape[1]), raw + from_float32(rows, w.dtype))
        b = ckpt.info(path + ".bias")
        if b is not None:
            raw = ckpt.read(b.name)
            extra = new_biases(to_float32(raw, b.dtype), k, bias)
            changes[b.name] = ((b.shape[0] + k,), raw + from_float32(extra, b.dtype))
    return changes


def _kept(ckpt: Checkpoint, paths, kept: list[int]) -> _Changes:
    """New bytes and shapes of each head's weight (and bias) keeping only the rows ``kept``."""
    changes: _Changes = {}
    for path in paths:
        for t in filter(None, (ckpt.info(path + ".weight"), ckpt.info(path + ".bias"))):
            raw, row = ckpt.read(t.name), t.nbytes // t.shape[0]
            data = b"".join(raw[i * row : (i + 1) * row] for i in kept)
            changes[t.name] = ((len(kept), *t.shape[1:]), data)
    return changes


def remove_labels_from_checkpoint(
    src: str | os.PathLike,
    names: Sequence[str],
    output: str | os.PathLike | None = None,
    *,
    head_path: str | Sequence[str] | None = None,
    link: bool = DEFAULT_LINK,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    force: bool = False,
) -> SurgeryResult:
    """Drop the head rows of ``names`` and re-index the remaining labels densely (order kept).

    Same streaming, atomicity and arguments as :func:`add_labels_to_checkpoint`. On a token
    classifier an entity type (``PER``) stands for all its tags; removing ``O``, or some tags
    of a type while others stay (``B-PER`` without ``I-PER``), breaks the tagging scheme and is
    refused unless ``force``.

    Returns:
        the :class:`~headsurgeon.surgery.SurgeryResult` (``removed`` lists the names dropped).

    Raises:
        LabelError: unknown names, duplicates, removing every label, or breaking the tagging
        scheme; and the errors of :func:`add_labels_to_checkpoint`.

    Example:
        >>> remove_labels_from_checkpoint("model/", ["obsolete_intent"])
    """
    src, target, config = _prepare(src, output)
    before = _labels_in(src, config)
    after, kept = _labels.without(before, names, task=task_of(config), force=force)
    ckpt = open_checkpoint(src, config, allow_pickle, trust_remote_code=trust_remote_code)
    if ckpt is None:
        return _in_memory(src, target, "remove-label", "remove_labels", names, head_path=head_path,
                          trust_remote_code=trust_remote_code, force=force)  # fmt: skip
    head = locate_in_checkpoint(ckpt, head_path, len(after))
    changes = _kept(ckpt, head.paths, kept)
    removed = [n for n in before if n not in set(after)]
    result = SurgeryResult(head, before, after, removed=removed)
    _publish(ckpt, target, changes, after, result.to_dict(), "remove-label", link)
    return result


def rename_label_in_checkpoint(
    src: str | os.PathLike,
    old: str,
    new: str,
    output: str | os.PathLike | None = None,
    *,
    link: bool = DEFAULT_LINK,
) -> list[str]:
    """Rename label ``old`` to ``new`` in the saved model's config; weights are not touched.

    On a token classifier ``old`` may be an entity type: all its tags are renamed (``B-PER`` →
    ``B-PERSON``, ``I-PER`` → ``I-PERSON``). Works for any weight format (only safetensors
    headers are read, to refuse a truncated or missing checkpoint). With ``output``, the other files are carried over (copied, or
    hard-linked with ``link``).

    Returns:
        the label names after the rename, by id.

    Raises:
        LabelError: ``old`` unknown, ``new`` equal to it, empty or already a label.
        CheckpointError: missing folder or config, corrupt or missing weights, non-empty output.

    Example:
        >>> rename_label_in_checkpoint("model/", "card_lost", "lost_or_stolen_card")
    """
    src, target, config = _prepare(src, output)
    before = _labels_in(src, config)
    after = _labels.renamed(before, old, new, task=task_of(config))
    require_weights(src)  # weights are carried over unread, but never broken ones
    new_config = dict(config)
    _labels.apply_to_config(new_config, after)
    record = _record.record_for(src, before)
    _record.follow_labels(record, list(before), list(after))
    _record.add_event(record, "rename-label", old=old, new=new, labels_after=after)
    writers = {"config.json": _json_writer(new_config)}
    atomic.commit(src, target, writers, record, link=link, carry=_carry)
    return after


def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise OptionsError(
            f"unknown {what} policy {value!r} for a checkpoint on disk: expected one of "
            f"{', '.join(allowed)}"
        )


def _prepare(src, output) -> tuple[Path, Path | None, dict[str, Any]]:
    src = Path(src)
    config = read_config(src)
    return src, atomic.check_output(src, output), config


def _publish(ckpt, target, changes, after, event: dict, op: str, link: bool, base=None) -> None:
    """Write the changed shard(s), index, config and record; carry the rest over."""
    writers: dict[str, atomic.Writer] = {}
    for fname in sorted({ckpt.file_of(name) for name in changes}):
        header = ckpt.headers[fname]
        entries = [
            Entry(t.name, t.dtype, changes[t.name][0], data=changes[t.name][1])
            if t.name in changes
            else Entry(t.name, t.dtype, t.shape, source=t)
            for t in header.tensors.values()
        ]
        writers[fname] = _shard_writer(entries, header)
    if ckpt.index is not None:
        delta = sum(len(data) - ckpt.info(name).nbytes for name, (_, data) in changes.items())
        index = json.loads(json.dumps(ckpt.index))
        if "total_size" in index.get("metadata", {}):
            index["metadata"]["total_size"] = int(index["metadata"]["total_size"]) + delta
        writers[SAFE_INDEX] = _json_writer(index)
    config = json.loads(json.dumps(ckpt.config))
    _labels.apply_to_config(config, after)
    writers["config.json"] = _json_writer(config)
    record = _record.set_base_model(_record.record_for(ckpt.folder, ckpt.labels), base)
    if op in ("remove-label", "rename-label"):
        _record.follow_labels(record, list(ckpt.labels), list(after))
    _record.add_event(record, op, **event)
    stale = frozenset(p.name for pat in PICKLE_PATTERNS for p in ckpt.folder.glob(pat))
    atomic.commit(ckpt.folder, target, writers, record, link=link, drop=stale, carry=_carry)


def _shard_writer(entries: list[Entry], header: SafetensorsHeader) -> atomic.Writer:
    return lambda path: write_file(path, entries, header.metadata, header.path)


def _json_writer(data: dict[str, Any]) -> atomic.Writer:
    # the layout transformers' save_pretrained uses for config.json and the index
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return lambda path: path.write_text(text, encoding="utf-8")


def _carry(src: Path, dst: Path) -> None:
    """Copy an unchanged file for ``-o``: weights by the kernel, small files with metadata."""
    if src.suffix == ".safetensors":
        copy_file(src, dst)
    else:
        import shutil

        shutil.copy2(src, dst)


def _in_memory(
    src: Path,
    target: Path | None,
    op: str,
    func: str,
    names,
    *,
    trust_remote_code: bool,
    base_model: str | None = None,
    **kwargs,
) -> SurgeryResult:
    """The pickle fallback: load the whole model, operate in memory, save as safetensors."""
    from . import surgery
    from .models import load_model

    # open_checkpoint refused pickle weights unless allowed; they load with weights_only=True
    model = load_model(src, trust_remote_code=trust_remote_code, allow_pickle=True)
    before = _labels.labels_of(model.config)
    result = getattr(surgery, func)(model, names, **kwargs)
    record = _record.set_base_model(_record.record_for(src, before), base_model)
    if op in ("remove-label", "rename-label"):
        _record.follow_labels(record, before, _labels.labels_of(model.config))
    _record.add_event(record, op, **result.to_dict())
    write_model(model, record, src, target)
    return result


def write_model(
    model,
    record: dict[str, Any],
    src: str | os.PathLike,
    output=None,
    extra: Mapping[str, atomic.Writer] | None = None,
) -> Path:
    """Save an in-memory ``model`` with ``record`` as ``output`` (or over ``src``), atomically.

    The files of ``src`` that ``save_pretrained`` does not produce (tokenizer, processor, ...)
    are carried over; ``src``'s old weight files are not. Used after training or a pickle
    fallback, when the weights changed beyond the head. ``extra``: file name → writer of
    further files published with the model (``train``'s ``training.json``); a file of ``src``
    of that name is not carried over.

    Returns:
        the folder written.

    Raises:
        CheckpointError: ``output`` exists and is not empty, or writing failed (nothing is left).
    """
    src = Path(src)
    target = atomic.check_output(src, output)
    with atomic.temp_folder(target or src.resolve(), "save-") as scratch:
        try:
            model.save_pretrained(str(scratch))
        except Exception as e:  # disk full surfaces as OSError or safetensors' own error type
            if isinstance(e, HeadSurgeonError):
                raise
            raise CheckpointError(
                f"writing {target or src} failed ({type(e).__name__}: {e}); nothing was changed"
            ) from e
        writers = {p.name: _mover(p) for p in scratch.iterdir() if p.is_file()}
        writers.update(extra or {})
        stale = frozenset(p.name for pat in WEIGHT_PATTERNS for p in src.glob(pat))
        return atomic.commit(src, target, writers, record, drop=stale, carry=_carry)


def _mover(saved: Path) -> atomic.Writer:
    return lambda path: os.replace(saved, path)


def _labels_in(folder: str | os.PathLike, config: dict[str, Any]) -> list[str]:
    """The labels of the model in ``folder`` (its ``config``); a bad config's error names the
    folder, since a user may have several open."""
    try:
        return _labels.labels_of(config)
    except LabelError as e:
        raise LabelError(f"{Path(folder) / 'config.json'}: {e}") from e
