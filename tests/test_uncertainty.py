"""The gate's uncertainty: the drop's paired 95 % interval and exact McNemar test, in every output."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from headsurgeon import record as rec
from headsurgeon.card import build_card
from headsurgeon.checks import compare, record_check
from headsurgeon.errors import OptionsError
from headsurgeon.uncertainty import (
    bootstrap_drop_interval,
    describe_drop,
    mcnemar_exact_p,
    paired_drop,
)
from tests.test_checks import GOLD, NEW, OLD, hand_report, onehot


def test_exact_mcnemar_matches_the_hand_computed_binomial_tails():
    # 8 right -> wrong, 0 wrong -> right: p = 2 * (1/2)^8
    assert mcnemar_exact_p(8, 0) == pytest.approx(2 / 256, rel=1e-12)
    # 14 vs 4: p = 2 * sum_{k<=4} C(18, k) / 2^18 = 2 * 4048 / 262144
    assert sum(math.comb(18, k) for k in range(5)) == 4048
    assert mcnemar_exact_p(14, 4) == pytest.approx(2 * 4048 / 2**18, rel=1e-12)
    assert mcnemar_exact_p(4, 14) == mcnemar_exact_p(14, 4)  # two-sided: symmetric
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(5, 0) == pytest.approx(0.0625) and mcnemar_exact_p(6, 0) < 0.05
    # large counts stay fast and finite (log space); 705 vs 2 is the README's example
    assert 0 < mcnemar_exact_p(705, 2) < 1e-200 and 0 < mcnemar_exact_p(49000, 50000) < 0.01


def test_the_documented_examples_and_the_three_verdicts():
    assert paired_drop(1500, 20, 10).describe() == (
        "drop 0.67 pt, 95% CI [-0.07, 1.40] pt, exact McNemar p = 0.099: within noise"
    )
    assert paired_drop(1500, 14, 4).describe() == (
        "drop 0.67 pt, 95% CI [0.13, 1.20] pt, exact McNemar p = 0.031: beyond noise"
    )
    # 4 examples lost, none gained: the bootstrap excludes 0, the exact test (p = 0.125) not
    border = paired_drop(1500, 4, 0)
    assert border.low_pts > 0 and border.p_value == pytest.approx(0.125)
    assert border.verdict == "borderline"
    gain = paired_drop(1500, 0, 14)  # the child improved, beyond noise: an interval below 0
    assert gain.drop_pts < 0 and gain.high_pts < 0 and gain.verdict == "beyond noise"


def test_an_improvement_reads_as_one():
    """A negative drop beyond noise is a gain, and the report's line says so."""
    line = paired_drop(1500, 0, 14).describe()
    assert line.startswith("drop -0.93 pt (an improvement), 95% CI [")
    assert line.endswith(": beyond noise")
    assert "improvement" not in paired_drop(1500, 14, 0).describe()


def test_no_changed_example_gives_exactly_zero_zero():
    d = paired_drop(1500, 0, 0)
    assert (d.drop_pts, d.low_pts, d.high_pts, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert d.verdict == "within noise"
    # through compare: different logits, same predictions (an extra label that never wins)
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    child = torch.cat([logits, torch.full((10, 1), -1e4)], dim=1)
    u = compare(logits, child, GOLD[:10], OLD, OLD + NEW).drop_uncertainty
    assert (u.low_pts, u.high_pts, u.right_to_wrong, u.wrong_to_right) == (0.0, 0.0, 0, 0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 5000),
    b=st.integers(0, 5000),
    c=st.integers(0, 5000),
    seed=st.integers(0, 2**31),
)
def test_the_interval_contains_the_drop_and_is_deterministic(n, b, c, seed):
    b, c = min(b, n), min(c, n - min(b, n))
    low, high = bootstrap_drop_interval(n, b, c, seed=seed)
    assert low <= 100.0 * (b - c) / n <= high
    assert -100.0 <= low and high <= 100.0
    assert bootstrap_drop_interval(n, b, c, seed=seed) == (low, high)  # same call, same answer
    assert paired_drop(n, b, c, seed=seed).to_dict() == paired_drop(n, b, c, seed=seed).to_dict()


def test_the_bootstrap_leaves_the_global_rng_alone():
    # compare() runs after training, between seeds: it must not shift what training draws next
    state = torch.get_rng_state()
    paired_drop(1500, 20, 10, seed=7)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_interval_shrinks_with_more_examples():
    # the same rates of change (8 % lost, 2 % gained) measured on 10x and 100x more examples
    widths = []
    for scale in (1, 10, 100):
        d = paired_drop(100 * scale, 8 * scale, 2 * scale)
        assert d.drop_pts == pytest.approx(6.0)
        widths.append(d.high_pts - d.low_pts)
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0  # about sqrt(10) each time


def test_the_interval_covers_the_true_drop_about_95_percent_of_holdout_draws():
    """The promise itself: draw many holdouts from one known pair of models and count."""
    g = torch.Generator().manual_seed(123)
    n, p_lost, p_gained = 1500, 0.010, 0.004  # true drop 0.6 pt
    draws = torch.multinomial(
        torch.tensor([p_lost, p_gained, 1 - p_lost - p_gained]), n * 400, True, generator=g
    ).view(400, n)
    covered = 0
    for row in draws:
        d = paired_drop(n, int((row == 0).sum()), int((row == 1).sum()))
        covered += d.low_pts <= 0.6 <= d.high_pts
    assert 0.90 <= covered / 400 <= 0.99


def test_equally_good_models_are_rarely_called_beyond_noise():
    g = torch.Generator().manual_seed(321)
    n, p = 1500, 0.005  # as many examples lost as gained: the true drop is 0
    draws = torch.multinomial(torch.tensor([p, p, 1 - 2 * p]), n * 400, True, generator=g)
    alarms = 0
    for row in draws.view(400, n):
        d = paired_drop(n, int((row == 0).sum()), int((row == 1).sum()))
        alarms += d.verdict == "beyond noise"
    assert alarms / 400 <= 0.06  # the exact test's 5 % (it is conservative)


def test_bad_counts_are_refused():
    with pytest.raises(OptionsError, match="within the 10 example"):
        paired_drop(10, 8, 3)
    with pytest.raises(OptionsError, match="within the 0 example"):
        paired_drop(0, 0, 0)
    with pytest.raises(OptionsError, match=r"level must be in \(0, 1\), got 1.5"):
        paired_drop(10, 1, 1, level=1.5)
    with pytest.raises(OptionsError, match="at least 1 resample"):
        paired_drop(10, 1, 1, resamples=0)
    with pytest.raises(OptionsError, match="counts must be >= 0"):
        mcnemar_exact_p(-1, 2)


# ---- in the report, its JSON, the record and the card ---------------------------------------


def test_compare_reports_the_interval_from_the_paired_predictions():
    r = hand_report()  # 10 old examples: 2 right -> wrong, 1 wrong -> right (tests/test_checks)
    u = r.drop_uncertainty
    assert (u.n, u.right_to_wrong, u.wrong_to_right) == (10, 2, 1)
    assert u == paired_drop(10, 2, 1)
    assert u.drop_pts == pytest.approx(r.drop_pts) and u.low_pts <= r.drop_pts <= u.high_pts
    assert u.p_value == 1.0 and u.verdict == "within noise"  # 2 vs 1: nothing to tell
    assert not r.passed  # the pass/fail rule stays the tolerance (10 pt > 0.5 pt)
    assert r.render().splitlines()[1] == u.describe()
    assert u.describe().startswith("drop 10.00 pt, 95% CI [")
    data = r.to_dict()
    assert data["drop_uncertainty"] == u.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["drop_uncertainty"]["method"].startswith("paired bootstrap")
    assert data["drop_uncertainty"]["test"] == "exact McNemar"


def _folder_with_config(tmp_path, labels):
    folder = tmp_path / "child"
    folder.mkdir()
    config = {
        "architectures": ["BertForSequenceClassification"],
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "label2id": {n: i for i, n in enumerate(labels)},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_the_record_and_the_card_carry_the_interval(tmp_path):
    report = compare(
        onehot(list("aaaabbbbcc"), OLD),
        onehot(list("aaaabbbbca"), OLD + NEW),
        list("aaaabbbbcc"),
        OLD,
        OLD + NEW,
    )
    folder = _folder_with_config(tmp_path, OLD + NEW)
    record_check(folder, report, parent="org/parent", holdout=tmp_path / "h.csv")
    event = rec.read_record(folder)["events"][-1]
    assert event["report"]["drop_uncertainty"] == report.drop_uncertainty.to_dict()
    line = report.drop_uncertainty.describe()
    assert line == "drop 10.00 pt, 95% CI [0.00, 30.00] pt, exact McNemar p = 1: within noise"
    card = build_card(folder, "me/child")
    assert f"Result: **failed** (accuracy before 1, after 0.9, drop (pts) 10, allowed 0.5, {line})." in card  # fmt: skip
    assert f"1. **check**: **failed** (accuracy before 1, after 0.9, drop (pts) 10, allowed 0.5, {line}); parent `parent`" in card  # fmt: skip

    # a train event stores the report flat in its "check": the card reads it there too
    record = rec.read_record(folder)
    rec.add_event(record, "train", check={"passed": report.passed, **report.to_dict()})
    rec.write_record(folder, record)
    card = build_card(folder, "me/child")
    assert f"; old-label check **failed** (accuracy before 1, after 0.9, drop (pts) 10, allowed 0.5, {line}) (" in card  # fmt: skip


def test_the_card_skips_an_unknown_or_older_interval():
    assert describe_drop({"drop_pts": 1.0}) is None
    assert describe_drop({"drop_pts": "x", "level": 0.95}) is None


def test_the_plot_title_carries_the_interval(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from headsurgeon.plot import plot_report

    titles = []
    real = Axes.set_title
    monkeypatch.setattr(
        Axes, "set_title", lambda ax, t, **kw: titles.append(t) or real(ax, t, **kw)
    )
    report = hand_report()
    plot_report(report, tmp_path / "p.png")
    assert titles[-1].splitlines()[1] == report.drop_uncertainty.describe()
