"""New head rows computed from raw checkpoint bytes, bit-identical to :mod:`headsurgeon.surgery`.

The streaming path must not import torch (~4 s) to append a few rows, so this module redoes the
in-memory policies in numpy and matches torch's float32 arithmetic *bit for bit*:

- torch's CPU ``mean`` is ``sum(...) / n``, and its float32 ``sum`` adds in a fixed cascade
  (ATen ``SumKernel.cpp``: partial sums per 16 rows folded into 4 levels; an inner reduction is
  split into 4 interleaved partial sums and 8-float vectors). Float addition is not associative,
  so numpy's own ``mean`` differs in the last bit; :func:`torch_sum_rows` and
  :func:`torch_sum_vector` replay torch's order with exact IEEE float32 additions. The tests
  compare them with torch on hundreds of shapes.
- bf16 is rounded from float32 to nearest-even (torch's ``round_to_nearest_even``); fp16 by
  numpy's IEEE cast, the same rounding.
- ``normal`` draws from torch's generator (imported lazily, only for that policy), so a seeded
  streamed surgery equals the in-memory one.
"""

from __future__ import annotations

from typing import Any

from .errors import CheckpointError, OptionsError

#: safetensors dtypes a head may have → bytes per element
FLOAT_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
TORCH_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_LEVELS = 4  # ATen multi_row_sum: num_levels
_ILP = 4  # ATen row_sum: ilp_factor
_VEC = 8  # floats per vector in ATen's float sum kernel (32-byte Vectorized, on every CPU tested)


def to_float32(raw: bytes, dtype: str, shape: tuple[int, ...]):
    """Decode little-endian ``raw`` tensor bytes of a float ``dtype`` into a float32 array."""
    import numpy as np

    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").reshape(shape).astype(np.float32)
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    raise CheckpointError(
        f"the head is stored as {dtype}; headsurgeon edits float heads (F32, F16, BF16)"
    )


def from_float32(values, dtype: str) -> bytes:
    """Encode a float32 array as little-endian bytes of ``dtype``, rounding like torch's ``.to``."""
    import numpy as np

    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "F32":
        return values.astype("<f4").tobytes()
    if dtype == "F16":
        return values.astype("<f2").tobytes()
    if dtype == "BF16":
        bits = values.view(np.uint32).astype(np.uint32)
        rounded = ((bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
        rounded[np.isnan(values)] = 0x7FC0  # torch's canonical bf16 NaN
        return rounded.astype("<u2").tobytes()
    raise CheckpointError(f"cannot write {dtype}: headsurgeon edits F32, F16 and BF16 heads")


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else (x - 1).bit_length()


def _cascade(rows):
    """Sum the rows of a float32 ``[size, lanes]`` array in ATen ``multi_row_sum``'s order."""
    import numpy as np

    size, lanes = rows.shape
    power = max(4, _ceil_log2(size) // _LEVELS)
    step, mask = 1 << power, (1 << power) - 1
    acc = np.zeros((_LEVELS, lanes), np.float32)
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] += rows[i]
            i += 1
        for j in range(1, _LEVELS):
            acc[j] += acc[j - 1]
            acc[j - 1] = 0
            if i & (mask << (j * power)):
                break
    for r in range(i, size):
        acc[0] += rows[r]
    for j in range(1, _LEVELS):
        acc[0] += acc[j]
    return acc[0]


def _row_sum(rows):
    """ATen ``row_sum``: ``_ILP`` interleaved cascades over the rows, then the tail, then folded."""
    import numpy as np

    size, lanes = rows.shape
    q = size // _ILP
    if q:
        parts = _cascade(rows[: q * _ILP].reshape(q, _ILP * lanes)).reshape(_ILP, lanes)
    else:
        parts = np.zeros((_ILP, lanes), np.float32)
    total = parts[0].copy()
    for r in range(q * _ILP, size):
        total += rows[r]
    for k in range(1, _ILP):
        total += parts[k]
    return total


def torch_sum_vector(x) -> Any:
    """``torch.sum`` of a contiguous float32 vector, same bits (ATen ``vectorized_inner_sum``)."""
    import numpy as np

    n = x.shape[0]
    if n < _VEC:
        return _row_sum(x.reshape(n, 1))[0]
    full = n // _VEC
    vec = _row_sum(x[: full * _VEC].reshape(full, _VEC))
    total = np.zeros(1, np.float32)
    for k in range(full * _VEC, n):
        total += x[k]
    for k in range(_VEC):
        total += vec[k]
    return total[0]


def torch_sum_rows(matrix):
    """``torch.sum(matrix, 0)`` of a contiguous float32 ``[n, h]`` array, same bits.

    ATen's ``vectorized_outer_sum``: column blocks of 4 vectors by one cascade, then single
    vectors and the last columns by ``row_sum``.
    """
    import numpy as np

    n, h = matrix.shape
    if h == 1:  # torch coalesces [n, 1] into a vector
        return np.array([torch_sum_vector(matrix[:, 0])], np.float32)
    if h < _VEC:
        return _row_sum(matrix)
    out = np.empty(h, np.float32)
    j, block = 0, _ILP * _VEC
    while j + block <= h:
        out[j : j + block] = _cascade(matrix[:, j : j + block])
        j += block
    while j + _VEC <= h:
        out[j : j + _VEC] = _row_sum(matrix[:, j : j + _VEC])
        j += _VEC
    if j < h:
        out[j:] = _row_sum(matrix[:, j:])
    return out


def new_rows(weight, k: int, init: str, *, seed: int | None = None, std: float = 0.02):
    """Return ``[k, in]`` float32 rows for new labels, as ``surgery._new_rows`` makes them.

    Args:
        weight: the old head weight as a float32 ``[n, in]`` array.
        k: number of new rows.
        init: ``mean``, ``zeros`` or ``normal`` (``imprint`` needs features: in-memory only).
        seed: seed of the ``normal`` policy (torch's generator, imported only for it).
        std: standard deviation of ``normal`` (the config's ``initializer_range``).

    Raises:
        OptionsError: an init policy the streaming path cannot apply.
    """
    import numpy as np

    n, width = weight.shape
    if init == "mean":
        mean = torch_sum_rows(np.ascontiguousarray(weight)) / np.float32(n)
        return np.repeat(mean[None, :].astype(np.float32), k, axis=0)
    if init == "zeros":
        return np.zeros((k, width), np.float32)
    if init == "normal":
        import torch

        gen = torch.Generator()
        gen.manual_seed(seed) if seed is not None else gen.seed()
        return (torch.randn(k, width, generator=gen) * std).numpy()
    raise OptionsError(
        f"init {init!r} cannot be applied to a checkpoint on disk: use mean, zeros or normal "
        "(imprint needs example features: load the model and call headsurgeon.add_labels)"
    )


def new_biases(bias, k: int, policy: str):
    """Return ``[k]`` float32 new biases (``mean``, ``min`` or ``zeros`` of the old ``[n]`` biases)."""
    import numpy as np

    if policy == "mean":
        value = torch_sum_vector(np.ascontiguousarray(bias)) / np.float32(bias.shape[0])
    elif policy == "min":
        value = bias.min()
    elif policy == "zeros":
        value = 0.0
    else:
        raise OptionsError(f"unknown bias policy {policy!r}: expected one of mean, min, zeros")
    return np.full(k, value, np.float32)
