import pytest

from headsurgeon.data import Example, by_label, check_labels, read_examples
from headsurgeon.errors import DataError


@pytest.mark.parametrize(
    "name, body",
    [
        ("d.csv", 'text,label\n"hello, world",a\nbye,b\n'),
        ("d.tsv", "text\tlabel\nhello, world\ta\nbye\tb\n"),
        ("d.jsonl", '{"text": "hello, world", "label": "a"}\n\n{"text": "bye", "label": "b"}\n'),
    ],
)
def test_formats(tmp_path, name, body):
    (tmp_path / name).write_text(body)
    assert read_examples(tmp_path / name) == [Example("hello, world", "a"), Example("bye", "b")]


def test_custom_columns(tmp_path):
    (tmp_path / "d.csv").write_text("utterance,intent\nhi,greet\n")
    assert read_examples(tmp_path / "d.csv", text_column="utterance", label_column="intent") == [
        Example("hi", "greet")
    ]


@pytest.mark.parametrize(
    "name, body, message",
    [
        ("d.csv", "", "no examples"),
        ("d.csv", "text,label\n", "no examples"),
        ("d.csv", "words,label\nhi,a\n", "no column 'text'"),
        ("d.csv", "text,label\nhi,a,extra\n", "expected 2 columns"),
        ("d.csv", "text,label\n,a\n", "empty or non-text"),
        ("d.csv", "text,label\nhi,\n", "empty 'label'"),
        ("d.jsonl", '{"text": "hi"\n', "not a JSON object"),
        ("d.jsonl", "[1, 2]\n", "expected a JSON object"),
        ("d.txt", "x", "unknown format"),
    ],
)
def test_bad_files(tmp_path, name, body, message):
    (tmp_path / name).write_text(body)
    with pytest.raises(DataError, match=message):
        read_examples(tmp_path / name)


@pytest.mark.parametrize("name, sep", [("d.csv", ","), ("d.tsv", "\t")])
def test_missing_column_is_reported_at_the_header_line(tmp_path, name, sep):
    (tmp_path / name).write_text(f"words{sep}label\nhi{sep}a\n")
    with pytest.raises(DataError, match=rf"{name}:1: no column 'text' \(found: 'words', 'label'\)"):
        read_examples(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_examples(tmp_path / "none.csv")


def test_check_labels_names_unknown():
    ex = [Example("a", "x"), Example("b", "zz"), Example("c", "zz")]
    with pytest.raises(DataError, match=r"'zz' \(2 examples\)"):
        check_labels(ex, ["x"])
    check_labels(ex, ["x", "zz"])
    assert list(by_label(ex)) == ["x", "zz"]
