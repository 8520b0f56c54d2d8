"""Decode audio files to the waveform a feature extractor expects: mono, float32, its rate.

Files are read by soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...), the
reader ``datasets`` uses; it is an optional extra (``pip install "headsurgeon[audio]"``) and is
imported only here, when a file is read. Channels are averaged to mono (as ``datasets``'
``Audio(mono=True)`` and librosa do). A file longer than ``max_seconds`` is truncated while it is
read, so one long recording cannot exhaust memory.

Resampling: a model hears its feature extractor's ``sampling_rate`` only, and a wrong rate
trains silently on garbage, so every file whose rate differs is resampled with
``scipy.signal.resample_poly``: a polyphase filter (Kaiser-windowed low-pass FIR) at the exact
rational ratio ``target/source`` (44.1 kHz -> 16 kHz is up 160, down 441), which removes what
lies above the new Nyquist frequency instead of folding it back (linear interpolation aliases).
scipy is well kept, already installed with headsurgeon (seqeval -> scikit-learn -> scipy) and
declared by the ``audio`` extra; torchaudio has no build for every torch, and librosa/soxr would
add dependencies for the same result.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...errors import DataError, OptionsError

if TYPE_CHECKING:
    import numpy as np

    from .data import AudioExample

logger = logging.getLogger(__name__)

#: audio longer than this (seconds) is truncated when read: bounds memory on long recordings
DEFAULT_MAX_SECONDS = 30.0
INSTALL = 'pip install "headsurgeon[audio]"'


def require_soundfile() -> Any:
    """The ``soundfile`` module.

    Raises:
        DataError: it is not installed (or its libsndfile cannot load), saying how to install it.
    """
    try:
        import soundfile
    except (ImportError, OSError) as e:  # OSError: the wheel's libsndfile failed to load
        raise DataError(
            f"reading audio files needs the soundfile package, which is not usable here ({e}): "
            f"{INSTALL}"
        ) from e
    return soundfile


def check_max_seconds(max_seconds: float | None) -> float | None:
    """Return ``max_seconds`` if it is ``None`` (no limit) or a positive finite number.

    Raises:
        OptionsError: naming the value found.
    """
    ok = max_seconds is None or (
        isinstance(max_seconds, (int, float))
        and not isinstance(max_seconds, bool)
        and math.isfinite(max_seconds)
        and max_seconds > 0
    )
    if not ok:
        raise OptionsError(
            f"max_seconds must be a positive number of seconds (or None for no limit), "
            f"got {max_seconds!r}"
        )
    return max_seconds


def read_waveform(
    path: str | os.PathLike,
    sampling_rate: int,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    where: str | None = None,
) -> np.ndarray:
    """Decode one audio file to a mono float32 waveform at ``sampling_rate``.

    Args:
        path: the audio file.
        sampling_rate: the rate to return (the feature extractor's ``sampling_rate``).
        max_seconds: read at most this many seconds from the start (``None``: all).
        where: what messages name (``data.csv:3``); the path by default.

    Returns:
        a 1-D ``numpy.float32`` array.

    Raises:
        DataError: soundfile is missing, or the file is missing, unreadable, corrupt, empty or
            holds non-finite samples; the message names ``where`` and the file.

    Example:
        >>> read_waveform("clips/dog/1.wav", 16000).shape
        (16000,)
    """
    check_max_seconds(max_seconds)
    sf = require_soundfile()
    import numpy as np

    where = where or str(path)
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            rate, frames = f.samplerate, f.frames
            limit = -1 if max_seconds is None else math.ceil(max_seconds * rate)
            data = f.read(frames=limit, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as e:  # LibsndfileError is a RuntimeError
        raise _unreadable(where, path, e) from e
    if data.shape[0] == 0:
        raise DataError(f"{where}: the audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise DataError(f"{where}: the audio file {path} holds NaN or infinite samples")
    if 0 <= limit < frames:
        logger.debug("%s: %s truncated to %s s", where, path, max_seconds)
    return resample(to_mono(data), rate, sampling_rate)


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average a ``[frames, channels]`` (or 1-D) array's channels into one float32 channel."""
    import numpy as np

    data = np.asarray(data, dtype=np.float32)
    return data if data.ndim == 1 else data.mean(axis=1, dtype=np.float32)


def resample(wave: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D waveform from ``source_rate`` to ``target_rate`` (Hz) with an
    anti-aliasing polyphase filter (``scipy.signal.resample_poly``, see the module docstring).

    The result has ``ceil(len(wave) * target_rate / source_rate)`` samples; equal rates return
    the input unchanged.

    Raises:
        OptionsError: a rate that is not a positive integer.
        DataError: scipy is not installed (saying how to install it).
    """
    import numpy as np

    for name, rate in (("source", source_rate), ("target", target_rate)):
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise OptionsError(f"the {name} sampling rate must be a positive integer, got {rate!r}")
    if source_rate == target_rate:
        return np.asarray(wave, dtype=np.float32)
    try:
        from scipy.signal import resample_poly
    except ImportError as e:
        raise DataError(
            f"resampling audio from {source_rate} Hz to {target_rate} Hz needs scipy, which is "
            f"not installed: {INSTALL}"
        ) from e
    g = math.gcd(int(source_rate), int(target_rate))
    out = resample_poly(np.asarray(wave, dtype=np.float32), target_rate // g, source_rate // g)
    return out.astype(np.float32, copy=False)


def probe_audio(examples: Iterable[AudioExample]) -> list[float]:
    """Open every example's file header (no decoding) before any work, so a missing, unreadable
    or non-audio file stops a run before anything is computed or written.

    Returns:
        each file's duration in seconds, in order.

    Raises:
        DataError: naming the example's data file and line (or the file) and the reason.
    """
    sf = require_soundfile()
    durations = []
    for e in examples:
        try:
            info = sf.info(os.fspath(e.path))
        except (RuntimeError, OSError, ValueError, TypeError) as err:
            raise _unreadable(e.where, e.path, err) from err
        if info.frames <= 0:
            raise DataError(f"{e.where}: the audio file {e.path} holds no samples")
        durations.append(info.frames / info.samplerate)
    return durations


def _unreadable(where: str, path, error: Exception) -> DataError:
    return DataError(
        f"{where}: cannot read the audio file {path}: {error}; soundfile reads WAV, FLAC, OGG, "
        "MP3, AIFF and libsndfile's other formats: convert others (e.g. ffmpeg -i in.m4a "
        "out.flac)"
    )
