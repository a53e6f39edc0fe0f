"""docs/DESIGN.md "How to add a task": a task is one folder, tasks/<name>/. The toy copy task of
tests/fixtures/toy_task/copy (as tasks/copy/) is put where tasks/ finds its folders, nothing else changed: the
registry lists it, its builder writes datasets that name it, a model trains on them, and evaluation runs test-time
compute with its symmetries and filters by its check."""
import importlib
import os
import sys

import numpy as np
import pytest
import torch

import tasks
from dataset.puzzle_dataset import load_metadata
from tasks import dataset_codec, task_names
from tests.helpers import REPO
from tests.training.test_build import TRM_ARCH
from training.build import create_dataloader, create_task_codec, create_test_time, init_train_state, total_train_steps
from training.config import validate_config
from training.distributed import single_process
from training.evaluation import evaluate
from training.loop import train_batch
from utils.cli import run_command

TOY_TASKS = os.path.join(REPO, "tests", "fixtures", "toy_task")
CPU = single_process(torch.device("cpu"))


@pytest.fixture
def copy_task(monkeypatch):
    """tests/fixtures/toy_task/copy where the registry looks for task folders (tasks/copy/ in a real addition)."""
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, TOY_TASKS])
    yield
    for name in [name for name in sys.modules if name.startswith("tasks.copy")]:
        sys.modules.pop(name)


def test_a_new_task_folder_builds_trains_and_evaluates_with_its_symmetries_and_check(copy_task, tmp_path):
    assert "copy" in task_names()
    data = str(tmp_path / "copy")
    assert run_command(importlib.import_module("tasks.copy.build").main, ["--output-dir", data]) == 0
    assert load_metadata(data, "test").task == "copy"
    assert dataset_codec([load_metadata(data, "test")]).name == "copy"

    config = validate_config({
        "arch": {**TRM_ARCH, "halt_max_steps": 2}, "data_path": data, "global_batch_size": 32, "epochs": 8,
        "lr": 1e-2, "lr_min_ratio": 1.0, "lr_warmup_steps": 0, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.95,
        "puzzle_emb_lr": 1e-2, "puzzle_emb_weight_decay": 0.0, "device": "cpu", "logger": "none", "log_interval": 8,
        "test_time": {"augmentations": 4, "filter_invalid": True}})
    loader = create_dataloader(config, "train", CPU)
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    while state.step < state.schedule.total_steps:
        for _, batch, _ in loader:
            train_batch(config, state, batch, CPU)

    eval_loader = create_dataloader(config, "test", CPU)
    codec = create_task_codec(config, eval_loader)
    test_time = create_test_time(config, eval_loader, codec)
    assert type(codec).__name__ == "CopyCodec" and len(test_time.members) == 4
    for member in test_time.members:  # members of the copy task's group: cells moved, colours swapped, pad kept
        assert sorted(member.positions) == [0, 1, 2, 3] and member.token_map[0] == 0
    assert any(not np.array_equal(m.positions, np.arange(4)) or not np.array_equal(m.token_map, np.arange(3))
               for m in test_time.members[1:])
    metrics = evaluate(state.model, eval_loader, CPU, test_time=test_time, codec=codec)
    # The check is the task's own (answer == input): the selected answers pass it as often as they are right.
    assert metrics["eval/all/valid"] == metrics["eval/all/exact_accuracy"] > 0.9
