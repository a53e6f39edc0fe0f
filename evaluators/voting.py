"""Choosing among candidate answers: the one ranking that test-time compute (training/test_time.py), the ARC
evaluator (tasks/arc/evaluator.py) and the solve CLI share.

Each distinct answer collects votes (how many variants of the puzzle produced it) and the sum of their
confidences (sigmoid(q_halt)). Answers rank by votes, then by mean confidence, then by their key, an ordering the
caller gives each answer (its tokens; for ARC its grid's shape, then its cells), so that ties never depend on the
order in which variants arrive, nor on how rows were split over processes. Confidences are summed in fixed point
(units of 2^-52) so that sums are exact and independent of their order; means are compared as exact fractions.
"""
from fractions import Fraction
from typing import Dict, Hashable, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

Key = TypeVar("Key", bound=Hashable)
CONFIDENCE_SCALE = 2 ** 52


def confidence_units(confidence: float) -> int:
    """A confidence in [0, 1] as an integer number of 2^-52 units (sums of these are exact)."""
    return int(round(confidence * CONFIDENCE_SCALE))


def rank_candidates(tallies: Dict[Key, List[int]]) -> List[Tuple[Key, int, float]]:
    """[(answer, votes, mean confidence)] best first, from {answer key: [votes, confidence sum in units]} (every
    answer with at least one vote)."""
    ranked = sorted(tallies.items(), key=lambda kv: (-kv[1][0], -Fraction(kv[1][1], kv[1][0]), kv[0]))
    return [(key, votes, units / votes / CONFIDENCE_SCALE) for key, (votes, units) in ranked]


def select_candidates(candidates: np.ndarray, confidence: np.ndarray, valid: Optional[np.ndarray],
                      rule: Union[str, Sequence[str]], change: Optional[np.ndarray] = None
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """(chosen variant per puzzle, distinct candidates per puzzle) from candidates (puzzles, variants, seq_len),
    confidence (puzzles, variants) = sigmoid(q_halt), valid (puzzles, variants) or None, and change (puzzles,
    variants): how much each variant's latent moved in its last segment (for "converged").

    Invalid candidates are dropped unless none is valid. The rest are ranked by the criteria of `rule` in order,
    each breaking the ties of the ones before: "vote" (the most variants with the same answer, then their highest
    mean confidence, then the answer's tokens: a fixed order), "q" ("q_halt": the highest confidence), "converged"
    (the smallest change); the first variant of the best wins. Ties are therefore broken the same way whatever the
    variants' order, for "vote", and by the variants' order (augmentation, then trajectory) for the others.
    """
    criteria = [rule] if isinstance(rule, str) else list(rule)
    criteria = ["q" if criterion == "q_halt" else criterion for criterion in criteria]
    if "converged" in criteria and change is None:
        raise ValueError("select_candidates: the converged criterion needs each variant's last change")
    chosen = np.empty(len(candidates), dtype=np.int64)
    distinct = np.empty(len(candidates), dtype=np.int64)
    for p, (rows, conf) in enumerate(zip(candidates, confidence)):
        keep = valid[p] if valid is not None and valid[p].any() else np.ones(len(rows), dtype=bool)
        tallies: Dict[tuple, List[int]] = {}
        answer = {}
        for v in np.flatnonzero(keep):
            answer[v] = key = tuple(rows[v].tolist())
            tally = tallies.setdefault(key, [0, 0])
            tally[0] += 1
            tally[1] += confidence_units(conf[v])

        def order(v: int) -> tuple:
            parts = []
            for criterion in criteria:
                if criterion == "vote":
                    votes, units = tallies[answer[v]]
                    parts += [-votes, -Fraction(units, votes), answer[v]]
                elif criterion == "q":
                    parts.append(-conf[v])
                else:
                    parts.append(change[p, v])
            return (*parts, v)

        chosen[p] = min(answer, key=order)
        distinct[p] = len(tallies)
    return chosen, distinct
