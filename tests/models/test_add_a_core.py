"""docs/DESIGN.md "How to add a core": a recursion core is one file under models/ and one YAML under config/arch/.
The toy core of tests/fixtures/toy_core (toy.py as models/toy.py, toy.yaml as config/arch/toy.yaml) is put where
models/ finds its modules, nothing else changed: it keeps every clause of the contract (each test of
tests/models/test_contract.py runs on it) and trains through the trainer's own steps."""
import inspect
import os
import sys

import pytest
import torch
from omegaconf import OmegaConf

import models
from tests.helpers import REPO
from tests.models import test_contract
from training.build import create_dataloader, init_train_state, total_train_steps
from training.config import validate_config
from training.distributed import single_process
from training.loop import train_batch

TOY = os.path.join(REPO, "tests", "fixtures", "toy_core")
CPU = single_process(torch.device("cpu"))


@pytest.fixture
def toy_core(monkeypatch):
    """The toy core's YAML, with toy.py where `toy@ToyCore` resolves (models/toy.py in a real addition)."""
    monkeypatch.setattr(models, "__path__", [*models.__path__, TOY])
    yield os.path.join(TOY, "toy.yaml")
    sys.modules.pop("models.toy", None)


def test_the_toy_core_keeps_every_clause_of_the_contract(toy_core, monkeypatch, tmp_path):
    clauses = [test for name, test in vars(test_contract).items() if name.startswith("test_")]
    assert len(clauses) >= 8
    for test in clauses:
        folder = tmp_path / test.__name__
        folder.mkdir()
        given = {"path": toy_core, "monkeypatch": monkeypatch, "tmp_path": folder}
        test(**{name: given[name] for name in inspect.signature(test).parameters})


def test_the_toy_core_trains_as_an_arch_config(toy_core, mini_sudoku):
    data = mini_sudoku(2, 2, train_size=64, test_size=8, seed=5)
    arch = OmegaConf.to_container(OmegaConf.load(toy_core), resolve=True)
    config = validate_config({"arch": arch, "data_path": str(data), "global_batch_size": 16, "epochs": 6, "lr": 3e-3,
                              "lr_min_ratio": 1.0, "lr_warmup_steps": 0, "weight_decay": 0.0, "beta1": 0.9,
                              "beta2": 0.95, "puzzle_emb_lr": 1e-2, "puzzle_emb_weight_decay": 0.0, "device": "cpu",
                              "logger": "none", "log_interval": 6})
    loader = create_dataloader(config, "train", CPU)
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    assert type(state.model.model).__name__ == "ToyCore" and state.model.model_config.max_segments == 2
    losses = []
    while state.step < state.schedule.total_steps:
        for _, batch, _ in loader:
            logged = train_batch(config, state, batch, CPU)
            if logged is not None:
                losses.append(logged["train/lm_loss"])
    assert state.step == 24 and len(losses) == 4 and losses[-1] < losses[0]
