"""Tests of tasks/maze/build.py (dataset/build_maze_dataset.py) and its generator (generator.py)."""
import json
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from dataset.builder_common import check_split_arrays, load_split
from dataset.common import dihedral_transform, inverse_dihedral_transform
from tasks.maze import build as bmd
from tasks.maze import generator as maze_core
from tests.helpers import REPO
from utils.cli import run_command

WALL, OPEN, START, GOAL, PATH = 1, 2, 3, 4, 5


def build(argv):
    return run_command(bmd.main, [str(a) for a in argv])


def write_csv(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("source,question,answer,rating\n" + "".join(",".join(r) + "\n" for r in rows))


def bfs_distances(grid, start):
    """Plain-Python BFS over non-wall cells (independent of maze_core)."""
    h, w = grid.shape
    dist = -np.ones((h, w), dtype=np.int64)
    dist[start] = 0
    todo = deque([start])
    while todo:
        r, c = todo.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < h and 0 <= nc < w and grid[nr, nc] != WALL and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                todo.append((nr, nc))
    return dist


def check_maze(question, answer, min_len=0, unique=False):
    """The answer marks exactly one shortest S->G path (cells strictly between S and G); returns its length."""
    q, a = np.asarray(question), np.asarray(answer)
    assert set(np.unique(q).tolist()) <= {WALL, OPEN, START, GOAL}
    assert (q == START).sum() == 1 and (q == GOAL).sum() == 1
    assert np.array_equal(q == WALL, a == WALL)
    assert np.array_equal(a[q != OPEN], q[q != OPEN])       # only open cells may change ...
    assert set(np.unique(a[q == OPEN]).tolist()) <= {OPEN, PATH}  # ... and only to path marks
    s = tuple(np.argwhere(q == START)[0])
    g = tuple(np.argwhere(q == GOAL)[0])
    d_s, d_g = bfs_distances(q, s), bfs_distances(q, g)
    length = int(d_s[g])
    assert length >= max(min_len, 1)
    path = a == PATH
    assert path.sum() == length - 1
    # every marked cell lies on some shortest path, and the marks form a chain S -> G
    assert np.all(d_s[path] + d_g[path] == length)
    assert sorted(d_s[path].tolist()) == list(range(1, length))
    cells = {tuple(x) for x in np.argwhere(path)} | {s, g}
    for cell in cells - {g}:
        nxt = [(cell[0] + dr, cell[1] + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))]
        assert any(n in cells and d_s[n] == d_s[cell] + 1 for n in nxt)
    if unique:  # no other shortest path: the number of cells on shortest paths equals the path's cells
        assert int(np.sum((d_s >= 0) & (d_s + d_g == length))) == length + 1
    return length


# ------------------------------------------------------------------------------------------------- CSV path

def test_csv_arrays_match_original_layout_exactly(tmp_path):
    # 3x3 mazes: the size is taken from the data, like the original builder.
    q1, a1 = "S #" + "  #" + "#G ", "So#" + " o#" + "#G "
    q2, a2 = "#S#" + "# #" + "#G#", "#S#" + "#o#" + "#G#"
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("x", q1, a1, "3"), ("y", q2, a2, "2")])
    write_csv(src / "test.csv", [("y", q2, a2, "2")])
    out = tmp_path / "out"
    assert build(["--input-dir", src, "--output-dir", out]) == 0
    ids = {"#": 1, " ": 2, "S": 3, "G": 4, "o": 5}
    inputs = np.load(out / "train" / "all__inputs.npy")
    labels = np.load(out / "train" / "all__labels.npy")
    assert inputs.dtype == np.uint8 and inputs.shape == (2, 9)
    np.testing.assert_array_equal(inputs, [[ids[c] for c in q1], [ids[c] for c in q2]])
    np.testing.assert_array_equal(labels, [[ids[c] for c in a1], [ids[c] for c in a2]])
    # the original's char2id table gives the same
    char2id = np.zeros(256, np.uint8)
    char2id[np.array([ord(c) for c in "# SGo"])] = np.arange(5) + 1
    np.testing.assert_array_equal(inputs[0], char2id[np.frombuffer(q1.encode(), dtype=np.uint8)])
    np.testing.assert_array_equal(np.load(out / "train" / "all__group_indices.npy"), [0, 1, 2])
    np.testing.assert_array_equal(np.load(out / "train" / "all__puzzle_indices.npy"), [0, 1, 2])
    np.testing.assert_array_equal(np.load(out / "train" / "all__puzzle_identifiers.npy"), [0, 0])
    meta = json.loads((out / "train" / "dataset.json").read_text())
    # The original builder's keys, and the task (which the original loaders ignore).
    assert meta == {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 6, "seq_len": 9,
                    "num_puzzle_identifiers": 1, "total_groups": 2, "mean_puzzle_examples": 1.0, "sets": ["all"],
                    "task": "maze"}
    assert json.loads((out / "identifiers.json").read_text()) == ["<blank>"]


@pytest.mark.parametrize("row, words", [
    (("x", "S #  ##G ", "So# o##Gx", "1"), "characters outside"),
    (("x", "S #  ##G", "So# o##G", "1"), "must have 9 characters"),
    (("x", "S #  ##G ", "So# o##G "), "expected 4 fields"),
])
def test_bad_csv_row_is_reported_with_file_and_row(tmp_path, capsys, row, words):
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("ok", "S #  ##G ", "So# o##G ", "1"), row])
    write_csv(src / "test.csv", [("ok", "S #  ##G ", "So# o##G ", "1")])
    assert build(["--input-dir", src, "--output-dir", tmp_path / "out"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {src / 'train.csv'}:3: ") and words in err
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["src"]


def test_non_square_first_row(tmp_path, capsys):
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("x", "S G", "SoG", "1")])
    write_csv(src / "test.csv", [])
    assert build(["--input-dir", src, "--output-dir", tmp_path / "out"]) == 2
    assert "train.csv:2: question has 3 characters, not a square grid" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- generator

def test_generator_marks_a_shortest_path():
    q, a, lengths = maze_core.generate_mazes(np.random.default_rng(0), 300, min_path_len=110)
    ok = np.flatnonzero(lengths >= 0)
    assert ok.size >= 3
    for i in ok[:10]:
        assert check_maze(q[i], a[i], min_len=110, unique=True) == lengths[i]
    q, a, lengths = maze_core.generate_mazes(np.random.default_rng(1), 50, min_path_len=20, open_prob=0.3,
                                             unique=False)
    for i in np.flatnonzero(lengths >= 0)[:10]:
        assert check_maze(q[i], a[i], min_len=20) == lengths[i]


def test_generated_dataset_with_dihedral_augmentation(tmp_path):
    out = tmp_path / "maze"
    assert build(["--generate", 10, "--test-size", 3, "--aug", "--output-dir", out, "--save-csv"]) == 0
    meta, arrays = load_split(out, "train")
    arr = arrays["all"]
    check_split_arrays(meta, arr)
    assert meta.vocab_size == 6 and meta.seq_len == 900 and meta.total_groups == 10
    assert arr["inputs"].shape == (80, 900) and arr["inputs"].dtype == np.uint8
    np.testing.assert_array_equal(arr["group_indices"], np.arange(0, 81, 8))
    inputs = arr["inputs"].reshape(10, 8, 30, 30)
    labels = arr["labels"].reshape(10, 8, 30, 30)
    for g in range(10):
        base_q, base_a = inputs[g, 0], labels[g, 0]
        length = check_maze(base_q, base_a, min_len=110, unique=True)
        seen = set()
        for tid in range(8):
            np.testing.assert_array_equal(inputs[g, tid], dihedral_transform(base_q, tid))
            np.testing.assert_array_equal(inverse_dihedral_transform(inputs[g, tid], tid), base_q)
            np.testing.assert_array_equal(inverse_dihedral_transform(labels[g, tid], tid), base_a)
            assert check_maze(inputs[g, tid], labels[g, tid]) == length
            seen.add(inputs[g, tid].tobytes())
        assert len(seen) == 8
    test_meta, test_arrays = load_split(out, "test")
    check_split_arrays(test_meta, test_arrays["all"])
    assert test_arrays["all"]["inputs"].shape == (3, 900)
    for q, a in zip(test_arrays["all"]["inputs"], test_arrays["all"]["labels"]):
        check_maze(q.reshape(30, 30), a.reshape(30, 30), min_len=110, unique=True)
    # the saved CSV is in the published format and rebuilds the same originals
    out2 = tmp_path / "again"
    assert build(["--input-dir", out / "source", "--output-dir", out2]) == 0
    np.testing.assert_array_equal(np.load(out2 / "train" / "all__inputs.npy"), arr["inputs"][::8])


def test_min_path_len_and_ties(tmp_path):
    out = tmp_path / "easy"
    assert build(["--generate", 6, "--test-size", 2, "--min-path-len", 30, "--open-prob", 0.3, "--allow-ties",
                  "--output-dir", out]) == 0
    for q, a in zip(np.load(out / "train" / "all__inputs.npy"), np.load(out / "train" / "all__labels.npy")):
        check_maze(q.reshape(30, 30), a.reshape(30, 30), min_len=30)


def test_impossible_path_length_is_an_error(tmp_path, capsys):
    assert build(["--generate", 1, "--test-size", 0, "--min-path-len", 2000, "--output-dir", tmp_path / "o"]) == 2
    assert "lower --min-path-len" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_same_seed_gives_identical_files(tmp_path):
    def files(d):
        return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        assert build(["--generate", 8, "--test-size", 2, "--aug", "--seed", seed, "--output-dir",
                      tmp_path / name]) == 0
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


def test_subsample(tmp_path):
    out = tmp_path / "sub"
    assert build(["--generate", 10, "--test-size", 2, "--subsample-size", 4, "--output-dir", out]) == 0
    assert np.load(out / "train" / "all__inputs.npy").shape == (4, 900)
    assert np.load(out / "test" / "all__inputs.npy").shape == (2, 900)


@pytest.mark.parametrize("how", ["script", "module"])
def test_runs_as_script_and_module(tmp_path, how):
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("ok", "S #  ##G ", "So# o##G ", "1")])
    write_csv(src / "test.csv", [("ok", "S #  ##G ", "So# o##G ", "1")])
    cmd = [sys.executable] + (["dataset/build_maze_dataset.py"] if how == "script"
                              else ["-m", "dataset.build_maze_dataset"])
    res = subprocess.run(cmd + ["--input-dir", str(src), "--output-dir", str(tmp_path / "out"), "--aug"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "out" / "train" / "all__inputs.npy").shape == (8, 9)


def test_loader_reads_the_output(tmp_path):
    from dataset import puzzle_dataset as pd
    out = tmp_path / "maze"
    assert build(["--generate", 6, "--test-size", 3, "--aug", "--output-dir", out]) == 0
    for split, test_mode in (("train", False), ("test", True)):
        ds = pd.PuzzleDataset(pd.PuzzleDatasetConfig(seed=0, dataset_path=str(out), global_batch_size=2,
                                                     test_set_mode=test_mode, epochs_per_iter=1, rank=0,
                                                     num_replicas=1), split=split)
        assert ds.metadata.vocab_size == 6 and ds.metadata.seq_len == 900
        batches = list(ds)
        assert batches and all(b["inputs"].shape == (2, 900) for _, b, _ in batches)
        if test_mode:
            assert sum(n for _, _, n in batches) == 3


def test_generator_makes_smaller_mazes_for_cpu_runs(tmp_path):
    from tasks.maze.codec import MazeCodec

    out = tmp_path / "maze10"
    assert build(["--generate", "30", "--test-size", "10", "--size", "10", "--min-path-len", "10",
                  "--output-dir", out]) == 0
    meta, arrays = load_split(out, "test")
    assert meta.seq_len == 100 and meta.vocab_size == 6
    inputs, labels = arrays["all"]["inputs"].astype(np.int64), arrays["all"]["labels"].astype(np.int64)
    assert MazeCodec(10).check(inputs, labels).all()  # every marked path is a shortest S-G path
    assert build(["--generate", "3", "--size", "4", "--min-path-len", "16", "--output-dir", tmp_path / "x"]) == 2
