"""``train_model``: train a model's new labels in memory, without forgetting its old ones.

One run reads as its stages: plan (:mod:`.plan`) → the examples (:mod:`.replay`) → cache
(:mod:`.features`) → init the new rows (:mod:`.new_rows`) and set what trains
(:mod:`.freezing`) → train and select (:mod:`.selection`, :mod:`.trainer`) → calibrate
(:mod:`.calibration`) → check → outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import labels as _labels
from ..data import Example
from ..errors import DataError, OptionsError
from ..gate import Tolerance
from . import processes
from .calibration import calibrate, calibration_set, calibration_skipped
from .options import TrainOptions
from .replay import ExampleSets, example_sets

logger = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What :func:`train_model` did.

    Attributes:
        model: the trained model (heads fused back into plain ``nn.Linear``), on its device.
        report: the gate's report (:class:`~headsurgeon.tasks.base.GateReport`; ``None`` without
            holdout).
        stats: JSON-able facts: data sizes, labels, steps, seeds tried, scores, wall time.
        holdout_logits: ``(parent, child)`` logits of the holdout the report was computed from
            (the parent's over its old labels, the child's over every label; CPU float32),
            ``None`` without holdout.
        telemetry: the training's series (:mod:`.telemetry`: per step of each seed the loss
            and its parts, gradient norms, learning rates; the holdout evaluations; the
            ``summary`` and ``warnings``, also in ``stats["training"]`` and
            ``stats["warnings"]``): what ``training.json`` holds.
    """

    model: Any
    report: Any = None
    stats: dict[str, Any] = field(default_factory=dict)
    holdout_logits: tuple[Any, Any] | None = None
    telemetry: dict[str, Any] = field(default_factory=dict)


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
    data: Sequence[Example],
    *,
    replay: Sequence[Example] = (),
    holdout: Sequence[Example] | None = None,
    options: TrainOptions | None = None,
    old_labels: Sequence[str] | None = None,
    trained_labels: Sequence[str] = (),
    max_drop: float | None = None,
    max_label_drop: float | None = None,
    head_path: str | Sequence[str] | None = None,
    feature_cache: MutableMapping[str, Any] | None = None,
    hidden_cache: MutableMapping[str, Any] | None = None,
) -> TrainOutcome:
    """Train ``model`` on ``data`` (new labels' examples) without forgetting its old labels.

    The model's task decides what an example is (:class:`~headsurgeon.tasks.base.Task`): a
    text and its label (:class:`~headsurgeon.data.Example`, sequence classification) or a
    sentence's words and their tags (:class:`~headsurgeon.tasks.token.data.Sentence`, token
    classification).

    Args:
        model: a classification model whose head already has every label of ``data``.
        tokenizer: its tokenizer (a fast one for token classification).
        data: training examples (usually of the new labels, may include old ones).
        replay: old examples: ``options.calibrate_per_label`` per old label are held out to
            calibrate the new biases against the gate (:mod:`.calibration`), and
            ``options.replay_per_label`` per old label of the rest are replayed (:mod:`.replay`).
        holdout: examples to evaluate on (keep-best, seeds, and the old-label check).
        options: :class:`TrainOptions`.
        old_labels: labels whose rows are protected and checked (default: every label that
            has no example in ``data``); the others are "new".
        trained_labels: new labels whose rows were trained before (not re-initialised unless
            ``options.init`` is given).
        max_drop: the check's tolerance in points (default: the task's, 0.5 pt of accuracy, for
            token classification 1.0 pt of entity F1); the calibration spends
            ``options.calibrate_safety`` of it.
        max_label_drop: the check's per-label tolerance in points (default: not checked).
        head_path: explicit head path(s).
        feature_cache: key (a text) → backbone feature; read and filled, so callers can
            persist it.
        hidden_cache: key → input of the lowest trained block (with ``train_layers``; the
            blocks' output when only the neck trains); read and filled likewise. Only the top
            blocks (or the neck) then run during training and evaluation.

    Under ``torchrun``/``accelerate launch`` every process calls this: the caches are computed
    in shards and gathered, ``Trainer`` splits the batches (``options.batch_size`` is the global
    batch), the main process calibrates (its head is copied to the others) and alone scores the
    check: the other processes get ``report=None``. See :mod:`.processes`.

    Returns:
        a :class:`TrainOutcome`; the check's verdict is in ``report.passed`` (not enforced).

    Raises:
        DataError: a label in data/replay/holdout that the model does not have, or data with no
            example of any new label.
        OptionsError: inconsistent options (e.g. ``seeds > 1`` without a holdout).
    """
    start = time.perf_counter()
    options = options or TrainOptions()
    tolerances = (max_drop, max_label_drop)
    caches = (feature_cache, hidden_cache)
    plan = _plan(model, tokenizer, data, replay, holdout, options, old_labels, tolerances,
                 head_path, caches)  # fmt: skip
    return _train(_prepare(plan, data, replay, holdout, trained_labels), data, start)


def _plan(model, tokenizer, data, replay, holdout, options, old_labels, tolerances, head_path,
          caches):  # fmt: skip
    """Check the data and the options against the model's task, and make the run's plan."""
    from ..tasks import task_for
    from .plan import make_plan

    task = task_for(model)
    task.check_data(data, replay, holdout, _labels.labels_of(model.config))
    if (options.seeds > 1 or options.eval_every) and not holdout:
        raise OptionsError("seeds > 1 and eval_every need a holdout to score on (--holdout)")
    max_drop, max_label_drop = tolerances
    tolerance = Tolerance(task.default_max_drop() if max_drop is None else max_drop, max_label_drop)
    plan = make_plan(
        model, tokenizer, data, old_labels=old_labels, options=options, tolerance=tolerance,
        head_path=head_path, caches=caches,
    )  # fmt: skip
    require_examples(data, plan.new_labels, "the data", plan.task)
    _warn_unseen(plan, data)
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
