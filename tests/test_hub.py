"""push against a real HTTP peer: the loopback Hub in tests/hubserver.py, the real client.

The client is ``huggingface_hub`` itself (no mocks); ``HF_ENDPOINT`` points at the test server,
Xet is disabled so large files take the LFS path, and the suite's ``HF_HUB_OFFLINE=1`` is lifted
for these tests only. ``huggingface_hub`` reads those settings into ``constants`` at import, so
the fixture patches both the environment and ``constants``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from headsurgeon.cli import main
from tests.common import LABELS, point_client_at, tree_hashes
from tests.hubserver import POINTER_PREFIX, HubServer

NEW = ["delta", "epsilon"]
REPO = Path(__file__).resolve().parents[1]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    server = HubServer(tmp_path_factory.mktemp("hub")).start()
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server, monkeypatch, tmp_path):
    """The test Hub as the client's endpoint, online, Xet off, its token in HF_TOKEN."""
    from huggingface_hub import constants

    point_client_at(monkeypatch, hub_server.url)
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login-cache"))
    return hub_server


@pytest.fixture(scope="module")
def grown(tmp_path_factory, tiny_text_folder):
    """``headsurgeon add-label`` output: tiny BERT alpha/beta/gamma + delta, epsilon."""
    out = tmp_path_factory.mktemp("grown") / "grown"
    args = ["add-label", tiny_text_folder, "--name", NEW[0], "--name", NEW[1], "-o", out]
    res = run(*args)
    assert res.exit_code == 0, res.output
    return out


def _copy(folder, tmp_path, name="m"):
    return shutil.copytree(folder, tmp_path / name)


def _commits(hub, repo_id, ref="main"):
    out = subprocess.run(
        ["git", "--git-dir", str(hub.gitdir(repo_id)), "rev-list", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def _append_check(folder, passed: bool):
    from headsurgeon import record as rec

    record = rec.read_record(folder)
    report = {"accuracy_before": 0.9, "accuracy_after": 0.5, "drop_pts": 40.0, "per_label": []}
    rec.add_event(record, "check", passed=passed, max_drop=1.0, report=report)
    rec.write_record(folder, record)


def test_add_label_push_then_from_pretrained(hub, grown, tiny_text_folder, tmp_path):
    from huggingface_hub import hf_hub_download, snapshot_download
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    before = tree_hashes(grown)
    res = run("push", grown, "--repo", "me/grown")
    assert res.exit_code == 0, res.output
    assert f"pushed {grown} to {hub.url}/me/grown (main)" in res.output
    assert f"{hub.url}/me/grown/commit/" in res.output and hub.token not in res.output
    assert tree_hashes(grown) == before

    cache = tmp_path / "cache"
    child, info = AutoModelForSequenceClassification.from_pretrained(
        "me/grown", cache_dir=cache, output_loading_info=True
    )
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    local = AutoModelForSequenceClassification.from_pretrained(grown)
    parent = AutoModelForSequenceClassification.from_pretrained(tiny_text_folder)
    assert torch.equal(child.classifier.weight, local.classifier.weight)
    assert torch.equal(child.classifier.bias, local.classifier.bias)
    assert torch.equal(child.classifier.weight[:3], parent.classifier.weight)
    assert child.config.id2label == dict(enumerate(LABELS + NEW))
    assert child.config.label2id == {n: i for i, n in enumerate(LABELS + NEW)}
    assert AutoTokenizer.from_pretrained("me/grown", cache_dir=cache)("card lost")["input_ids"]

    card = open(hf_hub_download("me/grown", "README.md", cache_dir=cache), encoding="utf-8").read()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert "headsurgeon" in meta["tags"] and "base_model" not in meta  # parent is a local folder
    assert "3 labels before, 5 after." in card and "- Added: `delta`, `epsilon`" in card
    assert "| 3 | `delta` | added |" in card and "- Removed: none" in card
    snapshot = tree_hashes(snapshot_download("me/grown", cache_dir=tmp_path / "snap"))
    assert snapshot.pop("README.md") and snapshot.pop(".gitattributes")
    assert snapshot == tree_hashes(grown)  # every file byte for byte

    # one commit holds every file; the weights are a git-lfs pointer + object
    assert len(_commits(hub, "me/grown")) == 2  # the repo's initial commit + the push
    git = ["git", "--git-dir", str(hub.gitdir("me/grown"))]
    names = subprocess.run(
        [*git, "show", "--name-only", "--format=", "main"], capture_output=True, text=True
    ).stdout.split()
    expected = {p.name for p in grown.iterdir()} | {"README.md"}
    assert set(names) == expected
    pointer = subprocess.run([*git, "show", "main:model.safetensors"], capture_output=True).stdout
    oid = hashlib.sha256((grown / "model.safetensors").read_bytes()).hexdigest()
    assert pointer.decode().splitlines()[1] == f"oid sha256:{oid}"
    obj = hub.gitdir("me/grown") / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert obj.read_bytes() == (grown / "model.safetensors").read_bytes()


def test_push_twice_makes_no_new_commit(hub, grown):
    from headsurgeon import push

    first = push(grown, "me/twice")
    assert first.changed and first.commit_url == f"{hub.url}/me/twice/commit/{first.commit_oid}"
    commits = _commits(hub, "me/twice")
    hub.requests.clear()
    res = run("push", grown, "--repo", "me/twice", "--json")
    assert res.exit_code == 0, res.output
    second = json.loads(res.output)
    assert second["changed"] is False and second["commit_oid"] == first.commit_oid
    assert _commits(hub, "me/twice") == commits
    assert not [r for r in hub.requests if r[1].endswith("/commit/main")]
    text = run("push", grown, "--repo", "me/twice")
    assert text.exit_code == 0 and text.output.startswith("no changes: me/twice@main")


def test_pr_leaves_main_alone(hub, grown, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    assert run("push", grown, "--repo", "me/pr").exit_code == 0
    main_before = _commits(hub, "me/pr")
    more = tmp_path / "more"
    assert run("add-label", grown, "--name", "zeta", "-o", more).exit_code == 0
    res = run("push", more, "--repo", "me/pr", "--pr")
    assert res.exit_code == 0, res.output
    assert f"opened pull request {hub.url}/me/pr/discussions/1" in res.output
    assert _commits(hub, "me/pr") == main_before
    refs = HfApi().list_repo_refs("me/pr", include_pull_requests=True)
    assert [r.ref for r in refs.pull_requests] == ["refs/pr/1"]
    config = hf_hub_download("me/pr", "config.json", revision="refs/pr/1", cache_dir=tmp_path / "c")
    assert json.load(open(config))["id2label"]["5"] == "zeta"


def test_revision_creates_the_branch(hub, grown, tmp_path):
    from huggingface_hub import HfApi
    from transformers import AutoModelForSequenceClassification

    res = run("push", grown, "--repo", "me/branchy", "--revision", "grown-labels")
    assert res.exit_code == 0, res.output
    assert "(grown-labels)" in res.output
    api = HfApi()
    assert {b.name for b in api.list_repo_refs("me/branchy").branches} == {"main", "grown-labels"}
    assert [s.rfilename for s in api.model_info("me/branchy").siblings] == [".gitattributes"]
    model = AutoModelForSequenceClassification.from_pretrained(
        "me/branchy", revision="grown-labels", cache_dir=tmp_path / "c"
    )
    assert list(model.config.id2label.values()) == LABELS + NEW


def test_private_repo_and_token_never_logged(hub, grown, caplog, monkeypatch):
    import logging

    from huggingface_hub import HfApi

    from headsurgeon import push

    caplog.set_level(logging.DEBUG)
    result = push(grown, "me/secret", private=True, message="grown, privately")
    assert hub.token not in caplog.text and hub.token not in json.dumps(result.to_dict())
    assert "me/secret" in caplog.text  # the log is not simply empty
    assert HfApi().model_info("me/secret").private is True
    assert run("push", grown, "--repo", "me/secret-cli", "--private").exit_code == 0
    assert run("push", grown, "--repo", "me/public-cli").exit_code == 0
    assert hub.repo("me/secret-cli").meta()["private"] is True
    assert hub.repo("me/public-cli").meta()["private"] is False
    monkeypatch.delenv("HF_TOKEN")
    assert hub.repo("me/secret").meta()["private"]
    res = run("push", grown, "--repo", "me/secret")  # no token: private repo is invisible
    assert res.exit_code == 1 and "HTTP 401: no token was found" in res.output
    assert HfApi(token=hub.token).list_repo_commits("me/secret")[0].title == "grown, privately"


def test_stale_weight_files_are_deleted_in_the_same_commit(hub, grown, tmp_path):
    from huggingface_hub import HfApi
    from transformers import AutoModelForSequenceClassification

    from headsurgeon import push

    assert push(grown, "me/reshard").changed
    sharded = _copy(grown, tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(grown)
    (sharded / "model.safetensors").unlink()
    model.save_pretrained(sharded, max_shard_size="20KB")
    assert not (sharded / "model.safetensors").exists()
    result = push(sharded, "me/reshard")
    assert result.changed and result.deleted == ["model.safetensors"]
    remote = {s.rfilename for s in HfApi().model_info("me/reshard").siblings}
    assert "model.safetensors" not in remote and "model.safetensors.index.json" in remote
    back = AutoModelForSequenceClassification.from_pretrained(
        "me/reshard", cache_dir=tmp_path / "c"
    )
    assert torch.equal(back.classifier.weight, model.classifier.weight)


def test_wrong_token_is_one_clear_line(hub, grown, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_the_right_one")
    res = run("push", grown, "--repo", "me/denied")
    assert res.exit_code == 1
    assert res.output == (
        f"error: authentication failed at {hub.url} (HTTP 401: the token was refused): "
        "set HF_TOKEN to a token with write access, or run `hf auth login`\n"
    )
    assert hub.repo("me/denied") is None


def test_no_token_says_so(hub, grown, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    res = run("push", grown, "--repo", "me/anon")
    assert res.exit_code == 1 and "(HTTP 401: no token was found)" in res.output


def test_unreachable_endpoint_is_one_clear_line(hub, grown, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_client_at(monkeypatch, f"http://127.0.0.1:{port}")
    res = run("push", grown, "--repo", "me/nowhere")
    assert res.exit_code == 1
    assert res.output.startswith(f"error: cannot reach the Hub at http://127.0.0.1:{port} (")
    assert res.output.endswith("): check HF_ENDPOINT and the network\n")
    assert res.output.count("\n") == 1


def test_xet_client_against_a_hub_without_xet_says_what_to_do(hub, grown, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)  # hf_xet is installed here
    res = run("push", grown, "--repo", "me/xet")
    assert res.exit_code == 1
    assert res.output.startswith(f"error: the Xet upload to {hub.url} failed (")
    assert res.output.endswith("if this endpoint has no Xet storage, set HF_HUB_DISABLE_XET=1\n")
    assert len(_commits(hub, "me/xet")) == 1  # only the initial commit: nothing pushed


def test_failed_commit_leaves_the_remote_unchanged(hub, grown, tmp_path):
    assert run("push", grown, "--repo", "me/atomic").exit_code == 0
    before = _commits(hub, "me/atomic")
    more = tmp_path / "more"
    assert run("add-label", grown, "--name", "zeta", "-o", more).exit_code == 0
    hub.fail["/api/models/me/atomic/commit/main"] = 500
    try:
        res = run("push", more, "--repo", "me/atomic")
    finally:
        hub.fail.clear()
    assert res.exit_code == 1 and "refused the push to me/atomic (HTTP 500)" in res.output
    assert _commits(hub, "me/atomic") == before


def test_failed_gate_is_refused_unless_forced(hub, grown, tmp_path):
    from huggingface_hub import hf_hub_download

    folder = _copy(grown, tmp_path)
    _append_check(folder, passed=False)
    res = run("push", folder, "--repo", "me/gated")
    assert res.exit_code == 3
    assert res.output == (
        f"error: refusing to push {folder}: the last old-label check recorded in headsurgeon.json "
        "failed: old-label accuracy dropped 40.00 pt, more than the 1 pt allowed; fix the model "
        "or pass --force to push anyway\n"
    )
    assert hub.repo("me/gated") is None
    res = run("push", folder, "--repo", "me/gated", "--force")
    assert res.exit_code == 0, res.output
    card = open(hf_hub_download("me/gated", "README.md", cache_dir=tmp_path / "c")).read()
    assert "the last old-label check recorded for this model **failed**" in card
    assert "| drop_pts | 40 |" in card


def test_push_refusal_names_the_per_label_failure(grown, tmp_path):
    """The aggregate passed, one label lost 40 pt beyond --max-label-drop: that is the reason."""
    from headsurgeon import GateFailedError, push
    from headsurgeon import record as rec
    from headsurgeon.card import _plain, build_card

    folder = _copy(grown, tmp_path)
    record = rec.read_record(folder)
    rows = [
        {"label": "beta", "support": 5, "before": 0.8, "after": 0.4, "change_pts": -40.0},
        {"label": "alpha", "support": 5, "before": 0.6, "after": 1.0, "change_pts": 40.0},
    ]
    report = {"accuracy_before": 0.7, "accuracy_after": 0.702, "drop_pts": -0.2,
              "n_old_examples": 10, "max_drop": 0.5, "max_label_drop": 10.0,
              "labels_beyond": ["beta"], "per_label": rows}  # fmt: skip
    rec.add_event(record, "check", passed=False, max_drop=0.5, max_label_drop=10.0, report=report)
    rec.write_record(folder, record)
    why = "1 old label(s) dropped more than the 10 pt allowed per label: beta (-40.0 pt)"
    with pytest.raises(GateFailedError) as err:
        push(folder, "me/labels")
    assert f"failed: {why}; fix the model" in str(err.value)
    assert "dropped -0.2" not in str(err.value) and "accuracy dropped" not in str(err.value)
    record = rec.read_record(folder)  # `train` records the same measures flat beside "passed"
    rec.add_event(record, "train", check={"passed": False, **report})
    rec.write_record(folder, record)
    with pytest.raises(GateFailedError, match=re.escape(why)):
        push(folder, "me/labels")
    card = build_card(folder)  # the card's warning says why (escaped as all card prose)
    assert f"recorded for this model **failed** ({_plain(why)}); it was published" in card


def test_passed_gate_pushes_and_train_checks_count(hub, grown, tmp_path):
    from headsurgeon import GateFailedError, push
    from headsurgeon import record as rec

    folder = _copy(grown, tmp_path)
    _append_check(folder, passed=False)
    _append_check(folder, passed=True)  # the newest check is what counts
    assert run("push", folder, "--repo", "me/passed").exit_code == 0
    record = rec.read_record(folder)  # `train` keeps its check's measures flat beside "passed"
    rec.add_event(record, "train", check={"passed": False, "drop_pts": 12.5, "max_drop": 1.0})
    rec.write_record(folder, record)
    why = r"dropped 12.50 pt, more than the 1 pt allowed; fix"
    with pytest.raises(GateFailedError, match=why) as err:
        push(folder, "me/passed")
    assert err.value.report["drop_pts"] == 12.5


def test_offline_mode_and_bare_repo_name(hub, grown, monkeypatch):
    from huggingface_hub import constants

    from headsurgeon import push

    assert push(grown, "solo").repo_id == "me/solo"  # the token's namespace, as on the Hub
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    res = run("push", grown, "--repo", "me/offline")
    assert (
        res.output
        == "error: HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to push\n"
    )
    assert res.exit_code == 1 and hub.repo("me/offline") is None


def test_bad_repo_id_and_not_a_model(hub, grown, tmp_path):
    res = run("push", grown, "--repo", "me/bad name")
    assert res.exit_code == 1 and "invalid --repo 'me/bad name'" in res.output
    (tmp_path / "empty").mkdir()
    res = run("push", tmp_path / "empty", "--repo", "me/x")
    assert res.exit_code == 1 and "has no config.json" in res.output


def test_card_follows_every_event(tmp_path, tiny_text_folder):
    from headsurgeon import record as rec
    from headsurgeon.card import build_card, hub_id_of
    from headsurgeon.labels import apply_to_config
    from headsurgeon.models import read_config

    folder = _copy(tiny_text_folder, tmp_path)
    config = read_config(folder)
    apply_to_config(config, ["alpha", "b2", "card_lost", "refund"])
    (folder / "config.json").write_text(json.dumps(config))
    record = rec.new_record("org/parent", LABELS)
    rec.add_event(record, "add-label", labels_before=LABELS, labels_after=[*LABELS, "card"],
                  added=["card"], removed=[], init="mean", bias="min", head={"paths": ["classifier"]})  # fmt: skip
    rec.add_event(record, "remove-label", removed=["gamma"], added=[])
    rec.add_event(record, "rename-label", old="beta", new="b2")
    rec.add_event(record, "rename-label", labels_before=["alpha", "b2", "card"],
                  labels_after=["alpha", "b2", "card_lost"])  # fmt: skip
    rec.add_event(record, "add-label", labels=["refund"], init="imprint", by="train --add")
    train_check = {"passed": True, "accuracy_before": 0.9, "drop_pts": 0.4, "max_drop": 1.0}
    rec.add_event(record, "train", options={"freeze": "backbone", "epochs": 3, "lr": 5e-05},
                  data="/home/u/secret/new.csv", trained_labels=["refund"],
                  seeds=[{"seed": 0, "loss": 0.1}], check=train_check)  # fmt: skip
    rec.add_event(record, "distill", teacher="parent")
    per_label = [{"label": f"l{i}", "support": 4, "before": 0.9, "after": 0.89} for i in range(25)]
    report = {
        "accuracy_before": 0.881,
        "accuracy_after": 0.879,
        "drop_pts": 0.2,
        "max_drop": 1.0,
        "new_labels": ["card_lost", "refund"],
        "per_label": per_label,
        "new_label_metrics": {"card_lost": {"recall": 0.975, "support": 40}},
    }
    rec.add_event(record, "check", parent="/home/u/parent", holdout="/home/u/test.csv",
                  passed=True, max_drop=1.0, report=report)  # fmt: skip
    rec.write_record(folder, record)

    card = build_card(folder, "me/card")
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "org/parent" and meta["base_model_relation"] == "finetune"
    assert "3 labels before, 4 after." in card
    assert "- Added: `card_lost`, `refund`" in card and "- Removed: `gamma`" in card
    assert "- Renamed: `beta` → `b2`" in card and "| 1 | `b2` | renamed from `beta` |" in card
    assert "1. **add-label**: added `card` in head `classifier`; new rows initialised with `mean`, new biases `min` (" in card  # fmt: skip
    assert "4. **rename-label**: `card` → `card_lost` (" in card
    assert "5. **add-label**: added `refund`; new rows initialised with `imprint` (by `train --add`)" in card  # fmt: skip
    assert "6. **train**: freeze `backbone`, epochs `3`, lr `5e-05`, data `new.csv`, trained_labels `refund`; old-label check passed (accuracy before 0.9, drop (pts) 0.4, allowed 1) (" in card  # fmt: skip
    assert "7. **distill**: teacher `parent` (" in card
    assert "8. **check**: passed (accuracy before 0.881, after 0.879, drop (pts) 0.2, allowed 1); parent `parent`, holdout `test.csv` (" in card  # fmt: skip
    assert "/home/u" not in card  # no local paths in a public card
    assert "Result: passed (accuracy before 0.881, after 0.879, drop (pts) 0.2, allowed 1)." in card
    assert "| label | support | before | after |" in card and "| l24 | 4 | 0.9 | 0.89 |" in card
    assert "<details><summary>Every old label</summary>" in card  # 25 rows: folded
    assert "| label | recall | support |" in card and "| card_lost | 0.975 | 40 |" in card
    assert 'pipeline("text-classification", model="me/card")' in card
    assert build_card(folder, "me/card") == card  # deterministic: a second push changes nothing
    assert hub_id_of("/root/.cache/huggingface/hub/models--org--m/snapshots/abc") == "org/m"
    assert hub_id_of(str(folder)) is None and hub_id_of("./org/m") is None


# --- no local path goes up ---------------------------------------------------------------------


def _uploaded(hub, repo_id, ref="main") -> dict[str, bytes]:
    """Every file at ``ref`` as the test Hub stores it, read with git (LFS objects resolved)."""
    git = ["git", "--git-dir", str(hub.gitdir(repo_id))]
    listing = subprocess.run([*git, "ls-tree", "-r", "--name-only", "-z", ref],
                             capture_output=True, check=True).stdout  # fmt: skip
    files = {}
    for name in filter(None, listing.decode().split("\0")):
        data = subprocess.run([*git, "show", f"{ref}:{name}"], capture_output=True, check=True)
        files[name] = data.stdout
        if data.stdout.startswith(POINTER_PREFIX):
            oid = data.stdout.decode().split("oid sha256:")[1].split()[0]
            files[name] = (
                hub.gitdir(repo_id) / "lfs/objects" / oid[:2] / oid[2:4] / oid
            ).read_bytes()
    return files


def _leaks(files: dict[str, bytes], *folders) -> dict[str, str]:
    """``{file: folder}`` for each uploaded file holding one of ``folders`` (or its realpath)."""
    needles = {str(f) for f in folders} | {os.path.realpath(f) for f in folders}
    return {n: s for n, b in files.items() for s in needles if s.encode() in b}


def _csv(path, rows):
    path.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    return path


def test_no_local_path_is_uploaded(hub, tiny_text_folder, tmp_path):
    """Grown, trained and checked from files in tmp_path: no uploaded file names tmp_path; the
    record keeps the parent's folder name and each data file's name, sha256 and count."""
    from headsurgeon.record import read_record

    parent, data = _copy(tiny_text_folder, tmp_path, "parent"), tmp_path / "data"
    data.mkdir()
    words = {"alpha": "card lost", "beta": "refund money", "gamma": "top up", "delta": "pin atm"}
    new = _csv(data / "new.csv", [("pin atm cash", "delta"), ("atm pin", "delta")] * 3)
    old = _csv(data / "old.csv", [(t, n) for n, t in words.items() if n != "delta"] * 2)
    hold = _csv(data / "hold.csv", [(t, n) for n, t in words.items()] * 2)
    grown, tuned = tmp_path / "grown", tmp_path / "tuned"
    assert run("add-label", parent, "--name", "delta", "-o", grown).exit_code == 0
    res = run("train", grown, "--data", new, "--replay", old, "--holdout", hold, "-o", tuned,
              "--max-steps", 2, "--device", "cpu", "--max-drop", 100)  # fmt: skip
    assert res.exit_code == 0, res.output
    res = run("check", parent, tuned, "--holdout", hold, "--max-drop", 100)
    assert res.exit_code == 0, res.output
    record = read_record(tuned)
    assert record["parent"] == "parent"
    train = next(e for e in record["events"] if e["op"] == "train")
    sha = hashlib.sha256(new.read_bytes()).hexdigest()
    assert train["data"] == {"name": "new.csv", "sha256": sha, "examples": 6}
    assert train["replay"]["name"] == "old.csv" and train["holdout"]["examples"] == 8
    check = record["events"][-1]
    assert check["op"] == "check" and check["parent"] == "parent"
    assert check["holdout"]["name"] == "hold.csv" and check["holdout"]["examples"] == 8

    before = tree_hashes(tmp_path)
    res = run("push", tuned, "--repo", "me/no-paths", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rewritten"] == []  # nothing to rewrite: the record is clean
    uploaded = _uploaded(hub, "me/no-paths")
    assert {"headsurgeon.json", "training.json", "README.md", "config.json"} <= set(uploaded)
    assert _leaks(uploaded, tmp_path) == {}
    assert uploaded["headsurgeon.json"] == (tuned / "headsurgeon.json").read_bytes()
    card = uploaded["README.md"].decode()
    assert f"data `new.csv` (6 examples, sha256 `{sha[:12]}`)" in card
    assert "the local model `parent`" in card
    assert tree_hashes(tmp_path) == before


def test_an_old_record_is_uploaded_without_its_local_paths(hub, grown, tmp_path):
    """A record of an older version (absolute paths) and a config saved with _name_or_path:
    push uploads base names and says so; the local files stay byte for byte."""
    from huggingface_hub import snapshot_download

    from headsurgeon import record as rec

    folder = _copy(grown, tmp_path)
    record = rec.read_record(folder)
    record["parent"] = str(tmp_path / "models" / "minilm-old50")  # as versions before wrote
    rec.add_event(record, "train", options={"freeze": "backbone"}, trained_labels=NEW,
                  data=str(tmp_path / "data" / "new.csv"), replay=None,
                  holdout=str(tmp_path / "data" / "hold.csv"))  # fmt: skip
    rec.add_event(record, "check", parent=str(tmp_path / "models" / "minilm-old50"),
                  holdout=str(tmp_path / "data" / "hold.csv"), passed=True,
                  report={"accuracy_before": 0.9, "drop_pts": 0.0})  # fmt: skip
    rec.write_record(folder, record)
    config = json.loads((folder / "config.json").read_text())
    config["_name_or_path"] = str(tmp_path / "models" / "minilm-old50")  # transformers 4 did
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    before = tree_hashes(folder)

    res = run("push", folder, "--repo", "me/old-record", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["rewritten"] == [
        "headsurgeon.json: parent",
        "headsurgeon.json: events[1].data",
        "headsurgeon.json: events[1].holdout",
        "headsurgeon.json: events[2].parent",
        "headsurgeon.json: events[2].holdout",
        "config.json: _name_or_path",
    ]
    assert tree_hashes(folder) == before  # only the uploaded copies are rewritten
    uploaded = _uploaded(hub, "me/old-record")
    assert _leaks(uploaded, tmp_path) == {}
    public = json.loads(uploaded["headsurgeon.json"])
    assert public["parent"] == "minilm-old50" and public["parent_labels"] == LABELS
    assert [public["events"][i][k] for i, k in ((1, "data"), (1, "holdout"), (2, "holdout"))] == [
        "new.csv", "hold.csv", "hold.csv"]  # fmt: skip
    assert json.loads(uploaded["config.json"])["_name_or_path"] == "minilm-old50"
    snapshot = snapshot_download("me/old-record", cache_dir=tmp_path / "c")
    assert rec.old_labels(rec.read_record(snapshot), LABELS + NEW) == LABELS  # still a record
    assert rec.trained_labels(rec.read_record(snapshot)) == NEW
    text = run("push", folder, "--repo", "me/old-record")  # the same bytes: nothing to commit
    assert text.exit_code == 0 and text.output.startswith("no changes: me/old-record@main")
    assert text.output.endswith("local paths uploaded as base names (local files unchanged): "
                                "headsurgeon.json: parent, headsurgeon.json: events[1].data, "
                                "headsurgeon.json: events[1].holdout, headsurgeon.json: "
                                "events[2].parent, headsurgeon.json: events[2].holdout, "
                                "config.json: _name_or_path\n")  # fmt: skip


# --- python -m tests.hubserver -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_hub_command(port, root):
    """``python -m tests.hubserver`` from the repository's folder, as README tells; its lines
    up to the last one of its instructions."""
    cmd = [sys.executable, "-m", "tests.hubserver", "--port", str(port), "--root", str(root)]
    server = subprocess.Popen(cmd, cwd=REPO, text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    lines = []
    while not lines or lines[-1] not in ("", "Ctrl-C stops the server.\n"):
        lines.append(server.stdout.readline())
    return server, cmd, lines


def _stop(server, sig) -> tuple[str, str]:
    server.send_signal(sig)
    try:
        return server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        raise


def test_the_test_hub_is_one_command_a_real_push_can_use(grown, tmp_path):
    port, root = _free_port(), tmp_path / "store"
    server, cmd, lines = _start_hub_command(port, root)
    try:
        exports = [line.strip() for line in lines if line.startswith("export ")]
        assert exports == [f"export HF_ENDPOINT=http://127.0.0.1:{port}",
                           "export HF_TOKEN=hf_headsurgeon_test",
                           "export HF_HUB_DISABLE_XET=1"]  # fmt: skip
        assert f"pushes are stored in {root.resolve()} as bare git repositories" in "".join(lines)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
        env |= dict(e.removeprefix("export ").split("=", 1) for e in exports)
        env["HF_HOME"] = str(tmp_path / "hf-home")  # no login cache of the machine's user
        push = subprocess.run([sys.executable, "-m", "headsurgeon", "push", str(grown), "--repo",
                               "me/tried"], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert push.returncode == 0, push.stderr
        assert f"pushed {grown} to http://127.0.0.1:{port}/me/tried (main)" in push.stdout
        shown = [line.strip().replace("NAME", "tried").split() for line in lines
                 if line.strip().startswith("git --git-dir")]  # fmt: skip
        log = subprocess.run(shown[0], capture_output=True, text=True, check=True).stdout
        assert "headsurgeon: 3 -> 5 labels (+delta, +epsilon)" in log and "config.json" in log
        config = subprocess.run([*shown[1][:-1], "main:config.json"], capture_output=True,
                                text=True, check=True).stdout  # fmt: skip
        assert json.loads(config)["id2label"] == {str(i): n for i, n in enumerate(LABELS + NEW)}
    finally:
        out, err = _stop(server, signal.SIGTERM)
    assert server.returncode == 0 and err == "" and out == "test Hub stopped\n"


def test_the_test_hub_stops_on_ctrl_c_and_names_a_busy_port(tmp_path):
    port = _free_port()
    server, cmd, lines = _start_hub_command(port, tmp_path / "store")
    try:
        assert lines[-1] == "Ctrl-C stops the server.\n"
        busy = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert busy.returncode == 1 and busy.stdout == ""
        assert busy.stderr == (
            f"error: cannot listen on 127.0.0.1:{port} (the port is in use): pass --port with "
            "a free port (or stop what holds this one)\n"
        )
    finally:
        out, err = _stop(server, signal.SIGINT)
    assert server.returncode == 0 and err == "" and out == "test Hub stopped\n"
