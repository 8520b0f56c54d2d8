"""benchmarks/ner_data.py and the NER helpers of benchmarks/parents.py, without spaCy or real data."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(monkeypatch, name):
    monkeypatch.syspath_prepend(str(BENCH))  # parents.py imports ner_data by name
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_VERBOSITY"):  # the scripts set them by default
        monkeypatch.setenv(var, os.environ.get(var, "0" if var == "HF_HUB_OFFLINE" else "warning"))
    spec.loader.exec_module(module)
    return module


def sentences():
    """18 abstracts of 3 sentences; every 2nd sentence holds NORP, every 3rd CARDINAL."""
    out = []
    for doc in range(18):
        for k in range(3):
            n = doc * 3 + k
            tags = ["B-PERSON", "I-PERSON", "O", "B-DATE", "O", "B-FAC"]
            tags += ["B-NORP", "I-NORP"] if n % 2 == 0 else ["O", "O"]
            tags += ["B-CARDINAL"] if n % 3 == 0 else ["O"]
            out.append(
                {"doc": doc, "tokens": [f"w{n}_{i}" for i in range(len(tags))], "tags": tags}
            )
    return out


def test_silver_splits_are_disjoint_seeded_and_annotated_as_each_file_promises(
    tmp_path, monkeypatch
):
    nd = load(monkeypatch, "ner_data")
    plan = nd.Split(
        old=("PERSON", "DATE"), new=("NORP", "CARDINAL"), test=6, parent=6, shots=(2, 4),
        s2_shots=(2, 3), holdout=3,
    )  # fmt: skip
    files = nd.split(sentences(), plan)
    assert files == nd.split(sentences(), plan)  # seeded
    assert set(files) == {"test", "parent", "holdout", "S1-2", "S1-4", "S2-2", "S2-3", "pool"}
    assert files["S1-2"] == files["S1-4"][:2]
    assert files["S2-2"] == files["S2-3"][:2] + files["S2-3"][3:5]  # the first 2 of each type
    test_docs = {s["doc"] for s in files["test"]}
    ids = {name: {tuple(s["tokens"]) for s in rows} for name, rows in files.items()}
    for name in ("parent", "holdout", "S1-4", "S2-3", "pool"):  # no test abstract is trained on
        assert not test_docs & {s["doc"] for s in files[name]}
    assert not ids["S1-4"] & ids["S2-3"] and not ids["parent"] & (ids["S1-4"] | ids["S2-3"])
    assert len(ids["holdout"]) == 3
    assert not ids["holdout"] & (ids["parent"] | ids["S1-4"] | ids["S2-3"] | ids["pool"])
    assert all("NORP" in nd.types_of(s["tags"]) for s in files["S1-4"])
    s2 = files["S2-3"]
    assert sum("NORP" in nd.types_of(s["tags"]) for s in s2) >= 3
    assert sum("CARDINAL" in nd.types_of(s["tags"]) for s in s2) >= 3

    nd.write_conll(tmp_path / "p.conll", files["parent"], plan.old)
    nd.write_conll(tmp_path / "n.conll", files["S1-4"], nd.scenario_types("S1-4", plan))
    parent, new = nd.read_conll(tmp_path / "p.conll"), nd.read_conll(tmp_path / "n.conll")
    assert [w for w, _ in parent] == [s["tokens"] for s in files["parent"]]
    assert {t for _, tags in parent for t in tags} == {"O", "B-PERSON", "I-PERSON", "B-DATE"}
    assert {t for _, tags in new for t in tags} == {"O", "B-NORP", "I-NORP"}  # old entities: O


def test_draws_change_only_the_scenarios_sentences(monkeypatch):
    nd = load(monkeypatch, "ner_data")
    kw = dict(old=("PERSON",), new=("NORP", "CARDINAL"), test=6, parent=6, shots=(2, 4))
    kw |= dict(s2_shots=(2,), holdout=3)
    draws = [nd.split(sentences(), nd.Split(**kw, draw=d)) for d in range(4)]
    for files in draws[1:]:
        for name in ("test", "parent", "holdout"):  # the same in every draw
            assert files[name] == draws[0][name]
        holdout = {tuple(s["tokens"]) for s in files["holdout"]}
        assert not holdout & {tuple(s["tokens"]) for s in files["S1-4"] + files["S2-2"]}
        assert all("NORP" in nd.types_of(s["tags"]) for s in files["S1-4"])
    assert len({tuple(tuple(s["tokens"]) for s in f["S1-4"]) for f in draws}) > 1
    assert draws[2] == nd.split(sentences(), nd.Split(**kw, draw=2))  # seeded


def test_corpus_choice_reads_that_collection_and_keeps_dbpedia_keys(tmp_path, monkeypatch):
    nd = load(monkeypatch, "ner_data")
    for folder, text in (("DBPedia", "An abstract.\\nkept"), ("Yahoo", "a post?\\nthe answer")):
        path = tmp_path / "_data" / folder / "origin_data"
        path.mkdir(parents=True)
        for split in ("train", "dev", "test"):
            (path / f"{split}.tsv").write_text(f"text\tlabel\n{text} {split}\tx\n")
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(nd.importlib.util, "find_spec", lambda name: spec)
    assert nd.abstracts(nd.Annotation(corpus="yahoo")) == [
        f"a post?\nthe answer {s}" for s in ("train", "dev", "test")
    ]  # the posts' stored line breaks become real ones
    assert nd.abstracts(nd.Annotation())[0] == "An abstract.\\nkept train"
    # dbpedia, the default, keeps the key of before corpora (its cached annotation stays valid)
    assert nd.Annotation(corpus="dbpedia").key() == nd.Annotation().key() == "36ba860a7e"
    assert nd.Annotation(corpus="yahoo").key() != nd.Annotation().key()
    assert nd.Split.of("yahoo").new[0] == nd.Split.of("dbpedia").new[0] == "NORP"


def test_entity_f1_is_strict_and_counts_only_the_types_asked(monkeypatch):
    pytest.importorskip("seqeval")
    nd = load(monkeypatch, "ner_data")
    gold = [["B-PERSON", "I-PERSON", "O", "B-NORP"]]
    assert nd.entity_f1(gold, [["B-PERSON", "I-PERSON", "O", "O"]], ("PERSON",)) == 1.0
    assert nd.entity_f1(gold, [["B-PERSON", "I-PERSON", "O", "O"]], ("NORP",)) == 0.0
    assert nd.entity_f1(gold, [["B-PERSON", "O", "O", "B-NORP"]], ("PERSON",)) == 0.0
    # strict IOB2: an entity opened by I- is no entity
    assert nd.entity_f1(gold, [["I-PERSON", "I-PERSON", "O", "O"]], ("PERSON",)) == 0.0


def wordpiece():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {
        w: i
        for i, w in enumerate(
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "card", "lost", "the", "##s", "##ed"]
        )
    }
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


def test_first_subword_carries_the_tag_and_predictions_map_back_to_words(monkeypatch):
    pb = load(monkeypatch, "parents")
    tags = pb.ner_tags(("PER",))
    assert tags == ["O", "B-PER", "I-PER"]
    label2id = {t: i for i, t in enumerate(tags)}
    tok = wordpiece()
    sentence = (["the", "cards", "lost"], ["O", "B-PER", "I-PER"])  # cards = card ##s
    (row,) = pb.encode_words(tok, [sentence], label2id, max_length=16)
    assert row["labels"] == [-100, 0, 1, -100, 2, -100]

    short = (["lost", "the", "cards", "the", "lost"], ["O"] * 5)
    model = _Model(tags)
    predicted = pb.predict_words(model, tok, [sentence, short], max_length=5)
    assert predicted[0] == ["O", "B-PER", "O"]  # first subword of each word; "lost" cut off
    assert predicted[1] == ["I-PER", "O", "B-PER", "O", "O"]  # past max_length: O


class _Model:
    """Logits from each token id alone: card -> B-PER, lost and ##s -> I-PER, else O."""

    def __init__(self, tags):
        self.config = SimpleNamespace(id2label=dict(enumerate(tags)))

    def eval(self):
        return self

    def __call__(self, input_ids, **kw):
        import torch

        table = torch.zeros(9, 3)
        table[:, 0] = 1
        table[4] = torch.tensor([0.0, 1.0, 0.0])
        table[5] = table[7] = torch.tensor([0.0, 0.0, 1.0])
        return SimpleNamespace(logits=table[input_ids])


def test_summary_over_draws_reports_mean_worst_gates_and_the_gap_to_joint(monkeypatch):
    nb = load(monkeypatch, "ner")
    assert nb.draw_list("3") == [0, 1, 2] and nb.draw_list("1,4") == [1, 4]
    run = dict(scenario="S1-50", method="defaults", seconds=10.0)
    rows = [
        {**run, "old_f1": 49.5, "new_f1": 60.0, "gate_passed": True},
        {**run, "old_f1": 48.0, "new_f1": 50.0, "gate_passed": False},
        {**run, "method": "joint", "old_f1": 50.5, "new_f1": 80.0, "seconds": 100.0},
    ]
    lines = nb.summary(50.0, rows).splitlines()
    assert lines[2].split(" | ")[1:] == [
        "defaults", "2", "+1.25", "+2.00", "55.00", "50.00", "80.00 (1)", "-25.00", "1/2", "10 |",
    ]  # fmt: skip
    assert lines[3].split(" | ")[1:] == [
        "joint", "1", "-0.50", "-0.50", "80.00", "80.00", "80.00 (1)", "+0.00", "-", "100 |",
    ]  # fmt: skip
