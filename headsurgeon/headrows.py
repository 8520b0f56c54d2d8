"""New head rows computed from raw checkpoint bytes, bit-identical to :mod:`headsurgeon.surgery`.

The streaming path must not import torch (~4 s), nor even numpy (~0.2 s, a quarter of an in-place
edit), to append a few rows, so this module redoes the in-memory policies in plain Python on
``array("f")`` vectors and matches torch's float32 arithmetic *bit for bit*:

- torch's CPU ``mean`` is ``sum(...) / n``, and its float32 ``sum`` adds in a fixed cascade
  (ATen ``SumKernel.cpp``: partial sums per 16 rows folded into 4 levels; an inner reduction is
  split into 4 interleaved partial sums and 8-float vectors). Float addition is not associative,
  so a naive mean differs in the last bit; :func:`torch_sum_rows` and :func:`torch_sum_vector`
  replay torch's order. Each float32 ``a + b`` or ``a / n`` is computed in double and rounded to
  float32 when stored in an ``array("f")``: exact, since a double has more than 2 × 24 + 2 bits
  (double rounding is then innocuous). The tests compare with torch on hundreds of shapes.
- bf16 is rounded from float32 to nearest-even (torch's ``round_to_nearest_even``); fp16 by
  ``struct``'s IEEE half packing, the same rounding.
- ``normal`` draws from torch's generator (imported lazily, only for that policy), so a seeded
  streamed surgery equals the in-memory one.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from operator import add

from .errors import CheckpointError, OptionsError

_LEVELS = 4  # ATen multi_row_sum: num_levels
_ILP = 4  # ATen row_sum: ilp_factor
# floats per vector in ATen's float sum kernel: 8 with ATEN_CPU_CAPABILITY default, avx2, avx512
_VEC = 8
_BIG_ENDIAN = sys.byteorder == "big"  # safetensors is little-endian


def _typed(code: str, raw: bytes) -> array:
    values = array(code)
    values.frombytes(raw)
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def _raw(values: array) -> bytes:
    if _BIG_ENDIAN:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def to_float32(raw: bytes, dtype: str) -> array:
    """Decode little-endian tensor bytes of a float ``dtype`` into a flat float32 ``array``.

    Raises:
        CheckpointError: a dtype other than F32, F16, BF16.
    """
    if dtype == "F32":
        return _typed("f", raw)
    if dtype == "F16":
        return array("f", struct.unpack(f"<{len(raw) // 2}e", raw))
    if dtype == "BF16":
        bits = array("I", (b << 16 for b in _typed("H", raw)))
        return _typed("f", _raw(bits))
    raise CheckpointError(
        f"the head is stored as {dtype}; headsurgeon edits float heads (F32, F16, BF16)"
    )


def from_float32(values: array, dtype: str) -> bytes:
    """Encode float32 ``values`` as little-endian bytes of ``dtype``, rounding like torch's ``.to``."""
    if dtype == "F32":
        return _raw(values)
    if dtype == "F16":
        return b"".join(_half(v) for v in values)
    if dtype == "BF16":
        bits = _typed("I", _raw(values))
        return _raw(array("H", (_bf16(b) for b in bits)))
    raise CheckpointError(f"cannot write {dtype}: headsurgeon edits F32, F16 and BF16 heads")


def _bf16(bits: int) -> int:
    if bits & 0x7FFFFFFF > 0x7F800000:
        return 0xFFFF  # as torch's vectorised conversion (its scalar one writes 0x7FC0: any NaN)
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16


def _half(value: float) -> bytes:
    try:
        return struct.pack("<e", value)
    except OverflowError:  # torch rounds out-of-range values to infinity
        return struct.pack("<e", math.copysign(math.inf, value))


def _ceil_log2(x: int) -> int:
    return 1 if x <= 2 else (x - 1).bit_length()


def _vadd(a: array, b: array) -> array:
    """Lane-wise float32 ``a + b``."""
    return array("f", map(add, a, b))


def _cascade(rows: list[array], lanes: int) -> array:
    """Sum ``rows`` (each ``lanes`` wide) in ATen ``multi_row_sum``'s order."""
    size = len(rows)
    power = max(4, _ceil_log2(size) // _LEVELS)
    step, mask = 1 << power, (1 << power) - 1
    zero = array("f", bytes(4 * lanes))
    acc = [zero] * _LEVELS
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = _vadd(acc[0], rows[i])
            i += 1
        for j in range(1, _LEVELS):
            acc[j], acc[j - 1] = _vadd(acc[j], acc[j - 1]), zero
            if i & (mask << (j * power)):
                break
    for r in range(i, size):
        acc[0] = _vadd(acc[0], rows[r])
    for j in range(1, _LEVELS):
        acc[0] = _vadd(acc[0], acc[j])
    return acc[0]


def _row_sum(rows: list[array], lanes: int) -> array:
    """ATen ``row_sum``: ``_ILP`` interleaved cascades over the rows, then the tail, then folded."""
    q = len(rows) // _ILP
    if q:
        wide = [sum(rows[i * _ILP + 1 : (i + 1) * _ILP], rows[i * _ILP]) for i in range(q)]
        flat = _cascade(wide, _ILP * lanes)
        parts = [flat[k * lanes : (k + 1) * lanes] for k in range(_ILP)]
    else:
        parts = [array("f", bytes(4 * lanes))] * _ILP
    total = parts[0]
    for r in range(q * _ILP, len(rows)):
        total = _vadd(total, rows[r])
    for k in range(1, _ILP):
        total = _vadd(total, parts[k])
    return total


def torch_sum_vector(x: array) -> float:
    """``torch.sum`` of a float32 vector, same bits (ATen ``vectorized_inner_sum``)."""
    n = len(x)
    if n < _VEC:
        return _row_sum([x[i : i + 1] for i in range(n)], 1)[0]
    full = n // _VEC
    vec = _row_sum([x[i * _VEC : (i + 1) * _VEC] for i in range(full)], _VEC)
    total = array("f", [0.0])
    for k in range(full * _VEC, n):
        total = _vadd(total, x[k : k + 1])
    for k in range(_VEC):
        total = _vadd(total, vec[k : k + 1])
    return total[0]


def torch_sum_rows(flat: array, n: int, h: int) -> array:
    """``torch.sum(m, 0)`` of the float32 ``[n, h]`` matrix ``flat`` (row-major), same bits.

    ATen's ``vectorized_outer_sum``: column blocks of 4 vectors by one cascade, the remaining
    columns by ``row_sum`` (which works lane by lane, so they can go in one call).
    """
    if h == 1:  # torch coalesces [n, 1] into a vector
        return array("f", [torch_sum_vector(flat)])
    rows = [flat[i * h : (i + 1) * h] for i in range(n)]
    blocked = h // (_ILP * _VEC) * (_ILP * _VEC)
    out = array("f")
    if blocked:
        out += _cascade([r[:blocked] for r in rows], blocked)
    if blocked < h:
        out += _row_sum([r[blocked:] for r in rows], h - blocked)
    return out


def new_rows(
    weight: array, n: int, k: int, init: str, *, seed: int | None = None, std: float = 0.02
) -> array:
    """Return ``k`` new rows (flat float32) for a ``[n, in]`` head, as ``surgery._new_rows`` does.

    Args:
        weight: the old head weight, flat float32, row-major.
        n: its number of rows (labels).
        k: number of new rows.
        init: ``mean``, ``zeros`` or ``normal`` (``imprint`` needs features: in-memory only).
        seed: seed of the ``normal`` policy (torch's generator, imported only for it).
        std: standard deviation of ``normal`` (the config's ``initializer_range``).

    Raises:
        OptionsError: an init policy the streaming path cannot apply.
    """
    width = len(weight) // n
    if init == "mean":
        return array("f", [v / n for v in torch_sum_rows(weight, n, width)]) * k
    if init == "zeros":
        return array("f", bytes(4 * k * width))
    if init == "normal":
        import torch

        gen = torch.Generator()
        gen.manual_seed(seed) if seed is not None else gen.seed()
        return array("f", (torch.randn(k, width, generator=gen) * std).flatten().tolist())
    raise OptionsError(
        f"init {init!r} cannot be applied to a checkpoint on disk: use mean, zeros or normal "
        "(imprint needs example features: load the model and call headsurgeon.add_labels)"
    )


def new_biases(bias: array, k: int, policy: str) -> array:
    """Return ``k`` new biases (``mean``, ``min`` or ``zeros`` of the old ones), float32."""
    if policy == "mean":
        value = torch_sum_vector(bias) / len(bias)
    elif policy == "min":
        value = min(bias)
    elif policy == "zeros":
        value = 0.0
    else:
        raise OptionsError(f"unknown bias policy {policy!r}: expected one of mean, min, zeros")
    return array("f", [value]) * k
