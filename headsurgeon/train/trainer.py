"""The transformers ``Trainer`` subclass and callbacks headsurgeon trains with.

Not a home-made loop: ``torchrun``/``accelerate launch`` give multi-GPU, and the usual Trainer
machinery (schedulers, logging, progress bars) applies. What is added:

- ``compute_loss``: example-weighted cross-entropy plus optional distillation (KL between the
  parent's and the child's old-label distributions, temperature T, scaled by T²);
- ``create_optimizer``: parameter groups by depth (layer-wise LR decay) and decay/no-decay;
- callbacks: keep-best on the holdout with early stopping and seed trials; SWA.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

logger = logging.getLogger(__name__)


class FeatureModel(nn.Module):
    """Wraps a head so Trainer can train it on cached backbone features."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=self.head(features))


class Rows(torch.utils.data.Dataset):
    """A list of dicts as a dataset (text or features, label, weight, parent logits)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def make_collator(tokenizer, max_length: int) -> Callable[[list[dict]], dict]:
    """Batch rows: stack features, or tokenize texts with dynamic padding."""

    def collate(rows: list[dict]) -> dict:
        batch = {
            "labels": torch.tensor([r["label"] for r in rows], dtype=torch.long),
            "weight": torch.tensor([r["weight"] for r in rows], dtype=torch.float32),
        }
        if "parent_logits" in rows[0]:
            batch["parent_logits"] = torch.stack([r["parent_logits"] for r in rows])
        if "features" in rows[0]:
            batch["features"] = torch.stack([r["features"] for r in rows])
            return batch
        batch.update(
            tokenizer(
                [r["text"] for r in rows],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
        )
        if "hidden" in rows[0]:  # cached block inputs, padded like the tokens
            width = batch["input_ids"].shape[1]
            hidden = torch.zeros(len(rows), width, rows[0]["hidden"].shape[-1])
            for i, r in enumerate(rows):
                hidden[i, : len(r["hidden"])] = r["hidden"]
            batch["hidden"] = hidden
        return batch

    return collate


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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "target" in inputs:
            return self._target_loss(model, inputs, return_outputs)
        labels = inputs.pop("labels")
        weight = inputs.pop("weight")
        parent = inputs.pop("parent_logits", None)
        outputs = model(**inputs)
        logits = outputs.logits.float()
        ce = F.cross_entropy(logits, labels, reduction="none")
        loss = (ce * weight).sum() / self._per_process_mean(weight.sum())
        if self.distill and parent is not None:
            t = self.temperature
            child_old = logits[:, self.old_ids.to(logits.device)] / t
            kl = F.kl_div(
                F.log_softmax(child_old, -1),
                F.log_softmax(parent.float() / t, -1),
                reduction="sum",
                log_target=True,
            ) / self._per_process_mean(torch.tensor(float(len(labels)), device=logits.device))
            loss = loss + self.distill * kl * t * t
        return (loss, outputs) if return_outputs else loss

    def _target_loss(self, model, inputs, return_outputs):
        """Cross-entropy against a target distribution per scored position (one-hot for gold
        tags, the parent's old-tag distribution for distilled ``O`` words), weighted; token
        batches score their words' first subwords, positions of weight 0 do not count."""
        target, weight = inputs.pop("target"), inputs.pop("weight")
        inputs.pop("word_index", None)
        outputs = model(**inputs)
        logits = outputs.logits.float()
        ce = -(target * F.log_softmax(logits, -1)).sum(-1)
        loss = (ce * weight).sum() / self._per_process_mean(weight.sum()).clamp_min(1e-12)
        return (loss, outputs) if return_outputs else loss

    def _per_process_mean(self, local: torch.Tensor) -> torch.Tensor:
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
            groups: dict[tuple[int, bool], dict] = {}
            for name, p in opt_model.named_parameters():
                if not p.requires_grad:
                    continue
                depth = self.depths.get(name, 0)
                key = (depth, name in decay)
                group = groups.setdefault(
                    key,
                    {
                        "params": [],
                        "name": f"depth{depth}{'' if key[1] else '-no-decay'}",
                        "depth": depth,
                        "lr": self.args.learning_rate * self.llrd**depth,
                        "weight_decay": self.args.weight_decay if key[1] else 0.0,
                    },
                )
                group["params"].append(p)
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs.pop("lr", None)
            ordered = [groups[k] for k in sorted(groups)]
            self.optimizer = cls(ordered, lr=self.args.learning_rate, **kwargs)
        return self.optimizer


class TrainingBar(ProgressCallback):
    """Trainer's progress bar, labelled, without the metrics dict it prints at the end."""

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, desc="training", dynamic_ncols=True)
        self.current_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        return control  # the metrics go to headsurgeon.json, not to the terminal


def quiet_bars(trainer: Trainer, progress: bool) -> None:
    """Replace Trainer's printers: a labelled :class:`TrainingBar` with ``progress``, else none.

    Trainer prints its metrics dict on stdout (``PrinterCallback`` without bars, the bar's
    ``write`` with them); headsurgeon's stdout carries its report only.
    """
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(TrainingBar)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the trainable parameters (for keep-best and seed restarts)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


class KeepBest(TrainerCallback):
    """Evaluate on the holdout every ``every`` steps and at the end; keep the best weights.

    Also early stopping (``patience`` evaluations without improvement) and the seed trial:
    at ``trial_step`` a run scoring below ``trial_bar`` stops (it is a weak seed).
    """

    def __init__(
        self,
        score: Callable[[nn.Module], float],
        *,
        every=0,
        patience=0,
        trial_step=None,
        trial_bar=None,
    ):
        self.score, self.every, self.patience = score, every, patience
        self.trial_step, self.trial_bar = trial_step, trial_bar
        self.best, self.best_state, self.bad = -math.inf, None, 0
        self.history: list[tuple[int, float]] = []
        self.trial_score: float | None = None
        self.pruned = self.stopped_early = False

    def _evaluate(self, model, step: int) -> float:
        value = self.score(model)
        self.history.append((step, value))
        if value > self.best:
            self.best, self.best_state, self.bad = value, trainable_state(model), 0
        else:
            self.bad += 1
        return value

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if self.every and step % self.every == 0:
            self._evaluate(model, step)
            if self.patience and self.bad >= self.patience:
                logger.info("early stopping at step %d (best %.4f)", step, self.best)
                self.stopped_early = control.should_training_stop = True
        if self.trial_step is not None and step == self.trial_step:
            self.trial_score = value = (
                self.history[-1][1]
                if self.history and self.history[-1][0] == step
                else self._evaluate(model, step)
            )
            if self.trial_bar is not None and value < self.trial_bar:
                logger.info(
                    "seed trial: %.4f < %.4f at step %d, stopping", value, self.trial_bar, step
                )
                self.pruned = control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.history or self.history[-1][0] != state.global_step:
            self._evaluate(model, state.global_step)
        if self.best_state is not None:
            load_trainable(model, self.best_state)


class SWA(TrainerCallback):
    """Stochastic weight averaging (``torch.optim.swa_utils``) over the last steps.

    From ``start`` (a step) on: the trainable weights are averaged into an ``AveragedModel``
    after every step and the LR follows ``SWALR`` (each group at ``lr_factor`` × its initial LR);
    at the end the
    averaged weights replace the trained ones.
    """

    def __init__(self, start: int, lr_factor: float = 0.5):
        self.start, self.lr_factor = start, lr_factor
        self.averaged = self.scheduler = None
        self.updates = 0

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        from torch.optim.swa_utils import SWALR, AveragedModel

        if state.global_step < self.start:
            return control
        if self.averaged is None:
            self.averaged = AveragedModel(model, use_buffers=False)
            swa_lrs = [
                g.get("initial_lr", g["lr"]) * self.lr_factor for g in optimizer.param_groups
            ]
            self.scheduler = SWALR(
                optimizer, swa_lr=swa_lrs, anneal_epochs=1, anneal_strategy="linear"
            )
        self.averaged.update_parameters(model)
        self.scheduler.step()
        self.updates += 1
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.averaged is None:
            return control
        averaged = dict(self.averaged.module.named_parameters())
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.copy_(averaged[name])
        return control


def head_of(model: nn.Module, paths: Sequence[str]) -> list[nn.Module]:
    return [model.get_submodule(p) for p in paths]
