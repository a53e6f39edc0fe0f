"""Transformer building blocks (docs/DESIGN.md §3): casted linear/embedding, rotary embedding, attention, SwiGLU and
URM's SwiGLU with a short convolution over the sequence.

Each block part counts its own matmul FLOPs (`flops`, 2·m·n·k per matmul, as torch's FLOP counter does), so that
the throughput benchmark counts any model built from them without a formula per model.

Parameters are kept in fp32 (the optimizer's master copy) and cast to the activations' dtype in the forward, so
the forward can run in bfloat16 on GPUs without a separate mixed-precision wrapper.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from models.common import trunc_normal_init_

CosSin = Tuple[torch.Tensor, torch.Tensor]

try:  # Optional fast path; everything works without it.
    from flash_attn_interface import flash_attn_func  # type: ignore[import-not-found]  # FlashAttention 3
except ImportError:
    try:
        from flash_attn import flash_attn_func  # type: ignore[import-not-found]  # FlashAttention 2
    except ImportError:
        flash_attn_func = None


def _round_up(value: int, multiple: int) -> int:
    return -(value // -multiple) * multiple


def swiglu_inner(hidden_size: int, expansion: float) -> int:
    """The gated MLPs' inner width: round(expansion · hidden · 2/3), rounded up to a multiple of 256 (keeps matmuls
    aligned)."""
    return _round_up(round(expansion * hidden_size * 2 / 3), 256)


def rms_norm(hidden_states: torch.Tensor, eps: float) -> torch.Tensor:
    """Weightless RMS norm, computed in fp32 whatever the input dtype (bf16 squares lose too much)."""
    input_dtype = hidden_states.dtype
    x = hidden_states.to(torch.float32)
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(input_dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last axis: the rotate-half RoPE convention."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """q, k: (batch, seq, heads, head_dim); cos, sin: (seq, head_dim). Rotation in the tables' dtype (fp32)."""
    dtype = q.dtype
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    q, k = q.to(cos.dtype), k.to(cos.dtype)
    q_rot = q * cos + rotate_half(q) * sin
    k_rot = k * cos + rotate_half(k) * sin
    return q_rot.to(dtype), k_rot.to(dtype)


class CastedLinear(nn.Module):
    """Linear layer with LeCun truncated-normal init (std 1/sqrt(fan_in)), zero bias, weights cast to the input."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_init_(torch.empty(out_features, in_features),
                                                      std=1.0 / math.sqrt(in_features)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)

    def flops(self, rows: int) -> int:
        """FLOPs of one forward on `rows` input vectors."""
        out_features, in_features = self.weight.shape
        return 2 * rows * in_features * out_features


class CastedEmbedding(nn.Module):
    """Embedding table (named `embedding_weight` as in the published checkpoints), looked up in `cast_to`."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.embedding_weight = nn.Parameter(
            trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(self.cast_to))


class RotaryEmbedding(nn.Module):
    """cos/sin tables for every position; not saved in checkpoints (recomputed from theta)."""

    def __init__(self, dim: int, max_position_embeddings: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        freqs = torch.outer(torch.arange(max_position_embeddings, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self) -> CosSin:
        return self.cos_cached, self.sin_cached


class Attention(nn.Module):
    """Bidirectional multi-head attention with a fused q/k/v projection and no biases."""

    def __init__(self, hidden_size: int, num_heads: int, causal: bool = False):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.causal = causal
        self.qkv_proj = CastedLinear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = CastedLinear(hidden_size, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor, cos_sin: Optional[CosSin]) -> torch.Tensor:
        batch, seq, hidden = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(batch, seq, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=2)  # each (batch, seq, heads, head_dim)
        if cos_sin is not None:
            q, k = apply_rotary_pos_emb(q, k, *cos_sin)

        if flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            out = flash_attn_func(q, k, v, causal=self.causal)
            if isinstance(out, tuple):  # FlashAttention 3 also returns the log-sum-exp
                out = out[0]
        else:
            # SDPA wants (batch, heads, seq, head_dim); it picks flash/memory-efficient kernels on GPUs itself.
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 is_causal=self.causal).transpose(1, 2)
        return self.o_proj(out.reshape(batch, seq, hidden))

    def flops(self, batch: int, seq: int) -> int:
        """The projections, and QK^T and AV over all heads (2·seq²·head_dim each, per head)."""
        hidden = self.num_heads * self.head_dim
        return self.qkv_proj.flops(batch * seq) + self.o_proj.flops(batch * seq) + 2 * 2 * batch * seq * seq * hidden


class SwiGLU(nn.Module):
    """Gated MLP. Inner width 2/3·expansion·hidden rounded up to a multiple of 256 (keeps matmuls aligned)."""

    def __init__(self, hidden_size: int, expansion: float):
        super().__init__()
        inner = swiglu_inner(hidden_size, expansion)
        self.gate_up_proj = CastedLinear(hidden_size, 2 * inner, bias=False)
        self.down_proj = CastedLinear(inner, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)

    def flops(self, batch: int, seq: int) -> int:
        """On (batch, seq, width) inputs (TRM's mlp_t: seq is the hidden axis, width the tokens)."""
        return self.gate_up_proj.flops(batch * seq) + self.down_proj.flops(batch * seq)


class ConvSwiGLU(nn.Module):
    """URM's gated MLP with a short convolution over the sequence: a = silu(gate)·up; a depthwise Conv1d along the
    positions (kernel 2, one step of padding each side, with bias), of which the first seq outputs are kept (so
    position t mixes a[t - 1] and a[t]), then silu; down_proj. The convolution runs in the activations' dtype; its
    weights are kept in fp32 like the others (a checkpoint with bf16 ones, as URM's trainer saves, loads)."""

    def __init__(self, hidden_size: int, expansion: float, kernel_size: int = 2):
        super().__init__()
        inner = swiglu_inner(hidden_size, expansion)
        self.gate_up_proj = CastedLinear(hidden_size, 2 * inner, bias=False)
        self.dwconv = nn.Conv1d(inner, inner, kernel_size, padding=kernel_size // 2, groups=inner, bias=True)
        self.down_proj = CastedLinear(inner, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        mixed = (F.silu(gate) * up).transpose(1, 2)  # (batch, inner, seq): the convolution runs along the sequence
        conv = F.conv1d(mixed, self.dwconv.weight.to(mixed.dtype), self.dwconv.bias.to(mixed.dtype),
                        padding=self.dwconv.padding, groups=self.dwconv.groups)
        return self.down_proj(F.silu(conv[..., :x.shape[1]]).transpose(1, 2))

    def flops(self, batch: int, seq: int) -> int:
        """The projections and the convolution (2·kernel per output value, over the padded length)."""
        kernel, padding = self.dwconv.kernel_size[0], self.dwconv.padding[0]
        conv_outputs = batch * self.dwconv.out_channels * (seq + 2 * padding - kernel + 1)
        return self.gate_up_proj.flops(batch * seq) + self.down_proj.flops(batch * seq) + 2 * kernel * conv_outputs
