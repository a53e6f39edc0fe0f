import math

import pytest
import torch

from models.losses import (
    IGNORE_LABEL_ID,
    log_stablemax,
    softmax_cross_entropy,
    stablemax_cross_entropy,
)


def test_stablemax_by_hand():
    # s(0) = 1, s(1) = 2, s(-1) = 1/2, s(3) = 4: sum 7.5
    logits = torch.tensor([[0.0, 1.0, -1.0, 3.0]])
    expected = [math.log(7.5 / 1), math.log(7.5 / 2), math.log(7.5 / 0.5), math.log(7.5 / 4)]
    for label, want in enumerate(expected):
        got = stablemax_cross_entropy(logits, torch.tensor([label]))
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(want, abs=1e-12)


def test_stablemax_ignores_label():
    logits = torch.tensor([[[0.0, 1.0], [2.0, -3.0]]])
    losses = stablemax_cross_entropy(logits, torch.tensor([[IGNORE_LABEL_ID, 0]]))
    assert losses[0, 0].item() == 0.0
    # s = (3, 1/4): -log(3 / 3.25)
    assert losses[0, 1].item() == pytest.approx(math.log(3.25 / 3), abs=1e-12)


def test_log_stablemax_normalised():
    x = torch.randn(5, 7, dtype=torch.float64)
    assert torch.allclose(log_stablemax(x).exp().sum(-1), torch.ones(5, dtype=torch.float64))


def test_softmax_cross_entropy_matches_formula():
    logits = torch.tensor([[[1.0, 2.0, 3.0]]])
    got = softmax_cross_entropy(logits, torch.tensor([[2]]))
    want = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert got.item() == pytest.approx(want, rel=1e-6)
    assert softmax_cross_entropy(logits, torch.tensor([[IGNORE_LABEL_ID]])).item() == 0.0


def test_stablemax_gradient_is_finite_at_logit_one():
    logits = torch.tensor([[[1.0, 0.5, -0.3]]], requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([[1]])).sum().backward()
    assert torch.isfinite(logits.grad).all()
