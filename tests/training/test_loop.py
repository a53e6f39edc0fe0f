"""training/loop.py: the LR schedule as the original trainers apply it, the exact step count, train metrics."""
import pytest
import torch

from models.muon import Muon
from tests.helpers import write_tiny_dataset
from tests.training.test_build import CPU, TRM_ARCH, URM_ARCH, run_config
from training.build import create_dataloader, init_train_state, total_train_steps
from training.loop import progress_postfix, train_batch
from training.schedule import cosine_schedule_with_warmup_lr


@pytest.fixture
def uneven(tmp_path):
    """Puzzles of 1 to 3 examples: batches of 4 drop some examples, so the original's estimate overcounts."""
    write_tiny_dataset(tmp_path / "d", vocab_size=8, seq_len=6, groups=6, puzzles_per_group=2,
                       examples_per_puzzle=[[1, 3], [2, 2], [3, 1], [1, 1], [2, 3], [3, 3]])
    return tmp_path / "d"


def run_steps(config, loader, blocks, muon_ns_input_dtype=None):
    state = init_train_state(config, loader.metadata, CPU, total_train_steps(config, loader))
    for optimizer in state.optimizers:
        if isinstance(optimizer, Muon) and muon_ns_input_dtype is not None:
            for group in optimizer.param_groups:
                group["ns_input_dtype"] = muon_ns_input_dtype
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


@pytest.mark.parametrize("lag", [None, 0])
def test_urm_reads_the_schedule_one_update_behind_as_its_trainer(uneven, lag):
    """URM's trainer sets the rate before counting the update: update n gets schedule(n - 1), so its first update
    has rate 0 in warm-up and its last stays above base * min_ratio. arch=urm does the same unless
    lr_schedule_lag=0 (HRM's and TRM's reading, as above)."""
    base, warmup, ratio = 1e-2, 3, 0.1
    config = run_config(uneven, epochs=6, eval_interval=2, lr=base, lr_warmup_steps=warmup, lr_min_ratio=ratio,
                        arch=URM_ARCH, use_muon=True, lr_schedule_lag=lag)
    loader = create_dataloader(config, "train", CPU)
    state, logged = run_steps(config, loader, blocks=3)
    lrs = {step: m["train/lr"] for step, m in logged.items()}
    total = state.schedule.total_steps
    if lag is None:
        assert state.schedule.lag == 1
        assert lrs[1] == 0.0 and lrs[2] == pytest.approx(base / warmup, rel=1e-12)
        assert lrs[warmup + 1] == pytest.approx(base, rel=1e-12)
        assert lrs[total] == pytest.approx(cosine_schedule_with_warmup_lr(total - 1, base, warmup, total, ratio),
                                           rel=1e-12) and lrs[total] > base * ratio
    else:
        assert state.schedule.lag == 0
        assert lrs[1] == pytest.approx(base / warmup, rel=1e-12)
        assert lrs[total] == pytest.approx(base * ratio, rel=1e-12)


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
    batch: the same run as one batch of 4, up to float32 summation order. Muon feeds Newton–Schulz float32 here:
    its default rounding to bfloat16 amplifies the summation order to 2e-3 of a weight now and then (docs/DESIGN.md
    §5). Exploration off, since its random draws are per carry."""
    runs = []
    for accumulation in (1, 2):
        config = run_config(uneven, epochs=4, eval_interval=2, log_interval=1, grad_accum_steps=accumulation,
                            use_muon=muon, arch={**arch, "halt_exploration_prob": 0.0})
        runs.append(run_steps(config, create_dataloader(config, "train", CPU), blocks=2,
                              muon_ns_input_dtype=torch.float32))
    (one, one_logged), (two, two_logged) = runs
    assert one.step == two.step > 4
    for key, value in one.model.state_dict().items():
        difference = (two.model.state_dict()[key] - value).abs().max()
        # Of the largest entry of each tensor. Measured, worst tensor: TRM 5.3e-6 (no vector kernels), 7.4e-6 (AVX2),
        # 1.2e-5 (AVX-512); URM 1.7e-6 at most; the same with one thread or two.
        assert difference <= 5e-5 * value.abs().max(), key
    assert one_logged.keys() == two_logged.keys()
    for step, metrics in one_logged.items():
        assert two_logged[step] == pytest.approx(metrics, rel=1e-4), step


@pytest.mark.parametrize("arch", [TRM_ARCH, URM_ARCH], ids=["trm", "urm"])
def test_training_with_eqr_noise_reproduces_from_its_seed(uneven, arch):
    """init_noise and path_noise draw from the model's seeded generator: two runs of one seed end bitwise equal,
    another seed elsewhere."""
    def final(seed):
        config = run_config(uneven, epochs=4, eval_interval=2, seed=seed,
                            arch={**arch, "init_noise": 1.0, "path_noise": 0.05})
        state, _ = run_steps(config, create_dataloader(config, "train", CPU), blocks=2)
        return state.model.state_dict()

    first, again, other = final(0), final(0), final(1)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert any(not torch.equal(first[key], other[key]) for key in first)
