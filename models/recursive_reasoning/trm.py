"""Tiny Recursive Model with ACT (Jolicoeur-Martineau 2025, "Less is More: Recursive Reasoning with Tiny
Networks", arXiv 2510.04871).

One small network (`L_level`, L_layers blocks) serves both updates. z_L is the latent ("z" in the paper), z_H the
current answer ("y"). A cycle refines the latent L_cycles times from the question, the answer and itself, then
the answer once from the latent: z_L = net(z_L, z_H + x) ×L_cycles, then z_H = net(z_H, z_L). Of the H_cycles
cycles of a segment, the first H_cycles − 1 run without gradient and the last one with full backpropagation
through all its calls (§4.3: no fixed-point / one-step approximation). Embeddings, heads, blocks (attention or
`mlp_t`) and the ACT wrapper (`no_ACT_continue` halting) are shared: models/act.py.
"""
from typing import Optional, Tuple

import pydantic
import torch

from models.act import InnerCarry, LayeredConfig, ReasoningModule, RecursiveReasoningACT, RecursiveReasoningInner
from models.layers import CosSin


class TinyRecursiveReasoningModel_ACTV1Config(LayeredConfig):
    H_layers: int = 0  # TRM has no second network; kept so TRM's configs validate
    puzzle_emb_len: int = pydantic.Field(16, ge=0)
    no_ACT_continue: bool = True

    @pydantic.field_validator("H_layers")
    @classmethod
    def _one_network(cls, value: int) -> int:
        if value != 0:
            raise ValueError(f"is {value}, but TRM has one network, whose depth is L_layers; set H_layers=0 "
                             f"and choose L_layers")
        return value


class TinyRecursiveReasoningModel_ACTV1_Inner(RecursiveReasoningInner):
    def build_levels(self) -> None:
        self.L_level = ReasoningModule(self.config, self.config.L_layers)

    def _cycle(self, z_H: torch.Tensor, z_L: torch.Tensor, x: torch.Tensor, cos_sin: Optional[CosSin]
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        for _ in range(self.config.L_cycles):
            z_L = self.L_level(z_L, z_H + x, cos_sin)  # latent update: question + answer injected
        z_H = self.L_level(z_H, z_L, cos_sin)  # answer update: the same network, latent injected
        return z_H, z_L

    def recurse(self, states: InnerCarry, x: torch.Tensor, cos_sin: Optional[CosSin]) -> InnerCarry:
        z_H, z_L = states["z_H"], states["z_L"]
        with torch.no_grad():
            for _ in range(self.config.H_cycles - 1):
                z_H, z_L = self._cycle(z_H, z_L, x, cos_sin)
        z_H, z_L = self._cycle(z_H, z_L, x, cos_sin)
        return {"z_H": z_H, "z_L": z_L}

    def segment_calls(self):
        calls_per_cycle = self.config.L_cycles + 1
        return [(self.L_level, (self.config.H_cycles - 1) * calls_per_cycle, calls_per_cycle)]


class TinyRecursiveReasoningModel_ACTV1(RecursiveReasoningACT):
    config_class = TinyRecursiveReasoningModel_ACTV1Config
    inner_class = TinyRecursiveReasoningModel_ACTV1_Inner
