"""Choosing among candidate answers: the one ranking that test-time compute (training/test_time.py) and the ARC
evaluator (evaluators/arc.py) share.

Each distinct answer collects votes (how many variants of the puzzle produced it) and the sum of their
confidences (sigmoid(q_halt)). Answers rank by votes, then by mean confidence, then by their key, an ordering the
caller gives each answer (its tokens; for ARC its grid's shape, then its cells), so that ties never depend on the
order in which variants arrive, nor on how rows were split over processes. Confidences are summed in fixed point
(units of 2^-52) so that sums are exact and independent of their order; means are compared as exact fractions.
"""
from fractions import Fraction
from typing import Dict, Hashable, List, Tuple, TypeVar

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
