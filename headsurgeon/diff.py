"""What training did to the weights: a child checkpoint compared with its parent, tensor by tensor.

:func:`diff_checkpoints` streams both safetensors checkpoints (headers first, then one tensor pair
at a time, in chunks), so its memory stays near one chunk whatever the model's size; no torch,
no data. It reports the relative change ``||Δθ|| / ||θ||`` and ``max |Δ|`` of every parameter and
of every layer group (embeddings, each block, the neck, the head), splits the head into the
parent's rows (bit-identical when protected) and the new rows, and flags the parameters that the
last ``train`` event in the child's ``headsurgeon.json`` froze but that moved anyway.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .models import read_config
from .record import read_record
from .safetensors_io import TensorInfo
from .shards import Checkpoint, locate_in_checkpoint, open_checkpoint, require_weights

logger = logging.getLogger(__name__)

#: elements decoded at a time: bounds the memory of a tensor pair whatever its size
CHUNK_ELEMENTS = 1 << 21
#: the index of an encoder block in a parameter name (``layer.3.``, ``layers.3.``, ``h.3.``)
_BLOCK = re.compile(r"^(?P<list>(?:.*\.)?(?:layer|layers|h|block|blocks))\.(?P<i>\d+)\.")
#: a name component that makes a parameter part of the embeddings
_EMBED = re.compile(r"(^|\.)(\w*embed\w*|wte|wpe)(\.|$)")
EMBEDDINGS, NECK, HEAD = "embeddings", "neck", "head"
#: safetensors dtype -> numpy dtype the values are decoded from (BF16 handled apart)
_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip


@dataclass
class _Sums:
    """Float64 accumulators of one comparison: ``sum θ²``, ``sum Δ²``, ``max |Δ|``, byte equality."""

    base: float = 0.0
    delta: float = 0.0
    max_abs: float = 0.0
    identical: bool = True

    def add(self, other: _Sums) -> None:
        self.base += other.base
        self.delta += other.delta
        self.max_abs = max(self.max_abs, other.max_abs)
        self.identical = self.identical and other.identical

    @property
    def rel(self) -> float:
        if self.base > 0:
            return math.sqrt(self.delta) / math.sqrt(self.base)
        return 0.0 if self.delta == 0 else math.inf


@dataclass
class ParamDiff:
    """One parameter present with the same shape on both sides (the head: its parent's rows)."""

    name: str
    shape: tuple[int, ...]
    group: str
    sums: _Sums
    frozen: bool | None = None  # expected frozen by the train event (None: no event)

    @property
    def moved_frozen(self) -> bool:
        return bool(self.frozen) and not self.sums.identical

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "group": self.group,
            "relative_change": _finite(self.sums.rel),
            "max_abs_change": self.sums.max_abs,
            "bit_identical": self.sums.identical,
            "expected_frozen": self.frozen,
            "moved_but_frozen": self.moved_frozen,
        }


@dataclass
class HeadDiff:
    """The head split into the parent's rows and the rows the child added."""

    paths: list[str]
    old_rows: int
    new_rows: int
    old: _Sums
    new_norm: float  # ||new rows (weights and biases)||, which have no parent value

    def to_dict(self) -> dict[str, Any]:
        return {
            "paths": self.paths,
            "old_rows": self.old_rows,
            "new_rows": self.new_rows,
            "old_rows_bit_identical": self.old.identical,
            "old_rows_relative_change": _finite(self.old.rel),
            "old_rows_max_abs_change": self.old.max_abs,
            "new_rows_norm": self.new_norm,
        }


@dataclass
class DiffReport:
    """The comparison of a child checkpoint with its parent (see :func:`diff_checkpoints`)."""

    parent: str
    child: str
    params: list[ParamDiff]
    head: HeadDiff
    train_event: dict[str, Any] | None  # the options the frozen set was derived from
    only_parent: list[str] = field(default_factory=list)
    only_child: list[str] = field(default_factory=list)
    shape_changed: list[tuple[str, list[int], list[int]]] = field(default_factory=list)

    def groups(self) -> list[dict[str, Any]]:
        """Each layer group bottom to top: embeddings, blocks, neck, head (its parent's rows)."""
        sums: dict[str, _Sums] = {}
        counts: dict[str, int] = {}
        flagged: dict[str, int] = {}
        for p in self.params:
            sums.setdefault(p.group, _Sums()).add(p.sums)
            counts[p.group] = counts.get(p.group, 0) + 1
            flagged[p.group] = flagged.get(p.group, 0) + p.moved_frozen
        return [
            {
                "group": g,
                "params": counts[g],
                "relative_change": _finite(sums[g].rel),
                "max_abs_change": sums[g].max_abs,
                "bit_identical": sums[g].identical,
                "moved_but_frozen": flagged[g],
            }
            for g in sorted(sums, key=_group_order)
        ]

    @property
    def moved_frozen(self) -> list[str]:
        return [p.name for p in self.params if p.moved_frozen]

    def summary(self) -> str:
        """One line: what moved, the head's rows, what is flagged."""
        moved = sum(not p.sums.identical for p in self.params)
        head = self.head
        old = (
            "bit-identical"
            if head.old.identical
            else f"changed (relative {_fmt(head.old.rel)}, max |Δ| {head.old.max_abs:.3g})"
        )
        flags = self.moved_frozen
        return (
            f"{moved} of {len(self.params)} parameters changed; head: {head.old_rows} old rows "
            f"{old}, {head.new_rows} new rows (norm {head.new_norm:.3g}); "
            + (
                f"{len(flags)} expected frozen but moved"
                if flags
                else "no frozen parameter moved"
                if self.train_event
                else "no train event: nothing expected frozen"
            )
            + (
                f"; {len(self.only_parent) + len(self.only_child) + len(self.shape_changed)} "
                "tensors only on one side or reshaped"
                if self.only_parent or self.only_child or self.shape_changed
                else ""
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent": self.parent,
            "child": self.child,
            "summary": self.summary(),
            "groups": self.groups(),
            "head": self.head.to_dict(),
            "moved_but_frozen": self.moved_frozen,
            "train_options": self.train_event,
            "parameters": [p.to_dict() for p in self.params],
            "only_in_parent": self.only_parent,
            "only_in_child": self.only_child,
            "shape_changed": [
                {"name": n, "parent": a, "child": b} for n, a, b in self.shape_changed
            ],
        }

    def render(self) -> str:
        """A table of the layer groups, then the head, the flags and a one-line summary."""
        lines = [f"{self.parent} -> {self.child}", _row("group", "params", "rel. change",
                                                         "max |Δ|", "flags")]  # fmt: skip
        for g in self.groups():
            flags = "bit-identical" if g["bit_identical"] else ""
            if g["moved_but_frozen"]:
                flags = f"{g['moved_but_frozen']} FROZEN BUT MOVED"
            rel = _fmt(math.inf if g["relative_change"] is None else g["relative_change"])
            group = "head (old rows)" if g["group"] == HEAD else g["group"]
            lines.append(_row(group, g["params"], rel, f"{g['max_abs_change']:.3g}", flags))
        h = self.head
        lines.append(
            f"head {', '.join(h.paths)}: {h.old_rows} old rows "
            + ("bit-identical" if h.old.identical else f"changed (relative {_fmt(h.old.rel)})")
            + f"; {h.new_rows} new rows, norm {h.new_norm:.4g}"
        )
        for name in self.moved_frozen:
            lines.append(f"FLAG: {name} was expected frozen but moved")
        for name in self.only_parent:
            lines.append(f"only in parent: {name}")
        for name in self.only_child:
            lines.append(f"only in child: {name}")
        for name, a, b in self.shape_changed:
            lines.append(f"shape changed: {name} {a} -> {b}")
        lines.append(self.summary())
        return "\n".join(lines)


def diff_checkpoints(parent: str | os.PathLike, child: str | os.PathLike) -> DiffReport:
    """Compare the weights of ``child`` with those of its ``parent``, streamed from safetensors.

    Reads one tensor pair at a time in chunks of :data:`CHUNK_ELEMENTS` values (no torch, no
    data), so the memory stays near one chunk whatever the model's size. The head is found in the
    child; its first rows (the child's ``headsurgeon.json`` ``parent_labels``, else the parent's
    label count) are compared with the parent's, the others are new.

    Args:
        parent: the model folder the child was grown and trained from.
        child: the grown and/or trained model folder.

    Returns:
        a :class:`DiffReport` (``render()`` for text, ``to_dict()`` for JSON).

    Raises:
        CheckpointError: a missing folder, missing or corrupt weights (pickle weights are not
            read), or two different architectures.
        HeadNotFoundError, AmbiguousHeadError: the child's head cannot be found.

    Example:
        >>> print(diff_checkpoints("parent/", "tuned/").summary())
    """
    pa, ch = _open(parent), _open(child)
    if pa.config.get("model_type") != ch.config.get("model_type"):
        raise CheckpointError(
            f"{parent} is a {pa.config.get('model_type')!r} model and {child} a "
            f"{ch.config.get('model_type')!r} one: diff compares a child with its own parent"
        )
    record = read_record(child)
    head = locate_in_checkpoint(ch, None, len(ch.labels))
    n_old = len((record or {}).get("parent_labels") or pa.labels)
    names_p, names_c = _names(pa), _names(ch)
    in_p, in_c = set(names_p), set(names_c)
    if not in_p & in_c:
        raise CheckpointError(
            f"{parent} and {child} have no tensor name in common: they are different "
            "architectures; diff compares a child with its own parent"
        )
    train = _last_train(record)
    report = DiffReport(str(parent), str(child), [], None, train and train.get("options"))
    report.only_parent = [n for n in names_p if n not in in_c]
    report.only_child = [n for n in names_c if n not in in_p]
    old, new_sq = _Sums(), 0.0
    heads = _Head(head.paths, n_old, train)
    trainable = _Trainable(train, names_c, head.paths)
    for name in (n for n in names_c if n in in_p):
        a, b = pa.info(name), ch.info(name)
        if heads.holds(name) and heads.fits(a, b):
            param = heads.compare(pa, a, ch, b)
            old.add(param.sums)
            new_sq += _square(ch, b, param.shape[0])
        elif a.shape != b.shape:
            report.shape_changed.append((name, list(a.shape), list(b.shape)))
            continue
        else:
            frozen = None if train is None else not trainable(name)
            param = ParamDiff(
                name, b.shape, _group(name, head.paths), _compare(pa, a, ch, b), frozen
            )
        report.params.append(param)
    rows = min(n_old, len(ch.labels))
    report.head = HeadDiff(list(head.paths), rows, len(ch.labels) - rows, old, math.sqrt(new_sq))
    logger.info("%s", report.summary())
    return report


def _open(folder: str | os.PathLike) -> Checkpoint:
    config = read_config(folder)
    pickles = require_weights(folder)
    if pickles:  # never unpickled: diff reads safetensors byte ranges only
        raise CheckpointError(
            f"{folder} holds pickle weights only ({pickles[0]}): diff reads safetensors; "
            "re-save the model with save_pretrained (safetensors by default)"
        )
    return open_checkpoint(Path(folder), config, allow_pickle=False)


class _Head:
    """The head's tensors: only their first ``n_old`` rows (the parent's labels) are compared."""

    def __init__(self, paths, n_old: int, train: dict[str, Any] | None) -> None:
        self.names = {p + s for p in paths for s in (".weight", ".bias")}
        self.n_old = n_old
        self.frozen = None if train is None else False  # the head always trains

    def holds(self, name: str) -> bool:
        return name in self.names

    def fits(self, a: TensorInfo, b: TensorInfo) -> bool:
        """The child's tensor is the parent's with rows appended (or as many)."""
        return a.shape[1:] == b.shape[1:] and b.shape[0] >= min(self.n_old, a.shape[0])

    def compare(self, pa: Checkpoint, a: TensorInfo, ch: Checkpoint, b: TensorInfo) -> ParamDiff:
        rows = min(self.n_old, a.shape[0])
        sums = _compare(pa, a, ch, b, rows)
        return ParamDiff(b.name, (rows, *b.shape[1:]), HEAD, sums, self.frozen)


def _names(ckpt: Checkpoint) -> list[str]:
    return [t for h in ckpt.headers.values() for t in h.tensors]


def _last_train(record: dict[str, Any] | None) -> dict[str, Any] | None:
    trains = [e for e in (record or {}).get("events", []) if e.get("op") == "train"]
    return trains[-1] if trains else None


class _Trainable:
    """Which parameters the last train event let move (from its options and recorded neck)."""

    def __init__(self, event: dict[str, Any] | None, names: list[str], head_paths) -> None:
        options = (event or {}).get("options", {})
        self.everything = options.get("freeze", "none") == "none"
        self.head_paths = tuple(head_paths)
        lists: dict[str, set[int]] = {}
        for name in names:
            m = _BLOCK.match(name)
            if m:
                lists.setdefault(m["list"], set()).add(int(m["i"]))
        # the encoder's blocks: the longest list (as train.freezing.encoder_blocks takes them)
        main = max(lists, key=lambda k: len(lists[k]), default=None)
        k = int(options.get("train_layers", 0) or 0)
        self.blocks = main, (max(lists[main]) + 1 - k if main is not None else 0)
        self.train_neck = bool(options.get("train_neck", False))
        self.neck = (event or {}).get("neck_parameters")

    def __call__(self, name: str) -> bool:
        if self.everything or _under_any(name, self.head_paths):
            return True
        m = _BLOCK.match(name)
        if m and m["list"] == self.blocks[0]:
            return int(m["i"]) >= self.blocks[1]
        if not self.train_neck:
            return False
        if self.neck is not None:
            return name in self.neck
        return _group(name, self.head_paths) == NECK


def _under_any(name: str, paths) -> bool:
    return any(name == p or name.startswith(p + ".") for p in paths)


def _group(name: str, head_paths) -> str:
    if _under_any(name, head_paths):
        return HEAD
    m = _BLOCK.match(name)
    if m:
        return f"block {m['i']}"
    if _EMBED.search(name):
        return EMBEDDINGS
    return NECK


def _group_order(group: str) -> tuple[int, int]:
    if group == EMBEDDINGS:
        return 0, 0
    if group.startswith("block "):
        return 1, int(group.split()[1])
    return (2, 0) if group == NECK else (3, 0)


def _chunks(ckpt: Checkpoint, info: TensorInfo, first: int, last: int):
    """Yield ``(raw bytes, float64 values)`` of elements ``first:last`` of a tensor, in chunks."""
    import numpy as np

    size = info.nbytes // max(1, math.prod(info.shape))
    path = ckpt.headers[ckpt.file_of(info.name)].path
    with open(path, "rb") as fh:
        for start in range(first, last, CHUNK_ELEMENTS):
            count = min(CHUNK_ELEMENTS, last - start)
            raw = os.pread(fh.fileno(), count * size, info.begin + start * size)
            if len(raw) != count * size:
                raise CheckpointError(f"{path} is truncated inside tensor {info.name!r}")
            yield raw, _decode(np, raw, info.dtype, path, info.name)


def _decode(np, raw: bytes, dtype: str, path, name: str):
    if dtype == "BF16":
        bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    if dtype not in _NUMPY:
        raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, which diff cannot read")
    return np.frombuffer(raw, _NUMPY[dtype]).astype(np.float64)


def _compare(pa: Checkpoint, a: TensorInfo, ch: Checkpoint, b: TensorInfo, rows=None) -> _Sums:
    """Sums over the first ``rows`` rows (all with ``None``) of the same tensor on both sides."""
    per_row = math.prod(b.shape[1:]) if b.shape else 1
    count = math.prod(b.shape) if rows is None else rows * per_row
    sums = _Sums()
    pairs = zip(_chunks(pa, a, 0, count), _chunks(ch, b, 0, count), strict=True)
    for (raw_a, x), (raw_b, y) in pairs:
        d = y - x
        part = _Sums(float(x @ x), float(d @ d), float(abs(d).max(initial=0.0)), raw_a == raw_b)
        sums.add(part)
    return sums


def _square(ckpt: Checkpoint, info: TensorInfo, rows: int) -> float:
    """``sum x²`` over the rows of ``info`` from ``rows`` on (the head's new rows)."""
    per_row = math.prod(info.shape[1:])
    total = 0.0
    for _, x in _chunks(ckpt, info, rows * per_row, math.prod(info.shape)):
        total += float(x @ x)
    return total


def _finite(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else x


def _fmt(x: float) -> str:
    return "0" if x == 0 else "inf" if math.isinf(x) else f"{x:.3g}"


def _row(*cells) -> str:
    widths = (16, 7, 12, 10, 0)
    return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def plot_diff(report: DiffReport, path: str | os.PathLike) -> Path:
    """Draw one bar per layer group, bottom to top, log-scale relative change, into ``path``.

    A group that did not change is drawn at a floor and labelled ``0``; the head's bar is its
    parent's rows, and its new rows are named beside it (they have no parent value).

    Raises:
        OptionsError: matplotlib is not installed.
    """
    from .plot import require_matplotlib

    plt = require_matplotlib()
    groups = report.groups()
    rels = [g["relative_change"] for g in groups]
    finite = [r for r in rels if r]
    floor = min(finite) / 10 if finite else 1e-8
    top = max(finite) * 10 if finite else 1.0
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.3 * len(groups)))
    for y, (g, rel) in enumerate(zip(groups, rels, strict=True)):
        value = top if rel is None else rel or floor
        color = "tab:red" if g["moved_but_frozen"] else "tab:blue" if rel != 0 else "0.75"
        label = g["group"]
        if g["group"] == HEAD:
            color, label = "tab:green" if rel != 0 else "0.75", "head (old rows)"
        ax.barh(y, value, color=color, left=floor / 10)
        text = "0" if rel == 0 else "inf" if rel is None else f"{rel:.2g}"
        if g["group"] == HEAD:
            text += (
                " (bit-identical)" if report.head.old.identical else ""
            ) + f"; {report.head.new_rows} new rows, norm {report.head.new_norm:.3g}"
        ax.text(value, y, " " + text, va="center", fontsize=7)
        groups[y]["label"] = label
    ax.set_yticks(range(len(groups)), [g["label"] for g in groups], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(floor / 10, top * 100)
    ax.set_xlabel("relative change ||Δθ|| / ||θ|| (log; 0 drawn at the floor)")
    ax.set_title(
        f"weight drift: {Path(report.parent).name} -> {Path(report.child).name}", fontsize=9
    )
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
