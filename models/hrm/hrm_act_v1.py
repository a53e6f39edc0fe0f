"""Hierarchical Reasoning Model with Adaptive Computation Time (Wang et al. 2025, arXiv 2506.21734).

Two recurrent transformer modules: L (fast, low level) updates L_cycles times per H (slow, high level) update,
H_cycles times per segment. Only the last L and H updates of a segment get gradients (the paper's one-step
gradient approximation, §3.2), so memory does not grow with the number of cycles. Embeddings, heads, blocks and
the ACT wrapper (Q-learning on halt/continue, §3.3) are shared with the other cores: models/act.py.
"""
from typing import Optional

import pydantic
import torch

from models.act import InnerCarry, LayeredConfig, ReasoningModule, RecursiveReasoningACT, RecursiveReasoningInner
from models.layers import CosSin


class HierarchicalReasoningModel_ACTV1Config(LayeredConfig):
    H_layers: int = pydantic.Field(gt=0)


class HierarchicalReasoningModel_ACTV1_Inner(RecursiveReasoningInner):
    def build_levels(self) -> None:
        self.H_level = ReasoningModule(self.config, self.config.H_layers)
        self.L_level = ReasoningModule(self.config, self.config.L_layers)

    def recurse(self, states: InnerCarry, x: torch.Tensor, cos_sin: Optional[CosSin]) -> InnerCarry:
        z_H, z_L = states["z_H"], states["z_L"]
        H_cycles, L_cycles = self.config.H_cycles, self.config.L_cycles
        with torch.no_grad():
            for h_step in range(H_cycles):
                last_h = h_step == H_cycles - 1
                for l_step in range(L_cycles):
                    if not (last_h and l_step == L_cycles - 1):
                        z_L = self.L_level(z_L, z_H + x, cos_sin)
                if not last_h:
                    z_H = self.H_level(z_H, z_L, cos_sin)

        # One-step gradient: only the final L and H updates are differentiated (paper §3.2).
        z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin)
        return {"z_H": z_H, "z_L": z_L}

    def segment_calls(self):
        H_cycles, L_cycles = self.config.H_cycles, self.config.L_cycles
        return [(self.L_level, H_cycles * L_cycles - 1, 1), (self.H_level, H_cycles - 1, 1)]


class HierarchicalReasoningModel_ACTV1(RecursiveReasoningACT):
    config_class = HierarchicalReasoningModel_ACTV1Config
    inner_class = HierarchicalReasoningModel_ACTV1_Inner
