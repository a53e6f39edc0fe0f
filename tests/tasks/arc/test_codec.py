"""tasks/arc/codec.py: the canvas, the augmentations and their inverses, the task file's text form."""
import itertools
import json
import re

import numpy as np
import pytest

from tasks.arc import codec as codecs
from tasks.arc.codec import ArcCodec, crop_prediction, encode_arc_grid, parse_arc_task
from tasks.base import PuzzleFormatError

def test_arc_encoding_matches_the_builder_and_crops_back():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (3, 7), (30, 30), (30, 2), (5, 30)]:
        grid = rng.integers(0, 10, size=(h, w))
        tokens_ = encode_arc_grid(grid)
        built = codecs.draw_on_canvas(grid[None].astype(np.uint8), np.zeros(1, np.int64), np.zeros(1, np.int64))[0]
        assert np.array_equal(tokens_, built)
        assert np.array_equal(crop_prediction(tokens_), grid)
        assert np.array_equal(codecs.crop_canvas(tokens_), grid)

    # A ragged prediction: the largest rectangle anchored at the corner is kept.
    canvas = np.zeros((30, 30), dtype=np.int64)
    canvas[:4, :5] = 3
    canvas[4, :2] = 4
    assert crop_prediction(canvas).shape == (4, 5)
    assert crop_prediction(np.zeros(900)).shape == (0, 0)


def test_every_arc_member_inverts():
    """All 8 dihedral transforms with sampled colour maps, and every colour map (9! of them) with each transform
    whose inverse is itself: augment then invert is the identity."""
    grid = np.arange(12, dtype=np.uint8).reshape(3, 4) % 10  # every colour, a shape that shows orientation
    rng = np.random.default_rng(10)
    for tid in range(8):
        for _ in range(50):
            colours = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
            moved = codecs.apply_augmentation(grid, tid, colours)
            assert np.array_equal(codecs.invert_augmentation(moved, tid, colours), grid)
            name = codecs.augmentation_name("task", tid, colours)
            assert codecs.parse_augmentation_name(name)[1] == tid
    for perm in itertools.permutations(range(1, 10)):
        colours = np.array((0,) + perm, dtype=np.uint8)
        assert np.array_equal(codecs.invert_augmentation(codecs.apply_augmentation(grid, 0, colours), 0, colours),
                              grid)


def test_arc_has_no_token_row_members():
    codec = ArcCodec()
    assert codec.kinds == () and "test split already holds every test input" in codec.no_kinds_because
    assert not codec.has_check  # any grid may be an answer


def test_arc_task_parsing(tmp_path):
    pairs = parse_arc_task(json.dumps({"train": [], "test": [{"input": [[1, 2], [3, 4]]},
                                                                    {"input": [[0]], "output": [[5]]}]}))
    assert [p[0].shape for p in pairs] == [(2, 2), (1, 1)] and pairs[0][1] is None and pairs[1][1][0, 0] == 5
    for bad, fragment in [("[", "not valid JSON"), ('{"test": []}', "non-empty \"test\""),
                          ('{"test": [{"input": [[1, 10]]}]}', "colour 10"),
                          ('{"test": [{"input": [[1], [1, 2]]}]}', "equal length")]:
        with pytest.raises(PuzzleFormatError, match=re.escape(fragment)):
            parse_arc_task(bad)
