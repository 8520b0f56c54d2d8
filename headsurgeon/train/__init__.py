"""Train new labels without forgetting, on top of transformers ``Trainer``.

- :mod:`.options`: :class:`TrainOptions`, every default defined once (no torch);
- :mod:`.modules`: protected heads (old rows as frozen buffers, fused at save), encoder blocks,
  freezing, backbone-feature capture;
- :mod:`.trainer`: the ``Trainer`` subclass (distillation loss, depth-wise parameter groups)
  and callbacks (keep-best/early stopping/seed trials, SWA);
- :mod:`.replay`: which old examples are replayed and which are held out to calibrate;
- :mod:`.calibration`: the new labels' bias shift, chosen against the gate on held-out replay;
- :mod:`.processes`: several processes (torchrun/accelerate): shards, gathering, the main one;
- :mod:`.core`: :func:`train_model` (in memory, through ``Trainer``); :mod:`.steps` its steps;
- :mod:`.folders`: :func:`train` (model folder + data files → gated, atomically written folder).
"""

from __future__ import annotations

import importlib

from .options import TrainOptions

_LAZY = {
    "train": "folders",
    "train_model": "core",
    "TrainOutcome": "core",
    "TrainResult": "folders",
    "sample_replay": "replay",
}

__all__ = ["TrainOptions", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'headsurgeon.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
