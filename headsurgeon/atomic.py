"""Publish a changed model folder atomically: a new folder beside the target, then one rename.

The changed files are written into a hidden temp folder beside the target; the unchanged files
join them without their bytes being read (hard links in place, kernel copies or opt-in hard
links for ``-o``). Then:

- ``-o OUT``: ``os.replace(temp, OUT)``: OUT appears complete or not at all.
- in place: the temp folder and the model folder are swapped in one system call
  (``renameat2(RENAME_EXCHANGE)``, Linux), so a reader — or a process killed at any moment —
  sees the old folder or the new one, never a mix of new weights and an old ``config.json``
  (which would not load: size mismatch). The old folder, now under the temp name, is deleted.
  If it cannot be deleted, the two are swapped back, the new one is deleted and the command
  fails: nothing changed, nothing left. Its unchanged files were hard links shared with the new
  folder only until that deletion, and nothing writes into them. Where the swap is unavailable (other OSes, some
  filesystems) the changed files are moved in one by one with ``os.replace``, weights first,
  ``config.json`` last, and a warning says so.

Paths (:func:`check_output`, the one check of every command that writes): ``-o`` is compared
with MODEL after resolving symlinks, ``..`` and trailing slashes, and by inode
(``os.path.samefile``, which also sees bind mounts); ``-o`` equal to MODEL or inside it is refused.
An in-place edit of a write-protected MODEL (:func:`check_writable`) is refused before anything
is written: a user who took the write bits away meant to keep it, and root, for whom
``os.access`` says writable anyway, must not override that silently.

Modes: in place, the folder and every file keep their modes. ``-o`` gets ordinary modes, what a
new folder or file gets under the process umask (``0o777``/``0o666`` minus the umask), whatever
MODEL's were: the copy of a read-only model is the user's to change and delete. With ``link``,
a hard link shares its file's mode, so a read-only file is copied instead of linked (a warning
says so); a linked file keeps its own (writable) mode.

Leftovers of killed runs: temp folders are named ``.NAME.headsurgeon-PID-XXXXXXXX`` (PID: the
writing process). A process killed before the swap leaves the model untouched and such a folder
beside it; it cannot clean up after itself, so the next headsurgeon command that writes to the
same target (``NAME``) deletes every such folder whose process is no longer running (POSIX; a
folder of a live process, or one without a PID, is kept; a process on another machine sharing
the folder would look dead, so do not write one model from two machines at once). Deleting
them by hand is also safe once no headsurgeon process runs.

Durability: in place, every new file (and the folder) is fsynced before the swap, because the
old folder is deleted right after. ``-o`` does not force its files to disk, like ``cp``: the
source stays intact, so a power cut can cost the new folder, never the model.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from . import record as _record
from .errors import CheckpointError
from .process import pid_alive

logger = logging.getLogger(__name__)

#: write one new file at the given path (which does not exist yet)
Writer = Callable[[Path], None]
#: threads copying unchanged files (kernel copies release the GIL; more do not help on one disk)
COPY_THREADS = 4
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: ``.NAME.headsurgeon-PID-...``: the temp folders of the process PID writing NAME
_TEMP = re.compile(r"\.headsurgeon-(\d+)-")


def check_output(
    src: str | os.PathLike, output: str | os.PathLike | None, *, in_place: bool = True
) -> Path | None:
    """Return the ``-o`` folder to write, or ``None`` for an in-place edit of ``src``.

    The one check every command that writes runs first. ``output`` and ``src`` are compared
    after resolving (symlinks, ``..``, trailing slashes) and by inode. Temp folders that killed
    runs left beside the target are deleted (see the module docstring). ``in_place``: whether
    the command can change MODEL in place (leaving ``-o`` out); ``train`` cannot.

    Raises:
        CheckpointError: ``output`` is ``src``, is inside ``src``, or exists and is not an
        empty folder; or, in place, ``src`` is write-protected (:func:`check_writable`).
    """
    if output is None:
        check_writable(src)
        remove_stale(Path(os.path.realpath(src)))
        return None
    target = Path(output)
    real = Path(os.path.realpath(target))
    where = _relation(Path(src), real)
    if where == 0:
        hint = " (leave -o out to change MODEL in place)" if in_place else ""
        raise CheckpointError(
            f"-o {output} is the input model (MODEL {src}); -o must name a new or empty "
            f"folder{hint}"
        )
    if where is not None:
        raise CheckpointError(f"-o {output} is inside MODEL ({src}); choose a folder outside MODEL")
    remove_stale(real)
    if occupied(real):
        raise CheckpointError(  # read from Python (save, train's output) and the CLI alike
            f"output folder {target} already exists and is not empty; choose another output "
            "folder (-o on the command line)"
        )
    # a symlink or a `.`/`..` name is written where it points (a rename would replace the link)
    return real if target.is_symlink() or target.name in ("", ".", "..") else target


def occupied(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` exists and is not an empty folder (a file, or a folder with files):
    what no command writes into."""
    real = Path(os.path.realpath(folder))
    return real.exists() and (not real.is_dir() or any(real.iterdir()))


def check_writable(model: str | os.PathLike) -> None:
    """Refuse to edit ``model`` in place when it is write-protected.

    Write-protected: the folder, a folder below it or a file of the folder (the weights, config
    and tokenizer files an edit replaces or carries) lacks the owner write bit, or this process
    may not write it. The mode bits are read as well as ``os.access``, which says writable to
    root whatever they are. Files in subfolders are not read: tools keep read-only files there
    as a matter of course (git's objects in ``.git/`` are ``0o444``). Symlinks are not followed
    (an edit replaces the link, never its target).

    Raises:
        CheckpointError: naming the first protected entry and the way out (``-o OUT``).
    """
    folder = os.path.realpath(model)
    for root, _dirs, files in os.walk(folder):
        names = sorted(files) if root == folder else []
        for path in [root, *(os.path.join(root, name) for name in names)]:
            try:
                mode = os.lstat(path).st_mode
            except OSError:  # gone meanwhile: nothing to protect
                continue
            if stat.S_ISLNK(mode) or (mode & stat.S_IWUSR and os.access(path, os.W_OK)):
                continue
            what = "the folder" if path == folder else os.path.relpath(path, folder)
            why = " and is not writable by this user" if mode & stat.S_IWUSR else ""
            raise CheckpointError(
                f"{model} is read-only ({what} has mode {stat.filemode(mode)}{why}): headsurgeon "
                "does not edit a write-protected model in place; write the result elsewhere "
                f"with -o OUT (or make it writable first: chmod -R u+w {model})"
            )


def _relation(src: Path, out: Path) -> int | None:
    """How many levels ``out`` lies below ``src`` (0: the same folder), or ``None``."""
    model = Path(os.path.realpath(src))
    for depth, folder in enumerate([out, *out.parents]):
        if folder == model:
            return depth
        try:
            if os.path.samefile(folder, model):  # another path to it (bind mount, ...)
                return depth
        except OSError:  # does not exist (yet)
            continue
    return None


def remove_stale(target: Path) -> None:
    """Delete the temp folders beside ``target`` left by headsurgeon runs that are dead."""
    prefix = f".{target.name}.headsurgeon-"
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except OSError:  # no parent yet, or not readable: nothing of ours there
        return
    for name in names:
        pid, path = _owner_pid(name), target.parent / name
        if pid is None or path.is_symlink() or not path.is_dir():  # not one of our folders
            continue
        if not pid_alive(pid):
            logger.info("deleting %s, left by a killed headsurgeon run", path)
            try:
                remove_tree(path)
            except OSError as e:
                logger.warning("could not delete %s (%s)", path, e)


def _owner_pid(name: str) -> int | None:
    match = _TEMP.search(name)
    return int(match.group(1)) if match else None


def remove_tree(path: Path) -> None:
    """Delete the folder ``path``, making its folders writable first (files are not touched).

    Raises:
        OSError: a folder is not ours to make writable, or deleting failed.
    """
    _unlock(path)
    shutil.rmtree(path)


def _unlock(folder) -> None:
    """Give us rwx on ``folder`` and every folder below it, or raise before deleting anything."""
    mode = stat.S_IMODE(os.lstat(folder).st_mode)
    if mode & stat.S_IRWXU != stat.S_IRWXU:
        os.chmod(folder, mode | stat.S_IRWXU)  # only folders: files may be shared hard links
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _unlock(entry.path)


def _discard(path: Path) -> None:
    """Delete our own temp folder on the way out of an error; say so if it cannot go."""
    try:
        remove_tree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        logger.warning("could not delete %s (%s): delete it", path, e)


@contextmanager
def temp_folder(target: Path, kind: str = "") -> Iterator[Path]:
    """A new hidden folder ``.NAME.headsurgeon-PID-KIND...`` beside ``target``, deleted on exit.

    Missing parent folders of ``target`` are created, and deleted again if ``target`` was not
    written.

    Raises:
        CheckpointError: the folder beside ``target`` cannot be created.
    """
    made = []
    try:
        for parent in reversed([target.parent, *target.parent.parents]):
            if not parent.exists():
                parent.mkdir()
                made.append(parent)
        prefix = f".{target.name}.headsurgeon-{os.getpid()}-{kind}"
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    except OSError as e:
        _remove_empty(made)
        raise CheckpointError(
            f"cannot create a folder beside {target} ({e.strerror or e}): headsurgeon writes "
            "there first and renames; give a writable -o"
        ) from e
    try:
        yield tmp
    finally:
        if tmp.exists():
            _discard(tmp)
        if not target.exists():
            _remove_empty(made)


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


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
    with temp_folder(target) as tmp:
        try:
            _fill(src, output, tmp, target, writers, record, link, drop, carry)
        except CheckpointError:
            raise
        except OSError as e:
            raise CheckpointError(f"writing {target} failed ({e}); nothing was changed") from e
    return target


def _fill(src, output, tmp, target, writers, record, link, drop, carry) -> None:
    """Write the new folder ``tmp`` and publish it as ``target`` (see :func:`commit`)."""
    skip = set(writers) | set(drop) | {_record.RECORD_NAME}
    ordinary = None if output is None else _new_folder_mode(tmp)  # while tmp is empty
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
    if output is None:  # in place, a replaced file keeps its permissions
        for name in writers:
            if (src / name).is_file():
                shutil.copymode(src / name, tmp / name)
        folder_mode = stat.S_IMODE(os.stat(src).st_mode)
    else:  # a new folder: ordinary modes, not MODEL's (which may be read-only)
        _ordinary_modes(src, tmp, ordinary)
        folder_mode = ordinary  # set last: tmp is still written to
    _record.write_record(tmp, record)  # with the mode of config.json
    if output is None:  # the old folder is about to go: the new one must be on disk first
        _fsync_small(tmp, [*writers, _record.RECORD_NAME])
    os.chmod(tmp, folder_mode)
    if output is None:
        _swap_in(tmp, target, [*writers, _record.RECORD_NAME], drop)
        _fsync_dir(target.parent)
    else:
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)


def _new_folder_mode(empty: Path) -> int:
    """The mode a new folder gets in ``empty`` (``0o777`` minus the umask), by making one: the
    umask cannot be read without setting it, process-wide."""
    probe = empty / "mode-probe"
    os.mkdir(probe)
    try:
        return stat.S_IMODE(os.stat(probe).st_mode) & 0o777
    finally:
        os.rmdir(probe)


def _ordinary_modes(src: Path, tmp: Path, folder_mode: int) -> None:
    """Give ``tmp``'s subfolders ``folder_mode`` and its files ``folder_mode & 0o666``; files
    hard-linked to ``src``'s keep the source's mode (they are the same file)."""
    for root, dirs, files in os.walk(tmp):
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), folder_mode)
        for name in files:
            path = Path(root, name)
            if not path.is_symlink() and not _same_file(path, src / path.relative_to(tmp)):
                os.chmod(path, folder_mode & 0o666)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # b does not exist
        return False


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
    """Start carrying ``src``'s top-level files (tokenizer, weights, ...) into ``dst``.

    With ``link``, a read-only file is copied: its link would be read-only in ``dst`` too.
    """
    paths = [p for p in sorted(src.iterdir()) if p.name not in skip and p.is_file()]
    copy = carry or shutil.copy2
    protected = {p for p in paths if link and not p.stat().st_mode & stat.S_IWUSR}
    if protected:
        logger.warning(
            "--link: %s copied, not linked: read-only in %s, and a hard link shares its file's "
            "mode (the new folder would hold read-only files)",
            ", ".join(sorted(p.name for p in protected)),
            src,
        )
    return [
        pool.submit(_link_or_copy if link and p not in protected else copy, p, dst / p.name)
        for p in paths
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
        _delete_old(tmp, target)  # the rest: links to files the model keeps
        return
    try:  # the old version, now under the temp name: make it deletable before deleting
        _unlock(tmp)
    except OSError as e:
        try:
            exchange(tmp, target)  # nothing deleted yet: put the old model back
        except OSError:
            raise CheckpointError(
                f"{target} was changed, but its old copy {tmp} could not be deleted "
                f"({e.strerror or e}); delete it"
            ) from e
        raise CheckpointError(
            f"could not delete the old copy of {target} ({e.strerror or e}) after writing the "
            "new one, so it was put back: nothing was changed; make the folder and its "
            "subfolders yours and writable, or write a new folder with -o"
        ) from e
    _delete_old(tmp, target)


def _delete_old(old: Path, target: Path) -> None:
    try:
        remove_tree(old)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise CheckpointError(
            f"{target} was changed, but its old copy {old} could not be deleted ({e}); "
            "delete it (the next headsurgeon command on this model retries)"
        ) from e


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
