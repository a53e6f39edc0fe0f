"""Hierarchical Reasoning Model with Adaptive Computation Time (Wang et al. 2025, arXiv 2506.21734).

Two recurrent transformer modules: L (fast, low level) updates L_cycles times per H (slow, high level) update,
H_cycles times per segment. Only the last L and H updates of a segment get gradients (the paper's one-step
gradient approximation, §3.2), so memory does not grow with the number of cycles. The ACT wrapper runs one
segment per call and lets a Q head decide when each sequence halts (§3.3, Q-learning on halt/continue).
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Literal, Optional, Tuple

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from models.common import trunc_normal_init_
from models.layers import Attention, CastedEmbedding, CastedLinear, CosSin, RotaryEmbedding, SwiGLU, rms_norm
from models.sparse_embedding import CastedSparseEmbedding

Batch = Dict[str, torch.Tensor]


class HierarchicalReasoningModel_ACTV1Config(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    # Derived from the dataset and the run by the trainer.
    batch_size: int = pydantic.Field(gt=0)
    seq_len: int = pydantic.Field(gt=0)
    num_puzzle_identifiers: int = pydantic.Field(gt=0)
    vocab_size: int = pydantic.Field(gt=0)
    # Architecture (config/arch/*.yaml).
    puzzle_emb_ndim: int = pydantic.Field(0, ge=0)
    H_cycles: int = pydantic.Field(gt=0)
    L_cycles: int = pydantic.Field(gt=0)
    H_layers: int = pydantic.Field(gt=0)
    L_layers: int = pydantic.Field(gt=0)
    hidden_size: int = pydantic.Field(gt=0)
    expansion: float = pydantic.Field(gt=0)
    num_heads: int = pydantic.Field(gt=0)
    pos_encodings: Literal["rope", "learned"]
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    halt_max_steps: int = pydantic.Field(gt=0)
    halt_exploration_prob: float = pydantic.Field(ge=0.0, le=1.0)
    forward_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    causal: bool = False  # accepted for compatibility with the original configs; HRM attends both ways
    # Seed of the generator behind ACT exploration (the trainer passes seed + rank).
    seed: int = 0

    @pydantic.model_validator(mode="after")
    def _heads_divide_hidden(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.pos_encodings == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError("rope needs an even head dimension (hidden_size / num_heads)")
        return self


@dataclass
class InnerCarry:
    z_H: torch.Tensor
    z_L: torch.Tensor


@dataclass
class ACTCarry:
    inner_carry: InnerCarry
    steps: torch.Tensor        # (batch,) int32: segments run on the current puzzle
    halted: torch.Tensor       # (batch,) bool: row finished; replaced by new data on the next call
    current_data: Batch        # the batch rows each sequence is working on


class HierarchicalReasoningModel_ACTV1Block(nn.Module):
    """Post-norm transformer block: x = norm(x + attn(x)); x = norm(x + mlp(x))."""

    def __init__(self, config: HierarchicalReasoningModel_ACTV1Config):
        super().__init__()
        self.self_attn = Attention(config.hidden_size, config.num_heads, causal=config.causal)
        self.mlp = SwiGLU(config.hidden_size, config.expansion)
        self.norm_eps = config.rms_norm_eps

    def forward(self, hidden_states: torch.Tensor, cos_sin: Optional[CosSin]) -> torch.Tensor:
        hidden_states = rms_norm(hidden_states + self.self_attn(hidden_states, cos_sin), self.norm_eps)
        return rms_norm(hidden_states + self.mlp(hidden_states), self.norm_eps)


class HierarchicalReasoningModel_ACTV1ReasoningModule(nn.Module):
    """A stack of blocks applied to (state + injected input): the H or the L module."""

    def __init__(self, layers: List[HierarchicalReasoningModel_ACTV1Block]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden_states: torch.Tensor, injection: torch.Tensor,
                cos_sin: Optional[CosSin]) -> torch.Tensor:
        hidden_states = hidden_states + injection
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos_sin)
        return hidden_states


class HierarchicalReasoningModel_ACTV1_Inner(nn.Module):
    """One segment: the nested H/L cycles, the LM head and the Q (halt/continue) head."""

    def __init__(self, config: HierarchicalReasoningModel_ACTV1Config):
        super().__init__()
        self.config = config
        self.forward_dtype = getattr(torch, config.forward_dtype)
        hidden = config.hidden_size

        # Embeddings are scaled up by sqrt(hidden) in the forward, so they start at std 1/sqrt(hidden).
        self.embed_scale = math.sqrt(hidden)
        embed_init_std = 1.0 / self.embed_scale
        self.embed_tokens = CastedEmbedding(config.vocab_size, hidden, init_std=embed_init_std,
                                            cast_to=self.forward_dtype)
        self.lm_head = CastedLinear(hidden, config.vocab_size, bias=False)
        self.q_head = CastedLinear(hidden, 2, bias=True)

        # The puzzle embedding is prepended as ceil(puzzle_emb_ndim / hidden) extra positions.
        self.puzzle_emb_len = -(config.puzzle_emb_ndim // -hidden)
        if config.puzzle_emb_ndim > 0:
            # Zero init: a new puzzle starts with no identity and learns one (sparse SignSGD, DESIGN §5).
            self.puzzle_emb = CastedSparseEmbedding(config.num_puzzle_identifiers, config.puzzle_emb_ndim,
                                                    batch_size=config.batch_size, init_std=0.0,
                                                    cast_to=self.forward_dtype)

        total_len = config.seq_len + self.puzzle_emb_len
        if config.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(hidden // config.num_heads, max_position_embeddings=total_len,
                                              base=config.rope_theta)
        else:
            self.embed_pos = CastedEmbedding(total_len, hidden, init_std=embed_init_std, cast_to=self.forward_dtype)

        self.H_level = HierarchicalReasoningModel_ACTV1ReasoningModule(
            [HierarchicalReasoningModel_ACTV1Block(config) for _ in range(config.H_layers)])
        self.L_level = HierarchicalReasoningModel_ACTV1ReasoningModule(
            [HierarchicalReasoningModel_ACTV1Block(config) for _ in range(config.L_layers)])

        self.H_init = nn.Buffer(trunc_normal_init_(torch.empty(hidden, dtype=self.forward_dtype), std=1.0),
                                persistent=True)
        self.L_init = nn.Buffer(trunc_normal_init_(torch.empty(hidden, dtype=self.forward_dtype), std=1.0),
                                persistent=True)

        # Q head starts by strongly preferring "continue" (sigmoid(-5) ~ 0.7%), so early training is not cut
        # short by random halting (paper §3.3).
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def _input_embeddings(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        embedding = self.embed_tokens(inputs.to(torch.int32))
        if self.config.puzzle_emb_ndim > 0:
            puzzle_embedding = self.puzzle_emb(puzzle_identifiers)
            pad = self.puzzle_emb_len * self.config.hidden_size - puzzle_embedding.shape[-1]
            if pad > 0:
                puzzle_embedding = F.pad(puzzle_embedding, (0, pad))
            prefix = puzzle_embedding.view(-1, self.puzzle_emb_len, self.config.hidden_size)
            embedding = torch.cat((prefix, embedding), dim=-2)
        if self.config.pos_encodings == "learned":
            # Scale by 1/sqrt(2) so the sum of two unit-variance embeddings keeps unit variance.
            embedding = (embedding + self.embed_pos.embedding_weight.to(self.forward_dtype)) / math.sqrt(2.0)
        return self.embed_scale * embedding

    def empty_carry(self, batch_size: int, device: torch.device) -> InnerCarry:
        shape = (batch_size, self.config.seq_len + self.puzzle_emb_len, self.config.hidden_size)
        # Every row is reset to H_init/L_init before use; zeros (not torch.empty) keep the carry deterministic,
        # which exact-resume checks compare.
        return InnerCarry(z_H=torch.zeros(shape, dtype=self.forward_dtype, device=device),
                          z_L=torch.zeros(shape, dtype=self.forward_dtype, device=device))

    def reset_carry(self, reset: torch.Tensor, carry: InnerCarry) -> InnerCarry:
        reset = reset.view(-1, 1, 1)
        return InnerCarry(z_H=torch.where(reset, self.H_init, carry.z_H),
                          z_L=torch.where(reset, self.L_init, carry.z_L))

    def forward(self, carry: InnerCarry, batch: Batch) -> Tuple[InnerCarry, torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        cos_sin = self.rotary_emb() if self.config.pos_encodings == "rope" else None
        x = self._input_embeddings(batch["inputs"], batch["puzzle_identifiers"])

        z_H, z_L = carry.z_H, carry.z_L
        with torch.no_grad():
            for h_step in range(self.config.H_cycles):
                last_h = h_step == self.config.H_cycles - 1
                for l_step in range(self.config.L_cycles):
                    if not (last_h and l_step == self.config.L_cycles - 1):
                        z_L = self.L_level(z_L, z_H + x, cos_sin)
                if not last_h:
                    z_H = self.H_level(z_H, z_L, cos_sin)

        # One-step gradient: only the final L and H updates are differentiated (paper §3.2).
        z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin)

        new_carry = InnerCarry(z_H=z_H.detach(), z_L=z_L.detach())
        logits = self.lm_head(z_H)[:, self.puzzle_emb_len:]
        q_logits = self.q_head(z_H[:, 0]).to(torch.float32)
        return new_carry, logits, (q_logits[..., 0], q_logits[..., 1])


class HierarchicalReasoningModel_ACTV1(nn.Module):
    """ACT wrapper: one call = one segment for every row; halted rows pick up new puzzles from the batch."""

    def __init__(self, config_dict: dict):
        super().__init__()
        self.config = HierarchicalReasoningModel_ACTV1Config(**config_dict)
        self.inner = HierarchicalReasoningModel_ACTV1_Inner(self.config)
        # ACT exploration draws from its own generator (created on the data's device at first use), so runs
        # are reproducible from the config seed and the state can be checkpointed.
        self._generator: Optional[torch.Generator] = None

    def exploration_generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.config.seed)
        return self._generator

    # Outside torch.compile: a generator argument cannot be traced (graph breaks and a recompile otherwise).
    @torch.compiler.disable
    def _exploration_min_steps(self, steps: torch.Tensor) -> torch.Tensor:
        """Exploration: with probability halt_exploration_prob a row must run at least U{2..max} segments."""
        gen = self.exploration_generator(steps.device)
        explore = torch.rand(steps.shape, generator=gen, device=steps.device) < self.config.halt_exploration_prob
        min_steps = torch.randint(2, self.config.halt_max_steps + 1, steps.shape, generator=gen, device=steps.device,
                                  dtype=steps.dtype)
        return explore * min_steps

    def initial_carry(self, batch: Batch) -> ACTCarry:
        batch_size = batch["inputs"].shape[0]
        device = batch["inputs"].device
        return ACTCarry(
            inner_carry=self.inner.empty_carry(batch_size, device),
            steps=torch.zeros(batch_size, dtype=torch.int32, device=device),
            halted=torch.ones(batch_size, dtype=torch.bool, device=device),  # all halted: first call loads data
            current_data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def forward(self, carry: ACTCarry, batch: Batch, halt_on_q: bool = False
                ) -> Tuple[ACTCarry, Dict[str, torch.Tensor]]:
        """One segment. In evaluation, rows run halt_max_steps segments, or with `halt_on_q` stop as soon as
        their Q head prefers halting (adaptive inference)."""
        halted = carry.halted
        inner_carry = self.inner.reset_carry(halted, carry.inner_carry)
        steps = torch.where(halted, 0, carry.steps)
        current_data = {k: torch.where(halted.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v)
                        for k, v in carry.current_data.items()}

        inner_carry, logits, (q_halt_logits, q_continue_logits) = self.inner(inner_carry, current_data)
        outputs = {"logits": logits, "q_halt_logits": q_halt_logits, "q_continue_logits": q_continue_logits}

        with torch.no_grad():
            steps = steps + 1
            is_last_step = steps >= self.config.halt_max_steps
            halted = is_last_step
            # Evaluation runs halt_max_steps segments by default, so batches are comparable and static in shape.
            if halt_on_q and not self.training:
                halted = halted | (q_halt_logits > q_continue_logits)
            if self.training and self.config.halt_max_steps > 1:
                halted = halted | (q_halt_logits > q_continue_logits)
                halted = halted & (steps >= self._exploration_min_steps(steps))

                # Q-learning target for "continue": the value of the next segment (no gradient, paper eq. 5).
                _, _, (next_q_halt, next_q_continue) = self.inner(inner_carry, current_data)
                outputs["target_q_continue"] = torch.sigmoid(
                    torch.where(is_last_step, next_q_halt, torch.maximum(next_q_halt, next_q_continue)))

        return ACTCarry(inner_carry, steps, halted, current_data), outputs
