"""The architecture matrix: add_labels on every classification class transformers auto-maps.

For each class of the sequence / token / image / audio classification mappings, built tiny from
its own default config (``tests/zoo.py``) with 3 labels, grow 2 labels and check the promise:
the head is found; each head's old rows (and bias) are bit-identical; the old logits are equal
within 1e-6 (growing a GEMM may move the last ulp) with the same argmax; the new logit columns
exist; ``save_pretrained`` → ``from_pretrained`` reloads with no missing, unexpected or mismatched
key, the names kept and the head equal. Classes that cannot be built here (an optional
dependency missing) are skipped with the reason; classes headsurgeon refuses must raise the
refusal.

``python -m tests.test_matrix`` prints the counts (classes, buildable, passing, failing, skipped).
"""

from __future__ import annotations

import pytest
import torch

from headsurgeon import add_labels, locate_head
from headsurgeon.errors import UnsupportedModelError
from tests import zoo

NEW = ["delta", "epsilon"]
#: classes whose head layout depends on the label count: add_labels must refuse them
REFUSED: dict[str, str] = {
    # scores the "Yes"/"No" tokens of its language-model head: no parameter has label rows
    "ShieldGemma2ForImageClassification": "do not depend on the label count",
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


def check(entry: zoo.Entry, tmp_path) -> None:
    """Assert the whole promise on one class (raises AssertionError/any error on failure)."""
    _, model = buildable(entry)
    n = len(zoo.LABELS)
    if entry.name in REFUSED:
        with pytest.raises(UnsupportedModelError, match=REFUSED[entry.name]):
            add_labels(model, NEW)
        assert model.config.num_labels == n  # refused before any change
        return
    inputs = zoo.inputs_for(model)
    before = _forward(model, inputs)
    head = locate_head(model)
    old = {
        p: (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
        for p, m in zip(head.paths, head.modules(model), strict=True)
    }
    assert head.out_features == n
    result = add_labels(model, NEW)
    assert result.head.paths == head.paths and result.head.out_features == n + len(NEW)
    for path, (weight, bias) in old.items():
        grown = model.get_submodule(path)
        assert grown.weight.shape[0] == n + len(NEW), path
        assert torch.equal(grown.weight[:n], weight), path
        assert bias is None or torch.equal(grown.bias[:n], bias), path
    after = _forward(model, inputs)
    assert after.shape[-1] == n + len(NEW) and after.shape[:-1] == before.shape[:-1]
    torch.testing.assert_close(after[..., :n], before, atol=1e-6, rtol=0)
    assert torch.equal(after[..., :n].argmax(-1), before.argmax(-1))
    assert model.config.num_labels == n + len(NEW)
    for module in model.modules():  # every cached label count follows
        assert module.__dict__.get("num_labels", n + len(NEW)) != n, type(module).__name__

    model.save_pretrained(tmp_path)
    again, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), {
        k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    assert [again.config.id2label[i] for i in range(n + len(NEW))] == zoo.LABELS + NEW
    assert again.config.label2id == {name: i for i, name in enumerate(zoo.LABELS + NEW)}
    for path in head.paths:
        new, reloaded = model.get_submodule(path), again.eval().get_submodule(path)
        assert torch.equal(new.weight, reloaded.weight), path
        assert new.bias is None or torch.equal(new.bias, reloaded.bias), path
    torch.testing.assert_close(_forward(again, inputs), after, atol=1e-6, rtol=0)


@pytest.mark.parametrize("entry", zoo.entries(), ids=str)
def test_add_labels_on_every_classifier(entry, tmp_path):
    check(entry, tmp_path)


def report() -> dict[str, list[str]]:
    """Run :func:`check` on every class; return ``{"pass"|"fail"|"skip": [name: reason]}``."""
    import tempfile
    import time

    outcome: dict[str, list[str]] = {"pass": [], "fail": [], "skip": []}
    for entry in zoo.entries():
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                check(entry, tmp)
                outcome["pass"].append(f"{entry.name} ({time.perf_counter() - start:.2f}s)")
            except pytest.skip.Exception as e:
                outcome["skip"].append(str(e.msg))
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0][:200]
                outcome["fail"].append(f"{entry.name}: {type(e).__name__}: {first}")
    return outcome


if __name__ == "__main__":
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.disable(logging.WARNING)
    result = report()
    total = sum(len(v) for v in result.values())
    built = total - len(result["skip"])
    for key in ("fail", "skip"):
        for line in result[key]:
            print(f"{key.upper()}: {line}")
    print(
        f"classes {total}, buildable {built}, pass {len(result['pass'])}, "
        f"fail {len(result['fail'])} ({100 * len(result['pass']) / max(built, 1):.1f}% of buildable)"
    )
