import math

import torch

from models.adam_atan2 import AdamATan2, build_adam_atan2


def reference_step(p, g, m, v, t, lr, b1, b2, wd):
    """DESIGN §5, written out element by element in float64."""
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


class FusedShapedAdamATan2(torch.optim.Optimizer):
    """A stand-in for the `adam-atan2` package's optimizer (whose CUDA kernel is not here), keeping its state
    the way it does: `step` a 0-d float32 tensor beside exp_avg / exp_avg_sq, incremented before the update."""

    def __init__(self, params, lr, betas, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        from models.adam_atan2 import _foreach_adam_atan2
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
    from training.checkpointing import load_optimizer_state, optimizer_state

    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(6, 4))
    opt = opt_cls([param], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    if state is not None:
        with torch.no_grad():
            param.copy_(state["param"])
        load_optimizer_state(opt, state["optimizer"])
    seen = list(state["seen"]) if state else []
    for _ in range(steps):  # the gradient of update k depends on k only
        param.grad = torch.randn(6, 4, generator=torch.Generator().manual_seed(len(seen)))
        opt.step()
        seen.append(len(seen))
    saved = {"param": param.detach().clone(), "optimizer": optimizer_state(opt), "seen": seen}
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
    from training.checkpointing import load_optimizer_state, optimizer_state

    saved = _train(AdamATan2, 2)
    param = torch.nn.Parameter(saved["param"].clone())
    opt = AdamATan2([param], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    load_optimizer_state(opt, saved["optimizer"])
    assert opt.state[param]["step"] == 2 and isinstance(opt.state[param]["step"], int)
    optimizer_state(opt)
    assert isinstance(opt.state[param]["step"], int)  # saving copied; the optimizer still keeps its int
