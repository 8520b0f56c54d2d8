"""Audio classification data: ``audiofolder`` folders and CSV/TSV/JSONL files of audio paths,
decoded with soundfile, mixed to mono, resampled to the feature extractor's rate and batched
by the model folder's feature extractor.

- :mod:`.data`: :func:`read_audio_examples` → :class:`AudioExample` (path, label, source, line);
  names and paths only, no decoding;
- :mod:`.waveform`: :func:`read_waveform` (soundfile, mono, truncation, :func:`resample`),
  :func:`probe_audio` (every file's header checked before any work);
- :mod:`.features`: :func:`load_feature_extractor`, :class:`AudioCollator`.

Importing this package imports neither torch, transformers, numpy nor soundfile (they are
imported by the functions that need them); soundfile comes with ``pip install
"headsurgeon[audio]"``.
"""

from __future__ import annotations

from .data import (
    AUDIO_COLUMN,
    AUDIO_EXTENSIONS,
    LABEL_COLUMN,
    AudioExample,
    read_audio_examples,
    read_audio_table,
    read_audiofolder,
)
from .features import AudioCollator, label_ids, load_feature_extractor, padding_kwargs
from .waveform import DEFAULT_MAX_SECONDS, probe_audio, read_waveform, resample, to_mono

__all__ = [
    "AUDIO_COLUMN",
    "AUDIO_EXTENSIONS",
    "DEFAULT_MAX_SECONDS",
    "LABEL_COLUMN",
    "AudioCollator",
    "AudioExample",
    "label_ids",
    "load_feature_extractor",
    "padding_kwargs",
    "probe_audio",
    "read_audio_examples",
    "read_audio_table",
    "read_audiofolder",
    "read_waveform",
    "resample",
    "to_mono",
]
