"""The Universal Reasoning Model (models/urm/urm.py): URM's parameter counts and state-dict names, equality with
the original code on a tiny model (tests/fixtures/urm_reference.pt), truncated backpropagation, URM's halting and
its config checks. What every core shares (shapes, reset, round trips, FLOPs) is tests/models/test_contract.py's.

urm_reference.pt was written by running the original URM code (UbiquantAI/URM) on the CPU in float32 with its
depthwise convolution cast to float32, exploration off in the training calls: the tiny config, the state dict
(seed 0; puzzle rows and the Q head drawn so that halting is exercised), a batch, two evaluation calls (logits,
Q logits, hidden state), one training call (loss, every gradient, the puzzle rows' gradient) and the state of its
bfloat16 convolution."""
import os

import pydantic
import pytest
import torch
from omegaconf import OmegaConf

from models.layers import ConvSwiGLU
from tests.helpers import REPO, random_act_batch
from models.registry import model_class

URM = model_class("urm.urm@URM")
LossHead = model_class("losses@ACTLossHead")
REFERENCE = torch.load(os.path.join(REPO, "tests", "fixtures", "urm_reference.pt"), weights_only=False)

TINY = dict(batch_size=3, seq_len=6, vocab_size=7, num_puzzle_identifiers=5, puzzle_emb_ndim=16, num_layers=2,
            hidden_size=16, expansion=2, num_heads=2, loops=3, H_cycles=2, L_cycles=2, halt_exploration_prob=0.0,
            forward_dtype="float32")
# URM's published ARC-AGI-1 model (its config/arch/urm.yaml and scripts/URM_arcagi1.sh).
PUBLISHED = dict(batch_size=96, seq_len=900, num_puzzle_identifiers=1000, puzzle_emb_ndim=512, num_layers=4,
                 hidden_size=512, expansion=4, num_heads=8, loops=16, H_cycles=2, L_cycles=6, forward_dtype="bfloat16")


def make_head(**overrides):
    torch.manual_seed(0)
    return LossHead(URM({**TINY, **overrides}), loss_type="stablemax_cross_entropy")


def reference_head():
    config = {k: v for k, v in REFERENCE["config"].items() if k != "causal"}
    head = LossHead(URM({**config, "halt_exploration_prob": 0.0}), loss_type="stablemax_cross_entropy")
    head.load_state_dict(REFERENCE["state_dict"], strict=True)
    return head


@pytest.mark.parametrize("vocab_size, seq_len, expected", [(12, 900, 13_663_234), (11, 81, 13_662_210)])
def test_published_parameter_counts(vocab_size, seq_len, expected):
    # embed + lm_head 2 x vocab x 512, q_head 512x2+2. Per block: qkv 512x1536 = 786,432, o 512x512 = 262,144,
    # ConvSwiGLU inner round(4*512*2/3) = 1365 -> 1536: gate_up 512x3072 = 1,572,864, dwconv 1536x2+1536 = 4,608,
    # down 1536x512 = 786,432; 3,412,480 per block, four blocks 13,649,920.
    with torch.device("meta"):
        model = URM({**PUBLISHED, "vocab_size": vocab_size, "seq_len": seq_len})
    assert sum(p.numel() for p in model.parameters()) == 2 * vocab_size * 512 + 1026 + 13_649_920 == expected


def test_state_dict_names_and_shapes_are_urms():
    head = reference_head()
    ours = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in REFERENCE["state_dict"].items()}
    assert isinstance(head.model.inner.layers[0].mlp, ConvSwiGLU)


def test_evaluation_equals_the_original():
    head = reference_head().eval()
    batch = {k: v.clone() for k, v in REFERENCE["batch"].items()}
    with torch.inference_mode():
        carry = head.initial_carry(batch)
        for call in range(2):
            carry, _, _, outputs, _ = head(carry=carry, batch=batch,
                                           return_keys=["logits", "q_halt_logits", "q_continue_logits"])
            expected = f"eval/call{call}/"
            for key in ("logits", "q_halt_logits", "q_continue_logits"):
                torch.testing.assert_close(outputs[key], REFERENCE[expected + key], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(carry.inner_carry["hidden"], REFERENCE[expected + "hidden"],
                                       rtol=1e-5, atol=1e-5)


def test_training_loss_and_gradients_equal_the_original():
    head = reference_head().train()
    batch = {k: v.clone() for k, v in REFERENCE["batch"].items()}
    _, loss, *_ = head(carry=head.initial_carry(batch), batch=batch)
    loss.backward()
    torch.testing.assert_close(loss.double(), REFERENCE["train/call0/loss"].double(), rtol=1e-5, atol=1e-5)
    expected_grads = REFERENCE["train/call0/grads"]
    assert set(expected_grads) == {name for name, _ in head.named_parameters()}
    for name, param in head.named_parameters():
        torch.testing.assert_close(param.grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    torch.testing.assert_close(head.model.inner.puzzle_emb.local_weights.grad,
                               REFERENCE["train/call0/puzzle_emb_local_grad"], rtol=1e-4, atol=1e-6)


def test_a_checkpoint_with_bfloat16_convolutions_loads_into_float32_weights():
    """The original keeps its convolution in bfloat16; ours follows the forward dtype and keeps float32 weights."""
    head = reference_head()
    state = {**REFERENCE["state_dict"], **REFERENCE["bf16conv/state_dict_dwconv"]}
    head.load_state_dict(state, strict=True)
    conv = head.model.inner.layers[0].mlp.dwconv
    assert conv.weight.dtype == torch.float32
    assert torch.equal(conv.weight, REFERENCE["bf16conv/state_dict_dwconv"]["model.inner.layers.0.mlp.dwconv.weight"]
                       .float())


def _gradients(head, start: torch.Tensor, H_cycles: int, L_cycles: int):
    """Gradients of a fixed function of the state after recurse() with these cycles, from `start`."""
    inner = head.model.inner
    inner.config.H_cycles, inner.config.L_cycles = H_cycles, L_cycles
    head.zero_grad(set_to_none=True)
    batch = random_act_batch()
    x = inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    hidden = inner.recurse({"hidden": start}, x, inner.rotary_emb())["hidden"]
    (hidden.square().mean() + hidden[:, :2].sum()).backward()
    return {name: p.grad.clone() for name, p in inner.named_parameters() if p.grad is not None}


def test_no_gradient_reaches_the_weights_through_the_first_cycles():
    """Truncated backpropagation: with H_cycles=2 the weights get the gradient of the last L_cycles passes alone,
    as if the state entering them were a constant (computed here by running the first cycle apart)."""
    head = make_head()
    inner = head.model.inner
    start = inner.init_hidden.expand(3, inner.config.total_len, 16).clone()
    truncated = _gradients(head, start, H_cycles=2, L_cycles=2)

    inner.config.H_cycles, inner.config.L_cycles = 1, 2  # the first cycle: two passes
    with torch.no_grad():
        batch = random_act_batch()
        x = inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
        after_first_cycle = inner.recurse({"hidden": start}, x, inner.rotary_emb())["hidden"]
    last_cycle_only = _gradients(head, after_first_cycle, H_cycles=1, L_cycles=2)
    assert truncated.keys() == last_cycle_only.keys()
    for name in truncated:
        torch.testing.assert_close(truncated[name], last_cycle_only[name], rtol=1e-5, atol=1e-7, msg=name)

    # Backpropagating through all four passes gives other gradients: the check above can tell the two apart.
    full = _gradients(head, start, H_cycles=1, L_cycles=4)
    assert not torch.allclose(full["layers.0.mlp.down_proj.weight"], truncated["layers.0.mlp.down_proj.weight"])


def test_training_halts_on_q_halt_alone_within_loops_segments():
    head = make_head().train()
    batch = random_act_batch()
    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor([5.0, 50.0]))  # halt logit > 0, continue logit far above
    carry, _, _, outputs, all_halted = head(carry=head.initial_carry(batch), batch=batch)
    # HRM's rule (halt > continue) would run on; URM halts on sigmoid(q_halt) > 0.5 and learns no continue target.
    assert all_halted and carry.steps.tolist() == [1, 1, 1] and "target_q_continue" not in outputs

    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor([-50.0, 0.0]))
    carry = head.initial_carry(batch)
    for segment in range(1, 4):
        carry, _, _, _, all_halted = head(carry=carry, batch=batch)
        assert carry.steps.tolist() == [segment] * 3 and all_halted == (segment == 3)  # loops = 3


def test_the_yaml_holds_urms_defaults():
    arch = OmegaConf.load(os.path.join(REPO, "config", "arch", "urm.yaml"))
    assert arch.name == "urm.urm@URM"
    assert (arch.loops, arch.num_layers, arch.H_cycles, arch.L_cycles, arch.hidden_size, arch.num_heads,
            arch.expansion, arch.pos_encodings) == (16, 8, 4, 3, 512, 8, 4, "rope")


@pytest.mark.parametrize("overrides, fragment", [
    ({"H_layers": 2}, "set arch.num_layers and remove arch.H_layers"),
    ({"halt_max_steps": 8}, "set arch.loops and remove arch.halt_max_steps"),
    ({"loops": 0}, "loops"),
    ({"H_cycles": 0}, "H_cycles"),
])
def test_bad_settings_name_the_key(overrides, fragment):
    with pytest.raises(pydantic.ValidationError, match=fragment):
        URM({**TINY, **overrides})
