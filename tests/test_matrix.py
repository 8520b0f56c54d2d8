"""The architecture matrix: add_labels on every classification class transformers auto-maps.

For each class of the sequence / token / image / audio classification mappings, built tiny from
its own default config (``tests/zoo.py``) with 3 labels, grow 2 labels and check the promise:
the head is found; each head's old rows (and bias) are bit-identical; the old logits are equal
within float32 rounding (:func:`assert_same_logits`: growing a GEMM may move the last ulp; the
weights themselves are bit-identical) with the same argmax; the new logit columns exist (one row
of logits per token for token classifiers); every cached ``num_labels`` follows and the training
loss accepts the new ids; ``save_pretrained`` → ``from_pretrained`` reloads with no missing,
unexpected or mismatched key, the names kept and every tensor equal; ``inspect_checkpoint`` (the
``inspect`` command, from the safetensors headers) finds the same head in the saved folder.
Classes that cannot be built here (an optional dependency missing) are skipped with the reason;
classes headsurgeon refuses must raise the refusal and stay unchanged. Classes outside
:data:`QUICK` are marked ``slow``.

``python -m tests.test_matrix`` prints the counts (classes, buildable, passing, failing, skipped)
and exits 1 when any class fails.
"""

from __future__ import annotations

import pytest
import torch

from headsurgeon import add_labels, locate_head
from headsurgeon.checkpoint import inspect_checkpoint
from headsurgeon.errors import UnsupportedModelError
from tests import zoo

NEW = ("delta", "epsilon")
GROWN = [*zoo.LABELS, *NEW]
#: classes add_labels must refuse (pattern of the refusal message), and why
REFUSED: dict[str, str] = {
    # scores the "Yes"/"No" tokens of its language-model head: no parameter has label rows
    "ShieldGemma2ForImageClassification": "do not depend on the label count",
}
#: classes whose forward computes no loss (inference-only outputs, or train mode required)
NO_LOSS = {
    "DeiTForImageClassificationWithTeacher",
    "LevitForImageClassificationWithTeacher",
    "PPLCNetForImageClassification",
    "ReformerForSequenceClassification",
}
#: the head path(s) of the architectures NOTES.md calls traps, asserted exactly
EXPECTED_PATHS = {
    "DeiTForImageClassificationWithTeacher": ("cls_classifier", "distillation_classifier"),
    "LevitForImageClassificationWithTeacher": ("classifier.linear", "classifier_distill.linear"),
    "SwiftFormerForImageClassification": ("head", "dist_head"),
    "XLNetForSequenceClassification": ("logits_proj",),
    "XLNetForTokenClassification": ("classifier",),
    "PerceiverForSequenceClassification": ("perceiver.decoder.decoder.final_layer",),
    "PerceiverForImageClassificationLearned": ("perceiver.decoder.decoder.final_layer",),
    "XLMForSequenceClassification": ("sequence_summary.summary",),
    "FlaubertForSequenceClassification": ("sequence_summary.summary",),
    "DistilBertForSequenceClassification": ("classifier",),
    "FunnelForSequenceClassification": ("classifier.linear_out",),
    "ASTForAudioClassification": ("classifier.dense",),
    "ResNetForImageClassification": ("classifier.1",),
    "PvtForImageClassification": ("classifier",),
    "LayoutLMv3ForTokenClassification": ("classifier",),  # < 10 labels: a single Linear
    "LlamaForSequenceClassification": ("score",),
    "GPT2ForSequenceClassification": ("score",),
    "RobertaForSequenceClassification": ("classifier.out_proj",),
    "BartForSequenceClassification": ("classification_head.out_proj",),
    "WhisperForAudioClassification": ("classifier",),
    "PPLCNetForImageClassification": ("head",),
}


def _forward(model, inputs):
    with torch.no_grad():
        torch.manual_seed(0)  # a few models draw random numbers even in eval
        return zoo.logits_of(model(**inputs))


#: float32 units in the last place of the largest old logit that a grown GEMM may move the old
#: logits by (seen: 1.2 ulp; sums of products over a wider matrix may round differently)
LOGIT_ULPS = 16


def assert_same_logits(after, before) -> None:
    """Old logits equal within float32 rounding, with the same argmax.

    Tolerance: torch's float32 ``rtol`` plus an ``atol`` of :data:`LOGIT_ULPS` ulps at the largest
    logit's magnitude (a dot product's rounding error scales with its largest terms, so a small
    logit beside large ones may move by an ulp of the large ones). A changed old weight moves the
    logits far more than that (``test_a_changed_old_weight_fails_the_logit_check``).
    """
    scale = float(before.abs().max()) if before.numel() else 0.0
    atol = LOGIT_ULPS * torch.finfo(torch.float32).eps * max(scale, 1e-30)
    torch.testing.assert_close(after, before, rtol=1.3e-6, atol=atol)
    assert torch.equal(after.argmax(-1), before.argmax(-1))


def buildable(entry: zoo.Entry):
    """Config and model of ``entry``, or ``pytest.skip`` with why it cannot be built here."""
    try:
        config = zoo.tiny_config(entry)
        return config, zoo.build(entry, config)
    except ImportError as e:
        why = next(line for line in str(e).splitlines() + [type(e).__name__] if line.strip())
        pytest.skip(f"{entry.name}: {why.strip()}")


def check(entry: zoo.Entry, tmp_path) -> dict:
    """Assert the whole promise on one class; return ``{"paths", "max_diff"}``.

    Raises:
        AssertionError (or whatever the model raises) when the promise is broken;
        ``pytest.skip.Exception`` when the class cannot be built here.
    """
    _, model = buildable(entry)
    n, grown_n = len(zoo.LABELS), len(GROWN)
    if entry.name in REFUSED:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(UnsupportedModelError, match=REFUSED[entry.name]):
            add_labels(model, NEW)
        assert model.config.num_labels == n  # refused before any change
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        return {"paths": (), "max_diff": 0.0}
    inputs = zoo.inputs_for(model)
    before = _forward(model, inputs)
    if entry.task == "token":  # one row of logits per input token
        assert before.shape == (zoo.BATCH, zoo.SEQ, n), tuple(before.shape)
    head = locate_head(model)
    assert head.out_features == n
    assert head.paths == EXPECTED_PATHS.get(entry.name, head.paths)
    old = {
        p: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
        for p, m in zip(head.paths, head.modules(model), strict=True)
    }

    result = add_labels(model, NEW)
    assert result.head.paths == head.paths and result.head.out_features == grown_n
    for path, (weight, bias) in old.items():
        grown = model.get_submodule(path)
        assert grown.weight.shape[0] == grown_n, path
        assert torch.equal(grown.weight[:n], weight), path
        assert bias is None or torch.equal(grown.bias[:n], bias), path
    after = _forward(model, inputs)
    assert after.shape == (*before.shape[:-1], grown_n), tuple(after.shape)
    assert_same_logits(after[..., :n], before)
    assert model.config.num_labels == grown_n
    for name, module in model.named_modules():  # every cached label count follows
        assert module.__dict__.get("num_labels", grown_n) == grown_n, name or "<model>"
    if entry.name not in NO_LOSS:
        _check_loss(model, inputs, entry.task, head.paths)

    model.save_pretrained(tmp_path)
    again, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    problems = {k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not any(problems.values()), problems
    assert again.config.num_labels == grown_n
    assert [again.config.id2label[i] for i in range(grown_n)] == GROWN
    assert again.config.label2id == {name: i for i, name in enumerate(GROWN)}
    seen = inspect_checkpoint(tmp_path)  # what `headsurgeon inspect` reads, weights unloaded
    assert seen["head"]["paths"] == list(head.paths) and seen["labels"] == GROWN
    assert seen["head"]["out_features"] == grown_n
    assert seen["head"]["in_features"] == head.in_features
    assert seen["head"]["bias"] == result.head.bias
    reloaded = again.state_dict()
    for key, value in model.state_dict().items():  # head included: nothing re-initialised
        assert torch.equal(value, reloaded[key]), key
    return {"paths": head.paths, "max_diff": float((after[..., :n] - before).abs().max())}


def _check_loss(model, inputs, task: str, paths) -> None:
    """The training loss takes the new label ids (models shape it with their cached count)."""
    shape = (zoo.BATCH, zoo.SEQ) if task == "token" else (zoo.BATCH,)
    labels = torch.full(shape, len(GROWN) - 1)
    labels[0] = len(zoo.LABELS)  # the first new id
    torch.manual_seed(0)
    loss = model(**inputs, labels=labels).loss
    assert loss is not None and torch.isfinite(loss), loss
    loss.backward()
    for path in paths:
        weight = model.get_submodule(path).weight
        assert weight.grad is not None and weight.grad.shape == weight.shape, path
    model.zero_grad(set_to_none=True)


@pytest.fixture
def one_thread():
    """Run on one intra-op thread: twice as fast for tiny models on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: classes checked in the quick loop (``pytest -m "not slow"``): every trap layout above, the
#: refusals and a few plain ones; the other classes of the matrix are marked ``slow``
QUICK = {
    *EXPECTED_PATHS,
    *REFUSED,
    "BertForTokenClassification",
    "ViTForImageClassification",
    "Wav2Vec2ForSequenceClassification",
    "T5ForTokenClassification",
    "BertForMultipleChoice",
    "XLMForMultipleChoice",
}


def _params(entries: list[zoo.Entry]) -> list:
    slow = pytest.mark.slow
    return [pytest.param(e, id=e.name, marks=() if e.name in QUICK else slow) for e in entries]


@pytest.mark.parametrize("entry", _params(zoo.entries()))
def test_add_labels_on_every_classifier(entry, tmp_path, one_thread):
    check(entry, tmp_path)


@pytest.mark.parametrize("entry", _params(zoo.entries(zoo.MULTIPLE_CHOICE)))
def test_multiple_choice_is_refused(entry):
    _, model = buildable(entry)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedModelError, match="multiple-choice model"):
        add_labels(model, NEW)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert len(model.config.id2label) == len(zoo.LABELS)


def test_logit_tolerance_is_float32_rounding():
    """An ulp-sized move of a large logit passes; a change a real weight edit makes fails."""
    before = torch.tensor([[10.833733, -3.25, 0.0012], [2.5, 7.75, -10.5]])
    moved = before.clone()
    moved[0, 0] += 1.43e-6  # seen on another CPU: 1.2 ulp at 10.8
    moved[0, 2] += 2e-6  # a small logit beside large ones rounds at their scale
    assert_same_logits(moved, before)
    for where, delta in (((0, 0), 1e-4), ((0, 2), 1e-4), ((1, 1), -5e-5)):
        changed = before.clone()
        changed[where] += delta
        with pytest.raises(AssertionError):
            assert_same_logits(changed, before)


@pytest.mark.parametrize("name", ["BertForSequenceClassification", "T5ForTokenClassification"])
def test_a_changed_old_weight_fails_the_logit_check(name, one_thread):
    """The check that passes a grown head catches one old weight moved by 0.1%."""
    entry = next(e for e in zoo.entries() if e.name == name)
    _, model = buildable(entry)
    inputs = zoo.inputs_for(model)
    before = _forward(model, inputs)
    result = add_labels(model, NEW)
    assert_same_logits(_forward(model, inputs)[..., : len(zoo.LABELS)], before)
    weight = model.get_submodule(result.head.paths[0]).weight
    with torch.no_grad():
        weight[0, int(weight[0].abs().argmax())] *= 1.001
    with pytest.raises(AssertionError):
        assert_same_logits(_forward(model, inputs)[..., : len(zoo.LABELS)], before)


#: config classes whose ``num_labels`` is a field of their own, not ``len(id2label)``
COUNT_FIELD_CONFIGS = ["PvtConfig"]


@pytest.mark.slow
def test_every_config_with_its_own_num_labels_is_listed():
    """Scan every config class: a new one with a ``num_labels`` field must join the list."""
    assert zoo.count_field_configs() == COUNT_FIELD_CONFIGS


@pytest.mark.parametrize("entry", zoo.entries_of_configs(COUNT_FIELD_CONFIGS), ids=str)
def test_label_count_without_id2label(entry, tmp_path, one_thread):
    """``XConfig(num_labels=3)`` (no names): labels LABEL_i, grown in memory and on disk."""
    from headsurgeon.checkpoint import add_labels_to_checkpoint

    config = zoo.tiny_config(entry, by_count=True)
    assert not config.id2label and config.num_labels == len(zoo.LABELS)
    model = zoo.build(entry, config)
    model.save_pretrained(tmp_path / "parent")
    implicit = [f"LABEL_{i}" for i in range(len(zoo.LABELS))]
    inputs = zoo.inputs_for(model)
    before = _forward(model, inputs)
    result = add_labels(model, NEW)
    assert result.labels_before == implicit and result.labels_after == [*implicit, *NEW]
    assert model.config.num_labels == len(implicit) + len(NEW)
    assert_same_logits(_forward(model, inputs)[..., : len(implicit)], before)
    assert inspect_checkpoint(tmp_path / "parent")["labels"] == implicit
    add_labels_to_checkpoint(tmp_path / "parent", NEW, tmp_path / "grown")
    for folder in (tmp_path / "grown", tmp_path / "saved"):
        if folder.name == "saved":
            model.save_pretrained(folder)
        again, info = type(model).from_pretrained(folder, output_loading_info=True)
        assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
        assert again.config.num_labels == len(implicit) + len(NEW), folder.name
        assert [again.config.id2label[i] for i in range(5)] == [*implicit, *NEW], folder.name
        assert_same_logits(_forward(again, inputs)[..., : len(implicit)], before)


def test_label_count_keys_on_disk_follow_the_names():
    """timm's wrapper saves ``num_classes`` + ``label_names``; a stale count is refused."""
    from transformers import TimmWrapperConfig

    from headsurgeon.errors import LabelError
    from headsurgeon.labels import apply_to_config, labels_of

    saved = {"model_type": "timm_wrapper", "architecture": "resnet18", "num_classes": 3}
    assert labels_of(saved) == ["LABEL_0", "LABEL_1", "LABEL_2"]
    saved["label_names"] = list(zoo.LABELS)
    assert labels_of(saved) == list(zoo.LABELS)
    apply_to_config(saved, GROWN)
    assert saved["num_classes"] == len(GROWN) and saved["label_names"] == GROWN
    loaded = TimmWrapperConfig.from_dict(saved)  # what from_pretrained builds from config.json
    assert loaded.num_labels == len(GROWN) and list(loaded.id2label.values()) == GROWN
    stale = {"id2label": {"0": "a", "1": "b"}, "num_labels": 1000}
    with pytest.raises(LabelError, match="2 labels in id2label but num_labels 1000"):
        labels_of(stale)
    with pytest.raises(LabelError, match="no id2label and no label count"):
        labels_of({"model_type": "bert"})


def report(entries: list[zoo.Entry] | None = None) -> dict[str, list[str]]:
    """Run :func:`check` on ``entries`` (default: every class); ``{"pass"|"fail"|"skip": [lines]}``."""
    import tempfile
    import time

    outcome: dict[str, list[str]] = {"pass": [], "fail": [], "skip": []}
    torch.set_num_threads(1)
    for entry in zoo.entries() if entries is None else entries:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                stats = check(entry, tmp)
                outcome["pass"].append(
                    f"{entry.name} {','.join(stats['paths']) or 'refused'} "
                    f"max|Δ|={stats['max_diff']:.1e} {time.perf_counter() - start:.2f}s"
                )
            except pytest.skip.Exception as e:
                outcome["skip"].append(str(e.msg))
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0][:200]
                outcome["fail"].append(f"{entry.name}: {type(e).__name__}: {first}")
    return outcome


def main(argv: list[str], entries: list[zoo.Entry] | None = None) -> int:
    """Print the matrix's counts (``-v``: every class); return 1 when any class fails, else 0."""
    result = report(entries)
    total = sum(len(v) for v in result.values())
    built = total - len(result["skip"])
    for key in ("pass", "fail", "skip") if "-v" in argv else ("fail", "skip"):
        for line in result[key]:
            print(f"{key.upper()}: {line}")
    refused = sum(line.split()[1] == "refused" for line in result["pass"])
    print(
        f"classes {total}, buildable {built}, pass {len(result['pass'])} "
        f"({100 * len(result['pass']) / max(built, 1):.1f}% of buildable; "
        f"{len(result['pass']) - refused} grown, {refused} refused as expected), "
        f"fail {len(result['fail'])}, not buildable {len(result['skip'])}"
    )
    return 1 if result["fail"] else 0


def test_matrix_script_exits_non_zero_on_a_failure(monkeypatch, capsys):
    """``python -m tests.test_matrix`` is a CI gate: any failing class makes it exit 1."""
    import sys

    entries = [e for e in zoo.entries() if e.name in ("BertForSequenceClassification",)]
    assert main([], entries) == 0
    real = check

    def broken(entry, tmp):
        stats = real(entry, tmp)
        raise AssertionError(f"old logits differ ({stats['max_diff']})")

    monkeypatch.setattr(sys.modules[__name__], "check", broken)
    assert main([], entries) == 1
    out = capsys.readouterr().out
    assert "FAIL: BertForSequenceClassification: AssertionError" in out and "fail 1" in out


if __name__ == "__main__":
    import logging
    import os
    import sys

    import transformers

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.disable(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()
    sys.exit(main(sys.argv[1:]))
