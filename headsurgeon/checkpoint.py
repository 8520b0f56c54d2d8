"""On-disk surgery on a saved model folder, written atomically.

Today: load the model, grow it in memory, save into a temp folder beside the target and move the
result into place. (Streaming safetensors surgery replaces the load/save for safetensors
checkpoints.) The folder being read is never the folder being written to.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import labels as _labels
from . import record as _record
from .errors import CheckpointError
from .models import read_config

logger = logging.getLogger(__name__)

WEIGHT_PATTERNS = (
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*.bin",
    "pytorch_model.bin.index.json",
)
MODEL_FILES = ("config.json", _record.RECORD_NAME)


def _weight_files(folder: Path) -> list[Path]:
    return sorted({p for pat in WEIGHT_PATTERNS for p in folder.glob(pat)})


def inspect_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """Describe a saved classifier without loading its weights.

    Returns:
        ``{"architecture", "model_type", "head": HeadRef dict, "labels": [...], "num_labels"}``.
    """
    from transformers import AutoConfig

    from .locate import locate_head
    from .models import meta_model, model_class

    raw = read_config(folder)
    labels = _labels.labels_of(raw)
    config = AutoConfig.from_pretrained(str(folder))
    model = meta_model(model_class(config), config)
    head = locate_head(model).to_dict()
    head["dtype"] = str(raw.get("dtype") or raw.get("torch_dtype") or head["dtype"])
    return {
        "path": str(folder),
        "architecture": type(model).__name__,
        "model_type": raw.get("model_type"),
        "head": head,
        "num_labels": len(labels),
        "labels": labels,
    }


def add_labels_to_checkpoint(
    src: str | os.PathLike,
    names: Sequence[str],
    output: str | os.PathLike | None = None,
    *,
    init: str | None = None,
    bias: str | None = None,
    head_path: str | Sequence[str] | None = None,
    seed: int | None = None,
):
    """Grow the head of the model saved in ``src``; write to ``output`` (or in place).

    Args:
        src: a folder saved with ``save_pretrained``.
        names: new label names.
        output: a new folder (must not exist, or be empty); ``None`` edits ``src`` in place.
        init, bias, head_path, seed: as in :func:`headsurgeon.add_labels`.

    Returns:
        the :class:`~headsurgeon.surgery.SurgeryResult`.

    Raises:
        CheckpointError, LabelError, and the locator's errors; on error nothing is written.

    Example:
        >>> add_labels_to_checkpoint("parent/", ["lost_or_stolen_card"], "grown/")
    """
    from .models import load_model
    from .surgery import DEFAULT_BIAS, DEFAULT_INIT, add_labels

    src = Path(src)
    _labels.check_new_names(_labels.labels_of(read_config(src)), names)  # fail before loading
    model = load_model(src)
    result = add_labels(
        model,
        names,
        init=init or DEFAULT_INIT,
        bias=bias or DEFAULT_BIAS,
        head_path=head_path,
        seed=seed,
    )
    record = _record.record_for(src, result.labels_before)
    _record.add_event(record, "add-label", **result.to_dict())
    _write_model(model, record, src, output)
    return result


def _write_model(model, record: dict, src: Path, output: str | os.PathLike | None) -> Path:
    """Save ``model`` + ``record`` to ``output`` (new folder) or into ``src``, atomically."""
    target = Path(output) if output is not None else src
    in_place = target.resolve() == src.resolve()
    if not in_place and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"output {target} already exists and is not empty; choose another -o")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.headsurgeon-", dir=target.parent))
    try:
        model.save_pretrained(str(tmp))
        _record.write_record(tmp, record)
        if in_place:
            _replace_files(tmp, src)
            shutil.rmtree(tmp)
        else:
            for extra in src.iterdir():  # tokenizer, processor, README, ...: carried over
                if (
                    extra.is_file()
                    and not (tmp / extra.name).exists()
                    and extra not in _weight_files(src)
                ):
                    shutil.copy2(extra, tmp / extra.name)
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _replace_files(new: Path, folder: Path) -> None:
    """Move each file of ``new`` into ``folder`` with ``os.replace``; drop stale weight files."""
    stale = set(_weight_files(folder))
    for path in sorted(new.iterdir(), key=lambda p: p.name == "config.json"):  # config last
        os.replace(path, folder / path.name)
        stale.discard(folder / path.name)
    for path in stale:
        path.unlink()
