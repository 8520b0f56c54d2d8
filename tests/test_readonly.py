"""Write-protected models: an in-place edit is refused before anything is written, and what
``-o`` writes from such a model gets ordinary modes (the user's to change and delete).

CI runs as root, for whom ``os.access`` says every file is writable: the mode bits decide.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import torch

from headsurgeon.checkpoint import add_labels_to_checkpoint, remove_labels_from_checkpoint
from headsurgeon.cli import main
from headsurgeon.errors import CheckpointError
from tests.common import tree_hashes
from tests.test_paths import SURGERY, TRAIN, assert_refused, listing, run

#: a uid with no rights over the test's files (``nobody``)
NOBODY = 65534


def modes(folder: Path) -> dict[str, int]:
    """The modes of ``folder`` (``"."``) and of everything under it."""
    return {
        str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode)
        for p in [folder, *sorted(folder.rglob("*"))]
    }


def protect(path: Path) -> None:
    """``chmod -R a-w path`` (files first: the folder's own bits go last)."""
    for p in [*sorted(path.rglob("*"), reverse=True), path]:
        os.chmod(p, stat.S_IMODE(p.lstat().st_mode) & ~0o222)


def unprotect(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, stat.S_IMODE(p.lstat().st_mode) | stat.S_IWUSR | stat.S_IRUSR)


@pytest.fixture
def model(tiny_text_folder, tmp_path):
    """A fresh tiny text classifier at ``tmp_path/x/model``; every mode restored afterwards."""
    path = tmp_path / "x" / "model"
    shutil.copytree(tiny_text_folder, path)
    yield path
    unprotect(tmp_path)


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


# --- in place: refused ----------------------------------------------------------------------


@pytest.mark.parametrize("what", ["tree", "folder", "one-file"])
@pytest.mark.parametrize("name", SURGERY)
def test_in_place_edit_of_a_write_protected_model_is_refused(model, name, what):
    """``chmod -R a-w`` (or the folder alone, or one file the edit would not even rewrite):
    one line pointing at -o, the folder byte-identical with its modes, nothing beside it."""
    if what == "tree":
        protect(model)
    elif what == "folder":
        os.chmod(model, 0o555)
    else:
        os.chmod(model / "tokenizer.json", 0o444)
    before, mode_before, entries = tree_hashes(model), modes(model), listing(model.parent)
    res = run(name, model, *SURGERY[name][0])
    assert_refused(res, f"{model} is read-only", "write the result elsewhere with -o OUT")
    if what == "one-file":
        assert "tokenizer.json has mode -r--r--r--" in res.output
    assert tree_hashes(model) == before and modes(model) == mode_before
    assert listing(model.parent) == entries


def test_subfolders_count_but_read_only_files_inside_them_do_not(model):
    """A read-only subfolder protects the model; git's read-only objects in ``.git/`` (every
    clone of a Hub model has them) do not: such a clone is still edited in place."""
    objects = model / ".git" / "objects" / "ab"
    objects.mkdir(parents=True)
    (objects / "cdef").write_bytes(b"object")
    os.chmod(model / ".git", 0o555)
    before, mode_before = tree_hashes(model), modes(model)
    res = run("add-label", model, "--name", "delta")
    assert_refused(res, "is read-only (.git has mode dr-xr-xr-x)")
    assert tree_hashes(model) == before and modes(model) == mode_before
    os.chmod(model / ".git", 0o755)
    os.chmod(objects / "cdef", 0o444)
    assert run("add-label", model, "--name", "delta").exit_code == 0
    assert (objects / "cdef").read_bytes() == b"object"
    assert stat.S_IMODE((objects / "cdef").stat().st_mode) == 0o444


def test_the_api_refuses_in_place_too_and_writes_elsewhere(model, tmp_path):
    protect(model)
    before, mode_before = tree_hashes(model), modes(model)
    with pytest.raises(CheckpointError, match="is read-only .*-o OUT"):
        add_labels_to_checkpoint(model, ["delta"])
    with pytest.raises(CheckpointError, match="is read-only"):
        remove_labels_from_checkpoint(model, ["gamma"])
    assert add_labels_to_checkpoint(model, ["delta"], tmp_path / "out").added == ["delta"]
    assert tree_hashes(model) == before and modes(model) == mode_before


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0, reason="needs root to setuid")
def test_read_only_model_folder_as_a_plain_user(model, tmp_path):
    """The reported case, for real: a non-root user, ``chmod -R a-w model``, parent writable.

    A forked child drops to uid 65534 (the modules it needs are imported before the fork, since
    that user may not read this checkout); its files live in a fresh folder under /tmp."""
    warm = tmp_path / "warm"
    shutil.copytree(model, warm)
    assert run("add-label", warm, "--name", "delta").exit_code == 0  # imports what runs
    home = Path(tempfile.mkdtemp(prefix="hs-plain-user-"))
    try:
        shutil.copytree(model, home / "model")
        for p in [home, *home.rglob("*")]:
            os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
        os.chmod(home, 0o755)
        protect(home / "model")
        before, mode_before = tree_hashes(home / "model"), modes(home / "model")
        entries = listing(home)
        codes = []
        for name in SURGERY:
            pid = os.fork()
            if pid == 0:  # the child: never returns into pytest
                code = 70
                try:
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                    args = [name, str(home / "model"), *SURGERY[name][0]]
                    code = main.main(args, standalone_mode=False) or 0
                except BaseException:
                    code = 71
                finally:
                    os._exit(code)
            codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        assert codes == [1, 1, 1]
        assert listing(home) == entries  # no hidden copy beside it
        assert tree_hashes(home / "model") == before and modes(home / "model") == mode_before
    finally:
        unprotect(home)
        shutil.rmtree(home)


# --- -o from a read-only model: ordinary modes ----------------------------------------------


def assert_ordinary(out: Path, mask: int, source: Path) -> None:
    """Folders ``0o777 & ~mask``, files ``0o666 & ~mask``, no file shared with ``source``."""
    inodes = {p.stat().st_ino for p in source.rglob("*")}
    for p in [out, *out.rglob("*")]:
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(p.stat().st_mode))
        assert p.is_dir() or p.stat().st_ino not in inodes, p  # a link would share its mode


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
@pytest.mark.parametrize("name", SURGERY)
def test_output_of_a_read_only_model_has_ordinary_modes(model, tmp_path, umask, name, link):
    protect(model)
    mode_before = modes(model)
    out = tmp_path / "out"
    res = run(name, model, *SURGERY[name][0], "-o", out, *(["--link"] if link else []))
    assert res.exit_code == 0, res.output
    assert_ordinary(out, umask, model)
    assert modes(model) == mode_before
    shutil.rmtree(out)  # the user can delete it (no write bit needed beyond the folder's)


def test_link_still_links_writable_files_and_copies_read_only_ones(model, tmp_path, caplog):
    os.chmod(model / "tokenizer.json", 0o444)
    with caplog.at_level("WARNING", logger="headsurgeon"):
        add_labels_to_checkpoint(model, ["delta"], tmp_path / "out", link=True)
    out = tmp_path / "out"
    assert (out / "tokenizer_config.json").stat().st_ino == (
        model / "tokenizer_config.json"
    ).stat().st_ino
    assert (out / "tokenizer.json").stat().st_ino != (model / "tokenizer.json").stat().st_ino
    assert stat.S_IMODE((out / "tokenizer.json").stat().st_mode) & stat.S_IWUSR
    assert stat.S_IMODE((model / "tokenizer.json").stat().st_mode) == 0o444
    assert "tokenizer.json copied, not linked" in caplog.text


def test_pickle_fallback_output_of_a_read_only_model_has_ordinary_modes(model, tmp_path, umask):
    from transformers import AutoModelForSequenceClassification

    parent = AutoModelForSequenceClassification.from_pretrained(model)
    (model / "model.safetensors").unlink()
    torch.save(parent.state_dict(), model / "pytorch_model.bin")
    protect(model)
    out = tmp_path / "out"
    res = run("add-label", model, "--name", "delta", "-o", out, "--allow-pickle")
    assert res.exit_code == 0, res.output
    assert_ordinary(out, umask, model)


def test_train_output_of_a_read_only_model_has_ordinary_modes(model, tmp_path):
    data = tmp_path / "new.csv"
    data.write_text("text,label\n" + "card lost stolen,delta\n" * 8)
    protect(model)
    mode_before, out, old = modes(model), tmp_path / "out", os.umask(0o022)
    try:
        res = run("train", model, "--data", data, *TRAIN, "-o", out)
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert_ordinary(out, 0o022, model)
    assert modes(model) == mode_before


def test_check_of_a_read_only_child_reports_without_writing_into_it(model, tmp_path):
    """check records into CHILD's headsurgeon.json; into a write-protected CHILD it does not
    write (a note says so) and still reports and exits as the check decides."""
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("text,label\nword alpha,alpha\nword beta,beta\nword gamma,gamma\n")
    protect(model)
    before, mode_before = tree_hashes(model), modes(model)
    try:
        res = run("check", model, model, "--holdout", holdout)
        assert res.exit_code == 0, res.output
        assert "is read-only: the check is not recorded" in res.stderr
        assert tree_hashes(model) == before and modes(model) == mode_before
    finally:
        unprotect(model)
