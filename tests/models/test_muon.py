"""Muon and its AdamW companion (models/muon.py): the update derived by hand from the rule on tiny matrices, and
three steps pinned against the original URM optimizer (tests/fixtures/muon_reference.pt: parameters, gradients
and the parameters after each step, from URM's code on the CPU: W1 3x5 and W2 6x4 through Muon, b (4,) through
its AdamW; and all three through its AdamW alone)."""
import copy
import math
import os

import pytest
import torch

from models.muon import MatchedAdamW, Muon, newton_schulz
from tests.helpers import REPO

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
