import math

import pytest
import torch

from models.common import trunc_normal_init_


@pytest.mark.parametrize("std", [1.0, 0.02, 1 / math.sqrt(512)])
def test_truncated_normal_has_requested_std(std):
    g = torch.Generator().manual_seed(0)
    t = trunc_normal_init_(torch.empty(1000, 1000), std=std, generator=g)
    assert t.std().item() == pytest.approx(std, rel=0.02)
    # Truncated at 2 std of the underlying normal, which is wider than `std` (JAX convention): ~2.27 std here.
    assert t.abs().max().item() <= 2 * std / math.sqrt(0.7737413) + 1e-6
    assert t.mean().item() == pytest.approx(0.0, abs=std * 0.01)


def test_torch_trunc_normal_is_narrower():
    """The reason we do not use torch.nn.init.trunc_normal_: its truncated std is ~12% below the request."""
    t = torch.nn.init.trunc_normal_(torch.empty(1000, 1000), std=1.0, a=-2.0, b=2.0,
                                    generator=torch.Generator().manual_seed(0))
    assert t.std().item() == pytest.approx(0.8796, rel=0.01)


def test_zero_std_gives_zeros():
    assert torch.count_nonzero(trunc_normal_init_(torch.ones(3, 3), std=0.0)) == 0


def test_seeded_generator_reproducible():
    a = trunc_normal_init_(torch.empty(10), generator=torch.Generator().manual_seed(3))
    b = trunc_normal_init_(torch.empty(10), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
