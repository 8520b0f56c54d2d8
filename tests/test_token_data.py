"""Token-classification data: CoNLL and JSONL readers, the model's scheme, subword alignment."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headsurgeon.errors import DataError, HeadSurgeonError, LabelError, OptionsError
from headsurgeon.tasks.sniff import check_data_task, looks_like_token_data
from headsurgeon.tasks.token.data import (
    IGNORE,
    Sentence,
    align,
    entity_types,
    read_sentences,
    split_words,
    to_scheme,
    word_predictions,
)
from headsurgeon.tasks.token.schemes import Scheme, detect, spans

BIO = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
BIOES = ["O"] + [f"{p}-{t}" for t in ("PER", "ORG", "LOC", "MISC") for p in "BIES"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(tmp_path: Path, name: str, body: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def pairs(sentences):
    return [(list(s.tokens), list(s.tags)) for s in sentences]


# --- formats ----------------------------------------------------------------------------------


def test_conll_tab_and_space_columns_blank_lines_and_docstart(tmp_path):
    path = write(
        tmp_path,
        "d.conll",
        "-DOCSTART-\tO\n\nJohn\tB-PER\nlives\tO\n\n\n-DOCSTART- O\nin O\nNew B-LOC\nYork I-LOC\n",
    )
    got = read_sentences(path)
    assert pairs(got) == [
        (["John", "lives"], ["B-PER", "O"]),
        (["in", "New", "York"], ["O", "B-LOC", "I-LOC"]),
    ]
    assert [(s.source, s.line) for s in got] == [(str(path), 3), (str(path), 8)]


def test_conll2003_four_columns_take_the_last_as_tag(tmp_path):
    body = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n"
    path = write(tmp_path, "train.txt", body)
    assert pairs(read_sentences(path)) == [(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"])]


@pytest.mark.parametrize("name", ["d.conll", "d.txt", "d.tsv", "d.iob", "d.bio"])
def test_conll_suffixes_bom_and_crlf(tmp_path, name):
    path = write(tmp_path, name, "\ufeffJohn\tB-PER\r\nSmith\tI-PER\r\n\r\nhi\tO\r\n")
    assert pairs(read_sentences(path)) == [(["John", "Smith"], ["B-PER", "I-PER"]), (["hi"], ["O"])]


@pytest.mark.parametrize("key", ["tags", "ner_tags"])
def test_jsonl_tokens_and_tags(tmp_path, key):
    rows = [{"tokens": ["John", "lives"], key: ["B-PER", "O"]}, {"tokens": ["hi"], key: ["O"]}]
    path = write(tmp_path, "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    got = read_sentences(path)
    assert pairs(got) == [(["John", "lives"], ["B-PER", "O"]), (["hi"], ["O"])]
    assert [s.line for s in got] == [1, 2]


@pytest.mark.parametrize(
    "entities",
    [
        {"entities": [[0, 10, "PER"], [20, 28, "LOC"]]},
        {"label": [[20, 28, "LOC"], [0, 10, "PER"]]},  # doccano; any order
        {
            "entities": [
                {"start": 0, "end": 10, "label": "PER"},
                {"start": 20, "end": 28, "label": "LOC"},
            ]
        },
        {"label": [{"start_offset": 0, "end_offset": 10, "label": "PER"}, [19, 28, "LOC"]]},
        {"entities": [{"start": 0, "end": 10, "labels": ["PER"]}, [20, 28, "LOC"]]},
    ],
)
def test_jsonl_text_with_character_spans(tmp_path, entities):
    row = {"text": "John Smith lives in New York, U.S.-based.", **entities}
    path = write(tmp_path, "d.json", json.dumps(row) + "\n")
    (got,) = read_sentences(path)
    assert list(zip(got.tokens, got.tags, strict=True)) == [
        ("John", "B-PER"),
        ("Smith", "I-PER"),
        ("lives", "O"),
        ("in", "O"),
        ("New", "B-LOC"),
        ("York", "I-LOC"),
        (",", "O"),
        ("U", "O"),
        (".", "O"),
        ("S", "O"),
        (".", "O"),
        ("-", "O"),
        ("based", "O"),
        (".", "O"),
    ]


def test_split_words_offsets():
    assert split_words("U.S.-based  Ünïcode_x!") == [
        ("U", 0, 1),
        (".", 1, 2),
        ("S", 2, 3),
        (".", 3, 4),
        ("-", 4, 5),
        ("based", 5, 10),
        ("Ünïcode_x", 12, 21),
        ("!", 21, 22),
    ]


def test_format_can_be_forced(tmp_path):
    path = write(tmp_path, "data.ner", "John B-PER\n")
    with pytest.raises(DataError, match="unknown format '.ner'"):
        read_sentences(path)
    assert pairs(read_sentences(path, fmt="conll")) == [(["John"], ["B-PER"])]
    with pytest.raises(OptionsError, match="'xml' is not one of auto, conll, jsonl"):
        read_sentences(path, fmt="xml")


# --- the model's scheme ----------------------------------------------------------------------


def test_iob1_is_normalised_to_bio(tmp_path):
    body = "Peter I-PER\nBlackburn I-PER\nmet O\nAnn I-PER\nBob B-PER\nat O\nEU I-ORG\n"
    path = write(tmp_path, "iob1.conll", body)
    (got,) = read_sentences(path, labels=BIO)
    assert got.tags == ("B-PER", "I-PER", "O", "B-PER", "B-PER", "O", "B-ORG")
    assert got.tokens == ("Peter", "Blackburn", "met", "Ann", "Bob", "at", "EU")


def test_bio_data_is_written_in_a_bioes_models_scheme(tmp_path):
    body = '{"tokens": ["New", "York", "and", "Paris", "Inc", "."], "tags": ["B-LOC", "I-LOC", "O", "B-ORG", "I-ORG", "O"]}\n{"tokens": ["Ann"], "tags": ["B-PER"]}\n'
    path = write(tmp_path, "d.jsonl", body)
    got = read_sentences(path, labels=BIOES)
    assert [s.tags for s in got] == [
        ("B-LOC", "E-LOC", "O", "B-ORG", "E-ORG", "O"),
        ("S-PER",),
    ]


def test_bioes_data_and_other_separator_for_a_bio_model(tmp_path):
    path = write(tmp_path, "d.conll", "New S_LOC\nYork S_LOC\nBig B_ORG\nCo E_ORG\nx O\n")
    (got,) = read_sentences(path, labels=BIO)
    assert got.tags == ("B-LOC", "B-LOC", "B-ORG", "I-ORG", "O")


def test_io_model_and_a_model_without_scheme(tmp_path):
    path = write(tmp_path, "d.conll", "New B-LOC\nYork I-LOC\nx O\n")
    assert read_sentences(path, labels=["O", "I-LOC"])[0].tags == ("I-LOC", "I-LOC", "O")
    raw = write(tmp_path, "raw.conll", "New LOC\nYork LOC\nx NONE\n")
    assert read_sentences(raw, labels=["NONE", "LOC"])[0].tags == ("LOC", "LOC", "NONE")
    with pytest.raises(DataError, match=r"raw.conll:3: tag 'NONE' is not a label of the model"):
        read_sentences(raw, labels=["LOC", "PER"])


def iob1(tags):
    """BIO tags written as IOB1: ``B-`` only where an entity follows one of its own type."""
    out = []
    for k, tag in enumerate(tags):
        previous = tags[k - 1] if k else "O"
        if tag.startswith("B-") and previous[2:] != tag[2:]:
            tag = "I-" + tag[2:]
        out.append(tag)
    return out


@pytest.mark.parametrize("model", ["BIO", "BIOES", "BILOU", "IO"])
@settings(max_examples=60)
@given(data=st.data())
def test_normalising_keeps_every_entity(data, model):
    """Property: whatever the data's scheme, the model's tags hold exactly the data's entities."""
    written = data.draw(st.sampled_from(["BIO", "BIOES", "BILOU", "IO", "IOB1"]))
    gap = "IO" in (model, written)  # IO cannot tell two neighbouring entities of a type apart
    n = data.draw(st.integers(1, 12))
    cuts = sorted(data.draw(st.sets(st.integers(0, n), max_size=8)))
    found, end = [], -1
    for a, b in zip(cuts, cuts[1:], strict=False):
        if (a > end or not gap) and data.draw(st.booleans()):
            found.append((a, b, data.draw(st.sampled_from(["PER", "ORG"]))))
            end = b
    tags = Scheme("BIO" if written == "IOB1" else written).encode(found, n)
    tags = iob1(tags) if written == "IOB1" else tags
    labels = ["O"] + [t for kind in ("PER", "ORG") for t in Scheme(model).tags(kind)]
    s = Sentence(tuple(f"w{k}" for k in range(n)), tuple(tags), "mem", 1)
    (out,) = to_scheme([s], labels)
    assert spans(list(out.tags), Scheme(model)) == found
    assert set(out.tags) <= set(labels)
    assert out.tokens == s.tokens


def test_entity_types_of_raw_data(tmp_path):
    path = write(tmp_path, "d.conll", "a B-PRODUCT\nb I-PRODUCT\n\nc S-PER\nd O\n")
    assert entity_types(read_sentences(path)) == ["PRODUCT", "PER"]
    bad = write(tmp_path, "bad.conll", "a O\nb person\n")
    with pytest.raises(DataError, match=r"bad.conll:2: 'person' is not a tag"):
        entity_types(read_sentences(bad))


# --- bad files: one line naming file and line, input untouched ----------------------------------

BAD = [
    ("one.conll", "John B-PER\nSmith\n", None, r"one.conll:2: found one column \('Smith'\)"),
    ("tab.conll", "John\tB-PER\n\tO\n", None, r"tab.conll:2: the token before the tab is empty"),
    ("out.conll", "John B-PER\nx O\n\ny Z-PER\n", BIO, r"out.conll:4: 'Z-PER' is not a tag.*BIO"),
    ("low.conll", "John b-per\n", BIO, r"low.conll:1: 'b-per' is not a tag"),
    (
        "type.conll",
        "John B-PER\n\nAcme B-PRODUCT\nx B-FOOD\ny I-PRODUCT\n",
        BIO,
        r"type.conll:3: tag 'B-PRODUCT' is of entity type 'PRODUCT', which the model does not "
        r"have \(its types: LOC, MISC, ORG, PER\); unknown types in the data: 'PRODUCT' \(2 tags\), "
        r"'FOOD' \(1 tag\); add them",
    ),
    (
        "type.jsonl",
        '{"tokens": ["a", "b"], "tags": ["O", "B-X"]}\n',
        BIO,
        r"type.jsonl:1: token 2: tag 'B-X'",
    ),
    ("mix.conll", "a B-PER\nb E-PER\nc U-ORG\n", BIO, r"mix.conll:3: the sentence mixes BIOES"),
    ("ctl.conll", "a B-PER\x00\n", None, r"ctl.conll:1: tag: .*control character"),
    ("empty.conll", "", None, r"empty.conll holds no sentences"),
    ("blank.conll", "\n\n-DOCSTART- O\n\n", None, r"blank.conll holds no sentences"),
    ("empty.jsonl", "\n", None, r"empty.jsonl holds no sentences"),
    ("latin.conll", b"caf\xe9 O\n", None, r"latin.conll is not UTF-8 text"),
    ("d.jsonl", '{"tokens": ["a"]\n', None, r"d.jsonl:1: not a JSON object"),
    (
        "d.json",
        '[{"tokens": ["a"], "tags": ["O"]}]\n',
        None,
        r"d.json:1: expected a JSON object per line \(JSONL\), found list",
    ),
    (
        "d.jsonl",
        '{"words": ["a"]}\n',
        None,
        r"d.jsonl:1: expected 'tokens' with 'tags'.*found keys: 'words'",
    ),
    (
        "d.jsonl",
        '{"text": "hi", "label": "greet"}\n',
        None,
        r"d.jsonl:1: .*sequence-classification data",
    ),
    (
        "d.jsonl",
        '{"tokens": ["a", "b"], "tags": ["O"]}\n',
        None,
        r"one tag per token \(2\), found 1 tags",
    ),
    (
        "d.jsonl",
        '{"tokens": ["a"], "ner_tags": [3]}\n',
        None,
        r"tag 1 of 'ner_tags' is int 3, expected a tag name: give tag names",
    ),
    (
        "d.jsonl",
        '{"tokens": ["a", " "], "tags": ["O", "O"]}\n',
        None,
        r"token 2 is str ' ', expected a non-blank word",
    ),
    ("d.jsonl", '{"tokens": [], "tags": []}\n', None, r"'tokens' must be a non-empty list"),
    (
        "d.jsonl",
        '{"text": "John Smith", "entities": [[0, 11, "PER"]]}\n',
        None,
        r"d.jsonl:1: entity \[0, 11, 'PER'\] is out of range: expected 0 <= start < end <= 10",
    ),
    ("d.jsonl", '{"text": "John Smith", "entities": [[-1, 4, "PER"]]}\n', None, r"out of range"),
    ("d.jsonl", '{"text": "John Smith", "entities": [[4, 4, "PER"]]}\n', None, r"out of range"),
    (
        "d.jsonl",
        '{"text": "John Smith", "entities": [[0, 10, "PER"], [5, 10, "PER"]]}\n',
        None,
        r"d.jsonl:1: entities \[0, 10, 'PER'\] and \[5, 10, 'PER'\] overlap",
    ),
    (
        "d.jsonl",
        '{"text": "John Smith", "entities": [[0, 3, "PER"]]}\n',
        None,
        r"d.jsonl:1: entity \[0, 3, 'PER'\] \('Joh'\) does not start and end on word boundaries \(words: 'John'\)",
    ),
    ("d.jsonl", '{"text": "John Smith", "entities": [[1, 4, "PER"]]}\n', None, r"word boundaries"),
    (
        "d.jsonl",
        '{"text": "John Smith", "entities": [[4, 5, "PER"]]}\n',
        None,
        r"covers only whitespace",
    ),
    (
        "d.jsonl",
        '{"text": "John Smith", "entities": [[0, "4", "PER"]]}\n',
        None,
        r"end is str '4', expected a character offset",
    ),
    (
        "d.jsonl",
        '{"text": "John Smith", "entities": [[0, 4]]}\n',
        None,
        r"is not \[start, end, type\]",
    ),
    (
        "d.jsonl",
        '{"text": "John Smith", "entities": [[0, 4, " PER"]]}\n',
        None,
        r"entity type: .*whitespace",
    ),
    (
        "d.jsonl",
        '{"text": "John", "entities": [[0, 4, "PRODUCT"]]}\n',
        BIO,
        r"d.jsonl:1: token 1: tag 'B-PRODUCT' is of entity type 'PRODUCT'",
    ),
    (
        "d.jsonl",
        '{"text": " ", "entities": []}\n',
        None,
        r"'text' is str ' ', expected a non-blank text",
    ),
    ("d.csv", "text,label\nhi,a\n", None, r"unknown format '.csv' for token data"),
]


@pytest.mark.parametrize(
    "name, body, labels, message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_files_are_one_line_errors_naming_file_and_line(tmp_path, name, body, labels, message):
    path = write(tmp_path, name, body)
    before = digest(path)
    with pytest.raises(DataError, match=message) as e:
        read_sentences(path, labels=labels)
    assert "\n" not in str(e.value) and "\r" not in str(e.value)
    assert digest(path) == before


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_sentences(tmp_path / "none.conll")


def test_a_bio_model_missing_a_tag_it_would_need(tmp_path):
    path = write(tmp_path, "d.conll", "New B-LOC\nYork I-LOC\n")
    with pytest.raises(
        DataError,
        match=r"d.conll:2: the data's 'I-LOC' is 'I-LOC' in the model's BIO scheme, which is not one of its labels",
    ):
        read_sentences(path, labels=["O", "B-LOC"])


# --- schemes.py: a tag with a trailing line break is no tag ---------------------------------


def test_a_trailing_newline_is_not_part_of_a_valid_tag():
    with pytest.raises(LabelError):
        Scheme("BIO").split("B-PER\n")
    assert detect(["O", "B-PER\n"]) is None


# --- which task a file is for -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, body, verdict, line",
    [
        ("d.conll", "John\tB-PER\nlives\tO\n", "token", 1),
        ("d.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n", "token", 1),
        ("d.tsv", "EU\tB-ORG\nrejects\tO\n", "token", 1),
        ("d.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n', "token", 1),
        ("d.jsonl", '{"text": "a b", "label": [[0, 1, "X"]]}\n', "token", 1),
        ("d.csv", "text,label\nmy card is lost,lost\nwhere is it,arrival\n", "sequence", 2),
        ("d.tsv", "text\tlabel\nmy card is lost\tlost\n", "sequence", 2),
        ("d.jsonl", '{"text": "my card", "label": "lost"}\n', "sequence", 1),
        ("d.conll", "", None, 0),
        ("d.conll", "John PER\nlives NONE\n", None, 0),  # raw tags: cannot tell, let it pass
    ],
)
def test_task_sniff_and_the_mismatch_errors(tmp_path, name, body, verdict, line):
    path = write(tmp_path, name, body)
    before = digest(path)
    assert looks_like_token_data(path) is (verdict == "token")
    for token_model in (True, False):
        wrong = verdict == ("sequence" if token_model else "token")
        if not wrong:
            check_data_task(path, token_model=token_model)
            continue
        with pytest.raises(DataError, match=rf"{name}:{line}: --holdout looks like") as e:
            check_data_task(path, token_model=token_model, option="--holdout")
        assert "\n" not in str(e.value)
    assert digest(path) == before


def test_sniff_never_raises(tmp_path):
    assert looks_like_token_data(tmp_path / "missing.conll") is False
    assert looks_like_token_data(tmp_path) is False
    check_data_task(tmp_path / "missing.csv", token_model=True)


# --- subword alignment -------------------------------------------------------------------------


def subword_tokenizer(model_max_length=64):
    """A WordPiece tokenizer whose vocabulary cuts 'johnson' into john ##son (and 'yorkers')."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "john",
        "##son",
        "new",
        "york",
        "##ers",
        "lives",
        "in",
        ".",
    ]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
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
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


LABEL2ID = {t: i for i, t in enumerate(BIO)}


def sentence(tokens, tags):
    return Sentence(tuple(tokens), tuple(tags), "mem.conll", 1, per_token_lines=True)


def test_first_subword_gets_the_tag_the_rest_and_specials_are_ignored():
    s = sentence(
        ["Johnson", "lives", "in", "New", "Yorkers"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]
    )
    (got,) = align(subword_tokenizer(), [s], LABEL2ID, max_length=32)
    assert set(got) == {"input_ids", "attention_mask", "labels", "word_ids"}
    #          [CLS] john ##son lives in  new  york ##ers [SEP]
    assert got["input_ids"] == [2, 5, 6, 10, 11, 7, 8, 9, 3]
    assert got["word_ids"] == [None, 0, 0, 1, 2, 3, 4, 4, None]
    b_per, i_loc = LABEL2ID["B-PER"], LABEL2ID["I-LOC"]
    assert got["labels"] == [IGNORE, b_per, IGNORE, 0, 0, LABEL2ID["B-LOC"], i_loc, IGNORE, IGNORE]
    assert got["attention_mask"] == [1] * 9


def test_truncation_keeps_max_length_and_drops_the_last_words_labels(caplog):
    s = sentence(["Johnson", "lives", "in", "New", "York"], ["B-PER", "O", "O", "B-LOC", "I-LOC"])
    (got,) = align(subword_tokenizer(), [s], LABEL2ID, max_length=5)
    assert got["word_ids"] == [None, 0, 0, 1, None]
    assert got["labels"] == [IGNORE, LABEL2ID["B-PER"], IGNORE, 0, IGNORE]
    assert "1 of 1 sentences cut at 5 tokens" in caplog.text
    assert word_predictions(got["word_ids"], ["cls", "b", "i", "o", "sep"], n_words=5) == [
        "b",
        "o",
        None,
        None,
        None,
    ]


def test_a_word_the_tokenizer_removes_is_logged_and_predicted_as_missing(caplog):
    s = sentence(["John", "\u200b", "lives"], ["B-PER", "O", "O"])
    (got,) = align(subword_tokenizer(), [s], LABEL2ID, max_length=16)
    assert got["word_ids"] == [None, 0, 2, None]
    assert got["labels"] == [IGNORE, LABEL2ID["B-PER"], 0, IGNORE]
    assert "1 words became no token" in caplog.text and "cut" not in caplog.text
    preds = word_predictions(got["word_ids"], ["c", "b", "o", "s"], n_words=3, missing="O")
    assert preds == ["b", "O", "o"]


def test_word_predictions_take_the_first_subword():
    assert word_predictions([None, 0, 0, 1, 2, 2, None], [9, 1, 2, 3, 4, 5, 9]) == [1, 3, 4]
    assert word_predictions([None, 0, 2, None], [0, 1, 2, 3], missing="O") == [1, "O", 2]
    with pytest.raises(ValueError, match="2 token predictions for 3 tokens"):
        word_predictions([None, 0, None], [1, 2])


def test_slow_tokenizer_is_refused():
    from transformers import ByT5Tokenizer

    slow = ByT5Tokenizer()
    assert not slow.is_fast
    with pytest.raises(HeadSurgeonError, match="ByT5Tokenizer is a slow .*needs a fast one") as e:
        align(slow, [sentence(["a"], ["O"])], LABEL2ID, max_length=8)
    assert "\n" not in str(e.value)


def test_align_refuses_a_max_length_with_no_room_and_unknown_tags():
    tok = subword_tokenizer()
    with pytest.raises(OptionsError, match="max_length is 2, expected an integer above 2"):
        align(tok, [sentence(["a"], ["O"])], LABEL2ID, max_length=2)
    with pytest.raises(DataError, match=r"mem.conll:2: tag 'B-X' is not a label of the model"):
        align(tok, [sentence(["in", "new"], ["O", "B-X"])], LABEL2ID, max_length=8)


def test_read_then_align_end_to_end(tmp_path):
    path = write(tmp_path, "d.conll", "Johnson I-PER\nlives O\n\nNew I-LOC\nYork I-LOC\n")
    before = digest(path)
    got = align(subword_tokenizer(), read_sentences(path, labels=BIO), LABEL2ID, max_length=16)
    assert [g["labels"] for g in got] == [
        [IGNORE, LABEL2ID["B-PER"], IGNORE, 0, IGNORE],
        [IGNORE, LABEL2ID["B-LOC"], LABEL2ID["I-LOC"], IGNORE],
    ]
    assert digest(path) == before


# --- fuzzing: only DataError escapes, inputs untouched --------------------------------------------

LINES = st.lists(
    st.one_of(
        st.just(""),
        st.just("-DOCSTART- -X- O"),
        st.builds(
            lambda tok, sep, tag: f"{tok}{sep}{tag}",
            st.text(min_size=0, max_size=6),
            st.sampled_from(["\t", " ", "  ", "\t\t", " X "]),
            st.sampled_from(
                BIO
                + [
                    "S-PER",
                    "E-ORG",
                    "U-X",
                    "L-PER",
                    "B_PER",
                    "Q-PER",
                    "O ",
                    "",
                    "b-per",
                    "B-",
                    "I-FOO",
                ]
            ),
        ),
        st.text(max_size=12),
    ),
    max_size=12,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 40) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
JSON_ROWS = st.one_of(
    st.fixed_dictionaries({"tokens": JSON_VALUES, "tags": JSON_VALUES}),
    st.fixed_dictionaries(
        {
            "tokens": st.lists(st.text(max_size=4), max_size=4),
            "ner_tags": st.lists(st.sampled_from(BIO + ["X", 1]), max_size=4),
        }
    ),
    st.fixed_dictionaries({"text": JSON_VALUES, "entities": JSON_VALUES}),
    st.fixed_dictionaries(
        {
            "text": st.text(alphabet="ab .,\u00e9\t", max_size=12),
            "label": st.lists(
                st.one_of(
                    st.tuples(
                        st.integers(-2, 14),
                        st.integers(-2, 14),
                        st.sampled_from(["PER", "ORG", "X", ""]),
                    ).map(list),
                    st.fixed_dictionaries(
                        {"start": JSON_VALUES, "end": st.integers(-2, 14), "label": JSON_VALUES}
                    ),
                ),
                max_size=3,
            ),
        }
    ),
    JSON_VALUES,
)


def _only_data_errors(path: Path, labels):
    before = digest(path)
    try:
        got = read_sentences(path, labels=labels)
    except DataError as e:
        assert "\n" not in str(e) and "\r" not in str(e), repr(str(e))
    else:
        assert got and all(len(s.tokens) == len(s.tags) > 0 for s in got)
        if labels is not None:
            assert all(set(s.tags) <= set(labels) for s in got)
    looks_like_token_data(path)
    for token_model in (True, False):
        try:
            check_data_task(path, token_model=token_model)
        except DataError as e:
            assert "\n" not in str(e)
    assert digest(path) == before


@settings(max_examples=150)
@given(
    body=st.one_of(LINES.map(lambda ls: "\n".join(ls).encode()), st.binary(max_size=80)),
    suffix=st.sampled_from([".conll", ".tsv", ".txt"]),
    labels=st.sampled_from([None, BIO, BIOES, ["O", "I-PER"], ["NONE", "PER"]]),
)
def test_fuzz_conll_reader(tmp_path_factory, body, suffix, labels):
    path = tmp_path_factory.mktemp("fz") / f"d{suffix}"
    path.write_bytes(body)
    _only_data_errors(path, labels)


@settings(max_examples=150)
@given(
    rows=st.lists(st.one_of(JSON_ROWS.map(json.dumps), st.text(max_size=10)), max_size=4),
    raw=st.binary(max_size=40),
    use_raw=st.booleans(),
    labels=st.sampled_from([None, BIO, BIOES]),
)
def test_fuzz_jsonl_reader(tmp_path_factory, rows, raw, use_raw, labels):
    path = tmp_path_factory.mktemp("fz") / "d.jsonl"
    path.write_bytes(raw if use_raw else "\n".join(rows).encode())
    _only_data_errors(path, labels)
