"""Module-level tools of training: protected heads, encoder blocks, freezing, feature capture.

A *protected* head holds the old labels' rows and biases as frozen buffers and only the new rows
as parameters; :func:`fuse_heads` turns it back into a plain ``nn.Linear`` whose old rows are the
buffers copied bit for bit, so protection holds by construction (no optimizer can move a buffer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OptionsError, UnsupportedModelError
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


def top_blocks(
    model, head_paths: Sequence[str], k: int, option: str = "--train-layers"
) -> list[nn.Module]:
    """The top ``k`` encoder blocks (``--train-layers K``, ``--reinit-top K``).

    Raises:
        OptionsError: ``k`` is more than the model has blocks (``option`` names the flag).
        UnsupportedModelError: the model has no list of blocks (see :func:`encoder_blocks`).
    """
    path, blocks = encoder_blocks(model, head_paths)
    if k > len(blocks):
        raise OptionsError(
            f"{option} {k} is more than the {len(blocks)} encoder blocks of "
            f"{type(model).__name__} ({path}): pass a number from 0 to {len(blocks)}"
        )
    return list(blocks)[len(blocks) - k :]


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


def probe_model(model, tokenizer, head_paths: Sequence[str]) -> BlockProbe | None:
    """:func:`probe_blocks` on the model's encoder blocks (``None`` when it has no list of blocks)."""
    try:
        _, blocks = encoder_blocks(model, head_paths)
    except UnsupportedModelError:
        return None
    return probe_blocks(model, tokenizer, blocks)


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
        for name, module in _owners(model).items()
        if module in after
        and not any(_under(module, p) for p in head_paths)
        and model.get_parameter(name).is_floating_point()
    ]


def _owners(model) -> dict[str, str]:
    """Parameter name → name of the module that holds it."""
    return {
        f"{module}.{name}" if module else name: module
        for module, m in model.named_modules()
        for name, _ in m.named_parameters(recurse=False)
    }


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
    owner = _owners(model)
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
    pick=None,
):
    """The head's inputs (backbone features) for ``texts``, captured by a forward pre-hook.

    A head applied to every position (decoder classifiers: Llama's or GPT-2's ``score``) gives
    the model's logits at one position per example (the last real token): the feature is the
    input at the position whose head output equals the model's logits.

    One batched eval pass (``torch.inference_mode``); returns ``float32[n, in_features]`` on CPU.
    With ``pick`` (a task's ``pick(head, head_path, captured, output, encoding)``, see
    :mod:`.tasks`) the features of each text are what it picks, returned as a list.
    """
    from ..predict import eval_batches

    head = model.get_submodule(head_path)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    out = torch.zeros(len(texts), head.in_features) if pick is None else [None] * len(texts)
    try:
        for idx, batch in eval_batches(
            model, tokenizer, texts, batch_size=batch_size, max_length=max_length,
            device=device, progress=progress, desc="caching features",
        ):  # fmt: skip
            captured.clear()
            output = model(**batch)
            if pick is None:
                out[torch.tensor(idx)] = _one_vector(head, head_path, captured, output)
            else:
                for i, value in zip(
                    idx, pick(head, head_path, captured, output, batch), strict=True
                ):
                    out[i] = value
    finally:
        hook.remove()
    return out


def _one_vector(head, head_path: str, captured: list, output) -> torch.Tensor:
    """One feature per example from the head's captured input of one batch (CPU float32)."""
    x = captured[0] if len(captured) == 1 else None
    if x is not None and x.dim() == 3:
        x = _pooled_position(head, x, getattr(output, "logits", None))
    if x is None or x.dim() != 2:
        raise UnsupportedModelError(
            f"the head {head_path} is not applied once to one vector per example "
            "(nor at one position per example): train it with --freeze none"
        )
    return x.float().cpu()


def _pooled_position(head, x: torch.Tensor, logits) -> torch.Tensor | None:
    """``x[b, t]`` at the position ``t`` where ``head(x)`` is the model's ``logits[b]`` (the last
    such position), or ``None`` when some example has none."""
    if logits is None or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        return None
    per_position = head(x).float()  # [batch, tokens, labels]
    target = logits.float().unsqueeze(1)
    tol = 1e-4 * (1 + target.abs().amax(-1, keepdim=True))
    match = ((per_position - target).abs() <= tol).all(-1)  # [batch, tokens]
    if not bool(match.any(-1).all()):
        return None
    positions = torch.arange(x.shape[1], device=x.device)
    last = (match * (positions + 1)).argmax(-1)
    return x[torch.arange(x.shape[0], device=x.device), last]


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (the rest is not needed)."""


class _Skip(nn.Module):
    """Stands in for a frozen lower block whose output is cached: returns its input, as a
    1-tuple when the real blocks return tuples (encoders that read ``layer_outputs[0]``)."""

    def __init__(self, as_tuple: bool = False):
        super().__init__()
        self.as_tuple = as_tuple

    def forward(self, hidden_states, *args, **kwargs):
        return (hidden_states,) if self.as_tuple else hidden_states


class _Feed(_Skip):
    """Stands in for the last block when every block is cached: returns the cached output."""

    def __init__(self, owner: TopBlocks, as_tuple: bool = False):
        super().__init__(as_tuple)
        self.__dict__["_owner"] = owner  # not a submodule: no cycle in ``modules()``

    def forward(self, hidden_states, *args, **kwargs):
        current = self._owner._current
        return super().forward(current.to(hidden_states.device), *args, **kwargs)


def _first(output):
    return output[0] if isinstance(output, tuple | list) else output


@dataclass
class BlockProbe:
    """What one tiny forward pass shows about the encoder blocks.

    Attributes:
        as_tuple: the blocks return tuples (the encoder reads ``layer_outputs[0]``).
        after: names of the modules that ran only after the last block (neck, head, ...).
        before: names of the modules that ran only before the first block (embeddings, ...).
    """

    as_tuple: bool
    after: list[str]
    before: list[str] = field(default_factory=list)


def probe_blocks(model, tokenizer, blocks: nn.ModuleList) -> BlockProbe:
    """Run the model once on a one-word text and record the blocks' output type and which
    modules ran only before the first block or only after the last."""
    from ..predict import eval_batches

    names = {id(m): n for n, m in model.named_modules()}
    block_ids = {id(m) for b in blocks for m in b.modules()}
    phase = ["before"]
    seen: dict[str, set[str]] = {}
    as_tuple: list[bool] = []

    def enter(module, _args):
        if id(module) not in block_ids and id(module) in names:
            seen.setdefault(names[id(module)], set()).add(phase[0])

    def enter_first(_module, _args):
        phase[0] = "during"

    def leave_first(_module, _args, output):
        as_tuple.append(isinstance(output, tuple | list))

    def leave_last(_module, _args, _output):
        phase[0] = "after"

    hooks = [m.register_forward_pre_hook(enter) for m in model.modules()]
    hooks.append(blocks[0].register_forward_pre_hook(enter_first))
    hooks.append(blocks[0].register_forward_hook(leave_first))
    hooks.append(blocks[-1].register_forward_hook(leave_last))
    try:
        with torch.no_grad():
            for _idx, batch in eval_batches(model, tokenizer, ["a"], batch_size=1, max_length=8):
                model(**batch)
    finally:
        for hook in hooks:
            hook.remove()
    after = [n for n, phases in seen.items() if phases == {"after"}]
    # modules holding the blocks start before them, but their own parameters may run anywhere
    path = names.get(id(blocks), "")
    before = [
        n
        for n, phases in seen.items()
        if phases == {"before"} and n != "" and not path.startswith(n + ".")
    ]
    return BlockProbe(as_tuple=bool(as_tuple and as_tuple[0]), after=after, before=before)


def blocks_return_tuples(model, tokenizer, blocks: nn.ModuleList) -> bool:
    """Whether the blocks return tuples (see :func:`probe_blocks`)."""
    return probe_blocks(model, tokenizer, blocks).as_tuple


def block_inputs(
    model,
    tokenizer,
    texts: Sequence[str],
    blocks: nn.ModuleList,
    index: int,
    *,
    batch_size: int = 64,
    max_length: int = 128,
    progress: bool = False,
    head_path: str | None = None,
    pick=None,
):
    """The hidden states entering ``blocks[index]`` for each text, trimmed to its tokens
    (``index == len(blocks)``: the output of the last block).

    One eval pass that stops there. Returns ``float32[tokens, hidden]`` per text (CPU). With
    ``head_path`` the pass runs to the end and also captures the head's inputs (as
    :func:`head_inputs`, ``pick`` likewise): returns ``(hidden_states, features)``, both from
    the same pass.

    Raises:
        UnsupportedModelError: the block's input is not one ``[batch, tokens, hidden]`` tensor
            (or, with ``head_path``, the head's input is not one vector per example).
    """
    from ..predict import eval_batches

    captured: list[torch.Tensor] = []
    at_head: list[torch.Tensor] = []
    stop = head_path is None

    def grab(_module, args):
        captured.append(args[0].detach())
        if stop:
            raise _Stop

    def grab_output(_module, _args, output):
        captured.append(_first(output).detach())
        if stop:
            raise _Stop

    if index == len(blocks):
        hooks = [blocks[index - 1].register_forward_hook(grab_output)]
    else:
        hooks = [blocks[index].register_forward_pre_hook(grab)]
    head = None if stop else model.get_submodule(head_path)
    if head is not None:
        hooks.append(head.register_forward_pre_hook(lambda _m, a: at_head.append(a[0].detach())))
        features = (
            torch.zeros(len(texts), head.in_features) if pick is None else [None] * len(texts)
        )
    out: list[torch.Tensor | None] = [None] * len(texts)
    try:
        for idx, batch in eval_batches(
            model, tokenizer, texts, batch_size=batch_size, max_length=max_length,
            progress=progress, desc="caching block inputs",
        ):  # fmt: skip
            captured.clear()
            at_head.clear()
            output = None
            try:
                output = model(**batch)
            except _Stop:
                pass
            h = captured[0] if captured else None
            if h is None or h.dim() != 3 or h.shape[:2] != batch["input_ids"].shape:
                raise UnsupportedModelError(
                    "the encoder blocks do not take one [batch, tokens, hidden] tensor: "
                    "--train-layers runs without a cache here; use --freeze none"
                )
            lengths = batch["attention_mask"].sum(1).tolist()
            for row, (i, n) in enumerate(zip(idx, lengths, strict=True)):
                out[i] = h[row, : int(n)].float().cpu().clone()
            if head is not None and pick is None:
                features[torch.tensor(idx)] = _one_vector(head, head_path, at_head, output)
            elif head is not None:
                for i, value in zip(
                    idx, pick(head, head_path, at_head, output, batch), strict=True
                ):
                    features[i] = value
    finally:
        for hook in hooks:
            hook.remove()
    return out if head is None else (out, features)


class TopBlocks(nn.Module):
    """Runs only the top blocks of ``model`` (and what follows them), from cached block inputs.

    The blocks below ``index`` are swapped for :class:`_Skip` while this wrapper is in use, and a
    forward pre-hook feeds ``blocks[index]`` the cached hidden states of the batch. With
    ``index == len(blocks)`` no block runs: the last one is swapped for :class:`_Feed`, which
    returns the cached output of the blocks (only the neck and the head run). ``as_tuple``: the
    real blocks return tuples (see :func:`blocks_return_tuples`). Call :meth:`restore` to put
    the real blocks back.
    """

    def __init__(self, model, blocks: nn.ModuleList, index: int, as_tuple: bool = False):
        super().__init__()
        self.model = model
        self._blocks, self._index = blocks, index
        self._current: torch.Tensor | None = None
        self._saved = [blocks[i] for i in range(min(index, len(blocks)))]
        for i in range(len(self._saved)):
            last = index == len(blocks) and i == len(blocks) - 1
            blocks[i] = _Feed(self, as_tuple) if last else _Skip(as_tuple)
        self._hook = (
            blocks[index].register_forward_pre_hook(self._feed, with_kwargs=True)
            if index < len(blocks)
            else None
        )

    def _feed(self, _module, args, kwargs):
        hidden = self._current.to(args[0].device if args else self._current.device)
        return (hidden, *args[1:]), kwargs

    def forward(self, hidden: torch.Tensor, **inputs):
        self._current = hidden.to(next(self.model.parameters()).dtype)
        try:
            return self.model(**inputs)
        finally:
            self._current = None

    def restore(self) -> None:
        if self._hook is not None:
            self._hook.remove()
        for i, block in enumerate(self._saved):
            self._blocks[i] = block
