"""training/loop.py: the LR schedule as the original trainers apply it, the exact step count, train metrics."""
import pytest
import torch

from tests.helpers import write_tiny_dataset
from tests.training.test_build import CPU, TRM_ARCH, URM_ARCH, run_config
from training.build import create_dataloader, init_train_state, total_train_steps
from training.loop import progress_postfix, train_batch


@pytest.fixture
def uneven(tmp_path):
    """Puzzles of 1 to 3 examples: batches of 4 drop some examples, so the original's estimate overcounts."""
    write_tiny_dataset(tmp_path / "d", vocab_size=8, seq_len=6, groups=6, puzzles_per_group=2,
                       examples_per_puzzle=[[1, 3], [2, 2], [3, 1], [1, 1], [2, 3], [3, 3]])
    return tmp_path / "d"


def run_steps(config, loader, blocks):
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    logged = {}
    for _ in range(blocks):
        for _, batch, _ in loader:
            metrics = train_batch(config, state, batch, CPU)
            if metrics is not None:
                logged[state.step] = metrics
    return state, logged


def test_total_steps_are_the_steps_that_run_and_the_last_one_logs(uneven):
    config = run_config(uneven, epochs=6, eval_interval=2, log_interval=4)
    loader = create_dataloader(config, "train", CPU)
    meta = loader.metadata
    estimate = int(config.epochs * meta.total_groups * meta.mean_puzzle_examples / config.global_batch_size)
    state, logged = run_steps(config, loader, blocks=3)
    assert state.step == state.schedule.total_steps == total_train_steps(config, loader)
    assert estimate > state.schedule.total_steps  # the estimate's last steps would never come
    assert max(logged) == state.schedule.total_steps  # the forced final log fired
    assert all(step % 4 == 0 for step in logged if step != state.schedule.total_steps)


def test_lr_at_the_first_warmup_and_last_update(uneven):
    """Update n (1-based) gets schedule(n): base / warmup first, base at the end of warmup, base * min_ratio last
    (the original calls its schedule with the incremented step; ours was one update behind)."""
    base, warmup, ratio = 1e-2, 3, 0.1
    config = run_config(uneven, epochs=6, eval_interval=2, lr=base, lr_warmup_steps=warmup, lr_min_ratio=ratio)
    loader = create_dataloader(config, "train", CPU)
    state, logged = run_steps(config, loader, blocks=3)
    lrs = {step: m["train/lr"] for step, m in logged.items()}
    assert lrs[1] == pytest.approx(base / warmup, rel=1e-12)
    assert lrs[warmup] == pytest.approx(base, rel=1e-12)
    assert lrs[state.schedule.total_steps] == pytest.approx(base * ratio, rel=1e-12)
    assert all(lrs[s] > lrs[s + 1] for s in range(warmup, state.schedule.total_steps))  # the cosine, falling to its end


def test_intervals_without_halted_rows_log_losses_only(uneven):
    # No exploration, the Q head never halts before halt_max_steps (3): rows halt at steps 3, 6, ...
    config = run_config(uneven, epochs=2, eval_interval=1, arch={**TRM_ARCH, "halt_exploration_prob": 0.0})
    loader = create_dataloader(config, "train", CPU)
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    with torch.no_grad():
        state.model.model.inner.q_head.bias.fill_(-10.0)
    logged = []
    batches = iter(loader)
    for _ in range(3):
        logged.append(train_batch(config, state, next(batches)[1], CPU))
    first, _, third = logged
    assert "train/lm_loss" in first and "train/accuracy" not in first and "train/exact_accuracy" not in first
    assert progress_postfix(first) is None  # the bar keeps its last values instead of showing 0
    assert third["train/steps"] == 3.0 and 0 <= third["train/accuracy"] <= 1
    assert progress_postfix(third)["acc"] == f"{third['train/accuracy']:.3f}"


@pytest.mark.parametrize("arch, muon", [(TRM_ARCH, False), (URM_ARCH, True), (URM_ARCH, False)],
                         ids=["trm", "urm-muon", "urm"])
def test_two_micro_batches_equal_one_batch(uneven, arch, muon):
    """grad_accum_steps=2: each half of the batch with its own carry, one update per batch, the loss over the whole
    batch: the same run as one batch of 4, up to float32 summation order (which Muon's rounding of its input to
    bfloat16 amplifies to bfloat16's resolution now and then). Exploration off, since its random draws are per
    carry."""
    runs = []
    for accumulation in (1, 2):
        config = run_config(uneven, epochs=4, eval_interval=2, log_interval=1, grad_accum_steps=accumulation,
                            use_muon=muon, arch={**arch, "halt_exploration_prob": 0.0})
        runs.append(run_steps(config, create_dataloader(config, "train", CPU), blocks=2))
    (one, one_logged), (two, two_logged) = runs
    assert one.step == two.step > 4
    tolerance = 1e-3 if muon else 1e-5  # of the largest entry of each tensor
    for key, value in one.model.state_dict().items():
        difference = (two.model.state_dict()[key] - value).abs().max()
        assert difference <= tolerance * value.abs().max(), key
    assert one_logged.keys() == two_logged.keys()
    for step, metrics in one_logged.items():
        assert two_logged[step] == pytest.approx(metrics, rel=1e-4), step
