"""Train new labels without forgetting, on top of transformers ``Trainer``.

Generic: every stage asks the model's task (:class:`headsurgeon.tasks.base.Task`: how to read
and key examples, collate a batch, take the head's input, score, gate) and never names one.
One file per concept, in the order a run goes through them:

- :mod:`.options`: :class:`TrainOptions`, every default defined once (no torch; the fields
  left ``None`` take the task's values);
- :mod:`.plan`: :class:`~.plan.TrainPlan`, what one run works on (labels, old/new ids, task,
  head, device, cut point, caches), built once and passed to every stage;
- :mod:`.replay`: which old examples are replayed, which are held out to calibrate, and the
  example sets of a run;
- :mod:`.blocks`: the encoder's blocks, and the probe of what runs before and after them;
- :mod:`.features`: the one pass that caches features or block inputs; the runner of the top
  blocks on them; the parent's old-label head;
- :mod:`.new_rows`: the new labels' rows before training (imprinted from their examples);
- :mod:`.freezing`: what trains (backbone, top blocks, neck), protected old rows (frozen
  buffers, fused back at the end);
- :mod:`.losses`: weighted cross-entropy, distillation on the old labels, soft targets per
  position;
- :mod:`.schedule`: layer-wise LR decay (LLRD) parameter groups, warm-up, SWA;
- :mod:`.scoring`: the current model's logits and holdout score by the cheapest path;
- :mod:`.selection`: seeds, keep-best and early stopping on the holdout;
- :mod:`.trainer`: the ``Trainer`` subclass that wires losses and schedule in;
- :mod:`.telemetry`: per-step curves (a ``TrainerCallback``), parameter checksums and the
  warnings of silent failures; ``training.json``/``training.png``;
- :mod:`.calibration`: the new labels' bias shift, chosen against the gate on held-out replay;
- :mod:`.processes`: several processes (torchrun/accelerate): shards, gathering, the main one;
- :mod:`.run`: :func:`train_model` (in memory): plan → cache → train and select → calibrate →
  check → outcome;
- :mod:`.folders`: :func:`train` (model folder + data files → gated, atomically written folder),
  a :class:`~.folders.TrainJob` run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .options import TrainOptions

if TYPE_CHECKING:  # what a type checker sees of the lazy names below
    from .folders import (
        TrainJob as TrainJob,
    )
    from .folders import (
        TrainResult as TrainResult,
    )
    from .folders import (
        train as train,
    )
    from .outcome import (
        TrainOutcome as TrainOutcome,
    )
    from .replay import (
        sample_replay as sample_replay,
    )
    from .run import (
        train_model as train_model,
    )

_LAZY = {
    "train": "folders",
    "train_model": "run",
    "TrainOutcome": "outcome",
    "TrainResult": "folders",
    "TrainJob": "folders",
    "sample_replay": "replay",
}

__all__ = ["TrainOptions", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'headsurgeon.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
