"""training/restore.py: a trained run rebuilt from its checkpoint file and the all_config.yaml beside it."""
import shutil

import pytest
import torch

from dataset.puzzle_dataset import DatasetNotFoundError
from tests.helpers import write_tiny_dataset
from tests.training.test_build import CPU, run_config
from training.build import create_model, training_metadata
from training.checkpoint_files import CheckpointError
from training.restore import load_trained, read_trained
from training.run_config import save_code_and_config


@pytest.fixture
def trained(tmp_path):
    """A run folder with all_config.yaml and a model file whose weights differ from a fresh model's."""
    write_tiny_dataset(tmp_path / "data", vocab_size=8, seq_len=6, groups=4, puzzles_per_group=2,
                       examples_per_puzzle=2)
    config = run_config(tmp_path / "data", checkpoint_path=str(tmp_path / "run"), run_name="r", project_name="p")
    model = create_model(config, training_metadata(config), CPU)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    save_code_and_config(config)
    torch.save({f"_orig_mod.{k}": v for k, v in model.state_dict().items()}, tmp_path / "run" / "step_7")
    return str(tmp_path / "run" / "step_7"), model.state_dict()


def test_load_trained_rebuilds_config_model_and_weights(trained):
    path, weights = trained
    run = load_trained(path, CPU, global_batch_size=2)
    assert run.checkpoint == path and run.config.global_batch_size == 2 and run.config.run_name == "r"
    assert run.config.resume is None and run.config.load_checkpoint is None  # used, not continued
    assert run.metadata.vocab_size == 8 and not run.model.training
    for key, value in weights.items():
        assert torch.equal(run.model.state_dict()[key], value), key


def test_read_trained_gives_the_config_and_the_weights_without_a_model(trained):
    path, weights = trained
    config, read = read_trained(path, 1, data_path="elsewhere")
    assert config.data_path == "elsewhere" and config.data_paths == [] and read.keys() == weights.keys()


def test_without_the_dataset_the_caller_says_what_the_sizes_are(trained, tmp_path):
    path, weights = trained
    shutil.move(tmp_path / "data", tmp_path / "moved")
    with pytest.raises(DatasetNotFoundError):
        load_trained(path, CPU)
    seen = []

    def sizes(config, read):
        seen.append((config.run_name, sorted(read) == sorted(weights)))
        return training_metadata(config.model_copy(update={"data_path": str(tmp_path / "moved")}))

    run = load_trained(path, CPU, when_data_missing=sizes)
    assert seen == [("r", True)] and run.metadata.seq_len == 6


def test_a_checkpoint_of_another_model_is_one_error(trained, tmp_path):
    path, _ = trained
    torch.save({"model.inner.something_else": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_trained(path, CPU)
