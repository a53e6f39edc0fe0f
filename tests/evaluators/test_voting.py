"""evaluators/voting.py: the one ranking of candidate answers (test-time compute and the ARC evaluator)."""
from evaluators.voting import CONFIDENCE_SCALE, confidence_units, rank_candidates


def test_votes_then_mean_confidence_then_key():
    tallies = {
        (9,): [1, confidence_units(0.99)],                           # one very confident vote
        (5,): [2, confidence_units(0.2) + confidence_units(0.4)],    # two votes, mean 0.3
        (3,): [2, confidence_units(0.1) + confidence_units(0.5)],    # two votes, mean 0.3: ties with (5,)
        (4,): [2, confidence_units(0.3) + confidence_units(0.9)],    # two votes, mean 0.6
    }
    ranked = rank_candidates(tallies)
    assert [key for key, _, _ in ranked] == [(4,), (3,), (5,), (9,)]  # (3,) before (5,): the key decides the tie
    assert [votes for _, votes, _ in ranked] == [2, 2, 2, 1]
    assert ranked[0][2] == (confidence_units(0.3) + confidence_units(0.9)) / 2 / CONFIDENCE_SCALE


def test_the_order_of_arrival_does_not_matter():
    items = [((1, 2), [3, 30]), ((0, 7), [3, 30]), ((2, 0), [1, 99])]
    assert rank_candidates(dict(items)) == rank_candidates(dict(reversed(items)))


def test_confidences_sum_exactly_in_fixed_point():
    assert confidence_units(0.5) == CONFIDENCE_SCALE // 2 and confidence_units(1.0) == CONFIDENCE_SCALE
    assert sum(confidence_units(0.1) for _ in range(10)) == 10 * confidence_units(0.1)
