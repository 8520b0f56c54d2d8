import pytest
import torch

from headsurgeon import add_labels, locate_head
from headsurgeon.errors import (
    AmbiguousHeadError,
    HeadNotFoundError,
    LabelError,
    OptionsError,
    UnsupportedModelError,
)
from headsurgeon.surgery import remove_labels, rename_label
from tests.common import LABELS, text_inputs, tiny_bert, tiny_distilbert, tiny_llama, tiny_roberta

BUILDERS = {
    "bert": tiny_bert,
    "roberta": tiny_roberta,
    "llama": tiny_llama,
    "distilbert": tiny_distilbert,
}
HEADS = {
    "bert": ("classifier",),
    "roberta": ("classifier.out_proj",),
    "llama": ("score",),
    "distilbert": ("classifier",),
}


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_locate_finds_the_head(arch):
    assert locate_head(BUILDERS[arch]()).paths == HEADS[arch]


@pytest.mark.parametrize("arch", sorted(BUILDERS))
@pytest.mark.parametrize("init", ["mean", "zeros", "normal"])
def test_add_labels_keeps_old_rows_and_logits(arch, init):
    model = BUILDERS[arch]()
    inputs = text_inputs()
    with torch.no_grad():
        before = model(**inputs).logits
    old = {p: model.get_submodule(p).weight.detach().clone() for p in HEADS[arch]}
    result = add_labels(model, ["delta", "eps"], init=init, seed=0)
    with torch.no_grad():
        after = model(**inputs).logits
    for path, weight in old.items():
        assert torch.equal(model.get_submodule(path).weight[: len(LABELS)], weight)
    assert after.shape[-1] == len(LABELS) + 2
    torch.testing.assert_close(after[..., : len(LABELS)], before, atol=1e-6, rtol=0)
    assert torch.equal(after[..., : len(LABELS)].argmax(-1), before.argmax(-1))
    assert result.labels_after == LABELS + ["delta", "eps"]
    assert model.config.id2label[4] == "eps" and model.config.label2id["delta"] == 3
    assert model.num_labels == 5


def test_mean_init_row_is_mean_of_old_rows_and_bias_policy():
    model = tiny_bert()
    w, b = model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()
    add_labels(model, ["delta"], init="mean", bias="min")
    torch.testing.assert_close(model.classifier.weight[3], w.mean(0))
    assert model.classifier.bias[3] == b.min()
    assert torch.equal(model.classifier.bias[:3], b)


def test_normal_init_uses_initializer_range_and_seed():
    a, b = tiny_bert(), tiny_bert()
    add_labels(a, ["delta"] * 1, init="normal", seed=3)
    add_labels(b, ["delta"], init="normal", seed=3)
    assert torch.equal(a.classifier.weight[3], b.classifier.weight[3])
    std = a.classifier.weight[3].std().item()
    assert 0.2 * a.config.initializer_range < std < 5 * a.config.initializer_range


def test_imprint_needs_features_and_scales_to_old_norm():
    model = tiny_bert()
    with pytest.raises(OptionsError, match="imprint"):
        add_labels(model, ["delta"], init="imprint")
    feats = torch.randn(4, 32)
    norm = model.classifier.weight.norm(dim=1).mean()
    add_labels(model, ["delta"], init="imprint", features={"delta": feats})
    row = model.classifier.weight[3]
    torch.testing.assert_close(row.norm(), norm)
    torch.testing.assert_close(row / row.norm(), feats.mean(0) / feats.mean(0).norm())


def test_training_loss_uses_grown_label_count():
    model = tiny_bert()
    add_labels(model, ["delta"])
    out = model(**text_inputs(), labels=torch.tensor([3, 0, 1]))
    out.loss.backward()
    assert model.classifier.weight.grad.shape == (4, 32)


def test_dtype_and_requires_grad_kept():
    model = tiny_bert().to(torch.bfloat16)
    add_labels(model, ["delta"])
    assert model.classifier.weight.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "names, error",
    [(["alpha"], LabelError), (["x", "x"], LabelError), ([""], LabelError), ([], LabelError)],
)
def test_bad_names_leave_model_untouched(names, error):
    model = tiny_bert()
    w = model.classifier.weight.detach().clone()
    with pytest.raises(error):
        add_labels(model, names)
    assert torch.equal(model.classifier.weight, w) and model.config.num_labels == 3


def test_unknown_policy_is_refused():
    with pytest.raises(OptionsError, match="expected one of"):
        add_labels(tiny_bert(), ["d"], init="randn")


def test_explicit_path_and_suffix_and_errors():
    model = tiny_roberta()
    assert locate_head(model, "out_proj").paths == ("classifier.out_proj",)
    assert locate_head(model, "classifier.out_proj").method == "explicit"
    with pytest.raises(HeadNotFoundError, match="classifier.out_proj"):
        locate_head(model, "nope")
    with pytest.raises(HeadNotFoundError, match="outputs"):
        locate_head(model, "classifier.dense")
    with pytest.raises(AmbiguousHeadError, match="several"):
        locate_head(model, "dense")


def test_distilbert_pre_classifier_is_not_the_head():
    model = tiny_distilbert()
    assert "pre_classifier" not in locate_head(model).paths


def test_multiple_choice_is_refused():
    with pytest.raises(UnsupportedModelError, match="multiple-choice"):
        locate_head(tiny_bert(cls_name="BertForMultipleChoice"))


def test_save_reload_clean(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = tiny_llama()
    add_labels(model, ["delta"])
    model.save_pretrained(tmp_path)
    again, info = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert again.config.id2label[3] == "delta"
    assert torch.equal(again.score.weight, model.score.weight)


def test_remove_and_rename_in_memory():
    model = tiny_bert()
    w = model.classifier.weight.detach().clone()
    result = remove_labels(model, ["beta"])
    assert result.labels_after == ["alpha", "gamma"] and model.num_labels == 2
    assert torch.equal(model.classifier.weight, w[[0, 2]])
    assert rename_label(model, "gamma", "g") == ["alpha", "g"]
    assert model.config.label2id == {"alpha": 0, "g": 1}


class _FixedWidthHead:
    """A BERT classifier whose head width ignores the label count (built per test)."""

    @staticmethod
    def build(names=LABELS):
        import transformers

        class FixedHeadBert(transformers.BertForSequenceClassification):
            def __init__(self, config):
                super().__init__(config)
                self.classifier = torch.nn.Linear(config.hidden_size, 3)

        return FixedHeadBert(tiny_bert(names).config).eval()


def test_head_that_ignores_the_label_count_is_refused_not_guessed():
    # the shape probe runs and no parameter changes: a Linear with 3 outputs is there, but
    # growing it would give a model that does not reload (its class always builds 3 rows)
    model = _FixedWidthHead.build()
    with pytest.raises(UnsupportedModelError, match="do not depend on the label count"):
        locate_head(model)
    with pytest.raises(UnsupportedModelError, match="do not depend on the label count"):
        add_labels(model, ["delta"])
    assert model.classifier.out_features == 3 and model.config.num_labels == 3


def _layoutlmv3_token(count):
    from tests import zoo

    entry = zoo.Entry("LayoutLMv3ForTokenClassification", "layoutlmv3", "token")
    names = [f"l{i}" for i in range(count)]
    return zoo.build(entry, zoo.tiny_config(entry, names)), names


def test_layoutlmv3_token_head_is_found_below_its_layout_switch_and_growth_across_it_refused():
    # LayoutLMv3ForTokenClassification is one Linear below 10 labels, dense + out_proj from 10
    model, _ = _layoutlmv3_token(9)
    assert locate_head(model).paths == ("classifier",)
    weight = model.classifier.weight.detach().clone()
    with pytest.raises(UnsupportedModelError, match="different head layout with 10 labels"):
        add_labels(model, ["x"])
    assert torch.equal(model.classifier.weight, weight) and model.config.num_labels == 9
    model, _ = _layoutlmv3_token(3)
    with pytest.raises(UnsupportedModelError, match="different head layout with 12 labels"):
        add_labels(model, [f"n{i}" for i in range(9)])
    add_labels(model, [f"n{i}" for i in range(6)])  # 9 labels: same layout
    assert model.classifier.out_features == 9


def test_layoutlmv3_token_above_its_switch_grows_out_proj_and_refuses_shrinking_below():
    model, names = _layoutlmv3_token(10)
    assert add_labels(model, ["x", "y"]).head.paths == ("classifier.out_proj",)
    assert model.classifier.out_proj.out_features == 12
    model, names = _layoutlmv3_token(10)
    with pytest.raises(UnsupportedModelError, match="different head layout with 9 labels"):
        remove_labels(model, [names[0]])
