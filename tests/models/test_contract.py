"""The contract every recursion core keeps with the shared ACT machinery (models/act.py), checked for each core of
config/arch/*.yaml at a tiny size: a core added as one file and one YAML is tested here without a line more.

Shapes, the reset of halted rows to the declared initial states, halting (evaluation runs max_segments segments,
training halts on the Q head), a state-dict round trip and torch.compile's `_orig_mod.` prefix, seeded
exploration, gradients only through the calls the core declares (segment_calls), test-time latent noise on the
declared state, and the FLOP count against torch's FLOP counter on a real training step.
"""
import glob
import os

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.flop_counter import conv_flop_count

from benchmarks.train_throughput import flop_breakdown
from tests.helpers import REPO, assert_compiled_prefix_loads, random_act_batch
from models.registry import model_class

ARCH_FILES = sorted(glob.glob(os.path.join(REPO, "config", "arch", "*.yaml")))
# Tiny values for the keys a core's YAML has (each core has its own names for depth and segment limit).
TINY = dict(hidden_size=16, num_heads=2, expansion=2, H_cycles=2, L_cycles=2, L_layers=1, num_layers=2,
            halt_max_steps=3, loops=3, puzzle_emb_ndim=16, puzzle_emb_len=2)
DATA = dict(batch_size=3, seq_len=6, vocab_size=7, num_puzzle_identifiers=5, forward_dtype="float32")


def tiny_arch(path: str) -> dict:
    """The YAML's `arch` (name and loss included) at the tiny size: TINY's value for each key it has, one H layer
    where it has any."""
    arch = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    arch.update({key: value for key, value in TINY.items() if key in arch})
    if arch.get("H_layers"):
        arch["H_layers"] = 1
    return arch


def arch_config(path: str, **overrides) -> dict:
    """The YAML's model config (name and loss aside) at the tiny size, with the trainer's derived keys."""
    arch = tiny_arch(path)
    name, loss = arch.pop("name"), arch.pop("loss")
    return {"name": name, "loss": loss, "model": {**arch, **DATA, **overrides}}


def build(path: str, seed: int = 0, **overrides):
    """The loss head around the core, from a fixed torch seed."""
    config = arch_config(path, **overrides)
    torch.manual_seed(seed)
    model = model_class(config["name"])(config["model"])
    return model_class(config["loss"]["name"])(model, loss_type=config["loss"]["loss_type"])


def cores():
    return pytest.mark.parametrize("path", ARCH_FILES, ids=[os.path.basename(p)[:-5] for p in ARCH_FILES])


@cores()
def test_shapes_and_declared_states(path):
    head = build(path)
    inner = head.model.inner
    batch = random_act_batch()
    carry, loss, metrics, outputs, _ = head(carry=head.initial_carry(batch), batch=batch,
                                            return_keys=["logits", "q_halt_logits", "q_continue_logits"])
    total = head.model_config.total_len
    assert outputs["logits"].shape == (3, 6, 7) and outputs["q_halt_logits"].shape == (3,)
    assert set(carry.inner_carry) == set(inner.latent_states)
    assert inner.answer_state in inner.latent_states and inner.noise_state in inner.latent_states
    for name, buffer in inner.latent_states.items():
        assert carry.inner_carry[name].shape == (3, total, 16) and not carry.inner_carry[name].requires_grad
        assert f"model.inner.{buffer}" in head.state_dict()  # the initial states are saved with the weights
    assert torch.isfinite(loss) and metrics["count"] >= 0


@cores()
def test_halted_rows_restart_from_the_declared_initial_states(path, monkeypatch):
    head = build(path).eval()
    inner = head.model.inner
    batch = random_act_batch()
    carry, *_ = head(carry=head.initial_carry(batch), batch=batch)
    carry.halted = torch.tensor([True, False, True])
    before = {name: state.clone() for name, state in carry.inner_carry.items()}
    seen = {}
    recurse = inner.recurse
    monkeypatch.setattr(inner, "recurse", lambda states, x, cos_sin: seen.update(states) or recurse(states, x,
                                                                                                    cos_sin))
    head(carry=carry, batch=batch)
    for name, buffer in inner.latent_states.items():
        start = getattr(inner, buffer).expand(before[name].shape[1:])
        assert torch.equal(seen[name][0], start) and torch.equal(seen[name][2], start)
        assert torch.equal(seen[name][1], before[name][1])


@cores()
def test_evaluation_runs_max_segments_and_training_halts_on_the_q_head(path):
    head = build(path)
    batch = random_act_batch()
    limit = head.model_config.max_segments
    with torch.no_grad():  # q_halt = +3, q_continue = -3 for every row: "halt" by either rule
        head.model.inner.q_head.bias.copy_(torch.tensor([3.0, -3.0]))
    head.model.config.halt_exploration_prob = 0.0
    carry, *_, all_halted = head(carry=head.initial_carry(batch), batch=batch)
    assert bool(all_halted) and carry.steps.tolist() == [1, 1, 1]
    head.eval()
    carry = head.initial_carry(batch)
    for segment in range(1, limit + 1):
        carry, *_, all_halted = head(carry=carry, batch=batch)
        assert bool(all_halted) == (segment == limit)


@cores()
def test_weights_round_trip_with_and_without_the_compile_prefix(path, tmp_path):
    source, target = build(path, seed=0).eval(), build(path, seed=1).eval()
    target.load_state_dict(source.state_dict())
    batch = random_act_batch()
    with torch.no_grad():
        out_source = source(carry=source.initial_carry(batch), batch=batch, return_keys=["logits"])[3]["logits"]
        out_target = target(carry=target.initial_carry(batch), batch=batch, return_keys=["logits"])[3]["logits"]
    assert torch.equal(out_source, out_target)
    assert_compiled_prefix_loads(lambda: build(path), tmp_path)


@cores()
def test_exploration_is_seeded(path):
    def halting(seed):
        head = build(path, halt_exploration_prob=1.0, seed=0)
        head.model.config.seed = seed
        with torch.no_grad():
            head.model.inner.q_head.bias.copy_(torch.tensor([3.0, -3.0]))
        batch = random_act_batch(batch_size=3)
        carry, halted = head.initial_carry(batch), []
        for _ in range(4):
            carry, *_ = head(carry=carry, batch=batch)
            halted.append(carry.halted.tolist())
        return halted

    assert halting(5) == halting(5)
    assert any(halting(seed) != halting(5) for seed in (6, 7, 8))


@cores()
def test_gradients_flow_only_through_the_calls_the_core_declares(path):
    head = build(path)
    calls = {}
    for module, _, _ in head.model.inner.segment_calls():
        module.register_forward_hook(lambda m, args, out: calls.setdefault(id(m), []).append(torch.is_grad_enabled()))
    head.model.config.halt_exploration_prob = 0.0
    head.model.config.no_ACT_continue = True  # one segment per call (no Q target segment)
    batch = random_act_batch()
    _, loss, *_ = head(carry=head.initial_carry(batch), batch=batch)
    for module, without, with_grad in head.model.inner.segment_calls():
        assert calls[id(module)] == [False] * without + [True] * with_grad
    loss.backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name  # every weight takes part in the calls with gradient


@cores()
def test_latent_noise_perturbs_the_declared_state(path, monkeypatch):
    head = build(path).eval()
    inner = head.model.inner
    seen = {}
    recurse = inner.recurse
    monkeypatch.setattr(inner, "recurse", lambda states, x, cos_sin: seen.update(states) or recurse(states, x,
                                                                                                    cos_sin))
    batch = random_act_batch()
    shape = (3, head.model_config.total_len, 16)
    head(carry=head.initial_carry(batch), batch=batch, latent_noise=torch.full(shape, 0.5))
    for name, buffer in inner.latent_states.items():
        start = getattr(inner, buffer).expand(shape)
        assert torch.equal(seen[name], start + 0.5 if name == inner.noise_state else start), name


def grouped_conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, _transposed,
                                _output_padding, _groups, output_mask, **_kwargs) -> int:
    """The backward of a convolution: each gradient it computes (input, weight) costs what the forward does.
    torch's own formula ignores `groups` (its docstring says it skips them), so it counts a depthwise
    convolution's input gradient as if every channel met every other: `in_channels` times too many."""
    return sum(output_mask[:2]) * conv_flop_count(x_shape, w_shape, grad_out_shape)


@cores()
def test_flop_count_matches_torch_flop_counter_on_a_training_step(path):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    head = build(path)
    batch = random_act_batch()
    carry = head.initial_carry(batch)
    counter = FlopCounterMode(display=False,
                              custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flops})
    with sdpa_kernel([SDPBackend.MATH]), counter:  # math attention: matmuls the counter can see
        _, loss, *_ = head(carry=carry, batch=batch)
        loss.backward()
    assert counter.get_total_flops() == flop_breakdown(head.model, 3)["step"]


def train_once(head, batch):
    """One training segment and its backward; the loss."""
    head.train()
    result = head(carry=head.initial_carry(batch), batch=batch)
    result.loss.backward()
    return result.loss.detach()


@cores()
def test_training_noise_is_off_unless_asked_and_seeded_when_on(path, monkeypatch):
    """init_noise and path_noise (EqR): off by default, nothing draws noise (the trainer's steps are the ones
    without the feature); on, training draws from the core's own generator, so two runs of one seed agree bit for
    bit and the generator's state travels with the others (exact resume); evaluation draws nothing."""
    batch = random_act_batch()
    plain = build(path)
    with monkeypatch.context() as patched:
        patched.setattr(type(plain.model.inner), "random_starts", lambda *a: pytest.fail("random_starts ran"))
        patched.setattr(type(plain.model.inner), "_add_path_noise", lambda *a: pytest.fail("path noise ran"))
        train_once(plain, batch)
    assert set(plain.rng_state()) == {"exploration"} and plain.model.inner._noise_generator is None

    noisy = [build(path, init_noise=0.5, path_noise=0.1) for _ in range(3)]
    first = train_once(noisy[0], batch)
    assert torch.equal(train_once(noisy[1], batch), first) and "noise" in noisy[0].rng_state()
    quiet = build(path)  # the same weights without noise give another loss
    assert not torch.equal(train_once(quiet, batch), first)
    # The generator's state is part of the model's: a copy of it replays the same noise.
    state = noisy[0].rng_state()
    again = train_once(noisy[0], batch)
    noisy[2].load_rng_state(state)
    assert torch.equal(train_once(noisy[2], batch), again) and not torch.equal(again, first)
    # Evaluation: every row starts from zero, the centre of the training draws, and no noise is added on the way.
    head, seen = noisy[0].eval(), {}
    recurse = head.model.inner.recurse
    monkeypatch.setattr(head.model.inner, "recurse", lambda states, x, cos_sin: seen.update(states) or recurse(
        states, x, cos_sin))
    with torch.no_grad():
        outputs = [head(carry=head.initial_carry(batch), batch=batch, return_keys=["logits"]).outputs["logits"]
                   for _ in range(2)]
    assert torch.equal(outputs[0], outputs[1]) and all(not state.any() for state in seen.values())


@cores()
def test_cycles_scale_multiplies_every_call_of_a_segment(path):
    head = build(path).eval()
    calls = {}
    for module, _, _ in head.model.inner.segment_calls():
        module.register_forward_hook(lambda m, args, out: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
    batch = random_act_batch()
    trained = {id(module): without + with_grad for module, without, with_grad in head.model.inner.segment_calls()}
    with torch.no_grad():
        head(carry=head.initial_carry(batch), batch=batch)
        assert calls == trained
        calls.clear()
        with head.deeper(3):
            head(carry=head.initial_carry(batch), batch=batch)
    assert calls == {key: 3 * count for key, count in trained.items()}
