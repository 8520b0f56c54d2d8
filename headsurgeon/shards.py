"""A saved checkpoint's layout read from its headers alone, and its classifier head found in them.

:func:`open_checkpoint` reads ``config.json``, the sharded index (if any) and every safetensors
header — no tensor data — and refuses a missing shard, a corrupt or truncated header, or an index
that names a tensor its shard lacks. :func:`locate_in_checkpoint` finds the head by names and
shapes (the matrices whose rows are the labels, checked against the in-memory locator's table of
head paths); only when that is ambiguous does it build the architecture on the ``meta`` device
(importing torch and transformers) and ask :func:`headsurgeon.locate.locate_head`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import labels as _labels
from .errors import CheckpointError, HeadNotFoundError, UnsupportedModelError
from .locate import HeadRef, match_module
from .safetensors_io import SafetensorsHeader, TensorInfo
from .weights import SAFE_SINGLE, read_weights, require_weights

logger = logging.getLogger(__name__)

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


@dataclass
class Checkpoint:
    """A safetensors model folder's config and safetensors headers (no tensor data read)."""

    folder: Path
    config: dict[str, Any]
    labels: list[str]
    headers: dict[str, SafetensorsHeader]  # file name -> header
    index: dict[str, Any] | None  # the parsed index of a sharded checkpoint
    trust_remote_code: bool = False  # the meta-device probe may run the model's own code

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


def open_checkpoint(
    folder: Path, config: dict[str, Any], allow_pickle: bool, *, trust_remote_code: bool = False
) -> Checkpoint | None:
    """Read the safetensors headers of ``folder`` (``None``: a pickle checkpoint, allowed).

    Raises:
        CheckpointError: no weights, a missing or corrupt shard, an index that disagrees with
        its shards, or pickle weights without ``allow_pickle``.
    """
    labels = _labels.labels_of(config)
    weights = read_weights(folder)
    if weights is not None:
        return Checkpoint(folder, config, labels, *weights, trust_remote_code)
    pickles = require_weights(folder)
    if not allow_pickle:
        raise CheckpointError(
            f"{folder} holds pickle weights only ({pickles[0]}): headsurgeon streams safetensors, "
            "and unpickling can run code from the file; pass --allow-pickle if you trust it (the "
            "model is then loaded in memory and written back as safetensors)"
        )
    return None


def locate_in_checkpoint(ckpt: Checkpoint, head_path, count_after: int) -> HeadRef:
    """Find the head from the headers (explicit path > name table > meta-device probe).

    Args:
        ckpt: the opened checkpoint.
        head_path: explicit dotted path(s) or unique suffix, or ``None``.
        count_after: the label count after the operation (the returned head's ``out_features``).

    Returns:
        a :class:`~headsurgeon.locate.HeadRef`; ``method`` is ``"explicit"``, ``"header"``
        (names and shapes settled it) or ``"shape-probe"`` (meta-device fallback).

    Raises:
        HeadNotFoundError, AmbiguousHeadError: a bad explicit path, or the probe's errors.
        CheckpointError: the head's shape disagrees with the config's label count.
        UnsupportedModelError: the head layout changes with the label count.
    """
    n = len(ckpt.labels)
    if head_path is not None:
        wanted = [head_path] if isinstance(head_path, str) else list(head_path)
        paths, method = [_resolve(ckpt, p, n) for p in wanted], "explicit"
    else:
        paths, method = _from_headers(ckpt, n), "header"
        if paths is None:
            paths, method = _from_meta(ckpt, count_after), "shape-probe"
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


def _resolve(ckpt: Checkpoint, path: str, n: int) -> str:
    """Full module path for an explicit ``path`` (exact, else unique dotted suffix)."""
    modules = {t.rsplit(".", 1)[0] for h in ckpt.headers.values() for t in h.tensors}
    found = ckpt.matrices(n)
    name = match_module(path, modules, found, n, "the checkpoint")
    w = ckpt.info(name + ".weight")
    if w is None or len(w.shape) != 2 or w.shape[0] != n:
        rows = "no weight matrix" if w is None or len(w.shape) != 2 else f"{w.shape[0]} outputs"
        raise HeadNotFoundError(
            f"{name} has {rows} but the model has {n} labels: it is not the head "
            f"(candidates: {', '.join(found) or 'none'})"
        )
    return name


def _from_headers(ckpt: Checkpoint, n: int) -> list[str] | None:
    """The head path(s) when names and shapes settle it; ``None`` when ambiguous.

    Raises:
        CheckpointError: a known head exists but its row count disagrees with the config.
    """
    found = ckpt.matrices(n)
    others = [p for p in found if p.rsplit(".", 1)[-1] not in NOT_HEADS and not _embedding(p)]
    others = [p for p in others if not (p.endswith(".dense") and p[:-6] + ".out_proj" in found)]
    heads = next((list(pair) for pair in PARALLEL_HEADS if sorted(pair) == sorted(others)), None)
    if heads is None and len(others) == 1 and others[0] in KNOWN_HEADS:
        heads = others
    if heads and not _stray_vectors(ckpt, n, heads):
        return heads
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


def _embedding(path: str) -> bool:
    """An embedding table (e.g. BERT's 2-row ``token_type_embeddings``) is never the head."""
    return "embed" in path.rsplit(".", 1)[-1]


def _stray_vectors(ckpt: Checkpoint, n: int, heads: list[str]) -> list[str]:
    """Vectors of length ``n`` other than the heads' biases (label-sized: only a probe can tell)."""
    biases = {p + ".bias" for p in heads}
    return [
        t.name
        for h in ckpt.headers.values()
        for t in h.tensors.values()
        if t.shape == (n,) and t.name not in biases and not t.name.endswith("pre_classifier.bias")
    ]


def meta_skeleton(
    folder: str | os.PathLike, count: int | None = None, *, trust_remote_code: bool = False
):
    """The architecture of the model in ``folder`` on the ``meta`` device (imports torch).

    Args:
        folder: a model folder (its ``config.json`` is read by transformers).
        count: build it with this many labels instead of the config's.
        trust_remote_code: let a model whose config names custom code (``auto_map``) run it.

    Raises:
        CheckpointError: transformers cannot read ``config.json``.
        UnsupportedModelError: no known architecture, custom code refused, or it cannot be built
            from the config.
    """
    from .models import load_config, meta_model, model_class, one_line

    config = load_config(folder, trust_remote_code)
    cls = model_class(config, trust_remote_code=trust_remote_code, folder=folder)
    try:
        return meta_model(cls, config, count)
    except Exception as e:  # the architecture's own code on values from config.json
        raise UnsupportedModelError(
            f"{cls.__name__} cannot be built from {Path(folder) / 'config.json'} "
            f"({type(e).__name__}: {one_line(e)}): fix config.json"
        ) from e


def _meta(ckpt: Checkpoint, count: int | None = None):
    return meta_skeleton(ckpt.folder, count, trust_remote_code=ckpt.trust_remote_code)


def _from_meta(ckpt: Checkpoint, count_after: int) -> list[str]:
    """Head path(s) found by building the architecture on the ``meta`` device (imports torch)."""
    from .locate import locate_head

    model = _meta(ckpt)
    paths = list(locate_head(model).paths)
    _check_layout(ckpt, count_after, model)
    return paths


def _check_layout(ckpt: Checkpoint, count: int, model=None) -> None:
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
