import math

import torch

from models.adam_atan2 import AdamATan2, build_adam_atan2


def reference_step(p, g, m, v, t, lr, b1, b2, wd):
    """docs/DESIGN.md §5, written out element by element in float64."""
    p = p * (1 - lr * wd)
    m = m + (g - m) * (1 - b1)
    v = v + (g * g - v) * (1 - b2)
    denom = v.sqrt() / math.sqrt(1 - b2 ** t)
    p = p - (lr / (1 - b1 ** t)) * torch.atan2(m, denom)
    return p, m, v


def test_matches_formula_step_by_step_float64():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)]
    ref = [p.detach().clone() for p in params]
    ref_m = [torch.zeros_like(p) for p in ref]
    ref_v = [torch.zeros_like(p) for p in ref]
    b1, b2, wd = 0.9, 0.95, 0.1
    opt = AdamATan2(params, lr=0.0, betas=(b1, b2), weight_decay=wd)
    for t in range(1, 8):
        lr = 1e-2 * t  # the trainer changes lr every step
        for group in opt.param_groups:
            group["lr"] = lr
        grads = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        for p, grad in zip(params, grads):
            p.grad = grad.clone()
        opt.step()
        for i, grad in enumerate(grads):
            ref[i], ref_m[i], ref_v[i] = reference_step(ref[i], grad, ref_m[i], ref_v[i], t, lr, b1, b2, wd)
            assert torch.allclose(params[i].detach(), ref[i], rtol=0, atol=1e-14)
            assert torch.allclose(opt.state[params[i]]["exp_avg"], ref_m[i], rtol=0, atol=1e-15)
            assert torch.allclose(opt.state[params[i]]["exp_avg_sq"], ref_v[i], rtol=0, atol=1e-15)
        assert opt.state[params[0]]["step"] == t


def test_update_is_bounded_without_epsilon():
    # atan2 keeps the first update finite even for a zero gradient (where Adam without eps divides 0 by 0).
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor([0.0, 1e-30, -5.0], dtype=torch.float64)
    AdamATan2([p], lr=1.0, betas=(0.9, 0.99), weight_decay=0.0).step()
    assert torch.isfinite(p).all()
    assert p[0].item() == 0.0
    assert abs(p[2].item()) <= math.pi / 2 / (1 - 0.9) * 0.1 + 1e-12


def test_state_dict_round_trip():
    p = torch.randn(3, requires_grad=True)
    opt = AdamATan2([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    clone = AdamATan2([p], lr=0.1)
    clone.load_state_dict(opt.state_dict())
    assert clone.state[p]["step"] == 1
    assert torch.equal(clone.state[p]["exp_avg"], opt.state[p]["exp_avg"])


def test_builder_falls_back_off_cuda():
    p = torch.nn.Parameter(torch.zeros(2))
    assert type(build_adam_atan2([p], lr=0.1, betas=(0.9, 0.95), weight_decay=0.0, on_cuda=False)) is AdamATan2
