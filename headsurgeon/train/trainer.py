"""The transformers ``Trainer`` subclass headsurgeon trains with, and what it is fed.

Not a home-made loop: ``torchrun``/``accelerate launch`` give multi-GPU, and the usual Trainer
machinery (schedulers, callbacks) applies; :class:`TrainingProgress` reports its steps, epochs
and evaluations (:mod:`headsurgeon.progress`). :class:`HeadsurgeonTrainer` wires in
the loss of :mod:`.losses` (``compute_loss``) and the parameter groups of :mod:`.schedule`
(``create_optimizer``); the callbacks are :class:`~.selection.KeepBest` and
:class:`~.schedule.SWA`. Its inputs: :class:`Rows` batched by the task's collator
(:meth:`~headsurgeon.tasks.base.Task.collator`), the head alone as :class:`FeatureModel` on
cached features.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
import torch.nn as nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..errors import OptionsError
from .losses import distillation, target_cross_entropy, weighted_bce, weighted_cross_entropy
from .schedule import parameter_groups

logger = logging.getLogger(__name__)


def frozen_norms_eval(model: nn.Module) -> None:
    """Put the batch norms whose parameters are all frozen in eval mode: in train mode they
    would move their running statistics (buffers, not parameters) to the training batches'
    (the zero images a CNN's stem sees under cached stage inputs), so the frozen part of the
    saved model would no longer compute what the check measured."""
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params:
            if module.training and not any(p.requires_grad for p in params):
                module.eval()


class FeatureModel(nn.Module):
    """Wraps a head so Trainer can train it on cached backbone features."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=self.head(features))


class Rows(torch.utils.data.Dataset):
    """A list of dicts as a dataset (text or features, label, weight, parent logits).

    ``lengths``: each row's token count when the rows hold cached block inputs (``hidden``)
    and ``by_length``, else ``None``; :class:`HeadsurgeonTrainer` then batches rows of similar
    length together.
    """

    def __init__(self, rows: list[dict], by_length: bool = True):
        self.rows = rows
        hidden = by_length and bool(rows) and all("hidden" in r for r in rows)
        self.lengths = [len(r["hidden"]) for r in rows] if hidden else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class HeadsurgeonTrainer(Trainer):
    """Trainer with weighted CE + distillation loss and depth-wise parameter groups.

    Args (keyword, besides Trainer's):
        old_ids: ids of the old labels (distillation targets).
        distill, temperature: distillation weight and temperature.
        depths: parameter name → depth from the top (0 = head) for layer-wise LR decay.
        llrd: LR decay per depth.
    """

    def __init__(self, *args, old_ids, distill, temperature, depths, llrd, **kwargs):
        super().__init__(*args, **kwargs)
        self.old_ids = torch.as_tensor(list(old_ids), dtype=torch.long)
        self.distill, self.temperature = distill, temperature
        self.depths, self.llrd = depths, llrd
        self.loss_parts: dict[str, torch.Tensor] = {}  # the last batch's, see compute_loss
        #: called after each backward pass, before Trainer clips the gradients (telemetry)
        self.gradient_probe: Callable[[], None] | None = None

    def _get_train_sampler(self, train_dataset=None):
        """Rows of cached block inputs are padded per batch: draw batches of similar length
        (transformers' ``LengthGroupedSampler``, seeded by the run's seed) so the
        trained blocks do not run on padding; other rows are sampled as Trainer does."""
        from transformers.trainer_pt_utils import LengthGroupedSampler

        dataset = self.train_dataset if train_dataset is None else train_dataset
        lengths = getattr(dataset, "lengths", None)
        if lengths is None:
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        # a generator of its own, seeded alike in every process: each draws the same batches
        # and takes its share of each (the global RNG may differ between processes)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        generator = torch.Generator().manual_seed(seed)
        return LengthGroupedSampler(batch, lengths=lengths, generator=generator)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.gradient_probe is not None:
            self.gradient_probe()
        return loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The loss of :mod:`.losses`: BCE against per-label targets (multi-label batches),
        against per-position targets (token batches), else
        weighted cross-entropy plus distillation on the old labels.

        The batch's loss and its parts (``new``, ``other``, ``distill``; detached) are kept in
        :attr:`loss_parts` for the telemetry (:class:`~.telemetry.Telemetry`).
        """
        across, parts = self.per_process_mean, {}
        frozen_norms_eval(model)  # Trainer.training_step has just put every module in train mode
        if "multi_target" in inputs:  # several labels per example: BCE per (example, label)
            target, weight = inputs.pop("multi_target"), inputs.pop("target_weight")
            outputs = model(**inputs)
            logits = outputs.logits.float()
            new_ids = self._new_ids(logits.shape[-1])
            loss = weighted_bce(logits, target, weight, across, new_ids=new_ids, parts=parts)
            return self._keep_parts(loss, parts, outputs, return_outputs)
        if "target" in inputs:
            target, weight = inputs.pop("target"), inputs.pop("weight")
            inputs.pop("word_index", None)
            outputs = model(**inputs)
            logits = outputs.logits.float()
            new_ids = self._new_ids(logits.shape[-1])
            loss = target_cross_entropy(
                logits, target, weight, across, new_ids=new_ids, parts=parts
            )
            return self._keep_parts(loss, parts, outputs, return_outputs)
        labels = inputs.pop("labels")
        weight = inputs.pop("weight")
        parent = inputs.pop("parent_logits", None)
        outputs = model(**inputs)
        logits = outputs.logits.float()
        new_ids = self._new_ids(logits.shape[-1])
        loss = weighted_cross_entropy(logits, labels, weight, across, new_ids=new_ids, parts=parts)
        if self.distill and parent is not None:
            t = self.temperature
            loss = loss + distillation(
                logits, parent, self.old_ids, self.distill, t, across, parts=parts
            )
        return self._keep_parts(loss, parts, outputs, return_outputs)

    def _new_ids(self, n_labels: int) -> torch.Tensor:
        old = set(self.old_ids.tolist())
        return torch.tensor([i for i in range(n_labels) if i not in old], dtype=torch.long)

    def _keep_parts(self, loss, parts, outputs, return_outputs):
        self.loss_parts = {"loss": loss.detach(), **parts}
        return (loss, outputs) if return_outputs else loss

    def per_process_mean(self, local: torch.Tensor) -> torch.Tensor:
        """``local`` averaged over the processes (itself with one).

        Under several processes each sees a slice of the global batch and DDP averages their
        gradients: dividing each slice's sum by the mean of the slices' totals makes that
        average the single-process gradient of the whole batch (weighted mean, batch mean).
        """
        if self.accelerator.num_processes == 1:
            return local
        return self.accelerator.reduce(local.detach().clone(), reduction="mean")

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(opt_model))
            lr, weight_decay = self.args.learning_rate, self.args.weight_decay
            groups = parameter_groups(opt_model, self.depths, decay, lr, weight_decay, self.llrd)
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs.pop("lr", None)
            self.optimizer = cls(groups, lr=self.args.learning_rate, **kwargs)
        return self.optimizer


class TrainingProgress(TrainerCallback):
    """Training's progress, from Trainer's own loop: a :class:`~headsurgeon.progress.Step`
    named ``desc`` counting the optimizer steps, each with its batch's loss (a
    :class:`HeadsurgeonTrainer` keeps it in ``loss_parts``); a note per epoch with its mean
    loss (another Trainer's epoch loss comes from ``on_log``, with ``logging_strategy="epoch"``),
    and one per holdout evaluation of ``keep`` (:class:`~.selection.KeepBest`) and why it
    stopped early. Only the main process reports; Trainer's metrics dict is not printed.
    """

    def __init__(self, desc: str = "training", trainer: Trainer | None = None, keep=None):
        self.desc, self.trainer, self.keep = desc, trainer, keep
        self.step = None
        self.losses: list[float] = []
        self.epoch_loss: float | None = None  # the last epoch's mean, for the end line
        self.seen = 0  # the evaluations of ``keep`` already noted

    def on_train_begin(self, args, state, control, **kwargs):
        from ..progress import Step

        enabled = state.is_world_process_zero
        self.step = Step(self.desc, state.max_steps, "steps", enabled=enabled).start()
        self.losses, self.epoch_loss, self.seen = [], None, 0

    def on_step_end(self, args, state, control, **kwargs):
        parts = getattr(self.trainer, "loss_parts", None) or {}
        loss = float(parts["loss"]) if "loss" in parts else None
        if loss is not None:
            self.losses.append(loss)
        self.step.advance(to=state.global_step, info=None if loss is None else f"loss {loss:.4g}")
        self._evaluations()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.losses:
            self._epoch(state, sum(self.losses) / len(self.losses))
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        per_step = hasattr(self.trainer, "loss_parts")  # else: Trainer's mean loss of an epoch
        if not per_step and logs and "loss" in logs:
            self._epoch(state, logs["loss"])
        return control  # the metrics go to headsurgeon.json, not to the terminal

    def on_train_end(self, args, state, control, **kwargs):
        self._evaluations()
        keep = self.keep
        if keep is not None and keep.pruned:
            self.step.note("stopped at the seed trial: its holdout score trails an earlier seed's")
        elif keep is not None and keep.stopped_early:
            self.step.note(f"stopped early: no better holdout score in {keep.patience} evaluations")
        last = self.epoch_loss
        self.step.finish(info=None if last is None else f"last epoch's loss {last:.4f}")

    def _epoch(self, state, loss: float) -> None:
        epoch = max(1, math.ceil(state.epoch - 1e-6))
        self.epoch_loss = loss
        self.step.note(f"epoch {epoch}/{state.num_train_epochs}, loss {loss:.4f}")

    def _evaluations(self) -> None:
        history = self.keep.history if self.keep is not None else []
        for step, score in history[self.seen :]:
            self.step.note(f"holdout {score:.4f} at step {step} (best {self.keep.best:.4f})")
        self.seen = len(history)


def quiet_bars(trainer: Trainer, progress: bool, *, desc: str = "training", keep=None) -> None:
    """Replace Trainer's printers by :class:`TrainingProgress` (named ``desc``; ``keep``: the
    run's :class:`~.selection.KeepBest`, whose evaluations it notes) with ``progress``, else
    by nothing.

    Trainer prints its metrics dict on stdout (``PrinterCallback`` without bars, the bar's
    ``write`` with them); headsurgeon's stdout carries its report only.
    """
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(TrainingProgress(desc, trainer, keep))


#: ``TrainingArguments`` fields headsurgeon sets itself (from :class:`~.options.TrainOptions`,
#: or because its training depends on them): ``trainer_args`` may not override them; the value
#: says what to use instead
CONTROLLED_ARGS = {
    "output_dir": "nothing is saved there: save with `TrainOutcome.save`",
    "per_device_train_batch_size": "`options.batch_size` (the global batch)",
    "gradient_accumulation_steps": "`options.batch_size` (the global batch)",
    "num_train_epochs": "`options.epochs`",
    "max_steps": "`options.max_steps`",
    "learning_rate": "`options.lr` (and `options.llrd`)",
    "weight_decay": "`options.weight_decay`",
    "warmup_steps": "`options.warmup`",
    "warmup_ratio": "`options.warmup`",
    "lr_scheduler_type": "`options.warmup` (the schedule is linear)",
    "seed": "`options.seed`",
    "data_seed": "`options.seed`",
    "save_strategy": "nothing is saved during training: save with `TrainOutcome.save`",
    "eval_strategy": "`options.eval_every` (headsurgeon scores the holdout)",
    "load_best_model_at_end": "`options.eval_every` (headsurgeon keeps the best weights)",
    "remove_unused_columns": "the rows' columns are headsurgeon's",
    "use_cpu": "`options.device`",
    "ddp_find_unused_parameters": "it follows `options.freeze`",
}
#: fields that only matter when Trainer logs: giving one turns logging on (every step's loss)
_LOGGING_ARGS = ("report_to", "logging_steps", "logging_first_step", "logging_dir", "run_name")


def check_hooks(callbacks, trainer_args) -> tuple[list, dict]:
    """``(callbacks, trainer_args)`` of :func:`~headsurgeon.train.train_model`, checked before
    any model work: the callbacks are ``TrainerCallback`` instances, the arguments are
    ``TrainingArguments`` fields headsurgeon does not set itself (:data:`CONTROLLED_ARGS`).
    Asking for a logger (``report_to``, ``logging_steps``...) turns Trainer's logging on
    (``logging_strategy="steps"``) unless ``logging_strategy`` is given.

    Raises:
        OptionsError: naming the callback or the field, and what to use instead.
    """
    import dataclasses

    from transformers import TrainingArguments

    callbacks = list(callbacks or ())
    for c in callbacks:
        if not isinstance(c, TrainerCallback):
            raise OptionsError(
                f"`callbacks` must hold transformers TrainerCallback instances, found "
                f"{type(c).__name__ if not isinstance(c, type) else c.__name__ + ' (a class)'}"
            )
    if trainer_args is None:
        return callbacks, {}
    if not isinstance(trainer_args, dict):
        raise OptionsError(
            f"`trainer_args` must be a dict of TrainingArguments fields, found "
            f"{type(trainer_args).__name__}"
        )
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    for name in trainer_args:
        if name in CONTROLLED_ARGS:
            raise OptionsError(
                f"`trainer_args` sets {name!r}, which headsurgeon controls: use "
                f"{CONTROLLED_ARGS[name]}"
            )
        if name not in known:
            raise OptionsError(
                f"`trainer_args` sets {name!r}, which is not a field of transformers' "
                "TrainingArguments"
            )
    args = dict(trainer_args)
    if any(n in args for n in _LOGGING_ARGS) and "logging_strategy" not in args:
        args["logging_strategy"] = "steps"
    return callbacks, args
