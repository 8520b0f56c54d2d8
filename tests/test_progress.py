"""Progress of the long steps: plain lines on a non-terminal stderr, bars on a terminal, none with
``--quiet`` or ``--json``, and stdout the result alone.

CliRunner's stderr is not a terminal: what a log, CI or a pipe gets. The line policy is tested
with a fake clock (no assertion depends on how fast this machine is): a step's start and end
lines are always written, what lies between only as :mod:`headsurgeon.progress` allows.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch

from headsurgeon import progress
from tests import test_distributed as _dist
from tests import test_token_train as _token_train
from tests import test_train as _train
from tests.common import tree_hashes
from tests.test_train import NEW
from tests.test_train_ux import FAST, cli

# the session fixtures of test_train (a tiny parent trained on alpha/beta/gamma, grown by delta)
files, parent_dir, grown_dir = _train.files, _train.parent_dir, _train.grown_dir
ner_folder = _token_train.ner_folder  # a tiny BIO tagger (PER, LOC) and CoNLL files
dist_setup = _dist.setup  # a tiny model without dropout for two processes, and its files


def train_args(grown_dir, files, out, *extra):
    return (
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "--holdout", files["hold_csv"], "-o", out, "--max-drop", 100, *FAST, *extra,
    )  # fmt: skip


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def starts_and_ends(lines: list[str]) -> list[str]:
    """``caching block inputs: started``... in order: what a step's start and end always write."""
    out = []
    for line in lines:
        if m := re.match(r"^(.+?): (started|done)\b", line):
            out.append(f"{m[1]}: {m[2]}")
    return out


# --- the CLI -----------------------------------------------------------------------------------


def test_train_writes_plain_progress_lines_on_a_non_terminal_stderr(
    parent_dir, grown_dir, files, tmp_path
):
    """Every long step of a default text train says when it starts and ends, the training's
    loss comes per epoch and with its end; stdout is the report alone. Then check's passes."""
    res = cli(*train_args(grown_dir, files, tmp_path / "out"))
    assert res.exit_code == 0, res.output
    lines = progress_lines(res.stderr)
    assert starts_and_ends(lines) == [
        "caching block inputs: started",
        "caching block inputs: done",
        "training: started",
        "training: done",
        "calibrating: started",
        "calibrating: done",
        "scoring holdout: started",
        "scoring holdout: done",
    ], res.stderr
    assert "caching block inputs: started, 108 texts" in lines  # 8 new, 60 old, 40 holdout
    assert re.search(r"^training: started, 2 steps$", res.stderr, re.M), res.stderr
    assert re.search(r"^training: epoch 1/1, loss \d+\.\d{4}$", res.stderr, re.M), res.stderr
    done = r"^training: done, 2 steps in \d+:\d\d, last epoch's loss \d+\.\d{4}$"
    assert re.search(done, res.stderr, re.M), res.stderr
    assert "\r" not in res.stderr and "%|" not in res.stderr  # lines, not bars
    assert res.stdout.splitlines()[0].startswith("old-label check PASSED")
    assert res.stdout.splitlines()[-1].startswith(f"trained {NEW} on 8 examples")
    assert not set(res.stdout.splitlines()) & set(lines)
    # its top block trained: check scores the parent and the child in a pass each
    res = cli("check", parent_dir, tmp_path / "out", "--holdout", files["hold_csv"],
              "--max-drop", 100, "--no-record")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert starts_and_ends(progress_lines(res.stderr)) == [
        "scoring holdout (parent): started",
        "scoring holdout (parent): done",
        "scoring holdout (child): started",
        "scoring holdout (child): done",
    ], res.stderr


@pytest.mark.parametrize(
    "flag, where",
    [("--quiet", "before"), ("--quiet", "after"), ("-q", "before"), ("-q", "after"),
     ("--json", "after")],
)  # fmt: skip
def test_quiet_and_json_print_no_progress(grown_dir, files, tmp_path, flag, where):
    """--quiet/-q (before or after the command) and --json: stderr empty on success, stdout
    unchanged (--json: exactly one JSON document)."""
    args = train_args(grown_dir, files, tmp_path / "out")
    res = cli(flag, *args) if where == "before" else cli(*args, flag)
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    if flag == "--json":
        doc = json.loads(res.stdout)
        assert doc["check"]["passed"] and doc["output"] == str(tmp_path / "out")
    else:
        assert res.stdout.splitlines()[-1].startswith(f"trained {NEW} on 8 examples")


def test_several_seeds_say_which_seed_trains_and_which_is_kept(grown_dir, files, tmp_path):
    res = cli(*train_args(grown_dir, files, tmp_path / "out", "--seeds", 2))
    assert res.exit_code == 0, res.output
    ends = starts_and_ends(progress_lines(res.stderr))
    assert ends[ends.index("seeds: started") :][:6] == [
        "seeds: started",
        "training seed 0 (1/2): started",
        "training seed 0 (1/2): done",
        "training seed 1 (2/2): started",
        "training seed 1 (2/2): done",
        "seeds: done",
    ], res.stderr
    assert re.search(r"^training seed 0 \(1/2\): holdout \d\.\d{4} at step 2 ", res.stderr, re.M)
    kept = r"^seeds: done, 2 seeds in \d+:\d\d, kept seed [01] \(holdout \d\.\d{4}\)$"
    assert re.search(kept, res.stderr, re.M), res.stderr


def test_check_prints_its_passes_and_quiet_none(parent_dir, grown_dir, files):
    """check's holdout pass on stderr (one for both models: they differ only in the head);
    nothing with -q or --json; stdout the report alone, the inputs untouched."""
    hashes = tree_hashes(grown_dir)
    args = ("check", parent_dir, grown_dir, "--holdout", files["hold_csv"],
            "--max-drop", 100, "--no-record")  # fmt: skip
    res = cli(*args)
    assert res.exit_code == 0, res.output
    assert starts_and_ends(progress_lines(res.stderr)) == [
        "scoring holdout (parent and child): started",
        "scoring holdout (parent and child): done",
    ], res.stderr
    assert "scoring holdout (parent and child): started, 40 texts" in res.stderr
    assert res.stdout.startswith("old-label check PASSED")
    quiet = cli(*args, "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == res.stdout
    as_json = cli(*args, "--json")
    assert as_json.exit_code == 0 and as_json.stderr == ""
    assert json.loads(as_json.stdout)["passed"] is True
    assert tree_hashes(grown_dir) == hashes


def test_a_token_train_and_check_say_their_steps_in_sentences(ner_folder):
    """NER: training's steps on sentences, and the entity check's two tagging passes."""
    d = ner_folder
    assert cli("add-label", d / "ner", "--name", "ORG", "-o", d / "grown").exit_code == 0
    res = cli("train", d / "grown", "--data", d / "new.conll", "--replay", d / "old.conll",
              "--holdout", d / "test.conll", "--max-drop", 100, "-o", d / "tuned", *FAST)  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = progress_lines(res.stderr)
    assert starts_and_ends(lines) == [  # the tiny model's 2 blocks all train: no block cache
        "caching features: started",  # the training sentences (distillation's targets)
        "caching features: done",
        "caching features: started",  # the holdout's (the parent's side of the check)
        "caching features: done",
        "training: started",
        "training: done",
        "scoring holdout: started",
        "scoring holdout: done",
    ], res.stderr
    assert "scoring holdout: started, 20 sentences" in lines
    res = cli("check", d / "ner", d / "tuned", "--holdout", d / "test.conll", "--max-drop", 100)
    assert res.exit_code == 0, res.output
    assert progress_lines(res.stderr)[::2] == [
        "tagging holdout (parent): started, 20 sentences",
        "tagging holdout (child): started, 20 sentences",
    ], res.stderr
    assert res.stdout.startswith("old-type check PASSED")


def test_sweep_says_which_run_of_how_many_trains(grown_dir, files):
    """sweep: its runs as one step, each run announced (n of N, time so far), each run's own
    steps inside; -q and --json: nothing on stderr."""
    args = ("sweep", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
            "--holdout", files["hold_csv"], "--layers", "0,1", "--max-drop", 100, *FAST)  # fmt: skip
    res = cli(*args)
    assert res.exit_code == 0, res.output
    lines = progress_lines(res.stderr)
    assert lines[0] == "sweep: started, 2 runs"
    runs = [x for x in lines if x.startswith("sweep: run ")]
    assert [re.sub(r" \(.*\)$", "", x) for x in runs] == [
        "sweep: run 1/2: --train-layers 0, seed 0",
        "sweep: run 2/2: --train-layers 1, seed 0",
    ], lines
    assert re.fullmatch(r"sweep: run 2/2: .* \(\d+:\d\d elapsed, ~\d+:\d\d left\)", runs[1])
    assert starts_and_ends(lines).count("training: done") == 2
    assert re.fullmatch(r"sweep: done, 2 runs in \d+:\d\d", lines[-1]), lines
    assert res.stdout.splitlines()[0].split() == ["setting", "seed", "drop", "pt", "passed", "new",
                                                  "rec", "new", "F1", "seconds", "top", "drift"]  # fmt: skip
    for flag in ("-q", "--json"):
        res = cli(*args, flag)
        assert res.exit_code == 0 and res.stderr == "", res.output


@pytest.mark.slow
@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="this torch build has no gloo backend (torch.distributed)",
)
def test_under_torchrun_the_main_process_alone_reports(dist_setup, tmp_path):
    """Two processes: each step's lines once (the main's; its shard of the cache), the
    others print no progress."""
    run = _dist.torchrun(*_dist.args(dist_setup, tmp_path / "out"))
    assert run.returncode == 0, run.stderr[-3000:]
    ends = starts_and_ends(progress_lines(run.stderr))
    assert ends == [
        "caching block inputs: started",
        "caching block inputs: done",
        "training: started",
        "training: done",
        "calibrating: started",
        "calibrating: done",
        "scoring holdout: started",
        "scoring holdout: done",
    ], run.stderr
    assert "caching block inputs: started, 34 texts" in run.stderr  # half of the 68
    assert run.stderr.count("training: epoch ") == 2, run.stderr


# --- the line policy ---------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def lines(monkeypatch):
    """Plain lines into a list, on a fake clock: ``(lines, clock)``."""
    import io

    clock = Clock()
    monkeypatch.setattr(progress, "_now", clock)
    stream = io.StringIO()
    detach = progress.show(stream, bars=False)
    yield (lambda: stream.getvalue().splitlines()), clock
    detach()


def test_a_fast_step_writes_its_start_and_end_only(lines):
    read, clock = lines
    with progress.Step("caching features", total=1200, unit="texts") as step:
        for _ in range(120):
            clock.now += 0.01
            step.advance(10)
    assert read() == [
        "caching features: started, 1200 texts",
        "caching features: done, 1200 texts in 0:01",
    ]


def test_a_slow_step_writes_a_line_per_tenth_with_the_time_left(lines):
    read, clock = lines
    with progress.Step("caching block inputs", total=1200, unit="texts") as step:
        for _ in range(40):
            clock.now += 3  # 30 texts per 3 s: a tenth every 12 s
            step.advance(30)
    got = read()
    assert got[0] == "caching block inputs: started, 1200 texts"
    assert got[1] == "caching block inputs: 120/1200 texts (10%), 0:12 elapsed, ~1:48 left"
    assert len(got) == 11 and got[-1] == "caching block inputs: done, 1200 texts in 2:00"


def test_a_very_slow_step_writes_a_line_every_30_s_and_notes_always(lines):
    read, clock = lines
    with progress.Step("training", total=1000, unit="steps") as step:
        clock.now += 29
        step.advance(1, info="loss 1.2")
        clock.now += 1
        step.advance(1, info="loss 1.1")
        step.note("epoch 1/4, loss 1.1500")
        clock.now += 1
        step.advance(1)
    assert read() == [
        "training: started, 1000 steps",
        "training: 2/1000 steps (0%), 0:30 elapsed, ~4:09:30 left, loss 1.1",
        "training: epoch 1/4, loss 1.1500",
        "training: done, 3/1000 steps in 0:31, loss 1.1",
    ]


def test_a_failed_step_leaves_the_error_alone_and_off_means_silent(lines):
    read, _ = lines
    with pytest.raises(ValueError), progress.Step("scoring holdout", total=10, unit="texts"):
        raise ValueError("bad input")
    with progress.Step("hidden", total=3, enabled=False) as step:
        step.advance(3)
        step.note("not shown")
    assert read() == ["scoring holdout: started, 10 texts"]


def test_without_a_handler_progress_is_readable_info_logging(caplog, monkeypatch):
    """A library user's own logging setup shows starts, notes and ends as lines."""
    monkeypatch.setattr(progress.logger, "handlers", [])  # as before any show()
    monkeypatch.setattr(progress.logger, "propagate", True)
    with caplog.at_level(logging.INFO, logger=progress.LOGGER_NAME):
        with progress.Step("sweep", total=2, unit="runs") as step:
            step.note("run 1/2: --train-layers 0, seed 42")
            step.advance()
    assert [r.getMessage() for r in caplog.records][0] == "sweep: started, 2 runs"
    assert caplog.records[1].getMessage() == "sweep: run 1/2: --train-layers 0, seed 42"
    assert caplog.records[-1].getMessage().startswith("sweep: done, 1/2 runs in ")
