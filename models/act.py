"""The machinery every recursive reasoning model here shares: config, embeddings, heads, blocks, ACT wrapper.

HRM (Wang et al. 2025), TRM (Jolicoeur-Martineau 2025) and URM (Gao et al. 2025) differ only in their *recursion
core*: which states they carry, which networks update them, how often, and which of those calls get gradients.
Everything around it is common and lives here:

  * `ReasoningConfig`: the model config's shared fields and checks (a core's config subclasses it, naming its
    depth and its segment limit `max_segments`; `LayeredConfig` holds HRM's and TRM's names for them);
  * `ReasoningBlock` / `ReasoningModule`: the post-norm block (attention, or TRM's `mlp_t` token mixer; SwiGLU or
    another channel MLP) and a stack of blocks with its input injection;
  * `RecursiveReasoningInner`: input embedding (tokens, the puzzle-embedding prefix, positions), the initial
    states the core declares, the LM and Q heads, and one segment around the core's `recurse`;
  * `RecursiveReasoningACT`: the ACT wrapper (carry, reset of halted rows, halting rules, exploration, the optional
    Q-learning target) and the interface the trainer uses (`sparse_embeddings`, `rng_state`, `config`).

A new recursion core is one small file and one config/arch/*.yaml: a config subclass, an inner subclass that
declares its latent states (`latent_states`, `answer_state`, `noise_state`), builds its modules, implements
`recurse` and lists its module calls per segment (`segment_calls`, for the FLOP count), and an ACT subclass naming
both (models/hrm/hrm_act_v1.py, models/recursive_reasoning/trm.py, models/urm/urm.py). Nothing else changes: the
trainer, test-time compute and the benchmark read only this contract (tests/models/test_contract.py checks every
core against it).
"""
import contextlib
import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Literal, Optional, Tuple

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from models.common import run_eagerly, trunc_normal_init_
from models.layers import Attention, CastedEmbedding, CastedLinear, CosSin, RotaryEmbedding, SwiGLU, rms_norm
from models.sparse_embedding import CastedSparseEmbedding
from utils.errors import ConfigError

Batch = Dict[str, torch.Tensor]


class ReasoningConfig(pydantic.BaseModel):
    """Fields every core takes (names of the original HRM and TRM configs); a core's config subclasses it."""

    model_config = pydantic.ConfigDict(extra="forbid")

    # Derived from the dataset and the run by the trainer.
    batch_size: int = pydantic.Field(gt=0)
    seq_len: int = pydantic.Field(gt=0)
    num_puzzle_identifiers: int = pydantic.Field(gt=0)
    vocab_size: int = pydantic.Field(gt=0)
    # Architecture (config/arch/*.yaml).
    puzzle_emb_ndim: int = pydantic.Field(0, ge=0)
    # Positions prepended for the puzzle embedding; 0 = ceil(puzzle_emb_ndim / hidden_size) (HRM's rule).
    puzzle_emb_len: int = pydantic.Field(0, ge=0)
    H_cycles: int = pydantic.Field(gt=0)
    L_cycles: int = pydantic.Field(gt=0)
    hidden_size: int = pydantic.Field(gt=0)
    expansion: float = pydantic.Field(gt=0)
    num_heads: int = pydantic.Field(gt=0)
    pos_encodings: Literal["rope", "learned", "none"]
    # TRM's token-mixing MLP in place of attention (a SwiGLU over the sequence axis).
    mlp_t: bool = False
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    halt_exploration_prob: float = pydantic.Field(ge=0.0, le=1.0)
    # Halting rule in training: True halts where q_halt > 0 (TRM, no continue target); False where
    # q_halt > q_continue, with the Q-learning target from one more segment (HRM).
    no_ACT_continue: bool = False
    forward_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    causal: bool = False  # accepted for compatibility with the original configs; these models attend both ways
    # Seed of the generators behind ACT exploration and training noise (the trainer passes seed + rank).
    seed: int = 0
    # Training that makes running deeper pay (EqR, Huang et al. 2026, arXiv 2605.21488), off by default. init_noise:
    # every row starts from a random latent state (a truncated normal of this std per position and channel)
    # instead of the core's fixed initial states; evaluation starts from that distribution's centre, zero, and
    # test-time trajectories draw around it (test_time.noise_std). path_noise: Gaussian noise of this std is
    # added to the output of every call of the modules the core declares (segment_calls) while training.
    init_noise: float = pydantic.Field(0.0, ge=0)
    path_noise: float = pydantic.Field(0.0, ge=0)

    @pydantic.model_validator(mode="after")
    def _shapes_fit(self):
        if not self.mlp_t and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if not self.mlp_t and self.pos_encodings == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError("rope needs an even head dimension (hidden_size / num_heads)")
        if self.puzzle_emb_ndim == 0 and self.puzzle_emb_len > 0:
            raise ValueError(f"puzzle_emb_len is {self.puzzle_emb_len} but puzzle_emb_ndim is 0 (no puzzle "
                             f"embedding to put there); set puzzle_emb_len=0 or puzzle_emb_ndim > 0")
        if self.puzzle_emb_len * self.hidden_size and self.puzzle_emb_ndim > self.puzzle_emb_len * self.hidden_size:
            raise ValueError(f"puzzle_emb_ndim ({self.puzzle_emb_ndim}) does not fit in puzzle_emb_len "
                             f"({self.puzzle_emb_len}) positions of hidden_size {self.hidden_size}; raise "
                             f"puzzle_emb_len or set it to 0 (sized automatically)")
        return self

    @property
    def max_segments(self) -> int:
        """ACT segments per puzzle at most; evaluation runs exactly these. Each core names it."""
        raise NotImplementedError

    @property
    def prefix_len(self) -> int:
        """Positions in front of the tokens that hold the puzzle embedding."""
        if self.puzzle_emb_len > 0:
            return self.puzzle_emb_len
        return -(self.puzzle_emb_ndim // -self.hidden_size)

    @property
    def total_len(self) -> int:
        """Length of the states and of the position tables: prefix + tokens."""
        return self.seq_len + self.prefix_len


# A core's latent states by name, each (batch, prefix + seq_len, hidden): HRM's z_H and z_L (high and low level),
# TRM's z_H and z_L (the current answer "y" and the latent "z").
InnerCarry = Dict[str, torch.Tensor]


class LayeredConfig(ReasoningConfig):
    """The names HRM's and TRM's configs share: the depth of their H and L modules, and halt_max_steps."""

    H_layers: int = pydantic.Field(ge=0)
    L_layers: int = pydantic.Field(gt=0)
    halt_max_steps: int = pydantic.Field(gt=0)

    @property
    def max_segments(self) -> int:
        return self.halt_max_steps


@dataclass
class ACTCarry:
    inner_carry: InnerCarry
    steps: torch.Tensor        # (batch,) int32: segments run on the current puzzle
    halted: torch.Tensor       # (batch,) bool: row finished; replaced by new data on the next call
    current_data: Batch        # the batch rows each sequence is working on


class ReasoningBlock(nn.Module):
    """Post-norm block: x = norm(x + mix(x)); x = norm(x + mlp(x)).

    `mix` is bidirectional attention, or with `mlp_t` (TRM) a SwiGLU across the token axis: the states are
    transposed to (batch, hidden, tokens), mixed and normalised over the tokens, and transposed back.
    """

    def __init__(self, config: ReasoningConfig, mlp_class: type = SwiGLU):
        super().__init__()
        self.norm_eps = config.rms_norm_eps
        self.token_mlp = config.mlp_t
        if self.token_mlp:
            self.mlp_t = SwiGLU(config.total_len, config.expansion)
        else:
            self.self_attn = Attention(config.hidden_size, config.num_heads, causal=config.causal)
        self.mlp = mlp_class(config.hidden_size, config.expansion)

    def forward(self, hidden_states: torch.Tensor, cos_sin: Optional[CosSin]) -> torch.Tensor:
        if self.token_mlp:
            transposed = hidden_states.transpose(1, 2)
            hidden_states = rms_norm(transposed + self.mlp_t(transposed), self.norm_eps).transpose(1, 2)
        else:
            hidden_states = rms_norm(hidden_states + self.self_attn(hidden_states, cos_sin), self.norm_eps)
        return rms_norm(hidden_states + self.mlp(hidden_states), self.norm_eps)

    def flops(self, batch: int, seq: int) -> int:
        hidden = self.mlp.down_proj.weight.shape[0]
        mix = self.mlp_t.flops(batch, hidden) if self.token_mlp else self.self_attn.flops(batch, seq)
        return mix + self.mlp.flops(batch, seq)


class ReasoningModule(nn.Module):
    """A stack of blocks applied to (state + injected input): HRM's H or L module, TRM's single network."""

    def __init__(self, config: ReasoningConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([ReasoningBlock(config) for _ in range(num_layers)])

    def forward(self, hidden_states: torch.Tensor, injection: torch.Tensor,
                cos_sin: Optional[CosSin]) -> torch.Tensor:
        hidden_states = hidden_states + injection
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos_sin)
        return hidden_states

    def flops(self, batch: int, seq: int) -> int:
        return sum(layer.flops(batch, seq) for layer in self.layers)


class RecursiveReasoningInner(nn.Module):
    """One segment: embed the input, run the core's recursion from the carry, read the LM and Q heads.

    Subclasses build their reasoning modules in `build_levels` and implement `recurse`.
    """

    def __init__(self, config: ReasoningConfig):
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

        self.puzzle_emb_len = config.prefix_len
        if config.puzzle_emb_ndim > 0:
            # Zero init: a new puzzle starts with no identity and learns one (sparse SignSGD, docs/DESIGN.md §5).
            self.puzzle_emb = CastedSparseEmbedding(config.num_puzzle_identifiers, config.puzzle_emb_ndim,
                                                    batch_size=config.batch_size, init_std=0.0,
                                                    cast_to=self.forward_dtype)

        # mlp_t blocks have no attention to rotate: rope is then a no-op (as in TRM), so no tables are built.
        self.uses_rope = config.pos_encodings == "rope" and not config.mlp_t
        if self.uses_rope:
            self.rotary_emb = RotaryEmbedding(hidden // config.num_heads, max_position_embeddings=config.total_len,
                                              base=config.rope_theta)
        elif config.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(config.total_len, hidden, init_std=embed_init_std,
                                             cast_to=self.forward_dtype)

        self.build_levels()
        if config.path_noise > 0:
            for module in dict.fromkeys(module for module, _, _ in self.segment_calls()):
                module.register_forward_hook(self._add_path_noise)
        self._noise_generator: Optional[torch.Generator] = None

        # Where a row starts (or restarts after halting): one vector per state, the same at every position.
        for buffer in self.latent_states.values():
            self.register_buffer(buffer, trunc_normal_init_(torch.empty(hidden, dtype=self.forward_dtype), std=1.0),
                                 persistent=True)

        # Q head starts by strongly preferring "continue" (sigmoid(-5) ~ 0.7%), so early training is not cut
        # short by random halting (HRM paper §3.3).
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    # -- the core ----------------------------------------------------------------------------------------------
    # A core declares its latent states (name -> the persistent buffer it starts from), the state the heads read,
    # the state that test-time latent noise perturbs, and the config field that counts the cycles of a segment's
    # recursion (test_time.cycles_scale multiplies it; None: a core without cycles).
    latent_states: Dict[str, str] = {"z_H": "H_init", "z_L": "L_init"}
    answer_state = "z_H"
    noise_state = "z_L"
    cycles_key: Optional[str] = "H_cycles"

    def build_levels(self) -> None:
        """Create the reasoning modules (their attribute names are the state-dict names)."""
        raise NotImplementedError

    def recurse(self, states: InnerCarry, x: torch.Tensor, cos_sin: Optional[CosSin]) -> InnerCarry:
        """One segment's recursion from the carried states and the input embedding -> the new states."""
        raise NotImplementedError

    def segment_calls(self) -> List[Tuple[nn.Module, int, int]]:
        """What `recurse` calls in one segment: (module, calls without gradient, calls with gradient), each module
        with a `flops(batch, seq)` (the throughput benchmark counts FLOPs from these)."""
        raise NotImplementedError

    def segment_flops(self, batch: int) -> Dict[str, int]:
        """Matmul FLOPs of one segment on `batch` rows: the calls without gradient, those with gradient, and the
        heads (lm_head on every position, q_head on the first)."""
        seq = self.config.total_len
        calls = self.segment_calls()
        heads = self.lm_head.flops(batch * seq) + self.q_head.flops(batch)
        return {"no_grad": sum(n * module.flops(batch, seq) for module, n, _ in calls),
                "grad": sum(n * module.flops(batch, seq) for module, _, n in calls), "heads": heads}

    # -- shared ------------------------------------------------------------------------------------------------

    def input_embeddings(self, inputs: torch.Tensor, puzzle_identifiers: torch.Tensor) -> torch.Tensor:
        embedding = self.embed_tokens(inputs.to(torch.int32))
        if self.config.puzzle_emb_ndim > 0:
            # The puzzle embedding fills the start of the flattened prefix; the rest of it stays zero.
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
        shape = (batch_size, self.config.total_len, self.config.hidden_size)
        # Every row is reset to its initial states before use; zeros (not torch.empty) keep the carry
        # deterministic, which exact-resume checks compare.
        return {name: torch.zeros(shape, dtype=self.forward_dtype, device=device) for name in self.latent_states}

    def reset_carry(self, reset: torch.Tensor, carry: InnerCarry, starts: Optional[InnerCarry] = None
                    ) -> InnerCarry:
        """Rows of `reset` restart from the initial states (`starts` in their place, with init_noise)."""
        reset = reset.view(-1, 1, 1)
        return {name: torch.where(reset, getattr(self, buffer) if starts is None else starts[name], carry[name])
                for name, buffer in self.latent_states.items()}

    # -- training noise (init_noise, path_noise) ------------------------------------------------------------------

    def noise_generator(self) -> torch.Generator:
        """The generator of the training noise: its own stream of the config's seed, on the model's device."""
        device = self.lm_head.weight.device
        if self._noise_generator is None or self._noise_generator.device != device:
            self._noise_generator = torch.Generator(device=device)
            self._noise_generator.manual_seed((self.config.seed * 1_000_003 + 17) % 2 ** 63)
        return self._noise_generator

    # Outside torch.compile, as ACT exploration: a generator argument cannot be traced.
    @run_eagerly
    def random_starts(self, carry: InnerCarry) -> InnerCarry:
        """init_noise: in training a random state per row (a truncated normal, as EqR draws them); in evaluation
        the centre of that distribution, zero."""
        if not self.training:
            return {name: torch.zeros_like(state) for name, state in carry.items()}
        generator = self.noise_generator()
        return {name: trunc_normal_init_(torch.empty(state.shape, device=state.device), self.config.init_noise,
                                         generator=generator).to(state.dtype) for name, state in carry.items()}

    def _add_path_noise(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        """path_noise (a forward hook on the core's modules): the update, plus Gaussian noise while training."""
        if not self.training:
            return output
        return output + self._path_noise(output)

    # The hook itself stays traceable: it is bound when registered, before compile_model marks methods disabled.
    @run_eagerly
    def _path_noise(self, output: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(output.shape, generator=self.noise_generator(), device=output.device)
        return (self.config.path_noise * noise).to(output.dtype)

    def forward(self, carry: InnerCarry, batch: Batch
                ) -> Tuple[InnerCarry, torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        cos_sin = self.rotary_emb() if self.uses_rope else None
        x = self.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
        states = self.recurse(carry, x, cos_sin)
        answer = states[self.answer_state]
        logits = self.lm_head(answer)[:, self.puzzle_emb_len:]
        q_logits = self.q_head(answer[:, 0]).to(torch.float32)
        return {name: state.detach() for name, state in states.items()}, logits, (q_logits[..., 0], q_logits[..., 1])


class RecursiveReasoningACT(nn.Module):
    """ACT wrapper: one call = one segment for every row; halted rows pick up new puzzles from the batch.

    What the trainer may use (and nothing else of a model's internals):
      * `config`                  the validated model config;
      * `initial_carry(batch)`, `forward(carry, batch, halt_on_q=False, max_steps=None, latent_noise=None)`;
      * `sparse_embeddings()`     the tables trained by the sparse SignSGD (buffers, not parameters);
      * `rng_state()` / `load_rng_state(state)`  the model's own random generators, for exact resume.
    """

    config_class = ReasoningConfig
    inner_class = RecursiveReasoningInner
    # Updates by which the original trainer of this core reads its learning-rate schedule behind the update it
    # applies (training/state.py Schedule; config lr_schedule_lag): HRM's and TRM's read it at the update itself.
    original_lr_schedule_lag = 0

    def __init__(self, config_dict: dict):
        super().__init__()
        self.config = self.config_class(**config_dict)
        self.inner = self.inner_class(self.config)
        # ACT exploration draws from its own generator (created on the model's device at first use), so runs
        # are reproducible from the config seed and the state can be checkpointed.
        self._generator: Optional[torch.Generator] = None

    # -- the trainer's interface ---------------------------------------------------------------------------------

    def sparse_embeddings(self) -> List[CastedSparseEmbedding]:
        return [m for m in self.modules() if isinstance(m, CastedSparseEmbedding)]

    def _device(self) -> torch.device:
        return self.inner.lm_head.weight.device

    def exploration_generator(self) -> torch.Generator:
        device = self._device()
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.config.seed)
        return self._generator

    def rng_state(self) -> Dict[str, torch.Tensor]:
        state = {"exploration": self.exploration_generator().get_state().cpu()}
        if self.config.init_noise > 0 or self.config.path_noise > 0:
            state["noise"] = self.inner.noise_generator().get_state().cpu()
        return state

    def load_rng_state(self, state: Dict[str, torch.Tensor]) -> None:
        self.exploration_generator().set_state(state["exploration"])
        if "noise" in state:
            self.inner.noise_generator().set_state(state["noise"])

    @contextlib.contextmanager
    def deeper(self, cycles_scale: int) -> Iterator[None]:
        """Inside the block every segment runs `cycles_scale` times the core's cycles (its cycles_key): more depth
        at test time than trained."""
        if cycles_scale == 1:
            yield
            return
        key, trained = self.inner.cycles_key, self.inner.config
        if key is None:
            raise ConfigError(f"test_time.cycles_scale: {type(self).__name__} has no cycles to scale; use "
                              f"cycles_scale=1 and test_time.segments for more depth")
        self.inner.config = trained.model_copy(update={key: getattr(trained, key) * cycles_scale})
        try:
            yield
        finally:
            self.inner.config = trained

    # -- ACT ---------------------------------------------------------------------------------------------------

    # Outside torch.compile: a generator argument cannot be traced (graph breaks and a recompile otherwise).
    @run_eagerly
    def _exploration_min_steps(self, steps: torch.Tensor) -> torch.Tensor:
        """Exploration: with probability halt_exploration_prob a row must run at least U{2..max} segments."""
        gen = self.exploration_generator()
        explore = torch.rand(steps.shape, generator=gen, device=steps.device) < self.config.halt_exploration_prob
        min_steps = torch.randint(2, self.config.max_segments + 1, steps.shape, generator=gen, device=steps.device,
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

    def _wants_halt(self, q_halt_logits: torch.Tensor, q_continue_logits: torch.Tensor) -> torch.Tensor:
        if self.config.no_ACT_continue:
            return q_halt_logits > 0  # TRM: sigmoid(q_halt) > 0.5, the head's belief that the answer is right
        return q_halt_logits > q_continue_logits

    def forward(self, carry: ACTCarry, batch: Batch, halt_on_q: bool = False, max_steps: Optional[int] = None,
                latent_noise: Optional[torch.Tensor] = None) -> Tuple[ACTCarry, Dict[str, torch.Tensor]]:
        """One segment. In evaluation, rows run max_segments segments (`max_steps` to run more or fewer), or with
        `halt_on_q` stop as soon as their Q head says halt (adaptive inference). `latent_noise` (rows, positions,
        hidden) is added to the core's `noise_state` before the segment (test-time trajectories)."""
        halted = carry.halted
        starts = self.inner.random_starts(carry.inner_carry) if self.config.init_noise > 0 else None
        inner_carry = self.inner.reset_carry(halted, carry.inner_carry, starts)
        if latent_noise is not None:
            noisy = self.inner.noise_state
            inner_carry = {**inner_carry, noisy: inner_carry[noisy] + latent_noise.to(inner_carry[noisy].dtype)}
        steps = torch.where(halted, 0, carry.steps)
        current_data = {k: torch.where(halted.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v)
                        for k, v in carry.current_data.items()}

        inner_carry, logits, (q_halt_logits, q_continue_logits) = self.inner(inner_carry, current_data)
        outputs = {"logits": logits, "q_halt_logits": q_halt_logits, "q_continue_logits": q_continue_logits}

        with torch.no_grad():
            steps = steps + 1
            is_last_step = steps >= (max_steps or self.config.max_segments)
            halted = is_last_step
            # Evaluation runs max_segments segments by default, so batches are comparable and static in shape.
            if halt_on_q and not self.training:
                halted = halted | self._wants_halt(q_halt_logits, q_continue_logits)
            if self.training and self.config.max_segments > 1:
                halted = halted | self._wants_halt(q_halt_logits, q_continue_logits)
                halted = halted & (steps >= self._exploration_min_steps(steps))

                if not self.config.no_ACT_continue:
                    # Q-learning target for "continue": the value of the next segment (no gradient, HRM eq. 5).
                    _, _, (next_q_halt, next_q_continue) = self.inner(inner_carry, current_data)
                    outputs["target_q_continue"] = torch.sigmoid(
                        torch.where(is_last_step, next_q_halt, torch.maximum(next_q_halt, next_q_continue)))

        return ACTCarry(inner_carry, steps, halted, current_data), outputs
