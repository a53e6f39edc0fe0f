"""Muon and its AdamW companion (models/muon.py): the update derived by hand from the rule on tiny matrices, and
three steps pinned against the original URM optimizer (tests/fixtures/muon_reference.pt: parameters, gradients
and the parameters after each step, from URM's code on the CPU: W1 3x5 and W2 6x4 through Muon, b (4,) through
its AdamW; and all three through its AdamW alone).

tests/fixtures/urm_muon_trajectory.pt pins 30 training steps of `arch=urm use_muon=true` with Newton–Schulz fed
float32. It was written by URM's own trainer (UbiquantAI/URM at commit 41de2c38d3dda7bb3a5c13b61a590125e5df1bd9:
pretrain.py create_model, TrainState and train_batch, models/muon.py, models/urm/urm.py) on the CPU in float32,
with these changes to a copy of it: flash_attn_func replaced by scaled_dot_product_attention on the transposed
(batch, heads, tokens, dim) tensors; `einops` and `adam_atan2` stubbed (imported, not used with use_muon);
`.cuda()` and torch.device("cuda") replaced by the CPU; the @torch.compile of msign removed; in Muon.step the
Nesterov vector passed to msign as it is (float32) instead of `.bfloat16()`; the depthwise convolution cast to
float32 (model.float()). Settings: the fixture's `arch` (hidden 8, 2 heads, 1 layer, H_cycles 2, L_cycles 2,
loops 3, puzzle_emb_ndim 8, vocab 7, 6 tokens, 6 puzzle identifiers) and `train` (global batch 4, lr 3e-3, 5
warm-up steps, cosine to 0.1 at step 30, weight decay 0.1, betas (0.9, 0.95), puzzle_emb_lr 1e-2, its decay
0.1), total_steps 30, DISABLE_COMPILE=1. Initial weights: URM's initialisation after torch.manual_seed(0), then
q_head.bias = (0.05, 0) and the puzzle rows drawn as randn(6, 8, generator seeded 1) / sqrt(8), so that rows halt
on q_halt > 0, by exploration and at `loops`. Batches: 30 of random tokens 1..6, labels with about a quarter
-100. torch.manual_seed(0) right before the first step: URM draws ACT exploration (its fixed 0.1) from the global
generator, ours from a generator seeded with the run's seed 0, so the draws are the same. Stored: init and
final state dicts, the batches, and per step lm_loss and q_halt_loss (over the global batch), the lr and the
rows' ACT step counts."""
import copy
import math
import os

import pytest
import torch

from dataset.common import PuzzleDatasetMetadata
from models.muon import NS_INPUT_DTYPE, MatchedAdamW, Muon, newton_schulz
from tests.helpers import REPO
from training.build import init_train_state
from training.config import validate_config
from training.distributed import single_process
from training.loop import train_batch

# URM's five (a, b, c), written out again here so that a change of the module's constants is caught.
COEFFICIENTS = [(7.2086, -15.5131, 9.0178), (3.9623, -2.5813, 0.4542), (3.9466, -2.5765, 0.4544),
                (3.8991, -2.5671, 0.4566), (3.7186, -2.5308, 0.4653)]


def singular_value_after_iterations(sigma: float) -> float:
    """X <- aX + (bA + cA²)X with A = XXᵀ maps each singular value σ of X to (a + bσ² + cσ⁴)σ."""
    for a, b, c in COEFFICIENTS:
        s = sigma * sigma
        sigma = (a + b * s + c * s * s) * sigma
    return sigma


def test_newton_schulz_of_a_row_vector_keeps_its_direction_and_scales_it_by_the_iteration():
    # [3, 4] is exact in bfloat16; normalised it is [0.6, 0.8] with the one singular value 1.
    out = newton_schulz(torch.tensor([[3.0, 4.0]]))
    scale = singular_value_after_iterations(1.0)  # 1.603: URM's coefficients trade exactness for speed
    torch.testing.assert_close(out, torch.tensor([[0.6 * scale, 0.8 * scale]]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("matrix", [[[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]],   # tall: iterated on the transpose
                                    [[0.0, 3.0, 0.0], [4.0, 0.0, 0.0]]])     # wide
def test_newton_schulz_maps_each_singular_value_by_the_iteration(matrix):
    # Singular values 3 and 4, over the Frobenius norm 5: 0.6 and 0.8; singular vectors unchanged.
    x = torch.tensor(matrix)
    expected = torch.zeros_like(x)
    expected[x == 3.0] = singular_value_after_iterations(0.6)
    expected[x == 4.0] = singular_value_after_iterations(0.8)
    torch.testing.assert_close(newton_schulz(x), expected, rtol=1e-5, atol=1e-6)


def test_two_muon_steps_by_hand():
    """Momentum 0.5 keeps every Nesterov vector exact in bfloat16; a row vector's update is its direction times
    the iterated singular value, times lr·0.2·sqrt(max(rows, cols)), after weight decay p·(1 - lr·wd)."""
    lr, wd = 0.1, 0.1
    param = torch.nn.Parameter(torch.tensor([[1.0, -1.0]]))
    muon = Muon([param], weight_decay=wd, momentum=0.5)
    for group in muon.param_groups:
        group["lr"] = lr
    expected = [1.0, -1.0]
    scale = singular_value_after_iterations(1.0)
    # buffer b = 0.5 b + g; Nesterov vector g + 0.5 b: step 1 g=[3,4] -> b=[3,4], vector [4.5, 6]
    # step 2 g=[4,3] -> b=[5.5, 5], vector [6.75, 5.5].
    for grad, vector in (([3.0, 4.0], [4.5, 6.0]), ([4.0, 3.0], [6.75, 5.5])):
        param.grad = torch.tensor([grad])
        muon.step()
        norm = math.hypot(*vector)
        expected = [p * (1 - lr * wd) - lr * 0.2 * math.sqrt(2) * scale * v / norm for p, v in zip(expected, vector)]
        torch.testing.assert_close(param.data, torch.tensor([expected]), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(muon.state[param]["momentum_buffer"], torch.tensor([[5.5, 5.0]]))


def test_matched_adamw_adds_eps_before_the_bias_correction():
    lr, wd, eps = 0.1, 0.1, 0.5  # a large eps shows where it is added
    param = torch.nn.Parameter(torch.tensor([2.0, -1.0]))
    adamw = MatchedAdamW([param], lr=lr, betas=(0.9, 0.95), eps=eps, weight_decay=wd)
    param.grad = torch.tensor([0.5, 2.0])
    adamw.step()
    # m = 0.1 g, v = 0.05 g², then p·(1 - lr·wd) - lr·sqrt(1 - 0.95)/(1 - 0.9) · m / (sqrt(v) + eps)
    expected = [p * (1 - lr * wd) - lr * math.sqrt(0.05) / 0.1 * (0.1 * g) / (math.sqrt(0.05) * abs(g) + eps)
                for p, g in ((2.0, 0.5), (-1.0, 2.0))]
    torch.testing.assert_close(param.data, torch.tensor(expected), rtol=1e-6, atol=1e-7)
    assert adamw.state[param]["step"] == 1


@pytest.fixture(scope="module")
def reference():
    return torch.load(os.path.join(REPO, "tests", "fixtures", "muon_reference.pt"), weights_only=False)


@pytest.mark.parametrize("muon_for_matrices", [True, False], ids=["muon", "adamw-only"])
def test_three_steps_equal_urms_optimizer(reference, muon_for_matrices):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in reference["init"].items()}
    matrices, vectors = [params["W1"], params["W2"]], [params["b"]]
    if muon_for_matrices:
        optimizers = [Muon(matrices, weight_decay=reference["weight_decay"]),
                      MatchedAdamW(vectors, weight_decay=reference["weight_decay"])]
    else:
        optimizers = [MatchedAdamW(matrices + vectors, weight_decay=reference["weight_decay"])]
    steps = reference["muon_steps" if muon_for_matrices else "adamw_steps"]
    for grads, expected in zip(reference["grads"], steps):
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = reference["lr"]
        for name, param in params.items():
            param.grad = grads[name].clone()
        for optimizer in optimizers:
            optimizer.step()
        for name, param in params.items():
            torch.testing.assert_close(param.data, expected[name], rtol=1e-6, atol=5e-7, msg=name)


def test_muon_state_round_trips_through_a_state_dict():
    torch.manual_seed(0)
    first, second = torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(3, 4))
    second.data.copy_(first.data)
    a, b = Muon([first]), Muon([second])
    for group in a.param_groups + b.param_groups:
        group["lr"] = 0.01
    first.grad = torch.randn(3, 4)
    a.step()
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as from a file: no buffer shared with `a`
    second.data.copy_(first.data)
    grad = torch.randn(3, 4)
    first.grad, second.grad = grad, grad.clone()
    a.step()
    b.step()
    assert torch.equal(first, second)


def test_newton_schulz_rounds_to_bfloat16_by_default_and_float32_takes_the_update_as_it_is():
    torch.manual_seed(0)
    update = torch.randn(3, 5)  # not exact in bfloat16
    assert NS_INPUT_DTYPE == torch.bfloat16
    rounded = newton_schulz(update.bfloat16().float(), input_dtype=torch.float32)
    assert torch.equal(newton_schulz(update), rounded)
    assert torch.equal(newton_schulz(update, input_dtype=torch.bfloat16), rounded)
    assert not torch.equal(newton_schulz(update, input_dtype=torch.float32), rounded)


def test_muon_rounds_to_bfloat16_unless_told_and_keeps_the_setting_in_its_state_dict():
    torch.manual_seed(0)
    start, grads = torch.randn(4, 3), [torch.randn(4, 3) for _ in range(2)]

    def run(**kwargs):
        param = torch.nn.Parameter(start.clone())
        muon = Muon([param], **kwargs)
        for grad in grads:
            for group in muon.param_groups:
                group["lr"] = 0.01
            param.grad = grad.clone()
            muon.step()
        return param.data, muon

    default, muon = run()
    assert muon.param_groups[0]["ns_input_dtype"] == torch.bfloat16
    bf16, _ = run(ns_input_dtype=torch.bfloat16)
    fp32, muon32 = run(ns_input_dtype=torch.float32)
    assert torch.equal(default, bf16) and not torch.equal(default, fp32)
    assert muon32.state_dict()["param_groups"][0]["ns_input_dtype"] == torch.float32

    # A state dict written before the setting existed has no such key: its groups round to bfloat16.
    param = torch.nn.Parameter(start.clone())
    old = Muon([param], ns_input_dtype=torch.float32)
    state = old.state_dict()
    del state["param_groups"][0]["ns_input_dtype"]
    old.load_state_dict(state)
    for grad in grads:
        for group in old.param_groups:
            group["lr"] = 0.01
        param.grad = grad.clone()
        old.step()
    assert torch.equal(param.data, default)


@pytest.fixture(scope="module")
def trajectory():
    return torch.load(os.path.join(REPO, "tests", "fixtures", "urm_muon_trajectory.pt"), weights_only=False)


def test_thirty_urm_muon_steps_with_float32_newton_schulz_equal_urms_trainer(trajectory, tmp_path):
    """Our trainer (training/build.py init_train_state, training/loop.py train_batch) from the fixture's weights on
    its batches, Muon's groups set to feed Newton–Schulz float32: every step's losses, rate and ACT step counts,
    and every final tensor, as URM's trainer (see the module docstring). With URM's bfloat16 rounding the same run
    drifts up to 6e-4 of a tensor's largest entry, float32 summation order being amplified by the rounding
    (docs/DESIGN.md §5), so only float32 can be pinned this tightly."""
    config = validate_config({"arch": trajectory["arch"], "data_path": str(tmp_path), "epochs": 1,
                              "use_muon": True, "device": "cpu", "compile": False, "logger": "none",
                              "log_interval": 1, **trajectory["train"]})
    metadata = PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, total_groups=1,
                                     mean_puzzle_examples=1.0, sets=["all"], **trajectory["metadata"])
    cpu = single_process(torch.device("cpu"))
    state = init_train_state(config, metadata, cpu, trajectory["total_steps"])
    assert state.schedule.lag == 1  # URM's trainer's schedule, by default for arch=urm
    state.model.load_state_dict(trajectory["init"], strict=True)
    muons = [optimizer for optimizer in state.optimizers if isinstance(optimizer, Muon)]
    assert len(muons) == 1 and len(state.optimizers) == 3  # SignSGD, Muon, AdamW
    for group in muons[0].param_groups:
        group["ns_input_dtype"] = torch.float32
    state.model.train()

    batches = trajectory["batches"]
    for step in range(trajectory["total_steps"]):
        metrics = train_batch(config, state, {k: v[step].clone() for k, v in batches.items()}, cpu)
        for key in ("lm_loss", "q_halt_loss"):
            assert metrics[f"train/{key}"] == pytest.approx(trajectory[key][step].item(), rel=1e-5), (step, key)
        assert metrics["train/lr"] == pytest.approx(trajectory["lr"][step].item(), rel=1e-12, abs=0.0), step
        assert state.carry.value[0].steps.tolist() == trajectory["act_steps"][step].tolist(), step

    final = state.model.state_dict()
    assert final.keys() == trajectory["final"].keys()
    for name, expected in trajectory["final"].items():
        difference = (final[name].double() - expected.double()).abs().max()
        assert difference <= 1e-5 * expected.double().abs().max(), name
