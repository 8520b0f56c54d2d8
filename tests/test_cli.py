import json
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from headsurgeon.cli import main
from tests.common import LABELS, SHARED_PARENT, requires_real_parent, tree_hashes


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_is_fast_and_imports_nothing_heavy():
    code = "import sys; from headsurgeon.cli import main; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
        == "False"
    )
    assert "add-label" in run("--help").output


def test_inspect_json(tiny_folder):
    res = run("inspect", tiny_folder, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["head"]["paths"] == ["classifier"] and info["labels"] == LABELS


#: run ``inspect`` in a fresh interpreter and report which heavy libraries it imported
_INSPECT_IMPORTS = """
import contextlib, io, json, sys
from headsurgeon.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    main(["inspect", sys.argv[1], "--json"], standalone_mode=False)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "numpy"})
print(json.dumps({"heavy": heavy, "info": json.loads(out.getvalue())}))
"""


def _inspect_fresh(folder) -> dict:
    res = subprocess.run(
        [sys.executable, "-c", _INSPECT_IMPORTS, str(folder)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_inspect_reads_headers_without_torch_or_transformers(tiny_folder):
    """config.json + safetensors headers only: the fields as before, dtype from the header."""
    seen = _inspect_fresh(tiny_folder)
    assert seen["heavy"] == []
    assert seen["info"] == {
        "path": str(tiny_folder),
        "architecture": "BertForSequenceClassification",
        "model_type": "bert",
        "task": "sequence-classification",
        "problem_type": None,
        "commands": [
            "inspect",
            "add-label",
            "remove-label",
            "rename-label",
            "diff",
            "push",
            "train",
            "check",
            "sweep",
        ],  # fmt: skip
        "head": {
            "paths": ["classifier"],
            "in_features": 32,
            "out_features": 3,
            "bias": True,
            "dtype": "float32",
            "method": "header",
        },
        "num_labels": 3,
        "labels": LABELS,
    }


@pytest.mark.slow  # a fresh interpreter that imports torch and transformers
def test_inspect_probes_on_meta_only_when_the_headers_are_ambiguous(tmp_path):
    """Two label-sized matrices no name settles: the meta-device probe decides, and says so."""
    from safetensors.torch import load_file, save_file

    from tests.common import tiny_bert

    tiny_bert().to(torch.bfloat16).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["bert.extra.weight"] = torch.zeros(3, 32, dtype=torch.bfloat16)  # a decoy
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    seen = _inspect_fresh(tmp_path)
    assert "torch" in seen["heavy"]
    head = seen["info"]["head"]
    assert head["paths"] == ["classifier"] and head["method"] == "shape-probe"
    assert head["dtype"] == "bfloat16" and head["out_features"] == 3


def _cli(*args) -> subprocess.CompletedProcess:
    """The real command line in a fresh interpreter (logging set up as a user gets it)."""
    argv = [sys.executable, "-m", "headsurgeon", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_and_verbose_work_before_and_after_the_command(where, tiny_folder, tmp_path):
    """Errors say "rerun with --debug": it works wherever the user puts it, and so does -v."""

    def flagged(flag, *command):
        return (flag, *command) if where == "before" else (*command, flag)

    missing = ("inspect", tmp_path / "missing")
    plain = _cli(*missing)
    assert (
        plain.returncode == 1 and plain.stderr == f"error: model folder not found: {missing[1]}\n"
    )
    debug = _cli(*flagged("--debug", *missing))
    assert debug.returncode == 1, debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().endswith(f"CheckpointError: model folder not found: {missing[1]}")
    quiet = _cli("inspect", tiny_folder)
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = _cli(*flagged("-v", "inspect", tiny_folder))
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert verbose.stderr == f"{tiny_folder}: head classifier found by header\n"


def test_add_label_to_new_folder_keeps_input(tiny_folder, tmp_path):
    from transformers import AutoModelForSequenceClassification

    before = tree_hashes(tiny_folder)
    out = tmp_path / "grown"
    res = run("add-label", tiny_folder, "--name", "delta", "-o", out, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["labels_after"] == LABELS + ["delta"]
    assert tree_hashes(tiny_folder) == before
    assert (out / "tokenizer_config.json").exists()
    parent = AutoModelForSequenceClassification.from_pretrained(tiny_folder)
    child, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert torch.equal(child.classifier.weight[:3], parent.classifier.weight)
    assert child.config.id2label == {0: "alpha", 1: "beta", 2: "gamma", 3: "delta"}
    assert json.loads((out / "headsurgeon.json").read_text())["events"][0]["op"] == "add-label"


def test_add_label_in_place(tiny_folder, tmp_path):
    from headsurgeon.labels import labels_of
    from headsurgeon.models import read_config

    folder = tmp_path / "m"
    shutil.copytree(tiny_folder, folder)
    assert run("add-label", folder, "--name", "d1", "--name", "d2").exit_code == 0
    assert labels_of(read_config(folder)) == LABELS + ["d1", "d2"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "alpha"], "already in the model: alpha"),
        (["--name", "x", "--name", "x"], "more than once"),
        (["--name", "x", "--head-path", "nope"], "no module 'nope'"),
    ],
)
def test_errors_are_one_line_exit_1_and_touch_nothing(tiny_folder, tmp_path, args, message):
    before = tree_hashes(tiny_folder)
    res = run("add-label", tiny_folder, *args, "-o", tmp_path / "out")
    assert res.exit_code == 1
    assert message in res.output and res.output.count("\n") == 1 and "Traceback" not in res.output
    assert tree_hashes(tiny_folder) == before and not (tmp_path / "out").exists()


def test_missing_model_and_usage_error(tmp_path):
    res = run("add-label", tmp_path / "nope", "--name", "x")
    assert res.exit_code == 1 and "not found" in res.output
    assert run("add-label", tmp_path).exit_code == 2


def test_nonempty_output_is_refused(tiny_folder, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    res = run("add-label", tiny_folder, "--name", "x", "-o", tmp_path / "out")
    assert res.exit_code == 1 and "not empty" in res.output


@pytest.mark.slow
@requires_real_parent
def test_real_parent_through_cli(tmp_path):
    from safetensors.torch import load_file

    from headsurgeon.labels import labels_of
    from headsurgeon.models import read_config

    before = tree_hashes(SHARED_PARENT)
    out = tmp_path / "grown"
    res = run("add-label", SHARED_PARENT, "--name", "lost_or_stolen_card", "-o", out)
    assert res.exit_code == 0, res.output
    old = load_file(SHARED_PARENT / "model.safetensors")
    new = load_file(out / "model.safetensors")
    assert torch.equal(new["classifier.weight"][:50], old["classifier.weight"])
    assert torch.equal(new["classifier.bias"][:50], old["classifier.bias"])
    names = labels_of(read_config(out))
    assert (
        len(names) == 51
        and names[:50] == labels_of(read_config(SHARED_PARENT))
        and names[50] == "lost_or_stolen_card"
    )
    assert (out / "tokenizer.json").exists()
    assert tree_hashes(SHARED_PARENT) == before


def test_readme_install_is_what_ci_runs():
    """README's Install commands and .ci/run's are the same, in the same order (torch first):
    CI's torch line is one of the documented per-machine lines, the rest are the same lines."""
    import re
    from pathlib import Path

    from tests.common import REAL_ARTEFACTS_INSTALL

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    documented = [
        c.strip()
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
        for c in line.split("&&")
    ]
    torch_lines = [c for c in documented if c.startswith("pip install torch==")]
    ci = (root / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    ran = [line.split("||")[0].strip() for line in ci if line.startswith("pip install")]
    assert ran[0] in torch_lines and len(torch_lines) >= 2  # one line per kind of machine
    assert [c for c in documented if c not in torch_lines] == ran[1:]
    assert REAL_ARTEFACTS_INSTALL in ran[1:]


def test_slow_list_names_tests_that_exist():
    """conftest's ``SLOW`` marks by name: a renamed test would silently join the quick loop."""
    import re
    from pathlib import Path

    from tests.conftest import SLOW

    root = Path(__file__).resolve().parents[1]
    for path, names in SLOW.items():
        source = (root / path).read_text(encoding="utf-8")
        missing = [n for n in sorted(names) if not re.search(rf"^def {n}\(", source, re.M)]
        assert not missing, f"{path} has no {missing}: update SLOW in tests/conftest.py"


def test_every_command_help_has_examples_and_no_doubled_percent():
    """README: every command's --help shows examples; click prints help text as written."""
    assert main.commands
    for name in main.commands:
        text = run(name, "--help").output
        assert "\n  Example:\n" in text or "\n  Examples:\n" in text, name
        assert "%%" not in text, name
