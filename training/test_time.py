"""Test-time compute at evaluation (docs/DESIGN.md §9): depth beyond the trained one, breadth, and a selector.

Depth: `segments` ACT segments (more than the model's limit runs deeper than trained), each running `cycles_scale`
times the core's cycles, every row to the end (`halting=never`) or until its Q head says halt (`halting=q`).
Breadth: every test puzzle of a batch becomes A x K variants: A members of its task's symmetry group
(tasks/<task>/codec.py; the first is the identity, the others drawn once per evaluation from the run's seed), each
run as K trajectories whose noise state gets Gaussian noise of std sigma at the initial state or before every
segment. All puzzles x variants rows run as one batch, one forward per segment (static shapes). Each variant's
answer is mapped back to the puzzle's frame (`run_variants`), then one is selected per puzzle (`score`): answers
that fail the task's check may be dropped (select starting with valid, or filter_invalid), and the rest ranked
by the criteria of `select` (evaluators/voting.py): votes, the highest q_halt, the smallest latent change in the
last segment.

Metrics per set: the selected answer's `exact_accuracy` and `accuracy` (the headline: what one answer per puzzle
scores), `oracle@<A*K>` (the fraction of puzzles where any candidate is right: a diagnostic, never the score),
`candidates` (distinct answers per puzzle), `valid` (the selected answer passes the task's check), `steps`
(segments per variant), `q_halt_accuracy`. Trajectory k's noise at segment s is the same tensor for every
puzzle (a generator seeded with (seed, s)), and the augmentations are shared by all puzzles, so the results do
not depend on the batch size or the number of processes.
"""
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from dataset.common import IGNORE_LABEL_ID, PuzzleDatasetMetadata
from evaluators.voting import select_candidates
from models.losses import answer_metrics
from tasks.base import TaskCodec, TokenPermutation
from training.config import TestTimeConfig
from training.inference import LATENT_CHANGE, run_to_halt
from utils.errors import ConfigError

# What an evaluation with test-time compute can save per puzzle: the batch, and the selected answer.
SAVABLE = ("inputs", "labels", "puzzle_identifiers", "preds", "q_halt_logits")


@dataclass
class TestTimeCompute:
    config: TestTimeConfig
    codec: Optional[TaskCodec]
    members: List[TokenPermutation]   # the A augmentations, identity first
    seed: int
    _noise_cache: Dict[Tuple[int, str, int], torch.Tensor] = field(default_factory=dict)

    @property
    def variants(self) -> int:
        return self.config.variants

    def _expand(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """(puzzles, ...) -> (puzzles * A * K, ...): puzzle p's variants are rows p*A*K .. (p+1)*A*K - 1,
        augmentation-major (variant a*K + k is augmentation a, trajectory k)."""
        K = self.config.trajectories
        expanded = {}
        for key, value in batch.items():
            if key == "inputs":
                moved = np.stack([member.apply(value.cpu().numpy()) for member in self.members], 1)  # (P, A, S)
                value = torch.as_tensor(moved, dtype=value.dtype, device=value.device)
            else:  # labels stay in the puzzle's frame: answers are scored after they are mapped back
                value = value.unsqueeze(1).expand(-1, len(self.members), *value.shape[1:])
            expanded[key] = value.unsqueeze(2).expand(-1, -1, K, *value.shape[2:]).reshape(-1, *value.shape[2:])
        return expanded

    def _noise(self, model: nn.Module, rows: int, device: torch.device) -> Optional[Callable[[int], torch.Tensor]]:
        if self.config.noise_std == 0:
            return None
        model_config = model.model_config
        K, std = self.config.trajectories, self.config.noise_std
        shape = (K, model_config.total_len, model_config.hidden_size)

        def at(segment: int) -> Optional[torch.Tensor]:
            if self.config.noise_at == "init" and segment > 0:
                return None
            key = (segment, str(device), rows)
            if key not in self._noise_cache:  # the same noise for every batch of the evaluation
                generator = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + segment)
                noise = std * torch.randn(shape, generator=generator, device=device)
                self._noise_cache[key] = noise.repeat(rows // K, 1, 1)  # row r is trajectory r % K
            return self._noise_cache[key]
        return at

    def run_variants(self, model: nn.Module, batch: Dict[str, torch.Tensor], return_keys: Sequence[str] = (),
                     halt_on_q: bool = False, changes: bool = False) -> "Variants":
        """Every variant of the batch's puzzles run to its end, its answer in the puzzle's frame; `changes` also
        measures each variant's latent change in its last segment (which the converged criterion reads)."""
        puzzles, V = batch["inputs"].shape[0], self.variants
        expanded = self._expand(batch)
        changes = changes or "converged" in self.config.ranking
        keys = set(return_keys) | {"preds", "q_halt_logits"} | ({LATENT_CHANGE} if changes else set())
        with model.deeper(self.config.cycles_scale) if self.config.cycles_scale > 1 else nullcontext():
            sums, outputs = run_to_halt(model, expanded, sorted(keys), halt_on_q or self.config.halting == "q",
                                        max_steps=self.config.segments,
                                        latent_noise=self._noise(model, puzzles * V, batch["inputs"].device))

        A, K = len(self.members), self.config.trajectories
        preds = outputs["preds"].cpu().numpy().reshape(puzzles, A, K, -1)
        candidates = np.stack([self.members[a].invert(preds[:, a]) for a in range(A)], 1).reshape(puzzles, V, -1)
        q_halt = outputs["q_halt_logits"].reshape(puzzles, V)
        valid = None
        if self.codec is not None and self.codec.has_check:
            inputs = np.repeat(batch["inputs"].cpu().numpy(), V, 0)
            valid = self.codec.check(inputs, candidates.reshape(puzzles * V, -1)).reshape(puzzles, V)
        change = outputs[LATENT_CHANGE].reshape(puzzles, V).cpu().numpy() if changes else None
        return Variants(candidates, q_halt, valid, change, sums["steps"])

    def score(self, variants: "Variants", labels: torch.Tensor, select: Optional[TestTimeConfig] = None
              ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """(metric sums over the puzzles, the selected outputs: preds, q_halt_logits, and candidates, the number of
        distinct answers per puzzle) of the answers `select` (default this evaluation's config) picks."""
        select = select or self.config
        puzzles, V = variants.candidates.shape[:2]
        device = labels.device
        confidence = torch.sigmoid(variants.q_halt.to(torch.float64)).cpu().numpy()
        chosen, distinct = select_candidates(variants.candidates, confidence,
                                             variants.valid if select.filters else None, select.ranking,
                                             variants.change)
        rows = torch.arange(puzzles, device=device)
        selected = {"preds": torch.as_tensor(variants.candidates[np.arange(puzzles), chosen], device=device),
                    "q_halt_logits": variants.q_halt[rows, torch.as_tensor(chosen, device=device)],
                    "candidates": torch.as_tensor(distinct, device=device)}
        has_labels = torch.ones(puzzles, dtype=torch.bool, device=device)
        metrics, _ = answer_metrics(selected["preds"].to(labels.dtype), labels, selected["q_halt_logits"],
                                    torch.zeros(puzzles, dtype=torch.int32, device=device), has_labels)
        metrics.pop("steps")
        # Any variant right (in the puzzle's frame): an oracle over the candidates, reported under its own name.
        every = torch.as_tensor(variants.candidates.reshape(puzzles * V, -1), device=device).to(labels.dtype)
        _, variant_correct = answer_metrics(every, labels.repeat_interleave(V, 0), variants.q_halt.reshape(-1),
                                            torch.zeros(puzzles * V, dtype=torch.int32, device=device),
                                            has_labels.repeat_interleave(V, 0))
        counted = labels.ne(IGNORE_LABEL_ID).any(-1)
        metrics[f"oracle@{V}"] = (variant_correct.reshape(puzzles, V).any(-1) & counted).sum()
        metrics["candidates"] = selected["candidates"][counted].sum()
        if variants.valid is not None:
            metrics["valid"] = torch.as_tensor(variants.valid[np.arange(puzzles), chosen], device=device)[counted].sum()
        # Segments per variant, as the loss head counted them (over all variants of the labelled puzzles).
        metrics["steps"] = variants.steps / V
        return metrics, selected

    def run_batch(self, model: nn.Module, batch: Dict[str, torch.Tensor],
                  return_keys: Sequence[str], halt_on_q: bool = False
                  ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """One evaluation batch with test-time compute: `score` of `run_variants`."""
        return self.score(self.run_variants(model, batch, return_keys, halt_on_q), batch["labels"])


@dataclass
class Variants:
    """A batch's puzzles as their variants' answers, and what the selectors read."""
    candidates: np.ndarray          # (puzzles, variants, seq_len): each variant's answer in its puzzle's frame
    q_halt: torch.Tensor            # (puzzles, variants): the final q_halt logits
    valid: Optional[np.ndarray]     # (puzzles, variants): the task's check, where it has one
    change: Optional[np.ndarray]    # (puzzles, variants): latent change in the last segment, when measured
    steps: torch.Tensor             # the segments run, summed over the labelled variants


def build_test_time(config: TestTimeConfig, metadata: PuzzleDatasetMetadata, codec: Optional[TaskCodec], seed: int,
                    where: str) -> TestTimeCompute:
    """The test-time compute of an evaluation on a dataset with `metadata` of the task of `codec` (None: no task
    fits it); `where` names the dataset in errors."""
    check_key = "filter_invalid" if config.filter_invalid else "select"
    needs_task = config.augmentations > 1 or config.filters
    if needs_task and codec is None:
        raise ConfigError(f"test_time.{'augmentations' if config.augmentations > 1 else check_key}: cannot "
                          f"tell the task of {where} (vocab_size {metadata.vocab_size}, seq_len {metadata.seq_len}), "
                          f"so neither its symmetries nor its check are known; use augmentations=1, "
                          f"filter_invalid=false and no valid in select")
    if config.filters and not codec.has_check:
        raise ConfigError(f"test_time.{check_key}: {codec.name} has no answer check to select valid answers by; "
                          + ("set filter_invalid=false" if config.filter_invalid else "remove valid from select"))
    kinds = list(codec.kinds) if codec is not None else []
    if config.augmentation_kinds is not None:
        unknown = sorted(set(config.augmentation_kinds) - set(kinds))
        if unknown:
            raise ConfigError(f"test_time.augmentation_kinds: {codec.name if codec else where} has no "
                              f"{', '.join(repr(k) for k in unknown)} augmentation; it has: "
                              f"{', '.join(kinds) or 'none'}")
        kinds = list(config.augmentation_kinds)
    if config.augmentations > 1 and not kinds:
        raise ConfigError(f"test_time.augmentations: {codec.name} has no augmentations to draw"
                          + (f" ({codec.no_kinds_because})" if codec.no_kinds_because else ""))
    rng = np.random.default_rng([seed, 9])  # the augmentations' own stream of the run's seed
    members = [TokenPermutation.identity(metadata.seq_len, metadata.vocab_size)]
    members += [codec.draw(rng, kinds) for _ in range(config.augmentations - 1)]
    return TestTimeCompute(config=config, codec=codec, members=members, seed=seed)


def check_savable(save_outputs: Sequence[str]) -> None:
    unsavable = sorted(set(save_outputs) - set(SAVABLE))
    if unsavable:
        raise ConfigError(f"eval_save_outputs: {', '.join(unsavable)} cannot be saved with test-time compute (a "
                          f"puzzle has several candidates; only the selected answer is kept): save "
                          f"{', '.join(SAVABLE)}")
