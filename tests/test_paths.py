"""Paths: ``-o`` is compared with MODEL after resolving, and no writing command leaves anything
beside the model (or inside it) on success or on any kind of failure."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from headsurgeon.cli import main
from tests.common import tree_hashes

REPO = Path(__file__).resolve().parents[1]
#: writing commands on the on-disk path: (ok arguments, arguments that fail on a bad label)
SURGERY = {
    "add-label": (["--name", "delta"], ["--name", "alpha"]),
    "remove-label": (["gamma"], ["nope"]),
    "rename-label": (["alpha", "ALPHA"], ["nope", "x"]),
}
TRAIN = ["--max-steps", "2", "--batch-size", "4", "--device", "cpu", "--add"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.fixture
def model(tiny_text_folder, tmp_path) -> Path:
    """A fresh copy of a tiny text classifier at ``tmp_path/x/model``."""
    path = tmp_path / "x" / "model"
    shutil.copytree(tiny_text_folder, path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    (d / "new.csv").write_text("text,label\n" + "card lost stolen,delta\n" * 8)
    (d / "bad.csv").write_text("text,label\n" + "card lost stolen,zeta\n" * 4)
    return {"new": d / "new.csv", "bad": d / "bad.csv"}


def command(name: str, model: Path, data, ok: bool = True) -> list:
    if name == "train":
        return [
            "train",
            model,
            "--data",
            data["new" if ok else "bad"],
            *TRAIN[: -1 if not ok else None],
        ]
    return [name, model, *SURGERY[name][0 if ok else 1]]


def assert_refused(res, *messages: str) -> None:
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    for message in messages:
        assert message in res.output, res.output


def spellings(model: Path) -> dict[str, str]:
    link = model.parent / "link"
    link.symlink_to(model, target_is_directory=True)
    return {
        "same": str(model),
        "trailing-slash": f"{model}/",
        "dot-dot": f"{model.parent}/../{model.parent.name}/model/",
        "dot": f"{model}/.",
        "symlink": str(link),
        "symlink-slash": f"{link}/",
    }


# --- -o equal to MODEL, -o inside MODEL -----------------------------------------------------


@pytest.mark.parametrize("name", [*SURGERY, "train"])
def test_output_equal_to_model_is_refused_untouched(model, data, name):
    ways = spellings(model)
    before, entries = tree_hashes(model), listing(model.parent)
    for way, out in ways.items():
        res = run(*command(name, model, data), "-o", out)
        assert_refused(res, "is the input model", "-o")
        assert tree_hashes(model) == before, way
        assert listing(model.parent) == entries, way


@pytest.mark.parametrize("name", [*SURGERY, "train"])
def test_output_inside_model_is_refused_untouched(model, data, name):
    link = model.parent / "link"
    link.symlink_to(model, target_is_directory=True)
    before, entries = tree_hashes(model), listing(model.parent)
    (model / "sub").mkdir()  # an empty folder inside MODEL is still inside MODEL
    inside = [
        model / "new",
        model / "sub",
        model / "sub" / "deeper",
        f"{link}/new",
        f"{model}/../model/new",
    ]
    for out in inside:
        res = run(*command(name, model, data), "-o", out)
        assert_refused(res, "inside MODEL", "-o")
        assert listing(model) == sorted([*before, "sub"]) and tree_hashes(model) == before, out
        assert listing(model / "sub") == [] and listing(model.parent) == entries, out


def test_output_in_a_bind_mount_of_model_is_refused(model, tmp_path):
    """Same folder by another path that realpath cannot see through: compared by inode."""
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    mount = tmp_path / "bind"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(model), str(mount)], capture_output=True).returncode:
        pytest.skip("mount --bind failed here")
    try:
        before = tree_hashes(model)
        assert_refused(
            run("add-label", model, "--name", "delta", "-o", mount), "is the input model"
        )
        assert_refused(
            run("add-label", model, "--name", "delta", "-o", mount / "o"), "inside MODEL"
        )
        assert tree_hashes(model) == before
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_output_through_a_symlink_to_an_empty_folder(model):
    """``-o link`` where link points to an empty folder: the folder is written, the link kept."""
    real = model.parent / "real"
    real.mkdir()
    link = model.parent / "link"
    link.symlink_to(real, target_is_directory=True)
    entries = listing(model.parent)
    res = run("add-label", model, "--name", "delta", "-o", link)
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and (real / "config.json").is_file()
    assert listing(model.parent) == entries


# --- nothing stray beside the model ---------------------------------------------------------


@pytest.mark.parametrize("name", list(SURGERY))
@pytest.mark.parametrize(
    "case", ["in-place", "output", "bad-label-in-place", "bad-label-output", "output-not-empty"]
)
def test_no_stray_entry_after_surgery(model, data, name, case):
    out = model.parent / "out"
    if case == "output-not-empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    before, entries = tree_hashes(model), listing(model.parent)
    ok = not case.startswith("bad-label") and case != "output-not-empty"
    args = command(name, model, data, ok=not case.startswith("bad-label"))
    res = run(*args, *([] if case.endswith("in-place") else ["-o", out]))
    if ok:
        assert res.exit_code == 0, res.output
    else:
        assert_refused(res)
    expected = entries + (["out"] if case == "output" else [])
    assert listing(model.parent) == sorted(expected)
    if case != "in-place":
        assert tree_hashes(model) == before
    if case == "output-not-empty":
        assert listing(out) == ["keep.txt"]
    folder = model if case == "in-place" else out
    if ok:  # nothing stray inside the written folder either
        assert listing(folder) == sorted({*before, "headsurgeon.json"})


def test_no_stray_entry_after_train(model, data):
    before, entries = tree_hashes(model), listing(model.parent)
    out = model.parent / "out"
    assert_refused(run(*command("train", model, data, ok=False), "-o", out), "zeta")
    assert listing(model.parent) == entries
    res = run(*command("train", model, data), "-o", out)
    assert res.exit_code == 0, res.output
    assert listing(model.parent) == sorted([*entries, "out"])
    assert ".headsurgeon" not in " ".join(listing(out)) and "headsurgeon.json" in listing(out)
    assert_refused(run(*command("train", model, data), "-o", out), "not empty")
    assert listing(model.parent) == sorted([*entries, "out"]) and tree_hashes(model) == before


# --- the old copy of an in-place edit (read-only models: test_readonly.py) -----------------


def test_old_copy_that_cannot_be_deleted_is_put_back(model, monkeypatch):
    """The swap happened but the old copy cannot be deleted: swap back, fail, leave nothing."""
    from headsurgeon import atomic

    real, calls = atomic._unlock, []

    def refuse(path):  # the old copy, under the temp name, once
        if atomic._owner_pid(Path(path).name) is not None and not calls:
            calls.append(path)
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(atomic, "_unlock", refuse)
    before, entries = tree_hashes(model), listing(model.parent)
    res = run("add-label", model, "--name", "delta")
    assert_refused(res, "could not delete the old copy", "nothing was changed")
    assert tree_hashes(model) == before and listing(model.parent) == entries
    assert len(calls) == 1


# --- stale temp folders of killed runs ------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_command_removes_temp_folders_of_dead_runs(model, data):
    stale = model.parent / f".model.headsurgeon-{dead_pid()}-abc123"
    shutil.copytree(model, stale / "sub")
    os.chmod(stale, 0o555)  # even a read-only leftover goes
    live = model.parent / f".model.headsurgeon-{os.getpid()}-xyz"
    live.mkdir()  # a run still going: kept
    other = model.parent / ".model.headsurgeon-old"  # not ours to judge: kept
    other.mkdir()
    elsewhere = model.parent.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_text("keep")
    link = model.parent / f".model.headsurgeon-{dead_pid()}-lnk"  # a symlink is not followed
    link.symlink_to(elsewhere, target_is_directory=True)
    res = run("rename-label", model, "nope", "x")  # even a command that fails cleans up
    assert_refused(res, "nope")
    assert listing(model.parent) == sorted(["model", live.name, other.name, link.name])
    assert listing(elsewhere) == ["f"]
    link.unlink()
    out = model.parent / "out"
    stale_out = model.parent / f".out.headsurgeon-{dead_pid()}-save-q"
    stale_out.mkdir()
    res = run(*command("add-label", model, data), "-o", out)
    assert res.exit_code == 0, res.output
    assert listing(model.parent) == sorted(["model", "out", live.name, other.name])


def test_record_temp_file_of_a_killed_run_is_removed(model):
    """A ``check`` killed while writing headsurgeon.json leaves a temp file inside MODEL."""
    from headsurgeon import record

    stale = model / f".headsurgeon.json.{dead_pid()}.tmp"
    stale.write_text("{")
    record.write_record(model, record.new_record("p", ["a"]))
    assert ".headsurgeon.json" not in " ".join(listing(model))


# --- file modes -----------------------------------------------------------------------------


def test_record_has_the_mode_of_the_other_files(model, tmp_path):
    from headsurgeon import record

    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        assert run("add-label", model, "--name", "delta", "-o", out).exit_code == 0
        assert run("add-label", model, "--name", "delta").exit_code == 0
        for folder in (out, model):
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
            assert modes["headsurgeon.json"] == modes["config.json"] == 0o644, modes
        bare = tmp_path / "bare"
        bare.mkdir()
        path = record.write_record(bare, record.new_record("p", ["a"]))
        assert stat.S_IMODE(path.stat().st_mode) == 0o644 and listing(bare) == ["headsurgeon.json"]
    finally:
        os.umask(old)
