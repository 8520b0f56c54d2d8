"""Model inputs of audio examples: the model folder's feature extractor and a batch collator.

An audio classifier is trained with the feature extractor saved beside it
(``preprocessor_config.json``): its ``sampling_rate``, normalisation and padding are part of the
model. :func:`load_feature_extractor` loads it (never from the Hub); :class:`AudioCollator`
decodes a list of :class:`~.data.AudioExample` s at that rate (:mod:`.waveform`) and returns the
extractor's batch (``input_values`` for wav2vec2-style models and AST, ``input_features`` for
Whisper), padded, with an ``attention_mask`` where the extractor gives one, and ``labels``.
transformers and torch are imported inside the functions.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import CheckpointError, DataError
from ...record import hub_id_of, read_record
from .waveform import DEFAULT_MAX_SECONDS, check_max_seconds, read_waveform

if TYPE_CHECKING:
    import numpy as np

    from .data import AudioExample

PREPROCESSOR_CONFIG = "preprocessor_config.json"


def load_feature_extractor(model_dir: str | os.PathLike) -> Any:
    """The audio feature extractor saved in a model folder (``preprocessor_config.json``).

    Raises:
        CheckpointError: the folder has no ``preprocessor_config.json`` (saying how to add one),
            it cannot be loaded, or it is not an audio feature extractor (no ``sampling_rate``).

    Example:
        >>> load_feature_extractor("my-wav2vec2-classifier").sampling_rate
        16000
    """
    folder = Path(model_dir)
    config = folder / PREPROCESSOR_CONFIG
    if not config.is_file():
        raise CheckpointError(_no_extractor(folder))
    from transformers import AutoFeatureExtractor

    try:
        extractor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{config}: cannot load the feature extractor: {e}") from e
    rate = getattr(extractor, "sampling_rate", None)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise CheckpointError(
            f"{config} holds a {type(extractor).__name__} with sampling_rate {rate!r}: an audio "
            "classifier needs an audio feature extractor with a positive sampling_rate (Hz)"
        )
    return extractor


def _no_extractor(folder: Path) -> str:
    parent = _parent_id(folder) or "PARENT"
    where = "" if parent != "PARENT" else " (PARENT: the Hub id or folder it was fine-tuned from)"
    return (
        f"{folder} has no {PREPROCESSOR_CONFIG}: an audio classifier needs the feature extractor "
        "it was trained with (sampling rate, normalisation, padding) saved beside its weights; "
        'save the one of the model it was fine-tuned from into it: python -c "from '
        f"transformers import AutoFeatureExtractor; AutoFeatureExtractor.from_pretrained("
        f"'{parent}').save_pretrained('{folder}')\"{where}"
    )


def _parent_id(folder: Path) -> str | None:
    """The Hub id the model in ``folder`` was made from, when its record or config names one."""
    try:
        record = read_record(folder) or {}
    except CheckpointError:  # a broken record is reported by the commands that need it
        record = {}
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    config = config if isinstance(config, dict) else {}
    names = (record.get("base_model"), record.get("parent"), config.get("_name_or_path"))
    return next((n for n in names if hub_id_of(n)), None)


def padding_kwargs(extractor: Any) -> dict[str, Any]:
    """How to pad a batch: to its longest waveform when the extractor pads nothing by default
    (wav2vec2-style); an extractor that pads on its own (Whisper's 30 s, AST's fixed frame
    count) keeps its default."""
    call = inspect.signature(type(extractor).__call__).parameters.get("padding")
    return {"padding": True} if call is not None and call.default is False else {}


@dataclass
class AudioCollator:
    """Batch :class:`~.data.AudioExample` s for a model: decode, resample, extract, pad.

    Args:
        extractor: the model's feature extractor (:func:`load_feature_extractor`).
        label2id: label name -> class index (the model config's); ``None`` leaves ``labels``
            out (prediction).
        max_seconds: each file is truncated to this many seconds when read (``None``: whole).

    Calling it on a list of examples returns the extractor's ``BatchFeature`` of torch tensors
    with ``labels`` (``torch.long``) added.

    Example:
        >>> collate = AudioCollator(load_feature_extractor(folder), model.config.label2id)
        >>> batch = collate(read_audio_examples("clips/")[:8])
        >>> model(**batch).logits.shape
        torch.Size([8, 3])
    """

    extractor: Any
    label2id: Mapping[str, int] | None = None
    max_seconds: float | None = DEFAULT_MAX_SECONDS

    def __post_init__(self):
        check_max_seconds(self.max_seconds)

    @property
    def sampling_rate(self) -> int:
        """The rate every waveform is resampled to (the extractor's)."""
        return self.extractor.sampling_rate

    def waveforms(self, examples: Sequence[AudioExample]) -> list[np.ndarray]:
        """Each example's mono waveform at :attr:`sampling_rate`, truncated to ``max_seconds``."""
        return [
            read_waveform(e.path, self.sampling_rate, max_seconds=self.max_seconds, where=e.where)
            for e in examples
        ]

    def encode(self, waveforms: Sequence[np.ndarray]) -> Any:
        """The extractor's batch of ``waveforms`` (torch tensors, padded as
        :func:`padding_kwargs` says)."""
        return self.extractor(
            list(waveforms),
            sampling_rate=self.sampling_rate,
            return_tensors="pt",
            **padding_kwargs(self.extractor),
        )

    def __call__(self, examples: Sequence[AudioExample]) -> Any:
        batch = self.encode(self.waveforms(examples))
        if self.label2id is not None:
            batch["labels"] = label_ids(examples, self.label2id)
        return batch


def label_ids(examples: Sequence[AudioExample], label2id: Mapping[str, int]) -> Any:
    """The examples' class indices as a ``torch.long`` tensor.

    Raises:
        DataError: a label the model does not have, naming where the example comes from.
    """
    import torch

    unknown = next((e for e in examples if e.label not in label2id), None)
    if unknown is not None:
        raise DataError(
            f"{unknown.where}: label {unknown.label!r} is not one of the model's "
            f"({', '.join(list(label2id)[:20])}); add it first (add-label) or fix the data"
        )
    return torch.tensor([label2id[e.label] for e in examples], dtype=torch.long)
