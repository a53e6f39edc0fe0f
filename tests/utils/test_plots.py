"""utils/plots.py: curve histories stay bounded however long the run."""
import pytest

from utils.plots import MAX_KEPT_POINTS, BoundedSeries, MetricHistory


def test_bounded_series_averages_equal_runs_of_values():
    series = BoundedSeries(limit=4)
    for step in range(1, 11):  # values = steps 1..10
        series.add(step, 10.0 * step)
    # Full at 4 points -> halved to 2 (means of 1-2, 3-4), stride 2; then 5-6, 7-8 -> full again -> means of 1-4,
    # 5-8, stride 4; 9-10 are still being averaged.
    assert series.stride == 4
    assert series.points() == ([2.5, 6.5, 9.5], [25.0, 65.0, 95.0])
    assert len(series) == 3


def test_history_of_a_long_run_keeps_at_most_the_limit_per_series():
    history = MetricHistory()
    total = 10 * MAX_KEPT_POINTS
    for step in range(1, total + 1):
        history.add({"step": step, "train/lm_loss": 1.0, "train/lr": step / total})
    for steps, values in history.train.values():
        assert len(steps) <= MAX_KEPT_POINTS
    steps, lrs = history.train["train/lr"]
    assert steps[0] == pytest.approx(8.5) and lrs[-1] == pytest.approx(steps[-1] / total)  # means of equal runs


def test_limit_must_be_even():
    with pytest.raises(ValueError):
        BoundedSeries(3)
