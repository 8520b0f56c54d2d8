"""Token classification (NER) through train and check: the whole pipeline on tiny models.

The promises: every training path (features, top blocks, whole model) trains a token model and
keeps its old rows bit-identical; ``--annotated new`` (the default) does not unlearn old entity
types that the new sentences leave untagged, where ``--annotated all`` does; the gate is
entity-level F1; wrong data files are one-line errors that write nothing.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from click.testing import CliRunner

from headsurgeon.cli import main
from headsurgeon.surgery import add_labels
from headsurgeon.tasks.token.data import Sentence
from headsurgeon.train import TrainOptions, train_model
from tests.common import WORDS, tiny_bert, tiny_tokenizer, tree_hashes

OLD = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
#: each entity type is two words: a first word from one list, a second from the other
ENTITIES = {
    "PER": (["card", "pin"], ["lost", "stolen"]),
    "LOC": (["atm", "cash"], ["fee", "rate"]),
    "ORG": (["account", "balance"], ["transfer", "refund"]),
}
FILLER = [w for w in WORDS if all(w not in a + b for a, b in ENTITIES.values())]


def sentences(n, types, seed, untagged=()):
    """``n`` sentences of 8 words holding one entity of each of ``types`` (those in
    ``untagged`` written as ``O``: annotated for the other types only)."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        words, tags = [rng.choice(FILLER) for _ in range(8)], ["O"] * 8
        for kind, at in zip(types, rng.sample(range(0, 8, 2), len(types)), strict=False):
            first, second = ENTITIES[kind]
            words[at], words[at + 1] = rng.choice(first), rng.choice(second)
            if kind not in untagged:
                tags[at], tags[at + 1] = f"B-{kind}", f"I-{kind}"
        out.append(Sentence(tuple(words), tuple(tags), "test", 1))
    return out


def conll(path, rows):
    path.write_text(
        "".join(
            "".join(f"{w}\t{t}\n" for w, t in zip(s.tokens, s.tags, strict=True)) + "\n"
            for s in rows
        )
    )
    return path


def grown_model():
    model = tiny_bert(OLD, "BertForTokenClassification")
    add_labels(model, ["ORG"])  # an entity type: the scheme's B-ORG and I-ORG
    return model


def test_surgery_by_type_then_each_training_path_keeps_old_rows():
    for freeze in (
        {"train_layers": 0, "train_neck": False},
        {"train_layers": 1},
        {"freeze": "none"},
    ):
        model = grown_model()
        assert model.config.id2label[5] == "B-ORG" and model.config.id2label[6] == "I-ORG"
        before = model.classifier.weight.detach().clone()
        data = sentences(8, ["ORG", "PER"], 1, untagged=("PER",))
        out = train_model(
            model, tiny_tokenizer(), data, replay=sentences(8, ["LOC"], 2),
            options=TrainOptions(max_steps=3, device="cpu", **freeze), old_labels=OLD,
        )  # fmt: skip
        stats = out.stats
        assert stats["task"] == "token-classification"
        assert stats["features_cached"] == (freeze.get("train_layers") == 0)
        assert stats["block_inputs_cached"] == (freeze == {"train_layers": 1})
        assert stats["initialised"] == {"B-ORG": "imprint", "I-ORG": "imprint"}
        assert torch.equal(model.classifier.weight[:5], before[:5])  # old rows bit-identical
        assert not torch.equal(model.classifier.weight[5:], before[5:])


def test_o_words_of_new_data_learn_the_parents_reading_of_old_tags():
    from headsurgeon.tasks.token.task import TokenTask
    from headsurgeon.train.calibration import Tolerance
    from headsurgeon.train.plan import make_plan

    model = grown_model()
    s = sentences(1, ["ORG", "PER"], 3, untagged=("PER",))[0]
    x = torch.randn(len(s.tokens), 32)
    for annotated in ("new", "all"):
        options = TrainOptions(device="cpu", annotated=annotated, new_weight=7.0)
        plan = make_plan(
            model, tiny_tokenizer(), [s], old_labels=OLD, options=options,
            tolerance=Tolerance(1.0), head_path=None, caches=(None, None),
        )  # fmt: skip
        task = TokenTask()
        weight = task.new_weight(plan, [s], [x])  # the option's, when it is set
        targets, weights = task.word_targets(plan, s, x, False, weight)
        parent = torch.softmax(plan.parent(x), -1)
        for w, tag in enumerate(s.tags):
            if tag.endswith("ORG"):  # the new type is gold, weighted as new
                assert targets[w].argmax().item() == OLD.__len__() + (tag == "I-ORG")
                assert targets[w].sum() == 1 and weights[w] == 7.0
            elif annotated == "new":  # O: the parent's distribution over the old tags
                assert torch.allclose(targets[w, :5], parent[w], atol=1e-6)
                assert targets[w, 5:].abs().sum() == 0 and weights[w] == 1.0
            else:
                assert targets[w, 0] == 1 and targets[w].sum() == 1


@pytest.mark.parametrize("distill", [0.0, 1.0, 3.0])
def test_replayed_words_learn_the_parents_predicted_tag_unless_distill_is_off(distill):
    from headsurgeon.tasks.token.task import TokenTask
    from headsurgeon.train.calibration import Tolerance
    from headsurgeon.train.plan import make_plan

    model = grown_model()
    s = sentences(1, ["PER", "ORG"], 3)[0]  # a replayed sentence may hold a new type's gold
    x = torch.randn(len(s.tokens), 32)
    options = TrainOptions(device="cpu", distill=distill, new_weight=7.0)
    plan = make_plan(
        model, tiny_tokenizer(), [], old_labels=OLD, options=options,
        tolerance=Tolerance(1.0), head_path=None, caches=(None, None),
    )  # fmt: skip
    targets, weights = TokenTask().word_targets(plan, s, x, True, 7.0)
    parent = torch.softmax(plan.parent(x), -1)
    assert any(t.endswith("PER") for t in s.tags) and any(t.endswith("ORG") for t in s.tags)
    for w, tag in enumerate(s.tags):
        if tag.endswith("ORG"):  # a new type: gold, weighted as new
            assert targets[w, len(OLD) + (tag == "I-ORG")] == 1 and targets[w].sum() == 1
            assert weights[w] == 7.0
            continue
        gold = torch.zeros(len(OLD))
        gold[OLD.index(tag)] = 1.0
        want = torch.zeros(len(OLD))
        want[int(parent[w].argmax())] = 1.0  # the tag the parent predicts
        want = want if distill else gold
        assert torch.allclose(targets[w, : len(OLD)], want, atol=1e-6)
        assert targets[w, len(OLD) :].abs().sum() == 0 and weights[w] == 1.0


def _guarded_rows(replay_tags=None):
    """Rows of one new sentence (an ORG entity) and one replayed sentence whose first two
    words carry the new entity's features and the next two a new-data O word's; gold replay
    targets (``distill=0``), so the replayed words' targets are their tags."""
    from headsurgeon.tasks.token.task import TokenTask
    from headsurgeon.train.calibration import Tolerance
    from headsurgeon.train.plan import make_plan

    new = sentences(1, ["ORG"], 4)[0]
    replayed = sentences(1, [], 5)[0]
    if replay_tags is not None:
        replayed = Sentence(replayed.tokens, replay_tags, "test", 1)
    gen = torch.Generator().manual_seed(0)
    x_new, x_rep = torch.randn(8, 32, generator=gen), torch.randn(8, 32, generator=gen)
    at = new.tags.index("B-ORG")
    o_word = next(w for w, tag in enumerate(new.tags) if tag == "O")
    x_rep[0], x_rep[1] = x_new[at] * 2, x_new[at + 1] + 1e-3  # near the new type's words
    x_rep[2], x_rep[3] = x_new[o_word] * 3, x_new[o_word] - 1e-3  # near a new-data O word
    plan = make_plan(
        grown_model(), tiny_tokenizer(), [new], old_labels=OLD,
        options=TrainOptions(device="cpu", distill=0.0), tolerance=Tolerance(1.0),
        head_path=None, caches=(None, None),
    )  # fmt: skip
    rows = TokenTask().rows(plan, [new, replayed], [x_new, x_rep], None)
    return rows, plan


def test_replayed_o_words_nearest_a_new_type_are_left_out_of_the_loss():
    """The replay is not annotated for the new types: a replayed O word whose nearest new-data
    word is of a new type may be a mention of it, so it does not train as O; the others do."""
    rows, plan = _guarded_rows()
    weights = rows[1]["weights"]
    assert weights[0] == 0 and weights[1] == 0  # nearest the new ORG words: not scored
    assert weights[2] == 1 and weights[3] == 1  # nearest a new-data O word: scored as O
    assert rows[1]["targets"][0, 0] == 1  # the target stays O (only its weight is 0)
    assert torch.all(rows[0]["weights"] > 0)  # the new data's words all count
    assert plan.task_stats["replay_words_unscored"]["words"] >= 2


def test_the_guard_with_more_neighbours_leaves_out_a_word_with_a_new_type_word_among_them(
    monkeypatch,
):
    from types import SimpleNamespace

    from headsurgeon.tasks.token import unannotated

    o, e, far = [1.0, 0.0], [0.8, 0.6], [-1.0, 0.0]  # O, a new type's word, O far away
    new = SimpleNamespace(tags=["O", "B-ORG", "O"])
    rep = SimpleNamespace(tags=["O"])
    plan = SimpleNamespace(new_labels=["B-ORG", "I-ORG"])
    x = torch.tensor([[0.99, 0.1]])  # nearest the O word, then the new type's
    args = (plan, [new, rep], [torch.tensor([o, e, far]), x], lambda s: s is new)
    assert not unannotated.unannotated_guard(*args)(x).any()  # the nearest only: scored
    monkeypatch.setattr(unannotated, "NEIGHBOURS", 2)
    assert unannotated.unannotated_guard(*args)(x).all()  # a new type's word among 2: left out
    monkeypatch.setattr(unannotated, "NEIGHBOURS", 1)
    far_x = torch.tensor([[-0.9, 0.1]])  # nearest the far O word
    assert not unannotated.unannotated_guard(*args)(far_x).any()


def test_a_replay_annotated_for_the_new_types_is_scored_whole():
    rows, plan = _guarded_rows(("B-ORG", "I-ORG", "O", "O", "O", "O", "O", "O"))
    assert torch.all(rows[1]["weights"] > 0)  # its O words are O
    assert "replay_words_unscored" not in plan.task_stats


def test_the_replay_takes_entity_free_sentences_as_the_o_tags():
    """Sentences with no entity are the new types' cleanest negatives: up to ``per_label`` of
    them are replayed as the tag O's, beside ``per_label`` per entity tag."""
    from headsurgeon.tasks.token.task import TokenTask

    per = sentences(6, ["PER"], 1)
    empty = sentences(6, [], 2)
    chosen = TokenTask().sample_replay(per + empty, OLD, 2, seed=0)
    assert sum(s in empty for s in chosen) == 2  # two entity-free sentences, as O's
    assert sum(s in per for s in chosen) == 2  # two of each PER tag: the same two sentences
    assert chosen == TokenTask().sample_replay(per + empty, OLD, 2, seed=0)  # seeded
    assert TokenTask().sample_replay(per + empty, OLD, 0, seed=0) == per + empty


def test_the_new_word_weight_gives_the_new_types_their_share():
    from headsurgeon.tasks.token.task import TOKEN_NEW_SHARE, TokenTask
    from headsurgeon.train.calibration import Tolerance
    from headsurgeon.train.plan import make_plan

    rows = sentences(3, ["ORG"], 1) + sentences(20, ["PER"], 2)
    xs = [torch.zeros(len(r.tokens), 32) for r in rows]
    plan = make_plan(
        grown_model(), tiny_tokenizer(), rows[:3], old_labels=OLD,
        options=TrainOptions(device="cpu"), tolerance=Tolerance(1.0), head_path=None,
        caches=(None, None),
    )  # fmt: skip
    weight = TokenTask().new_weight(plan, rows, xs)
    n_new, n_all = 6, 23 * 8  # 3 ORG entities of 2 words among 23 sentences of 8
    share = weight * n_new / (weight * n_new + n_all - n_new)
    assert share == pytest.approx(TOKEN_NEW_SHARE)
    assert TokenTask().new_weight(plan, rows[3:], xs[3:]) == 1.0  # no new word: no weighting


@pytest.mark.slow
def test_annotated_new_keeps_old_types_that_annotated_all_unlearns():
    """A parent that finds PER and LOC; new ORG sentences whose PER/LOC are left untagged, no
    replay, the whole model trained hard. As gold (--annotated all) the child learns that PER
    and LOC are O (F1 100 -> 0 here); the default (--annotated new) keeps them."""
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    parent = tiny_bert(OLD, "BertForTokenClassification")
    full = sentences(40, ["PER"], 1) + sentences(40, ["LOC"], 2) + sentences(40, ["PER", "LOC"], 3)
    train_model(
        parent, tok, full, old_labels=[],
        options=TrainOptions(freeze="none", annotated="all", epochs=8, lr=2e-2, device="cpu", batch_size=16,
                             calibrate=None, init="normal"),
    )  # fmt: skip
    test = sentences(30, ["PER", "ORG"], 9) + sentences(30, ["LOC", "ORG"], 10)
    new = sentences(30, ["ORG", "PER"], 5, untagged=("PER",))
    new += sentences(30, ["ORG", "LOC"], 6, untagged=("LOC",))
    drops = {}
    for annotated in ("new", "all"):
        child = copy.deepcopy(parent)
        add_labels(child, ["ORG"])
        out = train_model(
            child, tok, new, holdout=test, old_labels=OLD,
            options=TrainOptions(annotated=annotated, device="cpu", freeze="none", epochs=8, lr=1e-2, batch_size=16),
        )  # fmt: skip
        assert out.report.kind == "entities" and out.report.f1_before > 0.6, out.report.render()
        drops[annotated] = out.report.drop_pts
    assert drops["all"] > 15 and drops["new"] < drops["all"] - 10, drops


@pytest.fixture
def ner_folder(tmp_path):
    model = tiny_bert(OLD, "BertForTokenClassification")
    model.save_pretrained(tmp_path / "ner")
    tiny_tokenizer().save_pretrained(tmp_path / "ner")
    conll(tmp_path / "new.conll", sentences(10, ["ORG", "PER"], 1, untagged=("PER",)))
    conll(tmp_path / "old.conll", sentences(10, ["PER"], 2) + sentences(10, ["LOC"], 3))
    conll(tmp_path / "test.conll", sentences(10, ["PER", "ORG"], 4) + sentences(10, ["LOC"], 5))
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_readme_pipeline_on_a_token_model(ner_folder):
    from transformers import AutoModelForTokenClassification

    d = ner_folder
    before = tree_hashes(d)
    res = run("inspect", d / "ner")
    assert "token classification, scheme: BIO, entity types: PER, LOC" in res.output
    assert run("add-label", d / "ner", "--name", "ORG", "-o", d / "grown").exit_code == 0
    args = ["--replay", d / "old.conll", "--holdout", d / "test.conll", "--max-steps", "3"]
    res = run("train", d / "grown", "--data", d / "new.conll", *args, "--max-drop", "100",
              "--device", "cpu", "-o", d / "tuned", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["task"] == "token-classification" and out["new_labels"] == ["B-ORG", "I-ORG"]
    assert out["check"]["kind"] == "entities" and out["check"]["old_labels"] == ["PER", "LOC"]
    tuned, info = AutoModelForTokenClassification.from_pretrained(
        d / "tuned", output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    parent = AutoModelForTokenClassification.from_pretrained(d / "ner")
    assert torch.equal(tuned.classifier.weight[:5], parent.classifier.weight)
    record = json.loads((d / "tuned" / "headsurgeon.json").read_text())
    assert record["events"][-1]["check"]["kind"] == "entities"
    res = run("check", d / "ner", d / "tuned", "--holdout", d / "test.conll", "--max-drop", "100")
    assert res.exit_code == 0 and "old-type check PASSED" in res.output, res.output
    res = run("check", d / "ner", d / "tuned", "--holdout", d / "test.conll", "--max-drop", "0",
              "--max-label-drop", "0", "--no-record")  # fmt: skip
    assert res.exit_code in (0, 3)
    after = tree_hashes(d)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs unchanged


def test_sweep_trains_a_token_model_per_setting_and_writes_the_best(ner_folder):
    """sweep on a grown NER model: one run per setting, scored on entities; -o writes the best
    run (old rows bit-identical, reloads cleanly, trained tags recorded); inputs unchanged."""
    from transformers import AutoModelForTokenClassification

    d = ner_folder
    assert run("add-label", d / "ner", "--name", "ORG", "-o", d / "grown").exit_code == 0
    before = tree_hashes(d)
    res = run("sweep", d / "grown", "--data", d / "new.conll", "--replay", d / "old.conll",
              "--holdout", d / "test.conll", "--layers", "0,1", "--max-steps", "3",
              "--max-drop", "100", "--device", "cpu", "-o", d / "best", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["setting"] for r in out["rows"]] == ["0", "1"] and out["new_labels"] == ["ORG"]
    assert all(r["passed"] for r in out["rows"])
    best, info = AutoModelForTokenClassification.from_pretrained(
        d / "best", output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    parent = AutoModelForTokenClassification.from_pretrained(d / "ner")
    assert torch.equal(best.classifier.weight[:5], parent.classifier.weight)
    event = json.loads((d / "best" / "headsurgeon.json").read_text())["events"][-1]
    assert event["trained_labels"] == ["B-ORG", "I-ORG"] and event["check"]["kind"] == "entities"
    after = tree_hashes(d)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs unchanged
    # without --max-drop, the tolerance is the token task's (entity F1), as train's
    res = run("sweep", d / "grown", "--data", d / "new.conll", "--replay", d / "old.conll",
              "--holdout", d / "test.conll", "--layers", "0", "--max-steps", "1",
              "--device", "cpu", "--json")  # fmt: skip
    assert json.loads(res.output)["max_drop"] == 1.0, res.output


def test_data_for_the_other_task_is_a_one_line_error(ner_folder, tmp_path):
    d = ner_folder
    assert run("add-label", d / "ner", "--name", "ORG", "-o", d / "grown").exit_code == 0
    csv = tmp_path / "new.csv"
    csv.write_text("text,label\nmy card was stolen,ORG\n")
    seq = tmp_path / "seq"
    tiny_bert().save_pretrained(seq)
    tiny_tokenizer().save_pretrained(seq)
    before = tree_hashes(d)
    for args in (
        ["train", d / "grown", "--data", csv, "-o", d / "out"],
        ["train", d / "grown", "--data", d / "new.conll", "--holdout", csv, "-o", d / "out"],
        ["check", d / "ner", d / "grown", "--holdout", csv],
    ):
        res = run(*args)
        assert res.exit_code == 1 and res.output.startswith("error: "), res.output
        assert res.output.count("\n") == 1 and "sequence-classification data" in res.output
        assert not (d / "out").exists()
    res = run("train", seq, "--data", d / "new.conll", "-o", tmp_path / "out")
    assert res.exit_code == 1 and "token-classification data" in res.output, res.output
    assert tree_hashes(d) == before


def test_train_add_grows_the_data_entity_types(ner_folder):
    d = ner_folder
    res = run("train", d / "ner", "--data", d / "new.conll", "--add", "--max-steps", "2",
              "--device", "cpu", "-o", d / "tuned", "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["added"] == ["B-ORG", "I-ORG"]


def test_a_slow_tokenizer_is_refused_before_any_work():
    from transformers import ByT5Tokenizer

    from headsurgeon.errors import OptionsError

    model = grown_model()
    with pytest.raises(OptionsError, match="needs a fast tokenizer"):
        train_model(model, ByT5Tokenizer(), sentences(2, ["ORG"], 1), old_labels=OLD)


def test_a_grown_model_without_record_is_warned_that_nothing_is_new(tmp_path, caplog):
    """Grown in memory and saved with save_pretrained: no headsurgeon.json says which labels
    are the parent's, so every label is old and nothing would be learned: say so."""
    model = grown_model()
    model.save_pretrained(tmp_path / "grown")
    tiny_tokenizer().save_pretrained(tmp_path / "grown")
    conll(tmp_path / "new.conll", sentences(4, ["ORG"], 1))
    res = run("train", tmp_path / "grown", "--data", tmp_path / "new.conll", "--max-steps", "1",
              "--device", "cpu", "-o", tmp_path / "out")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "nothing is new" in caplog.text and "headsurgeon add-label" in caplog.text


def test_rename_and_remove_keep_the_record_naming_the_old_labels(ner_folder):
    """After rename-label the renamed type is still old for train (a defect: it became new and
    unprotected); after remove-label the removed one is gone, not new."""
    d = ner_folder
    assert run("add-label", d / "ner", "--name", "ORG", "-o", d / "grown").exit_code == 0
    assert run("rename-label", d / "grown", "PER", "PERSON").exit_code == 0
    record = json.loads((d / "grown" / "headsurgeon.json").read_text())
    assert record["parent_labels"] == ["O", "B-PERSON", "I-PERSON", "B-LOC", "I-LOC"]
    assert run("remove-label", d / "grown", "LOC").exit_code == 0
    record = json.loads((d / "grown" / "headsurgeon.json").read_text())
    assert record["parent_labels"] == ["O", "B-PERSON", "I-PERSON"]


def test_holdout_entities_of_types_the_model_lacks_are_not_scored(ner_folder, caplog):
    d = ner_folder
    extra = sentences(6, ["PER"], 7)
    extra = [Sentence(s.tokens, ("B-MISC", "I-MISC", *s.tags[2:]), "t", 1) for s in extra]
    conll(d / "wide.conll", sentences(6, ["LOC"], 8) + extra)
    before = tree_hashes(d)
    res = run("check", d / "ner", d / "ner", "--holdout", d / "wide.conll", "--no-record")
    assert res.exit_code == 0, res.output
    assert "not scored (read as O): MISC (6)" in caplog.text
    assert tree_hashes(d) == before


def test_check_after_remove_label_counts_the_lost_type_unless_the_holdout_drops_it(ner_folder):
    d = ner_folder
    assert run("remove-label", d / "ner", "LOC", "-o", d / "noloc").exit_code == 0
    res = run("check", d / "ner", d / "noloc", "--holdout", d / "test.conll", "--json",
              "--no-record", "--max-drop", "100")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["removed_labels"] == ["LOC"] and "LOC" in out["old_labels"]


def test_train_says_once_that_calibration_does_not_apply_to_a_token_model(ner_folder):
    """The summary of a token model's train says, in one line, that the new-label calibration
    (on by default, documented for text) was not done, and that the gate still checks."""
    d = ner_folder
    assert run("add-label", d / "ner", "--name", "ORG", "-o", d / "grown").exit_code == 0
    res = run("train", d / "grown", "--data", d / "new.conll", "--replay", d / "old.conll",
              "--holdout", d / "test.conll", "--max-drop", "100", "--max-steps", "2",
              "--device", "cpu", "-o", d / "tuned")  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("calibration")]
    assert lines == [
        "calibration: does not apply to token-classification models (--calibrate and its "
        "options are ignored; the new labels' biases stay as trained); the old-type check "
        "still gates the old labels"
    ], res.output


def test_the_record_and_json_keep_the_options_as_given_and_no_calibration_options(ner_folder):
    """A token model's ``headsurgeon.json`` and ``--json`` keep the options as given
    (``new_weight`` None: worked out from the data, the value used beside them as
    ``new_word_weight``) and no ``calibrate*`` fields (a token model is not calibrated: they
    did nothing)."""
    d = ner_folder
    res = run("train", d / "ner", "--data", d / "new.conll", "--add", "--max-steps", "2",
              "--device", "cpu", "-o", d / "tuned", "--json", "-q")  # fmt: skip
    assert res.exit_code == 0, res.output
    event = json.loads((d / "tuned" / "headsurgeon.json").read_text())["events"][-1]
    printed = json.loads(res.output[res.output.index("{") :])
    assert event["op"] == "train"
    for options, stats in ((event["options"], event), (printed["options"], printed)):
        assert options["new_weight"] is None  # as given: not a fixed weight to rerun with
        assert isinstance(stats["new_word_weight"], float) and stats["new_word_weight"] >= 1.0
        assert not [k for k in options if k.startswith("calibrate")], options
        assert options["distill"] == 1.0  # the other options as they were
    outcome = train_model(  # in memory: the record TrainOutcome.save writes, and to_dict
        grown_model(), tiny_tokenizer(), sentences(6, ["ORG"], 1),
        options=TrainOptions(device="cpu", max_steps=1),
    )  # fmt: skip
    for options in (outcome.record["events"][-1]["options"], outcome.to_dict()["options"]):
        assert options["new_weight"] is None
        assert not [k for k in options if k.startswith("calibrate")]
