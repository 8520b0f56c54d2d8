"""The architecture matrix: add_labels on every classification class transformers auto-maps.

For each class of the sequence / token / image / audio classification mappings, built tiny from
its own default config (``tests/zoo.py``) with 3 labels, grow 2 labels and check the promise:
the head is found; each head's old rows (and bias) are bit-identical; the old logits are equal
within 1e-6 (growing a GEMM may move the last ulp; the weights themselves are bit-identical) with
the same argmax; the new logit columns exist (one row of logits per token for token
classifiers); every cached ``num_labels`` follows and the training loss accepts the new ids; ``save_pretrained`` → ``from_pretrained``
reloads with no missing, unexpected or mismatched key, the names kept and every tensor equal;
``inspect_checkpoint`` (the ``inspect`` command) finds the same head in the saved folder.
Classes that cannot be built here (an optional dependency missing) are skipped with the reason;
classes headsurgeon refuses must raise the refusal and stay unchanged.

``python -m tests.test_matrix`` prints the counts (classes, buildable, passing, failing, skipped).
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
    torch.testing.assert_close(after[..., :n], before, atol=1e-6, rtol=0)
    assert torch.equal(after[..., :n].argmax(-1), before.argmax(-1))
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


@pytest.mark.parametrize("entry", zoo.entries(), ids=str)
def test_add_labels_on_every_classifier(entry, tmp_path, one_thread):
    check(entry, tmp_path)


@pytest.mark.parametrize("entry", zoo.entries(zoo.MULTIPLE_CHOICE), ids=str)
def test_multiple_choice_is_refused(entry):
    _, model = buildable(entry)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedModelError, match="multiple-choice model"):
        add_labels(model, NEW)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert len(model.config.id2label) == len(zoo.LABELS)


def report() -> dict[str, list[str]]:
    """Run :func:`check` on every class; return ``{"pass"|"fail"|"skip": [lines]}``."""
    import tempfile
    import time

    outcome: dict[str, list[str]] = {"pass": [], "fail": [], "skip": []}
    torch.set_num_threads(1)
    for entry in zoo.entries():
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


if __name__ == "__main__":
    import logging
    import os
    import sys

    import transformers

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.disable(logging.WARNING)
    transformers.utils.logging.disable_progress_bar()
    result = report()
    total = sum(len(v) for v in result.values())
    built = total - len(result["skip"])
    verbose = "-v" in sys.argv
    for key in ("pass", "fail", "skip") if verbose else ("fail", "skip"):
        for line in result[key]:
            print(f"{key.upper()}: {line}")
    refused = sum(line.split()[1] == "refused" for line in result["pass"])
    print(
        f"classes {total}, buildable {built}, pass {len(result['pass'])} "
        f"({100 * len(result['pass']) / max(built, 1):.1f}% of buildable; "
        f"{len(result['pass']) - refused} grown, {refused} refused as expected), "
        f"fail {len(result['fail'])}, not buildable {len(result['skip'])}"
    )
