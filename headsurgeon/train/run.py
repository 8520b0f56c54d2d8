"""``train_model``: train a model's new labels in memory, without forgetting its old ones.

One run reads as its stages: plan (:mod:`.plan`) → the examples (:mod:`.replay`) → cache
(:mod:`.features`) → init the new rows (:mod:`.new_rows`) and set what trains
(:mod:`.freezing`) → train and select (:mod:`.selection`, :mod:`.trainer`) → calibrate
(:mod:`.calibration`) → check → outcome.

The model's task decides what an example is (:class:`~headsurgeon.tasks.base.Task`): each of
``data``, ``replay`` and ``holdout`` may be the task's own examples
(:class:`~headsurgeon.data.Example`, :class:`~headsurgeon.LabelledText`,
:class:`~headsurgeon.Sentence`, ...), tuples (``(text, label)``, ``(text, [labels])``,
``(tokens, tags)``, ``(path, label)``), dicts with the columns, a pandas ``DataFrame``, a
``datasets.Dataset`` (``ClassLabel`` ids read as names) or a data file's path
(:mod:`headsurgeon.api_data`).

Under ``torchrun``/``accelerate launch`` every process calls :func:`train_model`: the caches
are computed in shards and gathered, ``Trainer`` splits the batches (``options.batch_size`` is
the global batch), the main process calibrates (its head is copied to the others) and alone
scores the check: the other processes get ``report=None``. See :mod:`.processes`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import labels as _labels
from .. import record as _record
from ..api_data import Data
from ..data import Columns
from ..errors import DataError, OptionsError
from ..gate import Tolerance, check_max_drop
from ..legacy import bundles
from ..tasks import task_for
from . import processes
from .calibration import calibrate, calibration_set, calibration_skipped
from .inputs import read_inputs
from .options import TrainOptions
from .outcome import TrainOutcome, train_event
from .replay import ExampleSets, example_sets, pair_new_labels

logger = logging.getLogger(__name__)


def require_examples(data, new_labels: Sequence[str], source: str, task) -> None:
    """Refuse data with no example of any new label: it cannot teach one (their rows would only
    be pushed down, then calibration would raise them blind). ``task``: the model's
    :class:`~headsurgeon.tasks.base.Task` (which labels an example teaches).

    Raises:
        DataError: naming the new labels and the labels the data has.
    """
    if not new_labels or any(task.labels_in(e) & set(new_labels) for e in data):
        return
    counts: dict[str, int] = {}
    for e in data:
        for name in task.labels_in(e):
            counts[name] = counts.get(name, 0) + 1
    have = ", ".join(f"{n} ({c})" for n, c in counts.items()) or "no example"
    raise DataError(
        f"{source} has no example of the new label(s) {', '.join(new_labels)} (it has: {have}); "
        "add examples of them to the data"
    )


def _warn_unseen(plan, data) -> None:
    """A new label without examples beside others trains as a wrong answer only: say so."""
    have = set().union(*(plan.task.labels_in(e) for e in data)) if data else set()
    if missing := [n for n in plan.new_labels if n not in have]:
        logger.warning(
            "the data has no example of %s: its row trains only as a wrong answer "
            "(add its examples to keep it)",
            ", ".join(missing),
        )


def train_model(
    model,
    tokenizer,
    data: Data,
    *,
    replay: Data = (),
    holdout: Data | None = None,
    options: TrainOptions | None = None,
    old_labels: Sequence[str] | None = None,
    trained_labels: Sequence[str] = (),
    tolerance: Tolerance | None = None,
    columns: Columns | None = None,
    head_path: str | Sequence[str] | None = None,
    feature_cache: MutableMapping[str, Any] | None = None,
    hidden_cache: MutableMapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    trainer_args: dict[str, Any] | None = None,
    **legacy: Any,
) -> TrainOutcome:
    """Train ``model``'s new labels on ``data`` without forgetting its old ones.

    **Modifies** ``model`` in place (its head, the blocks that train; moved to the training
    device) and returns it as ``outcome.model``; the caches are filled; nothing else changes.
    Every argument is checked before any model work. The forms examples may take, and runs
    under several processes: the module docstring.

    Args:
        model: a classification model whose head already has every label of ``data``.
        tokenizer: its tokenizer (a fast one for token classification), image processor or
            feature extractor; kept on the outcome, :meth:`TrainOutcome.save` saves it.
        data: training examples of the new labels. Examples of old labels only are moved to
            the replay, with a warning: their labels stay protected and checked.
        replay: old examples: ``options.calibrate_per_label`` per old label are held out to
            calibrate the new biases against the gate (:mod:`.calibration`), and
            ``options.replay_per_label`` per old label of the rest are replayed (:mod:`.replay`).
        holdout: examples to evaluate on (keep-best, seeds, and the old-label check).
        options: :class:`TrainOptions`.
        old_labels: labels whose rows are protected and checked; the others are "new".
            Default: the labels the model had before headsurgeon's surgery: the record's
            ``parent_labels`` (``headsurgeon.json`` in the folder it was loaded from), or the
            labels before :func:`headsurgeon.add_labels` grew it in memory; a model with
            neither takes the labels with no example in ``data`` as old (with a warning).
        trained_labels: new labels whose rows were trained before (not re-initialised unless
            ``options.init`` is given).
        tolerance: the check's :class:`~headsurgeon.gate.Tolerance` in points (``max_drop``
            ``None``: the task's, 0.5 pt of accuracy, for token classification 1.0 pt of
            entity F1; ``max_label_drop`` ``None``: the default per-label guard); the
            calibration spends ``options.calibrate_safety`` of it.
        columns: the :class:`~headsurgeon.data.Columns` of dict rows, DataFrames, Datasets and
            files (as the CLI's ``--text-column``...).
        head_path: explicit head path(s).
        feature_cache: key (a text) → backbone feature; read and filled, so callers can
            persist it.
        hidden_cache: key → input of the lowest trained block (with ``train_layers``; the
            blocks' output when only the neck trains); read and filled likewise. Only the top
            blocks (or the neck) then run during training and evaluation.
        callbacks: transformers ``TrainerCallback`` instances added to every seed's
            ``Trainer``.
        trainer_args: ``TrainingArguments`` fields on top of headsurgeon's (``report_to``,
            ``logging_steps``, ``fp16``...; a logger turns on step logging); the fields
            headsurgeon controls (learning rate, batch size, epochs, seeds...: set them in
            ``options``) are refused.
        **legacy: the old ``max_drop=``, ``max_label_drop=``, ``text_column=``...: deprecated
            (a ``DeprecationWarning``), set on ``tolerance`` and ``columns``.

    Returns:
        a :class:`TrainOutcome`; the check's verdict is in ``report.passed`` (not enforced:
        :meth:`TrainOutcome.save` refuses a failed one).

    Raises:
        DataError: a bad row or file, a label in data/replay/holdout that the model does not
            have, or data with no example of any new label.
        LabelError: ``old_labels`` naming a label the model does not have.
        OptionsError: inconsistent options (e.g. ``seeds > 1`` without a holdout), a negative
            tolerance, a refused ``trainer_args`` field, a callback that is not a
            ``TrainerCallback``, a keyword ``train_model`` does not take.

    Example:
        >>> headsurgeon.add_labels(model, ["refund"])
        >>> outcome = train_model(model, tokenizer, [("I want my money back", "refund")],
        ...                       replay=old_df, holdout=test_df, tolerance=Tolerance(1.0))
        >>> outcome.save("tuned/")
    """
    from .trainer import check_hooks

    start = time.perf_counter()
    columns, tolerance = bundles(train_model, legacy, columns, tolerance)
    options = _check_options(options, holdout, tolerance)
    hooks = check_hooks(callbacks, trainer_args)
    task, labels = task_for(model), _labels.labels_of(model.config)
    inputs = read_inputs(task, model, labels, data, replay, holdout, old_labels, columns)
    plan = _plan(model, tokenizer, inputs, options, tolerance, head_path,
                 (feature_cache, hidden_cache), hooks)  # fmt: skip
    run = _prepare(plan, inputs.data, inputs.replay, inputs.holdout, trained_labels)
    outcome = _train(run, inputs.data, start)
    return _finish(outcome, plan, tokenizer, labels, inputs.refs)


def _finish(outcome: TrainOutcome, plan, tokenizer, labels: list[str], refs) -> TrainOutcome:
    """The outcome with its options, tokenizer and record: the model's lineage and this run's
    ``train`` event (also noted on the model, so that a later run's record holds it)."""
    from ..lineage import mark_surgery

    outcome.options, outcome.tokenizer = plan.options, tokenizer
    trained = [n for n in labels if n not in set(plan.old_labels)]
    event = train_event(outcome, plan.options, trained, refs)
    outcome.record = _record_of(outcome.model, plan.old_labels)
    _record.add_event(outcome.record, "train", **event)
    mark_surgery(outcome.model, "train", plan.old_labels, **event)
    return outcome


def _check_options(options, holdout, tolerance: Tolerance) -> TrainOptions:
    """The options, checked with the tolerances before any work."""
    options = TrainOptions() if options is None else options
    if not isinstance(options, TrainOptions):
        raise OptionsError(
            f"`options` must be a TrainOptions, found {type(options).__name__}: "
            "options=TrainOptions(lr=..., epochs=...)"
        )
    check_max_drop(tolerance.max_drop, tolerance.max_label_drop)
    if (options.seeds > 1 or options.eval_every) and (holdout is None or _empty(holdout)):
        raise OptionsError("seeds > 1 and eval_every need a holdout to score on (`holdout`)")
    return options


def _empty(obj) -> bool:
    """Whether ``obj`` (examples in any form, or a path) holds no examples."""
    return hasattr(obj, "__len__") and not isinstance(obj, str) and len(obj) == 0


def _record_of(model, old_labels: list[str]) -> dict[str, Any]:
    """The record a trained model is saved with: the record of the folder it was loaded from
    (else a new one, its parent the model's name), with the events of its surgery and
    training in memory (:mod:`headsurgeon.lineage`)."""
    from .. import lineage

    record = lineage.source_record(model)
    found = lineage.lineage_of(model)
    if record is None:
        folder = lineage.source_folder(model)
        name = getattr(model, "name_or_path", "") or ""
        parent = str(folder) if folder is not None else (name or "model in memory")
        before = found["parent_labels"] if found is not None else old_labels
        record = _record.new_record(parent, before)
    for event in (found or {}).get("events", []):
        _record.add_event(record, event["op"], **{k: v for k, v in event.items() if k != "op"})
    return record


def _plan(model, tokenizer, inputs, options, tolerance, head_path, caches, hooks):
    """Make the run's plan (the inputs are checked: :func:`~.inputs.read_inputs`); the
    tolerance's ``max_drop`` defaults to the task's."""
    from .plan import make_plan

    task = task_for(model)
    if tolerance.max_drop is None:
        tolerance = replace(tolerance, max_drop=task.default_max_drop())
    labels = _labels.labels_of(model.config)
    new = [n for n in labels if n not in set(inputs.old_labels)]
    require_examples(inputs.data, new, "the data", task)
    plan = make_plan(
        model, tokenizer, inputs.data, old_labels=inputs.old_labels, options=options,
        tolerance=tolerance, head_path=head_path, caches=caches,
    )  # fmt: skip
    plan.callbacks, plan.trainer_args = hooks
    _warn_unseen(plan, inputs.data)
    return plan


@dataclass
class _Run:
    """One run, prepared: its examples, what trains and how it is scored and calibrated."""

    plan: Any
    sets: ExampleSets
    hold_x: Any
    initialised: dict[str, str]
    trainable: list[str]
    reinit: list[str]
    top: Any
    rows: list[dict]
    trained: Any
    depths: dict[str, int]
    predict: Any
    scorer: Any
    calibration: Any
    uncalibrated: str | None


def _prepare(plan, data, replay, holdout, trained_labels) -> _Run:
    """The stages before training: the examples, the caches, the new rows, what trains, the
    rows, the holdout's scorer and what calibration will run on."""
    from .features import fill_caches, run_top_blocks
    from .freezing import what_trains
    from .new_rows import init_new_rows
    from .schedule import layer_depths
    from .scoring import holdout_scorer, predictor

    sets = example_sets(plan, data, replay, holdout)
    train_x, hold_x = fill_caches(plan, sets)
    pair_new_labels(plan, sets, data)
    initialised = init_new_rows(plan, trained_labels, data, sets.train, train_x)
    trainable, reinit = what_trains(plan)
    depths = layer_depths(plan.model, plan.head.paths, plan.probe)
    top = run_top_blocks(plan, plan.keys([*sets.train, *sets.scored]))
    train_h = [plan.hidden_cache[k] for k in plan.keys(sets.train)] if top is not None else None
    rows = plan.task.rows(plan, sets.train, train_x, train_h)
    trained, depths = _what_runs(plan, top, depths)
    predict = predictor(plan, holdout, hold_x, top, "scoring holdout") if holdout else None
    scorer = holdout_scorer(plan, predict, holdout) if holdout else None
    calibration = calibration_set(plan, sets, top)
    uncalibrated = calibration_skipped(plan, sets.held or sets.replayed, calibration)
    return _Run(plan, sets, hold_x, initialised, trainable, reinit, top, rows, trained, depths,
                predict, scorer, calibration, uncalibrated)  # fmt: skip


def _train(run: _Run, data, start: float) -> TrainOutcome:
    """Train and select (:mod:`.selection`), fuse the heads, calibrate, check: the outcome."""
    from .freezing import fuse_heads
    from .selection import run_seeds

    plan, model = run.plan, run.plan.model
    main = processes.is_main()  # the others train with it, then leave the rest to it
    watch = Watch(plan)
    try:
        runs = run_seeds(plan, run.trained, run.rows, run.depths, run.scorer, watch.telemetry)
        unchanged, moved = watch.fingerprints.compare()
        fuse_heads(model, plan.head.paths)
        model.eval()  # Trainer leaves it in train mode: no dropout in calibration or the check
        calibrated = calibrate(plan, run.calibration) if main else None
        heads = [p for path in plan.head.paths for p in model.get_submodule(path).parameters()]
        calibrated = processes.share_from_main(heads, calibrated)
        child_logits = run.predict() if run.predict is not None and main else None
        unpredicted = watch.unpredicted(run.sets.train, run.top) if main else []
    finally:
        if run.top is not None:
            run.top.restore()
    report, logits = _check(plan, run.sets.holdout, run.hold_x, child_logits)
    stats = _stats(run, data, calibrated, runs, start)
    telemetry = watch.finish(unchanged, moved, unpredicted)
    stats["training"], stats["warnings"] = telemetry["summary"], telemetry["warnings"]
    return TrainOutcome(model, report, stats, logits, telemetry)


def _stats(run: _Run, data, calibrated: dict[str, Any], runs: list[dict], start: float):
    """The JSON-able facts of a run (:attr:`TrainOutcome.stats`, before the telemetry's)."""
    plan = run.plan
    return {
        **_data_stats(plan, data, run.sets),
        "initialised": run.initialised,
        **_trained_stats(plan, run.trainable, run.reinit, run.top),
        "calibrated_bias_shifts": calibrated.get("shifts", {}),
        "calibration": calibrated,
        "calibration_skipped": run.uncalibrated,
        "device": plan.device,
        "processes": processes.count(),
        "seeds": runs,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }


class Watch:
    """What :mod:`.telemetry` watches in one run: the per-step curves, the parameters'
    checksums before training, and (after it) the new labels' predictions on their examples."""

    def __init__(self, plan):
        from .telemetry import Fingerprints, Telemetry

        self.plan = plan
        heads = [plan.model.get_submodule(p) for p in plan.head.paths]
        new_ids = [plan.labels.index(n) for n in plan.new_labels]
        self.telemetry = Telemetry(heads, new_ids)
        self.fingerprints = Fingerprints(plan.model, heads)

    def unpredicted(self, train, top) -> list[str]:
        """The new labels the trained model never predicts on their own training examples
        (where the task says which they are:
        :meth:`~headsurgeon.tasks.base.Task.new_label_examples`)."""
        from .scoring import predictor
        from .telemetry import unpredicted_labels

        plan = self.plan
        found = plan.task.new_label_examples(plan, train)
        if not found or not found[0]:
            return []
        mine, gold = found
        x = plan.features.of(plan.keys(mine)) if plan.features_only else None
        logits = predictor(plan, mine, x, top)()
        return unpredicted_labels(logits, gold, plan.labels, plan.new_labels)

    def finish(self, unchanged, moved, unpredicted) -> dict[str, Any]:
        """The telemetry with its summary and warnings (logged)."""
        from .telemetry import diagnose, summary

        telemetry = self.telemetry.to_dict()
        telemetry["warnings"] = diagnose(telemetry, unchanged, moved, unpredicted)
        telemetry["summary"] = summary(telemetry)
        plan = self.plan
        if plan.task.new_label_examples(plan, []) is None:
            telemetry["not_checked"] = [
                f"new labels predicted on their examples ({plan.task.name})"
            ]
        return telemetry


def _check(plan, holdout, hold_x, child_logits):
    """The old-label check on the holdout: ``(report, (parent logits, child logits))``, or
    ``(None, None)`` without the child's logits (no holdout, or not the main process)."""
    if child_logits is None:
        return None, None
    logits = (plan.parent(hold_x), child_logits)
    return plan.task.report(plan, holdout, *logits, plan.tolerance), logits


def _what_runs(plan, top, depths: dict[str, int]):
    """The module Trainer trains and its parameters' depths: the head alone on cached features,
    the top blocks on cached block inputs (their names under ``model.``), or the whole model."""
    from .trainer import FeatureModel

    if plan.features_only:
        return FeatureModel(plan.model.get_submodule(plan.head.paths[0])), depths
    if top is not None:
        return top, {f"model.{n}": d for n, d in depths.items()}
    return plan.model, depths


def _data_stats(plan, data, sets: ExampleSets) -> dict[str, Any]:
    """The stats of what a run trained on (the first of :attr:`TrainOutcome.stats`)."""
    holdout = sets.holdout
    return {
        "task": plan.task.name,
        "data_examples": len(data),
        "replay_examples": len(sets.replayed),
        "replayed_whole": sets.confusable,
        "near_synonyms": sets.pairs,
        "holdout_examples": len(holdout) if holdout else 0,
        "old_labels": len(plan.old_labels),
        "new_labels": plan.new_labels,
    }


def _trained_stats(plan, trainable: list[str], reinit: list[str], top) -> dict[str, Any]:
    """The stats of what trained."""
    return {
        "trainable_parameters": sum(
            p.numel() for n, p in plan.model.named_parameters() if n in set(trainable)
        ),
        "reinitialised_blocks": reinit,
        "neck_parameters": plan.neck,
        "features_cached": plan.features_only,
        "block_inputs_cached": top is not None,
        **plan.task_stats,
    }
