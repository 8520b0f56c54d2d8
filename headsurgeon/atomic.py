"""Publish a changed model folder atomically: a new folder beside the target, then one rename.

The changed files are written into a hidden temp folder beside the target; the unchanged files
join them without their bytes being read (hard links in place, kernel copies or opt-in hard
links for ``-o``). Then:

- ``-o OUT``: ``os.replace(temp, OUT)``: OUT appears complete or not at all.
- in place: the temp folder and the model folder are swapped in one system call
  (``renameat2(RENAME_EXCHANGE)``, Linux), so a reader — or a process killed at any moment —
  sees the old folder or the new one, never a mix of new weights and an old ``config.json``
  (which would not load: size mismatch). The old folder, now under the temp name, is deleted.
  Its unchanged files were hard links shared with the new folder only until that deletion, and
  nothing writes into them. Where the swap is unavailable (other OSes, some filesystems) the
  changed files are moved in one by one with ``os.replace``, weights first, ``config.json``
  last, and a warning says so.

A process killed before the swap leaves the model untouched and a hidden
``.NAME.headsurgeon-*`` folder beside it, which can be deleted.

Durability: in place, every new file (and the folder) is fsynced before the swap, because the
old folder is deleted right after. ``-o`` does not force its files to disk, like ``cp``: the
source stays intact, so a power cut can cost the new folder, never the model.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from . import record as _record
from .errors import CheckpointError

logger = logging.getLogger(__name__)

#: write one new file at the given path (which does not exist yet)
Writer = Callable[[Path], None]
#: threads copying unchanged files (kernel copies release the GIL; more do not help on one disk)
COPY_THREADS = 4
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def check_output(src: Path, output: str | os.PathLike | None) -> Path | None:
    """Return the resolved ``-o`` folder, or ``None`` for an in-place edit.

    Raises:
        CheckpointError: the output exists and is not an empty folder.
    """
    if output is None:
        return None
    target = Path(output)
    if target.resolve() == src.resolve():
        return None
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CheckpointError(f"output {target} already exists and is not empty; choose another -o")
    return target


def commit(
    src: Path,
    output: Path | None,
    writers: Mapping[str, Writer],
    record: dict,
    *,
    link: bool = False,
    drop: frozenset[str] = frozenset(),
    carry: Callable[[Path, Path], None] | None = None,
) -> Path:
    """Write the folder ``src`` with ``writers``' files replaced and ``record`` appended.

    Args:
        src: the model folder read from (never written to).
        output: a new folder (from :func:`check_output`), or ``None`` to update ``src``.
        writers: file name → function writing that file's new content.
        record: the provenance record to write as ``headsurgeon.json``.
        link: with ``output``, hard-link unchanged files instead of copying them.
        drop: file names of ``src`` not to carry over (stale weights).
        carry: how to copy an unchanged file for ``output`` without ``link`` (default: a kernel
            copy for weights, ``shutil.copy2`` for the rest).

    Returns:
        the folder written.

    Raises:
        CheckpointError: the folder beside the target is not writable, or writing failed (disk
        full, ...); nothing is left behind.
    """
    target = src.resolve() if output is None else output
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.headsurgeon-", dir=target.parent))
    except OSError as e:
        raise CheckpointError(
            f"cannot create a folder beside {target} ({e.strerror or e}): headsurgeon writes "
            "there first and renames; give a writable -o"
        ) from e
    try:
        _fill(src, output, tmp, target, writers, record, link, drop, carry)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"writing {target} failed ({e}); nothing was changed") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _fill(src, output, tmp, target, writers, record, link, drop, carry) -> None:
    """Write the new folder ``tmp`` and publish it as ``target`` (see :func:`commit`)."""
    skip = set(writers) | set(drop) | {_record.RECORD_NAME}
    with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
        try:  # unchanged files are carried over while the changed ones are written
            if output is None:
                jobs = [pool.submit(_link_tree, target, tmp, skip)]
            else:
                jobs = _carry_files(src, tmp, skip, link, carry, pool)
            for name, write in writers.items():
                write(tmp / name)
            for job in jobs:
                job.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    _record.write_record(tmp, record)
    for name in [*writers, _record.RECORD_NAME]:  # a replaced file keeps its permissions
        if (src / name).is_file():
            shutil.copymode(src / name, tmp / name)
    if output is None:  # the old folder is about to go: the new one must be on disk first
        _fsync_small(tmp, [*writers, _record.RECORD_NAME])
    os.chmod(tmp, stat.S_IMODE(os.stat(src).st_mode))
    if output is None:
        _swap_in(tmp, target, [*writers, _record.RECORD_NAME], drop)
        _fsync_dir(target.parent)
    else:
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)


def _link_tree(src: Path, dst: Path, skip: set[str]) -> None:
    """Fill ``dst`` with hard links to ``src``'s files (recursively), except the ``skip`` names."""
    for entry in os.scandir(src):
        if entry.name in skip:
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), dst / entry.name)
        elif entry.is_dir():
            shutil.copytree(
                entry.path, dst / entry.name, symlinks=True, copy_function=_link_or_copy
            )
        else:
            _link_or_copy(entry.path, dst / entry.name)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError as e:  # a filesystem without hard links: copy at kernel speed instead
        logger.debug("hard link %s failed (%s): copying", src, e)
        shutil.copy2(src, dst)


def _carry_files(
    src: Path,
    dst: Path,
    skip: set[str],
    link: bool,
    carry: Callable[[Path, Path], None] | None,
    pool: ThreadPoolExecutor,
) -> list[Future]:
    """Start carrying ``src``'s top-level files (tokenizer, weights, ...) into ``dst``."""
    how = _link_or_copy if link else (carry or shutil.copy2)
    return [
        pool.submit(how, path, dst / path.name)
        for path in sorted(src.iterdir())
        if path.name not in skip and path.is_file()
    ]


def _swap_in(tmp: Path, target: Path, changed: list[str], drop: frozenset[str]) -> None:
    """Make ``tmp`` the content of ``target``: one atomic swap, else file by file."""
    try:
        exchange(tmp, target)
    except OSError as e:
        logger.warning(
            "atomic folder swap unavailable here (%s): replacing files one by one, config.json "
            "last; a crash between two of them would leave weights and config out of step",
            e,
        )
        for name in sorted(changed, key=lambda n: n == "config.json"):
            os.replace(tmp / name, target / name)
        for name in drop:
            (target / name).unlink(missing_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)  # the old version: the edit is done either way


def exchange(a: Path, b: Path) -> None:
    """Swap the paths ``a`` and ``b`` atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    Raises:
        OSError: the system or filesystem cannot do it.
    """
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "renameat2 is Linux-only")
    libc = ctypes.CDLL(None, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _fsync_small(folder: Path, names: list[str]) -> None:
    for name in names:
        fd = os.open(folder / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this OS: nothing more to do
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
