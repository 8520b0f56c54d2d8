"""Faults: SIGKILL at random moments of every writing command, and a full disk.

Afterwards the model loads as exactly the old one or exactly the new one (never a mix), and
nothing is left beside it once the next headsurgeon command on the same target has run (a killed
process cannot clean up after itself: the next command deletes its temp folder, see
``headsurgeon/atomic.py``).

The kills go to forks of one long-lived child that imported everything once (a fresh process
per kill would spend seconds importing torch). Delays are drawn from seeded generators; where a
kill lands still depends on timing, so every assertion holds wherever it lands. Run
``pytest tests/test_faults.py -m slow -s`` to print the kills survived per command.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from headsurgeon.cli import main
from tests.common import tree_hashes

REPO = Path(__file__).resolve().parents[1]
IN_PLACE = {
    "add-label": ["--name", "delta"],
    "remove-label": ["gamma"],
    "rename-label": ["alpha", "ALPHA"],
}
TRAIN = ["--max-steps", "3", "--batch-size", "4", "--device", "cpu", "--add", "--seed", "1"]

#: forks one child per job read from stdin ({"argv": [...], "delay": seconds or null}), kills it
#: with SIGKILL after ``delay`` and prints {"status": exit status (-9: killed), "seconds": ...}
ZYGOTE = r"""
import json, os, signal, sys, time
if "--torch" in sys.argv:
    import torch
    torch.set_num_threads(1)  # the same numbers in every fork, and fair to a shared machine
    import transformers, headsurgeon.train, headsurgeon.models  # noqa: F401
import headsurgeon.checkpoint  # noqa: F401
from headsurgeon.cli import main

def run(argv):
    try:
        main.main(argv, prog_name="headsurgeon")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:
        return 70
    return 0

print("ready", flush=True)
for line in sys.stdin:
    job = json.loads(line)
    if job.get("warm"):  # in this process, so that its lazy imports are done once
        stdout = os.dup(1)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        code = run(job["argv"])
        os.dup2(stdout, 1)
        print(json.dumps({"status": code, "threads": __import__("threading").active_count()}), flush=True)
        continue
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os._exit(run(job["argv"]))
    if job.get("after"):  # first wait until the child creates an entry with this prefix
        folder, prefix = os.path.split(job["after"])
        while not os.waitpid(pid, os.WNOHANG)[0] and not any(
            n.startswith(prefix) for n in os.listdir(folder)
        ):
            time.sleep(0.001)
    if job["delay"] is not None:
        time.sleep(job["delay"])
        os.kill(pid, signal.SIGKILL)  # a no-op on a child that already exited (not yet reaped)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(json.dumps({"status": status, "pid": pid, "seconds": time.monotonic() - start}), flush=True)
"""


class Zygote:
    def __init__(self, torch: bool, tmpdir: Path):
        env = {
            **os.environ,
            "TMPDIR": str(tmpdir),  # a killed train's own temp folders land here, not in /tmp
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "TRANSFORMERS_VERBOSITY": "error",
        }
        args = [sys.executable, "-c", ZYGOTE, *(["--torch"] if torch else [])]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, argv, delay=None, warm=False, after=None) -> dict:
        """Run ``argv`` in a fork; kill it ``delay`` s after the start (or after an entry
        starting with ``after`` appears), or let it finish (``delay=None``)."""
        job = {"argv": [str(a) for a in argv], "delay": delay, "warm": warm, "after": after}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def load(folder: Path):
    """The model in ``folder``: it must load with no missing, unexpected or mismatched key."""
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(
        folder, output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model


def same(model, other) -> bool:
    import torch

    a, b = model.state_dict(), other.state_dict()
    return (
        model.config.id2label == other.config.id2label
        and a.keys() == b.keys()
        and all(torch.equal(a[k], b[k]) for k in a)
    )


def which(folder: Path, old, new) -> str:
    """``"old"`` or ``"new"``: which of the two models ``folder`` holds (fails on anything else)."""
    model = load(folder)
    if same(model, old):
        return "old"
    assert same(model, new), f"{folder} is neither the old nor the new model"
    return "new"


class Delays:
    """Seeded kill delays in [0, hi) whose bound shrinks whenever a run finished unkilled.

    A command's time varies from run to run (caches, a loaded machine), so a fixed bound can
    miss again and again; shrinking it by a fifth after each miss makes the number of misses
    bounded (after ``MISSES`` of them the bound is ~1e-6 of the first) whatever the timing."""

    MISSES = 60

    def __init__(self, seed: int, hi: float):
        self.rng, self.hi, self.misses = random.Random(seed), hi, 0

    def draw(self) -> float:
        return self.rng.uniform(0, self.hi)

    def landed(self, out: dict) -> bool:
        """Whether the kill landed; after a miss the bound drops below the run's time."""
        killed = out["status"] == -9
        if not killed:
            self.misses += 1
            assert self.misses <= self.MISSES, f"{self.misses} runs outran their kill"
            self.hi = 0.8 * min(self.hi, out["seconds"])
        return killed


def strays(parent: Path, keep: set[str]) -> list[str]:
    return sorted(set(os.listdir(parent)) - keep)


def kill_loop(zygote, name, kills, seed, base, tmp_path, counts):
    """Kill in-place ``name`` on fresh copies of ``base`` until ``kills`` kills were delivered."""
    args = IN_PLACE[name]
    done = tmp_path / name / "done" / "model"
    shutil.copytree(base, done)
    timing = zygote.run([name, done, *args])  # unkilled: the new model, and how long it takes
    assert timing["status"] == 0
    print(f"{name} takes {timing['seconds']:.3f} s unkilled")
    old, new = load(base), load(done)
    delays, seen, runs = (
        Delays(seed, 1.2 * timing["seconds"]),
        {"old": 0, "new": 0, "temp left": 0},
        0,
    )
    while counts[name] < kills:
        runs += 1
        folder = tmp_path / name / str(runs) / "model"
        shutil.copytree(base, folder)
        out = zygote.run([name, folder, *args], delay=delays.draw())
        assert out["status"] in (0, -9), out
        counts[name] += delays.landed(out)
        seen[which(folder, old, new)] += 1
        prefix = f".model.headsurgeon-{out['pid']}-"  # only the killed run's temp folder
        left = strays(folder.parent, {"model"})
        assert all(s.startswith(prefix) for s in left)
        seen["temp left"] += bool(left)
        res = CliRunner().invoke(main, [name, str(folder), *args])  # the next command
        assert strays(folder.parent, {"model"}) == [], res.output
        assert which(folder, old, new) == "new"  # it did the edit, or found it done
        shutil.rmtree(folder.parent)
    return seen


def train_loop(zygote, kills, seed, model, data, tmp_path, counts):
    """Kill ``train -o`` until ``kills`` kills were delivered; the next run must clean up."""
    argv = ["train", model, "--data", data, *TRAIN, "-o"]
    warm = zygote.run([*argv, tmp_path / "warm" / "out"], warm=True)
    assert warm == {"status": 0, "threads": 1}, warm  # one thread left: safe to fork
    timing = zygote.run([*argv, tmp_path / "done" / "out"])
    assert timing["status"] == 0
    print(f"train -o takes {timing['seconds']:.2f} s unkilled")
    old, new = load(model), load(tmp_path / "done" / "out")
    before = tree_hashes(model)
    anytime, writing = Delays(seed, 1.1 * timing["seconds"]), Delays(seed + 1, 0.06)
    seen, runs = {"absent": 0, "new": 0, "temp left": 0}, 0
    while counts["train"] < kills:
        runs += 1
        out = tmp_path / str(runs) / "out"
        out.parent.mkdir(parents=True)
        if runs % 2:  # at a random moment
            delays, after = anytime, None
        else:  # soon after the first temp folder beside OUT appears: while OUT is written
            delays, after = writing, str(out.parent / ".out.headsurgeon-")
        got = zygote.run([*argv, out], delay=delays.draw(), after=after)
        assert got["status"] in (0, -9), got
        counts["train"] += delays.landed(got)
        existed = out.exists()
        if existed:
            assert which(out, old, new) == "new"
        seen["new" if existed else "absent"] += 1
        prefix = f".out.headsurgeon-{got['pid']}-"
        left = strays(out.parent, {"out"})
        assert all(s.startswith(prefix) for s in left)
        seen["temp left"] += bool(left)
        if existed:  # the next command on OUT: train again, which finds OUT written
            assert zygote.run([*argv, out])["status"] == 1  # OUT is not empty
            assert which(out, old, new) == "new"
        else:  # a quick next command on OUT (training again would take seconds)
            assert zygote.run(["add-label", model, "--name", "delta", "-o", out])["status"] == 0
        assert strays(out.parent, {"out"}) == []
        shutil.rmtree(out.parent)
    assert tree_hashes(model) == before
    return seen


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults-data") / "new.csv"
    path.write_text("text,label\n" + "card lost stolen pin,delta\n" * 8)
    return path


def test_killed_in_place_edits_leave_old_or_new_model(tiny_text_folder, tmp_path):
    """A quick version: 3 kills per in-place command, no torch in the killed processes."""
    (tmp_path / "tmp").mkdir()
    zygote, counts = Zygote(torch=False, tmpdir=tmp_path / "tmp"), dict.fromkeys(IN_PLACE, 0)
    try:
        for i, name in enumerate(IN_PLACE):
            kill_loop(zygote, name, 3, i, tiny_text_folder, tmp_path, counts)
    finally:
        zygote.close()
    assert all(n >= 3 for n in counts.values()), counts


@pytest.mark.slow
def test_killed_commands_survive_many_kills(tiny_text_folder, train_data, tmp_path):
    """>= 50 kills: 15 per in-place command, 15 of ``train -o``; prints the counts."""
    (tmp_path / "tmp").mkdir()
    zygote = Zygote(torch=True, tmpdir=tmp_path / "tmp")
    counts = dict.fromkeys([*IN_PLACE, "train"], 0)
    outcomes = {}
    try:
        for i, name in enumerate(IN_PLACE):
            outcomes[name] = kill_loop(
                zygote, name, 15, 100 + i, tiny_text_folder, tmp_path, counts
            )
        outcomes["train"] = train_loop(
            zygote, 15, 200, tiny_text_folder, train_data, tmp_path / "train", counts
        )
    finally:
        zygote.close()
    print(f"\nkills survived: {counts} (total {sum(counts.values())}); states after: {outcomes}")
    # train's own scratch (train/core.py, in the system temp folder) is not cleaned after a kill
    print(f"left in TMPDIR by killed trains: {len(os.listdir(tmp_path / 'tmp'))}")
    assert sum(counts.values()) >= 50 and min(counts.values()) >= 15, counts


# --- a full disk ----------------------------------------------------------------------------

PAGE = 4096


@pytest.fixture
def small_disk(tmp_path):
    """Mount small tmpfs filesystems (root only; skipped where mounting fails); unmount after."""
    mounts = []

    def mount(size: int) -> Path:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        path = tmp_path / f"disk{len(mounts)}"
        path.mkdir()
        opts = f"size={max(PAGE, size // PAGE * PAGE)}"
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
        )
        if res.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], check=False)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` up to ``leave`` free bytes (a file outside the model's folder)."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))


def assert_disk_full(res) -> None:
    assert res.exit_code == 1, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert "No space left on device" in res.output or "os error 28" in res.output, res.output
    assert "nothing was changed" in res.output or "cannot create a folder" in res.output


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


#: fractions of the model's size that the disk offers
FRACTIONS = (0.0, 0.25, 0.5, 0.9)


def test_full_disk_output(tiny_text_folder, small_disk):
    """add-label -o onto a disk smaller than the model: one line, MODEL intact, nothing left."""
    before, total = tree_hashes(tiny_text_folder), folder_bytes(tiny_text_folder)
    for fraction in FRACTIONS:
        disk = small_disk(int(total * fraction))
        assert_disk_full(cli("add-label", tiny_text_folder, "--name", "delta", "-o", disk / "out"))
        assert tree_hashes(tiny_text_folder) == before and os.listdir(disk) == [], fraction


def test_full_disk_in_place(tiny_text_folder, small_disk):
    """add-label in place on a disk with less room than the new weights: MODEL byte-identical."""
    total = folder_bytes(tiny_text_folder)
    shard = (tiny_text_folder / "model.safetensors").stat().st_size
    for leave in (0, PAGE, shard // 2):
        disk = small_disk(2 * total + 16 * PAGE)
        model = disk / "m" / "model"
        shutil.copytree(tiny_text_folder, model)
        before = tree_hashes(model)
        fill(disk, leave)
        assert_disk_full(cli("add-label", model, "--name", "delta"))
        assert tree_hashes(model) == before and os.listdir(model.parent) == ["model"], leave


@pytest.mark.slow
def test_full_disk_train_output(tiny_text_folder, small_disk, train_data):
    """train -o onto a disk smaller than the model it writes."""
    before, total = tree_hashes(tiny_text_folder), folder_bytes(tiny_text_folder)
    for fraction in (0.0, 0.5):
        disk = small_disk(int(total * fraction))
        res = cli("train", tiny_text_folder, "--data", train_data, *TRAIN, "-o", disk / "out", "-q")
        assert_disk_full(res)  # -q: the error alone (no progress lines of the training before it)
        assert tree_hashes(tiny_text_folder) == before and os.listdir(disk) == [], fraction
