"""Examples are run, so they cannot rot."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_grow_in_memory_example(tiny_folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            ROOT / "examples" / "grow_in_memory.py",
            tiny_folder,
            tmp_path / "g",
            "delta",
            "eps",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "classifier: 3 -> 5 labels" in out.stdout
