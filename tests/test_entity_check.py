"""The old-type gate of token classifiers: compare_entities on hand-made tag sequences (figures
computed by hand), its render, JSON, plot and model card; a label check's stay as they were."""

import json
import re

import pytest

from headsurgeon import record as rec
from headsurgeon.card import _plain, build_card
from headsurgeon.checks import enforce, record_check
from headsurgeon.errors import DataError, GateFailedError, LabelError, OptionsError
from headsurgeon.tasks.token.gate import (
    DEFAULT_MAX_DROP,
    EntityCheckReport,
    compare_entities,
    entity_failure_of,
)

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
GROWN = BIO + ["B-PROD", "I-PROD"]

# 4 gold PER entities; the parent finds 3 (no false positive), the child loses one more:
# before P 1, R 3/4, F1 6/7; after P 1, R 2/4, F1 2/3; drop 100 * (6/7 - 2/3) = 400/21 pt
GOLD = [["B-PER", "I-PER", "O"], ["O", "B-PER", "O"], ["B-PER", "O", "B-PER"]]
PARENT = [["B-PER", "I-PER", "O"], ["O", "B-PER", "O"], ["B-PER", "O", "O"]]
CHILD = [["B-PER", "I-PER", "O"], ["O", "O", "O"], ["B-PER", "O", "O"]]


def hand_report(**kw):
    return compare_entities(GOLD, PARENT, CHILD, BIO, GROWN, **kw)


def test_a_parent_finding_three_of_four_and_a_child_losing_one():
    r = hand_report()
    assert (r.scheme, r.old_labels, r.new_labels, r.removed_labels) == ("BIO", ["PER", "LOC"], ["PROD"], [])  # fmt: skip
    assert (r.n_sentences, r.n_old_entities, r.n_new_entities) == (3, 4, 0)
    assert (r.precision_before, r.recall_before) == (1.0, 0.75)
    assert (r.precision_after, r.recall_after) == (1.0, 0.5)
    assert r.f1_before == pytest.approx(6 / 7) and r.f1_after == pytest.approx(2 / 3)
    assert r.drop_pts == pytest.approx(400 / 21)
    assert (r.flipped_wrong, r.flipped_fixed, r.flipped_to_new) == (1, 0, 0)
    # LOC has no gold entity: no row (as a label without holdout examples)
    assert r.per_label == [
        {
            "label": "PER",
            "support": 4,
            "before": pytest.approx(6 / 7),
            "after": pytest.approx(2 / 3),
            "change_pts": pytest.approx(-400 / 21),
            "precision_before": 1.0,
            "recall_before": 0.75,
            "precision_after": 1.0,
            "recall_after": 0.5,
        }
    ]
    assert r.worst(3) == r.per_label
    assert r.new_label_metrics == {
        "PROD": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    }
    assert r.max_drop == DEFAULT_MAX_DROP and not r.passed and r.kind == "entities"


def test_the_figures_are_seqevals_strict_micro_f1():
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    r = compare_entities(GOLD, PARENT, CHILD, BIO, BIO)  # no new type: nothing to filter
    assert r.f1_before == pytest.approx(f1_score(GOLD, PARENT, mode="strict", scheme=IOB2))
    assert r.f1_after == pytest.approx(f1_score(GOLD, CHILD, mode="strict", scheme=IOB2))


def test_tolerances_decide_and_the_failure_says_why():
    assert hand_report(max_drop=20).passed  # 19.05 pt allowed
    r = hand_report(max_drop=20, max_label_drop=10)
    assert not r.passed and r.labels_beyond == ["PER"]
    assert r.failure() == "1 old entity type(s) lost more F1 than the 10 pt allowed per type: PER (-19.0 pt)"  # fmt: skip
    assert hand_report().failure() == (
        "old-type entity F1 dropped 19.05 pt (85.71% -> 66.67% on 4 old holdout entities), "
        "more than the 1 pt allowed"
    )
    assert hand_report(max_drop=20).failure() is None
    with pytest.raises(GateFailedError, match=re.escape("old-type entity F1 dropped 19.05 pt")):
        enforce(hand_report())
    enforce(hand_report(max_drop=20))
    assert entity_failure_of({"drop_pts": 2.0}) == "old-type entity F1 dropped 2.00 pt"
    assert entity_failure_of({}) is None


def test_strict_matching_a_partial_span_or_an_ill_formed_entity_is_wrong():
    from seqeval.metrics import f1_score

    gold = [["B-PER", "I-PER", "O"], ["O", "B-PER", "O"]]
    parent = [["B-PER", "I-PER", "O"], ["O", "B-PER", "O"]]
    child = [["B-PER", "O", "O"], ["O", "I-PER", "O"]]  # a partial span; I- opening (not BIO)
    r = compare_entities(gold, parent, child, BIO, BIO)
    assert (r.f1_before, r.precision_after, r.recall_after, r.f1_after) == (1.0, 0.0, 0.0, 0.0)
    assert r.drop_pts == 100.0 and r.flipped_wrong == 2
    # the lenient (conlleval) reading would have counted the I-PER entity
    assert f1_score(gold, child) == pytest.approx(0.5)


def test_a_new_type_where_an_old_entity_was_is_an_old_type_recall_loss():
    gold = [["B-PER", "I-PER", "O"], ["O", "B-PROD", "O"], ["B-LOC", "O", "O"]]
    parent = [["B-PER", "I-PER", "O"], ["O", "O", "O"], ["B-LOC", "O", "O"]]
    child = [["B-PROD", "I-PROD", "O"], ["O", "B-PROD", "O"], ["B-LOC", "O", "O"]]
    r = compare_entities(gold, parent, child, BIO, GROWN)
    assert (r.n_old_entities, r.n_new_entities) == (2, 1)
    assert (r.f1_before, r.precision_after, r.recall_after) == (1.0, 1.0, 0.5)
    assert r.f1_after == pytest.approx(2 / 3)
    assert (r.flipped_wrong, r.flipped_to_new) == (1, 1)
    rows = {row["label"]: row for row in r.per_label}
    assert (rows["PER"]["after"], rows["PER"]["change_pts"], rows["LOC"]["change_pts"]) == (0.0, -100.0, 0.0)  # fmt: skip
    assert r.per_label[0]["label"] == "PER"  # worst first
    # PROD: 1 gold, 2 predicted, 1 right
    m = r.new_label_metrics["PROD"]
    assert (m["support"], m["predicted"], m["precision"], m["recall"]) == (1, 2, 0.5, 1.0)
    assert m["f1"] == pytest.approx(2 / 3)


def test_bioes_and_io_schemes():
    labels = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    gold = [["B-PER", "I-PER", "E-PER", "O", "S-LOC"]]
    parent = [["B-PER", "I-PER", "E-PER", "O", "S-LOC"]]
    child = [["B-PER", "I-PER", "O", "O", "S-LOC"]]  # no E-PER: no entity in strict BIOES
    r = compare_entities(gold, parent, child, labels, labels + ["S-ORG", "B-ORG", "I-ORG", "E-ORG"])
    assert (r.scheme, r.new_labels, r.f1_before, r.precision_after, r.recall_after) == ("BIOES", ["ORG"], 1.0, 1.0, 0.5)  # fmt: skip

    io = ["O", "I-PER", "I-LOC"]
    gold = [["I-PER", "I-PER", "O", "I-LOC"]]
    child = [["I-PER", "O", "O", "I-LOC"]]  # PER cut short: wrong
    r = compare_entities(gold, gold, child, io, io)
    assert (r.scheme, r.n_old_entities, r.f1_before, r.precision_after, r.recall_after) == ("IO", 2, 1.0, 0.5, 0.5)  # fmt: skip


def test_bilou_with_an_underscore_separator():
    labels = ["O", "B_PER", "I_PER", "L_PER", "U_PER", "B_LOC", "I_LOC", "L_LOC", "U_LOC"]
    grown = labels + ["B_PROD", "I_PROD", "L_PROD", "U_PROD"]
    gold = [["B_PER", "L_PER", "O", "U_LOC", "U_PROD"], ["U_PER", "O", "B_LOC", "I_LOC", "L_LOC"]]
    parent = [["B_PER", "L_PER", "O", "U_LOC", "O"], ["U_PER", "O", "B_LOC", "I_LOC", "L_LOC"]]
    # LOC: one swallowed by PROD, one left open (no L_LOC: no entity in strict BILOU)
    child = [["B_PER", "L_PER", "O", "U_PROD", "U_PROD"], ["U_PER", "O", "B_LOC", "I_LOC", "I_LOC"]]
    r = compare_entities(gold, parent, child, labels, grown)
    assert (r.scheme, r.old_labels, r.new_labels) == ("BILOU", ["PER", "LOC"], ["PROD"])
    assert (r.f1_before, r.recall_after, r.flipped_wrong, r.flipped_to_new) == (1.0, 0.5, 2, 1)
    assert [(row["label"], row["change_pts"]) for row in r.per_label] == [("LOC", -100.0), ("PER", 0.0)]  # fmt: skip
    m = r.new_label_metrics["PROD"]
    assert (m["support"], m["predicted"], m["precision"], m["recall"]) == (1, 2, 0.5, 1.0)


def test_iob1_gold_is_read_leniently():
    gold = [["I-PER", "I-PER", "O"]]  # IOB1: I- opens the entity
    r = compare_entities(gold, [["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]], BIO, BIO)
    assert (r.n_old_entities, r.f1_before, r.f1_after) == (1, 1.0, 1.0)


def test_bad_input_is_one_clear_error():
    with pytest.raises(OptionsError, match=r"sentence 2 \(0-based\) has 3 gold, 3 parent and 2 child tags"):  # fmt: skip
        compare_entities(GOLD, PARENT, CHILD[:2] + [["O", "O"]], BIO, GROWN)
    with pytest.raises(OptionsError, match="hold 3, 3 and 2 sentences"):
        compare_entities(GOLD, PARENT, CHILD[:2], BIO, GROWN)
    with pytest.raises(OptionsError, match=r"sentence 0 \(0-based\), token 0: parent tag 'B-PROD'"):
        compare_entities(GOLD, [["B-PROD", "I-PROD", "O"]] + PARENT[1:], CHILD, BIO, GROWN)
    with pytest.raises(DataError, match=r"token 1: gold tag 'B-ORG' is not one of either"):
        compare_entities([["O", "B-ORG"]], [["O", "O"]], [["O", "O"]], BIO, GROWN)
    with pytest.raises(DataError, match="no entity of an old type"):
        compare_entities([["O", "B-PROD"]], [["O", "O"]], [["O", "O"]], BIO, GROWN)
    with pytest.raises(DataError, match="no sentences"):
        compare_entities([], [], [], BIO, GROWN)
    with pytest.raises(LabelError, match="follow no tagging scheme"):
        compare_entities(GOLD, PARENT, CHILD, BIO, ["yes", "no"])
    with pytest.raises(LabelError, match="parent label 'E-PER' is not a tag of the child's BIO"):
        compare_entities(GOLD, PARENT, CHILD, BIO + ["E-PER"], GROWN)
    with pytest.raises(OptionsError, match="max_drop must be >= 0"):
        hand_report(max_drop=-1)


def test_json_round_trip_and_record():
    r = hand_report()
    data = json.loads(json.dumps(r.to_dict()))
    assert data == r.to_dict() and data["kind"] == "entities"
    assert EntityCheckReport(**data) == r


def test_render_names_the_drop_and_every_type():
    text = hand_report(max_label_drop=5).render()
    assert text.splitlines()[0] == (
        "old-type check FAILED: entity F1 (strict, micro) on 3 holdout sentences, 4 old entities "
        "of 2 types 85.71% -> 66.67% (drop 19.05 pt, allowed 1 pt, 5 pt per type)"
    )
    assert "old entities found before and missed after: 1 (0 now tagged as a new type)" in text
    assert "old types beyond the per-type tolerance: PER" in text
    assert re.search(r"PER +4 +100\.0 -> 100\.0 +75\.0 -> +50\.0 +85\.7 -> +66\.7 +-19\.0 pt", text)
    assert re.search(r"PROD +0 +0 +0\.000 +0\.000 +0\.000", text)  # fractions, as for text
    assert hand_report(max_drop=20).render().startswith("old-type check PASSED")


def test_plot_draws_entity_f1_into_a_png(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from headsurgeon.plot import plot_report

    xlabels = []
    real = Axes.set_xlabel
    monkeypatch.setattr(Axes, "set_xlabel", lambda ax, t, **kw: xlabels.append(t) or real(ax, t, **kw))  # fmt: skip
    out = plot_report(hand_report(), tmp_path / "entities.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024
    assert xlabels == ["entity F1 (strict)"]


def _token_model_folder(tmp_path, labels):
    folder = tmp_path / "child"
    folder.mkdir()
    config = {
        "architectures": ["BertForTokenClassification"],
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "label2id": {n: i for i, n in enumerate(labels)},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_the_card_shows_the_old_type_check(tmp_path):
    report = hand_report()
    folder = _token_model_folder(tmp_path, GROWN)
    record_check(folder, report, parent="org/ner", holdout=tmp_path / "test.conll")
    event = rec.read_record(folder)["events"][-1]
    assert event["report"]["kind"] == "entities" and event["passed"] is False
    card = build_card(folder, "me/ner")
    why = _plain(report.failure())
    assert f"the last old-type check recorded for this model **failed** ({why})" in card
    assert "See *Old-type check* below." in card
    assert "## Old-type check\n" in card and "## Old-label check" not in card
    assert "Result: **failed** (entity F1 before 0.8571, after 0.6667, drop (pts) 19.05, allowed 1)." in card  # fmt: skip
    assert "### Per old entity type\n" in card
    assert "| type | support | F1 before | F1 after | change pts | P before | P after | R before | R after |" in card  # fmt: skip
    assert "| PER | 4 | 0.8571 | 0.6667 | -19.05 | 1 | 1 | 0.75 | 0.5 |" in card
    assert "### New entity types\n" in card and "| PROD | 0 | 0 | 0 | 0 | 0 |" in card
    # a train event stores the report flat in its "check": the card reads the kind there too
    record = rec.read_record(folder)
    rec.add_event(record, "train", check={"passed": report.passed, **report.to_dict()})
    rec.write_record(folder, record)
    assert "; old-type check **failed** (entity F1 before 0.8571" in build_card(folder)


def test_a_removed_type_the_holdout_no_longer_has_is_not_scored():
    """remove-label DATE and a holdout cut to match: the parent's DATE predictions must not
    count against it (they made "after" look better than "before")."""
    parent_labels = ["O", "B-PER", "I-PER", "B-DATE", "I-DATE"]
    child_labels = ["O", "B-PER", "I-PER"]
    gold = [["B-PER", "O", "O"], ["B-PER", "I-PER", "O"]]  # DATE entities cut to O
    parent = [["B-PER", "O", "B-DATE"], ["B-PER", "I-PER", "O"]]
    child = [["B-PER", "O", "O"], ["B-PER", "I-PER", "O"]]
    report = compare_entities(gold, parent, child, parent_labels, child_labels)
    assert report.removed_labels == ["DATE"] and report.old_labels == ["PER"]
    assert report.f1_before == report.f1_after == 1.0 and report.drop_pts == 0.0
    # with DATE still in the holdout, its entities are missed after, as before
    gold[0][2] = "B-DATE"
    report = compare_entities(gold, parent, child, parent_labels, child_labels)
    assert report.old_labels == ["PER", "DATE"] and report.drop_pts > 0


def test_the_drop_has_a_paired_interval_over_sentences():
    r = hand_report()
    # the lost entity sits in sentence 2: resamples without it drop 0, with it more
    assert r.drop_low_pts <= r.drop_pts <= r.drop_high_pts
    assert r.drop_low_pts == pytest.approx(0.0) and r.drop_high_pts > r.drop_pts
    assert hand_report().to_dict() == r.to_dict()  # seeded: the same interval every time
    assert "95% CI of the drop [0.00, " in r.render()
    same = compare_entities(GOLD, PARENT, PARENT, BIO, GROWN)  # no sentence changed
    assert (same.drop_pts, same.drop_low_pts, same.drop_high_pts) == (0.0, 0.0, 0.0)


def test_the_interval_narrows_as_the_holdout_grows():
    # the same change (one PER lost in ten sentences) on 10x and 100x the sentences
    def widths(copies):
        r = compare_entities(GOLD * copies, PARENT * copies, CHILD * copies, BIO, GROWN)
        return r.drop_high_pts - r.drop_low_pts, r.drop_pts

    (small, d_small), (large, d_large) = widths(3), widths(30)
    assert d_small == pytest.approx(d_large)  # the same drop
    assert large < small / 2  # ~1/sqrt(10) as wide


def test_a_holdout_too_small_for_the_gate_is_said_so_and_a_large_one_is_not():
    small = hand_report()  # 4 old entities: the interval spans tens of points
    assert "the holdout is too small for a 1 pt gate" in small.render()
    assert "on 4 old entities" in small.coarse()
    many = [["B-PER", "O", "B-LOC", "I-LOC"]] * 400  # the same change among 800 more entities
    large = compare_entities(GOLD + many, PARENT + many, CHILD + many, BIO, GROWN)
    assert large.drop_high_pts - large.drop_low_pts < 2.0
    assert large.coarse() is None and "too small" not in large.render()


def test_the_charts_title_gives_the_tolerances_in_points():
    _, title = hand_report(max_label_drop=5.0).chart()
    assert "allowed 1 pt, 5 pt per type)" in title
