"""Fuzzing of every reader of a file a user hands over (``hypothesis``, deterministic).

The promise checked for every generated case: the reader (API function or CLI command) either
succeeds or raises a :class:`~headsurgeon.errors.HeadSurgeonError` whose message is ONE line (the
CLI: exit 1 and one ``error:`` line, never "unexpected" or a traceback), and every input file is
byte-identical afterwards.

Readers and what is generated:

* safetensors headers: valid files mutated (truncated, length field, an entry's dtype / shape /
  offsets, overlapping ranges, non-UTF-8 bytes, random JSON headers) and random bytes;
* ``config.json``: wrong types, non-contiguous or duplicate ids, missing keys, not an object,
  not JSON, not UTF-8;
* ``model.safetensors.index.json``: ``weight_map`` of wrong types, naming missing files or
  tensors, bad ``metadata``;
* data files (``.csv``/``.tsv``/``.jsonl``): bad encodings, huge fields, missing columns,
  empty files, non-object JSON lines, hostile labels;
* label names: unicode, whitespace, control characters, very long.

Every test runs twice: a quick default budget and ``SLOW_SCALE`` times more under ``-m slow``.
Each prints how many cases it ran (``pytest tests/test_fuzz.py -s``): the README's robustness
table quotes them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headsurgeon.cli import main
from headsurgeon.errors import HeadSurgeonError
from tests.common import LABELS

SLOW_SCALE = 10
SCALES = [1, pytest.param(SLOW_SCALE, marks=pytest.mark.slow, id="slow")]
#: cases run per reader in this session: {reader: count} (printed by each test)
COUNTS: Counter = Counter()
#: outcomes of the calls made in this session: {(reader, "ok" or error class): count}
OUTCOMES: Counter = Counter()
_reader = [""]


# --- the promise ---------------------------------------------------------------------------


def hashes(*paths: Path) -> dict[str, str]:
    out = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        out.update({str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    return out


def api_clean(fn, *args, **kwargs):
    """Call a reader: success, or a HeadSurgeonError with a one-line message. Return the error."""
    try:
        fn(*args, **kwargs)
    except HeadSurgeonError as e:
        assert "\n" not in str(e) and "\r" not in str(e), repr(str(e))
        assert str(e).strip(), type(e)
        OUTCOMES[_reader[0], type(e).__name__] += 1
        return e
    OUTCOMES[_reader[0], "ok"] += 1
    return None


def cli_clean(*args) -> int:
    """Run the CLI in-process: exit 0, or exit 1 with one ``error:`` line and no traceback."""
    res = CliRunner().invoke(main, [str(a) for a in args])
    OUTCOMES[_reader[0], f"{args[0]} exit {res.exit_code}"] += 1
    if res.exit_code == 0:
        return 0
    errors = [x for x in res.stderr.splitlines() if x.startswith("error")]
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (
        args,
        res.exit_code,
        res.output,
        res.exc_info,
    )
    assert len(errors) == 1 and not errors[0].startswith("error: unexpected "), (args, res.stderr)
    assert "Traceback" not in res.output and res.stderr.rstrip().endswith(errors[0]), res.stderr
    return 1


def fuzz(strategy, examples: int, reader: str):
    """Decorate ``check(case)``: run it on ``examples`` deterministic cases, count them."""

    def decorate(check):
        COUNTS[reader] = 0  # counts of this run only (the default and the slow run share names)
        for key in [k for k in OUTCOMES if k[0] == reader]:
            del OUTCOMES[key]

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def run(case):
            COUNTS[reader] += 1
            _reader[0] = reader
            check(case)

        return run

    return decorate


def report(reader: str) -> None:
    seen = ", ".join(f"{k[1]}: {v}" for k, v in sorted(OUTCOMES.items()) if k[0] == reader)
    print(f"\nfuzz {reader}: {COUNTS[reader]} cases ({seen})")


@pytest.fixture()
def scratch():
    """A fresh folder per example (hypothesis calls the check many times in one test)."""

    class Scratch:
        def __init__(self) -> None:
            self.paths: list[Path] = []

        def __call__(self) -> Path:
            self.paths.append(Path(tempfile.mkdtemp(prefix="hs-fuzz-")))
            return self.paths[-1]

    s = Scratch()
    yield s
    for path in s.paths:  # every example's folder, not only the last one
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.common import save_text_classifier

    return save_text_classifier(tmp_path_factory.mktemp("fuzzmodel") / "m")


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory):
    from tests.common import tiny_bert

    path = tmp_path_factory.mktemp("fuzzsharded") / "m"
    tiny_bert().save_pretrained(path, max_shard_size="20KB")
    return path


def copy_model(src: Path, where: Path) -> Path:
    dst = where / "model"
    shutil.copytree(src, dst)
    return dst


# --- strategies ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
#: names with the characters that break things: whitespace, controls, separators, quotes, YAML
hostile = st.text(
    alphabet=st.characters(codec="utf-8")
    | st.sampled_from(
        " \t\n\r\x00\x0b\x0c\x1b\x7f\x85\u00a0\u2028\u2029\ufeff\u200b\"'`:#-|>*[]{}&!%@,\\"
    ),
    max_size=20,
)
label_names = (
    hostile
    | st.sampled_from(LABELS).map(lambda n: f" {n} ")
    | st.sampled_from(LABELS)
    | st.tuples(st.text(min_size=1, max_size=4), st.integers(500, 20_000)).map(
        lambda t: t[0] * t[1]
    )
    | st.text(min_size=1, max_size=20)
)

DTYPES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "F4", "C64", "I32", "U32", "I16"]


def _bits(dtype: str) -> int:
    from headsurgeon.safetensors_io import DTYPE_BITS

    return DTYPE_BITS.get(dtype, 0)


@st.composite
def safetensors_files(draw) -> bytes:
    """A valid safetensors file (random tensors), then maybe one corruption."""
    tensors = draw(
        st.lists(
            st.tuples(
                st.text(max_size=10),
                st.sampled_from(DTYPES),
                st.lists(st.integers(0, 4), max_size=3),
            ),
            max_size=4,
            unique_by=lambda t: t[0],
        )
    )
    header, data, offset = {}, b"", 0
    for name, dtype, shape in tensors:
        if name == "__metadata__":
            continue
        n = _bits(dtype)
        for d in shape:
            n *= d
        if n % 8:
            shape = [*shape, 2]
            n *= 2
        size = n // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        data += draw(st.binary(min_size=size, max_size=size))
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2) | json_values
        )
    return corrupt(draw, header, data)


def corrupt(draw, header: dict, data: bytes) -> bytes:
    """Serialise ``header`` + ``data`` with one kind of damage (or none)."""
    kind = draw(
        st.sampled_from(
            [
                "none",
                "truncate",
                "length",
                "entry",
                "overlap",
                "json",
                "utf8",
                "append",
                "bytes",
                "retype",
                "reshape",
            ]
        )
    )
    names = [k for k in header if k != "__metadata__"]
    if kind in ("retype", "reshape") and names:  # still a valid file: the loaders' turn
        entry = header[draw(st.sampled_from(names))]
        if kind == "retype":
            same = [d for d in DTYPES if _bits(d) == _bits(entry["dtype"])] or [entry["dtype"]]
            entry["dtype"] = draw(st.sampled_from(same))
        else:
            entry["shape"] = draw(st.permutations(entry["shape"])) + draw(
                st.lists(st.just(1), max_size=2)
            )
    if kind == "entry" and names:
        entry = header[draw(st.sampled_from(names))]
        key = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        entry[key] = draw(
            json_values | st.text(max_size=6) | st.lists(st.integers(-(2**65), 2**65), max_size=3)
        )
        if draw(st.booleans()):
            entry.pop(key)
    if kind == "overlap" and len(names) > 1:
        a, b = draw(st.permutations(names))[:2]
        header[b]["data_offsets"] = list(header[a]["data_offsets"])
    text = json.dumps(header).encode()
    if kind == "json":
        text = json.dumps(draw(json_values)).encode()
    if kind == "utf8":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
            + text[at:]
        )
    raw = struct.pack("<Q", len(text)) + text + data
    if kind == "truncate":
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if kind == "length":
        length = draw(st.integers(0, 2**64 - 1) | st.integers(len(text) - 3, len(text) + 3))
        raw = struct.pack("<Q", max(length, 0)) + raw[8:]
    if kind == "append":
        raw += draw(st.binary(min_size=1, max_size=16))
    if kind == "bytes":
        raw = draw(st.binary(max_size=64))
    return raw


@st.composite
def damaged_model_file(draw, original: bytes) -> bytes:
    """The tiny model's real ``model.safetensors`` with one kind of damage."""
    (length,) = struct.unpack("<Q", original[:8])
    header = json.loads(original[8 : 8 + length])
    return corrupt(draw, header, original[8 + length :])


# --- safetensors headers --------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_safetensors_headers(scale, scratch):
    from headsurgeon.safetensors_io import read_header

    @fuzz(safetensors_files(), 300 * scale, "safetensors header (read_header)")
    def check(raw):
        path = scratch() / "model.safetensors"
        path.write_bytes(raw)
        before = hashes(path)
        error = api_clean(read_header, path)
        if error is None:  # a header we accept, safetensors itself must accept too
            from safetensors import safe_open

            with safe_open(str(path), "numpy") as fh:
                fh.keys()
        assert hashes(path) == before

    check()
    report("safetensors header (read_header)")


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_model_weights_cli(scale, scratch, model_dir):
    original = (model_dir / "model.safetensors").read_bytes()

    @fuzz(damaged_model_file(original), 100 * scale, "model.safetensors (CLI)")
    def check(raw):
        where = scratch()
        model = copy_model(model_dir, where)
        (model / "model.safetensors").write_bytes(raw)
        before = hashes(model)
        cli_clean("inspect", model)
        if cli_clean("add-label", model, "--name", "new", "-o", where / "a"):
            assert not (where / "a").exists()
        cli_clean("remove-label", model, "alpha", "-o", where / "r")
        assert hashes(model) == before

    check()
    report("model.safetensors (CLI)")


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_model_weights_load_model(scale, scratch, model_dir):
    from headsurgeon.models import load_model

    original = (model_dir / "model.safetensors").read_bytes()

    @fuzz(damaged_model_file(original), 60 * scale, "model.safetensors (load_model)")
    def check(raw):
        model = copy_model(model_dir, scratch())
        (model / "model.safetensors").write_bytes(raw)
        before = hashes(model)
        api_clean(load_model, model)
        assert hashes(model) == before

    check()
    report("model.safetensors (load_model)")


# --- config.json ----------------------------------------------------------------------------

ids = st.sampled_from(["0", "1", "2", "3", "00", " 1", "-1", "1.0", "x", "", "1_0", "\u0661"])


@st.composite
def configs(draw, base: dict) -> bytes:
    config = json.loads(json.dumps(base))
    kind = draw(st.sampled_from(["id2label", "label2id", "drop", "set", "whole", "bytes", "names"]))
    if kind == "id2label":
        config["id2label"] = draw(
            json_values | st.dictionaries(ids, json_values | hostile, max_size=5)
        )
    elif kind == "names":  # contiguous ids, hostile names
        names = draw(st.lists(label_names, min_size=1, max_size=5))
        order = draw(st.permutations(range(len(names))))
        config["id2label"] = {str(i): names[i] for i in order}
    elif kind == "label2id":
        config["label2id"] = draw(json_values)
    elif kind == "drop":
        for key in draw(st.lists(st.sampled_from(sorted(config)), min_size=1, max_size=4)):
            config.pop(key, None)
    elif kind == "set":
        key = draw(
            st.sampled_from(
                ["architectures", "model_type", "num_labels", "hidden_size", "dtype", "id2label"]
            )
        )
        config[key] = draw(json_values)
    elif kind == "whole":
        return json.dumps(draw(json_values)).encode()
    else:
        return draw(
            st.binary(max_size=64)
            | st.just(b"[" * 100_000)
            | st.just(json.dumps(config, ensure_ascii=False).encode("latin-1", "replace"))
            | st.just('{"id2label": {"0": "caf\u00e9"}}'.encode("latin-1"))
        )
    return json.dumps(config).encode()


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_config_json(scale, scratch, model_dir):
    from headsurgeon.labels import labels_of
    from headsurgeon.models import read_config

    base = json.loads((model_dir / "config.json").read_text())

    @fuzz(configs(base), 150 * scale, "config.json (read_config, CLI)")
    def check(raw):
        where = scratch()
        model = copy_model(model_dir, where)
        (model / "config.json").write_bytes(raw)
        before = hashes(model)
        if api_clean(read_config, model) is None:
            api_clean(labels_of, read_config(model))
        cli_clean("inspect", model)
        cli_clean("add-label", model, "--name", "new", "-o", where / "a")
        cli_clean("remove-label", model, "-o", where / "r", "--", "alpha")
        cli_clean("rename-label", model, "-o", where / "n", "--", "alpha", "renamed")
        assert hashes(model) == before

    check()
    report("config.json (read_config, CLI)")


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_id2label_in_memory(scale):
    """``labels_of`` on in-memory configs: ids as ints or strings, mixed, any names."""
    from headsurgeon.labels import labels_of

    keys = st.integers(-2, 6) | ids | st.booleans() | st.floats(allow_nan=False)
    maps = st.dictionaries(keys, json_values | label_names, max_size=6)
    contiguous = st.lists(label_names, min_size=1, max_size=5).flatmap(
        lambda names: st.lists(st.booleans(), min_size=len(names), max_size=len(names)).map(
            lambda as_int: {
                i if b else str(i): n for i, (n, b) in enumerate(zip(names, as_int, strict=True))
            }
        )
    )

    @fuzz(contiguous | maps | json_values, 300 * scale, "id2label (labels_of, in memory)")
    def check(id2label):
        if api_clean(labels_of, {"id2label": id2label}) is None:
            names = labels_of({"id2label": id2label})
            assert len(names) == len(id2label) and all(isinstance(n, str) for n in names)

    check()
    report("id2label (labels_of, in memory)")


# --- model.safetensors.index.json -----------------------------------------------------------


@st.composite
def indexes(draw, base: dict, tensors: list[str], shards: list[str]) -> bytes:
    index = json.loads(json.dumps(base))
    wmap = index["weight_map"]
    kind = draw(
        st.sampled_from(
            ["valid", "value", "drop", "add", "weight_map", "metadata", "whole", "bytes"]
        )
    )
    if kind == "valid":  # same content, another order and total_size: must be accepted
        index["weight_map"] = dict(draw(st.permutations(sorted(wmap.items()))))
        index["metadata"] = {"total_size": draw(st.integers(0, 2**63))}
    elif kind == "value":
        for t in draw(st.lists(st.sampled_from(tensors), min_size=1, max_size=3)):
            wmap[t] = draw(
                json_values
                | st.sampled_from(shards)
                | st.sampled_from(
                    [
                        "missing.safetensors",
                        "../model.safetensors",
                        "/etc/passwd",
                        "config.json",
                        ".",
                        "",
                        "a\x00b",
                        "model.safetensors.index.json",
                    ]
                )
            )
    elif kind == "drop":
        for t in draw(st.lists(st.sampled_from(tensors), min_size=1, max_size=len(tensors))):
            wmap.pop(t, None)
    elif kind == "add":
        wmap[draw(st.text(max_size=10))] = draw(st.sampled_from(shards))
    elif kind == "weight_map":
        index["weight_map"] = draw(json_values)
    elif kind == "metadata":
        index["metadata"] = draw(json_values | st.fixed_dictionaries({"total_size": json_values}))
    elif kind == "whole":
        return json.dumps(draw(json_values)).encode()
    else:
        return draw(st.binary(max_size=64) | st.just(b"{" * 50_000))
    return json.dumps(index).encode()


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_index_json(scale, scratch, sharded_dir):
    from headsurgeon.weights import SAFE_INDEX, read_weights

    base = json.loads((sharded_dir / SAFE_INDEX).read_text())
    tensors = sorted(base["weight_map"])
    shards = sorted(set(base["weight_map"].values()))

    @fuzz(indexes(base, tensors, shards), 150 * scale, "model.safetensors.index.json")
    def check(raw):
        where = scratch()
        model = copy_model(sharded_dir, where)
        (model / SAFE_INDEX).write_bytes(raw)
        before = hashes(model)
        api_clean(read_weights, model)
        cli_clean("inspect", model)
        cli_clean("add-label", model, "--name", "new", "-o", where / "a")
        cli_clean("remove-label", model, "-o", where / "r", "--", "alpha")
        assert hashes(model) == before

    check()
    report("model.safetensors.index.json")


# --- data files -----------------------------------------------------------------------------

fields = (
    st.text(max_size=12)
    | st.sampled_from(LABELS)
    | label_names
    | st.just("x" * 200_000)
    | st.just('"unbalanced')
    | st.just("a\x00b")
)
columns = st.sampled_from(["text", "label", "other", "Text", " label", ""]) | st.text(max_size=6)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


@st.composite
def table_files(draw, delimiter: str) -> bytes:
    header = draw(
        st.just(["text", "label"]) | st.lists(columns, max_size=3) | st.just(["label", "text", "x"])
    )
    rows = draw(st.lists(st.lists(fields, max_size=4), max_size=5))
    lines = [header, *rows]
    text = "\n".join(delimiter.join(cells) for cells in lines)
    if draw(st.booleans()):
        text += draw(st.sampled_from(["\n", "\r\n", "\n\n", '"', "\x00"]))
    return text.encode(draw(encodings), "replace")


@st.composite
def jsonl_files(draw) -> bytes:
    line = (
        st.fixed_dictionaries({"text": fields | json_values, "label": fields | json_values})
        | st.fixed_dictionaries({"text": fields})
        | json_values
        | st.sampled_from(["", "   ", "{", "[" * 50_000, '{"text": "a", "label": NaN}']).map(
            lambda s: ("RAW", s)
        )
    )
    lines = draw(st.lists(line, max_size=6))
    text = "\n".join(x[1] if isinstance(x, tuple) else json.dumps(x) for x in lines)
    return text.encode(draw(encodings), "replace")


def data_files():
    return (
        st.tuples(st.just(".csv"), table_files(","))
        | st.tuples(st.just(".tsv"), table_files("\t"))
        | st.tuples(st.just(".jsonl"), jsonl_files())
        | st.tuples(st.sampled_from([".csv", ".tsv", ".jsonl"]), st.binary(max_size=64))
    )


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_data_files(scale, scratch):
    from headsurgeon.data import check_labels, read_examples

    @fuzz(valid_holdouts() | data_files(), 300 * scale, "data files (read_examples)")
    def check(case):
        suffix, raw = case
        path = scratch() / f"data{suffix}"
        path.write_bytes(raw)
        before = hashes(path)
        if api_clean(read_examples, path) is None:
            examples = read_examples(path)
            assert examples and all(e.text.strip() and e.label for e in examples)
            api_clean(check_labels, examples, LABELS, source=str(path))
        assert hashes(path) == before

    check()
    report("data files (read_examples)")


@st.composite
def valid_holdouts(draw):
    """Holdouts the check can run on (texts from the tiny tokenizer's words, the model's labels)."""
    from tests.common import WORDS

    rows = draw(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(WORDS), min_size=1, max_size=6), st.sampled_from(LABELS)
            ),
            min_size=1,
            max_size=6,
        )
    )
    text = "text,label\n" + "".join(f"{' '.join(w)},{label}\n" for w, label in rows)
    return ".csv", text.encode()


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_holdout_check_cli(scale, scratch, model_dir):
    """``headsurgeon check`` reading a fuzzed holdout (valid ones run the check on a tiny model).

    The child is a copy: ``check`` records its result in the child's ``headsurgeon.json``.
    """
    before_model = hashes(model_dir)
    child = copy_model(model_dir, Path(tempfile.mkdtemp(prefix="hs-fuzz-child-")))

    @fuzz(valid_holdouts() | data_files(), 40 * scale, "holdout (headsurgeon check)")
    def check(case):
        suffix, raw = case
        path = scratch() / f"holdout{suffix}"
        path.write_bytes(raw)
        before = hashes(path)
        cli_clean("check", model_dir, child, "--holdout", path)
        assert hashes(path) == before

    try:
        check()
    finally:
        shutil.rmtree(child.parent, ignore_errors=True)
    assert hashes(model_dir) == before_model
    report("holdout (headsurgeon check)")


# --- label names ----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_label_names_api(scale):
    from headsurgeon import labels

    @fuzz(st.lists(label_names, min_size=1, max_size=3), 300 * scale, "label names (API)")
    def check(names):
        if api_clean(labels.grown, LABELS, names) is None:
            grown = labels.grown(LABELS, names)
            assert grown[:3] == LABELS and len(set(grown)) == len(grown)
            assert all(n == n.strip() and not {"\n", "\r", "\x00"} & set(n) for n in names)
        api_clean(labels.without, LABELS, names)
        api_clean(labels.renamed, LABELS, "alpha", names[0])
        api_clean(labels.renamed, LABELS, names[0], "omega")

    check()
    report("label names (API)")


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_label_names_cli(scale, scratch, model_dir):
    from headsurgeon.labels import labels_of
    from headsurgeon.models import read_config

    before = hashes(model_dir)

    @fuzz(label_names, 100 * scale, "label names (CLI)")
    def check(name):
        where = scratch()
        if cli_clean("add-label", model_dir, f"--name={name}", "-o", where / "a") == 0:
            assert labels_of(read_config(where / "a")) == [*LABELS, name]
        if cli_clean("rename-label", model_dir, "-o", where / "n", "--", "beta", name) == 0:
            assert labels_of(read_config(where / "n"))[1] == name
        cli_clean("remove-label", model_dir, "-o", where / "r", "--", name)
        assert hashes(model_dir) == before

    check()
    report("label names (CLI)")
