"""The house's shape: no import cycle in ``headsurgeon``, and the generic machinery (training,
the check, the sweep, the card, push) never names a task: it asks the model's ``Task``
(``headsurgeon.tasks.task_for``), so adding a task is one module and one registration."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "headsurgeon"
#: the shared tool CI and every developer have beside the repository
CYCLES_TOOL = ROOT.parent / "shared" / "tools" / "import_cycles.py"

#: modules that run one pipeline for every task
GENERIC = sorted(
    [
        *(PACKAGE / "train").glob("*.py"),
        *(PACKAGE / f"{m}.py" for m in ("checks", "sweep", "card", "hub")),
    ]
)
#: what naming a task looks like: its modules (today's and the old top-level ones), its class,
#: its name constant
TASK_MODULES = (
    "headsurgeon.tasks.text",
    "headsurgeon.tasks.token",
    "headsurgeon.tasks.image",
    "headsurgeon.tasks.audio",
    "headsurgeon.token_data",
    "headsurgeon.entity_check",
    "headsurgeon.schemes",
    "headsurgeon.words",
    "headsurgeon.train.tasks",
)
TASK_NAMES = {"TOKEN", "SEQUENCE", "IMAGE", "AUDIO", "TokenTask", "TextTask", "SequenceTask"}
TASK_STRINGS = {
    "token-classification",
    "sequence-classification",
    "image-classification",
    "audio-classification",
}


@pytest.mark.skipif(not CYCLES_TOOL.is_file(), reason=f"{CYCLES_TOOL} is missing (../shared)")
def test_no_import_cycle_in_the_package():
    """Every import counts, inside functions too (the shared tool's rule)."""
    done = subprocess.run(
        [sys.executable, str(CYCLES_TOOL), str(PACKAGE)], capture_output=True, text=True
    )
    assert done.returncode == 0 and "cycles: 0 " in done.stdout, done.stdout + done.stderr


def _imported(tree: ast.AST, module: str) -> list[str]:
    """The absolute names of the modules (and module.name) a module's imports reach."""
    package = module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package
                for _ in range(node.level - 1):
                    up = up.rpartition(".")[0]
                base = f"{up}.{base}" if base else up
            out += [base, *(f"{base}.{a.name}" for a in node.names)]
    return out


def _task_decisions(tree: ast.AST) -> list[str]:
    """Names of tasks used in the code, and task names compared or looked up as strings."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in TASK_NAMES:
            found.append(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in TASK_NAMES:
            found.append(node.attr)
        elif isinstance(node, ast.alias) and (node.asname or node.name) in TASK_NAMES:
            found.append(node.name)
        elif isinstance(node, ast.Compare | ast.Subscript | ast.Dict):
            found += [
                repr(c.value)
                for c in ast.walk(node)
                if isinstance(c, ast.Constant) and c.value in TASK_STRINGS
            ]
    return found


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_generic_modules_name_no_task(path):
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reached = [m for m in _imported(tree, module) if m.startswith(TASK_MODULES)]
    assert not reached, f"{module} imports a task's module: {sorted(set(reached))}"
    named = _task_decisions(tree)
    assert not named, f"{module} names a task: {sorted(set(named))}; ask the Task instead"


def test_the_check_finds_what_it_looks_for():
    """The two checks above catch the shapes they forbid (so their silence means something)."""
    code = (
        "from ..tasks import TOKEN\n"
        "from ..tasks.token.gate import compare_entities\n"
        "def f(task):\n"
        "    return task == 'token-classification' or task.name == TOKEN\n"
    )
    tree = ast.parse(code)
    assert "headsurgeon.tasks.token.gate" in _imported(tree, "headsurgeon.train.x")
    assert set(_task_decisions(tree)) == {"TOKEN", "'token-classification'"}


def test_every_registered_task_implements_the_protocol_on_its_own():
    """Each registered task has every member of ``Task`` (none inherits another task's)."""
    from headsurgeon.tasks import REGISTRY, registered
    from headsurgeon.tasks.base import GateReport, Task

    members = [n for n in dir(Task) if not n.startswith("_")] + list(Task.__annotations__)
    report_members = [n for n in dir(GateReport) if not n.startswith("_")]
    tasks = registered()
    assert [t.name for t in tasks] == list(REGISTRY)
    for task in tasks:
        missing = [n for n in members if not hasattr(task, n)]
        assert not missing, f"{type(task).__name__} lacks {missing}"
        gate = task.report_type
        assert not [n for n in report_members if not hasattr(gate, n)], gate
        others = [type(t) for t in tasks if t is not task]
        assert not any(isinstance(task, cls) for cls in others), type(task).__name__


def test_a_task_is_one_module_and_one_registration(monkeypatch):
    """Registering a class under a task's name is all train, check and sweep need to find it;
    an unregistered task is refused with the registered ones named."""
    from headsurgeon import tasks
    from headsurgeon.errors import UnsupportedModelError

    config = {"architectures": ["BertForMultipleChoice"], "model_type": "bert"}
    with pytest.raises(UnsupportedModelError, match="multiple choice model"):
        tasks.task_for_config(config)
    with pytest.raises(UnsupportedModelError, match="registered: sequence-classification"):
        tasks.task_named(tasks.MULTIPLE_CHOICE)
    monkeypatch.setitem(tasks.REGISTRY, tasks.MULTIPLE_CHOICE, "headsurgeon.tasks.text:TextTask")
    assert type(tasks.task_for_config(config)).__name__ == "TextTask"
