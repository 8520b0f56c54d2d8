"""What ``headsurgeon train`` tells its user: refusals, warnings, the gate's advice, progress.

Warnings go to stderr as in a real run: the CLI configures no logging handler, so Python's
last-resort handler prints them; :func:`cli` takes pytest's capture handlers off the root logger
while the command runs, for that.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.data import Example
from headsurgeon.errors import DataError
from headsurgeon.train import TrainOptions, train_model
from tests import test_train as _train
from tests.common import LABELS, tree_hashes
from tests.test_train import BAD, NEW, load, write

# the session fixtures of test_train (a tiny parent trained on alpha/beta/gamma, grown by delta)
files, parent_dir, grown_dir = _train.files, _train.parent_dir, _train.grown_dir

FAST = ("--max-steps", 2, "--batch-size", 8, "--device", "cpu")


def cli(*args):
    """Run the CLI; its warnings reach stderr through logging's last-resort handler, as in a
    real run (pytest's capture handlers are off the root logger meanwhile)."""
    saved = logging.root.handlers[:]
    logging.root.handlers.clear()
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        logging.root.handlers[:] = saved


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --- data without any example of a new label ---------------------------------------------------


def test_data_with_no_new_label_example_is_refused(grown_dir, files, tmp_path):
    """``delta`` is the grown model's only new label; data of old labels alone cannot teach it:
    refused before training, naming the missing label and what the data has, nothing written."""
    data = write(tmp_path / "old_only.csv", [Example("card lost", "alpha")] * 5)
    hashes = tree_hashes(grown_dir)
    out = tmp_path / "out"
    res = cli("train", grown_dir, "--data", data, "--replay", files["old_csv"], "-o", out, *FAST)
    assert res.exit_code == 1, res.output
    assert res.output.strip() == (
        f"error: {data} has no example of the new label(s) {NEW} (it has: alpha (5)); "
        "add examples of them to the data"
    )
    assert not out.exists() and tree_hashes(grown_dir) == hashes


def test_train_model_refuses_data_without_new_labels(grown_dir):
    model, tok = load(grown_dir)
    with pytest.raises(DataError, match=rf"no example of the new label\(s\) {NEW} "):
        train_model(
            model,
            tok,
            [Example("card lost", "beta")] * 3,
            options=TrainOptions(device="cpu", max_steps=1),
            old_labels=LABELS,
        )


# --- warnings ----------------------------------------------------------------------------------


def test_no_replay_warns_that_calibration_is_skipped_and_records_it(grown_dir, files, tmp_path):
    out = tmp_path / "out"
    res = cli("train", grown_dir, "--data", files["new_csv"], "-o", out, *FAST)
    assert res.exit_code == 0, res.output
    assert warnings_in(res.stderr) == [
        "not calibrated: --calibrate counts false positives on replayed old examples and there "
        "are none; pass --replay (or --no-calibrate)"
    ]
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["calibration_skipped"] == "no replay"
    assert event["calibrated_bias_shifts"] == {}


def test_no_calibrate_without_replay_is_quiet(grown_dir, files, tmp_path):
    out = tmp_path / "out"
    res = cli("train", grown_dir, "--data", files["new_csv"], "-o", out, "--no-calibrate", *FAST)
    assert res.exit_code == 0, res.output
    assert warnings_in(res.stderr) == []
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["calibration_skipped"] is None


def test_force_warns_on_stderr_when_it_writes_a_failed_model(grown_dir, files, tmp_path):
    out = tmp_path / "forced"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 4, "--force", "--no-calibrate", *BAD,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (line,) = warnings_in(res.stderr)
    assert re.fullmatch(
        rf"--force: writing {re.escape(str(out))} although the old-label check failed "
        r"\(old-label accuracy dropped .* pt .*\); headsurgeon\.json records the failure",
        line,
    ), line
    assert (
        json.loads((out / "headsurgeon.json").read_text())["events"][-1]["check"]["passed"] is False
    )


# --- the gate's advice -------------------------------------------------------------------------


def test_gate_advice_names_only_what_the_user_did_not_do(grown_dir, files, tmp_path):
    """Replay given and the backbone frozen (the defaults): the advice does not ask for them;
    here calibration is what flipped old examples, and the advice says so."""
    out = tmp_path / "bad"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "--holdout", files["hold_csv"], "-o", out, "--calibrate", 60, *FAST,
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    error = res.output.strip().splitlines()[-1]
    assert error.startswith("error: old-label accuracy dropped") and f"{out} not written" in error
    assert "--replay" not in error and "--freeze backbone" not in error
    assert "calibrate less (--calibrate below 60)" in error
    assert error.endswith("or --force to write it anyway")


def test_gate_advice_asks_for_replay_and_frozen_backbone_when_missing(grown_dir, files, tmp_path):
    out = tmp_path / "bad"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 4, *BAD,
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    error = res.output.strip().splitlines()[-1]
    assert "try add replay (--replay), keep the backbone frozen (--freeze backbone), " in error


# --- progress ----------------------------------------------------------------------------------

BARS = {"caching block inputs", "caching features", "training", "scoring holdout"}


@pytest.mark.parametrize("freeze", ["backbone", "none"])
def test_progress_bars_say_what_they_measure_and_no_metrics_dict(
    grown_dir, files, tmp_path, monkeypatch, freeze
):
    """On a terminal (bars on): every bar is labelled, stdout is the report alone."""
    import headsurgeon.cli.train as cli_train

    monkeypatch.setattr(cli_train, "_progress", lambda as_json: True)
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "--holdout", files["hold_csv"], "-o", tmp_path / "out", "--freeze", freeze,
        "--max-drop", 100, *FAST,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    frames = [f for f in re.split(r"[\r\n]", res.stderr) if "%|" in f]
    labels = {f.split(":")[0].strip() for f in frames}
    assert "training" in labels and labels <= BARS, labels
    for stream in (res.stdout, res.stderr):
        assert "train_runtime" not in stream and "{'" not in stream
    assert res.stdout.splitlines()[0].startswith("old-label check PASSED")
    assert res.stdout.splitlines()[-1].startswith(f"trained {NEW} on 8 examples")


def test_a_new_label_without_examples_beside_others_is_named(grown_dir, files, caplog):
    """Two new labels, examples of one: trained, with a warning naming the other."""
    from headsurgeon.surgery import add_labels

    model, tok = load(grown_dir)
    add_labels(model, ["epsilon"], init="mean")
    with caplog.at_level("WARNING", logger="headsurgeon"):
        outcome = train_model(
            model,
            tok,
            files["new"],
            options=TrainOptions(device="cpu", max_steps=1, calibrate=None),
            old_labels=LABELS,
        )
    assert outcome.stats["new_labels"] == [NEW, "epsilon"]
    assert [r.getMessage() for r in caplog.records] == [
        "the data has no example of epsilon: its row trains only as a wrong answer "
        "(add its examples to keep it)"
    ]
