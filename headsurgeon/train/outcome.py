"""What a training run gives back (:class:`TrainOutcome`), and how it is recorded, gated and saved.

``train_model`` (in memory) and ``train`` (folders) share this: the ``train`` event of the
record (:func:`train_event`), the gate's refusal with its advice (:func:`refuse_failed`,
:func:`gate_advice`) and the atomic write of the model with its record and telemetry files
(:func:`write_trained`). :meth:`TrainOutcome.save` is what ``train -o`` writes, for a model
trained in memory.

Messages name Python parameters in backticks (`` `lr` ``, `` `freeze='backbone'` ``): the CLI
spells them as its options (``--lr``, ``--freeze backbone``) in one place
(:func:`headsurgeon.cli.app._as_options`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import record as _record
from ..errors import CheckpointError, GateFailedError
from ..tasks import task_named
from .options import TrainOptions

if TYPE_CHECKING:
    from ..tasks.base import GateReport

logger = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What :func:`~headsurgeon.train.train_model` did.

    Attributes:
        model: the trained model (the one passed in, changed in place: heads fused back into
            plain ``nn.Linear``), on its device.
        report: the gate's report (:class:`~headsurgeon.tasks.base.GateReport`; ``None``
            without holdout, and in processes other than the main one).
        stats: JSON-able facts: data sizes, labels, steps, seeds tried, scores, wall time.
        holdout_logits: ``(parent, child)`` logits of the holdout the report was computed from
            (the parent's over its old labels, the child's over every label; CPU float32),
            ``None`` without holdout.
        telemetry: the training's series (:mod:`.telemetry`: per step of each seed the loss
            and its parts, gradient norms, learning rates; the holdout evaluations; the
            ``summary`` and ``warnings``, also in ``stats["training"]`` and
            ``stats["warnings"]``): what ``training.json`` holds.
        options: the options the run resolved (the task's defaults in place of ``None``).
        tokenizer: the preprocessor passed to ``train_model``, saved with the model.
        record: the provenance record :meth:`save` writes (``headsurgeon.json``): the record
            of the folder the model was loaded from (or a new one), the surgery done in
            memory (``add-label``...) and this run's ``train`` event with its check.
    """

    model: Any
    report: GateReport | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    holdout_logits: tuple[Any, Any] | None = None
    telemetry: dict[str, Any] = field(default_factory=dict)
    options: TrainOptions | None = None
    tokenizer: Any = field(default=None, repr=False)
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool | None:
        """The check's verdict (``None``: no check ran, no holdout)."""
        return None if self.report is None else self.report.passed

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-able data: the options, the stats and the check's report (as
        ``train --json`` prints them)."""
        return {
            "options": None if self.options is None else recorded_options(self.options, self.stats),
            **self.stats,
            "passed": self.passed,
            "check": None if self.report is None else self.report.to_dict(),
        }

    def save(
        self,
        folder: str | os.PathLike,
        *,
        tokenizer: Any = None,
        force: bool = False,
        base_model: str | None = None,
    ) -> Path:
        """Write the trained model as ``headsurgeon train -o`` does: into ``folder`` (new or
        empty), atomically, with its preprocessor, the record ``headsurgeon.json`` (every
        event: surgery, training, check) and ``training.json``/``training.png``, ready for
        :func:`headsurgeon.push`.

        Args:
            folder: a new or empty folder (it appears complete or not at all).
            tokenizer: the preprocessor to save (default: the one given to ``train_model``).
            force: write even when the check failed (the failure is recorded, with a warning).
            base_model: the parent's Hub id, for the model card.

        Returns:
            the folder written.

        Raises:
            GateFailedError: the check failed and not ``force`` (nothing is written).
            CheckpointError: ``folder`` exists and is not empty, or writing failed.
            OptionsError: ``base_model`` is not a Hub id.

        Modifies nothing but ``folder``; the model is saved from where it is (not moved).

        Example:
            >>> outcome = train_model(model, tokenizer, data, replay=old, holdout=test)
            >>> outcome.save("tuned/")
        """
        from .. import atomic

        if atomic.occupied(folder):  # the command line's words are check_output's
            raise CheckpointError(
                f"save(folder): {folder} already exists and is not empty; pass a new or empty "
                "folder (force=True does not write into it)"
            )
        record = _record.set_base_model(json.loads(json.dumps(self.record)), base_model)
        if self.report is None:
            logger.warning("no holdout: the old-label check did not run; %s is not gated", folder)
        refuse_failed(self, folder, force)
        preprocessor = tokenizer if tokenizer is not None else self.tokenizer
        target = Path(folder)
        with atomic.temp_folder(target, "source-") as source, quiet_bars():
            if preprocessor is not None and hasattr(preprocessor, "save_pretrained"):
                preprocessor.save_pretrained(str(source))  # carried over with the model
            return write_trained(self.model, record, source, target, self.telemetry)


@contextmanager
def quiet_bars(quiet: bool = True) -> Iterator[None]:
    """Without transformers' progress bars ("Loading weights", "Writing model shards") while
    headsurgeon loads or saves a model (``quiet``; library code reports progress on the
    ``headsurgeon.progress`` logger only); restored afterwards."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if quiet and was:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was:
            hf_logging.enable_progress_bar()


def write_trained(model, record: dict[str, Any], src, output, telemetry: dict[str, Any]) -> Path:
    """Write ``model`` with ``record`` and the telemetry files as ``output``, atomically, the
    files of ``src`` that ``save_pretrained`` does not write (tokenizer...) carried over
    (:func:`~headsurgeon.checkpoint.write_model`)."""
    from ..checkpoint import write_model

    return write_model(model, record, src, output, extra=telemetry_writers(telemetry))


def telemetry_writers(telemetry: dict[str, Any]) -> dict[str, Any]:
    """``training.json`` (and ``training.png`` with matplotlib): file name → writer, published
    with the model (inside its atomic write)."""
    from . import telemetry as _telemetry

    writers = {_telemetry.JSON_NAME: lambda path: _telemetry.write_json(telemetry, path)}
    if _telemetry.can_plot():
        writers[_telemetry.PNG_NAME] = lambda path: _telemetry.plot(telemetry, path)
    return writers


def train_event(outcome: TrainOutcome, options: TrainOptions, trained: list[str], refs) -> dict:
    """The ``train`` event of the record: the options (:func:`recorded_options`), the data
    (``refs``: ``(data, replay, holdout)`` as :func:`~headsurgeon.record.file_ref` or
    :func:`memory_ref` name them), the labels trained, the stats, and the check (or why it was
    skipped)."""
    stats = outcome.stats
    data, replay, holdout = refs
    event = {
        "options": recorded_options(options, stats),
        "data": data,
        "replay": replay,
        "holdout": holdout,
        "trained_labels": trained,
        **{k: v for k, v in stats.items() if k != "seeds"},  # training, warnings too
        "seeds": [{k: v for k, v in r.items() if k != "history"} for r in stats["seeds"]],
    }
    if outcome.report is not None:
        event["check"] = {"passed": outcome.report.passed, **outcome.report.to_dict()}
    else:
        event["check_skipped"] = "no holdout"
    return event


def recorded_options(options: TrainOptions, stats: dict[str, Any]) -> dict[str, Any]:
    """The options as the record and ``--json`` keep them: as given (``None``: worked out from
    the data, e.g. ``new_weight``, whose value used is among the stats), without the
    ``calibrate*`` fields when the run's task (``stats["task"]``) does not calibrate (they did
    nothing)."""
    out = options.to_dict()
    name = stats.get("task")
    if name is not None and not task_named(name).calibrates:
        out = {k: v for k, v in out.items() if not k.startswith("calibrate")}
    return out


def memory_ref(form: str, keys: list[str]) -> dict[str, Any] | None:
    """What a record keeps of examples held in memory: their form (``list``, ``DataFrame``,
    ``Dataset``), the sha256 of ``keys`` (one line per example), and how many; ``None`` for
    none."""
    if not keys:
        return None
    digest = hashlib.sha256("\n".join(keys).encode("utf-8", "surrogatepass")).hexdigest()
    return {"name": f"{form} in memory", "sha256": digest, "examples": len(keys)}


def refuse_failed(outcome: TrainOutcome, output, force: bool) -> None:
    """Refuse to write a model whose check failed (:class:`GateFailedError`, with the advice
    of :func:`gate_advice`), or warn under ``force``."""
    report = outcome.report
    if report is None or report.passed:
        return
    if not force:
        advice = gate_advice(
            outcome.options or TrainOptions(),
            replayed=outcome.stats.get("replay_examples", 0) > 0,
            per_label=bool(report.labels_beyond),
            calibrated=not outcome.stats.get("calibration_skipped"),
        )
        raise GateFailedError(
            f"{report.failure()}: {output} not written; try one of: {advice}; "
            "or pass `force=True` to write it anyway",
            report=report,
        )
    logger.warning(
        "--force: writing %s although the old-label check failed (%s); "
        "headsurgeon.json records the failure",
        output,
        report.failure(),
    )


def gate_advice(
    options: TrainOptions, replayed: bool, per_label: bool = False, calibrated: bool = True
) -> str:
    """What to try after a failed check, from what this run did: remedies it did not use, most
    effective first (at most three; lowering the learning rate always applies), each naming
    its parameter in backticks. ``per_label``: the check failed by ``max_label_drop`` (one old
    label lost too much); ``calibrated``: calibration ran (it is skipped for token
    classifiers: no calibration advice then)."""
    steps = []
    if not replayed:
        steps.append("add replay (`replay`)")
    if options.freeze != "backbone":
        steps.append("keep the backbone frozen (`freeze='backbone'`)")
    elif options.train_layers:
        steps.append("train fewer blocks (`train_layers=0`)")
    if not options.protect_old_rows:
        steps.append("protect the old rows (`protect_old_rows=True`)")
    if replayed and calibrated and options.calibrate and per_label:
        cap = options.calibrate_label_cap
        steps.append(
            "cap calibration per old label (`calibrate_label_cap=PCT`)"
            if cap is None
            else f"lower the per-label calibration cap (`calibrate_label_cap` below {cap:g})"
        )
    if replayed and not options.distill:
        steps.append("distil to the parent (`distill=1`)")
    if replayed and calibrated and options.calibrate == "gate":
        steps.append(f"calibrate less (`calibrate_safety` below {options.calibrate_safety:g})")
    elif replayed and calibrated and options.calibrate:
        steps.append(f"calibrate less (`calibrate` below {options.calibrate:g})")
    if options.init == "normal":
        steps.append("start the new rows from their examples (`init='imprint'`)")
    steps.append(f"lower the learning rate (`lr` below {options.lr:g})")
    return ", ".join(steps[:3])
