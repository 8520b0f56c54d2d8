"""Audio classification's task: one label per clip (``...ForAudioClassification``, and the
speech models' ``...ForSequenceClassification``: wav2vec2, HuBERT, WavLM...).

:class:`AudioTask` is what ``train``, ``check`` and ``sweep`` ask of an audio classifier:
examples are :class:`~.data.AudioExample` s read from an ``audiofolder`` or a
``.csv``/``.tsv``/``.jsonl`` of paths (every file's header checked before any work), keyed by
their content and path (:mod:`headsurgeon.tasks.files`); their model inputs are the feature
extractor's, from waveforms decoded, mixed to mono and resampled to its rate
(:class:`AudioInputs`, the view the batched passes use); the rest (rows, scoring, the accuracy
gate) is the single-label tasks' (:class:`~headsurgeon.tasks.single.OneLabelTask`).

Cached block inputs: a clip's are its frames (the feature encoder's output length of its
samples); when only the top blocks run, the model is fed silence of each clip's length in place
of the audio (what runs below the cut is replaced by the cache: no file is decoded again).
Models without an attention mask (wav2vec2-base style extractors) attend to the padding of a
batch: their cached frames are cut to each clip's length, so a clip trains as it sounds alone.

No torch, soundfile or transformers at import.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...data import check_labels
from .. import AUDIO
from ..files import FileKeys, FileTask
from ..single import label_batch, pad_stack
from .data import AudioExample, read_audio_examples
from .features import AudioCollator, load_feature_extractor
from .waveform import DEFAULT_MAX_SECONDS, probe_audio, require_soundfile

#: the key of the second of silence of one-example probes (no file: not a :func:`file_key`)
SILENCE = "silence"


class AudioTask(FileTask):
    """One label per clip (see the module docstring); implements
    :class:`~headsurgeon.tasks.base.Task`."""

    name = AUDIO
    unit = "clips"
    path_column = "audio"
    example_type = AudioExample

    def load_preprocessor(self, model_dir):
        """:func:`~.features.load_feature_extractor`."""
        return load_feature_extractor(model_dir)

    def read_examples(self, path, path_column: str, label_column: str) -> list:
        """:func:`~.data.read_audio_examples`."""
        return read_audio_examples(path, audio_column=path_column, label_column=label_column)

    def check_labels(self, examples, known, **where) -> None:
        """:func:`headsurgeon.data.check_labels`."""
        check_labels(examples, known, **where)

    def probe(self, examples) -> None:
        """:func:`~.waveform.probe_audio`."""
        probe_audio(examples)

    def view_type(self) -> type:
        """:class:`AudioInputs`."""
        return AudioInputs

    def make_collator(self, view):
        """:func:`make_audio_collator`."""
        return make_audio_collator(view)


class AudioInputs:
    """A feature extractor seen as the batched passes of training and ``check`` see a
    tokenizer: called with the keys of clips (:meth:`AudioTask.key`), it returns the
    extractor's batch of their waveforms (:class:`~.features.AudioCollator`: decoded, mono,
    resampled to its rate, truncated to ``max_seconds``, padded).

    Args:
        extractor: the model's feature extractor.
        keys: the task's keys, to name the data row of a clip that cannot be read.
        max_seconds: each clip is cut to this many seconds (``None``: whole).
    """

    #: what the passes' progress counts
    unit = "clips"
    #: the one-example probe of the blocks runs on a second of silence
    probe_keys = (SILENCE,)

    def __init__(self, extractor, keys: FileKeys | None = None, max_seconds=DEFAULT_MAX_SECONDS):
        self.extractor = extractor
        self.keys = keys or FileKeys()
        self.collator = AudioCollator(extractor, None, max_seconds)
        self._samples: dict[str, int] = {}

    @property
    def rate(self) -> int:
        """The sampling rate every clip is resampled to (the extractor's)."""
        return self.collator.sampling_rate

    def __call__(self, keys: Sequence[str], **_) -> Any:
        import numpy as np

        keys = [keys] if isinstance(keys, str) else keys
        if list(keys) == [SILENCE]:
            return self.collator.encode([np.zeros(self.rate, dtype=np.float32)])
        return self.collator.encode(self.collator.waveforms([self._example(k) for k in keys]))

    def _example(self, key: str) -> AudioExample:
        return self.keys.example(key, lambda path: AudioExample(path, "", str(path)))

    def lengths(self, keys: Sequence[str]) -> list[int]:
        """Each clip's samples at the extractor's rate once read (from the file's header:
        nothing is decoded), to batch clips of similar length."""
        return [self._length(k) for k in keys]

    def _length(self, key: str) -> int:
        if key == SILENCE:
            return self.rate
        if key not in self._samples:
            info = require_soundfile().info(str(self._example(key).path))
            frames, limit = info.frames, self.collator.max_seconds
            if limit is not None:
                frames = min(frames, math.ceil(limit * info.samplerate))
            self._samples[key] = -(-frames * self.rate // info.samplerate)  # as resample's ceil
        return self._samples[key]

    def stand_in(self, keys: Sequence[str]) -> Any:
        """Inputs that stand in for the clips of ``keys`` when their block inputs are cached:
        the extractor's batch of silence as long as each clip (what runs below the cut is
        replaced; the shapes and the attention mask are the clips')."""
        import numpy as np

        return self.collator.encode([np.zeros(n, dtype=np.float32) for n in self.lengths(keys)])

    def block_lengths(self, model, batch, hidden, keys) -> list[int] | None:
        """Each clip's frames in the blocks' input: the feature encoder's output length of its
        samples (models that pad to a fixed size: every frame). ``None`` where the cache
        cannot stand for the model: not one ``[clips, frames, hidden]`` tensor, or a
        classifier that sums every layer's output (``use_weighted_layer_sum``)."""
        if hidden is None or hidden.dim() != 3 or hidden.shape[0] != len(keys):
            return None
        if getattr(model.config, "use_weighted_layer_sum", False):
            return None
        frames_of = getattr(model, "_get_feat_extract_output_lengths", None)
        if frames_of is None or "input_values" not in batch:
            return [hidden.shape[1]] * hidden.shape[0]
        import torch

        frames = frames_of(torch.tensor(self.lengths(keys))).tolist()
        return [int(n) for n in frames] if max(frames) == hidden.shape[1] else None

    def same_inputs(self, other) -> bool:
        """Whether ``other`` makes the same inputs of the same clips (``check`` then runs the
        backbone once for parent and child)."""
        mine, theirs = self.extractor, getattr(other, "extractor", None)
        same_cut = (
            self.collator.max_seconds == getattr(other, "collator", self.collator).max_seconds
        )
        return type(mine) is type(theirs) and mine.to_dict() == theirs.to_dict() and same_cut


def make_audio_collator(inputs: AudioInputs):
    """Batch audio rows: stack features; or pad cached block inputs with silence standing in
    for the clips (:meth:`AudioInputs.stand_in`); or the clips' extracted features."""

    def collate(rows: list[dict]) -> dict:
        batch = label_batch(rows)
        if "features" in rows[0]:
            batch["features"] = pad_stack([r["features"] for r in rows])
            return batch
        keys = [r["text"] for r in rows]
        if "hidden" in rows[0]:
            batch.update(inputs.stand_in(keys))
            batch["hidden"] = pad_stack([r["hidden"] for r in rows])
        else:
            batch.update(inputs(keys))
        return batch

    return collate
