"""``train_model`` (in memory) and ``train`` (folder to folder, gated, atomic)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from .. import labels as _labels
from ..data import Example
from ..errors import DataError, OptionsError
from . import processes
from .calibration import Calibration, CalibrationSet, Tolerance
from .options import SEED_TRIAL, SWA_START, TrainOptions
from .plan import keys
from .replay import confusable_labels, split_slice
from .steps import (
    cache_inputs,
    holdout_scorer,
    imprint_wanted,
    init_new_rows,
    predictor,
    top_blocks,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What :func:`train_model` did.

    Attributes:
        model: the trained model (heads fused back into plain ``nn.Linear``), on its device.
        report: the old-label :class:`~headsurgeon.checks.CheckReport` (``None`` without holdout).
        stats: JSON-able facts: data sizes, labels, steps, seeds tried, scores, wall time.
        holdout_logits: ``(parent, child)`` logits of the holdout the report was computed from
            (the parent's over its old labels, the child's over every label; CPU float32),
            ``None`` without holdout.
    """

    model: Any
    report: Any = None
    stats: dict[str, Any] = field(default_factory=dict)
    holdout_logits: tuple[Any, Any] | None = None


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``mps`` when available, else ``cpu``; under a
    launcher ``cuda`` is this process's GPU (``cuda:LOCAL_RANK``)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    return processes.local_device(device)


def require_examples(data, new_labels: Sequence[str], source: str, task=None) -> None:
    """Refuse data with no example of any new label: it cannot teach one (their rows would only
    be pushed down, then calibration would raise them blind).

    Raises:
        DataError: naming the new labels and the labels the data has.
    """
    from .tasks import SequenceTask

    task = task or SequenceTask()
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


def _calibration_skipped(plan, replayed, calibration) -> str | None:
    """Why the default calibration does not run (warned once), or ``None``."""
    options = plan.options
    if options.calibrate is None or not plan.new_labels:
        return None
    if not plan.task.calibrates:
        return f"not for {plan.task.name}"
    if not replayed:
        logger.warning(
            "not calibrated: --calibrate counts false positives on replayed old examples and "
            "there are none; pass --replay (or --no-calibrate)"
        )
        return "no replay"
    if calibration is None:
        logger.warning(
            "not calibrated: --calibrate needs the backbone frozen (cached inputs); the new "
            "biases stay as trained"
        )
        return "backbone not frozen"
    return None


@dataclass
class _Sets:
    """The examples of one run: the new data plus the sampled replay, the holdout, the slice
    held out of the replay for calibration, and the old labels replayed whole."""

    train: list
    replayed: list
    holdout: list | None
    held: list
    confusable: list[str]

    @property
    def scored(self) -> list:
        return [*(self.holdout or []), *self.held]


def _sets(plan, data, replay, holdout) -> _Sets:
    options = plan.options
    per_label = options.calibrate_per_label if plan.calibrating else 0
    if plan.task.calibrates:
        held, rest = split_slice(replay, plan.old_labels, per_label, options.seed)
    else:
        held, rest = [], list(replay)
    confusable = []
    if options.replay_per_label and options.replay_confusable and replay and plan.task.calibrates:
        data_x = plan.features.of([e.text for e in data])  # a few texts: the new examples
        parent = plan.parent(data_x)
        confusable = confusable_labels(parent, data, plan.old_labels, options.replay_confusable)
    replayed = plan.task.sample_replay(
        rest, plan.old_labels, options.replay_per_label, options.seed, whole=confusable
    )
    return _Sets(list(data) + replayed, replayed, holdout, held, confusable)


def _share_caches(plan, sets: _Sets, with_feats: bool) -> None:
    """Under several processes: compute the caches in shards and gather them, so each text is
    computed once (no-op with one process: the caller's passes compute them)."""
    train, held = keys(plan, sets.train), keys(plan, sets.scored)
    if plan.cut is not None:  # the block inputs of every text, with the features from the same pass
        caches = [plan.hidden_cache]
        if with_feats or sets.holdout:
            caches.append(plan.features.cache)

        def compute(part):
            return cache_inputs(plan, part, *caches)

        processes.fill(train + held, caches, compute)
    else:
        wanted = train if with_feats else []
        processes.fill(wanted + held, [plan.features.cache], plan.features.each)


def _fill_caches(plan, sets: _Sets):
    """The passes over the data: block inputs and features. ``(train_x, hold_x)``."""
    options = plan.options
    tokens = plan.task.name != "sequence-classification"
    need_train_feats = (
        tokens
        or plan.features_only
        or options.distill > 0
        or imprint_wanted(options)
        or plan.calibrating
    )
    _share_caches(plan, sets, need_train_feats)
    if plan.cut is not None and (need_train_feats or sets.holdout):
        # the top-blocks path caches block inputs anyway: take the features from the same pass
        every = keys(plan, [*sets.train, *sets.scored])
        cache_inputs(plan, every, plan.hidden_cache, plan.features.cache)
    train_keys = keys(plan, sets.train)
    train_x = None
    if need_train_feats:
        train_x = plan.features.each(train_keys) if tokens else plan.features.of(train_keys)
    hold_x = plan.features.of(keys(plan, sets.holdout)) if sets.holdout else None
    if sets.holdout:
        plan.holdout_lengths = [len(plan.features.cache[k]) for k in keys(plan, sets.holdout)]
    return train_x, hold_x


def _what_trains(plan):
    """Set what trains (and re-initialise, protect): ``(trainable names, reinitialised, depths)``."""
    from . import modules as M

    model, paths, options = plan.model, plan.head.paths, plan.options
    trainable = M.set_trainable(model, paths, options.freeze, options.train_layers, plan.neck)
    reinit = M.reinit_top_blocks(model, paths, options.reinit_top) if options.reinit_top else []
    if options.protect_old_rows:
        M.protect_heads(model, paths, plan.old_ids)
    return trainable, reinit, M.layer_depths(model, paths, plan.probe)


def _calibration_set(plan, sets: _Sets, top):
    if not (plan.calibrating and (sets.held or sets.replayed)):
        return None
    if not (plan.features_only or top is not None):
        return None
    examples = sets.held or sets.replayed
    x = plan.features.of([e.text for e in examples])
    return CalibrationSet(
        examples, plan.parent(x), predictor(plan, examples, x, top), held_out=bool(sets.held)
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

    The model's task decides what an example is (:mod:`.tasks`): a text and its label
    (:class:`~headsurgeon.data.Example`, sequence classification) or a sentence's words and
    their tags (:class:`~headsurgeon.token_data.Sentence`, token classification).

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
        max_drop: the check's tolerance in points (default ``checks.DEFAULT_MAX_DROP``, for
            token classification ``entity_check.DEFAULT_MAX_DROP`` points of entity F1); the
            calibration spends ``options.calibrate_safety`` of it.
        max_label_drop: the check's per-label tolerance in points (default: not checked).
        head_path: explicit head path(s).
        feature_cache: text → backbone feature; read and filled, so callers can persist it.
        hidden_cache: text → input of the lowest trained block (with ``train_layers``; the
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
    from . import modules as M
    from .plan import make_plan
    from .tasks import task_for
    from .trainer import FeatureModel

    options = options or TrainOptions()
    start = time.perf_counter()
    task = task_for(model)
    task.check_data(data, replay, holdout, _labels.labels_of(model.config))
    if (options.seeds > 1 or options.eval_every) and not holdout:
        raise OptionsError("seeds > 1 and eval_every need a holdout to score on (--holdout)")
    tolerance = Tolerance(task.default_max_drop() if max_drop is None else max_drop, max_label_drop)
    plan = make_plan(
        model, tokenizer, data, old_labels=old_labels, options=options, tolerance=tolerance,
        head_path=head_path, caches=(feature_cache, hidden_cache),
    )  # fmt: skip
    require_examples(data, plan.new_labels, "the data", plan.task)
    _warn_unseen(plan, data)
    sets = _sets(plan, data, replay, holdout)
    train_x, hold_x = _fill_caches(plan, sets)
    initialised = init_new_rows(plan, trained_labels, data, sets.train, train_x)
    trainable, reinit, depths = _what_trains(plan)
    top = top_blocks(plan, keys(plan, [*sets.train, *sets.scored]))
    train_h = [plan.hidden_cache[k] for k in keys(plan, sets.train)] if top is not None else None
    rows = plan.task.rows(plan, sets.train, train_x, train_h)
    if plan.features_only:
        trained = FeatureModel(model.get_submodule(plan.head.paths[0]))
    elif top is not None:
        trained, depths = top, {f"model.{n}": d for n, d in depths.items()}
    else:
        trained = model
    predict = predictor(plan, holdout, hold_x, top) if holdout else None
    scorer = holdout_scorer(plan, predict, holdout) if holdout else None
    calibration = _calibration_set(plan, sets, top)
    uncalibrated = _calibration_skipped(plan, sets.held or sets.replayed, calibration)
    main = processes.is_main()  # the others train with it, then leave the rest to it
    try:
        runs = _run_seeds(plan, trained, rows, depths, scorer)
        M.fuse_heads(model, plan.head.paths)
        model.eval()  # Trainer leaves it in train mode: no dropout in calibration or the check
        calibrated = _calibrate(plan, calibration) if main else None
        heads = [p for path in plan.head.paths for p in model.get_submodule(path).parameters()]
        calibrated = processes.share_from_main(heads, calibrated)
        child_logits = predict() if holdout and main else None
    finally:
        if top is not None:
            top.restore()
    report = logits = None
    if holdout and main:
        logits = (plan.parent(hold_x), child_logits)
        report = plan.task.report(plan, holdout, *logits, tolerance)
    stats = {
        "task": plan.task.name,
        "data_examples": len(data),
        "replay_examples": len(sets.replayed),
        "replayed_whole": sets.confusable,
        "holdout_examples": len(holdout) if holdout else 0,
        "old_labels": len(plan.old_labels),
        "new_labels": plan.new_labels,
        "initialised": initialised,
        "trainable_parameters": sum(
            p.numel() for n, p in model.named_parameters() if n in set(trainable)
        ),
        "reinitialised_blocks": reinit,
        "neck_parameters": plan.neck,
        "features_cached": plan.features_only,
        "block_inputs_cached": top is not None,
        "calibrated_bias_shifts": calibrated.get("shifts", {}),
        "calibration": calibrated,
        "calibration_skipped": uncalibrated,
        "device": plan.device,
        "processes": processes.count(),
        "seeds": runs,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    return TrainOutcome(model, report, stats, logits)


def _calibrate(plan, calibration):
    """Run the calibration (``{}`` when there is none, or the head has no bias)."""
    if calibration is None:
        return {}
    linear = plan.model.get_submodule(plan.head.paths[0])
    if linear.bias is None:
        logger.warning(
            "the head %s has no bias: --calibrate has nothing to shift", plan.head.paths[0]
        )
        return {}
    calibration_run = Calibration(plan.labels, plan.new_labels, plan.options, plan.tolerance)
    return calibration_run.run(calibration, linear)


def _training_args(options: TrainOptions, seed: int, output_dir: str):
    from transformers import TrainingArguments

    device = resolve_device(options.device)
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=processes.per_process_batch(options.batch_size),
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        learning_rate=options.lr,
        weight_decay=options.weight_decay,
        warmup_steps=options.warmup,
        lr_scheduler_type="linear",
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=not options.progress,
        remove_unused_columns=False,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        # several processes: every trainable parameter is used unless the whole model trains
        ddp_find_unused_parameters=options.freeze == "none",
    )


def _run_seeds(plan, trained, rows, depths, scorer) -> list[dict]:
    """Train once per seed through :class:`HeadsurgeonTrainer`; keep the best seed's weights."""
    from .trainer import (
        SWA,
        HeadsurgeonTrainer,
        KeepBest,
        Rows,
        load_trainable,
        quiet_bars,
        trainable_state,
    )

    options, features_only = plan.options, plan.features_only
    initial = trainable_state(trained)
    best_score, best_state, runs, trial_bar = None, None, [], None
    # Trainer makes its output_dir even when it saves nothing: a scratch folder that a killed
    # run's successor deletes (named with the pid, like every temp folder headsurgeon makes)
    scratch = Path(tempfile.gettempdir()) / "train"
    atomic.remove_stale(scratch)
    with atomic.temp_folder(scratch, "trainer") as tmp:
        for k in range(options.seeds):
            seed = options.seed + k
            load_trainable(trained, initial)
            args = _training_args(options, seed, str(tmp))
            steps = _total_steps(len(rows), options)
            callbacks = []
            swa = None
            if options.swa:
                swa = SWA(start=max(1, int(steps * SWA_START)))
                callbacks.append(swa)
            keep = None
            if scorer is not None:
                trial = max(1, int(steps * SEED_TRIAL)) if options.seeds > 1 else None
                keep = KeepBest(
                    scorer,
                    every=options.eval_every,
                    patience=options.early_stopping,
                    trial_step=trial,
                    trial_bar=trial_bar,
                )
                callbacks.append(keep)
            trainer = HeadsurgeonTrainer(
                model=trained,
                args=args,
                train_dataset=Rows(rows),
                data_collator=plan.task.collator(plan.tokenizer, options.max_length),
                callbacks=callbacks,
                old_ids=plan.old_ids,
                distill=options.distill,
                temperature=options.temperature,
                depths=depths if trained is not None and not features_only else {},
                llrd=options.llrd,
            )
            quiet_bars(trainer, options.progress)  # a labelled bar, no metrics dict on stdout
            output = trainer.train()
            run = {
                "seed": seed,
                "steps": output.global_step,
                "loss": round(processes.mean(output.training_loss), 6),
            }
            if swa is not None:
                run["swa_updates"] = swa.updates
            if keep is not None:
                run.update(
                    score=keep.best,
                    pruned=keep.pruned,
                    stopped_early=keep.stopped_early,
                    history=[[s, round(v, 6)] for s, v in keep.history],
                )
                if keep.trial_score is not None and not keep.pruned:
                    trial_bar = max(trial_bar or keep.trial_score, keep.trial_score)
                if not keep.pruned and (best_score is None or keep.best > best_score):
                    best_score, best_state = keep.best, trainable_state(trained)
            runs.append(run)
            trainer.optimizer = trainer.lr_scheduler = None
    if best_state is not None:
        load_trainable(trained, best_state)
    for run in runs:
        run["kept"] = (
            best_score is not None and run.get("score") == best_score and not run.get("pruned")
        )
    return runs


def _total_steps(n_rows: int, options: TrainOptions) -> int:
    import math

    if options.max_steps > 0:
        return options.max_steps
    return max(1, math.ceil(math.ceil(n_rows / options.batch_size) * options.epochs))
