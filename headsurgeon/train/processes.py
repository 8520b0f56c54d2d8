"""Several processes (``torchrun``, ``accelerate launch``): who computes what, and who writes.

Under a launcher every process runs the whole command. ``Trainer`` splits the batches across the
processes; what surrounds it must not run once per process:

- the caches (block inputs, backbone features) are computed in shards, one per process, and
  gathered, so every process holds the whole cache (:func:`fill`);
- ``--batch-size`` stays the global batch: each process takes ``batch_size / count`` rows a step
  (:func:`per_process_batch`), so a run on N processes sees the same batches as a run on one;
- calibration, the check, the record and OUT are the main process's alone (:func:`is_main`);
  the head it calibrated is copied to the others (:func:`share_from_main`).

One process (no launcher) is the plain case: every function here is then a no-op.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import HeadSurgeonError

logger = logging.getLogger(__name__)


def launched() -> bool:
    """Whether this process is one of several started by a launcher (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str):
    """Join the launcher's process group (gloo on CPU, NCCL on GPUs) before the first collective.

    Returns accelerate's ``PartialState`` under a launcher, else ``None``. ``device`` is this
    process's device (``cpu``, ``cuda:1``, ...); ``Trainer`` later sets the state up again with the
    same backend and keeps the group.
    """
    if not launched():
        return None
    from accelerate import PartialState

    return PartialState(cpu=device == "cpu")


def finish() -> None:
    """Leave the launcher's process group together: each process waits for the others (the
    main one checks and writes after training), then the group is destroyed, so that no process
    exits while the group is still up (on gloo, a process leaving early has aborted at exit
    under load). No-op with one process or before the group was joined."""
    if not launched():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def together() -> Iterator[None]:
    """Run the block, then :func:`finish`: after it returns, or after a refusal
    (:class:`~headsurgeon.errors.HeadSurgeonError`: on every process, or the main process's
    gate alone); not after another error, where a process stuck in training would wait."""
    try:
        yield
    except HeadSurgeonError:
        finish()
        raise
    finish()


def count() -> int:
    """Number of processes (``WORLD_SIZE``, set by torchrun and accelerate; 1 without them)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def index() -> int:
    """This process's index (``RANK``; 0 without a launcher)."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def is_main() -> bool:
    """Whether this process checks, prints, records and writes (the only one without a launcher)."""
    return index() == 0


def local_device(device: str) -> str:
    """``device`` for this process: ``cuda`` becomes this process's GPU under a launcher."""
    if launched() and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``mps`` when available, else ``cpu``; under a
    launcher ``cuda`` is this process's GPU (``cuda:LOCAL_RANK``)."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    return local_device(device)


def per_process_batch(batch_size: int) -> int:
    """Rows per process and step so that the global batch stays ``batch_size``."""
    n = count()
    if n == 1:
        return batch_size
    if batch_size % n:
        logger.warning(
            "--batch-size %d is not a multiple of the %d processes: each takes %d rows a step "
            "(global batch %d)",
            batch_size,
            n,
            math.ceil(batch_size / n),
            math.ceil(batch_size / n) * n,
        )
    return math.ceil(batch_size / n)


def fill(
    texts: Sequence[str],
    caches: Sequence[MutableMapping[str, Any]],
    compute: Callable[[list[str]], Any],
) -> None:
    """Fill ``caches`` (text → tensor) for ``texts`` across the processes.

    Each process runs ``compute(part)`` on its share of the texts missing from a cache (``compute``
    fills every cache in ``caches`` for ``part``; ``False`` means it could not); the entries are
    gathered into every process's caches. When any process could not compute its share, nothing
    is gathered and the caller computes as with one process. No-op with one process.
    """
    n = count()
    if n == 1:
        return
    from accelerate.utils import gather_object

    missing = list(dict.fromkeys(t for t in texts if any(t not in c for c in caches)))
    part = missing[index() :: n]
    ok = compute(part) is not False if part else True
    entries = [{t: c[t].cpu() for t in part} for c in caches] if ok else None
    gathered = gather_object([(ok, entries)])
    if not all(done for done, _ in gathered):
        return
    for _, parts in gathered:
        for cache, got in zip(caches, parts, strict=True):
            cache.update(got)
    logger.info("cached %d texts in %d shards", len(missing), n)


def share_from_main(tensors: Sequence[Any], facts: Any = None) -> Any:
    """Copy the main process's values of ``tensors`` into every other process's (in place), and
    return the main process's ``facts`` (any picklable value) in every process."""
    if count() == 1:
        return facts
    import torch
    from accelerate.utils import broadcast_object_list

    sent = [t.detach().cpu() for t in tensors] if is_main() else None
    values, facts = broadcast_object_list([sent, facts])
    with torch.no_grad():
        for t, v in zip(tensors, values, strict=True):
            t.copy_(v.to(t.device))
    return facts


def mean(value: float) -> float:
    """The mean of ``value`` over the processes (a loss each measured on its slice)."""
    if count() == 1:
        return value
    from accelerate.utils import gather_object

    values = gather_object([value])
    return sum(values) / len(values)
