"""What trains: the backbone, the top blocks, the neck, and the head's new rows.

- :func:`set_trainable`: ``requires_grad`` by the freezing policy (``--freeze``,
  ``--train-layers``, the neck of :func:`neck_parameters`);
- :func:`reinit_top_blocks`: ``--reinit-top`` (the model's own init on the top blocks);
- :func:`~.blocks.top_blocks` (:mod:`.blocks`): the check that refuses more blocks than the
  model has;
- protected heads: :class:`ProtectedLinear` holds the old labels' rows and biases as frozen
  buffers and only the new rows as parameters; :func:`fuse_heads` turns it back into a plain
  ``nn.Linear`` whose old rows are the buffers copied bit for bit, so protection holds by
  construction (no optimizer can move a buffer);
- :func:`what_trains`: all of the above for one run's plan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..surgery import _swap
from .blocks import BlockProbe, encoder_blocks, parameter_owners, top_blocks

logger = logging.getLogger(__name__)


class ProtectedLinear(nn.Module):
    """A Linear head whose old rows are buffers (frozen) and new rows parameters (trained)."""

    def __init__(self, linear: nn.Linear, old_ids: Sequence[int]):
        super().__init__()
        n = linear.out_features
        new_ids = [i for i in range(n) if i not in set(old_ids)]
        self.in_features, self.out_features = linear.in_features, n
        w = linear.weight.detach()
        self.register_buffer(
            "old_ids", torch.tensor(list(old_ids), dtype=torch.long, device=w.device)
        )
        self.register_buffer("new_ids", torch.tensor(new_ids, dtype=torch.long, device=w.device))
        self.register_buffer("old_weight", w[self.old_ids].clone())
        self.new_weight = nn.Parameter(w[self.new_ids].clone())
        if linear.bias is not None:
            b = linear.bias.detach()
            self.register_buffer("old_bias", b[self.old_ids].clone())
            self.new_bias = nn.Parameter(b[self.new_ids].clone())
        else:
            self.old_bias = self.new_bias = None

    def _full(self, old, new):
        out = old.new_empty((self.out_features, *old.shape[1:]))
        return out.index_copy(0, self.old_ids, old).index_copy(0, self.new_ids, new.to(old.dtype))

    @property
    def weight(self) -> torch.Tensor:
        return self._full(self.old_weight, self.new_weight)

    @property
    def bias(self) -> torch.Tensor | None:
        return None if self.old_bias is None else self._full(self.old_bias, self.new_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def fused(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the old rows copied bit for bit from the buffers."""
        w = self.old_weight
        out = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.old_bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            out.weight.copy_(self.weight)
            if out.bias is not None:
                out.bias.copy_(self.bias)
        return out


def protect_heads(model, paths: Sequence[str], old_ids: Sequence[int]) -> None:
    """Replace each head at ``paths`` by a :class:`ProtectedLinear` (old rows frozen)."""
    for path in paths:
        _swap(model, path, ProtectedLinear(model.get_submodule(path), old_ids))


def fuse_heads(model, paths: Sequence[str]) -> None:
    """Turn every :class:`ProtectedLinear` at ``paths`` back into a plain ``nn.Linear``."""
    for path in paths:
        module = model.get_submodule(path)
        if isinstance(module, ProtectedLinear):
            _swap(model, path, module.fused())


def set_trainable(
    model, head_paths: Sequence[str], freeze: str, train_layers: int, neck: Sequence[str] = ()
) -> list[str]:
    """Set ``requires_grad`` by the freezing policy (``neck``: parameter names that train with
    the head, see :func:`neck_parameters`); return the trainable parameter names."""
    if freeze == "none":
        model.requires_grad_(True)
    else:
        model.requires_grad_(False)
        if train_layers:
            for block in top_blocks(model, head_paths, train_layers):
                block.requires_grad_(True)
        for name in neck:
            model.get_parameter(name).requires_grad_(True)
        for path in head_paths:
            model.get_submodule(path).requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def neck_parameters(model, head_paths: Sequence[str], probe: BlockProbe | None) -> list[str]:
    """The *neck*: parameters of the modules that run between the encoder blocks and the head
    (BERT's pooler, RoBERTa's ``classifier.dense``, DistilBERT's ``pre_classifier``, a final
    norm). Found by execution order (``probe``, see :func:`probe_model`), so encoder parameters
    registered after the blocks but used before them (MPNet's relative attention bias) are not
    taken. Empty when the model has no list of blocks (``probe`` is ``None``)."""
    if probe is None:
        return []
    after = set(probe.after)
    return [
        name
        for name, module in parameter_owners(model).items()
        if module in after
        and not any(_under(module, p) for p in head_paths)
        and model.get_parameter(name).is_floating_point()
    ]


def _under(name: str, path: str) -> bool:
    return name == path or name.startswith(path + ".")


def reinit_top_blocks(model, head_paths: Sequence[str], count: int) -> list[str]:
    """Re-initialise the top ``count`` encoder blocks with the model's own init; return their paths.

    Raises:
        OptionsError: ``count`` is more than the model has blocks.
    """
    path, blocks = encoder_blocks(model, head_paths)
    top_blocks(model, head_paths, count, "--reinit-top")
    done = []
    for i in range(len(blocks) - count, len(blocks)):
        for t in [*blocks[i].modules(), *blocks[i].parameters(), *blocks[i].buffers()]:
            if getattr(t, "_is_hf_initialized", False):  # transformers skips "loaded" tensors
                t._is_hf_initialized = False
        for module in blocks[i].modules():
            if hasattr(model, "_init_weights"):
                model._init_weights(module)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()
        done.append(f"{path}.{i}")
    return done


def what_trains(plan) -> tuple[list[str], list[str]]:
    """Set what trains (and re-initialise, protect): ``(trainable names, reinitialised)``."""
    model, paths, options = plan.model, plan.head.paths, plan.options
    trainable = set_trainable(model, paths, options.freeze, options.train_layers, plan.neck)
    reinit = reinit_top_blocks(model, paths, options.reinit_top) if options.reinit_top else []
    if options.protect_old_rows:
        protect_heads(model, paths, plan.old_ids)
    return trainable, reinit
