"""Tests of tasks/sudoku/build.py (dataset/build_sudoku_dataset.py) and its solver/generator (generator.py)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.builder_common import check_split_arrays, load_split
from dataset.common import PuzzleDatasetMetadata
from tasks.sudoku import build as bsd
from tasks.sudoku import generator as sudoku_core
from tasks.sudoku.codec import apply_sudoku_transforms, draw_sudoku_transforms
from tests.helpers import REPO
from utils.cli import run_command

# Two published-format rows (a valid puzzle and its solution each).
Q1 = ".9.5..7..12.9.6.....7..8..22.6..1....1..82..3.3............984.....34.....9...1.."
A1 = "498523716123976458657148392286391574715482963934657281362719845571834629849265137"
Q2 = "..5..1.493.4.6...7..2..5.1..26..3..1.5...4.72...8.............4..94........91...5"
A2 = "765381249314269587982745316426573891853194672197826453571638924239457168648912735"


def write_csv(path: Path, rows, header="source,question,answer,rating"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))


def build(argv):
    return run_command(bsd.main, [str(a) for a in argv])


def tokens(s: str) -> list:
    return [1 if ch == "." else int(ch) + 1 for ch in s]


def solution_count(grid, limit=2) -> int:
    """Independent plain-Python backtracking count (most-constrained cell first)."""
    g = list(grid)

    def candidates(i):
        r, c = divmod(i, 9)
        b0 = (r // 3) * 27 + (c // 3) * 3
        seen = {g[r * 9 + k] for k in range(9)} | {g[k * 9 + c] for k in range(9)}
        seen |= {g[b0 + 9 * a + b] for a in range(3) for b in range(3)}
        return [d for d in range(1, 10) if d not in seen]

    def solve():
        best, best_c = None, None
        for i in range(81):
            if g[i] == 0:
                c = candidates(i)
                if best is None or len(c) < len(best_c):
                    best, best_c = i, c
                    if len(c) <= 1:
                        break
        if best is None:
            return 1
        total = 0
        for d in best_c:
            g[best] = d
            total += solve()
            g[best] = 0
            if total >= limit:
                break
        return total

    return solve()


def digits(tok_row):
    """Token row (0 pad, 1 blank, 2..10) -> digits (0 blank)."""
    return np.asarray(tok_row, dtype=np.int64) - 1


# ------------------------------------------------------------------------------------------------- CSV path

def test_csv_arrays_match_original_layout_exactly(tmp_path):
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("s1", Q1, A1, "5"), ("s2", Q2, A2, "0")])
    write_csv(src / "test.csv", [("s2", Q2, A2, "0")])
    out = tmp_path / "out"
    assert build(["--input-dir", src, "--output-dir", out]) == 0

    train = {k: np.load(out / "train" / f"all__{k}.npy") for k in
             ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")}
    assert train["inputs"].dtype == np.uint8 and train["inputs"].shape == (2, 81)
    np.testing.assert_array_equal(train["inputs"], np.array([tokens(Q1), tokens(Q2)], dtype=np.uint8))
    np.testing.assert_array_equal(train["labels"], np.array([tokens(A1), tokens(A2)], dtype=np.uint8))
    # What the original builder computes for these strings (frombuffer of the digits, '.' -> '0', then + 1).
    original = np.stack([np.frombuffer(q.replace(".", "0").encode(), dtype=np.uint8) - ord("0") for q in (Q1, Q2)]) + 1
    np.testing.assert_array_equal(train["inputs"], original)
    for k in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
        assert train[k].dtype == np.int32
    np.testing.assert_array_equal(train["puzzle_identifiers"], [0, 0])
    np.testing.assert_array_equal(train["puzzle_indices"], [0, 1, 2])
    np.testing.assert_array_equal(train["group_indices"], [0, 1, 2])
    np.testing.assert_array_equal(np.load(out / "test" / "all__inputs.npy"), [tokens(Q2)])

    meta = json.loads((out / "train" / "dataset.json").read_text())
    # The original builder's keys, and the task with its box (which the original loaders ignore).
    assert meta == {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 11, "seq_len": 81,
                    "num_puzzle_identifiers": 1, "total_groups": 2, "mean_puzzle_examples": 1.0, "sets": ["all"],
                    "task": "sudoku", "task_options": {"box": [3, 3]}}
    assert json.loads((out / "identifiers.json").read_text()) == ["<blank>"]
    assert sorted(p.name for p in out.iterdir()) == ["identifiers.json", "test", "train"]


def test_csv_min_difficulty_and_subsample(tmp_path):
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("s1", Q1, A1, "5"), ("s2", Q2, A2, "0"), ("s3", Q1, A1, "7")])
    write_csv(src / "test.csv", [("s2", Q2, A2, "0"), ("s1", Q1, A1, "9")])
    out = tmp_path / "out"
    assert build(["--input-dir", src, "--output-dir", out, "--min-difficulty", "5"]) == 0
    assert np.load(out / "train" / "all__inputs.npy").shape == (2, 81)
    np.testing.assert_array_equal(np.load(out / "test" / "all__inputs.npy"), [tokens(Q1)])

    out2 = tmp_path / "out2"
    assert build(["--input-dir", src, "--output-dir", out2, "--subsample-size", "1"]) == 0
    sub = np.load(out2 / "train" / "all__inputs.npy")
    assert sub.shape == (1, 81) and sub[0].tolist() in (tokens(Q1), tokens(Q2))
    assert np.load(out2 / "test" / "all__inputs.npy").shape == (2, 81)  # test split is never subsampled


BAD_ROWS = {
    "field count": (("s", Q1, A1), "expected 4 fields"),
    "short question": (("s", Q1[:80], A1, "0"), "81 characters"),
    "bad character": (("s", "x" + Q1[1:], A1, "0"), "question may only hold"),
    "clue disagrees": (("s", "1" + Q1[1:], A1, "0"), "clue"),
    "invalid solution": (("s", "." * 81, A1[:9] + A1[:9] + A1[18:], "0"), "not a valid Sudoku"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_csv_row_is_reported_with_file_and_row(tmp_path, capsys, case):
    bad_row, words = BAD_ROWS[case]
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("s1", Q1, A1, "5"), bad_row])
    write_csv(src / "test.csv", [("s2", Q2, A2, "0")])
    out = tmp_path / "out"
    assert build(["--input-dir", src, "--output-dir", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {src / 'train.csv'}:3: ") and words in err
    assert "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary folder left behind


def test_failed_build_keeps_previous_output(tmp_path, capsys):
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("s1", Q1, A1, "5")])
    write_csv(src / "test.csv", [("s2", Q2, A2, "0")])
    out = tmp_path / "out"
    assert build(["--input-dir", src, "--output-dir", out]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_csv(src / "test.csv", [("s2", Q2, "1" * 81, "0")])
    assert build(["--input-dir", src, "--output-dir", out, "--overwrite"]) == 2
    assert "test.csv:2" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_refuses_to_replace_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert build(["--generate", "5", "--test-size", "1", "--output-dir", out]) == 2
    assert "refusing" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_missing_file_and_hub_unavailable(tmp_path, capsys, monkeypatch):
    assert build(["--input-dir", tmp_path / "nowhere", "--output-dir", tmp_path / "o"]) == 2
    assert "train.csv: file not found" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails, as when it is not installed
    assert build(["--output-dir", tmp_path / "o"]) == 2
    err = capsys.readouterr().err
    assert "sapientinc/sudoku-extreme" in err and "--input-dir" in err and "--generate" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------- solver

def test_solver_counts_and_rates():
    q = np.array([0 if c == "." else int(c) for c in Q1], dtype=np.int8)
    n, sol = sudoku_core.count_solutions(q)
    assert n == 1 and "".join(map(str, sol)) == A1
    assert sudoku_core.count_solutions(np.zeros(81, np.int8), limit=5)[0] == 5
    bad = q.copy()
    bad[0] = 9  # the row already holds a 9
    assert sudoku_core.count_solutions(bad)[0] == 0
    assert sudoku_core.rate(q) >= 0
    assert sudoku_core.is_valid_solution(np.array([int(c) for c in A1]))
    assert not sudoku_core.is_valid_solution(np.array([int(c) for c in A1[:9] * 9]))


def test_generator_puzzles_have_exactly_one_solution():
    puzzles, solutions, ratings = sudoku_core.generate_puzzles(np.random.default_rng(3), 40)
    assert len({p.tobytes() for p in puzzles}) == 40
    for p, s, r in zip(puzzles, solutions, ratings):
        assert sudoku_core.is_valid_solution(s)
        assert np.all((p == 0) | (p == s))
        n, found = sudoku_core.count_solutions(p)
        assert n == 1 and np.array_equal(found, s)
        assert r == sudoku_core.rate(p) and r >= 0
    for p in puzzles[:8]:  # independent check with a plain-Python solver
        assert solution_count(p.tolist()) == 1
        # minimal: removing any clue makes the solution ambiguous
        clue = int(np.flatnonzero(p)[0])
        q = p.copy()
        q[clue] = 0
        assert sudoku_core.count_solutions(q)[0] == 2


# ------------------------------------------------------------------------------------------------- augmentation

def test_augmentation_preserves_validity_and_uniqueness():
    rng = np.random.default_rng(0)
    q = np.array([0 if c == "." else int(c) for c in Q1], dtype=np.uint8)
    a = np.array([int(c) for c in A1], dtype=np.uint8)
    source, digit_map = draw_sudoku_transforms(rng, 200)
    # transforms only permute bands/rows-in-band and stacks/columns-in-stack (possibly after a transpose)
    def band_respecting(perm):
        return sorted(perm.tolist()) == list(range(9)) and all(len(set(perm[3 * b:3 * b + 3] // 3)) == 1
                                                                 for b in range(3))

    transposed = 0
    for src in source:
        grid = src.reshape(9, 9)
        if np.array_equal(grid, (grid[:, 0] // 9)[:, None] * 9 + (grid[0, :] % 9)[None, :]):
            lines, cols = grid[:, 0] // 9, grid[0, :] % 9      # new row i <- old row lines[i]
        else:
            transposed += 1
            lines, cols = grid[:, 0] % 9, grid[0, :] // 9      # new row i <- old column lines[i]
            assert np.array_equal(grid, cols[None, :] * 9 + lines[:, None])
        assert band_respecting(lines) and band_respecting(cols)
    assert 60 < transposed < 140
    assert np.all(digit_map[:, 0] == 0)
    assert np.all(np.sort(digit_map[:, 1:], axis=1) == np.arange(1, 10))
    aq = apply_sudoku_transforms(q, source, digit_map)
    aa = apply_sudoku_transforms(a, source, digit_map)
    assert np.mean([np.array_equal(x, q) for x in aq]) < 0.05
    for x, y in zip(aq, aa):
        assert sudoku_core.is_valid_solution(y)
        assert np.all((x == 0) | (x == y))
        assert (x > 0).sum() == (q > 0).sum()
    for x, y in zip(aq[:20], aa[:20]):
        n, sol = sudoku_core.count_solutions(x)
        assert n == 1 and np.array_equal(sol, y)


def test_generated_augmented_dataset(tmp_path):
    out = tmp_path / "sudoku"
    assert build(["--generate", 30, "--test-size", 10, "--num-aug", 4, "--output-dir", out, "--seed", 5,
                  "--save-csv"]) == 0
    meta, arrays = load_split(out, "train")
    arr = arrays["all"]
    check_split_arrays(meta, arr)
    assert meta.total_groups == 30 and arr["inputs"].shape == (150, 81)
    np.testing.assert_array_equal(arr["group_indices"], np.arange(0, 151, 5))
    np.testing.assert_array_equal(arr["puzzle_indices"], np.arange(151))
    assert meta.num_puzzle_identifiers == 1 and np.all(arr["puzzle_identifiers"] == 0)
    assert int(arr["inputs"].min()) >= 1 and int(arr["labels"].min()) >= 2  # no pad; labels have no blanks
    for x, y in zip(digits(arr["inputs"]), digits(arr["labels"])):
        assert sudoku_core.is_valid_solution(y)
        assert np.all((x == 0) | (x == y))
    for x in digits(arr["inputs"])[::5]:  # originals: unique solutions
        assert sudoku_core.count_solutions(x)[0] == 1
    test_meta, test_arrays = load_split(out, "test")
    check_split_arrays(test_meta, test_arrays["all"])
    assert test_arrays["all"]["inputs"].shape == (10, 81)
    train_set = {r.tobytes() for r in arr["inputs"][::5]}
    assert not train_set & {r.tobytes() for r in test_arrays["all"]["inputs"]}
    # the saved CSV rebuilds the same originals
    out2 = tmp_path / "from_csv"
    assert build(["--input-dir", out / "source", "--output-dir", out2]) == 0
    np.testing.assert_array_equal(np.load(out2 / "train" / "all__inputs.npy"), arr["inputs"][::5])
    np.testing.assert_array_equal(np.load(out2 / "test" / "all__labels.npy"), test_arrays["all"]["labels"])


def test_generator_min_difficulty(tmp_path):
    out = tmp_path / "hard"
    assert build(["--generate", 10, "--test-size", 2, "--min-difficulty", 3, "--output-dir", out,
                  "--save-csv"]) == 0
    ratings = [int(line.rsplit(",", 1)[1]) for line in (out / "source" / "train.csv").read_text().splitlines()[1:]]
    assert len(ratings) == 10 and min(ratings) >= 3
    for x in digits(np.load(out / "train" / "all__inputs.npy")):
        assert sudoku_core.rate(x) >= 3


def test_same_seed_gives_identical_files(tmp_path):
    def files(d):
        return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    args = ["--generate", 20, "--test-size", 5, "--num-aug", 3]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert build(args + ["--seed", seed, "--output-dir", tmp_path / name]) == 0
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


@pytest.mark.parametrize("how", ["script", "module"])
def test_runs_as_script_and_module(tmp_path, how):
    src = tmp_path / "src"
    write_csv(src / "train.csv", [("s1", Q1, A1, "5")])
    write_csv(src / "test.csv", [("s2", Q2, A2, "0")])
    cmd = [sys.executable] + (["dataset/build_sudoku_dataset.py"] if how == "script"
                              else ["-m", "dataset.build_sudoku_dataset"])
    res = subprocess.run(cmd + ["--input-dir", str(src), "--output-dir", str(tmp_path / "out")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "train" / "all__inputs.npy").is_file()
    bad = subprocess.run(cmd + ["--input-dir", str(tmp_path / "none"), "--output-dir", str(tmp_path / "x")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_loader_reads_the_output(tmp_path):
    from dataset import puzzle_dataset as pd
    out = tmp_path / "sudoku"
    assert build(["--generate", 24, "--test-size", 6, "--num-aug", 1, "--output-dir", out]) == 0
    for split, test_mode in (("train", False), ("test", True)):
        ds = pd.PuzzleDataset(pd.PuzzleDatasetConfig(seed=0, dataset_path=str(out), global_batch_size=4,
                                                     test_set_mode=test_mode, epochs_per_iter=1, rank=0,
                                                     num_replicas=1), split=split)
        assert isinstance(ds.metadata, PuzzleDatasetMetadata) and ds.metadata.seq_len == 81
        batches = list(ds)
        assert batches
        for set_name, batch, size in batches:
            assert set_name == "all" and batch["inputs"].shape == (4, 81)
        if test_mode:
            assert sum(size for _, _, size in batches) == 6
