"""training/state.py: each component of a run's state saves and restores itself; the optimizers' in the one format
checkpoints hold whichever AdamATan2 backend made it."""
import math

import pytest
import torch

from models.act import ACTCarry
from models.adam_atan2 import AdamATan2, _foreach_adam_atan2
from training.checkpointing import upgrade
from training.state import RNG, Carry, Optimizers, PendingMetrics, Schedule

# ---------------------------------------------------------------------------------------------------------------
# Optimizers: one saved format for both AdamATan2 backends


class FusedShapedAdamATan2(torch.optim.Optimizer):
    """A stand-in for the `adam-atan2` package's optimizer (whose CUDA kernel is not here), keeping its state
    the way it does: `step` a 0-d float32 tensor beside exp_avg / exp_avg_sq, incremented before the update."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                assert state["step"].device == p.device and state["step"].dtype == torch.float32
                _foreach_adam_atan2([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]],
                                    step=int(state["step"]), lr=group["lr"], beta1=group["betas"][0],
                                    beta2=group["betas"][1], weight_decay=group["weight_decay"])


def _train(opt_cls, steps, state=None, tmp_path=None):
    """A few seeded steps from fixed weights; optionally resume from a saved state first."""
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(6, 4))
    opt = opt_cls([param], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    if state is not None:
        with torch.no_grad():
            param.copy_(state["param"])
        Optimizers([(opt, 1e-2)]).load_state_dict([state["optimizer"]])
    seen = list(state["seen"]) if state else []
    for _ in range(steps):  # the gradient of update k depends on k only
        param.grad = torch.randn(6, 4, generator=torch.Generator().manual_seed(len(seen)))
        opt.step()
        seen.append(len(seen))
    saved = {"param": param.detach().clone(), "optimizer": Optimizers([(opt, 1e-2)]).state_dict()[0], "seen": seen}
    if tmp_path is not None:  # through a file, as a checkpoint does
        torch.save(saved, tmp_path / "state")
        saved = torch.load(tmp_path / "state", weights_only=True)
    return saved


def test_saved_state_is_one_format_whichever_backend():
    ours = _train(AdamATan2, 3)["optimizer"]["state"][0]
    fused = _train(FusedShapedAdamATan2, 3)["optimizer"]["state"][0]
    for entry in (ours, fused):
        assert isinstance(entry["step"], torch.Tensor) and entry["step"].dtype == torch.float32
        assert entry["step"].item() == 3.0 and entry["step"].device.type == "cpu"
    assert all(torch.equal(ours[k], fused[k]) for k in ours)


def test_resume_across_backends_continues_exactly(tmp_path):
    straight = _train(AdamATan2, 5)
    for first, second in ((AdamATan2, FusedShapedAdamATan2), (FusedShapedAdamATan2, AdamATan2)):
        halfway = _train(first, 3, tmp_path=tmp_path)
        resumed = _train(second, 2, state=halfway)
        assert torch.equal(resumed["param"], straight["param"]), (first.__name__, second.__name__)
        assert resumed["optimizer"]["state"][0]["step"].item() == 5.0


def test_loading_does_not_touch_the_live_state_or_keep_tensor_steps_in_ours():
    saved = _train(AdamATan2, 2)
    param = torch.nn.Parameter(saved["param"].clone())
    opt = AdamATan2([param], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    optimizers = Optimizers([(opt, 1e-2)])
    optimizers.load_state_dict([saved["optimizer"]])
    assert opt.state[param]["step"] == 2 and isinstance(opt.state[param]["step"], int)
    optimizers.state_dict()
    assert isinstance(opt.state[param]["step"], int)  # saving copied; the optimizer still keeps its int


# ---------------------------------------------------------------------------------------------------------------
# The other components


def test_schedule_saves_its_position_and_gives_the_warmup_then_cosine_rates():
    schedule = Schedule(total_steps=10, warmup_steps=4, min_ratio=0.5)
    schedule.step = 2
    assert schedule.lr(1.0) == 0.5  # warm-up: 2 / 4
    schedule.step = 10
    assert schedule.lr(1.0) == 0.5  # the end of the cosine: base · min_ratio
    schedule.block = 3
    copy = Schedule(total_steps=10, warmup_steps=4, min_ratio=0.5)
    copy.load_state_dict(schedule.state_dict())
    assert (copy.step, copy.block) == (10, 3)


def test_a_schedule_with_lag_1_gives_update_n_the_rate_of_n_minus_1():
    """URM's trainer's reading: the first update gets 0 in warm-up, the end of the warm-up comes one update later."""
    schedule = Schedule(total_steps=10, warmup_steps=4, min_ratio=0.5, lag=1)
    rates = []
    for step in range(1, 11):
        schedule.step = step
        rates.append(schedule.lr(1.0))
    assert rates[:6] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 0.5 + 0.25 * (1 + math.cos(math.pi / 6))], rel=1e-12)
    assert rates[-1] > 0.5  # the last update is one short of base · min_ratio


def test_carry_round_trips_and_an_empty_carry_stays_empty():
    carry = Carry()
    assert carry.state_dict() is None
    carry.value = [ACTCarry(inner_carry={"z_H": torch.randn(2, 3, 4), "z_L": torch.randn(2, 3, 4)},
                            steps=torch.tensor([1, 2], dtype=torch.int32), halted=torch.tensor([True, False]),
                            current_data={"inputs": torch.full((2, 3), k, dtype=torch.int32)}) for k in (1, 2)]
    restored = Carry()
    restored.load_state_dict(carry.state_dict())
    assert len(restored.value) == 2  # one carry per micro-batch
    for mine, theirs in zip(restored.value, carry.value):
        for name in ("z_H", "z_L"):
            assert torch.equal(mine.inner_carry[name], theirs.inner_carry[name])
        assert torch.equal(mine.steps, theirs.steps) and torch.equal(mine.halted, theirs.halted)
        assert torch.equal(mine.current_data["inputs"], theirs.current_data["inputs"])
    restored.load_state_dict(None)
    assert restored.value is None


def test_pending_metrics_add_take_and_round_trip():
    metrics = PendingMetrics()
    metrics.add({"lm_loss": torch.tensor(1.5, dtype=torch.float32)})
    metrics.add({"lm_loss": torch.tensor(2.0, dtype=torch.float32)})
    copy = PendingMetrics()
    copy.load_state_dict(metrics.state_dict())
    sums, steps = copy.take()
    assert sums["lm_loss"].dtype == torch.float64 and sums["lm_loss"].item() == 3.5 and steps == 2
    assert copy.take() == (None, 0)


def test_rng_restores_the_model_generator_and_torch_s():
    class Model:
        def __init__(self):
            self.generator = torch.Generator().manual_seed(7)

        def rng_state(self):
            return {"exploration": self.generator.get_state()}

        def load_rng_state(self, state):
            self.generator.set_state(state["exploration"])

    model = Model()
    rng = RNG(model, torch.device("cpu"))
    saved = rng.state_dict()
    expected = (torch.rand(3, generator=model.generator), torch.rand(3))
    rng.load_state_dict(saved)
    assert torch.equal(torch.rand(3, generator=model.generator), expected[0]) and torch.equal(torch.rand(3),
                                                                                              expected[1])


def test_checkpoints_of_the_first_layout_are_upgraded_without_computing_anything():
    carry = {"__dataclass__": "models.act:ACTCarry",
             "inner_carry": {"__dataclass__": "models.act:InnerCarry", "z_H": torch.ones(1), "z_L": torch.zeros(1)},
             "steps": torch.tensor([3]), "halted": torch.tensor([False]), "current_data": {"inputs": torch.ones(1)}}
    first = {"step": 15, "block": 0, "optimizers": ["opt"], "loader": {"iters": 1}, "world_size": 1}
    ranks = [{"carry": carry, "pending_metrics": {"lm_loss": torch.tensor(2.0)}, "pending_steps": 1,
              "model_rng": {"exploration": torch.tensor([1])}, "torch_rng": torch.tensor([2]), "cuda_rng": []}]
    shared, (rank,) = upgrade(first, ranks)
    assert shared == {"format": 3, "schedule": {"step": 15, "block": 0}, "optimizers": ["opt"],
                      "loader": {"iters": 1}, "world_size": 1}
    (plain,) = rank["carry"]  # the one carry of a run without gradient accumulation
    assert plain["inner_carry"] == {"z_H": carry["inner_carry"]["z_H"], "z_L": carry["inner_carry"]["z_L"]}
    assert "__dataclass__" not in plain and plain["steps"] is carry["steps"]
    assert rank["metrics"] == {"sums": ranks[0]["pending_metrics"], "steps": 1}
    assert rank["rng"] == {"model": ranks[0]["model_rng"], "torch": ranks[0]["torch_rng"], "cuda": []}
    assert upgrade(shared, [rank]) == (shared, [rank])  # the current layout is left as it is


def test_checkpoints_of_the_second_layout_get_a_list_of_carries():
    """Format 2 held one carry per process; format 3 one per micro-batch (grad_accum_steps)."""
    carry = {"inner_carry": {"hidden": torch.ones(1)}, "steps": torch.tensor([1]), "halted": torch.tensor([True]),
             "current_data": {}}
    second = {"format": 2, "schedule": {"step": 4, "block": 1}}
    rank = {"format": 2, "carry": carry, "metrics": {}, "rng": {}}
    shared, (upgraded,) = upgrade(second, [rank])
    assert shared == {"format": 3, "schedule": {"step": 4, "block": 1}}
    assert upgraded == {"format": 3, "carry": [carry], "metrics": {}, "rng": {}}
    _, (empty,) = upgrade(second, [{**rank, "carry": None}])
    assert empty["carry"] is None  # a checkpoint written before the first batch
