"""Universal Reasoning Model with ACT (Gao et al. 2025, "Universal Reasoning Model", arXiv 2512.14693).

A Universal Transformer: one stack of `num_layers` post-norm blocks (attention and a SwiGLU with a short
convolution over the sequence, models/layers.py ConvSwiGLU) applied again and again to one hidden state. A pass
adds the input embedding to the state, then runs every block. A segment runs H_cycles x L_cycles passes: the first
(H_cycles - 1) x L_cycles without gradient, the last L_cycles with it (truncated backpropagation through the loop).
The heads read the state; a halted row restarts from `init_hidden`. ACT allows at most `loops` segments and halts
on q_halt > 0 alone (no continue target), with exploration as TRM's. Embeddings, heads, blocks and the ACT wrapper
are shared with the other cores: models/act.py. Names are URM's own (its configs and checkpoints load unchanged).
"""
from typing import Any, Literal, Optional

import pydantic
import torch
from torch import nn

from models.act import InnerCarry, ReasoningBlock, ReasoningConfig, RecursiveReasoningACT, RecursiveReasoningInner
from models.layers import ConvSwiGLU, CosSin

# HRM's and TRM's names for what URM calls otherwise: a config of theirs given to URM says what to use instead.
_OTHER_CORES_KEYS = {"H_layers": "num_layers", "L_layers": "num_layers", "halt_max_steps": "loops"}


class URMConfig(ReasoningConfig):
    num_layers: int = pydantic.Field(gt=0)       # depth of the one stack of blocks
    loops: int = pydantic.Field(gt=0)            # ACT segments at most (HRM/TRM: halt_max_steps)
    halt_exploration_prob: float = pydantic.Field(0.1, ge=0.0, le=1.0)  # URM's code fixes it at 0.1
    no_ACT_continue: bool = True                 # halt on q_halt > 0; no continue target
    pos_encodings: Literal["rope", "learned", "none"] = "rope"  # URM always rotates

    @pydantic.model_validator(mode="before")
    @classmethod
    def _not_hrm_or_trm_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, ours in _OTHER_CORES_KEYS.items():
                if key in data:
                    raise ValueError(f"{key} is HRM's and TRM's name; URM has one stack of blocks and counts its "
                                     f"ACT segments as loops: set arch.{ours} and remove arch.{key}")
        return data

    @property
    def max_segments(self) -> int:
        return self.loops


class URM_Inner(RecursiveReasoningInner):
    latent_states = {"hidden": "init_hidden"}
    answer_state = "hidden"
    noise_state = "hidden"

    def build_levels(self) -> None:
        self.layers = nn.ModuleList([ReasoningBlock(self.config, mlp_class=ConvSwiGLU)
                                     for _ in range(self.config.num_layers)])

    def _pass(self, hidden: torch.Tensor, x: torch.Tensor, cos_sin: Optional[CosSin]) -> torch.Tensor:
        hidden = hidden + x  # the input is added again before every pass
        for layer in self.layers:
            hidden = layer(hidden, cos_sin)
        return hidden

    def recurse(self, states: InnerCarry, x: torch.Tensor, cos_sin: Optional[CosSin]) -> InnerCarry:
        hidden = states["hidden"]
        H_cycles, L_cycles = self.config.H_cycles, self.config.L_cycles
        with torch.no_grad():
            for _ in range((H_cycles - 1) * L_cycles):
                hidden = self._pass(hidden, x, cos_sin)
        for _ in range(L_cycles):  # truncated backpropagation: gradient through the last L_cycles passes only
            hidden = self._pass(hidden, x, cos_sin)
        return {"hidden": hidden}

    def segment_calls(self):
        passes_without, passes_with = (self.config.H_cycles - 1) * self.config.L_cycles, self.config.L_cycles
        return [(layer, passes_without, passes_with) for layer in self.layers]


class URM(RecursiveReasoningACT):
    config_class = URMConfig
    inner_class = URM_Inner
    # URM's trainer sets the rate before counting the update: its update n gets the schedule at n - 1.
    original_lr_schedule_lag = 1
