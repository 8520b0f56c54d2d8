"""``torchrun --nproc-per-node 2 -m headsurgeon train``: one report, OUT written once, the result
of a single-process run.

Two processes on CPU (gloo) on loopback. The tiny model has no dropout: with dropout each process
draws its own masks, which no launcher can make equal to one process's. Without it, and with the
rows filling whole batches, both runs see the same global batches and the same weighted loss, so
their weights agree up to float summation order (seen: 3e-8; asserted: 1e-5).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from headsurgeon.cli import main
from tests.common import LABELS, WORDS, save_text_classifier

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
        reason="this torch build has no gloo backend (torch.distributed)",
    ),
]

NEW = "delta"
VOCAB = {"alpha": WORDS[:9], "beta": WORDS[9:18], "gamma": WORDS[18:27], NEW: WORDS[27:]}
ROOT = Path(__file__).resolve().parents[1]


def rows(label: str, n: int, seed: int) -> str:
    rng = random.Random(f"{label}-{seed}")
    return "".join(f"{' '.join(rng.choices(VOCAB[label], k=5))},{label}\n" for _ in range(n))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny BERT without dropout grown by ``delta``, 8 new examples, 36 old ones (12 held out to
    calibrate, 24 replayed: 32 rows, 4 batches of 8), a holdout."""
    from headsurgeon.checkpoint import add_labels_to_checkpoint

    d = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    parent = save_text_classifier(d / "parent")
    config = json.loads((parent / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (parent / "config.json").write_text(json.dumps(config))
    add_labels_to_checkpoint(parent, [NEW], d / "grown")
    (d / "new.csv").write_text("text,label\n" + rows(NEW, 8, 3))
    (d / "old.csv").write_text("text,label\n" + "".join(rows(n, 12, 1) for n in LABELS))
    (d / "hold.csv").write_text("text,label\n" + "".join(rows(n, 6, 2) for n in [*LABELS, NEW]))
    return d


def args(d: Path, out: Path) -> list[str]:
    return [
        "train", str(d / "grown"), "--data", str(d / "new.csv"), "--replay", str(d / "old.csv"),
        "--holdout", str(d / "hold.csv"), "-o", str(out), "--batch-size", "8", "--epochs", "2",
        "--max-drop", "100", "--device", "cpu",
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated() -> list[str]:
    """A prefix that runs a command in a network namespace of its own with only loopback up:
    torchrun's rendezvous store listens on every interface (torch offers no bind address), and
    no port of this machine's may be open beyond 127.0.0.1."""
    prefix = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "isolated"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot make a network namespace here ({e}): needs unshare and ip, as root")
    if probe.returncode:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.decode().strip()}")
    return prefix


def torchrun(*cli_args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    command = [
        *isolated(), sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        "-m", "headsurgeon", *cli_args,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def last_event(folder: Path) -> dict:
    return json.loads((folder / "headsurgeon.json").read_text())["events"][-1]


def test_torchrun_two_processes_train_once_and_match_one_process(setup, tmp_path):
    out = tmp_path / "out"
    run = torchrun("-v", *args(setup, out))
    assert run.returncode == 0, run.stderr[-3000:]

    # one report on stdout, OUT written once (no leftover), loading cleanly
    assert run.stdout.count("old-label check PASSED") == 1, run.stdout
    (summary,) = [line for line in run.stdout.splitlines() if line.startswith("trained ")]
    assert summary.startswith(
        f"trained {NEW} on 8 examples (+24 replayed; 12 held out to calibrate)"
    )
    assert summary.endswith(f"wrote {out}")
    assert not [line for line in run.stderr.splitlines() if line.startswith("error")], run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    from transformers import AutoModelForSequenceClassification

    _, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))

    # the caches: each of the 68 distinct texts (held-out ones too) computed once, half in each
    assert "cached 68 texts in 2 shards" in run.stderr
    assert "computing block-1 inputs and features of 34 texts" in run.stderr

    # one process, same options: the same model and check
    single = tmp_path.parent / f"{tmp_path.name}-single"
    res = CliRunner().invoke(main, args(setup, single))
    assert res.exit_code == 0, res.output
    a, b = weights(out), weights(single)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)
    two, one = last_event(out), last_event(single)
    assert (two["processes"], one["processes"]) == (2, 1)
    for key in ("accuracy_before", "accuracy_after", "drop_pts", "flipped"):
        assert two["check"][key] == one["check"][key], key
    assert two["seeds"][0]["steps"] == one["seeds"][0]["steps"] == 8
    assert two["seeds"][0]["loss"] == pytest.approx(one["seeds"][0]["loss"], abs=1e-4)
    assert two["calibrated_bias_shifts"][NEW] == pytest.approx(
        one["calibrated_bias_shifts"][NEW], abs=1e-3
    )


def test_torchrun_a_refused_run_ends_every_process_and_writes_nothing(setup, tmp_path):
    """The main process's gate refuses (the others finished training): every process leaves
    the group together, the launcher reports the failure, OUT is not written."""
    out = tmp_path / "out"
    wreck = ["--lr", "20", "--freeze", "none", "--no-calibrate", "--epochs", "5"]
    refused = [*args(setup, out), *wreck, "--new-weight", "100", "--max-drop", "0"]
    run = torchrun(*refused)  # a hang would time out here
    assert run.returncode != 0
    assert "old-label check FAILED" in run.stdout + run.stderr, run.stderr[-3000:]
    assert "terminate called" not in run.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []
