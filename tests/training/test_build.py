"""training/build.py: the model's config from the run, optimizers (freeze_weights), evaluators per dataset."""
import pytest
import torch

from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
from tests.helpers import write_tiny_dataset
from training.build import (
    create_dataloader,
    init_train_state,
    model_config_dict,
    total_train_steps,
)
from training.config import validate_config
from training.distributed import single_process
from training.loop import train_batch
from utils.errors import ConfigError

CPU = single_process(torch.device("cpu"))

TRM_ARCH = {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "halt_exploration_prob": 0.5, "halt_max_steps": 3, "H_cycles": 2, "L_cycles": 2, "H_layers": 0,
            "L_layers": 1, "hidden_size": 16, "num_heads": 2, "expansion": 2, "puzzle_emb_ndim": 16,
            "puzzle_emb_len": 2, "pos_encodings": "rope"}
URM_ARCH = {"name": "urm.urm@URM", "loss": TRM_ARCH["loss"], "loops": 3, "H_cycles": 2, "L_cycles": 2,
            "num_layers": 1, "hidden_size": 16, "num_heads": 2, "expansion": 2, "puzzle_emb_ndim": 16}


def run_config(data_path, **overrides):
    raw = {"arch": TRM_ARCH, "data_path": str(data_path), "global_batch_size": 4, "epochs": 1, "lr": 1e-2,
           "lr_min_ratio": 1.0, "lr_warmup_steps": 0, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
           "puzzle_emb_lr": 1e-1, "puzzle_emb_weight_decay": 0.1, "device": "cpu", "logger": "none"}
    raw.update(overrides)
    return validate_config(raw)


@pytest.fixture
def data(tmp_path):
    write_tiny_dataset(tmp_path / "d", vocab_size=8, seq_len=6, groups=4, puzzles_per_group=2, examples_per_puzzle=2)
    return tmp_path / "d"


def test_freeze_weights_trains_only_the_puzzle_rows(data):
    config = run_config(data, freeze_weights=True)
    loader = create_dataloader(config, "train", CPU)
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    assert len(state.optimizers) == 1 and isinstance(state.optimizers[0], CastedSparseEmbeddingSignSGD_Distributed)
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    for _, batch, _ in loader:
        train_batch(config, state, batch, CPU)
    assert state.step == 2  # 4 groups x one puzzle of 2 examples, batches of 4
    after = state.model.state_dict()
    table = "model.inner.puzzle_emb.weights"
    for key in before:
        if key != table:
            assert torch.equal(before[key], after[key]), key  # every dense weight, bitwise
    assert not torch.equal(before[table], after[table])
    assert all(p.grad is None and not p.requires_grad for p in state.model.parameters())


def test_unfrozen_run_has_both_optimizers_and_moves_dense_weights(data):
    config = run_config(data)
    loader = create_dataloader(config, "train", CPU)
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    assert [type(o).__name__ for o in state.optimizers] == ["CastedSparseEmbeddingSignSGD_Distributed", "AdamATan2"]
    before = state.model.model.inner.lm_head.weight.detach().clone()
    train_batch(config, state, next(iter(loader))[1], CPU)
    assert not torch.equal(before, state.model.model.inner.lm_head.weight)


def test_freeze_weights_without_puzzle_embedding_is_refused(data):
    config = run_config(data, freeze_weights=True, arch={**TRM_ARCH, "puzzle_emb_ndim": 0, "puzzle_emb_len": 0})
    with pytest.raises(ConfigError, match="freeze_weights=true trains only the puzzle embeddings"):
        init_train_state(config, create_dataloader(config, "train", CPU).metadata, CPU, 1)


def test_user_arch_keys_win_over_trainer_defaults(data):
    metadata = create_dataloader(run_config(data), "train", CPU).metadata
    defaults = model_config_dict(run_config(data, seed=7), metadata, CPU)
    assert defaults["forward_dtype"] == "float32" and defaults["seed"] == 7  # the CPU default; the run's seed
    given = model_config_dict(run_config(data, arch={**TRM_ARCH, "forward_dtype": "bfloat16", "seed": 3}),
                              metadata, CPU)
    assert given["forward_dtype"] == "bfloat16" and given["seed"] == 3
    assert (given["batch_size"], given["seq_len"], given["vocab_size"], given["num_puzzle_identifiers"]) == \
        (4, 6, 8, 9)  # 8 puzzles + the blank identifier


@pytest.mark.parametrize("key", ["batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers"])
def test_derived_arch_keys_are_refused(data, key):
    metadata = create_dataloader(run_config(data), "train", CPU).metadata
    with pytest.raises(ConfigError, match=f"arch.{key} is set by the trainer"):
        model_config_dict(run_config(data, arch={**TRM_ARCH, key: 5}), metadata, CPU)


HRM_ARCH = {**TRM_ARCH, "name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1", "H_layers": 1}


@pytest.mark.parametrize("arch", [HRM_ARCH, TRM_ARCH, URM_ARCH], ids=["hrm", "trm", "urm"])
def test_use_muon_takes_the_matrices_and_adamw_the_rest(data, arch):
    """URM's grouping, for every core: every 2-D dense weight (embeddings and heads included) through Muon, the
    other dense parameters through AdamW, the puzzle rows through SignSGD; all on the schedule, all moving."""
    config = run_config(data, use_muon=True, arch=arch)
    loader = create_dataloader(config, "train", CPU)
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    sparse, muon, adamw = state.optimizers
    assert [type(o).__name__ for o in (sparse, muon, adamw)] == [
        "CastedSparseEmbeddingSignSGD_Distributed", "Muon", "MatchedAdamW"]
    dense = dict(state.model.named_parameters())
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    in_adamw = {id(p) for g in adamw.param_groups for p in g["params"]}
    assert in_muon == {id(p) for p in dense.values() if p.ndim == 2}
    assert in_adamw == {id(p) for p in dense.values() if p.ndim != 2} and in_adamw  # q_head.bias at least
    before = {k: v.detach().clone() for k, v in dense.items()}
    train_batch(config, state, next(iter(loader))[1], CPU)
    assert muon.param_groups[0]["lr"] == adamw.param_groups[0]["lr"] == config.lr  # no warmup, min ratio 1
    moved = [k for k, v in state.model.named_parameters() if not torch.equal(before[k], v)]
    assert moved == list(dense)
