"""Test-time compute at evaluation (docs/DESIGN.md §9): augmentation voting, latent-noise trajectories, more segments.

Every test puzzle of a batch becomes A x K variants: A members of its task's symmetry group (dataset/codecs.py;
the first is the identity, the others drawn once per evaluation from the run's seed), each run as K trajectories
whose latent z_L gets Gaussian noise of std sigma at the initial state or before every segment. All
puzzles x variants rows run as one batch, one forward per segment (static shapes), for `segments` ACT segments or
until each row halts (adaptive halting). Each variant's answer is mapped back to the puzzle's frame; those that
fail the task's check may be dropped (filter_invalid); one candidate is selected per puzzle: by votes (how many
variants gave it), then the highest mean sigmoid(q_halt), then its tokens (a fixed order), or by the single
highest q_halt.

Metrics per set: the selected answer's `exact_accuracy` and `accuracy` (the headline: what one answer per puzzle
scores), `oracle@<A*K>` (the fraction of puzzles where any candidate is right: a diagnostic, never the score),
`candidates` (distinct answers per puzzle), `valid` (the selected answer passes the task's check), `steps`
(segments per variant), `q_halt_accuracy`. Trajectory k's noise at segment s is the same tensor for every
puzzle (a generator seeded with (seed, s)), and the augmentations are shared by all puzzles, so the results do
not depend on the batch size or the number of processes.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from dataset.codecs import TaskCodec, TokenPermutation, codec_for
from dataset.common import IGNORE_LABEL_ID, PuzzleDatasetMetadata
from evaluators.voting import confidence_units, rank_candidates
from models.losses import answer_metrics
from training.config import TestTimeConfig
from training.inference import run_to_halt
from utils.errors import ConfigError

# What an evaluation with test-time compute can save per puzzle: the batch, and the selected answer.
SAVABLE = ("inputs", "labels", "puzzle_identifiers", "preds", "q_halt_logits")


def select_candidates(candidates: np.ndarray, confidence: np.ndarray, valid: Optional[np.ndarray], rule: str
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """(chosen variant per puzzle, distinct candidates per puzzle) from candidates (puzzles, variants, seq_len),
    confidence (puzzles, variants) = sigmoid(q_halt) and valid (puzzles, variants) or None.

    Invalid candidates are dropped unless none is valid. "vote": the best of evaluators/voting.py's ranking (most
    variants, then the highest mean confidence, then the first in the tokens' order), its first variant;
    "q_halt": the variant of highest confidence (the first of equals). Ties are therefore broken the same way
    whatever the variants' order.
    """
    chosen = np.empty(len(candidates), dtype=np.int64)
    distinct = np.empty(len(candidates), dtype=np.int64)
    for p, (rows, conf) in enumerate(zip(candidates, confidence)):
        keep = valid[p] if valid is not None and valid[p].any() else np.ones(len(rows), dtype=bool)
        index = np.flatnonzero(keep)
        tallies: Dict[tuple, List[int]] = {}
        first: Dict[tuple, int] = {}
        for v in index:
            key = tuple(rows[v].tolist())
            tally = tallies.setdefault(key, [0, 0])
            tally[0] += 1
            tally[1] += confidence_units(conf[v])
            first.setdefault(key, v)
        if rule == "vote":
            chosen[p] = first[rank_candidates(tallies)[0][0]]
        else:
            chosen[p] = index[int(np.argmax(conf[keep]))]
        distinct[p] = len(tallies)
    return chosen, distinct


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

    def run_batch(self, model: nn.Module, batch: Dict[str, torch.Tensor],
                  return_keys: Sequence[str], halt_on_q: bool = False
                  ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """One evaluation batch with test-time compute: (metric sums over its puzzles, the selected outputs: preds,
        q_halt_logits, and candidates, the number of distinct answers per puzzle)."""
        puzzles, V = batch["inputs"].shape[0], self.variants
        expanded = self._expand(batch)
        sums, outputs = run_to_halt(model, expanded, sorted(set(return_keys) | {"preds", "q_halt_logits"}),
                                    halt_on_q, max_steps=self.config.segments,
                                    latent_noise=self._noise(model, puzzles * V, batch["inputs"].device))

        A, K = len(self.members), self.config.trajectories
        preds = outputs["preds"].cpu().numpy().reshape(puzzles, A, K, -1)
        candidates = np.stack([self.members[a].invert(preds[:, a]) for a in range(A)], 1).reshape(puzzles, V, -1)
        q_halt = outputs["q_halt_logits"].reshape(puzzles, V)
        confidence = torch.sigmoid(q_halt.to(torch.float64)).cpu().numpy()
        inputs = batch["inputs"].cpu().numpy()
        valid = None
        if self.codec is not None:
            valid = self.codec.check(np.repeat(inputs, V, 0), candidates.reshape(puzzles * V, -1)).reshape(puzzles, V)
        chosen, distinct = select_candidates(candidates, confidence, valid if self.config.filter_invalid else None,
                                             self.config.select)

        device = batch["inputs"].device
        rows = torch.arange(puzzles, device=device)
        chosen_t = torch.as_tensor(chosen, device=device)
        selected = {"preds": torch.as_tensor(candidates[np.arange(puzzles), chosen], device=device),
                    "q_halt_logits": q_halt[rows, chosen_t], "candidates": torch.as_tensor(distinct, device=device)}
        labels = batch["labels"]
        has_labels = torch.ones(puzzles, dtype=torch.bool, device=device)
        metrics, _ = answer_metrics(selected["preds"].to(labels.dtype), labels, selected["q_halt_logits"],
                                    torch.zeros(puzzles, dtype=torch.int32, device=device), has_labels)
        metrics.pop("steps")
        # Any variant right (in the puzzle's frame): an oracle over the candidates, reported under its own name.
        every = torch.as_tensor(candidates.reshape(puzzles * V, -1), device=device).to(labels.dtype)
        _, variant_correct = answer_metrics(every, labels.repeat_interleave(V, 0), q_halt.reshape(-1),
                                            torch.zeros(puzzles * V, dtype=torch.int32, device=device),
                                            has_labels.repeat_interleave(V, 0))
        counted = labels.ne(IGNORE_LABEL_ID).any(-1)
        metrics[f"oracle@{V}"] = (variant_correct.reshape(puzzles, V).any(-1) & counted).sum()
        metrics["candidates"] = selected["candidates"][counted].sum()
        if valid is not None:
            metrics["valid"] = torch.as_tensor(valid[np.arange(puzzles), chosen], device=device)[counted].sum()
        # Segments per variant, as the loss head counted them (over all variants of the labelled puzzles).
        metrics["steps"] = sums["steps"] / V
        return metrics, selected


def build_test_time(config: TestTimeConfig, metadata: PuzzleDatasetMetadata, seed: int, where: str,
                    codec: Optional[TaskCodec] = None) -> TestTimeCompute:
    """The test-time compute of an evaluation on a dataset with `metadata`; `where` names the dataset in errors;
    `codec`: the task's, when the dataset alone does not tell it (e.g. a Sudoku's box shape)."""
    codec = codec or codec_for(metadata.vocab_size, metadata.seq_len)
    needs_task = config.augmentations > 1 or config.filter_invalid
    if needs_task and codec is None:
        raise ConfigError(f"test_time.{'augmentations' if config.augmentations > 1 else 'filter_invalid'}: cannot "
                          f"tell the task of {where} (vocab_size {metadata.vocab_size}, seq_len {metadata.seq_len}), "
                          f"so neither its symmetries nor its check are known; use augmentations=1, "
                          f"filter_invalid=false")
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
    members = [TokenPermutation(np.arange(metadata.seq_len), np.arange(metadata.vocab_size))]
    members += [codec.draw(rng, kinds) for _ in range(config.augmentations - 1)]
    return TestTimeCompute(config=config, codec=codec, members=members, seed=seed)


def check_savable(save_outputs: Sequence[str]) -> None:
    unsavable = sorted(set(save_outputs) - set(SAVABLE))
    if unsavable:
        raise ConfigError(f"eval_save_outputs: {', '.join(unsavable)} cannot be saved with test-time compute (a "
                          f"puzzle has several candidates; only the selected answer is kept): save "
                          f"{', '.join(SAVABLE)}")
