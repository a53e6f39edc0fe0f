"""models/layers.py: the blocks' parts against the formulas, with values worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from models.layers import (Attention, CastedEmbedding, CastedLinear, RotaryEmbedding, SwiGLU, apply_rotary_pos_emb,
                           rms_norm, rotate_half)


def test_rms_norm_by_hand_in_float32_whatever_the_input_dtype():
    x = torch.tensor([[3.0, 4.0]])  # mean square 12.5
    assert torch.allclose(rms_norm(x, eps=0.0), torch.tensor([[3 / math.sqrt(12.5), 4 / math.sqrt(12.5)]]))
    assert torch.allclose(rms_norm(x, eps=12.5), torch.tensor([[3 / 5.0, 4 / 5.0]]))  # sqrt(12.5 + 12.5) = 5
    half = rms_norm(x.to(torch.bfloat16), eps=0.0)
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, rms_norm(x, eps=0.0).to(torch.bfloat16))  # computed in fp32, rounded once


def test_rotate_half_and_a_quarter_turn():
    assert torch.equal(rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.tensor([-3.0, -4.0, 1.0, 2.0]))
    # Head dim 2: one frequency, inv_freq = 1; position p rotates (q0, q1) by p radians.
    rope = RotaryEmbedding(dim=2, max_position_embeddings=3, base=10000.0)
    cos, sin = rope()
    assert torch.allclose(cos[:, 0], torch.cos(torch.arange(3.0))) and torch.allclose(sin[:, 1], torch.sin(
        torch.arange(3.0)))
    q = torch.tensor([1.0, 0.0]).expand(1, 3, 1, 2)
    q_rot, k_rot = apply_rotary_pos_emb(q, q, cos, sin)
    expected = torch.stack([torch.cos(torch.arange(3.0)), torch.sin(torch.arange(3.0))], -1).view(1, 3, 1, 2)
    assert torch.allclose(q_rot, expected) and torch.equal(q_rot, k_rot)


@pytest.mark.parametrize("expansion, inner", [(2, 768), (4, 1536), (8 / 3, 1024)])
def test_swiglu_width_rounds_up_to_256(expansion, inner):
    # round(expansion · 512 · 2/3) = 683, 1365, 910 -> next multiple of 256
    mlp = SwiGLU(512, expansion)
    assert mlp.gate_up_proj.weight.shape == (2 * inner, 512)
    assert mlp.down_proj.weight.shape == (512, inner)


def test_swiglu_is_down_of_silu_gate_times_up():
    torch.manual_seed(0)
    mlp = SwiGLU(4, 1.0)  # inner 256: gate rows first, then up rows
    x = torch.randn(2, 4)
    gate = x @ mlp.gate_up_proj.weight[:256].T
    up = x @ mlp.gate_up_proj.weight[256:].T
    expected = (gate * torch.sigmoid(gate) * up) @ mlp.down_proj.weight.T
    assert torch.allclose(mlp(x), expected, atol=1e-6)


def test_attention_is_bidirectional_softmax_attention_with_fused_qkv():
    torch.manual_seed(0)
    attention = Attention(hidden_size=4, num_heads=2)
    x = torch.randn(1, 3, 4)
    q, k, v = (x @ attention.qkv_proj.weight.T).view(1, 3, 3, 2, 2).unbind(2)  # (batch, seq, heads, head_dim)
    heads = []
    for h in range(2):
        scores = q[0, :, h] @ k[0, :, h].T / math.sqrt(2)  # every position sees every other (no mask)
        heads.append(torch.softmax(scores, -1) @ v[0, :, h])
    expected = torch.cat(heads, -1) @ attention.o_proj.weight.T
    assert torch.allclose(attention(x, None)[0], expected, atol=1e-6)


def test_casted_layers_keep_fp32_weights_and_compute_in_the_input_dtype():
    torch.manual_seed(0)
    linear = CastedLinear(3, 2, bias=True)
    assert linear.weight.dtype == torch.float32 and torch.count_nonzero(linear.bias) == 0
    assert linear.weight.std().item() == pytest.approx(1 / math.sqrt(3), rel=0.6)  # LeCun: std 1/sqrt(fan_in)
    x = torch.randn(2, 3, dtype=torch.bfloat16)
    assert torch.equal(linear(x), F.linear(x, linear.weight.to(torch.bfloat16), linear.bias.to(torch.bfloat16)))
    table = CastedEmbedding(5, 3, init_std=0.5, cast_to=torch.bfloat16)
    ids = torch.tensor([4, 0])
    assert torch.equal(table(ids), table.embedding_weight[ids].to(torch.bfloat16))
