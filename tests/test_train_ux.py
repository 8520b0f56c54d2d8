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
from headsurgeon.gate import Tolerance
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
    """The lines of a ``-q`` run's stderr: its warnings (--quiet silences progress only)."""
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
    res = cli("train", grown_dir, "--data", files["new_csv"], "-o", out, *FAST, "-q")
    assert res.exit_code == 0, res.output
    assert warnings_in(res.stderr) == [
        "not calibrated: --calibrate counts false positives on replayed old examples and there "
        "are none; pass --replay (or --no-calibrate)",
        f"no --holdout: the old-label check did not run; {out} is not gated",
    ]
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["calibration_skipped"] == "no replay"
    assert event["calibrated_bias_shifts"] == {}


def test_no_calibrate_without_replay_is_quiet(grown_dir, files, tmp_path):
    out = tmp_path / "out"
    res = cli("train", grown_dir, "--data", files["new_csv"], "-o", out, "--no-calibrate", *FAST,
              "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert warnings_in(res.stderr) == [  # no calibration warning; the check's absence is said
        f"no --holdout: the old-label check did not run; {out} is not gated"
    ]
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["calibration_skipped"] is None


def test_force_warns_on_stderr_when_it_writes_a_failed_model(grown_dir, files, tmp_path):
    out = tmp_path / "forced"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 4, "--force", "--no-calibrate", *BAD, "-q",
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
    assert error.endswith("; or pass --force to write it anyway")


def test_gate_advice_asks_for_replay_and_frozen_backbone_when_missing(grown_dir, files, tmp_path):
    out = tmp_path / "bad"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 4, *BAD,
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    error = res.output.strip().splitlines()[-1]
    assert (
        "try one of: add replay (--replay), keep the backbone frozen (--freeze backbone), " in error
    )


# --- progress ----------------------------------------------------------------------------------

BARS = {"caching block inputs", "caching features", "training", "calibrating", "scoring holdout"}


@pytest.mark.parametrize("freeze", ["backbone", "none"])
def test_progress_bars_say_what_they_measure_and_no_metrics_dict(
    grown_dir, files, tmp_path, monkeypatch, freeze
):
    """On a terminal: every bar is labelled and counts texts or steps (the loss beside them),
    stdout is the report alone."""
    import headsurgeon.cli.app as app

    monkeypatch.setattr(app, "_stderr_is_terminal", lambda: True)
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "--holdout", files["hold_csv"], "-o", tmp_path / "out", "--freeze", freeze,
        "--max-drop", 100, "--max-label-drop", 100, *FAST,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    frames = [f for f in re.split(r"[\r\n]", res.stderr) if "%|" in f]
    labels = {f.split(":")[0].strip() for f in frames}
    assert {"training", "scoring holdout"} <= labels <= BARS, labels
    assert any(re.search(r"\| 2/2 steps \[.*, loss ", f) for f in frames), frames
    assert any(re.search(r"^scoring holdout: 100%.*\| 40/40 texts \[", f) for f in frames), frames
    for stream in (res.stdout, res.stderr):
        assert "train_runtime" not in stream and "{'" not in stream
    assert res.stdout.splitlines()[0].startswith("old-label check PASSED")
    assert res.stdout.splitlines()[-1].startswith(f"trained {NEW} on 8 examples")
    assert res.stdout.splitlines()[-2].startswith("nearest old labels")


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


# --- refused before any work (issue 10's newcomer) ---------------------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    """Loading the model fails the test: what these refusals check must come before it."""
    import headsurgeon.models

    def refuse(*args, **kwargs):
        raise RuntimeError("the model was loaded before the refusal")

    monkeypatch.setattr(headsurgeon.models, "load_model", refuse)


def one_error(res, exit_code=1) -> str:
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == exit_code and len(lines) == 1, res.output
    assert lines[0].startswith("error: ") and "unexpected" not in lines[0], res.output
    return lines[0]


def test_train_output_equal_to_model_gives_no_in_place_hint(grown_dir, files, no_loading):
    error = one_error(cli("train", grown_dir, "--data", files["new_csv"], "-o", f"{grown_dir}/"))
    assert "is the input model" in error and "leave -o out" not in error


@pytest.mark.parametrize("role", ["--replay", "--holdout"])
def test_replay_or_holdout_with_labels_the_model_lacks_named_before_loading(
    grown_dir, files, tmp_path, no_loading, role
):
    bad = write(tmp_path / "other.csv", files["old"][:3] + [Example("crypto", "zeta")] * 3)
    res = cli("train", grown_dir, "--data", files["new_csv"], role, bad, "-o", tmp_path / "o")
    assert one_error(res) == (
        f"error: {bad} has label(s) the model does not have: 'zeta' (3 examples); {role} must "
        "hold only the model's labels: remove those 3 example(s) from it"
    )
    assert not (tmp_path / "o").exists()


def test_check_holdout_advice_does_not_mention_add(grown_dir, files, tmp_path):
    bad = write(tmp_path / "h.csv", files["old"][:3] + [Example("crypto", "zeta")])
    error = one_error(cli("check", grown_dir, grown_dir, "--holdout", bad))
    assert "--add" not in error and "add-label" not in error
    assert error.endswith("a holdout must hold only the parent's and the child's labels: "
                          "remove those 1 example(s) from it")  # fmt: skip


@pytest.mark.parametrize("flag", ["--max-drop", "--max-label-drop"])
def test_negative_tolerances_are_refused_before_any_work(
    parent_dir, files, tmp_path, no_loading, flag
):
    out = tmp_path / "o"
    res = cli("train", parent_dir, "--data", files["new_csv"], "--add", flag, -5, "-o", out)
    assert "must be >= 0 percentage points, got -5" in one_error(res)


def test_train_layers_beyond_the_blocks_is_refused(grown_dir, files, tmp_path):
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--train-layers", 99,
        "-o", tmp_path / "o", *FAST,
    )  # fmt: skip
    assert one_error(res) == (
        "error: --train-layers 99 is more than the 2 encoder blocks of "
        "BertForSequenceClassification (bert.encoder.layer): pass a number from 0 to 2"
    )
    assert not (tmp_path / "o").exists()


def test_no_holdout_warns_that_nothing_is_gated_and_records_it(grown_dir, files, tmp_path):
    out = tmp_path / "out"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"], "-o", out,
        *FAST, "-q",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert warnings_in(res.stderr) == [
        f"no --holdout: the old-label check did not run; {out} is not gated"
    ]
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["check_skipped"] == "no holdout" and "check" not in event


def test_gate_advice_after_a_per_label_failure_names_the_calibration_cap():
    from headsurgeon.train.folders import gate_advice

    options = TrainOptions(calibrate=5, distill=1.0, train_layers=0)
    advice = gate_advice(options, replayed=True, per_label=True)
    assert "lower the per-label calibration cap (`calibrate_label_cap` below " in advice
    assert "calibrate_label_cap" not in gate_advice(options, replayed=True)


def test_check_advice_follows_the_childs_training_record(grown_dir, files, tmp_path):
    """A child trained with replay and distillation is not told to use them."""
    from headsurgeon import record as rec
    from headsurgeon.checks import check_old_labels, enforce
    from headsurgeon.errors import GateFailedError

    report = check_old_labels(grown_dir, grown_dir, files["hold_csv"],
                              tolerance=Tolerance(0, 0))  # fmt: skip
    report.passed, report.labels_beyond = False, []
    report.drop_pts = 1.0
    record = rec.new_record("p", LABELS)
    with pytest.raises(GateFailedError, match="Train with replay or distillation"):
        enforce(report, record)
    rec.add_event(record, "train", replay="old.csv", replay_examples=60, options={"distill": 1.0})
    with pytest.raises(GateFailedError) as err:
        enforce(report, record)
    assert "replay" not in str(err.value) and "distil" not in str(err.value)
    assert str(err.value).endswith("Raise --max-drop/--max-label-drop if this is intended")
    rec.add_event(record, "train", replay="old.csv", replay_examples=60, options={"distill": 0.0})
    with pytest.raises(GateFailedError, match=r"Train with distillation \(--distill\), or raise"):
        enforce(report, record)


def test_reinit_top_beyond_the_blocks_is_refused(grown_dir, files, tmp_path):
    """It used to wrap around (blocks -1, -2, ... re-initialised) instead of refusing."""
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--freeze", "none", "--reinit-top", 3,
        "-o", tmp_path / "o", *FAST,
    )  # fmt: skip
    assert one_error(res) == (
        "error: --reinit-top 3 is more than the 2 encoder blocks of "
        "BertForSequenceClassification (bert.encoder.layer): pass a number from 0 to 2"
    )
    assert not (tmp_path / "o").exists()


def test_calibration_line_says_which_labels_the_bounds_lowered():
    """The common shift first; labels below it were lowered by the precision bound or cap."""
    from headsurgeon.cli.train import _calibration_line

    cal = {"method": "gate", "held_out": True, "examples": 998, "estimated_drop_pts": 0.2,
           "allowed_drop_pts": 0.25}  # fmt: skip
    same = _calibration_line({**cal, "shifts": {"a": 0.5, "b": 0.5}})
    assert "new-label biases shifted +0.500; old-label drop 0.20 pt on 998 held-out" in same
    mixed = _calibration_line({**cal, "shifts": {"a": 0.5, "b": -0.2, "c": 0.1, "d": 0.5}})
    assert (
        "shifted +0.500 (2 of 4 lowered to -0.200..+0.100 by the precision bound or the "
        "per-label cap);" in mixed
    )
    one = _calibration_line({**cal, "shifts": {"a": 0.5, "b": -0.2}})
    assert "(1 of 2 lowered to -0.200 by the precision bound" in one
    # one new label lowered from the common shift by the precision bound (as recorded)
    single = _calibration_line({**cal, "common_shift": 2.1, "shifts": {"a": 0.434}})
    assert "shifted +2.100 (1 of 1 lowered to +0.434 by the precision bound" in single


def test_train_names_each_new_labels_nearest_old_label(grown_dir, files, tmp_path):
    """Where a near-synonym would take an old label's examples: the parent's reading of each
    new label's examples, on the train line and in the JSON (and so in headsurgeon.json)."""
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "-o", tmp_path / "out", *FAST,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    line = [x for x in res.stdout.splitlines() if x.startswith("nearest old labels")]
    assert len(line) == 1 and " ~ " in line[0], res.stdout
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "-o", tmp_path / "out2", "--json", *FAST,
    )  # fmt: skip
    pairs = json.loads(res.stdout)["near_synonyms"]
    assert pairs and all(0 < p["parent_probability"] <= 1 for p in pairs.values())
    event = json.loads((tmp_path / "out2" / "headsurgeon.json").read_text())["events"][-1]
    assert event["near_synonyms"] == pairs
