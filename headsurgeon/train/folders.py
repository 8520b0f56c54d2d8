"""``train``: from a model folder and data files to a gated, atomically written model folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import labels as _labels
from .. import record as _record
from ..atomic import check_output
from ..data import AUDIO_COLUMN, IMAGE_COLUMN, LABEL_COLUMN, LABEL_SEP, TEXT_COLUMN, Columns
from ..errors import GateFailedError
from ..gate import check_max_drop
from . import processes
from .options import TrainOptions
from .run import require_examples, train_model

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` did: the output folder (``None`` when the gate refused), the check
    report, the options and the stats of :class:`TrainOutcome` (its ``training`` summary names
    the telemetry files written beside the model in ``files``; ``telemetry`` holds their
    series). Under several processes only the main one checks and writes: the others get
    ``main_process=False``, no report, no output."""

    output: Path | None
    report: Any
    options: TrainOptions
    stats: dict[str, Any]
    added: list[str] = field(default_factory=list)
    main_process: bool = True
    telemetry: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": None if self.output is None else str(self.output),
            "options": self.options.to_dict(),
            "added": self.added,
            **self.stats,
            "check": None if self.report is None else self.report.to_dict(),
        }


def train(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    replay: str | os.PathLike | None = None,
    holdout: str | os.PathLike | None = None,
    options: TrainOptions | None = None,
    add: bool = False,
    force: bool = False,
    max_drop: float | None = None,
    max_label_drop: float | None = None,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    head_path: str | Sequence[str] | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    base_model: str | None = None,
    image_column: str = IMAGE_COLUMN,
    audio_column: str = AUDIO_COLUMN,
    label_sep: str = LABEL_SEP,
    problem_type: str | None = None,
) -> TrainResult:
    """Train the model saved in ``model_dir`` on ``data`` and write it to ``output``, gated.

    Old labels are the record's ``parent_labels`` (``headsurgeon.json``) when the model has
    one, else every label of the model; the others are new. With ``holdout``, the parent (the
    model in ``model_dir``, restricted to the old labels) and the trained child are compared
    on it; a drop beyond ``max_drop`` raises :class:`GateFailedError` and writes nothing,
    unless ``force``, which writes the model and records the failed check (with a warning).
    Under ``torchrun``/``accelerate launch`` only the main process checks, records and writes;
    the others return a result with ``main_process=False``.

    Args:
        model_dir: a folder saved with ``save_pretrained`` (with its tokenizer, or the image
            processor or feature extractor of an image or audio classifier).
        data: the new labels' examples, as the model's task reads them: a ``.csv``/``.tsv``/
            ``.jsonl`` file of texts; CoNLL or JSONL sentences for a token classifier; a folder
            of images or audio clips by label (``DIR/<label>/<file>``) or a file of their paths
            for an image or audio classifier.
        output: a new (or empty) folder; written atomically, tokenizer (processor) files
            carried over.
        replay: old labels' examples to replay; holdout: examples to check on (as ``data``).
        options: :class:`TrainOptions`.
        add: first add the data's labels the model does not have (imprinted from their examples).
        force: write even when the check fails (the failure is recorded).
        max_drop: check tolerance in points (default: the task's, see :func:`train_model`).
        max_label_drop: per-label check tolerance in points (default: not checked).
        text_column, label_column: column names of the data files.
        image_column, audio_column: the column of image (audio) paths in an image (audio)
            classifier's data files.
        head_path: explicit head path(s).
        trust_remote_code: let a model whose config names custom code (``auto_map``) run it.
        allow_pickle: accept ``pytorch_model*.bin`` weights (unpickled with ``weights_only=True``).
        base_model: the parent's Hub id, kept in ``headsurgeon.json`` for the model card
            (when the parent was a local folder).
        label_sep: what separates the labels of a multi-label classifier's CSV/TSV cell.
        problem_type: ``"single"`` or ``"multi"``: what a text classifier saved without
            ``problem_type`` is (``None``: single-label); the output's config records it.

    Returns:
        a :class:`TrainResult`.

    Raises:
        DataError: unreadable files, labels the model does not have (without ``add``), or
            ``data`` with no example of any new label.
        CheckpointError: ``output`` exists and is not empty, is ``model_dir`` or inside it;
            pickle weights without ``allow_pickle``.
        UnsupportedModelError: custom code without ``trust_remote_code``.
        OptionsError: ``base_model`` is not a Hub repository id.
        GateFailedError: the old-label check failed (``.report`` holds the report).

    Example:
        >>> result = train("grown/", "new.csv", "tuned/", replay="replay.csv", holdout="holdout.csv")
        >>> result.report.drop_pts
        0.1
    """
    return TrainJob(
        model_dir, data, output, replay=replay, holdout=holdout, options=options, add=add,
        force=force, max_drop=max_drop, max_label_drop=max_label_drop, text_column=text_column,
        label_column=label_column, head_path=head_path, trust_remote_code=trust_remote_code,
        allow_pickle=allow_pickle, base_model=base_model, image_column=image_column,
        audio_column=audio_column, label_sep=label_sep, problem_type=problem_type,
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
    data: str | os.PathLike
    output: str | os.PathLike
    replay: str | os.PathLike | None = None
    holdout: str | os.PathLike | None = None
    options: TrainOptions | None = None
    add: bool = False
    force: bool = False
    max_drop: float | None = None
    max_label_drop: float | None = None
    text_column: str = TEXT_COLUMN
    label_column: str = LABEL_COLUMN
    head_path: str | Sequence[str] | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    base_model: str | None = None
    image_column: str = IMAGE_COLUMN
    audio_column: str = AUDIO_COLUMN
    label_sep: str = LABEL_SEP
    problem_type: str | None = None
    _problem_type: str | None = field(default=None, init=False, repr=False)

    @property
    def columns(self) -> Columns:
        """The data files' columns (the task reads its input's)."""
        return Columns(
            self.text_column, self.label_column, self.image_column, self.audio_column,
            self.label_sep,
        )  # fmt: skip

    def run(self) -> TrainResult:
        """Train, gate and write (see :func:`train`)."""
        from ..checkpoint import write_model

        src, output = Path(self.model_dir), Path(self.output)
        check_output(src, output, in_place=False)  # the check every writing command shares
        check_max_drop(self.max_drop, self.max_label_drop)
        read = self.read(src)
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
            max_drop=self.max_drop,
            max_label_drop=self.max_label_drop,
            head_path=self.head_path,
        )
        result = TrainResult(None, outcome.report, options, outcome.stats, read.added)
        result.telemetry = outcome.telemetry
        telemetry_files = _telemetry_writers(outcome.telemetry)
        outcome.stats["training"]["files"] = list(telemetry_files)
        if not processes.is_main():  # the main process checks, records and writes
            result.main_process = False
            return result
        self.event(read, model, options, outcome)
        self.gate(options, outcome)
        model.to("cpu")
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
        stats = outcome.stats
        event = {
            "options": options.to_dict(),
            "data": _record.file_ref(self.data, len(read.examples)),  # names, no local paths
            "replay": _record.file_ref(self.replay or None, len(read.replayed)),
            "holdout": _record.file_ref(self.holdout or None, len(read.held or [])),
            "trained_labels": [n for n in _labels.labels_of(model.config) if n not in old],
            **{k: v for k, v in stats.items() if k != "seeds"},  # training, warnings too
            "seeds": [{k: v for k, v in r.items() if k != "history"} for r in stats["seeds"]],
        }
        if outcome.report is not None:
            event["check"] = {"passed": outcome.report.passed, **outcome.report.to_dict()}
        else:
            event["check_skipped"] = "no holdout"
            logger.warning(
                "no --holdout: the %s did not run; %s is not gated",
                read.task.check_name,
                self.output,
            )
        _record.add_event(record, "train", **event)

    def gate(self, options: TrainOptions, outcome) -> None:
        """Refuse a failed check (:class:`GateFailedError`, with advice), or warn under
        ``force``."""
        report = outcome.report
        if report is None or report.passed:
            return
        if not self.force:
            advice = gate_advice(
                options,
                replayed=outcome.stats["replay_examples"] > 0,
                per_label=bool(report.labels_beyond),
                calibrated=not outcome.stats.get("calibration_skipped"),
            )
            raise GateFailedError(
                f"{report.failure()}: {self.output} not written; try one of: {advice}; "
                "or pass --force to write it anyway",
                report=report,
            )
        logger.warning(
            "--force: writing %s although the old-label check failed (%s); "
            "headsurgeon.json records the failure",
            self.output,
            report.failure(),
        )


def _telemetry_writers(telemetry: dict[str, Any]) -> dict[str, Any]:
    """``training.json`` (and ``training.png`` with matplotlib): file name → writer, published
    with the model (inside its atomic write)."""
    from . import telemetry as _telemetry

    writers = {_telemetry.JSON_NAME: lambda path: _telemetry.write_json(telemetry, path)}
    if _telemetry.can_plot():
        writers[_telemetry.PNG_NAME] = lambda path: _telemetry.plot(telemetry, path)
    return writers


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


def gate_advice(
    options: TrainOptions, replayed: bool, per_label: bool = False, calibrated: bool = True
) -> str:
    """What to try after a failed check, from what this run did: remedies it did not use, most
    effective first (at most three; lowering the learning rate always applies). ``per_label``:
    the check failed by ``--max-label-drop`` (one old label lost too much); ``calibrated``:
    calibration ran (it is skipped for token classifiers: no calibration advice then)."""
    steps = []
    if not replayed:
        steps.append("add replay (--replay)")
    if options.freeze != "backbone":
        steps.append("keep the backbone frozen (--freeze backbone)")
    elif options.train_layers:
        steps.append("train fewer blocks (--train-layers 0)")
    if not options.protect_old_rows:
        steps.append("protect the old rows (--protect-old-rows)")
    if replayed and calibrated and options.calibrate and per_label:
        cap = options.calibrate_label_cap
        steps.append(
            "cap calibration per old label (--calibrate-label-cap PCT)"
            if cap is None
            else f"lower the per-label calibration cap (--calibrate-label-cap below {cap:g})"
        )
    if replayed and not options.distill:
        steps.append("distil to the parent (--distill 1)")
    if replayed and calibrated and options.calibrate == "gate":
        steps.append(f"calibrate less (--calibrate-safety below {options.calibrate_safety:g})")
    elif replayed and calibrated and options.calibrate:
        steps.append(f"calibrate less (--calibrate below {options.calibrate:g})")
    if options.init == "normal":
        steps.append("start the new rows from their examples (--init imprint)")
    steps.append(f"lower the learning rate (--lr below {options.lr:g})")
    return ", ".join(steps[:3])
