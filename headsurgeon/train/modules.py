"""Module-level tools of training: protected heads, encoder blocks, freezing, feature capture.

A *protected* head holds the old labels' rows and biases as frozen buffers and only the new rows
as parameters; :func:`fuse_heads` turns it back into a plain ``nn.Linear`` whose old rows are the
buffers copied bit for bit, so protection holds by construction (no optimizer can move a buffer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UnsupportedModelError
from ..surgery import _swap

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


def encoder_blocks(model, head_paths: Sequence[str] = ()) -> tuple[str, nn.ModuleList]:
    """Find the encoder's blocks: the longest ``nn.ModuleList`` of same-class modules.

    Returns:
        ``(path, module_list)``.

    Raises:
        UnsupportedModelError: no such list (``--train-layers``/``--reinit-top``/``--llrd`` need one).
    """
    best = None
    for name, module in model.named_modules():
        if any(name == p or name.startswith(p + ".") for p in head_paths):
            continue
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best[1])):
                best = (name, module)
    if best is None:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no list of repeated encoder blocks: "
            "--train-layers, --reinit-top and --llrd need one; use --freeze none or backbone"
        )
    return best


def set_trainable(model, head_paths: Sequence[str], freeze: str, train_layers: int) -> list[str]:
    """Set ``requires_grad`` by the freezing policy; return the trainable parameter names."""
    if freeze == "none":
        model.requires_grad_(True)
    else:
        model.requires_grad_(False)
        if train_layers:
            _, blocks = encoder_blocks(model, head_paths)
            for block in list(blocks)[-train_layers:]:
                block.requires_grad_(True)
        for path in head_paths:
            model.get_submodule(path).requires_grad_(True)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def reinit_top_blocks(model, head_paths: Sequence[str], count: int) -> list[str]:
    """Re-initialise the top ``count`` encoder blocks with the model's own init; return their paths."""
    path, blocks = encoder_blocks(model, head_paths)
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


def layer_depths(model, head_paths: Sequence[str]) -> dict[str, int]:
    """Depth of each parameter from the top: 0 head and what follows the blocks (pooler), d for
    the d-th block from the top, ``blocks + 1`` for what comes before them (embeddings)."""
    try:
        path, blocks = encoder_blocks(model, head_paths)
    except UnsupportedModelError:
        return {n: 0 for n, _ in model.named_parameters()}
    n_blocks, depths, seen_blocks = len(blocks), {}, False
    for name, _ in model.named_parameters():
        if name.startswith(path + "."):
            index = int(name[len(path) + 1 :].split(".", 1)[0])
            depths[name] = n_blocks - index
            seen_blocks = True
        else:
            depths[name] = 0 if seen_blocks else n_blocks + 1
    return depths


def head_inputs(
    model,
    tokenizer,
    texts: Sequence[str],
    head_path: str,
    *,
    batch_size: int = 64,
    max_length: int = 128,
    device=None,
    progress: bool = False,
) -> torch.Tensor:
    """The head's inputs (backbone features) for ``texts``, captured by a forward pre-hook.

    One batched eval pass (``torch.inference_mode``); returns ``float32[n, in_features]`` on CPU.
    """
    from tqdm.auto import tqdm

    head = model.get_submodule(head_path)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    out = []
    try:
        with torch.inference_mode():
            for start in tqdm(
                range(0, len(texts), batch_size), disable=not progress, desc="features"
            ):
                batch = tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(device)
                captured.clear()
                model(**batch)
                if len(captured) != 1 or captured[0].dim() != 2:
                    raise UnsupportedModelError(
                        f"the head {head_path} is not applied once to one vector per example "
                        "(e.g. a decoder head scoring every position): train it with --freeze none"
                    )
                out.append(captured[0].float().cpu())
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, head.in_features)
