"""The encoder's blocks: where they are, how many, and what one pass shows about them.

- :func:`encoder_blocks`: the longest list of same-class modules outside the head (BERT's
  ``encoder.layer``, Llama's ``model.layers``, ...); :func:`top_blocks`, :func:`model_blocks`;
- :class:`BlockProbe` (:func:`probe_model`, :func:`probe_blocks`): one tiny forward pass showing
  the blocks' output type and which modules run only before or only after them (the neck);
- :func:`parameter_owners`: parameter name → the module that holds it.

What trains (:mod:`.freezing`), the caches (:mod:`.features`) and the learning rates by depth
(:mod:`.schedule`) build on these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..errors import OptionsError, UnsupportedModelError


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


def model_blocks(model, head_path=None) -> int | None:
    """How many encoder blocks ``model`` has (``None`` when it has no list of them)."""
    from ..errors import HeadSurgeonError
    from ..locate import locate_head

    try:
        return len(encoder_blocks(model, locate_head(model, head_path).paths)[1])
    except HeadSurgeonError:
        return None


def parameter_owners(model) -> dict[str, str]:
    """Parameter name → name of the module that holds it."""
    return {
        f"{module}.{name}" if module else name: module
        for module, m in model.named_modules()
        for name, _ in m.named_parameters(recurse=False)
    }


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


def probe_model(model, tokenizer, head_paths: Sequence[str]) -> BlockProbe | None:
    """:func:`probe_blocks` on the model's encoder blocks (``None`` when it has no list of blocks)."""
    try:
        _, blocks = encoder_blocks(model, head_paths)
    except UnsupportedModelError:
        return None
    return probe_blocks(model, tokenizer, blocks)


def probe_blocks(model, tokenizer, blocks: nn.ModuleList) -> BlockProbe:
    """Run the model once on a one-word text (a task's view of another preprocessor: on its
    ``probe_keys``, a blank image or silence) and record the blocks' output type and which
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
            probe = list(getattr(tokenizer, "probe_keys", None) or ["a"])
            for _idx, batch in eval_batches(model, tokenizer, probe, batch_size=1, max_length=8):
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
