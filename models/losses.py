"""ACT loss head (docs/DESIGN.md §4): LM loss on the answer tokens plus the Q-learning losses of the halting head."""
from typing import Any, Dict, Literal, NamedTuple, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from dataset.common import IGNORE_LABEL_ID  # labels the loss skips (the loaders map ignore_label_id to it)
from utils.errors import ConfigError


def log_stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log of StableMax (Prieto et al. 2025): s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0, normalised.

    Grows linearly rather than exponentially, which avoids the softmax collapse the HRM authors saw on small
    data sets.
    """
    # clamp: the branch torch.where does not pick is still computed, and 1 / (1 - x) at x = 1 is infinite, whose
    # zero-weighted gradient would be NaN.
    s = torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x + 1)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            ignore_index: int = IGNORE_LABEL_ID) -> torch.Tensor:
    """Per-token loss (0 where ignored). float64: s(x) is only polynomially small, so fp32 loses its tail."""
    logprobs = log_stablemax(logits.to(torch.float64), dim=-1)
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, 0).to(torch.long)
    picked = torch.gather(logprobs, index=safe_labels.unsqueeze(-1), dim=-1).squeeze(-1)
    return -torch.where(valid, picked, 0)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                          ignore_index: int = IGNORE_LABEL_ID) -> torch.Tensor:
    """Per-token softmax cross-entropy in fp32 (0 where ignored)."""
    return F.cross_entropy(logits.to(torch.float32).reshape(-1, logits.shape[-1]), labels.to(torch.long).reshape(-1),
                           ignore_index=ignore_index, reduction="none").view(labels.shape)


LOSS_FUNCTIONS = {"stablemax_cross_entropy": stablemax_cross_entropy, "softmax_cross_entropy": softmax_cross_entropy}


def answer_metrics(preds: torch.Tensor, labels: torch.Tensor, q_halt_logits: torch.Tensor, steps: torch.Tensor,
                   rows: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """Metric sums over the `rows` (bool, e.g. those that halted) that have labels: count, accuracy (each
    sequence's fraction of correct labelled tokens), exact_accuracy, q_halt_accuracy ((q_halt >= 0) == fully
    correct), steps; and every sequence's "fully correct" flag."""
    mask = labels != IGNORE_LABEL_ID
    loss_counts = mask.sum(-1)
    is_correct = mask & (preds == labels)
    seq_is_correct = is_correct.sum(-1) == loss_counts
    valid = rows & (loss_counts > 0)
    metrics = {
        "count": valid.sum(),
        "accuracy": torch.where(valid, (is_correct.to(torch.float32) / loss_counts.clamp_min(1).unsqueeze(-1)).sum(-1),
                                0).sum(),
        "exact_accuracy": (valid & seq_is_correct).sum(),
        "q_halt_accuracy": (valid & ((q_halt_logits >= 0) == seq_is_correct)).sum(),
        "steps": torch.where(valid, steps, 0).sum(),
    }
    return metrics, seq_is_correct


class StepOutput(NamedTuple):
    """What one segment of the loss head gives back."""
    carry: Any                           # the ACT carry for the next segment (models/act.py ACTCarry)
    loss: torch.Tensor                   # summed over the batch's rows: the trainer divides by the global batch
    metrics: Dict[str, torch.Tensor]     # sums over the rows that halted this segment (see answer_metrics)
    outputs: Dict[str, torch.Tensor]     # the requested `return_keys`, detached
    all_halted: torch.Tensor             # bool: every row halted (evaluation runs until it is)


class ACTLossHead(nn.Module):
    """Wraps an ACT model: one call runs one segment and returns its StepOutput.

    Metrics are *sums* over the rows that halted this segment and have labels; the trainer divides them by the
    count (or, for losses, by the global batch size) after reducing across ranks.
    """

    def __init__(self, model: nn.Module, loss_type: Literal["stablemax_cross_entropy", "softmax_cross_entropy"]):
        super().__init__()
        if loss_type not in LOSS_FUNCTIONS:
            raise ConfigError(f"loss_type: unknown {loss_type!r}; choose one of {sorted(LOSS_FUNCTIONS)}")
        self.model = model
        self.loss_fn = LOSS_FUNCTIONS[loss_type]

    # The ACT model's interface to the trainer, reached through the head (which the trainer holds).

    @property
    def model_config(self):
        """The ACT model's validated config."""
        return self.model.config

    def initial_carry(self, *args, **kwargs):
        return self.model.initial_carry(*args, **kwargs)

    def sparse_embeddings(self):
        return self.model.sparse_embeddings()

    def rng_state(self):
        return self.model.rng_state()

    def load_rng_state(self, state) -> None:
        self.model.load_rng_state(state)

    def deeper(self, cycles_scale: int):
        """A block in which every segment runs `cycles_scale` times the core's cycles (test-time depth)."""
        return self.model.deeper(cycles_scale)

    def forward(self, return_keys: Sequence[str] = (), **model_kwargs) -> StepOutput:
        new_carry, outputs = self.model(**model_kwargs)
        labels = new_carry.current_data["labels"]

        with torch.no_grad():
            outputs["preds"] = torch.argmax(outputs["logits"], dim=-1)
            metrics, seq_is_correct = answer_metrics(outputs["preds"], labels, outputs["q_halt_logits"],
                                                     new_carry.steps, new_carry.halted)
            loss_divisor = (labels != IGNORE_LABEL_ID).sum(-1).clamp_min(1).unsqueeze(-1)

        # Each sequence weighs the same whatever its number of labelled tokens.
        lm_loss = (self.loss_fn(outputs["logits"], labels, ignore_index=IGNORE_LABEL_ID) / loss_divisor).sum()
        q_halt_loss = F.binary_cross_entropy_with_logits(
            outputs["q_halt_logits"], seq_is_correct.to(outputs["q_halt_logits"].dtype), reduction="sum")
        metrics["lm_loss"] = lm_loss.detach()
        metrics["q_halt_loss"] = q_halt_loss.detach()

        q_continue_loss = torch.zeros((), dtype=q_halt_loss.dtype, device=q_halt_loss.device)
        if "target_q_continue" in outputs:
            q_continue_loss = F.binary_cross_entropy_with_logits(
                outputs["q_continue_logits"], outputs["target_q_continue"], reduction="sum")
            metrics["q_continue_loss"] = q_continue_loss.detach()

        detached = {k: outputs[k].detach() for k in return_keys if k in outputs}
        loss = lm_loss + 0.5 * (q_halt_loss + q_continue_loss)
        return StepOutput(new_carry, loss, metrics, detached, new_carry.halted.all())
