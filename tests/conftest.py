import os

import pytest
from hypothesis import settings

# the same cases on every run and machine (CI must be deterministic), no .hypothesis/ folder
settings.register_profile("headsurgeon", derandomize=True, deadline=None, database=None)
settings.load_profile("headsurgeon")

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


#: Tests over ~5 s on this 2-core machine (``pytest --durations``), in files other work edits
#: often: marked ``slow`` here by name (parameters included) so ``pytest -m "not slow"`` stays a
#: quick loop. Elsewhere, put ``@pytest.mark.slow`` on the test itself.
SLOW = {
    "tests/test_train.py": {
        "test_default_training_across_architectures",
        "test_gate_force_writes_and_records_the_failure",
        "test_calibrate_label_cap_bounds_each_old_labels_flips",
        "test_calibrate_shifts_the_new_bias_to_the_replay_budget",
        "test_cli_trains_writes_atomically_and_records",
        "test_gate_per_label_tolerance_stops_what_the_aggregate_allows",
        "test_gate_stops_a_bad_run_with_exit_3_and_no_output",
        "test_top_blocks_on_cached_inputs_match_the_full_model",
        "test_left_padding_tokenizer_takes_the_cached_path",
        "test_default_path_takes_features_from_the_block_pass",
        "test_seeds_keep_the_best",
        "test_train_neck_trains_the_pooler_with_the_head",
        "test_calibrate_says_when_it_cannot_run",
        "test_calibrate_moves_new_labels_by_one_shift_to_the_budget",
    },
    "tests/test_examples.py": {"test_grow_in_memory_example"},
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = SLOW.get(item.nodeid.split("::", 1)[0], ())
        if getattr(item, "originalname", item.name) in names:
            item.add_marker(pytest.mark.slow)
