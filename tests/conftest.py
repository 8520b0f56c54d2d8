import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A tiny BERT sequence classifier (labels alpha/beta/gamma) saved with save_pretrained."""
    from tests.common import tiny_bert

    path = tmp_path_factory.mktemp("tiny") / "bert"
    tiny_bert().save_pretrained(path)
    (path / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    return path


@pytest.fixture(scope="session")
def tiny_text_folder(tmp_path_factory):
    """A tiny BERT classifier WITH a tokenizer (labels alpha/beta/gamma), saved like a user's model."""
    from tests.common import save_text_classifier

    return save_text_classifier(tmp_path_factory.mktemp("tinytext") / "bert")
