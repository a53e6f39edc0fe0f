"""The Tiny Recursive Model (models/recursive_reasoning/trm.py) on the shared ACT machinery (models/act.py)."""
import pydantic
import pytest
import torch

from models.layers import SwiGLU
from tests.helpers import assert_compiled_prefix_loads, random_act_batch
from models.registry import model_class

ModelCls = model_class("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1")
LossHeadCls = model_class("losses@ACTLossHead")

# seq 6 + a 3-position prefix = 9 positions; H_cycles 2 x (L_cycles 2 latent updates + 1 answer update).
TINY = dict(batch_size=3, seq_len=6, num_puzzle_identifiers=5, vocab_size=7, puzzle_emb_ndim=16, puzzle_emb_len=3,
            H_cycles=2, L_cycles=2, H_layers=0, L_layers=1, hidden_size=16, expansion=2, num_heads=2,
            pos_encodings="rope", halt_max_steps=3, halt_exploration_prob=0.0, forward_dtype="float32")

# TRM's published Sudoku setting (vocab 11, seq 81, one puzzle id, config/arch/trm.yaml).
SUDOKU = dict(batch_size=2, seq_len=81, num_puzzle_identifiers=1, vocab_size=11, puzzle_emb_ndim=512, H_cycles=3,
              L_cycles=6, H_layers=0, L_layers=2, hidden_size=512, expansion=4, num_heads=8, pos_encodings="rope",
              halt_max_steps=16, halt_exploration_prob=0.1)


def make_head(**overrides):
    torch.manual_seed(0)
    return LossHeadCls(ModelCls({**TINY, **overrides}), loss_type="stablemax_cross_entropy")


make_batch = random_act_batch  # its defaults (seq 6, vocab 7, 5 identifiers) are TINY's shapes


def test_published_sudoku_parameter_counts():
    # embed 11x512 + lm_head 512x11 + q_head 512x2+2 = 12,290; per block: qkv 512x1536 + o 512x512 +
    # SwiGLU (inner round(4*512*2/3)=1365 -> 1536) 512x3072 + 1536x512 = 3,407,872; two blocks.
    attention = ModelCls(SUDOKU)
    assert sum(p.numel() for p in attention.parameters()) == 12_290 + 2 * 3_407_872 == 6_828_034
    # mlp_t over 81 + 16 = 97 tokens: inner round(4*97*2/3)=259 -> 512, 97x1024 + 512x97 = 148,992 per block,
    # in place of attention's 1,048,576.
    mlp = ModelCls({**SUDOKU, "mlp_t": True, "pos_encodings": "none"})
    assert sum(p.numel() for p in mlp.parameters()) == 12_290 + 2 * (2_359_296 + 148_992) == 5_028_866


def test_trm_yaml_defaults_are_trms(tmp_path):
    import yaml

    with open("config/arch/trm.yaml") as f:
        arch = yaml.safe_load(f)
    assert arch["name"] == "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"
    assert (arch["H_cycles"], arch["L_cycles"], arch["H_layers"], arch["L_layers"]) == (3, 6, 0, 2)
    assert (arch["puzzle_emb_len"], arch["mlp_t"], arch["no_ACT_continue"]) == (16, False, True)
    assert (arch["hidden_size"], arch["num_heads"], arch["expansion"], arch["pos_encodings"]) == (512, 8, 4, "rope")
    # The class defaults are TRM's too, for configs that leave these keys out.
    config = ModelCls.config_class(**{k: v for k, v in SUDOKU.items()})
    assert (config.puzzle_emb_len, config.mlp_t, config.no_ACT_continue) == (16, False, True)


def test_state_dict_names_and_compiled_prefix(tmp_path):
    keys = set(make_head(pos_encodings="learned").state_dict())
    expected = {"model.inner.embed_tokens.embedding_weight", "model.inner.embed_pos.embedding_weight",
                "model.inner.lm_head.weight", "model.inner.q_head.weight", "model.inner.q_head.bias",
                "model.inner.puzzle_emb.weights", "model.inner.H_init", "model.inner.L_init"}
    block = {"self_attn.qkv_proj.weight", "self_attn.o_proj.weight", "mlp.gate_up_proj.weight", "mlp.down_proj.weight"}
    assert keys == expected | {f"model.inner.L_level.layers.0.{name}" for name in block}
    mlp_keys = set(make_head(mlp_t=True, pos_encodings="none").state_dict())
    mlp_block = {"mlp_t.gate_up_proj.weight", "mlp_t.down_proj.weight", "mlp.gate_up_proj.weight",
                 "mlp.down_proj.weight"}
    assert mlp_keys == (expected - {"model.inner.embed_pos.embedding_weight"}) | {
        f"model.inner.L_level.layers.0.{name}" for name in mlp_block}
    assert not any("rotary" in k for k in make_head().state_dict())

    assert_compiled_prefix_loads(make_head, tmp_path)


def test_trainer_names_resolve():
    from models.hrm.hrm_act_v1 import HierarchicalReasoningModel_ACTV1

    assert model_class("recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1") is \
        HierarchicalReasoningModel_ACTV1
    assert model_class("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1") is HierarchicalReasoningModel_ACTV1
    assert ModelCls.__name__ == "TinyRecursiveReasoningModel_ACTV1"


def test_recursion_order_and_which_calls_get_gradient():
    """Cycle = L_cycles latent updates z_L = net(z_L, z_H + x), then the answer update z_H = net(z_H, z_L); the
    first H_cycles - 1 cycles without gradient, the last one with it (every call of it)."""
    head = make_head()
    inner = head.model.inner
    calls = []

    def record(module, args, output):
        hidden, injection, _ = args
        calls.append(dict(grad=torch.is_grad_enabled(), hidden=hidden.detach().clone(),
                          injection=injection.detach().clone(), out=output.detach().clone()))

    inner.L_level.register_forward_hook(record)
    batch = make_batch()
    carry = head.initial_carry(batch)
    carry, loss, *_ = head(carry=carry, batch=batch, return_keys=())
    assert len(calls) == 2 * (2 + 1)  # no_ACT_continue (TRM's default): no extra segment for a Q target
    assert [c["grad"] for c in calls] == [False] * 3 + [True] * 3

    x = inner.input_embeddings(carry.current_data["inputs"], carry.current_data["puzzle_identifiers"])
    z_H0 = inner.H_init.expand_as(x)
    z_L0 = inner.L_init.expand_as(x)
    for cycle, (z_H, z_L) in enumerate([(z_H0, z_L0), (calls[2]["out"], calls[1]["out"])]):
        first, second, answer = calls[3 * cycle: 3 * cycle + 3]
        assert torch.equal(first["hidden"], z_L) and torch.allclose(first["injection"], z_H + x)
        assert torch.equal(second["hidden"], first["out"]) and torch.allclose(second["injection"], z_H + x)
        assert torch.equal(answer["hidden"], z_H) and torch.equal(answer["injection"], second["out"])
    assert torch.equal(carry.inner_carry["z_H"], calls[5]["out"])
    assert torch.equal(carry.inner_carry["z_L"], calls[4]["out"])
    assert not carry.inner_carry["z_H"].requires_grad

    # Full backprop through the last cycle: the puzzle embedding reaches the loss only through x, injected into
    # the last cycle's latent updates; a one-step approximation would leave it without gradient.
    loss.backward()
    assert inner.puzzle_emb.local_weights.grad is not None
    assert inner.puzzle_emb.local_weights.grad.abs().sum() > 0


def test_prefix_holds_the_puzzle_embedding_then_zeros():
    head = make_head(pos_encodings="none").eval()
    inner = head.model.inner
    with torch.no_grad():
        inner.puzzle_emb.weights[2] = torch.arange(16, dtype=torch.float32)
    x = inner.input_embeddings(torch.ones(1, 6, dtype=torch.int32), torch.tensor([2], dtype=torch.int32))
    assert x.shape == (1, 6 + 3, 16)
    assert torch.allclose(x[0, 0], torch.arange(16, dtype=torch.float32) * 4.0)  # scaled by sqrt(hidden) = 4
    assert torch.equal(x[0, 1:3], torch.zeros(2, 16))
    carry = head.initial_carry(make_batch())
    assert carry.inner_carry["z_H"].shape == (3, 9, 16)


def test_mlp_t_mixes_the_token_axis():
    head = make_head(mlp_t=True, pos_encodings="none")
    block = head.model.inner.L_level.layers[0]
    assert not hasattr(block, "self_attn") and isinstance(block.mlp_t, SwiGLU)
    # 9 positions, expansion 2: inner round(2*9*2/3) = 12 -> 256.
    assert block.mlp_t.gate_up_proj.weight.shape == (2 * 256, 9)
    assert block.mlp_t.down_proj.weight.shape == (9, 256)
    assert block.mlp.gate_up_proj.weight.shape == (2 * 256, 16)
    states = torch.randn(3, 9, 16)
    out = block(states, None)
    assert out.shape == states.shape
    # Normalised over the channels last (the channel MLP's norm), and the token mixing couples positions:
    # changing one position changes the others.
    assert torch.allclose(out.pow(2).mean(-1), torch.ones(3, 9), atol=1e-4)
    moved = states.clone()
    moved[:, 0] += 1.0
    assert not torch.allclose(block(moved, None)[:, 1:], out[:, 1:])
    assert not hasattr(head.model.inner, "rotary_emb")  # rope would have nothing to rotate


def test_positions_none_has_no_tables():
    inner = make_head(pos_encodings="none").model.inner
    assert not hasattr(inner, "embed_pos") and not hasattr(inner, "rotary_emb")


def _one_training_segment(head, q_bias):
    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor(q_bias))  # weight is 0: the bias alone decides
    inner_calls = []
    head.model.inner.register_forward_hook(lambda *a: inner_calls.append(1))
    batch = make_batch()
    carry = head.initial_carry(batch)
    carry, _, metrics, outputs, _ = head(carry=carry, batch=batch, return_keys=("target_q_continue",))
    return carry, metrics, outputs, len(inner_calls)


def test_no_act_continue_halts_on_q_halt_alone():
    # q_halt = 1 > 0 halts, although q_continue = 5 is larger; no target, no extra segment, no continue loss.
    carry, metrics, outputs, inner_calls = _one_training_segment(make_head(), [1.0, 5.0])
    assert carry.halted.all() and inner_calls == 1
    assert "target_q_continue" not in outputs and "q_continue_loss" not in metrics
    carry, *_ = _one_training_segment(make_head(), [-1.0, -5.0])
    assert not carry.halted.any()


def test_hrm_rule_when_no_act_continue_is_false():
    head = make_head(no_ACT_continue=False)
    carry, metrics, outputs, inner_calls = _one_training_segment(head, [1.0, 5.0])
    assert not carry.halted.any() and inner_calls == 2  # q_halt < q_continue; one more segment for the target
    assert torch.allclose(outputs["target_q_continue"], torch.sigmoid(torch.tensor(5.0)).expand(3))
    assert "q_continue_loss" in metrics
    carry, *_ = _one_training_segment(make_head(no_ACT_continue=False), [5.0, 1.0])
    assert carry.halted.all()


def test_adaptive_evaluation_uses_the_same_rule():
    head = make_head().eval()
    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor([1.0, 5.0]))
    batch = make_batch()
    carry = head.initial_carry(batch)
    with torch.inference_mode():
        carry, *_ = head(carry=carry, batch=batch, return_keys=(), halt_on_q=True)
        assert carry.halted.all()  # q_halt > 0
        carry = head.initial_carry(batch)
        carry, *_ = head(carry=carry, batch=batch, return_keys=())
        assert not carry.halted.any()  # plain evaluation runs halt_max_steps segments


@pytest.mark.parametrize("overrides, fragment", [
    (dict(H_layers=2), "TRM has one network, whose depth is L_layers"),
    (dict(puzzle_emb_ndim=0), "puzzle_emb_len is 3 but puzzle_emb_ndim is 0"),
    (dict(puzzle_emb_ndim=64), "puzzle_emb_ndim (64) does not fit in puzzle_emb_len (3) positions"),
    (dict(pos_encodings="alibi"), "pos_encodings"),
    (dict(hiden_size=3), "hiden_size"),
])
def test_bad_configs_are_rejected_by_name(overrides, fragment):
    with pytest.raises(pydantic.ValidationError) as err:
        ModelCls({**TINY, **overrides})
    assert fragment in str(err.value)
