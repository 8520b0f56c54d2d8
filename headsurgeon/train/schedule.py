"""How the learning rate moves: layer-wise decay by depth (LLRD), warm-up, SWA.

- :func:`layer_depths`: each parameter's depth from the top (0: the head and the neck);
- :func:`parameter_groups`: the optimizer's groups, by depth (LR × ``llrd`` ** depth) and
  decay/no-decay;
- :func:`training_args`: transformers ``TrainingArguments`` of one seed's run (linear schedule
  with ``warmup`` steps or ratio, ``lr``, ``epochs``/``max_steps``); :func:`total_steps`;
- :class:`SWA`: stochastic weight averaging over the last steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from transformers import TrainerCallback

from ..errors import UnsupportedModelError
from . import processes
from .blocks import BlockProbe, encoder_blocks, parameter_owners
from .options import TrainOptions


def layer_depths(
    model, head_paths: Sequence[str], probe: BlockProbe | None = None
) -> dict[str, int]:
    """Depth of each parameter from the top: 0 head and what follows the blocks (pooler), d for
    the d-th block from the top, ``blocks + 1`` for what comes before them (embeddings).

    With a ``probe`` (see :func:`probe_model`) "before" and "after" are execution order, so a
    module registered after the blocks but run before them (MPNet's relative attention bias)
    gets the embeddings' depth; modules the probe did not place fall back to registration order.
    """
    try:
        path, blocks = encoder_blocks(model, head_paths)
    except UnsupportedModelError:
        return {n: 0 for n, _ in model.named_parameters()}
    n_blocks, depths, seen_blocks = len(blocks), {}, False
    before = set(probe.before) if probe is not None else set()
    after = set(probe.after) if probe is not None else set()
    owner = parameter_owners(model)
    for name, _ in model.named_parameters():
        if name.startswith(path + "."):
            index = int(name[len(path) + 1 :].split(".", 1)[0])
            depths[name] = n_blocks - index
            seen_blocks = True
        elif owner.get(name) in before:
            depths[name] = n_blocks + 1
        elif owner.get(name) in after:
            depths[name] = 0
        else:
            depths[name] = 0 if seen_blocks else n_blocks + 1
    return depths


def parameter_groups(
    model, depths: dict[str, int], decay: set[str], lr: float, weight_decay: float, llrd: float
) -> list[dict]:
    """The trainable parameters of ``model`` in groups by depth (``depths``, see
    :func:`layer_depths`; LR ``lr * llrd ** depth``) and by decay (``decay``: the names that
    take ``weight_decay``), ordered by depth."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        depth = depths.get(name, 0)
        key = (depth, name in decay)
        group = groups.setdefault(
            key,
            {
                "params": [],
                "name": f"depth{depth}{'' if key[1] else '-no-decay'}",
                "depth": depth,
                "lr": lr * llrd**depth,
                "weight_decay": weight_decay if key[1] else 0.0,
            },
        )
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def training_args(options: TrainOptions, seed: int, output_dir: str, overrides=None):
    """transformers ``TrainingArguments`` of one seed's run (nothing saved, logged or evaluated
    by Trainer: headsurgeon scores and records), with ``overrides`` (``train_model``'s
    ``trainer_args``, checked by :func:`~.trainer.check_hooks`) on top."""
    from transformers import TrainingArguments

    device = processes.resolve_device(options.device)
    args = dict(
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
        disable_tqdm=True,  # progress: headsurgeon's own callback (trainer.TrainingProgress)
        remove_unused_columns=False,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        # several processes: every trainable parameter is used unless the whole model trains
        ddp_find_unused_parameters=options.freeze == "none",
    )
    return TrainingArguments(**{**args, **(overrides or {})})


def total_steps(n_rows: int, options: TrainOptions) -> int:
    """The optimizer steps of one run over ``n_rows`` rows."""
    if options.max_steps > 0:
        return options.max_steps
    return max(1, math.ceil(math.ceil(n_rows / options.batch_size) * options.epochs))


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
