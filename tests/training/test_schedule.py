import math

import pytest

from training.schedule import cosine_schedule_with_warmup_lr as lr_at


def test_warmup_is_linear_from_zero():
    assert lr_at(0, 1e-3, warmup_steps=10, total_steps=100) == 0.0
    assert lr_at(5, 1e-3, warmup_steps=10, total_steps=100) == pytest.approx(5e-4, rel=1e-15)
    assert lr_at(10, 1e-3, warmup_steps=10, total_steps=100) == pytest.approx(1e-3, rel=1e-15)


def test_cosine_endpoints_and_middle():
    base, ratio = 2.0, 0.1
    assert lr_at(10, base, 10, 110, ratio) == pytest.approx(base, rel=1e-15)
    assert lr_at(60, base, 10, 110, ratio) == pytest.approx(base * (ratio + (1 - ratio) * 0.5), rel=1e-15)
    assert lr_at(110, base, 10, 110, ratio) == pytest.approx(base * ratio, rel=1e-15)
    assert lr_at(35, base, 10, 110, ratio) == pytest.approx(
        base * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * 0.25))), rel=1e-15)


def test_constant_when_min_ratio_is_one():
    # The published ARC setting: lr_min_ratio 1.0 means warmup then constant.
    assert all(lr_at(s, 1e-4, 5, 50, 1.0) == pytest.approx(1e-4) for s in range(5, 60))


def test_no_warmup():
    assert lr_at(0, 1.0, 0, 10) == 1.0
