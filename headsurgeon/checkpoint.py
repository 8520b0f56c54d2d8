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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic
from . import labels as _labels
from . import record as _record
from .errors import AmbiguousHeadError, CheckpointError, HeadNotFoundError, UnsupportedModelError
from .locate import HeadRef
from .models import read_config
from .safetensors_io import Entry, SafetensorsHeader, TensorInfo, copy_file, read_header, write_file
from .surgery import DEFAULT_BIAS, DEFAULT_INIT, SurgeryResult

logger = logging.getLogger(__name__)

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
WEIGHT_PATTERNS = (
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*.bin",
    "pytorch_model.bin.index.json",
)
PICKLE_PATTERNS = WEIGHT_PATTERNS[3:]
#: head paths of transformers' classifiers (see NOTES.md: ~90% of classes by name alone)
KNOWN_HEADS = (
    "classifier",
    "score",
    "classifier.out_proj",
    "classification_head.out_proj",
    "score.out_proj",
    "logits_proj",
    "fc",
    "head",
    "classifier.1",
    "sequence_summary.summary",
    "classifier.linear_out",
    "classifier.dense",
    "classifier.linear",
    "perceiver.decoder.decoder.final_layer",
)
#: heads that grow together (models averaging a teacher/distillation head)
PARALLEL_HEADS = (
    ("cls_classifier", "distillation_classifier"),
    ("classifier.linear", "classifier_distill.linear"),
    ("head", "dist_head"),
)
#: layers that can have as many outputs as there are labels without being the head
NOT_HEADS = ("pre_classifier",)
#: model types whose head layout changes with the label count: checked on the meta device
LAYOUT_BY_COUNT = ("layoutlmv3",)
#: default of ``link``: copy unchanged files for ``-o`` (a hard link shares their bytes)
DEFAULT_LINK = False
STREAM_INITS = ("mean", "zeros", "normal")


@dataclass
class _Checkpoint:
    """A model folder's config and safetensors headers (no tensor data read)."""

    folder: Path
    config: dict[str, Any]
    labels: list[str]
    headers: dict[str, SafetensorsHeader]  # file name -> header
    index: dict[str, Any] | None  # the parsed index of a sharded checkpoint

    def info(self, name: str) -> TensorInfo | None:
        """The header entry of tensor ``name``, or ``None``."""
        if self.index is None:
            return next(iter(self.headers.values())).tensors.get(name)
        shard = self.index["weight_map"].get(name)
        return self.headers[shard].tensors[name] if shard else None

    def file_of(self, name: str) -> str:
        return SAFE_SINGLE if self.index is None else self.index["weight_map"][name]

    def read(self, name: str) -> bytes:
        return self.headers[self.file_of(name)].read(name)

    def matrices(self, rows: int) -> list[str]:
        """Module paths whose ``.weight`` is a matrix with ``rows`` rows, in file order."""
        return [
            t.name[: -len(".weight")]
            for h in self.headers.values()
            for t in h.tensors.values()
            if t.name.endswith(".weight") and len(t.shape) == 2 and t.shape[0] == rows
        ]


def inspect_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """Describe a saved classifier without loading its weights.

    Returns:
        ``{"architecture", "model_type", "head": HeadRef dict, "labels": [...], "num_labels"}``.
    """
    from transformers import AutoConfig

    from .locate import locate_head
    from .models import meta_model, model_class

    raw = read_config(folder)
    labels = _labels.labels_of(raw)
    config = AutoConfig.from_pretrained(str(folder))
    model = meta_model(model_class(config), config)
    head = locate_head(model).to_dict()
    head["dtype"] = str(raw.get("dtype") or raw.get("torch_dtype") or head["dtype"])
    return {
        "path": str(folder),
        "architecture": type(model).__name__,
        "model_type": raw.get("model_type"),
        "head": head,
        "num_labels": len(labels),
        "labels": labels,
    }


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
) -> SurgeryResult:
    """Grow the head of the model saved in ``src``; write to ``output`` (or in place).

    Streams safetensors checkpoints: reads the config and the head tensors only, rewrites only
    the shard(s) holding the head, and publishes the result atomically.

    Args:
        src: a folder saved with ``save_pretrained``.
        names: new label names.
        output: a new folder (must not exist, or be empty); ``None`` edits ``src`` in place.
        init: ``mean`` (default), ``zeros`` or ``normal`` (σ = ``initializer_range``).
        bias: ``mean`` (default), ``min`` or ``zeros``.
        head_path: explicit head path(s) or unique dotted suffix; found automatically if ``None``.
        seed: seed of ``init="normal"`` (torch's generator: same rows as in memory).
        link: with ``output``, hard-link the unchanged files instead of copying them.
        allow_pickle: accept a ``pytorch_model*.bin`` checkpoint (loaded in memory; unpickling
            can run code from the file) and write it back as safetensors.

    Returns:
        the :class:`~headsurgeon.surgery.SurgeryResult`.

    Raises:
        CheckpointError: missing/corrupt/inconsistent files, non-empty output, pickle refused.
        LabelError, OptionsError, HeadNotFoundError, AmbiguousHeadError, UnsupportedModelError.
        On any error nothing is written.

    Example:
        >>> add_labels_to_checkpoint("parent/", ["lost_or_stolen_card"], "grown/")
    """
    from .headrows import from_float32, new_biases, new_rows, to_float32

    init, bias = init or DEFAULT_INIT, bias or DEFAULT_BIAS
    _check_choice("init", init, STREAM_INITS)
    _check_choice("bias", bias, ("mean", "min", "zeros"))
    src, target, config = _prepare(src, output)
    before = _labels.labels_of(config)
    after = _labels.grown(before, names)
    ckpt = _open(src, config, allow_pickle)
    if ckpt is None:
        return _in_memory(src, target, "add-label", "add_labels", names, init=init, bias=bias,
                          head_path=head_path, seed=seed)  # fmt: skip
    head = _locate(ckpt, head_path, len(after))
    k, std = len(after) - len(before), float(config.get("initializer_range") or 0.02)
    changes: dict[str, tuple[tuple[int, ...], bytes]] = {}
    for path in head.paths:
        w, raw = ckpt.info(path + ".weight"), ckpt.read(path + ".weight")
        rows = new_rows(to_float32(raw, w.dtype, w.shape), k, init, seed=seed, std=std)
        changes[w.name] = ((len(after), w.shape[1]), raw + from_float32(rows, w.dtype))
        b = ckpt.info(path + ".bias")
        if b is not None:
            braw = ckpt.read(b.name)
            extra = new_biases(to_float32(braw, b.dtype, b.shape), k, bias)
            changes[b.name] = ((len(after),), braw + from_float32(extra, b.dtype))
    result = SurgeryResult(head, before, after, added=after[len(before) :], init=init, bias=bias)
    _publish(ckpt, target, changes, after, result.to_dict(), "add-label", link)
    return result


def remove_labels_from_checkpoint(
    src: str | os.PathLike,
    names: Sequence[str],
    output: str | os.PathLike | None = None,
    *,
    head_path: str | Sequence[str] | None = None,
    link: bool = DEFAULT_LINK,
    allow_pickle: bool = False,
) -> SurgeryResult:
    """Drop the head rows of ``names`` and re-index the remaining labels densely (order kept).

    Same streaming, atomicity and arguments as :func:`add_labels_to_checkpoint`.

    Returns:
        the :class:`~headsurgeon.surgery.SurgeryResult` (``removed`` lists the names dropped).

    Raises:
        LabelError: unknown names, duplicates, or removing every label; and the errors of
        :func:`add_labels_to_checkpoint`.

    Example:
        >>> remove_labels_from_checkpoint("model/", ["obsolete_intent"])
    """
    src, target, config = _prepare(src, output)
    before = _labels.labels_of(config)
    after, kept = _labels.without(before, names)
    ckpt = _open(src, config, allow_pickle)
    if ckpt is None:
        return _in_memory(src, target, "remove-label", "remove_labels", names, head_path=head_path)
    head = _locate(ckpt, head_path, len(after))
    changes = {}
    for path in head.paths:
        for suffix in (".weight", ".bias"):
            t = ckpt.info(path + suffix)
            if t is None:
                continue
            raw, row = ckpt.read(t.name), t.nbytes // t.shape[0]
            data = b"".join(raw[i * row : (i + 1) * row] for i in kept)
            changes[t.name] = ((len(kept), *t.shape[1:]), data)
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

    Works for any weight format (no weight is read). With ``output``, the other files are
    carried over (copied, or hard-linked with ``link``).

    Returns:
        the label names after the rename, by id.

    Raises:
        LabelError: ``old`` unknown or ``new`` empty/already a label. CheckpointError: missing
        folder or config, non-empty output.

    Example:
        >>> rename_label_in_checkpoint("model/", "card_lost", "lost_or_stolen_card")
    """
    src, target, config = _prepare(src, output)
    before = _labels.labels_of(config)
    after = _labels.renamed(before, old, new)
    new_config = dict(config)
    _labels.apply_to_config(new_config, after)
    record = _record.record_for(src, before)
    _record.add_event(record, "rename-label", old=old, new=new, labels_after=after)
    writers = {"config.json": _json_writer(new_config)}
    atomic.commit(src, target, writers, record, link=link, carry=_carry)
    return after


def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    from .errors import OptionsError

    if value not in allowed:
        raise OptionsError(
            f"unknown {what} policy {value!r} for a checkpoint on disk: expected one of "
            f"{', '.join(allowed)}"
        )


def _prepare(src, output) -> tuple[Path, Path | None, dict[str, Any]]:
    src = Path(src)
    config = read_config(src)
    return src, atomic.check_output(src, output), config


def _open(folder: Path, config: dict[str, Any], allow_pickle: bool) -> _Checkpoint | None:
    """Read the safetensors headers of ``folder`` (``None``: a pickle checkpoint, allowed).

    Raises:
        CheckpointError: no weights, a missing or corrupt shard, an index that disagrees with
        its shards, or pickle weights without ``allow_pickle``.
    """
    labels = _labels.labels_of(config)
    if (folder / SAFE_SINGLE).is_file():
        return _Checkpoint(
            folder, config, labels, {SAFE_SINGLE: read_header(folder / SAFE_SINGLE)}, None
        )
    if (folder / SAFE_INDEX).is_file():
        index = _read_index(folder / SAFE_INDEX)
        headers = {
            name: read_header(folder / name) for name in sorted(set(index["weight_map"].values()))
        }
        for tensor, shard in index["weight_map"].items():
            if tensor not in headers[shard].tensors:
                raise CheckpointError(
                    f"{SAFE_INDEX} says {tensor!r} is in {shard}, but {shard} has no such tensor: "
                    "the index and the shards disagree; re-download or re-save the model"
                )
        return _Checkpoint(folder, config, labels, headers, index)
    pickles = sorted(p.name for pat in PICKLE_PATTERNS for p in folder.glob(pat))
    if not pickles:
        raise CheckpointError(
            f"{folder} has no model.safetensors, model.safetensors.index.json or "
            "pytorch_model.bin: no weights to edit"
        )
    if not allow_pickle:
        raise CheckpointError(
            f"{folder} holds pickle weights only ({pickles[0]}): headsurgeon streams safetensors, "
            "and unpickling can run code from the file; pass --allow-pickle if you trust it (the "
            "model is then loaded in memory and written back as safetensors)"
        )
    return None


def _read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}); re-download or re-save the model"
        ) from e
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise CheckpointError(f"{path} has no 'weight_map': it is not a safetensors index")
    for shard in set(index["weight_map"].values()):
        if not isinstance(shard, str) or "/" in shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{path} names an invalid shard {shard!r}")
        if not (path.parent / shard).is_file():
            raise CheckpointError(
                f"{path.name} names the shard {shard}, which is missing from {path.parent}: "
                "the checkpoint is incomplete; download it again"
            )
    return index


def _locate(ckpt: _Checkpoint, head_path, count_after: int) -> HeadRef:
    """Find the head from the headers (explicit path > name table > meta-device probe)."""
    n = len(ckpt.labels)
    if head_path is not None:
        wanted = [head_path] if isinstance(head_path, str) else list(head_path)
        paths, method = [_resolve(ckpt, p, n) for p in wanted], "explicit"
    else:
        paths, method = _from_headers(ckpt, n), "header"
        if paths is None:
            paths, method = _from_meta(ckpt), "shape-probe"
    if method != "shape-probe" and ckpt.config.get("model_type") in LAYOUT_BY_COUNT:
        _check_layout(ckpt, count_after)
    first = None
    for path in paths:
        w, b = ckpt.info(path + ".weight"), ckpt.info(path + ".bias")
        if w is None or len(w.shape) != 2 or w.shape[0] != n or (b is not None and b.shape != (n,)):
            shape = "missing" if w is None else f"shape {list(w.shape)}"
            raise CheckpointError(
                f"head {path}.weight is {shape} but config.json has {n} labels: the config and "
                "the weights disagree; fix id2label or re-save the model"
            )
        first = first or (w, b)
    w, b = first
    dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}.get(w.dtype, w.dtype)
    return HeadRef(tuple(paths), w.shape[1], count_after, b is not None, dtype, method)


def _resolve(ckpt: _Checkpoint, path: str, n: int) -> str:
    """Full module path for an explicit ``path`` (exact, else unique dotted suffix)."""
    modules = {t.rsplit(".", 1)[0] for h in ckpt.headers.values() for t in h.tensors}
    matches = [path] if path in modules else sorted(m for m in modules if m.endswith("." + path))
    found = ckpt.matrices(n)
    if not matches:
        hint = (
            f"layers with {n} outputs: {', '.join(found)}" if found else f"no layer has {n} outputs"
        )
        raise HeadNotFoundError(f"no module {path!r} in the checkpoint ({hint})")
    if len(matches) > 1:
        raise AmbiguousHeadError(
            f"{path!r} matches several modules: {', '.join(matches)}; give the full path"
        )
    w = ckpt.info(matches[0] + ".weight")
    if w is None or len(w.shape) != 2 or w.shape[0] != n:
        rows = "no weight matrix" if w is None or len(w.shape) != 2 else f"{w.shape[0]} outputs"
        raise HeadNotFoundError(
            f"{matches[0]} has {rows} but the model has {n} labels: it is not the head "
            f"(candidates: {', '.join(found) or 'none'})"
        )
    return matches[0]


def _from_headers(ckpt: _Checkpoint, n: int) -> list[str] | None:
    """The head path(s) when names and shapes settle it; ``None`` when ambiguous.

    Raises:
        CheckpointError: a known head exists but its row count disagrees with the config.
    """
    found = ckpt.matrices(n)
    others = [p for p in found if p.rsplit(".", 1)[-1] not in NOT_HEADS]
    others = [p for p in others if not (p.endswith(".dense") and p[:-6] + ".out_proj" in found)]
    for pair in PARALLEL_HEADS:
        if all(p in others for p in pair) and len(others) == len(pair):
            return list(pair)
    known = [p for p in others if p in KNOWN_HEADS]
    if len(known) == 1 and len(others) == 1:
        return known
    if not found:
        for path in KNOWN_HEADS:
            w = ckpt.info(path + ".weight")
            if w is not None and len(w.shape) == 2:
                raise CheckpointError(
                    f"head {path}.weight has {w.shape[0]} rows but config.json has {n} labels: "
                    "the config and the weights disagree; fix id2label or re-save the model"
                )
    logger.info("head not settled by the headers (candidates %s): probing on meta", found)
    return None


def _meta(ckpt: _Checkpoint, count: int | None = None):
    from transformers import AutoConfig

    from .models import meta_model, model_class

    config = AutoConfig.from_pretrained(str(ckpt.folder))
    return meta_model(model_class(config), config, count)


def _from_meta(ckpt: _Checkpoint) -> list[str]:
    """Head path(s) found by building the architecture on the ``meta`` device (imports torch)."""
    from .locate import locate_head

    model = _meta(ckpt)
    paths = list(locate_head(model).paths)
    _check_layout(ckpt, len(ckpt.labels) + 1, model)
    return paths


def _check_layout(ckpt: _Checkpoint, count: int, model=None) -> None:
    """Refuse when the architecture built with ``count`` labels has other parameters."""
    model = model if model is not None else _meta(ckpt)
    have = {name for name, _ in model.named_parameters()}
    want = {name for name, _ in _meta(ckpt, count).named_parameters()}
    if have != want:
        raise UnsupportedModelError(
            f"{type(model).__name__} builds a different head layout with {count} labels "
            f"(parameters {sorted(have ^ want)[:4]}): a grown model would not reload; "
            "headsurgeon refuses rather than write a model that loads with a random head"
        )


def _publish(ckpt, target, changes, after, event: dict, op: str, link: bool) -> None:
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
        meta = index.setdefault("metadata", {})
        if "total_size" in meta:
            meta["total_size"] = int(meta["total_size"]) + delta
        writers[SAFE_INDEX] = _json_writer(index)
    config = json.loads(json.dumps(ckpt.config))
    _labels.apply_to_config(config, after)
    writers["config.json"] = _json_writer(config)
    record = _record.record_for(ckpt.folder, ckpt.labels)
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
    src: Path, target: Path | None, op: str, func: str, names, **kwargs
) -> SurgeryResult:
    """The pickle fallback: load the whole model, operate in memory, save as safetensors."""
    import shutil
    import tempfile

    from . import surgery
    from .models import load_model

    model = load_model(src)
    before = _labels.labels_of(model.config)
    result = getattr(surgery, func)(model, names, **kwargs)
    record = _record.record_for(src, before)
    _record.add_event(record, op, **result.to_dict())
    parent = (target or src.resolve()).parent
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".headsurgeon-save-", dir=parent))
    try:
        model.save_pretrained(str(scratch))
        writers = {p.name: _mover(p) for p in scratch.iterdir() if p.is_file()}
        stale = frozenset(p.name for pat in WEIGHT_PATTERNS for p in src.glob(pat))
        atomic.commit(src, target, writers, record, drop=stale, carry=_carry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def _mover(saved: Path) -> atomic.Writer:
    return lambda path: os.replace(saved, path)
