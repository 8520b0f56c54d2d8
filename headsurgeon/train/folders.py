"""``train``: from a model folder and data files to a gated, atomically written model folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import labels as _labels
from .. import record as _record
from ..api_data import Data, as_examples, is_path, is_table
from ..atomic import check_output
from ..data import Columns
from ..gate import Tolerance, check_max_drop
from ..legacy import bundles
from . import processes
from .inputs import data_ref
from .options import TrainOptions
from .outcome import (
    gate_advice,
    quiet_bars,
    recorded_options,
    refuse_failed,
    telemetry_writers,
    train_event,
)
from .run import require_examples, train_model

if TYPE_CHECKING:
    from ..tasks.base import GateReport

__all__ = ["DataFiles", "TrainJob", "TrainResult", "gate_advice", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` did: the output folder, the check report, the options and the stats
    of :class:`~.outcome.TrainOutcome` (its ``training`` summary names the telemetry files
    written beside the model in ``files``; ``telemetry`` holds their series). A failed check
    raises :class:`~headsurgeon.GateFailedError` (without ``force``): no result then. Under
    several processes only the main one checks and writes: the others get
    ``main_process=False``, no report, ``output`` ``None``."""

    output: Path | None
    report: GateReport | None
    options: TrainOptions
    stats: dict[str, Any]
    added: list[str] = field(default_factory=list)
    main_process: bool = True
    telemetry: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-able data (what ``train --json`` prints)."""
        return {
            "output": None if self.output is None else str(self.output),
            "options": recorded_options(self.options, self.stats),
            "added": self.added,
            **self.stats,
            "check": None if self.report is None else self.report.to_dict(),
        }


def train(
    model_dir: str | os.PathLike,
    data: Data,
    output: str | os.PathLike,
    *,
    replay: Data | None = None,
    holdout: Data | None = None,
    options: TrainOptions | None = None,
    add: bool = False,
    force: bool = False,
    tolerance: Tolerance | None = None,
    columns: Columns | None = None,
    head_path: str | Sequence[str] | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    base_model: str | None = None,
    problem_type: str | None = None,
    **legacy: Any,
) -> TrainResult:
    """Train the model saved in ``model_dir`` on ``data`` and write it to ``output``, gated.

    Old labels are the record's ``parent_labels`` (``headsurgeon.json``), else every label of
    the model. With ``holdout``, the parent (restricted to the old labels) and the child are
    compared on it; a drop beyond the tolerance raises :class:`GateFailedError` and writes
    nothing, unless ``force`` (the failure is then recorded, with a warning). Under
    ``torchrun``/``accelerate launch`` only the main process checks, records and writes.

    Args:
        model_dir: a folder saved with ``save_pretrained`` (with its tokenizer, or the image
            processor or feature extractor of an image or audio classifier).
        data: the new labels' examples, as the model's task reads them: a ``.csv``/``.tsv``/
            ``.jsonl`` file of texts; CoNLL or JSONL sentences for a token classifier; a folder
            of images or audio clips by label (``DIR/<label>/<file>``) or a file of their paths
            for an image or audio classifier; or examples held in memory, in any form
            :func:`~.run.train_model` takes (tuples, dicts, a DataFrame, a ``datasets.Dataset``).
        output: a new (or empty) folder; written atomically, tokenizer (processor) files
            carried over. Nothing else is written; ``model_dir`` is only read.
        replay: old labels' examples to replay; holdout: examples to check on (as ``data``).
        options: :class:`TrainOptions`.
        add: first add the data's labels the model does not have (imprinted).
        force: write even when the check fails (the failure is recorded).
        tolerance, columns: the check's :class:`~headsurgeon.gate.Tolerance` (default
            ``max_drop``: the task's) and the files' :class:`~headsurgeon.data.Columns`.
        head_path: explicit head path(s).
        trust_remote_code, allow_pickle: run a config's custom code (``auto_map``); accept
            ``pytorch_model*.bin`` weights (unpickled with ``weights_only=True``).
        base_model: the parent's Hub id, kept in ``headsurgeon.json`` for the model card.
        problem_type: ``"single"`` or ``"multi"``: what a text classifier saved without
            ``problem_type`` is (``None``: single-label); the output's config records it.
        **legacy: the old ``max_drop=``, ``text_column=``...: deprecated, set on the bundles.

    Returns:
        a :class:`TrainResult`.

    Raises:
        DataError: unreadable files, labels the model does not have (without ``add``), or
            ``data`` with no example of any new label.
        CheckpointError: ``output`` exists and is not empty, is ``model_dir`` or inside it;
            pickle weights without ``allow_pickle``.
        UnsupportedModelError: custom code without ``trust_remote_code``.
        OptionsError: ``base_model`` is not a Hub repository id; a keyword ``train`` does not
            take.
        GateFailedError: the old-label check failed (``.report`` holds the report).

    Example:
        >>> result = train("grown/", "new.csv", "tuned/", replay="replay.csv", holdout="holdout.csv")
    """
    columns, tolerance = bundles(train, legacy, columns, tolerance)
    with processes.together():  # the processes of a launcher leave its group together
        return TrainJob(
            model_dir, data, output, replay=replay, holdout=holdout, options=options, add=add,
            force=force, tolerance=tolerance, columns=columns, head_path=head_path,
            trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
            base_model=base_model, problem_type=problem_type,
        ).run()  # fmt: skip


@dataclass
class _Read:
    """What one ``train`` read before loading the model: the data for its task (the model's
    :class:`~headsurgeon.tasks.base.Task`), the record and the old labels."""

    task: Any
    examples: list
    replayed: list
    held: Any
    added: list[str]
    record: dict[str, Any]
    old: list[str]


@dataclass
class TrainJob:
    """One :func:`train`, as an object: its fields are :func:`train`'s arguments; :meth:`run`
    reads the files (:meth:`read`), loads and grows the model (:meth:`load`), trains it with
    :func:`~.run.train_model`, records the event (:meth:`event`), applies the gate
    (:meth:`gate`) and writes the output atomically."""

    model_dir: str | os.PathLike
    data: Data
    output: str | os.PathLike
    replay: Data | None = None
    holdout: Data | None = None
    options: TrainOptions | None = None
    add: bool = False
    force: bool = False
    tolerance: Tolerance = field(default_factory=Tolerance)
    columns: Columns = field(default_factory=Columns)
    head_path: str | Sequence[str] | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    base_model: str | None = None
    problem_type: str | None = None
    _problem_type: str | None = field(default=None, init=False, repr=False)

    def run(self) -> TrainResult:
        """Train, gate and write (see :func:`train`)."""
        from ..checkpoint import write_model

        src, output = Path(self.model_dir), Path(self.output)
        check_output(src, output, in_place=False)  # the check every writing command shares
        check_max_drop(self.tolerance.max_drop, self.tolerance.max_label_drop)
        read = self.read(src)
        progress = (self.options or TrainOptions()).progress
        with quiet_bars(not progress):
            model, tokenizer, options = self.load(src, read)
        outcome = train_model(
            model,
            tokenizer,
            read.examples,
            replay=read.replayed,
            holdout=read.held,
            options=options,
            old_labels=read.old,
            trained_labels=_record.trained_labels(read.record),
            tolerance=self.tolerance,
            head_path=self.head_path,
        )
        result = TrainResult(None, outcome.report, options, outcome.stats, read.added)
        result.telemetry = outcome.telemetry
        telemetry_files = telemetry_writers(outcome.telemetry)
        outcome.stats["training"]["files"] = list(telemetry_files)
        if not processes.is_main():  # the main process checks, records and writes
            result.main_process = False
            return result
        self.event(read, model, options, outcome)
        self.gate(options, outcome)
        model.to("cpu")
        with quiet_bars(not options.progress):
            result.output = write_model(model, read.record, src, output, extra=telemetry_files)
        return result

    def read(self, src: Path) -> _Read:
        """Read the data files for the model's task and its record; warn when nothing is new.

        Raises:
            DataError: as :func:`train`.
        """
        from ..models import read_config
        from ..tasks import override_problem_type, task_for_config

        config = read_config(src)
        self._problem_type = override_problem_type(config, self.problem_type, str(src))
        labels = _labels.labels_of(config)
        files = DataFiles(self.data, self.replay, self.holdout)
        task = task_for_config(config, str(src))
        if files.in_memory():
            examples, replayed, held, added = files.read_memory(
                task, labels, self.add, self.columns
            )
        else:
            examples, replayed, held, added = files.read(task, labels, self.add, self.columns)
        record = _record.record_for(src, labels)
        _record.set_base_model(record, self.base_model)
        old = _record.old_labels(record, labels)
        new = [n for n in labels + added if n not in old]
        if not new:
            logger.warning(
                "nothing is new: every label of %s is taken as old (protected, not learned) "
                "since no %s names its parent's labels; grow models with `headsurgeon "
                "add-label` (or `train --add` with data of labels the model lacks) so train "
                "knows the new ones",
                src,
                _record.RECORD_NAME,
            )
        require_examples(examples, new, str(self.data), task)
        return _Read(task, examples, replayed, held, added, record, old)

    def load(self, src: Path, read: _Read):
        """The model (grown by ``--add``'s labels, its top blocks made trainable as the
        resolved options say), its preprocessor (tokenizer, image processor...: the task's,
        loaded first so that a folder without one is refused before the model loads) and the
        options resolved for it."""
        from ..locate import locate_head
        from ..models import load_model
        from ..surgery import add_labels
        from .blocks import model_blocks, top_blocks

        tokenizer = read.task.preprocessor(src, self.trust_remote_code)
        model = load_model(
            src, trust_remote_code=self.trust_remote_code, allow_pickle=self.allow_pickle
        )
        if self._problem_type is not None:  # --problem-type: trained and saved as such
            model.config.problem_type = self._problem_type
        if read.added:
            add_labels(model, read.added, init="mean", head_path=self.head_path)
        labels = _labels.labels_of(model.config)
        new = [n for n in labels if n not in set(read.old)]
        blocks = model_blocks(model, self.head_path)
        options = (self.options or TrainOptions()).for_task(
            read.task, blocks, len(read.old), len(new)
        )
        if options.freeze == "backbone" and options.train_layers:  # before any pass over data
            top_blocks(model, locate_head(model, self.head_path).paths, options.train_layers)
        if options.reinit_top:
            paths = locate_head(model, self.head_path).paths
            top_blocks(model, paths, options.reinit_top, "--reinit-top")
        return model, tokenizer, options

    def event(self, read: _Read, model, options: TrainOptions, outcome) -> None:
        """Add the ``add-label`` (``--add``) and ``train`` events to the record."""
        record, old = read.record, set(read.old)
        if read.added:
            _record.add_event(
                record, "add-label", labels=read.added, init="imprint", by="train --add"
            )
        refs = (  # names and hashes, no local paths
            data_ref(self.data, read.examples),
            data_ref(self.replay, read.replayed),
            data_ref(self.holdout, read.held),
        )
        trained = [n for n in _labels.labels_of(model.config) if n not in old]
        event = train_event(outcome, options, trained, refs)
        if outcome.report is None:
            logger.warning(
                "no --holdout: the %s did not run; %s is not gated",
                read.task.check_name,
                self.output,
            )
        _record.add_event(record, "train", **event)

    def gate(self, options: TrainOptions, outcome) -> None:
        """Refuse a failed check (:class:`~headsurgeon.GateFailedError`, with advice), or warn
        under ``force`` (:func:`~.outcome.refuse_failed`)."""
        refuse_failed(outcome, self.output, self.force)


@dataclass
class DataFiles:
    """The data files of one ``train`` (or ``sweep``): read by the model's task, checked
    against its labels."""

    data: Any
    replay: Any
    holdout: Any

    def given(self) -> list[tuple[str, Any]]:
        """``(option, path)`` of each file given."""
        files = (("--data", self.data), ("--replay", self.replay), ("--holdout", self.holdout))
        return [(option, path) for option, path in files if path]

    def read(self, task, labels, add: bool, columns: Columns | None = None):
        """``(data, replay, holdout or None, labels to add)`` as ``task`` reads them
        (:meth:`~headsurgeon.tasks.base.Task.read_data`; ``columns``: the files'
        :class:`~headsurgeon.data.Columns`, or a text classifier's text and label columns);
        with ``add`` the data's labels the model lacks are to be added."""
        return task.read_data(self, labels, add, Columns.of(columns))

    def in_memory(self) -> bool:
        """Whether some of the data is held in memory, or is a table (a ``.parquet`` file, a
        ``save_to_disk`` folder: :func:`~headsurgeon.api_data.is_table`), rather than a file
        the task reads."""
        given = (self.data, self.replay, self.holdout)
        return any(x is not None and (not is_path(x) or is_table(x)) for x in given)

    def read_memory(self, task, labels, add: bool, columns: Columns | None = None):
        """As :meth:`read`, for data some of which is held in memory (any form of
        :func:`headsurgeon.api_data.as_examples`): with ``add``, the labels of ``data`` the
        model lacks are to be added.

        Raises:
            DataError: a bad row or file, a label the model does not have (without ``add``).
        """
        columns = Columns.of(columns)
        as_read = is_path(self.data) and not is_table(self.data)  # a file the task reads
        raw = as_examples(task, self.data, labels if as_read else None, columns)
        names = dict.fromkeys(n for e in raw for n in task.labels_in(e))
        added = [n for n in names if n not in labels] if add else []
        known = labels + added
        read = {role: None if obj is None else as_examples(task, obj, known, columns, role)
                for role, obj in (("replay", self.replay), ("holdout", self.holdout))}  # fmt: skip
        examples = task.examples(raw, columns, known, "data")
        task.check_data(examples, read["replay"] or [], read["holdout"], known)
        return examples, read["replay"] or [], read["holdout"], added
