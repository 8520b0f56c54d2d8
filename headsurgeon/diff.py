"""What training did to the weights: a child checkpoint compared with its parent, tensor by tensor.

:func:`diff_checkpoints` streams both safetensors checkpoints (headers first, then one tensor pair
at a time, in chunks), so its memory stays near one chunk whatever the model's size; no torch,
no data. It reports the relative change ``||Δθ|| / ||θ||`` and ``max |Δ|`` of every parameter and
of every layer group (embeddings, each block, the neck, the head), and flags the parameters that
the last ``train`` event in the child's ``headsurgeon.json`` froze but that moved anyway.

The head's rows are paired by label name (:func:`pair_labels`), not by position: a label on both
sides compares its parent row with the child row of the same name (a row renumbered by
``remove-label`` compares equal), a label renamed by ``rename-label`` is followed through the
child's record, and the labels on one side only are listed as removed or new. Two models that
are not parent and child (another architecture or task, another hidden size, no label in
common) are refused with :class:`~headsurgeon.errors.ModelMismatchError`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError, HeadSurgeonError, LabelError, ModelMismatchError
from .models import read_config
from .record import RECORD_NAME, read_record
from .safetensors_io import TensorInfo
from .shards import Checkpoint, locate_in_checkpoint, open_checkpoint
from .tasks.token import schemes
from .weights import require_weights

logger = logging.getLogger(__name__)

#: elements decoded at a time: bounds the memory of a tensor pair whatever its size
CHUNK_ELEMENTS = 1 << 21
#: the index of an encoder block in a parameter name (``layer.3.``, ``layers.3.``, ``h.3.``)
_BLOCK = re.compile(r"^(?P<list>(?:.*\.)?(?:layer|layers|h|block|blocks))\.(?P<i>\d+)\.")
#: a name component that makes a parameter part of the embeddings
_EMBED = re.compile(r"(^|\.)(\w*embed\w*|wte|wpe)(\.|$)")
EMBEDDINGS, NECK, HEAD = "embeddings", "neck", "head"
#: label names the text lists at most per line (``--json`` lists them all)
TEXT_NAMES = 20
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
class LabelPairs:
    """How the head rows of a parent and a child correspond: by label name (see :func:`pair_labels`).

    Attributes:
        parent: the parent's labels by id.
        child: the child's labels by id.
        pairs: ``(parent id, child id)`` of every label on both sides, in child id order.
        renamed: ``(parent name, child name)`` of the labels paired through a recorded rename.
    """

    parent: list[str]
    child: list[str]
    pairs: list[tuple[int, int]]
    renamed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def removed(self) -> list[str]:
        """The parent's labels the child does not have, by parent id."""
        paired = {i for i, _ in self.pairs}
        return [n for i, n in enumerate(self.parent) if i not in paired]

    @property
    def new_ids(self) -> list[int]:
        """The child ids of the labels the parent does not have."""
        paired = {j for _, j in self.pairs}
        return [j for j in range(len(self.child)) if j not in paired]

    @property
    def renumbered(self) -> list[tuple[str, int, int]]:
        """``(child name, parent id, child id)`` of the paired labels whose id changed."""
        return [(self.child[j], i, j) for i, j in self.pairs if i != j]


def pair_labels(
    parent: list[str], child: list[str], record: dict[str, Any] | None = None
) -> LabelPairs:
    """Pair the parent's and the child's head rows by label name.

    A child label the parent lacks is first followed back through the ``rename-label`` events
    of the child's ``record`` (newest first; an entity-type rename renames its tags): when that
    leads to a parent label, the two are paired (even if the child later got a new label of the
    old name). Every other label pairs with the parent label of the same name; what is left is
    removed (parent only) or new (child only).

    Args:
        parent: the parent's labels by id.
        child: the child's labels by id.
        record: the child's ``headsurgeon.json`` record, if any.

    Returns:
        a :class:`LabelPairs`.

    Example:
        >>> pair_labels(["a", "b", "c"], ["a", "c", "d"]).pairs
        [(0, 0), (2, 1)]
    """
    ids = {n: i for i, n in enumerate(parent)}
    renames = [e for e in (record or {}).get("events", []) if e.get("op") == "rename-label"]
    by_child: dict[int, int] = {}  # child id -> parent id
    claimed: set[int] = set()
    renamed = []
    for j, name in enumerate(child):
        old = None if name in ids else _before_renames(name, renames, ids)
        if old is not None and ids[old] not in claimed:
            by_child[j] = ids[old]
            claimed.add(ids[old])
            renamed.append((old, name))
    for j, name in enumerate(child):
        if j not in by_child and name in ids and ids[name] not in claimed:
            by_child[j] = ids[name]
            claimed.add(ids[name])
    pairs = [(by_child[j], j) for j in sorted(by_child)]
    return LabelPairs(list(parent), list(child), pairs, renamed)


def _before_renames(name: str, renames: list[dict[str, Any]], parent: dict[str, int]):
    """The parent label ``name`` was renamed from (newest rename first), or ``None``."""
    for event in reversed(renames):
        name = _undo_rename(name, event)
        if name in parent:
            return name
    return None


def _undo_rename(name: str, event: dict[str, Any]) -> str:
    """``name`` before the rename ``event`` (unchanged when the event did not rename it)."""
    old, new, after = event.get("old"), event.get("new"), event.get("labels_after")
    if not isinstance(old, str) or not isinstance(new, str):
        return name
    if name == new:
        return old
    after = after if isinstance(after, list) and all(isinstance(n, str) for n in after) else []
    scheme = None if new in after else schemes.detect(after)
    if scheme is None or name not in after:
        return name
    parts = scheme.split(name)  # an entity-type rename: B-PERSON was B-PER
    return f"{parts[0]}{scheme.separator}{old}" if parts and parts[1] == new else name


@dataclass
class HeadDiff:
    """The head's rows paired by label: the labels on both sides (old), removed ones, new ones."""

    paths: list[str]
    old_rows: int  # labels on both sides, each compared with its own parent row
    new_rows: int
    old: _Sums
    new_norm: float  # ||new rows (weights and biases)||, which have no parent value
    new_labels: list[str] = field(default_factory=list)
    removed_labels: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (parent name, child name)
    renumbered: list[tuple[str, int, int]] = field(default_factory=list)  # (name, parent, child id)
    changed_labels: list[str] = field(default_factory=list)  # old labels whose rows moved

    def to_dict(self) -> dict[str, Any]:
        return {
            "paths": self.paths,
            "paired_by": "label",
            "old_rows": self.old_rows,
            "new_rows": self.new_rows,
            "removed_rows": len(self.removed_labels),
            "old_rows_bit_identical": self.old.identical,
            "old_rows_relative_change": _finite(self.old.rel),
            "old_rows_max_abs_change": self.old.max_abs,
            "old_rows_changed_labels": self.changed_labels,
            "new_rows_norm": self.new_norm,
            "new_labels": self.new_labels,
            "removed_labels": self.removed_labels,
            "renamed": [{"parent": a, "child": b} for a, b in self.renamed],
            "renumbered": [
                {"label": n, "parent_id": i, "child_id": j} for n, i, j in self.renumbered
            ],
        }

    def summary(self) -> str:
        """The head's part of the one-line summary: old rows, renames, removed and new rows."""
        state = (
            "bit-identical"
            if self.old.identical
            else f"changed (relative {_fmt(self.old.rel)}, max |Δ| {self.old.max_abs:.3g}; "
            f"{len(self.changed_labels)} labels moved)"
        )
        text = f"{self.old_rows} old rows {state}" + _renumbered(self.renumbered)
        if self.renamed:
            text += (
                f", {len(self.renamed)} renamed ({_few([f'{a} -> {b}' for a, b in self.renamed])})"
            )
        if self.removed_labels:
            text += f", {len(self.removed_labels)} removed ({_few(self.removed_labels)})"
        names = f"{_few(self.new_labels)}; " if self.new_labels else ""
        return text + f", {self.new_rows} new rows ({names}norm {self.new_norm:.3g})"

    def render(self, parent: str, child: str) -> list[str]:
        """Text lines: the head, then its renamed, removed, new and changed labels by name."""
        state = (
            "bit-identical" if self.old.identical else f"changed (relative {_fmt(self.old.rel)})"
        )
        lines = [
            f"head {', '.join(self.paths)} (rows paired by label): {self.old_rows} old rows "
            f"{state}{_renumbered(self.renumbered)}; {self.new_rows} new rows, "
            f"norm {self.new_norm:.4g}"
        ]
        renamed = [f"{a} -> {b}" for a, b in self.renamed]
        for what, names in (
            (f"renamed (recorded in {Path(child) / RECORD_NAME})", renamed),
            (f"removed (only in {parent})", self.removed_labels),
            (f"new (only in {child})", self.new_labels),
            (f"old rows changed ({len(self.changed_labels)} of {self.old_rows})",
             self.changed_labels),
        ):  # fmt: skip
            if names:
                lines.append(f"  {what}: {_few(names, TEXT_NAMES)}")
        return lines


def _renumbered(renumbered: list) -> str:
    return f" ({len(renumbered)} renumbered)" if renumbered else ""


def _few(names: list[str], limit: int = 5) -> str:
    """``a, b, c and 4 more``: at most ``limit`` names."""
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")


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
        flags = self.moved_frozen
        return (
            f"{moved} of {len(self.params)} parameters changed; head: {self.head.summary()}; "
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
        lines.extend(self.head.render(self.parent, self.child))
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
    child and its rows are paired with the parent's by label name (:func:`pair_labels`, through
    the renames the child's ``headsurgeon.json`` records): each label on both sides is compared
    with its own parent row wherever its id now is; labels on one side only are listed.

    Args:
        parent: the model folder the child was grown and trained from.
        child: the grown and/or trained model folder.

    Returns:
        a :class:`DiffReport` (``render()`` for text, ``to_dict()`` for JSON).

    Raises:
        ModelMismatchError: the two models are not parent and child: another model type or
            architecture class (task), another head or hidden size, no tensor or no label in
            common.
        CheckpointError: a missing folder, missing or corrupt weights (pickle weights are not
            read), a head whose rows disagree with its config.
        LabelError: a config with no labels, bad ids, or a label named twice (the folder named).
        HeadNotFoundError, AmbiguousHeadError: the child's head cannot be found.

    Example:
        >>> print(diff_checkpoints("parent/", "tuned/").summary())
    """
    pa, ch = _open(parent), _open(child)
    _check_related(pa, ch)
    with _naming(child):
        record = read_record(child)
        head = locate_in_checkpoint(ch, None, len(ch.labels))
    _check_head(pa, ch, head.paths)
    labels = pair_labels(pa.labels, ch.labels, record)
    if not labels.pairs:
        raise ModelMismatchError(
            f"{parent} and {child} have no label in common (parent: {_few(pa.labels)}; child: "
            f"{_few(ch.labels)}): they are different classifiers; diff compares a child with "
            "its own parent"
        )
    train = _last_train(record)
    report = DiffReport(str(parent), str(child), [], None, train and train.get("options"))
    heads = _Head(head.paths, labels, train)
    _compare_tensors(pa, ch, report, heads, _Trainable(train, _names(ch), head.paths))
    report.head = heads.result()
    logger.info("%s", report.summary())
    return report


def _compare_tensors(pa, ch, report: DiffReport, heads: _Head, trainable: _Trainable) -> None:
    """Compare every tensor of both sides into ``report`` (the head's through ``heads``)."""
    names_p, names_c = _names(pa), _names(ch)
    in_p, in_c = set(names_p), set(names_c)
    if not in_p & in_c:
        raise ModelMismatchError(
            f"{pa.folder} and {ch.folder} have no tensor name in common: they are different "
            "architectures; diff compares a child with its own parent"
        )
    report.only_parent = [n for n in names_p if n not in in_c]
    report.only_child = [n for n in names_c if n not in in_p]
    for name in (n for n in names_c if n in in_p):
        a, b = pa.info(name), ch.info(name)
        if heads.holds(name):
            report.params.append(heads.compare(pa, a, ch, b))
        elif a.shape != b.shape:
            report.shape_changed.append((name, list(a.shape), list(b.shape)))
        else:
            frozen = None if report.train_event is None else not trainable(name)
            group = _group(name, heads.paths)
            report.params.append(ParamDiff(name, b.shape, group, _compare(pa, a, ch, b), frozen))


@contextmanager
def _naming(folder: str | os.PathLike):
    """Make every headsurgeon error raised inside name ``folder`` (once)."""
    try:
        yield
    except HeadSurgeonError as e:
        message = str(e)
        if str(folder) in message:
            raise
        if isinstance(e, LabelError):  # the labels come from config.json: name the file
            config = str(Path(folder) / "config.json")
            start = next(
                (s for s in ("the model config", "the config") if message.startswith(s)), ""
            )
            message = config + message[len(start) :] if start else f"{config}: {message}"
        else:
            message = f"{folder}: {message}"
        raise type(e)(message) from e


def _open(folder: str | os.PathLike) -> Checkpoint:
    with _naming(folder):
        config = read_config(folder)
        pickles = require_weights(folder)
        if pickles:  # never unpickled: diff reads safetensors byte ranges only
            raise CheckpointError(
                f"{folder} holds pickle weights only ({pickles[0]}): diff reads safetensors; "
                "re-save the model with save_pretrained (safetensors by default)"
            )
        ckpt = open_checkpoint(Path(folder), config, allow_pickle=False)
    twice = next((n for i, n in enumerate(ckpt.labels) if n in ckpt.labels[:i]), None)
    if twice is not None:
        ids = [i for i, n in enumerate(ckpt.labels) if n == twice]
        raise LabelError(
            f"{Path(folder) / 'config.json'} names label {twice!r} more than once (ids "
            f"{', '.join(map(str, ids))}): diff pairs head rows by label name; give each id "
            "its own name in id2label"
        )
    return ckpt


def _check_related(pa: Checkpoint, ch: Checkpoint) -> None:
    """Refuse two models of another model type or architecture class (another task)."""
    kind_p, kind_c = pa.config.get("model_type"), ch.config.get("model_type")
    if kind_p != kind_c:
        raise ModelMismatchError(
            f"{pa.folder} is a {kind_p!r} model and {ch.folder} a {kind_c!r} one: diff "
            "compares a child with its own parent (same model type)"
        )
    arch_p, arch_c = pa.config.get("architectures") or [], ch.config.get("architectures") or []
    if arch_p and arch_c and arch_p != arch_c:
        raise ModelMismatchError(
            f"{pa.folder} is a {', '.join(arch_p)} and {ch.folder} a {', '.join(arch_c)}: "
            "another architecture or task; diff compares a child with its own parent (the "
            "same architecture class)"
        )


def _check_head(pa: Checkpoint, ch: Checkpoint, paths) -> None:
    """Refuse a parent whose head (at the child's head paths) is not the child's, grown or not."""
    for name in (p + s for p in paths for s in (".weight", ".bias")):
        a, b = pa.info(name), ch.info(name)
        if a is None and b is None:
            continue
        if a is None or b is None:
            lacks, has = (pa, ch) if a is None else (ch, pa)
            raise ModelMismatchError(
                f"{has.folder} has the head tensor {name} and {lacks.folder} has not: another "
                "head architecture; diff compares a child with its own parent"
            )
        if not a.shape or a.shape[0] != len(pa.labels):
            raise CheckpointError(
                f"head {name} of {pa.folder} has shape {list(a.shape)} but "
                f"{pa.folder / 'config.json'} has {len(pa.labels)} labels: the config and the "
                "weights disagree; fix id2label or re-save the model"
            )
        if a.shape[1:] != b.shape[1:]:
            raise ModelMismatchError(
                f"the head {name} is {list(a.shape)} in {pa.folder} and {list(b.shape)} in "
                f"{ch.folder}: another hidden size (expected the same input width, only rows "
                "added or removed); diff compares a child with its own parent"
            )


class _Head:
    """The head's tensors, compared row by row through the label pairs."""

    def __init__(self, paths, labels: LabelPairs, train: dict[str, Any] | None) -> None:
        self.paths = tuple(paths)
        self.names = {p + s for p in paths for s in (".weight", ".bias")}
        self.labels = labels
        self.frozen = None if train is None else False  # the head always trains
        self.per_label = [_Sums() for _ in labels.pairs]
        self.old, self.new_sq = _Sums(), 0.0

    def holds(self, name: str) -> bool:
        return name in self.names

    def compare(self, pa: Checkpoint, a: TensorInfo, ch: Checkpoint, b: TensorInfo) -> ParamDiff:
        """The paired rows of one head tensor; its new rows' ``sum x²`` is kept apart."""
        sums = _Sums()
        for k, row in enumerate(_paired_rows(pa, a, ch, b, self.labels.pairs)):
            self.per_label[k].add(row)
            sums.add(row)
        self.old.add(sums)
        self.new_sq += _square_rows(ch, b, self.labels.new_ids)
        return ParamDiff(b.name, (len(self.labels.pairs), *b.shape[1:]), HEAD, sums, self.frozen)

    def result(self) -> HeadDiff:
        labels = self.labels
        changed = [
            labels.child[j]
            for (_, j), s in zip(labels.pairs, self.per_label, strict=True)
            if not s.identical
        ]
        return HeadDiff(
            list(self.paths), len(labels.pairs), len(labels.new_ids), self.old,
            math.sqrt(self.new_sq), [labels.child[j] for j in labels.new_ids], labels.removed,
            labels.renamed, labels.renumbered, changed,
        )  # fmt: skip


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


def _compare(pa: Checkpoint, a: TensorInfo, ch: Checkpoint, b: TensorInfo) -> _Sums:
    """Sums over the whole of the same tensor (same shape) on both sides."""
    count = math.prod(b.shape)
    sums = _Sums()
    pairs = zip(_chunks(pa, a, 0, count), _chunks(ch, b, 0, count), strict=True)
    for (raw_a, x), (raw_b, y) in pairs:
        d = y - x
        part = _Sums(float(x @ x), float(d @ d), float(abs(d).max(initial=0.0)), raw_a == raw_b)
        sums.add(part)
    return sums


def _runs(pairs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """``(first parent row, first child row, count)`` of the runs of consecutive pairs."""
    runs: list[list[int]] = []
    for i, j in pairs:
        if runs and runs[-1][0] + runs[-1][2] == i and runs[-1][1] + runs[-1][2] == j:
            runs[-1][2] += 1
        else:
            runs.append([i, j, 1])
    return [(i, j, k) for i, j, k in runs]


def _row_blocks(ckpt: Checkpoint, info: TensorInfo, first: int, count: int):
    """Yield ``(raw bytes, float64 values (rows, per row))`` of rows ``first:first+count``,
    as many whole rows at a time as fit in :data:`CHUNK_ELEMENTS` (at least one)."""
    import numpy as np

    per_row = math.prod(info.shape[1:])
    step = max(1, CHUNK_ELEMENTS // max(1, per_row))
    for start in range(first, first + count, step):
        rows = min(step, first + count - start)
        parts = list(_chunks(ckpt, info, start * per_row, (start + rows) * per_row))
        raw = b"".join(p[0] for p in parts)
        values = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        yield raw, values.reshape(rows, per_row)


def _paired_rows(pa: Checkpoint, a: TensorInfo, ch: Checkpoint, b: TensorInfo, pairs):
    """Yield the :class:`_Sums` of each ``(parent row, child row)`` pair, in ``pairs`` order."""
    for i, j, count in _runs(pairs):
        blocks = zip(_row_blocks(pa, a, i, count), _row_blocks(ch, b, j, count), strict=True)
        for (raw_a, x), (raw_b, y) in blocks:
            d = y - x
            base, delta = (x * x).sum(axis=1), (d * d).sum(axis=1)
            top = abs(d).max(axis=1, initial=0.0)
            size_a, size_b = len(raw_a) // len(x), len(raw_b) // len(y)
            for r in range(len(x)):
                same = raw_a[r * size_a : (r + 1) * size_a] == raw_b[r * size_b : (r + 1) * size_b]
                yield _Sums(float(base[r]), float(delta[r]), float(top[r]), same)


def _square_rows(ckpt: Checkpoint, info: TensorInfo, rows: list[int]) -> float:
    """``sum x²`` over the given rows of ``info`` (the head's new rows)."""
    total = 0.0
    for first, _, count in _runs([(r, r) for r in rows]):
        for _, x in _row_blocks(ckpt, info, first, count):
            total += float((x * x).sum())
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
    old rows (paired by label), and its removed and new rows are counted beside it.

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
            text += _head_note(report.head)
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


def _head_note(head: HeadDiff) -> str:
    """What the plot writes beside the head's bar: identical or not, removed and new rows."""
    removed = f"; {len(head.removed_labels)} removed" if head.removed_labels else ""
    same = " (bit-identical)" if head.old.identical else ""
    return f"{same}{removed}; {head.new_rows} new rows, norm {head.new_norm:.3g}"
