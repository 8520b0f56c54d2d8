"""``train_model`` (in memory) and ``train`` (folder to folder, gated, atomic)."""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import labels as _labels
from .. import record as _record
from ..data import LABEL_COLUMN, TEXT_COLUMN, Example, by_label, check_labels, read_examples
from ..errors import CheckpointError, GateFailedError, OptionsError
from .options import SEED_TRIAL, SWA_START, TrainOptions

logger = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What :func:`train_model` did.

    Attributes:
        model: the trained model (heads fused back into plain ``nn.Linear``), on its device.
        report: the old-label :class:`~headsurgeon.checks.CheckReport` (``None`` without holdout).
        stats: JSON-able facts: data sizes, labels, steps, seeds tried, scores, wall time.
    """

    model: Any
    report: Any = None
    stats: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``mps`` when available, else ``cpu``."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def sample_replay(replay: Sequence[Example], labels: Sequence[str], per_label: int, seed: int):
    """``per_label`` examples of each label in ``labels`` (all when 0), seeded, in a stable order."""
    groups = by_label(e for e in replay if e.label in set(labels))
    rng = random.Random(seed)
    out = []
    for name in labels:
        group = groups.get(name, [])
        out.extend(
            group if not per_label or len(group) <= per_label else rng.sample(group, per_label)
        )
    return out


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
    head_path: str | Sequence[str] | None = None,
    feature_cache: MutableMapping[str, Any] | None = None,
    hidden_cache: MutableMapping[str, Any] | None = None,
) -> TrainOutcome:
    """Train ``model`` on ``data`` (new labels' examples) without forgetting its old labels.

    Args:
        model: a classification model whose head already has every label of ``data``.
        tokenizer: its tokenizer.
        data: training examples (usually of the new labels, may include old ones).
        replay: old examples to sample ``options.replay_per_label`` per old label from.
        holdout: examples to evaluate on (keep-best, seeds, and the old-label check).
        options: :class:`TrainOptions`.
        old_labels: labels whose rows are protected and checked (default: every label that
            has no example in ``data``); the others are "new".
        trained_labels: new labels whose rows were trained before (not re-initialised unless
            ``options.init`` is given).
        max_drop: the check's tolerance in points (default ``checks.DEFAULT_MAX_DROP``).
        head_path: explicit head path(s).
        feature_cache: text → backbone feature; read and filled, so callers can persist it.
        hidden_cache: text → input of the lowest trained block (with ``train_layers``); read
            and filled likewise. Only the top blocks then run during training and evaluation.

    Returns:
        a :class:`TrainOutcome`; the check's verdict is in ``report.passed`` (not enforced).

    Raises:
        DataError: a label in data/replay/holdout that the model does not have.
        OptionsError: inconsistent options (e.g. ``seeds > 1`` without a holdout).
    """

    from ..locate import locate_head
    from . import modules as M

    options = options or TrainOptions()
    start = time.perf_counter()
    labels = _labels.labels_of(model.config)
    check_labels(data, labels, source="data")
    check_labels(replay, labels, source="replay data")
    if holdout is not None:
        check_labels(holdout, labels, source="holdout")
    if (options.seeds > 1 or options.eval_every) and not holdout:
        raise OptionsError("seeds > 1 and eval_every need a holdout to score on (--holdout)")
    if old_labels is None:
        seen = {e.label for e in data}
        old_labels = [n for n in labels if n not in seen]
    old_labels = [n for n in labels if n in set(old_labels)]
    new_labels = [n for n in labels if n not in set(old_labels)]
    old_ids = [labels.index(n) for n in old_labels]
    head = locate_head(model, head_path)
    device = resolve_device(options.device)
    model.to(device).eval()
    if options.features_only and len(head.paths) > 1:
        raise OptionsError(
            "a model with parallel heads cannot train on cached features: use --freeze none"
        )

    replayed = sample_replay(replay, old_labels, options.replay_per_label, options.seed)
    train_rows = list(data) + replayed
    parent = _parent_head(model, head.paths[0], old_ids)
    need_train_feats = options.features_only or options.distill > 0 or _imprint_wanted(options)
    feats = _Features(model, tokenizer, head.paths[0], options, feature_cache)
    train_x = feats.of([e.text for e in train_rows]) if need_train_feats else None
    hold_x = feats.of([e.text for e in holdout]) if holdout else None

    initialised = _init_new_rows(
        model, head, labels, new_labels, trained_labels, data, train_rows, train_x, options
    )
    trainable = M.set_trainable(model, head.paths, options.freeze, options.train_layers)
    reinit = (
        M.reinit_top_blocks(model, head.paths, options.reinit_top) if options.reinit_top else []
    )
    if options.protect_old_rows:
        M.protect_heads(model, head.paths, old_ids)
    depths = M.layer_depths(model, head.paths)
    top, train_h, hold_h = _top_blocks(
        model, tokenizer, head, options, train_rows, holdout, hidden_cache
    )

    new_set = set(new_labels)
    rows = []
    for i, e in enumerate(train_rows):
        row = {
            "label": labels.index(e.label),
            "weight": options.new_weight if e.label in new_set else 1.0,
        }
        if options.features_only:
            row["features"] = train_x[i]
        else:
            row["text"] = e.text
        if top is not None:
            row["hidden"] = train_h[i]
        if options.distill > 0:
            row["parent_logits"] = parent(train_x[i : i + 1])[0]
        rows.append(row)

    from .trainer import FeatureModel

    if options.features_only:
        trained = FeatureModel(model.get_submodule(head.paths[0]))
    elif top is not None:
        trained, depths = top, {f"model.{n}": d for n, d in depths.items()}
    else:
        trained = model
    predict = _predictor(model, tokenizer, head, holdout, hold_x, hold_h, top, options)
    scorer = _scorer(model, predict, holdout, labels) if holdout else None
    try:
        runs = _run_seeds(trained, rows, tokenizer, options, old_ids, depths, scorer)
        M.fuse_heads(model, head.paths)
        shifts = _calibrate(model, head, labels, new_labels, replayed, train_x, parent, options)
        model.eval()
        child_logits = predict() if holdout else None
    finally:
        if top is not None:
            top.restore()
    report = None
    if holdout:
        from ..checks import DEFAULT_MAX_DROP, compare

        report = compare(
            parent(hold_x),
            child_logits,
            holdout,
            old_labels,
            labels,
            max_drop=DEFAULT_MAX_DROP if max_drop is None else max_drop,
        )
    stats = {
        "data_examples": len(data),
        "replay_examples": len(replayed),
        "holdout_examples": len(holdout) if holdout else 0,
        "old_labels": len(old_labels),
        "new_labels": new_labels,
        "initialised": initialised,
        "trainable_parameters": sum(
            p.numel() for n, p in model.named_parameters() if n in set(trainable)
        ),
        "reinitialised_blocks": reinit,
        "features_cached": options.features_only,
        "block_inputs_cached": top is not None,
        "calibrated_bias_shifts": shifts,
        "device": device,
        "seeds": runs,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    return TrainOutcome(model, report, stats)


def _imprint_wanted(options: TrainOptions) -> bool:
    return options.init in (None, "imprint")


class _Features:
    """Backbone features (the head's inputs) of texts, from a cache or one batched pass."""

    def __init__(self, model, tokenizer, head_path, options, cache):
        self.model, self.tokenizer, self.head_path, self.options = (
            model,
            tokenizer,
            head_path,
            options,
        )
        self.cache = {} if cache is None else cache

    def of(self, texts: Sequence[str]):
        import torch

        from .modules import head_inputs

        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            logger.info("computing backbone features of %d texts", len(missing))
            values = head_inputs(
                self.model,
                self.tokenizer,
                missing,
                self.head_path,
                batch_size=max(self.options.batch_size, 64),
                max_length=self.options.max_length,
                progress=self.options.progress,
            )
            self.cache.update(zip(missing, values, strict=True))
        return torch.stack([self.cache[t] for t in texts])


def _parent_head(model, path: str, old_ids: Sequence[int]):
    """The parent's old-label head as a function: features → old-label logits (CPU, float32)."""
    import torch

    head = model.get_submodule(path)
    idx = torch.tensor(list(old_ids))
    w = head.weight.detach().float().cpu()[idx].clone()
    b = None if head.bias is None else head.bias.detach().float().cpu()[idx].clone()

    def logits(x):
        return torch.nn.functional.linear(x.float(), w, b)

    return logits


def _init_new_rows(
    model, head, labels, new_labels, trained_labels, data, train_rows, train_x, options
):
    """(Re)initialise new rows that were never trained (or all when ``init`` is explicit)."""
    import torch

    from ..surgery import _new_rows

    explicit = options.init is not None
    targets = [n for n in new_labels if explicit or n not in set(trained_labels)]
    have = {e.label for e in data}
    if not explicit:
        targets = [n for n in targets if n in have]  # imprint needs examples; others keep theirs
    if not targets:
        return {}
    init = options.init or "imprint"
    feats = None
    if init == "imprint":
        missing = [n for n in targets if n not in have]
        if missing:
            raise OptionsError(f"init 'imprint' needs examples of {', '.join(missing)} in the data")
        feats = {n: train_x[[i for i, e in enumerate(train_rows) if e.label == n]] for n in targets}
    old_ids = [i for i, n in enumerate(labels) if n not in set(new_labels)]
    for path in head.paths:
        linear = model.get_submodule(path)
        old = torch.nn.Linear(linear.in_features, len(old_ids), bias=linear.bias is not None)
        with torch.no_grad():
            old.weight.copy_(linear.weight[old_ids])
            if linear.bias is not None:
                old.bias.copy_(linear.bias[old_ids])
            rows, biases = _new_rows(model, old, targets, init, "mean", feats, options.seed)
            for j, name in enumerate(targets):
                i = labels.index(name)
                linear.weight[i].copy_(rows[j].to(linear.weight))
                if biases is not None:
                    linear.bias[i].copy_(biases[j].to(linear.bias))
    return {n: init for n in targets}


def _calibrate(model, head, labels, new_labels, replayed, train_x, parent, options):
    """Shift each new label's bias so that ``options.calibrate`` points of the replayed old
    examples the parent got right (split evenly over the new labels) are predicted as it.

    The bias then trades recall against false positives on known data: raised when the label
    is well separated, lowered when it steals. Needs cached features (frozen backbone) and
    replay; returns ``{label: shift}``.
    """
    import torch

    if options.calibrate is None or not replayed or not new_labels:
        return {}
    if not options.features_only:
        logger.info("calibrate needs the backbone frozen (cached features); skipped")
        return {}
    linear = model.get_submodule(head.paths[0])
    if linear.bias is None:
        return {}
    x = train_x[len(train_x) - len(replayed) :]
    old_names = [n for n in labels if n not in set(new_labels)]
    parent_pred = [old_names[i] for i in parent(x).argmax(-1).tolist()]
    right = torch.tensor([p == e.label for p, e in zip(parent_pred, replayed, strict=True)])
    x = x[right].to(linear.weight)
    allowed = int(options.calibrate / 100 / len(new_labels) * len(x))
    shifts = {}
    with torch.no_grad():
        for name in new_labels:
            j = labels.index(name)
            logits = torch.nn.functional.linear(x, linear.weight, linear.bias).float()
            margin = logits[:, j] - torch.cat([logits[:, :j], logits[:, j + 1 :]], 1).max(1).values
            if allowed >= len(margin):
                continue
            # the (allowed+1)-th highest margin lands just below 0: ties go to the old label
            shift = -margin.sort(descending=True).values[allowed].item() - 1e-4
            linear.bias[j] += shift
            shifts[name] = round(shift, 4)
    return shifts


def _top_blocks(model, tokenizer, head, options, train_rows, holdout, cache):
    """With ``train_layers`` K: cache the inputs of the K-th block from the top and wrap the
    model so only the top blocks run. ``(None, None, None)`` when not applicable."""
    from ..errors import UnsupportedModelError
    from .modules import TopBlocks, block_inputs, encoder_blocks

    if options.freeze != "backbone" or not options.train_layers:
        return None, None, None
    if getattr(tokenizer, "padding_side", "right") != "right":  # cached rows are right-padded
        return None, None, None
    _, blocks = encoder_blocks(model, head.paths)
    index = len(blocks) - options.train_layers
    if index <= 0:
        return None, None, None
    cache = {} if cache is None else cache
    texts = [e.text for e in train_rows] + [e.text for e in holdout or []]
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    try:
        if missing:
            logger.info("computing block-%d inputs of %d texts", index, len(missing))
            values = block_inputs(
                model,
                tokenizer,
                missing,
                blocks,
                index,
                batch_size=max(options.batch_size, 64),
                max_length=options.max_length,
                progress=options.progress,
            )
            cache.update(zip(missing, values, strict=True))
    except UnsupportedModelError as e:
        logger.info("%s", e)
        return None, None, None
    train_h = [cache[e.text] for e in train_rows]
    hold_h = [cache[e.text] for e in holdout] if holdout else None
    return TopBlocks(model, blocks, index), train_h, hold_h


def _predictor(model, tokenizer, head, holdout, hold_x, hold_h, top, options):
    """A function returning the current model's holdout logits (CPU float32), by the cheapest
    path: the head on cached features, the top blocks on cached block inputs, or the model."""
    import torch

    from .trainer import make_collator

    def predict():
        if options.features_only:
            linear = model.get_submodule(head.paths[0])
            with torch.no_grad():
                return linear(hold_x.to(next(linear.parameters()).device)).float().cpu()
        if top is not None:
            collate = make_collator(tokenizer, options.max_length)
            rows = [
                {"text": e.text, "hidden": h, "label": 0, "weight": 1.0}
                for e, h in zip(holdout, hold_h, strict=True)
            ]
            out = []
            device = next(model.parameters()).device
            with torch.no_grad():
                for start in range(0, len(rows), 64):
                    batch = collate(rows[start : start + 64])
                    batch.pop("labels"), batch.pop("weight")
                    out.append(
                        top(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
                    )
            return torch.cat(out)
        from ..checks import predict_logits

        return (
            predict_logits(
                model,
                tokenizer,
                [e.text for e in holdout],
                batch_size=max(options.batch_size, 64),
                max_length=options.max_length,
                progress=options.progress,
            )
            .float()
            .cpu()
        )

    return predict


def _scorer(model, predict, holdout, labels):
    """Holdout accuracy of the model being trained (every label, old and new)."""
    import torch

    gold = torch.tensor([labels.index(e.label) for e in holdout])

    def score(_trained) -> float:
        was = model.training
        model.eval()
        try:
            logits = predict()
        finally:
            model.train(was)
        return (logits.argmax(-1) == gold).float().mean().item()

    return score


def _training_args(options: TrainOptions, seed: int, output_dir: str):
    from transformers import TrainingArguments

    device = resolve_device(options.device)
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=options.batch_size,
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
    )


def _run_seeds(trained, rows, tokenizer, options, old_ids, depths, scorer) -> list[dict]:
    """Train once per seed through :class:`HeadsurgeonTrainer`; keep the best seed's weights."""
    from transformers import PrinterCallback

    from .trainer import (
        SWA,
        HeadsurgeonTrainer,
        KeepBest,
        Rows,
        load_trainable,
        make_collator,
        trainable_state,
    )

    initial = trainable_state(trained)
    best_score, best_state, runs, trial_bar = None, None, [], None
    with tempfile.TemporaryDirectory(prefix="headsurgeon-train-") as tmp:
        for k in range(options.seeds):
            seed = options.seed + k
            load_trainable(trained, initial)
            args = _training_args(options, seed, tmp)
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
                depths=depths if trained is not None and not options.features_only else {},
                llrd=options.llrd,
            )
            if not options.progress:  # no metrics dict printed on stdout
                trainer.remove_callback(PrinterCallback)
            output = trainer.train()
            run = {
                "seed": seed,
                "steps": output.global_step,
                "loss": round(output.training_loss, 6),
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


@dataclass
class TrainResult:
    """What :func:`train` did: the output folder (``None`` when the gate refused), the check
    report, the options and the stats of :class:`TrainOutcome`."""

    output: Path | None
    report: Any
    options: TrainOptions
    stats: dict[str, Any]
    added: list[str] = field(default_factory=list)

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
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    head_path: str | Sequence[str] | None = None,
) -> TrainResult:
    """Train the model saved in ``model_dir`` on ``data`` and write it to ``output``, gated.

    Old labels are the record's ``parent_labels`` (``headsurgeon.json``) when the model has
    one, else every label of the model; the others are new. With ``holdout``, the parent (the
    model in ``model_dir``, restricted to the old labels) and the trained child are compared
    on it; a drop beyond ``max_drop`` raises :class:`GateFailedError` and writes nothing,
    unless ``force``, which writes the model and records the failed check.

    Args:
        model_dir: a folder saved with ``save_pretrained`` (with its tokenizer).
        data: training file (``.csv``/``.tsv``/``.jsonl``) of the new labels' examples.
        output: a new (or empty) folder; written atomically, tokenizer files carried over.
        replay: file of old labels' examples to replay; holdout: file to check on.
        options: :class:`TrainOptions`.
        add: first add the data's labels the model does not have (imprinted from their examples).
        force: write even when the check fails (the failure is recorded).
        max_drop: check tolerance in points (default ``checks.DEFAULT_MAX_DROP``).
        text_column, label_column: column names of the data files.
        head_path: explicit head path(s).

    Returns:
        a :class:`TrainResult`.

    Raises:
        DataError: unreadable files or labels the model does not have (without ``add``).
        CheckpointError: ``output`` exists and is not empty, or is ``model_dir``.
        GateFailedError: the old-label check failed (``.report`` holds the report).

    Example:
        >>> result = train("grown/", "new.csv", "tuned/", replay="old.csv", holdout="test.csv")
        >>> result.report.drop_pts
        0.1
    """
    from transformers import AutoTokenizer

    from ..checkpoint import _write_model
    from ..models import load_model, read_config
    from ..surgery import add_labels

    options = options or TrainOptions()
    src, output = Path(model_dir), Path(output)
    _check_output(src, output)
    read = {"text_column": text_column, "label_column": label_column}
    examples = read_examples(data, **read)
    replayed = read_examples(replay, **read) if replay else []
    held = read_examples(holdout, **read) if holdout else None
    labels = _labels.labels_of(read_config(src))
    record = _record.record_for(src, labels)
    added = [n for n in dict.fromkeys(e.label for e in examples) if n not in labels] if add else []
    check_labels(examples, labels + added, source=str(data))

    model = load_model(src)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    if added:
        add_labels(model, added, init="mean", head_path=head_path)
    labels = _labels.labels_of(model.config)
    old = [n for n in record["parent_labels"] if n in labels] or labels
    trained_before = [
        n
        for event in record["events"]
        if event.get("op") == "train"
        for n in event.get("trained_labels", [])
    ]
    outcome = train_model(
        model,
        tokenizer,
        examples,
        replay=replayed,
        holdout=held,
        options=options,
        old_labels=old,
        trained_labels=trained_before,
        max_drop=max_drop,
        head_path=head_path,
    )
    result = TrainResult(None, outcome.report, options, outcome.stats, added)
    if added:
        _record.add_event(record, "add-label", labels=added, init="imprint", by="train --add")
    event = {
        "options": options.to_dict(),
        "data": str(data),
        "replay": replay and str(replay),
        "holdout": holdout and str(holdout),
        "trained_labels": [n for n in labels if n not in set(old)],
        **{k: v for k, v in outcome.stats.items() if k != "seeds"},
        "seeds": [{k: v for k, v in r.items() if k != "history"} for r in outcome.stats["seeds"]],
    }
    if outcome.report is not None:
        event["check"] = {"passed": outcome.report.passed, **outcome.report.to_dict()}
    _record.add_event(record, "train", **event)
    if outcome.report is not None and not outcome.report.passed and not force:
        raise GateFailedError(
            f"old-label accuracy dropped {outcome.report.drop_pts:.2f} pt "
            f"(> {outcome.report.max_drop} pt allowed): {output} not written; "
            "add replay (--replay), keep the backbone frozen, or --force to write it anyway",
            report=outcome.report,
        )
    model.to("cpu")
    result.output = _write_model(model, record, src, output)
    return result


def _check_output(src: Path, output: Path) -> None:
    if output.resolve() == src.resolve():
        raise CheckpointError(f"-o {output} is the input model; choose a new folder")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise CheckpointError(f"output {output} already exists and is not empty; choose another -o")
