"""Security promises, each tried against an input built to break it.

- Custom code: a model folder whose config (or tokenizer config) names Python code through
  ``auto_map`` runs nothing and is refused with one line, unless ``--trust-remote-code``.
- Pickle weights: refused without ``--allow-pickle``; with it, unpickled with
  ``weights_only=True``, so a ``.bin`` that runs code when fully unpickled still runs nothing.
- The Hub token never appears in stdout, stderr, logs, exception text (messages and the
  traceback ``--debug`` would show), ``headsurgeon.json``, the card or the pushed files, on a
  push that works and on pushes that fail (401, 403, unreachable, a server echoing the token).
- Label names cannot break the card: YAML front matter stays valid, every Markdown table keeps
  its row and cell counts, no name becomes HTML (hypothesis fuzzes the names).
- ``--base-model``: validated, kept in ``headsurgeon.json``, written as the card's ``base_model``.

Every refusal leaves the inputs byte-identical and writes no output folder.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headsurgeon.cli import main
from tests.common import point_client_at, tree_hashes
from tests.hubserver import HubServer

TOKEN = "hf_SECRETsecurityTEST7c1e55a2b9d04f66"  # distinctive: grep for it everywhere
WRONG = "hf_WRONGsecurityTEST0a93b1fe52c84d17"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(res) -> str:
    """The CLI's error: exactly one line on stderr, exit 1."""
    assert res.exit_code == 1, (res.exit_code, res.output, res.exception)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    return res.stderr


# --- custom code (auto_map) ----------------------------------------------------------------

EVIL = """
from pathlib import Path
from transformers import BertConfig, BertForSequenceClassification

Path({marker!r}).write_text("custom code ran")


class EvilConfig(BertConfig):
    model_type = "bert"


class EvilForSequenceClassification(BertForSequenceClassification):
    config_class = EvilConfig
"""


def remote_code_folder(src: Path, dst: Path, marker: Path, where: str = "config.json") -> Path:
    """A copy of ``src`` whose ``where`` names ``evil.py`` (which writes ``marker`` on import)."""
    folder = Path(shutil.copytree(src, dst))
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    data = json.loads((folder / where).read_text())
    if where == "config.json":
        data["architectures"] = ["EvilForSequenceClassification"]
        data["auto_map"] = {
            "AutoConfig": "evil.EvilConfig",
            "AutoModelForSequenceClassification": "evil.EvilForSequenceClassification",
        }
    else:
        data["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (folder / where).write_text(json.dumps(data))
    return folder


def write_holdout(path: Path) -> Path:
    path.write_text("text,label\ncard lost,alpha\nrefund money,beta\natm pin,gamma\n")
    return path


REMOTE_COMMANDS = {  # every command that hands the folder to transformers
    "inspect": lambda m, tmp: ["inspect", m],
    "check-child": lambda m, tmp: ["check", tmp / "parent", m, "--holdout", tmp / "h.csv"],
    "check-parent": lambda m, tmp: ["check", m, tmp / "parent", "--holdout", tmp / "h.csv"],
    "train": lambda m, tmp: ["train", m, "--data", tmp / "h.csv", "-o", tmp / "out"],
}


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
@pytest.mark.parametrize("command", sorted(REMOTE_COMMANDS))
def test_custom_code_is_refused_without_trust_remote_code(
    tiny_text_folder, tmp_path, command, where
):
    marker = tmp_path / "MARKER"
    model = remote_code_folder(tiny_text_folder, tmp_path / "m", marker, where)
    shutil.copytree(tiny_text_folder, tmp_path / "parent")
    write_holdout(tmp_path / "h.csv")
    if command == "inspect" and where != "config.json":
        pytest.skip("inspect reads no tokenizer")
    before = tree_hashes(model), tree_hashes(tmp_path / "parent")
    res = run(*REMOTE_COMMANDS[command](model, tmp_path))
    if command == "inspect" and res.exit_code == 0:  # inspect reads JSON and headers only
        assert "EvilForSequenceClassification" in res.stdout and not marker.exists()
        return
    err = one_line(res)
    assert f"{model / where} asks to run Python code shipped with the model" in err
    assert "evil." in err and "--trust-remote-code" in err
    assert not marker.exists()  # nothing was imported
    assert (tree_hashes(model), tree_hashes(tmp_path / "parent")) == before
    assert not (tmp_path / "out").exists()


def test_custom_code_api_refuses_and_streaming_surgery_runs_no_code(tiny_text_folder, tmp_path):
    from headsurgeon.checkpoint import inspect_checkpoint
    from headsurgeon.checks import check_old_labels
    from headsurgeon.errors import UnsupportedModelError
    from headsurgeon.models import load_model
    from headsurgeon.predict import load_for_prediction

    marker = tmp_path / "MARKER"
    model = remote_code_folder(tiny_text_folder, tmp_path / "m", marker)
    holdout = write_holdout(tmp_path / "h.csv")
    before = tree_hashes(model)
    calls = [
        lambda: load_model(model),
        lambda: load_for_prediction(model),
        lambda: check_old_labels(tiny_text_folder, model, holdout),
    ]
    for call in calls:
        with pytest.raises(UnsupportedModelError, match="--trust-remote-code"):
            call()
    # inspect reads config.json and the weights' headers as data: nothing to run
    assert inspect_checkpoint(model)["architecture"] == "EvilForSequenceClassification"
    # with pickle weights add-label builds the model in memory: refused too
    pickled = pickle_folder(model, tmp_path / "pickled")
    err = one_line(run("add-label", pickled, "--name", "delta", "--allow-pickle"))
    assert "asks to run Python code" in err and "--trust-remote-code" in err
    # on-disk surgery reads config.json as JSON and the tensors as bytes: no code to refuse
    res = run("add-label", model, "--name", "delta", "-o", tmp_path / "grown")
    assert res.exit_code == 0, res.output
    assert not marker.exists() and tree_hashes(model) == before


def test_trust_remote_code_reaches_transformers(tiny_text_folder, tmp_path, monkeypatch):
    """With the flag the folder's code is imported (so the option really is passed through)."""
    import transformers.dynamic_module_utils as dyn

    monkeypatch.setattr(dyn, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    marker = tmp_path / "MARKER"
    model = remote_code_folder(tiny_text_folder, tmp_path / "m", marker)
    res = run("inspect", model, "--trust-remote-code", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["architecture"] == "EvilForSequenceClassification"

    from headsurgeon.models import load_model

    assert type(load_model(model, trust_remote_code=True)).__name__ == (
        "EvilForSequenceClassification"
    )
    assert marker.read_text() == "custom code ran"


# --- pickle weights ------------------------------------------------------------------------


class _Payload:
    """Runs code when unpickled by a full (not weights-only) unpickler."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle ran')",))


def pickle_folder(src: Path, dst: Path, payload=None, name="pytorch_model.bin") -> Path:
    """A copy of ``src`` with its weights as a pickle (and ``payload`` in the state dict)."""
    import torch
    from safetensors.torch import load_file

    folder = Path(shutil.copytree(src, dst))
    state = load_file(folder / "model.safetensors")
    if payload is not None:
        state["payload"] = payload
    torch.save(state, folder / name)
    (folder / "model.safetensors").unlink()
    return folder


@pytest.fixture(scope="module")
def evil_pickle_template(tiny_text_folder, tmp_path_factory):
    """A pickle-only folder whose .bin writes MARKER when fully unpickled (checked for real)."""
    root = tmp_path_factory.mktemp("evil")
    marker = root / "MARKER"
    folder = pickle_folder(tiny_text_folder, root / "m", _Payload(marker))
    control = f"import torch; torch.load({str(folder / 'pytorch_model.bin')!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", control], check=True, capture_output=True)
    assert marker.read_text() == "pickle ran"  # the payload is live: a full unpickle runs it
    marker.unlink()
    return folder, marker


@pytest.fixture
def evil_pickle(evil_pickle_template, tmp_path):
    folder, marker = evil_pickle_template
    return Path(shutil.copytree(folder, tmp_path / "m")), marker


PICKLE_COMMANDS = {
    "add-label": lambda m, tmp: ["add-label", m, "--name", "delta", "-o", tmp / "out"],
    "add-label-in-place": lambda m, tmp: ["add-label", m, "--name", "delta"],
    "remove-label": lambda m, tmp: ["remove-label", m, "beta", "-o", tmp / "out"],
    "check": lambda m, tmp: ["check", tmp / "parent", m, "--holdout", tmp / "h.csv"],
    "train": lambda m, tmp: ["train", m, "--data", tmp / "h.csv", "-o", tmp / "out"],
}


@pytest.mark.parametrize("allow", [False, True], ids=["refused", "allowed"])
@pytest.mark.parametrize("command", sorted(PICKLE_COMMANDS))
def test_pickle_needs_allow_pickle_and_never_runs_code(
    evil_pickle, tiny_text_folder, tmp_path, command, allow
):
    model, marker = evil_pickle
    shutil.copytree(tiny_text_folder, tmp_path / "parent")
    write_holdout(tmp_path / "h.csv")
    before = tree_hashes(model)
    args = PICKLE_COMMANDS[command](model, tmp_path) + (["--allow-pickle"] if allow else [])
    err = one_line(run(*args))
    if allow:  # weights_only=True meets a global (exec): refused, not run
        assert f"refused to unpickle the weights in {model}" in err and "exec" in err
    else:
        assert "pickle weights" in err and "--allow-pickle" in err
    assert not marker.exists()
    assert tree_hashes(model) == before and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.csv", "m", "parent"]


def test_allowed_clean_pickle_loads_weights_only(tiny_text_folder, tmp_path, monkeypatch):
    """A plain tensor pickle loads with --allow-pickle, and torch.load is asked for weights only."""
    import torch

    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k) or real(*a, **k))
    model = pickle_folder(tiny_text_folder, tmp_path / "m")
    res = run("add-label", model, "--name", "delta", "-o", tmp_path / "out", "--allow-pickle")
    assert res.exit_code == 0, res.output
    assert seen and all(k.get("weights_only") is True for k in seen)


def test_config_naming_a_pickle_file_needs_allow_pickle(tiny_text_folder, tmp_path):
    """transformers loads ``transformers_weights`` first, even beside safetensors weights."""
    from headsurgeon.errors import CheckpointError
    from headsurgeon.models import load_model

    model = Path(shutil.copytree(tiny_text_folder, tmp_path / "m"))
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(
        json.dumps({**config, "transformers_weights": "adapter_model.bin"})
    )
    with pytest.raises(
        CheckpointError, match=r"pickle weights \(adapter_model.bin\).*--allow-pickle"
    ):
        load_model(model)


# --- the Hub token -------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A loopback Hub that accepts only TOKEN; the client pointed at it, no login cache."""
    from huggingface_hub import constants

    server = HubServer(tmp_path / "hub", token=TOKEN).start()
    point_client_at(monkeypatch, server.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login-cache"))
    yield server
    server.stop()


class _EchoHandler(BaseHTTPRequestHandler):
    """A hostile Hub: every answer is a 400 that quotes the request's Authorization header."""

    def _echo(self):
        body = json.dumps({"error": f"bad request with {self.headers.get('Authorization')}"})
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_HEAD = _echo

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_endpoint():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_text(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


PUSH_CASES = {  # case -> (repo, token in HF_TOKEN, endpoint: "hub" | "closed" | "echo", exit)
    "ok": ("me/ok", TOKEN, "hub", 0),
    "ok-debug": ("me/okdebug", TOKEN, "hub", 0),
    "ok-json": ("me/okjson", TOKEN, "hub", 0),
    "401-wrong-token": ("me/w", WRONG, "hub", 1),
    "403-other-namespace": ("someone-else/x", TOKEN, "hub", 1),
    "unreachable": ("me/u", TOKEN, "closed", 1),
    "echoing-server": ("me/e", TOKEN, "echo", 1),
    "echoing-server-debug": ("me/e", TOKEN, "echo", 1),
}


@pytest.mark.parametrize("case", list(PUSH_CASES))
def test_token_never_leaks(
    case, hub, echo_endpoint, tiny_text_folder, tmp_path, caplog, monkeypatch
):
    repo, token, where, code = PUSH_CASES[case]
    model = tmp_path / "grown"
    assert run("add-label", tiny_text_folder, "--name", "delta", "-o", model).exit_code == 0
    monkeypatch.setenv("HF_TOKEN", token)
    if where != "hub":
        point_client_at(
            monkeypatch, echo_endpoint if where == "echo" else f"http://127.0.0.1:{_closed_port()}"
        )
    before = tree_hashes(model)
    caplog.set_level(logging.DEBUG)
    debug = ["--debug"] if case.endswith("debug") else []
    extra = ["--json"] if case.endswith("json") else []
    res = run(*debug, "push", model, "--repo", repo, "-m", "security test", *extra)
    seen = [res.stdout, res.stderr, caplog.text, _all_text(model).decode("utf-8", "replace")]
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        seen.append("".join(traceback.format_exception(res.exception)))  # what --debug prints
    if code:
        assert res.exit_code != 0
        if not debug:
            one_line(res)
    else:
        assert res.exit_code == 0, res.output
        gitdir = hub.gitdir(repo)
        for name in ("README.md", "headsurgeon.json", "config.json"):
            shown = subprocess.run(["git", "--git-dir", gitdir, "show", f"main:{name}"],
                                   capture_output=True, check=True)  # fmt: skip
            seen.append(shown.stdout.decode())
    for secret in (TOKEN, WRONG):
        for i, text in enumerate(seen):
            assert secret not in text, (case, i)
    assert tree_hashes(model) == before


def test_token_passed_in_python_is_masked_in_the_exception(
    echo_endpoint, tiny_text_folder, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    from headsurgeon.errors import HubError
    from headsurgeon.hub import push

    point_client_at(monkeypatch, echo_endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login-cache"))
    model = tmp_path / "grown"
    assert run("add-label", tiny_text_folder, "--name", "delta", "-o", model).exit_code == 0
    with pytest.raises(HubError) as info:
        push(model, "me/e", token=TOKEN)
    assert "HTTP 400" in str(info.value) and "***" in str(info.value)
    text = "".join(traceback.format_exception(info.value))
    assert TOKEN not in text and info.value.__cause__ is None


def test_credentials_in_the_endpoint_url_are_masked(hub, tiny_text_folder, tmp_path, monkeypatch):
    model = tmp_path / "grown"
    assert run("add-label", tiny_text_folder, "--name", "delta", "-o", model).exit_code == 0
    point_client_at(monkeypatch, f"http://user:{TOKEN}@127.0.0.1:{_closed_port()}")
    res = run("push", model, "--repo", "me/u")
    assert TOKEN not in res.output and "http://***@127.0.0.1" in one_line(res)


# --- label names in the card ---------------------------------------------------------------

HOSTILE = [
    "a|b", "`code`", "``", "**bold**", "_em_", "<script>alert(1)</script>", "line\nbreak",
    "cr\rlf", "---", "key: value", "# heading", "'single'", '"double"', "- leading dash",
    "é ü 中文 😀", "\\", "a\\|b", "\\`", "[link](http://x)", "&amp;", "\t tab", "\u2028",
    "\u202eevil", "\x00nul", "\ud800", " padded ", "|", "> quote", "1. item", "<!-- c -->",
]  # fmt: skip


def _card_for(folder: Path, names: list[str], base_model=None) -> str:
    """Write config + record with ``names`` in every place a name reaches the card; build it."""
    from headsurgeon import record as rec
    from headsurgeon.card import build_card
    from headsurgeon.labels import label_maps

    k = max(1, len(names) // 2)
    id2label, label2id = label_maps(names)
    config = {"architectures": ["BertForSequenceClassification"], "model_type": "bert",
              "id2label": {str(i): n for i, n in id2label.items()}, "label2id": label2id}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    record = rec.new_record("/local/parent", names[:k])
    rec.add_event(record, "add-label", added=names[k:], init="mean", head={"paths": ["classifier"]})
    per_label = [{"label": n, "support": 4, "before": 0.9, "after": 0.5} for n in names[:k]]
    report = {"accuracy_before": 0.9, "drop_pts": 40.0, "per_label": per_label,
              "labels_beyond": names[:k], "new_label_metrics": {n: {"recall": 0.5} for n in names[k:]}}  # fmt: skip
    rec.add_event(record, "check", passed=False, max_drop=1.0, report=report, note=names[0])
    rec.add_event(record, names[-1], note=names[0])  # an operation this version does not know
    rec.write_record(folder, record)
    extra = {"base_model": base_model} if base_model else {}
    return build_card(folder, "me/card", **extra)


def _cells(row: str) -> list[str]:
    """A GFM table row's cells as cmark-gfm splits them (``\\x`` pairs never split)."""
    cells, cur, i = [], "", 0
    row = row.strip()[1:-1] if row.strip().endswith("|") else row.strip()[1:]
    while i < len(row):
        if row[i] == "\\" and i + 1 < len(row):
            cur, i = cur + row[i : i + 2], i + 2
            continue
        if row[i] == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += row[i]
        i += 1
    return [*cells, cur]


def _html_cells(html: str) -> list[list[str]]:
    """Rows of <td> texts of every table in ``html``."""
    from html.parser import HTMLParser

    rows: list[list[str]] = []

    class P(HTMLParser):
        cell = None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    P(convert_charrefs=True).feed(html)
    return rows


def assert_card_sound(card: str, names: list[str], base_model=None) -> None:
    """Valid front matter, right table shapes, no HTML from a name, names shown as given."""
    import re

    import yaml

    assert card.startswith("---\n") and "\r" not in card
    front, body = card[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert set(meta) <= {
        "library_name",
        "pipeline_tag",
        "tags",
        "base_model",
        "base_model_relation",
    }
    assert meta.get("base_model") == base_model and meta["pipeline_tag"] == "text-classification"
    lines = body.split("\n")
    tables, current = [], []
    for line in [*lines, ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    for table in tables:
        width = len(_cells(table[0]))
        assert re.fullmatch(r"\|(-*:?-+:?\|)+", table[1].replace("---:", "---"))
        assert all(len(_cells(row)) == width for row in table), table
    labels_table = next(t for t in tables if t[0] == "| id | label | |")
    assert len(labels_table) - 2 == len(names)
    assert sum(line.startswith("- Added: ") for line in lines) == 1
    assert sum(line.startswith("- Removed: ") for line in lines) == 1
    assert [line[:3] for line in lines if re.match(r"\d+\. ", line)] == ["1. ", "2. ", "3. "]
    # no name turns into HTML: only the card's own tags remain outside backtick code spans
    outside = re.sub(r"`[^`\n]*`", "", body)
    assert not re.sub(r"</?(code|details|summary)>", "", outside).count("<")
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        return
    rows = _html_cells(MarkdownIt("commonmark").enable("table").render(body))
    label_rows = [r for r in rows if len(r) == 3 and r[0].isdigit()]
    assert len(label_rows) == len(names)
    for row, name in zip(label_rows, names, strict=True):
        if all(c.isprintable() or c == " " for c in name):
            assert row[1] == name.strip(" ") or row[1] == name, (row, name)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_label_names_leave_the_card_sound(name, tmp_path):
    names = ["alpha", name, "omega"]
    assert_card_sound(_card_for(tmp_path, names), names)


FUZZ_CASES = 300
_PIECES = st.sampled_from(["|", "`", "*", "_", "<script>", "\n", "---", ":", "#", "'", '"',
                           "- ", "\\", "&", "[", "]", "\u2028", "é", "😀", " "])  # fmt: skip
_NAME = st.lists(st.one_of(_PIECES, st.text(min_size=1, max_size=4)), min_size=1, max_size=6)
_NAMES = st.lists(_NAME.map("".join), min_size=2, max_size=8, unique=True).filter(
    lambda names: all(n.strip() for n in names)
)


@pytest.fixture(scope="module")
def card_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("card")


@pytest.mark.slow
@settings(max_examples=FUZZ_CASES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip
@given(names=_NAMES, base=st.sampled_from([None, "org/parent", "a-b.c/d_e.1"]))
def test_fuzzed_label_names_leave_the_card_sound(card_folder, names, base):
    """``FUZZ_CASES`` label sets (pytest --hypothesis-show-statistics prints the count)."""
    assert_card_sound(_card_for(card_folder, names, base), names, base)


# --- --base-model --------------------------------------------------------------------------


def test_base_model_from_add_label_reaches_the_pushed_card(hub, tiny_text_folder, tmp_path):
    import yaml

    grown = tmp_path / "grown"
    res = run("add-label", tiny_text_folder, "--name", "delta", "-o", grown,
              "--base-model", "org/parent")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((grown / "headsurgeon.json").read_text())["base_model"] == "org/parent"
    assert run("push", grown, "--repo", "me/based").exit_code == 0
    card = subprocess.run(["git", "--git-dir", hub.gitdir("me/based"), "show", "main:README.md"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert yaml.safe_load(card.split("---")[1])["base_model"] == "org/parent"
    assert "[org/parent](https://huggingface.co/org/parent)" in card
    # push --base-model overrides what the record says
    assert run("push", grown, "--repo", "me/based", "--base-model", "other/model").exit_code == 0
    card = subprocess.run(["git", "--git-dir", hub.gitdir("me/based"), "show", "main:README.md"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert yaml.safe_load(card.split("---")[1])["base_model"] == "other/model"


def test_local_parent_has_no_base_model_unless_named(tiny_text_folder, tmp_path):
    import yaml

    from headsurgeon.card import build_card

    grown = tmp_path / "grown"
    assert run("add-label", tiny_text_folder, "--name", "delta", "-o", grown).exit_code == 0
    assert "base_model" not in yaml.safe_load(build_card(grown).split("---")[1])
    meta = yaml.safe_load(build_card(grown, base_model="org/parent").split("---")[1])
    assert meta["base_model"] == "org/parent"


BAD_IDS = ["not a repo", "org/", "/name", "name", "a/b/c", "org--x/y", "org/x..y", "org/x.git",
           "ça/va", "org/na\nme", "-org/x", "../../etc", "org/" + "x" * 97]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_IDS)
def test_base_model_is_validated_before_anything(bad, tiny_text_folder, tmp_path, monkeypatch):
    from headsurgeon.errors import OptionsError
    from headsurgeon.hub import push
    from headsurgeon.train.folders import train

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")  # never reached
    before = tree_hashes(tiny_text_folder)
    err = one_line(run("add-label", tiny_text_folder, "--name", "delta", "-o", tmp_path / "o",
                       "--base-model", bad))  # fmt: skip
    assert "--base-model" in err and "is not a Hub model id" in err
    holdout = write_holdout(tmp_path / "h.csv")
    with pytest.raises(OptionsError, match="is not a Hub model id"):
        train(tiny_text_folder, holdout, tmp_path / "o", base_model=bad)
    with pytest.raises(OptionsError, match="is not a Hub model id"):
        push(tiny_text_folder, "me/x", base_model=bad)
    assert tree_hashes(tiny_text_folder) == before and not (tmp_path / "o").exists()


def test_base_model_from_train_is_recorded(tiny_text_folder, tmp_path):
    data = tmp_path / "new.csv"
    data.write_text("text,label\ncard lost pin,delta\nlost card atm,delta\ncard stolen,delta\n")
    res = run("train", tiny_text_folder, "--data", data, "--add", "-o", tmp_path / "out",
              "--max-steps", 1, "--no-calibrate", "--base-model", "org/parent")  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "out" / "headsurgeon.json").read_text())
    assert record["base_model"] == "org/parent"


def test_any_client_error_holding_the_token_is_masked(hub, tiny_text_folder, tmp_path, monkeypatch):
    """Not only the Hub's HTTP errors: whatever the client raises with the token in its text."""
    from huggingface_hub import HfApi

    from headsurgeon.errors import HubError
    from headsurgeon.hub import push

    def boom(self, *args, **kwargs):
        raise RuntimeError(f"client bug while sending Bearer {TOKEN}")

    monkeypatch.setattr(HfApi, "create_repo", boom)
    model = tmp_path / "grown"
    assert run("add-label", tiny_text_folder, "--name", "delta", "-o", model).exit_code == 0
    with pytest.raises(HubError, match=r"RuntimeError\): client bug while sending Bearer \*\*\*"):
        push(model, "me/x")
    res = run("--debug", "push", model, "--repo", "me/x")
    assert TOKEN not in res.output
    assert TOKEN not in "".join(traceback.format_exception(res.exception))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.lists(
        st.sampled_from(
            ["org", "Name", "/", "-", "--", ".", "..", "_", ".git", "1", "é", " ", "x" * 50]
        ),
        max_size=8,
    ).map("".join)
)
def test_accepted_base_model_ids_are_valid_hub_ids(text):
    """``--base-model`` is never looser than huggingface_hub's own repo id check."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from headsurgeon.record import is_hub_id

    if is_hub_id(text):
        try:
            validate_repo_id(text)
        except HFValidationError as e:
            pytest.fail(f"{text!r} accepted but the Hub refuses it: {e}")
