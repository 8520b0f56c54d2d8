"""Training telemetry and the warnings that catch silent failures.

The promises: ``train`` writes ``training.json`` (per step of each seed: the loss and its parts,
the new rows' and each group's gradient norm, each group's learning rate; the holdout
evaluations; where each seed stopped) and ``training.png`` beside the model, inside its atomic
write, and prints a one-line summary; a broken run (the head frozen, a learning rate of 0, a
frozen parameter moved, a new label never predicted) is named on stderr and in
``headsurgeon.json``; a healthy run is not; a refused run writes nothing.
"""

from __future__ import annotations

import json
import logging
import struct

import pytest
import torch
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.train import TrainOptions, telemetry, train_model
from tests import test_train as _train
from tests.common import LABELS
from tests.test_train import BAD, load

# the session fixtures of test_train (a tiny parent trained on alpha/beta/gamma, grown by delta)
files, parent_dir, grown_dir = _train.files, _train.parent_dir, _train.grown_dir


def cli(*args):
    """Run the CLI; warnings reach stderr through logging's last-resort handler, as in a real
    run (pytest's capture handlers are off the root logger meanwhile)."""
    saved = logging.root.handlers[:]
    logging.root.handlers.clear()
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        logging.root.handlers[:] = saved


def run(grown_dir, files, **opts):
    """``train_model`` on the grown tiny BERT: top block + neck + head, 8 steps, replay."""
    model, tok = load(grown_dir)
    opts.setdefault("batch_size", 8)
    opts.setdefault("max_steps", 8)
    return train_model(
        model,
        tok,
        files["new"],
        replay=files["old"],
        holdout=files["hold"] if opts.pop("holdout", False) else None,
        options=TrainOptions(device="cpu", **opts),
        old_labels=LABELS,
    )


def png_size(path) -> tuple[int, int]:
    """``(width, height)`` of a PNG, after checking its signature and header chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# --- training.json, training.png, the summary ---------------------------------------------------


def test_train_writes_training_json_and_png_beside_the_model(grown_dir, files, tmp_path):
    out = tmp_path / "tuned"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"],
        "--holdout", files["hold_csv"], "-o", out, "--device", "cpu", "--batch-size", 8,
        "--max-steps", 6, "--eval-every", 2, "--seeds", 2, "--max-drop", 100,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((out / "training.json").read_text())
    assert [r["seed"] for r in data["seeds"]] == [0, 1]
    for r in data["seeds"]:
        n = len(r["step"])
        assert r["step"] == list(range(1, n + 1)) and r["stopped_at"] == n
        assert len(r["loss"]) == n
        assert set(r["loss_parts"]) == {"new", "other", "distill"}
        assert all(len(v) == n for v in r["loss_parts"].values())
        assert len(r["grad_norm"]["new_rows"]) == n and r["grad_norm"]["new_rows"][0] > 0
        assert set(r["lr"]) == set(r["grad_norm"]["groups"]) and "depth0" in r["lr"]
        assert all(len(v) == n for v in r["lr"].values())
        assert r["eval"] and all(0 <= v <= 1 for _, v in r["eval"])
        assert r["stop"] in (None, "early", "pruned")
    assert {2, 4, 6} <= {s for s, _ in data["seeds"][0]["eval"]}  # --eval-every 2 (and the trial)
    assert sum(r["kept"] for r in data["seeds"]) >= 1
    assert data["warnings"] == []
    width, height = png_size(out / "training.png")
    assert (out / "training.png").stat().st_size > 1024 and width >= 400 and height >= 300
    line = next(x for x in res.output.splitlines() if x.startswith("training: "))
    assert "2 seeds" in line and "loss " in line and "(new " in line and "new-row grad norm" in line
    assert line.endswith("; training.json, training.png")
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert event["warnings"] == [] and event["training"]["files"] == [
        "training.json",
        "training.png",
    ]
    assert "seeds" not in event["training"] or isinstance(event["training"]["seeds"], int)


def test_json_output_carries_the_summary_not_the_series(grown_dir, files, tmp_path):
    out = tmp_path / "tuned"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 8, "--max-steps", 4, "--train-layers", 0,
        "--no-train-neck", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    summary = report["training"]
    assert summary["steps"] == 4 and summary["seeds"] == 1
    assert len(summary["loss"]) == 2 and len(summary["new_row_grad_norm"]) == 2
    assert summary["files"][0] == "training.json" and report["warnings"] == []
    assert "telemetry" not in report
    assert json.loads((out / "training.json").read_text())["summary"]["steps"] == 4


def test_lr_per_group_shows_llrd_and_warmup(grown_dir, files):
    outcome = run(grown_dir, files, train_layers=1, llrd=0.5, warmup=4)
    lr = outcome.telemetry["seeds"][0]["lr"]
    assert lr["depth0"][0] == 0.0  # warm-up starts at 0
    peak = TrainOptions().lr
    assert lr["depth0"][4] == pytest.approx(peak) and lr["depth1"][4] == pytest.approx(peak / 2)
    assert lr["depth0"][1] == pytest.approx(peak / 4)


def test_loss_parts_add_up_to_the_loss(grown_dir, files):
    run_ = run(grown_dir, files, train_layers=0, train_neck=False).telemetry["seeds"][0]
    parts = run_["loss_parts"]
    for i, loss in enumerate(run_["loss"]):
        total = sum(parts[k][i] for k in parts if parts[k][i] == parts[k][i])  # NaN: none
        assert total == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert any(v > 0 for v in parts["new"] if v == v) and any(v > 0 for v in parts["distill"])


def test_telemetry_only_observes(grown_dir, files, monkeypatch):
    """The trained weights are those of a run without the telemetry's callback."""
    from headsurgeon.train import selection

    first = run(grown_dir, files, train_layers=0, train_neck=False)
    original = selection.run_seeds
    monkeypatch.setattr(
        selection, "run_seeds", lambda *args, **kw: original(*args[:5], telemetry=None)
    )
    second = run(grown_dir, files, train_layers=0, train_neck=False)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert second.telemetry["seeds"] == [] and first.telemetry["seeds"]


# --- warnings ------------------------------------------------------------------------------------


def test_a_healthy_run_warns_nothing(grown_dir, files, caplog):
    with caplog.at_level(logging.WARNING, logger="headsurgeon.train.telemetry"):
        outcome = run(grown_dir, files, max_steps=12)
    assert outcome.stats["warnings"] == [] and outcome.telemetry["warnings"] == []
    assert not [r for r in caplog.records if r.name == "headsurgeon.train.telemetry"]


def _freeze_the_head(monkeypatch):
    """A broken run: the head's new rows do not require gradients (a frozen head)."""
    from headsurgeon.train import freezing

    original = freezing.what_trains

    def what_trains(plan):
        out = original(plan)
        for path in plan.head.paths:
            plan.model.get_submodule(path).requires_grad_(False)
        return out

    monkeypatch.setattr(freezing, "what_trains", what_trains)


def test_a_frozen_head_warns_zero_gradient_on_stderr_and_in_the_record(
    grown_dir, files, tmp_path, monkeypatch
):
    _freeze_the_head(monkeypatch)
    out = tmp_path / "tuned"
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--replay", files["old_csv"], "-o", out,
        "--device", "cpu", "--batch-size", 8, "--max-steps", 4, "--no-calibrate",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "the new rows' gradient was 0 for the first 3 step(s)" in res.stderr
    assert "should train did not change: classifier.new_weight, classifier.new_bias" in res.stderr
    event = json.loads((out / "headsurgeon.json").read_text())["events"][-1]
    assert any("gradient was 0" in w for w in event["warnings"])
    assert any("did not change" in w for w in event["warnings"])
    data = json.loads((out / "training.json").read_text())
    assert data["seeds"][0]["grad_norm"]["new_rows"] == [0.0] * 4
    assert data["warnings"] == event["warnings"]


def test_a_learning_rate_of_0_warns_and_names_what_did_not_change(grown_dir, files, monkeypatch):
    from headsurgeon.train import trainer

    original = trainer.parameter_groups

    def zero_lr(*args):
        groups = original(*args)
        for g in groups:
            g["lr"] = 0.0
        return groups

    monkeypatch.setattr(trainer, "parameter_groups", zero_lr)
    warnings = run(grown_dir, files, max_steps=4, calibrate=None).stats["warnings"]
    assert any("the new rows' learning rate was 0 for the first 3 step(s)" in w for w in warnings)
    unchanged = next(w for w in warnings if "should train did not change" in w)
    assert unchanged.startswith(
        "20 parameter(s) that should train did not change: classifier.new_weight, "
        "classifier.new_bias, bert.encoder.layer.1."
    )


def test_a_frozen_parameter_that_moved_is_named(grown_dir, files, monkeypatch):
    from headsurgeon.train import selection

    original = selection.run_seeds

    def run_seeds(plan, *args, **kwargs):
        runs = original(plan, *args, **kwargs)
        with torch.no_grad():
            plan.model.bert.embeddings.word_embeddings.weight[5] += 1e-3
        return runs

    monkeypatch.setattr(selection, "run_seeds", run_seeds)
    warnings = run(grown_dir, files, max_steps=4).stats["warnings"]
    assert warnings == [
        "1 parameter(s) that should be frozen changed: bert.embeddings.word_embeddings.weight"
    ]


def test_a_new_label_never_predicted_on_its_examples_is_named(grown_dir, files, monkeypatch):
    from headsurgeon.train import selection

    original = selection.run_seeds

    def run_seeds(plan, *args, **kwargs):
        runs = original(plan, *args, **kwargs)
        with torch.no_grad():
            plan.model.classifier.new_bias.fill_(-1e4)
        return runs

    monkeypatch.setattr(selection, "run_seeds", run_seeds)
    warnings = run(grown_dir, files, max_steps=4, calibrate=None).stats["warnings"]
    assert len(warnings) == 1
    assert warnings[0].startswith("the new label(s) delta are never predicted on their own")


def test_a_loss_that_does_not_fall_is_named():
    curve = {"seed": 1, "step": list(range(1, 9)), "kept": True}
    curve |= {"grad_norm": {"new_rows": [1.0] * 8}, "lr_new_rows": [0.1] * 8}
    curve["loss"] = [1.0, 0.8, 0.5, 0.6, 0.7, 0.5, 0.9, 0.9]
    warnings = telemetry.diagnose({"seeds": [curve]})
    assert warnings == [
        "seed 1: the loss did not fall (mean of the last quarter of steps 0.9 >= first quarter "
        "0.9): try a higher --lr or more steps"
    ]
    curve["loss"][-1] = 0.7
    assert telemetry.diagnose({"seeds": [curve]}) == []
    curve["loss"] = curve["loss"][:7]  # too few steps to judge
    curve["step"] = curve["step"][:7]
    curve["loss"][-1] = 2.0
    assert telemetry.diagnose({"seeds": [curve]}) == []


# --- a refused run ------------------------------------------------------------------------------


def test_a_gate_refusal_writes_no_telemetry(grown_dir, files, tmp_path, monkeypatch):
    """The run recorded its steps, but the refused model's folder and files are not written."""
    calls = []
    monkeypatch.setattr(telemetry, "write_json", lambda *a: calls.append("json"))
    monkeypatch.setattr(telemetry, "plot", lambda *a: calls.append("png"))
    record = telemetry.Telemetry.on_pre_optimizer_step

    def step(self, *args, **kwargs):
        calls.append("step")
        return record(self, *args, **kwargs)

    monkeypatch.setattr(telemetry.Telemetry, "on_pre_optimizer_step", step)
    res = cli(
        "train", grown_dir, "--data", files["new_csv"], "--holdout", files["hold_csv"],
        "-o", tmp_path / "bad", "--device", "cpu", "--batch-size", 4, *BAD,
    )  # fmt: skip
    assert res.exit_code == 3, res.output
    assert set(calls) == {"step"} and list(tmp_path.iterdir()) == []


def test_gate_advice_with_calibration_against_the_gate_names_its_safety():
    """``--calibrate gate`` (a word, not a number) used to crash the advice of a failed gate."""
    from headsurgeon.train.folders import gate_advice

    options = TrainOptions(calibrate="gate", distill=1.0)
    assert "calibrate less (`calibrate_safety` below 0.5)" in gate_advice(options, replayed=True)


def test_token_training_records_its_loss_parts_and_skips_the_prediction_check():
    from tests.common import tiny_tokenizer
    from tests.test_token_train import OLD, grown_model, sentences

    out = train_model(
        grown_model(), tiny_tokenizer(), sentences(8, ["ORG", "PER"], 1, untagged=("PER",)),
        replay=sentences(8, ["LOC"], 2), old_labels=OLD,
        options=TrainOptions(max_steps=4, device="cpu", train_layers=0, train_neck=False),
    )  # fmt: skip
    curve = out.telemetry["seeds"][0]
    assert curve["step"] == [1, 2, 3, 4] and set(curve["loss_parts"]) == {"new", "other"}
    assert all(g > 0 for g in curve["grad_norm"]["new_rows"])
    assert out.telemetry["not_checked"] and out.stats["warnings"] == []
