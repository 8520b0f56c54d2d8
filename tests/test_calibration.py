"""Calibration against the gate (``headsurgeon.train.calibration``): exact on constructed logits,
then through ``train_model`` on a tiny BERT."""

from __future__ import annotations

import pytest
import torch

from headsurgeon.data import Example
from headsurgeon.errors import OptionsError
from headsurgeon.train import TrainOptions
from headsurgeon.train.calibration import Calibration, CalibrationSet, Tolerance
from headsurgeon.train.replay import split_slice

OLD = ["a", "b", "c"]
LABELS = [*OLD, "new"]


def constructed(n_per_label=40, seed=0):
    """Old examples the parent gets right; the child's old logits right by margin 1, and its
    new-label logit at a distinct distance from flipping per example."""
    gen = torch.Generator().manual_seed(seed)
    examples = [Example(f"{g}{i}", g) for g in OLD for i in range(n_per_label)]
    gold = torch.tensor([OLD.index(e.label) for e in examples])
    parent = torch.nn.functional.one_hot(gold, 3).float()
    child = torch.zeros(len(examples), 4)
    child[:, :3] = parent
    child[:, 3] = 1 - torch.rand(len(examples), generator=gen) * 3  # margins in (-3, 0]
    return examples, parent, child


def calibrate(child, examples, parent, max_drop, max_label_drop=None, held_out=True, **opts):
    opts = {"calibrate_precision": None, "calibrate_label_cap": None, **opts}
    linear = torch.nn.Linear(2, 4)
    torch.nn.init.zeros_(linear.bias)
    data = CalibrationSet(examples, parent, lambda: child.clone(), held_out=held_out)
    options = TrainOptions(**opts)
    info = Calibration(LABELS, ["new"], options, Tolerance(max_drop, max_label_drop)).run(
        data, linear
    )
    shifted = child.clone()
    shifted[:, 3] += linear.bias[3].detach()
    return info, shifted.argmax(-1)


def test_gate_shift_spends_the_safety_fraction_of_the_tolerance():
    examples, parent, child = constructed()
    n = len(examples)  # 120: each flip costs 100/120 pt
    for max_drop, safety in [(10.0, 0.5), (5.0, 1.0), (1.0, 0.5), (0.0, 0.5)]:
        info, pred = calibrate(child, examples, parent, max_drop, calibrate_safety=safety)
        flips = int((pred == 3).sum())
        assert flips == int(safety * max_drop / 100 * n + 1e-9), (max_drop, safety)
        # the flipped ones are those closest to flipping
        margin = child[:, 3] - 1
        if flips:
            assert margin[pred == 3].min() > margin[pred != 3].max()
        assert info["method"] == "gate" and info["held_out"]
        assert info["estimated_drop_pts"] == pytest.approx(100 * flips / n, abs=1e-3)
        assert info["estimated_drop_pts"] <= info["allowed_drop_pts"] + 1e-9
        assert info["false_positives"] == {"new": flips}


def test_gate_counts_what_training_already_lost():
    """The flips may spend the allowance on top of what training alone lost on the slice, but
    the estimate never passes the gate's tolerance; training alone beyond it: none flips."""
    examples, parent, child = constructed()
    child[:6, :3] = torch.tensor([0.0, 0.0, 2.0])  # 6 'a' examples now read as 'c' (5 pt)
    flips = {}
    for max_drop in (20.0, 14.0, 4.0):  # allowed 10, 7 and 2 pt; 120 examples: 1.2 a point
        _, pred = calibrate(child, examples, parent, max_drop)
        assert int((pred[:6] == 3).sum()) == 0  # the broken ones are far from the new label
        flips[max_drop] = int((pred == 3).sum())
    # 5 pt lost + 10 pt allowed = 15 pt (18 examples, 6 of them lost already): 12 flips;
    # 5 + 7 = 12 pt (14.4 examples): 8 flips; at 4 pt training alone is beyond the tolerance
    assert flips == {20.0: 12, 14.0: 8, 4.0: 0}, flips
    _, pred = calibrate(child, examples, parent, 8.0)  # 5 + 4 = 9 pt is past 8: 8 pt, 3 flips
    assert int((pred == 3).sum()) == 3


def test_gate_shift_respects_the_per_label_tolerance():
    examples, parent, child = constructed()
    child[:40, 3] += 1.5  # the 'a' examples are the closest to the new label
    _, loose = calibrate(child, examples, parent, 20.0)
    assert int((loose[:40] == 3).sum()) > 8
    _, pred = calibrate(child, examples, parent, 20.0, max_label_drop=40.0)
    assert int((pred[:40] == 3).sum()) == 8  # 0.5 * 40 pt of 40 examples
    margin = child[:, 3] - 1  # one common shift: whatever flips is closer than what does not
    assert margin[pred == 3].min() > margin[pred != 3].max()


def test_precision_bound_lowers_each_new_label():
    examples, parent, child = constructed()
    info, pred = calibrate(child, examples, parent, 40.0, calibrate_precision=0.8)
    # as frequent as an average old label (40 examples) at precision 0.8: at most 10 false positives
    assert int((pred == 3).sum()) == 10 == info["false_positives"]["new"]
    # the record keeps the common shift the gate allowed, above the shift the bound left
    loose, _ = calibrate(child, examples, parent, 40.0)
    assert info["common_shift"] == loose["common_shift"] == loose["shifts"]["new"]
    assert info["shifts"]["new"] < info["common_shift"]


def test_budget_mode_flips_points_of_the_parents_right_examples():
    examples, parent, child = constructed()
    info, pred = calibrate(child, examples, parent, 0.5, calibrate=10.0)
    assert info["method"] == "budget" and int((pred == 3).sum()) == 12


def test_split_slice_is_seeded_disjoint_and_leaves_two_thirds():
    replay = [Example(f"{g}{i}", g) for g in OLD for i in range(9)] + [Example("z", "zz")]
    held, rest = split_slice(replay, OLD, 5, seed=0)
    assert len(held) == 9 and len(rest) == 18  # at most a third of each label
    assert {id(e) for e in held}.isdisjoint(id(e) for e in rest)
    assert held == split_slice(replay, OLD, 5, seed=0)[0]
    assert held != split_slice(replay, OLD, 5, seed=1)[0]
    assert split_slice(replay, OLD, 0, seed=0) == ([], replay[:-1])


def test_options_validate_calibration():
    assert TrainOptions(calibrate="2.5").calibrate == 2.5
    for bad in ({"calibrate": "yes"}, {"calibrate_safety": 0}, {"calibrate_precision": 1.0},
                {"calibrate_per_label": -1}):  # fmt: skip
        with pytest.raises(OptionsError):
            TrainOptions(**bad)


def _train_tiny(per_old: int, new: int, options, **kwargs):
    """A tiny BERT over test_train's old labels grown by NEW, trained on ``new`` examples of it
    with ``per_old`` replay examples of each old label: ``(outcome, tokenizer, replay)``."""
    from headsurgeon.surgery import add_labels
    from headsurgeon.train import train_model
    from tests.common import tiny_bert, tiny_tokenizer
    from tests.test_train import LABELS, NEW, examples

    torch.manual_seed(0)
    model, tok = tiny_bert(LABELS), tiny_tokenizer()
    add_labels(model, [NEW], init="mean")
    replay = [e for n in LABELS for e in examples(n, per_old, 1)]
    outcome = train_model(
        model, tok, examples(NEW, new, 3), replay=replay, options=options, old_labels=LABELS,
        **kwargs,
    )  # fmt: skip
    return outcome, tok, replay


def test_train_model_calibrates_on_held_out_replay(tmp_path):
    """Default options: a slice of the replay is held out of training, the shift is chosen on it
    and recorded; the estimate is the gate's measure on exactly those examples."""
    from tests.test_train import LABELS as OLD_LABELS
    from tests.test_train import NEW

    options = TrainOptions(device="cpu", batch_size=8, max_steps=3, lr=1e-2)
    # 21 held out: one is 4.76 pt, priced by an allowance of 5 pt (half of max_drop 10)
    outcome, tok, replay = _train_tiny(21, 8, options, tolerance=Tolerance(10.0))
    info = outcome.stats["calibration"]
    assert info["method"] == "gate" and info["held_out"] and info["examples"] == 3 * 7
    assert outcome.stats["replay_examples"] == 3 * 14
    assert info["allowed_drop_pts"] == 5.0 and info["resolved"]  # half of max_drop
    assert info["estimated_drop_pts"] <= 5.0
    held, _ = split_slice(replay, OLD_LABELS, 20, 0)
    model = outcome.model.eval()
    batch = tok([e.text for e in held], padding=True, return_tensors="pt")
    with torch.no_grad():
        pred = model(**batch).logits.argmax(-1)
    assert int((pred == 3).sum()) == info["false_positives"][NEW]


def test_fixes_weigh_against_losses_by_calibrate_fixes():
    """Examples training fixed make room for flips in the gate's net measure; at
    ``calibrate_fixes=0`` only losses count."""
    examples, parent, child = constructed()
    parent[:12] = torch.tensor([0.0, 2.0, 0.0])  # the parent got 12 'a' examples wrong...
    child[:12, 3] = -5.0  # ...the child gets them right, and they are far from the new label
    n = len(examples)  # 120; allowed 5 pt = 6 examples
    flips = {}
    for weight in (1.0, 0.5, 0.0):
        _, pred = calibrate(child, examples, parent, 10.0, calibrate_fixes=weight)
        flips[weight] = int((pred == 3).sum())
    assert flips == {1.0: 6 + 12, 0.5: 6 + 6, 0.0: 6}, (flips, n)


def test_the_record_says_what_the_gate_rule_measured():
    """Training alone beyond the allowance: no held-out example flips, and the record shows
    why (the measured drop of training alone against the allowed one)."""
    examples, parent, child = constructed()
    child[:6, :3] = torch.tensor([0.0, 0.0, 2.0])  # 6 'a' examples now read as 'c' (5 pt)
    info, pred = calibrate(child, examples, parent, 4.0)  # allowed 2 pt
    assert int((pred == 3).sum()) == 0
    assert info["criterion_trained_drop_pts"] == pytest.approx(5.0) == info["criterion_drop_pts"]
    assert info["allowed_drop_pts"] == pytest.approx(2.0)
    from headsurgeon.cli.train import _calibration_line

    assert "(allowed 2.00 pt beyond the 5.00 pt training alone lost there)" in _calibration_line(
        info
    )


def test_few_old_labels_raise_the_default_counts():
    """With few old labels the default per-label counts rise to MIN_OLD_EXAMPLES in all (15
    labels: 67 each); many labels keep 20; values given are kept; token defaults do not scale."""
    from headsurgeon.tasks.text import MIN_OLD_EXAMPLES

    seq = "sequence-classification"
    few = TrainOptions().for_task(seq, old_labels=15)
    assert few.replay_per_label == few.calibrate_per_label == 67
    assert 15 * 67 >= MIN_OLD_EXAMPLES > 15 * 66
    many = TrainOptions().for_task(seq, old_labels=77)
    assert many.replay_per_label == many.calibrate_per_label == 20
    given = TrainOptions(replay_per_label=5, calibrate_per_label=3).for_task(seq, old_labels=2)
    assert (given.replay_per_label, given.calibrate_per_label) == (5, 3)
    token = TrainOptions().for_task("token-classification", old_labels=3)
    assert (token.replay_per_label, token.calibrate_per_label) == (1000, 20)


def test_train_model_replays_more_of_few_old_labels():
    """Three old labels, 40 examples each: a third is held out, every other one replayed (the
    defaults ask for 334 per label), not 20 per label."""
    options = TrainOptions(device="cpu", batch_size=8, max_steps=1)
    # 39 held out: 2.56 pt each
    outcome, _, _ = _train_tiny(40, 4, options, tolerance=Tolerance(10.0))
    assert outcome.stats["calibration"]["examples"] == 3 * 13
    assert outcome.stats["replay_examples"] == 3 * 27


def test_a_slice_too_small_to_price_the_allowance_does_not_raise_the_new_labels():
    """One held-out example worth more than the allowance (100 / n > safety x max_drop): the
    gate rule cannot price a raise, so the new labels are not raised; a trained model that
    already takes more than the allowance on the slice is lowered until it takes none of it; the
    record says why; a slice that resolves the allowance is calibrated as before."""
    examples, parent, child = constructed(n_per_label=7)  # 21 examples: 4.76 pt each
    for max_drop in (1.0, 8.0):  # allowed 0.5 and 4 pt: neither resolved
        info, pred = calibrate(child, examples, parent, max_drop)
        assert info["shifts"] == {"new": 0.0} == {"new": info["common_shift"]}
        assert info["resolved"] is False and "4.76 pt" in info["unresolved_reason"]
        assert "hold out at least" in info["unresolved_reason"] and not (pred == 3).any()
    from headsurgeon.cli.train import _calibration_line

    assert _calibration_line(info).endswith("(allowed 4.00 pt); not raised: one example is 4.76 pt")
    trained = child.clone()
    trained[:3, 3] = torch.tensor([2.0, 2.5, 3.0])  # three trained past the boundary
    # 3 of 21 flipped: 14.3 pt measured against 4 allowed: lowered until none flips
    info, pred = calibrate(trained, examples, parent, 8.0, calibrate_precision=0.8)
    assert info["resolved"] is False and info["common_shift"] < 0
    assert info["shifts"]["new"] < 0 and int((pred == 3).sum()) == 0
    # resolved (10 pt allowed, 4.76 pt each): the gate rule raises the new label as before
    info, pred = calibrate(child, examples, parent, 20.0)
    assert info["resolved"] is True and "unresolved_reason" not in info
    assert info["common_shift"] > 0 and int((pred == 3).sum()) == 2


def test_calibration_on_the_training_replay_never_raises_the_new_labels():
    """No held-out slice: the replay the model trained on stands in, where the drop estimate is
    optimistic; the gate rule may lower the new labels there, never raise them."""
    from headsurgeon.cli.train import _calibration_line

    examples, parent, child = constructed()  # 120 examples: 0.83 pt each, priced by 5 pt
    info, _ = calibrate(child, examples, parent, 10.0, held_out=False)
    assert info["shifts"] == {"new": 0.0} and info["resolved"] is False
    assert "optimistic" in info["unresolved_reason"]
    assert _calibration_line(info).endswith("not raised: trained on them")
    raised, _ = calibrate(child, examples, parent, 10.0)  # held out: raised as before
    assert raised["shifts"]["new"] > 0 and raised["resolved"] is True
