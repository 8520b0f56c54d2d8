"""Tagging schemes (BIO, BIOES, BILOU, IO), entity types <-> tags, and the task of a model.

Pure label logic: no model is built here (the token models' surgery is in test_token_surgery.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headsurgeon import labels as _labels
from headsurgeon import tasks
from headsurgeon.errors import LabelError
from headsurgeon.tasks.token import schemes
from headsurgeon.tasks.token.schemes import (
    Scheme,
    detect,
    spans,
    tags_of_types,
    tags_to_add,
    tags_to_remove,
)

BIO = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
BIOES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-ORG", "I-ORG", "E-ORG", "S-ORG"]
BILOU = ["O", "B-PER", "I-PER", "L-PER", "U-PER"]
IO = ["O", "I-PER", "I-ORG"]
#: no recognisable scheme, yet tags: BMES ("M" is no prefix of any scheme here)
BMES = ["O", "B-PER", "M-PER", "E-PER", "S-PER"]


# --- detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, name, separator",
    [
        (BIO, "BIO", "-"),
        (BIOES, "BIOES", "-"),
        (BILOU, "BILOU", "-"),
        (IO, "IO", "-"),
        (["O", "B_PER", "I_PER", "B_WORK_OF_ART", "I_WORK_OF_ART"], "BIO", "_"),
        (["B-PER", "O", "I-PER"], "BIO", "-"),  # O anywhere
        (["O", "B-PER"], "BIO", "-"),  # a type with a B tag only is still BIO
        (["O", "B-PER", "I-PER", "S-PER"], "BIOES", "-"),  # a subset of BIOES's prefixes
        (["O", "I_X"], "IO", "_"),
    ],
)
def test_detects_the_scheme(labels, name, separator):
    assert detect(labels) == Scheme(name, separator)


@pytest.mark.parametrize(
    "labels",
    [
        ["O", "B-PER", "I_PER"],  # mixed separators
        ["B-PER", "I-PER", "B-ORG", "I-ORG"],  # no O
        ["O"],
        [],
        BMES,
        ["O", "B-PER", "I-PER", "E-PER", "L-PER"],  # BIOES and BILOU prefixes mixed
        ["O", "PER", "ORG"],  # plain names
        ["NOUN", "VERB", "ADJ"],  # a POS tagger
        ["O", "b-per", "i-per"],  # lower-case prefixes
        ["O", "B-", "I-"],  # no type
    ],
)
def test_no_recognisable_scheme(labels):
    assert detect(labels) is None
    assert schemes.describe(labels) == {"scheme": None, "entity_types": []}


def test_describe_and_tags_of_each_scheme():
    assert schemes.describe(BIO) == {"scheme": "BIO", "entity_types": ["PER", "ORG", "LOC", "MISC"]}
    assert Scheme("BIO").tags("X") == ["B-X", "I-X"]
    assert Scheme("BIOES").tags("X") == ["B-X", "I-X", "E-X", "S-X"]
    assert Scheme("BILOU", "_").tags("X") == ["B_X", "I_X", "L_X", "U_X"]
    assert Scheme("IO").tags("X") == ["I-X"]
    with pytest.raises(LabelError, match="not of the BIO scheme"):
        Scheme("BIO").split("E-PER")


# --- spans <-> tags -------------------------------------------------------------------------


def test_spans_of_each_scheme_and_iob1():
    assert spans(["B-PER", "I-PER", "O", "B-ORG"], Scheme("BIO")) == [(0, 2, "PER"), (3, 4, "ORG")]
    # IOB1: I-X opens an entity after O or after another type; B-X only splits two of one type
    iob1 = ["I-PER", "I-PER", "I-ORG", "O", "I-LOC", "B-LOC", "I-LOC"]
    assert spans(iob1, Scheme("BIO")) == [
        (0, 2, "PER"),
        (2, 3, "ORG"),
        (4, 5, "LOC"),
        (5, 7, "LOC"),
    ]
    bioes = ["S-PER", "B-ORG", "I-ORG", "E-ORG", "B-PER", "E-PER"]
    assert spans(bioes, Scheme("BIOES")) == [(0, 1, "PER"), (1, 4, "ORG"), (4, 6, "PER")]
    assert spans(["U-PER", "B-ORG", "L-ORG"], Scheme("BILOU")) == [(0, 1, "PER"), (1, 3, "ORG")]
    assert spans(["I-PER", "I-PER", "O", "I-ORG"], Scheme("IO")) == [(0, 2, "PER"), (3, 4, "ORG")]
    assert spans([], Scheme("BIO")) == []
    with pytest.raises(LabelError, match="token 2: tag 'E-PER' is not of the BIO scheme"):
        spans(["B-PER", "E-PER"], Scheme("BIO"))


def test_encode_each_scheme():
    found = [(0, 1, "PER"), (1, 4, "ORG")]
    assert Scheme("BIO").encode(found, 5) == ["B-PER", "B-ORG", "I-ORG", "I-ORG", "O"]
    assert Scheme("BIOES").encode(found, 5) == ["S-PER", "B-ORG", "I-ORG", "E-ORG", "O"]
    assert Scheme("BILOU", "_").encode(found, 4) == ["U_PER", "B_ORG", "I_ORG", "L_ORG"]
    assert Scheme("IO").encode(found, 4) == ["I-PER", "I-ORG", "I-ORG", "I-ORG"]


@st.composite
def _spans(draw, length=12, adjacent_same_type=True):
    """Non-overlapping spans ``(start, end, type)`` in ``length`` tokens, sorted."""
    cuts = sorted(draw(st.sets(st.integers(0, length), max_size=8)))
    out, last_end, last_type = [], None, None
    for start, end in zip(cuts[::2], cuts[1::2], strict=False):
        kind = draw(st.sampled_from(["PER", "ORG", "X_Y"]))
        if not adjacent_same_type and start == last_end and kind == last_type:
            continue  # IO cannot tell two touching entities of one type from one
        out.append((start, end, kind))
        last_end, last_type = end, kind
    return out


@pytest.mark.parametrize("scheme", [Scheme("BIO"), Scheme("BIOES"), Scheme("BILOU", "_")])
@given(found=_spans())
def test_encode_then_spans_round_trips(scheme, found):
    tags = scheme.encode(found, 12)
    assert spans(tags, scheme) == found
    assert detect(["O", *scheme.tags("PER")]) == scheme
    # the same entities written as IOB1 (I-X opens, B-X only between two of one type) read back
    if scheme.name == "BIO":
        iob1 = [t if t == "O" else "I" + t[1:] for t in tags]
        for (_, end, kind), (start, _, nxt) in zip(found, found[1:], strict=False):
            if end == start and kind == nxt:
                iob1[start] = "B-" + nxt
        assert spans(iob1, scheme) == found


@given(found=_spans(adjacent_same_type=False))
def test_io_round_trips_entities_that_do_not_touch(found):
    assert spans(Scheme("IO").encode(found, 12), Scheme("IO")) == found


# --- names a user gives -> tags -------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, want",
    [
        (BIO, ["B-PRODUCT", "I-PRODUCT"]),
        (BIOES, ["B-PRODUCT", "I-PRODUCT", "E-PRODUCT", "S-PRODUCT"]),
        (BILOU, ["B-PRODUCT", "I-PRODUCT", "L-PRODUCT", "U-PRODUCT"]),
        (IO, ["I-PRODUCT"]),
        (["O", "B_PER", "I_PER"], ["B_PRODUCT", "I_PRODUCT"]),
    ],
)
def test_an_entity_type_adds_all_its_tags(labels, want):
    assert tags_to_add(labels, ["PRODUCT"]) == want
    assert _labels.grown(labels, ["PRODUCT"], task=tasks.TOKEN) == [*labels, *want]


def test_raw_tags_stay_themselves():
    """A name shaped like a tag is a tag (exotic ones too: E-X on a BIO model), not a type."""
    assert tags_to_add(BIO, ["B-PRODUCT"]) == ["B-PRODUCT"]
    assert tags_to_add(BIO, ["E-PER", "PRODUCT"]) == ["E-PER", "B-PRODUCT", "I-PRODUCT"]
    assert tags_to_add(BIO, ["B_PRODUCT"]) == ["B_PRODUCT"]
    assert tags_of_types(detect(BIO), BIO, ["S-PER"]) == ["S-PER"]


def test_no_scheme_refuses_entity_types_and_takes_raw_tags():
    with pytest.raises(
        LabelError, match=r"follow no tagging scheme .* name the raw tags .*B-PRODUCT"
    ):
        tags_to_add(BMES, ["PRODUCT"])
    assert tags_to_add(BMES, ["B-PRODUCT", "M-PRODUCT"]) == ["B-PRODUCT", "M-PRODUCT"]
    no_o = ["B-PER", "I-PER"]
    with pytest.raises(LabelError, match="follow no tagging scheme"):
        _labels.grown(no_o, ["ORG"], task=tasks.TOKEN)
    assert _labels.grown(no_o, ["B-ORG"], task=tasks.TOKEN) == [*no_o, "B-ORG"]


def test_a_flat_label_set_takes_plain_names():
    """A POS tagger (no tag-shaped label at all) grows by plain names, as before."""
    pos = ["NOUN", "VERB", "ADJ"]
    assert _labels.grown(pos, ["ADV"], task=tasks.TOKEN) == [*pos, "ADV"]
    assert _labels.without(pos, ["VERB"], task=tasks.TOKEN) == (["NOUN", "ADJ"], [0, 2])
    assert _labels.renamed(pos, "ADJ", "ADJECTIVE", task=tasks.TOKEN) == [
        "NOUN",
        "VERB",
        "ADJECTIVE",
    ]


@pytest.mark.parametrize(
    "labels, names, message",
    [
        (BIO, ["PER"], r"entity type 'PER' is already in the model \(B-PER, I-PER\)"),
        (["O", "B-PER"], ["PER"], r"already in the model \(B-PER\).*--name I-PER"),
        (BIO, ["B-PER"], "already in the model: B-PER"),
        (BIO, ["X", "X"], "more than once: B-X, I-X"),
        (BIO, [" X"], "whitespace around it"),
        (BIO, [], "no label names"),
    ],
)
def test_adding_refuses(labels, names, message):
    with pytest.raises(LabelError, match=message):
        _labels.grown(labels, names, task=tasks.TOKEN)


def test_sequence_classifiers_take_names_as_they_are():
    """Only a token classifier's names are entity types: a text classifier's are labels."""
    for task in (tasks.SEQUENCE, tasks.UNKNOWN, None):
        assert _labels.grown(BIO, ["PRODUCT"], task=task) == [*BIO, "PRODUCT"]
        with pytest.raises(LabelError, match="unknown label"):
            _labels.without(BIO, ["PER"], task=task)
        with pytest.raises(LabelError, match="unknown label"):
            _labels.renamed(BIO, "PER", "PERSON", task=task)


def test_removing_an_entity_type_removes_its_tags():
    after, kept = _labels.without(BIO, ["PER", "I-LOC"], task=tasks.TOKEN, force=True)
    assert after == ["O", "B-ORG", "I-ORG", "B-LOC", "B-MISC", "I-MISC"] and kept == [
        0,
        3,
        4,
        5,
        7,
        8,
    ]
    assert tags_to_remove(BIO, ["PER", "B-PER"]) == ["B-PER", "I-PER"]  # given twice: once
    assert tags_to_remove(BIOES, ["ORG"]) == ["B-ORG", "I-ORG", "E-ORG", "S-ORG"]
    with pytest.raises(
        LabelError, match=r"'NOPE' is neither a label nor an entity type .*PER, ORG"
    ):
        _labels.without(BIO, ["NOPE"], task=tasks.TOKEN)
    with pytest.raises(LabelError, match="unknown label"):  # no scheme: names are labels
        _labels.without(BMES, ["PER"], task=tasks.TOKEN)
    assert _labels.without(BMES, ["M-PER"], task=tasks.TOKEN)[0] == ["O", "B-PER", "E-PER", "S-PER"]


@pytest.mark.parametrize(
    "labels, names, message",
    [
        (BIO, ["O"], "removing O (the tag of tokens outside any entity) would leave tags that "
         "follow no scheme (the model's is BIO): keep O and remove entity types by name "
         "(remove-label MODEL PER removes B-PER, I-PER), or pass --force"),
        (BIO, ["O", "PER"], "removing O "),  # with a whole type: O is still refused
        (BIO, ["B-PER"], "removing B-PER but not I-PER would break the model's BIO tagging of "
         "PER: remove the whole type by its name (remove-label MODEL PER removes B-PER, I-PER), "
         "or pass --force"),
        (BIO, ["ORG", "I-LOC"], "removing I-LOC but not B-LOC"),
        (BIOES, ["S-PER", "E-PER"], "removing E-PER, S-PER but not B-PER, I-PER would break "
         "the model's BIOES tagging of PER"),
        (BILOU, ["U-PER"], "(remove-label MODEL PER removes B-PER, I-PER, L-PER, U-PER)"),
        (["O", "B_PER", "I_PER"], ["I_PER"], "removing I_PER but not B_PER"),
        (IO, ["O"], "the model's is IO"),
    ],
)  # fmt: skip
def test_removing_tags_that_break_the_scheme_is_refused_unless_forced(
    labels, names, message, caplog
):
    """O, or some tags of a type while others stay, leave a tagger with no recognised scheme."""
    with pytest.raises(LabelError) as refused:
        _labels.without(labels, names, task=tasks.TOKEN)
    assert message in str(refused.value) and "force" in str(refused.value)
    with caplog.at_level("WARNING", logger="headsurgeon"):
        after, _ = _labels.without(labels, names, task=tasks.TOKEN, force=True)
    assert not set(after) & set(tags_to_remove(labels, names))
    assert "removed anyway: --force" in caplog.text
    if set(names) <= set(labels):  # the same labels on a sequence classifier: no scheme there
        assert _labels.without(labels, names)[0] == after


def test_a_type_goes_whole_or_not_at_all():
    """Whole types (by name, or every tag named) still go; one tag of them is refused."""
    with pytest.raises(LabelError, match="removing B-PER but not I-PER"):
        _labels.without(BIO, ["B-PER"], task=tasks.TOKEN)
    for labels, names, after in [
        (BIO, ["PER", "LOC"], ["O", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]),
        (BIO, ["B-PER", "I-PER"], ["O", *BIO[3:]]),  # every tag of a type, named one by one
        (BIOES, ["ORG"], BIOES[:5]),
        (IO, ["I-PER"], ["O", "I-ORG"]),  # IO: one tag is the whole type
        (BMES, ["M-PER"], ["O", "B-PER", "E-PER", "S-PER"]),  # no scheme: nothing to break
    ]:
        assert _labels.without(labels, names, task=tasks.TOKEN)[0] == after
        assert detect(labels) is None or detect(after) == detect(labels)
    with pytest.raises(LabelError, match="cannot remove every label"):  # not the scheme's error
        _labels.without(BIO[:3], ["O", "PER"], task=tasks.TOKEN)


def test_renaming_an_entity_type_renames_its_tags():
    assert _labels.renamed(BIO[:5], "PER", "PERSON", task=tasks.TOKEN) == [
        "O",
        "B-PERSON",
        "I-PERSON",
        "B-ORG",
        "I-ORG",
    ]
    under = ["O", "B_PER", "I_PER"]
    assert _labels.renamed(under, "PER", "WORK_OF_ART", task=tasks.TOKEN) == [
        "O",
        "B_WORK_OF_ART",
        "I_WORK_OF_ART",
    ]
    assert _labels.renamed(BIO, "B-PER", "B-PERSON", task=tasks.TOKEN)[1] == "B-PERSON"  # a tag
    for old, new, message in [
        ("PER", "ORG", "'ORG' is already an entity type"),
        ("PER", "PER", "the same"),
        ("PER", "B-PERSON", "shaped like a tag"),
        ("PER", "O", "shaped like a tag"),
        ("PER", "", "empty"),
        ("NOPE", "X", "neither a label nor an entity type"),
    ]:
        with pytest.raises(LabelError, match=message):
            _labels.renamed(BIO, old, new, task=tasks.TOKEN)


# --- the task of a model --------------------------------------------------------------------


def test_task_of_every_auto_mapped_classifier_matches_its_mapping():
    """Each class of transformers' classification mappings gets the task of its mapping."""
    from tests import zoo

    want = {"sequence": tasks.SEQUENCE, "token": tasks.TOKEN, "image": tasks.IMAGE}
    want |= {"audio": tasks.AUDIO, "multiple-choice": tasks.MULTIPLE_CHOICE}
    found = zoo.entries({**zoo.MAPPINGS, **zoo.MULTIPLE_CHOICE})
    assert len(found) > 300
    for entry in found:
        config = {"architectures": [entry.name], "model_type": entry.model_type}
        assert tasks.task_of(config) == want[entry.task], entry


def test_task_of_configs_and_models():
    from types import SimpleNamespace

    assert tasks.task_of({"architectures": ["BertForTokenClassification"]}) == tasks.TOKEN
    assert tasks.task_of({"model_type": "bert"}) == tasks.UNKNOWN  # no architectures saved
    assert tasks.task_of({"architectures": None}) == tasks.UNKNOWN
    assert tasks.task_of({"architectures": ["BertForMaskedLM"]}) == tasks.UNKNOWN
    config = SimpleNamespace(architectures=["HubertForSequenceClassification"], model_type="hubert")
    assert tasks.task_of(config) == tasks.AUDIO

    class PeftModelForTokenClassification:  # a wrapper named after the task
        config = SimpleNamespace(model_type="bert")

    assert tasks.task_of_model(PeftModelForTokenClassification()) == tasks.TOKEN
    assert tasks.task_of_model(object()) == tasks.UNKNOWN
