"""Tests of evaluators/arc.py: pass@K after undoing augmentations and voting, and the Kaggle submission.

The synthetic dataset is encoded with the ARC builder's own helpers (augmentation names, augmentation, canvas
drawing), so these tests also check that the evaluator and the builder agree.
"""
import json
import os
import random
import time

import numpy as np
import pytest
import torch

from dataset import build_arc_dataset as bad
from dataset.builder_common import load_split, write_identifiers
from evaluators.voting import rank_candidates
from tasks.arc import codec as codecs
from tasks.arc.codec import crop_predictions
from tasks.arc.evaluator import ARC, merge_states, validate_submission
from utils.errors import ConfigError

IDENTITY = np.arange(10, dtype=np.uint8)
KS = [1, 2, 5, 10, 100, 1000]


def perm(rng):
    return np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)


def grid(rng, h, w):
    return rng.integers(0, 10, size=(h, w)).astype(np.uint8)


def encode(g):
    """A grid drawn untranslated on the 30x30 canvas (builder's drawing), as 900 tokens."""
    g = np.asarray(g, dtype=np.uint8)
    zero = np.zeros(1, dtype=np.int64)
    return codecs.draw_on_canvas(g[None], zero, zero)[0]


# ----------------------------------------------------------------------------------------------------------
# The hand-made scenario
# ----------------------------------------------------------------------------------------------------------
#
# Four tasks, six test inputs.  Each row is one augmented copy of one test input; its prediction is drawn in the
# augmented frame (so it is right only after inverting the augmentation), except "invalid" (a blank canvas).
#
#   aaa/0: 3 copies predict the answer (low confidence), 1 a wrong grid (high confidence)  -> rank 1
#   bbb/0: 2 votes each; the answer's q_halt logits (3, -1) have the higher mean logit but the lower mean
#          sigmoid (0.611) than the wrong grid's (0.5, 0.5) -> 0.622                         -> rank 2
#   bbb/1: 3 votes vs 1                                                                       -> rank 1
#   ccc/0: 2 votes each; the answer's confidence is higher                                    -> rank 1
#   ccc/1: an invalid prediction and 3 different wrong grids; the answer is never predicted   -> unsolved
#   ddd/0: a wrong grid with 2 votes, 4 wrong grids with 1 vote and high confidence, the answer with 1 vote,
#          one more wrong grid with lower confidence                                          -> rank 6
#
# pass@K (per test input):  K=1: aaa/0 bbb/1 ccc/0 = 3/6;  K=2,5: + bbb/0 = 4/6;  K>=10: + ddd/0 = 5/6
# task_pass@K (all of a task's test inputs):  K=1: aaa = 1/4;  K=2,5: aaa bbb = 2/4;  K>=10: + ddd = 3/4
# task_mean_pass@K (mean per-task fraction):  K=1: (1 + 1/2 + 1/2 + 0)/4;  K=2,5: (1 + 1 + 1/2 + 0)/4;
#                                             K>=10: (1 + 1 + 1/2 + 1)/4
EXPECTED = {
    **{f"ARC/pass@{k}": v for k, v in zip(KS, [3 / 6, 4 / 6, 4 / 6, 5 / 6, 5 / 6, 5 / 6])},
    **{f"ARC/task_pass@{k}": v for k, v in zip(KS, [1 / 4, 2 / 4, 2 / 4, 3 / 4, 3 / 4, 3 / 4])},
    **{f"ARC/task_mean_pass@{k}": v / 4 for k, v in zip(KS, [2.0, 2.5, 2.5, 3.5, 3.5, 3.5])},
    "ARC/num_tasks": 4.0, "ARC/num_test_inputs": 6.0, "ARC/coverage": 1.0,
    "ARC/valid_fraction": 27 / 28,   # 28 matched rows, one invalid prediction
    "ARC/unmatched_rows": 1.0,       # one row whose input is none of its task's test inputs
}
EXPECTED_RANKS = {"aaa": [1], "bbb": [2, 1], "ccc": [1, None], "ddd": [6]}

# (task, test index, augmentation index, predicted answer, q_halt logit); "ok" = the correct answer.
ROWS = [
    ("aaa", 0, 0, "ok", -1.0), ("aaa", 0, 1, "ok", -1.0), ("aaa", 0, 2, "ok", -1.0), ("aaa", 0, 3, "w1", 5.0),
    ("bbb", 0, 0, "ok", 3.0), ("bbb", 0, 1, "ok", -1.0), ("bbb", 0, 2, "w1", 0.5), ("bbb", 0, 3, "w1", 0.5),
    ("bbb", 1, 0, "ok", 0.0), ("bbb", 1, 1, "w1", 4.0), ("bbb", 1, 2, "ok", 0.0), ("bbb", 1, 3, "ok", 0.0),
    ("ccc", 0, 0, "w1", -2.0), ("ccc", 0, 1, "ok", 2.0), ("ccc", 0, 2, "w1", -2.0), ("ccc", 0, 3, "ok", 2.0),
    ("ccc", 1, 0, "invalid", 9.0), ("ccc", 1, 1, "w1", 1.0), ("ccc", 1, 2, "w2", 2.0), ("ccc", 1, 3, "w3", 3.0),
    ("ddd", 0, 0, "w1", 0.0), ("ddd", 0, 1, "w1", 0.0), ("ddd", 0, 2, "w2", 3.0), ("ddd", 0, 3, "w3", 2.0),
    ("ddd", 0, 4, "w4", 1.0), ("ddd", 0, 5, "w5", 0.5), ("ddd", 0, 6, "ok", 0.0), ("ddd", 0, 7, "w6", -1.0),
]


class Scenario:
    """Tasks, their augmentations, the dataset files and the rows of ROWS as model inputs/outputs."""

    def __init__(self, root):
        rng = np.random.default_rng(7)
        shapes = {"aaa": [((3, 4), (2, 5))], "bbb": [((4, 2), (4, 2)), ((5, 3), (1, 6))],
                  "ccc": [((2, 2), (3, 3)), ((6, 4), (2, 7))], "ddd": [((3, 5), (5, 3))]}
        n_aug = {"aaa": 4, "bbb": 4, "ccc": 4, "ddd": 8}
        self.tasks, self.wrong, self.augs = {}, {}, {}
        for task, test_shapes in shapes.items():
            test = [(grid(rng, *si), grid(rng, *so)) for si, so in test_shapes]
            self.tasks[task] = {"train": [{"input": grid(rng, 2, 2).tolist(), "output": grid(rng, 2, 2).tolist()}],
                                "test": [{"input": i.tolist(), "output": o.tolist()} for i, o in test]}
            self.wrong[task] = {f"w{j}": grid(rng, 2 + j % 3, 3) for j in range(1, 7)}
            # The original first, then distinct (dihedral id, colour permutation) pairs, each moving the grids.
            self.augs[task] = [(0, IDENTITY)] + [(t, perm(rng)) for t in range(1, n_aug[task])]
        self.names = ["<blank>"] + [codecs.augmentation_name(task, t, c) for task in self.augs for t, c in self.augs[task]]
        self.path = str(root)
        os.makedirs(root, exist_ok=True)
        write_identifiers(root, self.names)
        with open(os.path.join(root, "test_puzzles.json"), "w") as f:
            json.dump(self.tasks, f)

    def answer(self, task, i):
        return np.array(self.tasks[task]["test"][i]["output"], dtype=np.uint8)

    def row(self, task, i, a, what, q, input_grid=None):
        tid, colours = self.augs[task][a]
        inp = np.array(self.tasks[task]["test"][i]["input"], dtype=np.uint8) if input_grid is None else input_grid
        if what == "invalid":
            pred = np.zeros(900, dtype=np.uint8)
        else:
            original = self.answer(task, i) if what == "ok" else self.wrong[task][what]
            pred = encode(codecs.apply_augmentation(original, tid, colours))
        return (self.names.index(codecs.augmentation_name(task, tid, colours)),
                encode(codecs.apply_augmentation(inp, tid, colours)), pred, q)

    def rows(self):
        rows = [self.row(*r) for r in ROWS]
        # One row whose input is not a test input of its task (e.g. a demonstration pair): counted, not scored.
        rows.append(self.row("aaa", 0, 1, "ok", 0.0, input_grid=np.array(self.tasks["aaa"]["train"][0]["input"])))
        return rows


def batches(rows, size=5, device="cpu"):
    """(batch, outputs) dicts as the trainer passes them (real rows only)."""
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        ids, inputs, preds, q = zip(*chunk)
        batch = {"inputs": torch.tensor(np.stack(inputs), dtype=torch.int32, device=device),
                 "labels": torch.full((len(chunk), 900), -100, dtype=torch.int32, device=device),
                 "puzzle_identifiers": torch.tensor(ids, dtype=torch.int32, device=device)}
        outputs = {"preds": torch.tensor(np.stack(preds), dtype=torch.int64, device=device),
                   "q_halt_logits": torch.tensor(q, dtype=torch.float32, device=device)}
        yield batch, outputs


def run_evaluator(evaluator, rows, save_path=None, size=5):
    evaluator.begin_eval()
    for batch, outputs in batches(rows, size):
        evaluator.update_batch(batch, outputs)
    return evaluator.result(save_path)


@pytest.fixture
def scenario(tmp_path):
    return Scenario(tmp_path / "arc")


def assert_metrics(metrics, expected=EXPECTED):
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key


def test_scenario_is_what_the_comments_say(scenario):
    # Predictions are right only after inversion: in the augmented frame no augmented copy shows the answer.
    for task, i, a, what, _ in ROWS:
        tid, colours = scenario.augs[task][a]
        if what == "ok" and a > 0:
            moved = codecs.apply_augmentation(scenario.answer(task, i), tid, colours)
            assert moved.shape != scenario.answer(task, i).shape or not np.array_equal(moved, scenario.answer(task, i))
    # Wrong grids differ from the answers.
    for task in scenario.tasks:
        for i in range(len(scenario.tasks[task]["test"])):
            for w in scenario.wrong[task].values():
                assert w.shape != scenario.answer(task, i).shape or not np.array_equal(w, scenario.answer(task, i))
    # bbb/0: mean logit favours the answer, mean sigmoid (the rule) favours the wrong grid.
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert (3.0 - 1.0) / 2 > 0.5 and (sig(3.0) + sig(-1.0)) / 2 < sig(0.5)


def test_pass_at_k_by_hand(scenario, tmp_path):
    evaluator = ARC(scenario.path, None)
    assert evaluator.required_outputs == {"preds", "q_halt_logits"}
    save = tmp_path / "step_1_ARC"
    metrics = run_evaluator(evaluator, scenario.rows(), str(save))
    assert_metrics(metrics)

    details = json.loads((save / "details.json").read_text())
    assert {t: [d["correct_rank"] for d in v] for t, v in details["tasks"].items()} == EXPECTED_RANKS
    assert details["tasks"]["ddd"][0]["top"][0]["votes"] == 2

    submission = json.loads((save / "submission.json").read_text())
    validate_submission(submission, scenario.tasks)
    assert list(submission) == list(scenario.tasks)
    ans = lambda t, i: scenario.answer(t, i).tolist()  # noqa: E731
    wrong = lambda t, w: scenario.wrong[t][w].tolist()  # noqa: E731
    assert submission["aaa"] == [{"attempt_1": ans("aaa", 0), "attempt_2": wrong("aaa", "w1")}]
    assert submission["bbb"] == [{"attempt_1": wrong("bbb", "w1"), "attempt_2": ans("bbb", 0)},
                                 {"attempt_1": ans("bbb", 1), "attempt_2": wrong("bbb", "w1")}]
    assert submission["ccc"][0] == {"attempt_1": ans("ccc", 0), "attempt_2": wrong("ccc", "w1")}
    # ccc/1: one vote each, ordered by confidence (the invalid prediction is not a candidate).
    assert submission["ccc"][1] == {"attempt_1": wrong("ccc", "w3"), "attempt_2": wrong("ccc", "w2")}
    assert submission["ddd"] == [{"attempt_1": wrong("ddd", "w1"), "attempt_2": wrong("ddd", "w2")}]


def test_row_order_batching_and_ranks_do_not_matter(scenario, tmp_path):
    rows = scenario.rows()
    reference = run_evaluator(ARC(scenario.path, None), rows, str(tmp_path / "a"))
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert run_evaluator(ARC(scenario.path, None), shuffled, str(tmp_path / "b"), size=3) == reference
    assert (tmp_path / "a" / "submission.json").read_bytes() == (tmp_path / "b" / "submission.json").read_bytes()

    # Two "ranks", each seeing an interleaved slice, merged as rank 0 does after gather_object.
    states = []
    for rank in range(2):
        ev = ARC(scenario.path, None)
        ev.begin_eval()
        for batch, outputs in batches(shuffled[rank::2], size=4):
            ev.update_batch(batch, outputs)
        states.append({"votes": ev._votes, "rows": ev._rows, "counts": ev._counts})
    merged = ARC(scenario.path, None).score(merge_states(states[::-1]), str(tmp_path / "c"))
    assert merged == reference
    assert (tmp_path / "c" / "submission.json").read_bytes() == (tmp_path / "a" / "submission.json").read_bytes()


def _gather_worker(rank, data_path, rows, store, out):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        metrics = run_evaluator(ARC(data_path, None), rows[rank::2], str(out / "save"), size=4)
        (out / f"metrics.{rank}.json").write_text(json.dumps(metrics))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two fresh processes importing torch: several seconds
def test_two_gloo_processes_gather_to_rank_0(scenario, tmp_path):
    """result() gathers with torch.distributed.gather_object: rank 0 scores everything, rank 1 returns None."""
    import torch.multiprocessing as mp
    rows = scenario.rows()
    start = time.perf_counter()
    mp.spawn(_gather_worker, args=(scenario.path, rows, str(tmp_path / "store"), tmp_path), nprocs=2, join=True)
    assert time.perf_counter() - start < 60
    assert json.loads((tmp_path / "metrics.1.json").read_text()) is None
    assert_metrics(json.loads((tmp_path / "metrics.0.json").read_text()))
    run_evaluator(ARC(scenario.path, None), rows, str(tmp_path / "one"))
    assert (tmp_path / "save" / "submission.json").read_bytes() == (tmp_path / "one" / "submission.json").read_bytes()


def test_exact_ties_are_broken_by_the_grid(scenario):
    # Same votes, same mean confidence: the smaller shape first, then the cell bytes.
    a, b, c = (1, 2, bytes([5, 5])), (2, 1, bytes([0, 0])), (1, 2, bytes([3, 9]))
    scale = 2 ** 52
    for order in ([a, b, c], [c, b, a], [b, a, c]):
        ranked = rank_candidates({k: [2, scale] for k in order})
        assert [key for key, _, _ in ranked] == [c, a, b]
        assert ranked[0][1] == 2 and ranked[0][2] == 0.5


def test_crop_takes_the_largest_top_left_colour_rectangle():
    canvas = np.zeros((4, 30, 30), dtype=np.uint8)
    canvas[0] = encode(np.full((3, 5), 7)).reshape(30, 30)     # well-formed: the grid exactly
    canvas[1, :2, :30] = 4                                      # a full-width grid without marks
    canvas[2, 0, :6], canvas[2, 1, :2] = 3, 3                   # ragged: 1x6 (area 6) beats 2x2 (area 4)
    canvas[3, 0, 0] = 1                                         # no colour at the top-left corner: invalid
    canvas[3, 5:8, 5:8] = 5
    heights, widths = crop_predictions(canvas.reshape(4, 900).astype(np.uint8))
    assert heights.tolist() == [3, 2, 1, 0] and widths.tolist() == [5, 30, 6, 0]
    # Same grid as the builder's crop on its own (well-formed) canvases.
    assert codecs.crop_canvas(canvas[0]).shape == (3, 5)

    # Random ragged canvases against brute force over all top-left rectangles.
    rng = np.random.default_rng(0)
    canvases = np.where(rng.random((40, 30, 30)) < 0.97, rng.integers(2, 12, (40, 30, 30)),
                        rng.integers(0, 2, (40, 30, 30))).astype(np.uint8)
    canvases[::7, 0, 0] = 0
    heights, widths = crop_predictions(canvases.reshape(40, 900))
    for c, h, w in zip(canvases, heights, widths):
        best = (0, 0, 0)
        for rows in range(1, 31):
            for cols in range(1, 31):
                if (c[:rows, :cols] >= 2).all() and rows * cols > best[0]:
                    best = (rows * cols, rows, cols)
        assert (h, w) == best[1:]


def test_no_predictions_still_gives_a_valid_submission(scenario, tmp_path):
    metrics = run_evaluator(ARC(scenario.path, None, pass_ks=[2, 1], submission_k=3), [], str(tmp_path / "s"))
    assert metrics["ARC/pass@1"] == metrics["ARC/pass@2"] == metrics["ARC/task_pass@2"] == 0.0
    assert metrics["ARC/coverage"] == 0.0 and metrics["ARC/num_test_inputs"] == 6.0
    submission = json.loads((tmp_path / "s" / "submission.json").read_text())
    validate_submission(submission, scenario.tasks, attempts=3)
    assert submission["bbb"][1] == {"attempt_1": [[0]], "attempt_2": [[0]], "attempt_3": [[0]]}
    assert run_evaluator(ARC(scenario.path, None), [], None)["ARC/pass@1"] == 0.0  # save_path None: no files


def test_translated_input_is_still_matched(scenario):
    pid, _, pred, q = scenario.row("aaa", 0, 2, "ok", 0.0)
    tid, colours = scenario.augs["aaa"][2]
    moved = codecs.apply_augmentation(np.array(scenario.tasks["aaa"]["test"][0]["input"], dtype=np.uint8), tid, colours)
    shifted = codecs.draw_on_canvas(moved[None], np.array([3]), np.array([4]))[0]
    metrics = run_evaluator(ARC(scenario.path, None), [(pid, shifted, pred, q)])
    assert metrics["ARC/unmatched_rows"] == 0.0 and metrics["ARC/task_pass@1"] == 1 / 4


def test_one_candidate_is_repeated(scenario, tmp_path):
    run_evaluator(ARC(scenario.path, None), [scenario.row("aaa", 0, 2, "ok", 0.0)], str(tmp_path / "s"))
    submission = json.loads((tmp_path / "s" / "submission.json").read_text())
    answer = scenario.answer("aaa", 0).tolist()
    assert submission["aaa"] == [{"attempt_1": answer, "attempt_2": answer}]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("aaa"), "missing"),
    (lambda s: s.update(zzz=[]), "unknown"),
    (lambda s: s["bbb"].pop(), "one per test input"),
    (lambda s: s["aaa"][0].pop("attempt_2"), "exactly the keys"),
    (lambda s: s["aaa"][0].update(attempt_1=[[1, 2], [3]]), "different lengths"),
    (lambda s: s["aaa"][0].update(attempt_1=[[10]]), "integers 0-9"),
    (lambda s: s["aaa"][0].update(attempt_1=[[1.0]]), "integers 0-9"),
    (lambda s: s["aaa"][0].update(attempt_1=[]), "non-empty"),
    (lambda s: s["aaa"][0].update(attempt_1=[[0] * 31]), "larger than"),
])
def test_validator_rejects_malformed_submissions(scenario, mutate, message):
    good = {t: [{"attempt_1": [[0]], "attempt_2": [[1, 2]]} for _ in p["test"]] for t, p in scenario.tasks.items()}
    validate_submission(good, scenario.tasks)
    mutate(good)
    with pytest.raises(ValueError, match=message):
        validate_submission(good, scenario.tasks)


def test_bad_options_and_missing_files(scenario, tmp_path):
    with pytest.raises(ConfigError, match="pass_ks"):
        ARC(scenario.path, None, pass_ks=[0, 2])
    with pytest.raises(ConfigError, match="submission_k"):
        ARC(scenario.path, None, submission_k=0)
    with pytest.raises(FileNotFoundError, match="test_puzzles.json"):
        os.makedirs(tmp_path / "empty")
        write_identifiers(tmp_path / "empty", ["<blank>"])
        ARC(str(tmp_path / "empty"), None)


def test_created_from_the_config_like_the_trainer(scenario):
    from types import SimpleNamespace

    from dataset.common import PuzzleDatasetMetadata
    from dataset.puzzle_dataset import DatasetSource
    from training.build import create_evaluators
    from training.config import EvaluatorConfig
    # A test loader over two folders: one evaluator per folder, fed that folder's own puzzle identifiers.
    own = PuzzleDatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=12, seq_len=900,
                                num_puzzle_identifiers=8, total_groups=1, mean_puzzle_examples=1, sets=["all"])
    loader = SimpleNamespace(metadata=None, sources=[
        DatasetSource(path=scenario.path, metadata=own, sets={"all": "all"}, identifier_offset=0),
        DatasetSource(path=scenario.path, metadata=own, sets={"all": "all1"}, identifier_offset=7)])
    config = SimpleNamespace(evaluators=[EvaluatorConfig(name="arc@ARC", pass_ks=[1, 2], submission_k=2)])
    first, second = create_evaluators(config, loader)
    assert isinstance(first.evaluator, ARC) and first.evaluator.pass_ks == [1, 2]
    assert (first.dataset_index, first.identifier_offset, first.name) == (0, 0, "ARC")
    assert (second.dataset_index, second.identifier_offset, second.name) == (1, 7, "ARC1")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        create_evaluators(SimpleNamespace(evaluators=[EvaluatorConfig(name="arc@ARC", pass_k=[1])]), loader)


# ----------------------------------------------------------------------------------------------------------
# With a dataset written by the builder itself
# ----------------------------------------------------------------------------------------------------------

def test_builder_dataset_perfect_and_identity_models(tmp_path):
    rng = np.random.default_rng(1)
    for split, name, n_test in (("training", "t1", 1), ("evaluation", "e1", 1), ("evaluation", "e2", 2)):
        folder = tmp_path / "src" / split
        folder.mkdir(parents=True, exist_ok=True)
        pair = lambda: {"input": grid(rng, 3, 4).tolist(), "output": grid(rng, 5, 2).tolist()}  # noqa: E731
        (folder / f"{name}.json").write_text(json.dumps({"train": [pair(), pair()],
                                                         "test": [pair() for _ in range(n_test)]}))
    out = tmp_path / "arc-aug-5"
    bad.main(["--dataset-dirs", str(tmp_path / "src"), "--output-dir", str(out), "--num-aug", "5"])
    metadata, arrays = load_split(out, "test")
    data = arrays["all"]
    n = len(data["inputs"])
    assert n == 3 * 6  # 3 evaluation test inputs x (original + 5 augmentations)

    def run(preds, q):
        evaluator = ARC(str(out), metadata)
        evaluator.begin_eval()
        for start in range(0, n, 4):  # the loader's order: puzzle by puzzle
            rows = slice(start, start + 4)
            example = np.arange(n)[rows]
            puzzle = np.searchsorted(data["puzzle_indices"], example, side="right") - 1
            batch = {"inputs": torch.from_numpy(data["inputs"][rows].astype(np.int32)),
                     "labels": torch.from_numpy(data["labels"][rows].astype(np.int32)),
                     "puzzle_identifiers": torch.from_numpy(data["puzzle_identifiers"][puzzle])}
            evaluator.update_batch(batch, {"preds": torch.from_numpy(preds[rows].astype(np.int64)),
                                           "q_halt_logits": torch.from_numpy(q[rows])})
        return evaluator.result(None)

    perfect = run(data["labels"], np.zeros(n, dtype=np.float32))
    assert perfect["ARC/num_tasks"] == 2.0 and perfect["ARC/num_test_inputs"] == 3.0
    assert perfect["ARC/unmatched_rows"] == 0.0 and perfect["ARC/coverage"] == 1.0
    assert all(perfect[f"ARC/{m}@{k}"] == 1.0 for m in ("pass", "task_pass", "task_mean_pass") for k in KS)

    # A model that copies its input: never right (outputs differ from inputs), but every row is valid.
    copy = run(data["inputs"], np.zeros(n, dtype=np.float32))
    assert copy["ARC/pass@1000"] == 0.0 and copy["ARC/valid_fraction"] == 1.0

    # Only the original puzzle's copy of each test input predicts a grid; the other copies predict blank
    # canvases, which are dropped from voting rather than counted as wrong answers.
    preds = data["labels"].copy()
    ids = data["puzzle_identifiers"][np.searchsorted(data["puzzle_indices"], np.arange(n), side="right") - 1]
    names = json.loads((out / "identifiers.json").read_text())
    augmented = np.array([names[i] not in ("e1", "e2") for i in ids])  # originals keep the plain task name
    preds[augmented] = 0
    sparse = run(preds, np.zeros(n, dtype=np.float32))
    assert sparse["ARC/pass@1"] == 1.0 and sparse["ARC/valid_fraction"] == pytest.approx(1 / 6)
