"""Which weights a run keeps: seeds, keep-best on the holdout, early stopping.

- :func:`run_seeds`: one training per seed (``--seeds``), weak seeds stopped at the trial step,
  the best seed's weights kept;
- :class:`KeepBest`: evaluates on the holdout every ``--eval-every`` steps and at the end, keeps
  the best weights, stops early (``--early-stopping``) and runs the seed trial;
- the holdout's scorer comes from :mod:`.scoring`.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
from transformers import TrainerCallback

from .. import atomic
from . import processes
from .options import SEED_TRIAL, SWA_START

logger = logging.getLogger(__name__)


def run_seeds(plan, trained, rows, depths, scorer, telemetry=None) -> list[dict]:
    """Train once per seed through :class:`~.trainer.HeadsurgeonTrainer`; keep the best seed's
    weights. Returns one record per seed (steps, loss, score, pruned, kept, ...); with a
    :class:`~.telemetry.Telemetry`, each seed's curve is recorded in it."""
    from ..progress import Step
    from .schedule import total_steps, training_args
    from .trainer import quiet_bars

    options = plan.options
    initial = trainable_state(trained)
    best_score, best_state, runs, trial_bar = None, None, [], None
    # Trainer makes its output_dir even when it saves nothing: a scratch folder that a killed
    # run's successor deletes (named with the pid, like every temp folder headsurgeon makes)
    scratch = Path(tempfile.gettempdir()) / "train"
    atomic.remove_stale(scratch)
    several = options.seeds > 1
    seeds = Step("seeds", options.seeds, "seeds", enabled=options.progress and several)
    with atomic.temp_folder(scratch, "trainer") as tmp, seeds:
        for k in range(options.seeds):
            seed = options.seed + k
            load_trainable(trained, initial)
            args = training_args(options, seed, str(tmp), plan.trainer_args)
            swa, keep = _callbacks(options, total_steps(len(rows), options), scorer, trial_bar)
            callbacks = [c for c in (swa, keep) if c is not None] + plan.callbacks
            trainer = _trainer(plan, trained, rows, depths, args, callbacks)
            desc = f"training seed {seed} ({k + 1}/{options.seeds})" if several else "training"
            quiet_bars(trainer, options.progress, desc=desc, keep=keep)  # no metrics on stdout
            if telemetry is not None:
                telemetry.begin(seed, trainer)
                trainer.add_callback(telemetry)
            output = trainer.train()
            runs.append(_seed_record(seed, output, swa, keep))
            if telemetry is not None:
                telemetry.end(output.global_step, keep)
            if keep is not None:
                if keep.trial_score is not None and not keep.pruned:
                    trial_bar = max(trial_bar or keep.trial_score, keep.trial_score)
                if not keep.pruned and (best_score is None or keep.best > best_score):
                    best_score, best_state = keep.best, trainable_state(trained)
            trainer.optimizer = trainer.lr_scheduler = None
            seeds.advance(info=_seed_line(runs[-1], best_score))
        seeds.finish(info=_kept_line(runs, best_score))
    if best_state is not None:
        load_trainable(trained, best_state)
    for k, run in enumerate(runs):
        if best_score is None:  # nothing scored: the last seed's weights are the model's
            run["kept"] = k == len(runs) - 1
        else:
            run["kept"] = run.get("score") == best_score and not run.get("pruned")
        if telemetry is not None:
            telemetry.seeds[k]["kept"] = run["kept"]
    return runs


def _seed_line(run: dict, best_score: float | None) -> str:
    """What the seeds' progress says after a seed: its holdout score, pruned or not."""
    if run.get("score") is None:
        return f"seed {run['seed']}: loss {run['loss']:.4f}"
    pruned = ", stopped at the trial" if run.get("pruned") else ""
    best = "" if best_score is None else f" (best {best_score:.4f})"
    return f"seed {run['seed']}: holdout {run['score']:.4f}{pruned}{best}"


def _kept_line(runs: list[dict], best_score: float | None) -> str | None:
    """What the seeds' progress says at the end: the seed kept and its holdout score."""
    if best_score is None:
        return None
    kept = [r["seed"] for r in runs if r.get("score") == best_score and not r.get("pruned")]
    return f"kept seed {kept[0]} (holdout {best_score:.4f})" if kept else None


def _callbacks(options, steps: int, scorer, trial_bar):
    """``(swa, keep)`` of one seed's run (``None`` when off): SWA over the last steps, keep-best
    with early stopping and the seed trial when there is a holdout to score and a choice to
    make (several seeds, or evaluations every ``eval_every`` steps)."""
    from .schedule import SWA

    swa = SWA(start=max(1, int(steps * SWA_START))) if options.swa else None
    if scorer is None or (options.seeds == 1 and not options.eval_every):
        return swa, None  # one seed, no evaluation: nothing to choose (the check scores it)
    trial = max(1, int(steps * SEED_TRIAL)) if options.seeds > 1 else None
    keep = KeepBest(
        scorer,
        every=options.eval_every,
        patience=options.early_stopping,
        trial_step=trial,
        trial_bar=trial_bar,
    )
    return swa, keep


def _trainer(plan, trained, rows, depths, args, callbacks):
    """The :class:`~.trainer.HeadsurgeonTrainer` of one seed's run."""
    from .trainer import HeadsurgeonTrainer, Rows

    options = plan.options
    return HeadsurgeonTrainer(
        model=trained,
        args=args,
        train_dataset=Rows(rows, by_length=plan.task.batches_by_length),
        data_collator=plan.task.collator(plan.tokenizer, options.max_length),
        callbacks=callbacks,
        old_ids=plan.old_ids,
        distill=options.distill,
        temperature=options.temperature,
        depths=depths if trained is not None and not plan.features_only else {},
        llrd=options.llrd,
    )


def _seed_record(seed: int, output, swa, keep) -> dict:
    """What one seed's run did (``output``: Trainer's; the callbacks of :func:`_callbacks`)."""
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
    return run


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
