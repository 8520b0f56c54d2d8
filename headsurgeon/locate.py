"""Find the classifier head: the ``nn.Linear`` layer(s) whose rows are the labels.

Order of evidence: an explicit path (exact dotted path or unique dotted suffix) > a *shape probe*
(build the same class on the ``meta`` device with one more label and see which parameters
changed: those are the head, whatever they are called, including heads applied before pooling
and parallel heads that must grow together) > a structural search (the one ``nn.Linear`` whose
``out_features`` equals the label count). Several candidates or none → a typed error listing them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .errors import AmbiguousHeadError, HeadNotFoundError, UnsupportedModelError
from .labels import labels_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadRef:
    """Where a model's classifier head is.

    Attributes:
        paths: dotted module path(s); more than one for parallel heads (e.g. DeiT with teacher).
        in_features: input width of the head.
        out_features: number of rows = number of labels.
        bias: whether the head has a bias.
        dtype: the head weight's dtype, e.g. ``"float32"``.
        method: how it was found: ``"explicit"``, ``"shape-probe"`` or ``"structural"``.
    """

    paths: tuple[str, ...]
    in_features: int
    out_features: int
    bias: bool
    dtype: str
    method: str

    def modules(self, model) -> list:
        """Return the head modules of ``model`` in ``paths`` order."""
        return [model.get_submodule(p) for p in self.paths]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "paths": list(self.paths)}


def locate_head(model, path: str | Sequence[str] | None = None) -> HeadRef:
    """Locate the classifier head of a transformers classification model.

    Args:
        model: a ``*ForSequenceClassification`` / ``*ForTokenClassification`` /
            ``*ForImageClassification`` / ``*ForAudioClassification`` model (real or ``meta``).
        path: explicit dotted path(s) of the head, or a unique dotted suffix
            (``"out_proj"`` matches ``classifier.out_proj``). ``None`` finds it.

    Returns:
        a :class:`HeadRef`.

    Raises:
        UnsupportedModelError: multiple-choice models (their head has one output, no labels), or
            a head that is not an ``nn.Linear``.
        HeadNotFoundError: nothing fits; the message lists the candidates.
        AmbiguousHeadError: several modules fit; the message lists them and how to choose.

    Example:
        >>> locate_head(model).paths
        ('classifier',)
    """
    if type(model).__name__.endswith("ForMultipleChoice"):
        raise UnsupportedModelError(
            f"{type(model).__name__} is a multiple-choice model: its head scores each choice "
            "with one output and has no labels to grow"
        )
    n = len(labels_of(model.config))
    if path is not None:
        paths = [path] if isinstance(path, str) else list(path)
        return _ref(model, [_resolve(model, p, n) for p in paths], n, "explicit")
    probed = _shape_probe(model, n)
    if probed:
        return _ref(model, probed, n, "shape-probe")
    candidates = linear_candidates(model, n)
    if len(candidates) == 1:
        return _ref(model, candidates, n, "structural")
    if not candidates:
        raise HeadNotFoundError(
            f"no nn.Linear in {type(model).__name__} has {n} outputs (the config's label count); "
            "pass the head's dotted path with --head-path"
        )
    raise AmbiguousHeadError(
        f"{len(candidates)} layers of {type(model).__name__} could be the head: "
        f"{', '.join(candidates)}; choose one with --head-path"
    )


def linear_candidates(model, n: int) -> list[str]:
    """Dotted paths of every ``nn.Linear`` with ``n`` outputs (possible heads), in model order."""
    import torch.nn as nn

    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == n
    ]


def match_module(path: str, names, candidates: list[str], n: int, where: str) -> str:
    """Return the one module name in ``names`` that is ``path`` or ends with ``"." + path``.

    Never substring matching: ``out_proj`` matches ``classifier.out_proj``, not ``my_out_proj``.

    Raises:
        HeadNotFoundError: nothing matches (the message lists ``candidates`` with ``n`` outputs).
        AmbiguousHeadError: several modules end with ``path``.
    """
    names = list(names)
    matches = [path] if path in names else sorted(m for m in names if m.endswith("." + path))
    if not matches:
        hint = (
            f"layers with {n} outputs: {', '.join(candidates)}"
            if candidates
            else f"no layer has {n} outputs"
        )
        raise HeadNotFoundError(f"no module {path!r} in {where} ({hint})")
    if len(matches) > 1:
        raise AmbiguousHeadError(
            f"{path!r} matches several modules: {', '.join(matches)}; give the full path"
        )
    return matches[0]


def _resolve(model, path: str, n: int) -> str:
    """Return the full dotted path for ``path`` (exact, else unique dotted suffix)."""
    import torch.nn as nn

    names = [name for name, _ in model.named_modules() if name]
    name = match_module(path, names, linear_candidates(model, n), n, type(model).__name__)
    module = model.get_submodule(name)
    if not isinstance(module, nn.Linear):
        raise UnsupportedModelError(
            f"{name} is a {type(module).__name__}, not an nn.Linear: headsurgeon grows Linear heads"
        )
    if module.out_features != n:
        raise HeadNotFoundError(
            f"{name} has {module.out_features} outputs but the model has {n} labels: "
            f"it is not the head (candidates: {', '.join(linear_candidates(model, n)) or 'none'})"
        )
    return name


def _shape_probe(model, n: int) -> list[str] | None:
    """Module paths whose parameters change shape when the class is built with another label count.

    The probe is built with ``n + 1`` labels, or with ``n - 1`` when ``n + 1`` crosses a layout
    switch (LayoutLMv3's token classifier becomes dense + out_proj at 10 labels: a 9-label model
    still has a plain ``classifier`` to find; growing it is refused later by the layout check).

    Returns ``None`` when the probe cannot run (the constructor fails on ``meta``).

    Raises:
        UnsupportedModelError: the layout differs at both counts; or no parameter depends on the
            label count (the logits come from elsewhere, e.g. a language-model head's token
            columns): a Linear that happens to have ``n`` outputs would be a wrong guess.
    """
    import torch.nn as nn

    from .models import meta_model

    before = {name: tuple(p.shape) for name, p in model.named_parameters()}
    after: dict[str, tuple[int, ...]] = {}
    for count in (n + 1, n - 1) if n > 1 else (n + 1,):
        try:
            probe = meta_model(type(model), model.config, count)
        except Exception as e:  # any constructor failure just means "no evidence from the probe"
            logger.debug("shape probe of %s failed: %s", type(model).__name__, e)
            return None
        after = {name: tuple(p.shape) for name, p in probe.named_parameters()}
        if set(before) == set(after):
            break
    else:
        raise UnsupportedModelError(
            f"{type(model).__name__} changes its layout when its label count changes "
            f"(parameters {sorted(set(before) ^ set(after))[:4]}): its head cannot be grown in place"
        )
    changed = sorted({name.rsplit(".", 1)[0] for name in before if before[name] != after[name]})
    changed.sort(key=list(dict(model.named_modules())).index)
    if not changed:
        raise UnsupportedModelError(
            f"the parameters of {type(model).__name__} do not depend on the label count "
            f"(built with {n} and {count} labels they have the same shapes): it has no label "
            "rows to grow"
        )
    for path in changed:
        module = model.get_submodule(path)
        if not isinstance(module, nn.Linear) or module.out_features != n:
            raise UnsupportedModelError(
                f"{path} ({type(module).__name__}) depends on the label count but is not an "
                f"nn.Linear with {n} outputs: headsurgeon cannot grow it"
            )
    return changed


def _ref(model, paths: list[str], n: int, method: str) -> HeadRef:
    modules = [model.get_submodule(p) for p in paths]
    first = modules[0]
    return HeadRef(
        paths=tuple(paths),
        in_features=first.in_features,
        out_features=n,
        bias=first.bias is not None,
        dtype=str(first.weight.dtype).removeprefix("torch."),
        method=method,
    )
