"""``train_model`` (in memory) and ``train`` (folder to folder, gated, atomic)."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from .. import labels as _labels
from ..data import Example, by_label, check_labels
from ..errors import DataError, OptionsError
from . import processes
from .calibration import Calibration, CalibrationSet, Tolerance
from .options import SEED_TRIAL, SWA_START, TrainOptions
from .replay import confusable_labels, sample_replay, split_slice
from .steps import (
    FeatureStore,
    cache_inputs,
    holdout_scorer,
    imprint_wanted,
    init_new_rows,
    parent_head,
    predictor,
    right_padded,
    top_blocks,
    top_cut,
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


def require_examples(data: Sequence[Example], new_labels: Sequence[str], source: str) -> None:
    """Refuse data with no example of any new label: it cannot teach one (their rows would only
    be pushed down, then calibration would raise them blind).

    Raises:
        DataError: naming the new labels and the labels the data has.
    """
    if not new_labels or any(e.label in set(new_labels) for e in data):
        return
    counts = by_label(data)
    have = ", ".join(f"{n} ({len(v)})" for n, v in counts.items()) or "no example"
    raise DataError(
        f"{source} has no example of the new label(s) {', '.join(new_labels)} (it has: {have}); "
        "add examples of them to the data"
    )


def _warn_unseen(data: Sequence[Example], new_labels: Sequence[str]) -> None:
    """A new label without examples beside others trains as a wrong answer only: say so."""
    have = {e.label for e in data}
    if missing := [n for n in new_labels if n not in have]:
        logger.warning(
            "the data has no example of %s: its row trains only as a wrong answer "
            "(add its examples to keep it)",
            ", ".join(missing),
        )


def _calibration_skipped(options, replayed, new_labels, calibration) -> str | None:
    """Why the default calibration does not run (warned once), or ``None``."""
    if options.calibrate is None or not new_labels:
        return None
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


def _share_caches(
    model, tokenizer, head, options, cut, feats, hidden_cache, train_rows, holdout, with_feats
) -> None:
    """Under several processes: compute the caches in shards and gather them, so each text is
    computed once (no-op with one process: the caller's passes compute them)."""
    held = [e.text for e in holdout or []]
    if cut is not None:  # the block inputs of every text, with the features from the same pass
        caches = [hidden_cache, feats.cache] if with_feats or holdout else [hidden_cache]

        def compute(part):
            return cache_inputs(model, tokenizer, head, options, part, cut, *caches)

        processes.fill([e.text for e in train_rows] + held, caches, compute)
    else:
        wanted = [e.text for e in train_rows] if with_feats else []
        processes.fill(wanted + held, [feats.cache], feats.of)


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

    Args:
        model: a classification model whose head already has every label of ``data``.
        tokenizer: its tokenizer.
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
        max_drop: the check's tolerance in points (default ``checks.DEFAULT_MAX_DROP``); the
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

    from ..locate import locate_head
    from . import modules as M

    options = options or TrainOptions()
    start = time.perf_counter()
    labels = _labels.labels_of(model.config)
    check_labels(data, labels, source="data")
    check_labels(
        replay, labels, source="replay", only_known="replay must hold only the model's labels"
    )
    if holdout is not None:
        check_labels(
            holdout,
            labels,
            source="holdout",
            only_known="holdout must hold only the model's labels",
        )
    if (options.seeds > 1 or options.eval_every) and not holdout:
        raise OptionsError("seeds > 1 and eval_every need a holdout to score on (--holdout)")
    if old_labels is None:
        seen = {e.label for e in data}
        old_labels = [n for n in labels if n not in seen]
    old_labels = [n for n in labels if n in set(old_labels)]
    new_labels = [n for n in labels if n not in set(old_labels)]
    require_examples(data, new_labels, "the data")
    _warn_unseen(data, new_labels)
    old_ids = [labels.index(n) for n in old_labels]
    head = locate_head(model, head_path)
    tokenizer = right_padded(tokenizer)
    device = resolve_device(options.device)
    processes.start(device)
    if not processes.is_main():  # one set of bars: the main process's
        options = dataclasses.replace(options, progress=False)
    model.to(device).eval()
    frozen = options.freeze == "backbone"
    wants_probe = (frozen and (options.train_neck or options.train_layers)) or options.llrd != 1
    probe = M.probe_model(model, tokenizer, head.paths) if wants_probe else None
    neck = M.neck_parameters(model, head.paths, probe) if frozen and options.train_neck else []
    features_only = frozen and options.train_layers == 0 and not neck
    if features_only and len(head.paths) > 1:
        raise OptionsError(
            "a model with parallel heads cannot train on cached features: use --freeze none"
        )

    calibrating = options.calibrate is not None and bool(new_labels) and frozen
    held, rest = split_slice(
        replay, old_labels, options.calibrate_per_label if calibrating else 0, options.seed
    )
    parent = parent_head(model, head.paths[0], old_ids)
    feats = FeatureStore(model, tokenizer, head.paths[0], options, feature_cache)
    confusable = []
    if options.replay_per_label and options.replay_confusable and replay:
        data_x = feats.of([e.text for e in data])  # a few texts: the new examples
        confusable = confusable_labels(parent(data_x), data, old_labels, options.replay_confusable)
    replayed = sample_replay(
        rest, old_labels, options.replay_per_label, options.seed, whole=confusable
    )
    train_rows = list(data) + replayed
    need_train_feats = (
        features_only or options.distill > 0 or imprint_wanted(options) or calibrating
    )
    hidden_cache = {} if hidden_cache is None else hidden_cache
    cut = top_cut(model, tokenizer, head, options, neck)
    _share_caches(
        model, tokenizer, head, options, cut, feats, hidden_cache, train_rows,
        [*(holdout or []), *held], need_train_feats,
    )  # fmt: skip
    if cut is not None and (need_train_feats or holdout):
        # the top-blocks path caches block inputs anyway: take the features from the same pass
        texts = [e.text for e in [*train_rows, *(holdout or []), *held]]
        cache_inputs(model, tokenizer, head, options, texts, cut, hidden_cache, feats.cache)
    train_x = feats.of([e.text for e in train_rows]) if need_train_feats else None
    hold_x = feats.of([e.text for e in holdout]) if holdout else None

    initialised = init_new_rows(
        model, head, labels, new_labels, trained_labels, data, train_rows, train_x, options
    )
    trainable = M.set_trainable(model, head.paths, options.freeze, options.train_layers, neck)
    reinit = (
        M.reinit_top_blocks(model, head.paths, options.reinit_top) if options.reinit_top else []
    )
    if options.protect_old_rows:
        M.protect_heads(model, head.paths, old_ids)
    depths = M.layer_depths(model, head.paths, probe)
    top, train_h, hold_h = top_blocks(
        model, tokenizer, options, train_rows, holdout, hidden_cache, cut, probe, extra=held
    )

    new_set = set(new_labels)
    rows = []
    for i, e in enumerate(train_rows):
        row = {
            "label": labels.index(e.label),
            "weight": options.new_weight if e.label in new_set else 1.0,
        }
        if features_only:
            row["features"] = train_x[i]
        else:
            row["text"] = e.text
        if top is not None:
            row["hidden"] = train_h[i]
        if options.distill > 0:
            row["parent_logits"] = parent(train_x[i : i + 1])[0]
        rows.append(row)

    from .trainer import FeatureModel

    if features_only:
        trained = FeatureModel(model.get_submodule(head.paths[0]))
    elif top is not None:
        trained, depths = top, {f"model.{n}": d for n, d in depths.items()}
    else:
        trained = model
    predict = predictor(
        model, tokenizer, head, holdout, hold_x, hold_h, top, features_only, options
    )
    scorer = holdout_scorer(model, predict, holdout, labels) if holdout else None
    calibration = None
    if calibrating and (held or replayed) and (features_only or top is not None):
        examples = held or replayed
        x = feats.of([e.text for e in examples])
        h = [hidden_cache[e.text] for e in examples] if top is not None else None
        calibration = CalibrationSet(
            examples,
            parent(x),
            predictor(model, tokenizer, head, examples, x, h, top, features_only, options),
            held_out=bool(held),
        )
    uncalibrated = _calibration_skipped(options, held or replayed, new_labels, calibration)
    main = processes.is_main()  # the others train with it, then leave the rest to it
    try:
        runs = _run_seeds(trained, rows, tokenizer, options, old_ids, depths, scorer, features_only)
        M.fuse_heads(model, head.paths)
        model.eval()  # Trainer leaves it in train mode: no dropout in calibration or the check
        calibrated = (
            _calibrate(
                model, head, labels, new_labels, calibration, options, max_drop, max_label_drop
            )
            if main
            else None
        )
        heads = [p for path in head.paths for p in model.get_submodule(path).parameters()]
        calibrated = processes.share_from_main(heads, calibrated)
        child_logits = predict() if holdout and main else None
    finally:
        if top is not None:
            top.restore()
    report = logits = None
    if holdout and main:
        from ..checks import DEFAULT_MAX_DROP, compare

        logits = (parent(hold_x), child_logits)
        report = compare(
            *logits,
            holdout,
            old_labels,
            labels,
            max_drop=DEFAULT_MAX_DROP if max_drop is None else max_drop,
            max_label_drop=max_label_drop,
        )
    stats = {
        "data_examples": len(data),
        "replay_examples": len(replayed),
        "replayed_whole": confusable,
        "holdout_examples": len(holdout) if holdout else 0,
        "old_labels": len(old_labels),
        "new_labels": new_labels,
        "initialised": initialised,
        "trainable_parameters": sum(
            p.numel() for n, p in model.named_parameters() if n in set(trainable)
        ),
        "reinitialised_blocks": reinit,
        "neck_parameters": neck,
        "features_cached": features_only,
        "block_inputs_cached": top is not None,
        "calibrated_bias_shifts": calibrated.get("shifts", {}),
        "calibration": calibrated,
        "calibration_skipped": uncalibrated,
        "device": device,
        "processes": processes.count(),
        "seeds": runs,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    return TrainOutcome(model, report, stats, logits)


def _calibrate(model, head, labels, new_labels, calibration, options, max_drop, max_label_drop):
    """Run the calibration (``{}`` when there is none, or the head has no bias)."""
    from ..checks import DEFAULT_MAX_DROP

    if calibration is None:
        return {}
    linear = model.get_submodule(head.paths[0])
    if linear.bias is None:
        logger.warning("the head %s has no bias: --calibrate has nothing to shift", head.paths[0])
        return {}
    tolerance = Tolerance(DEFAULT_MAX_DROP if max_drop is None else max_drop, max_label_drop)
    return Calibration(labels, new_labels, options, tolerance).run(calibration, linear)


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


def _run_seeds(
    trained, rows, tokenizer, options, old_ids, depths, scorer, features_only
) -> list[dict]:
    """Train once per seed through :class:`HeadsurgeonTrainer`; keep the best seed's weights."""
    from .trainer import (
        SWA,
        HeadsurgeonTrainer,
        KeepBest,
        Rows,
        load_trainable,
        make_collator,
        quiet_bars,
        trainable_state,
    )

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
                data_collator=make_collator(tokenizer, options.max_length),
                callbacks=callbacks,
                old_ids=old_ids,
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
