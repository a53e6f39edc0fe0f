"""ARC-AGI evaluator: pass@K over the original test inputs, after undoing every augmentation and voting.

Configured as `evaluators: [{name: arc@ARC}]` (options: `pass_ks`, default [1, 2, 5, 10, 100, 1000];
`submission_k`, default 2). It reads `<data_path>/identifiers.json` and `<data_path>/test_puzzles.json`, written
by tasks/arc/build.py.

What happens to each test row (one augmented copy of one test input):
  1. Crop the predicted 30x30 canvas: the largest-area rectangle anchored at the top-left corner whose cells are
     all colour tokens (2..11), i.e. bounded by end-of-grid marks (1), padding (0) or the canvas edge (test
     canvases are drawn untranslated).  On equal areas the one with fewer rows wins.  No such rectangle
     (the top-left cell is not a colour) = an invalid prediction: it is counted and dropped from voting.
  2. Undo the augmentation named by the row's puzzle identifier (`<task>_t<dihedral id>_<colour map>`, parsed by
     tasks/arc/codec.py's `parse_augmentation_name`): inverse dihedral transform and inverse colour permutation
     (`invert_augmentation`).
  3. Find which test input of the task the row is: its input canvas, cropped (as in 1, or else by the
     bounding-box `crop_canvas` of tasks/arc/codec.py, which also finds a translated grid) and inverted the same
     way, is matched against the task's original test inputs in test_puzzles.json.  This does not rely on
     example order (rows reach the evaluator split over ranks, and a puzzle's examples may straddle batches).
     Identical test inputs of one task all receive the row.  Rows whose task or input is not in
     test_puzzles.json are counted as unmatched.

Voting, per (task, test input): a candidate is a distinct answer grid (in the original frame); its votes = the
number of augmented copies that produced it; its confidence = the mean of sigmoid(q_halt_logits) over those
copies.  Candidates are ranked as test-time compute ranks them (evaluators/voting.py): by votes, then
confidence, then their key, here the grid's shape and cell bytes.

Metrics (rank 0; the trainer prefixes them with `eval/`):
  * `ARC/pass@K`: the fraction of test inputs (every test input of every task in test_puzzles.json) whose
    correct output is among their top-K candidates (per test input credit; a test input without any valid
    prediction counts as failed);
  * `ARC/task_pass@K`: the fraction of tasks all of whose test inputs are solved within their own top K
    (all-or-nothing per task);
  * `ARC/task_mean_pass@K`: the mean over tasks of the fraction of that task's test inputs solved within top K
    (partial credit per task), which is what some existing HRM-family evaluators report under the plain name
    `ARC/pass@K`.  The three agree when every task has one test input; otherwise
    task_pass <= task_mean_pass, and pass weights tasks by their number of test inputs;
  * `ARC/num_tasks`, `ARC/num_test_inputs`: the denominators;
  * `ARC/coverage`: the fraction of test inputs that received at least one row;
  * `ARC/valid_fraction`: the fraction of matched rows whose prediction could be cropped;
  * `ARC/unmatched_rows`: rows that could not be mapped to a test input (should be 0).

Files written into `save_path` (when not None):
  * `submission.json` in the Kaggle ARC Prize format, `{task: [{"attempt_1": grid, "attempt_2": grid}, ...]}`,
    one entry per test input in test_puzzles.json order (with `submission_k` attempts, `attempt_1` ..
    `attempt_<k>`).  Attempt j is the j-th ranked candidate; with fewer candidates the top one is repeated, and a
    test input without any valid prediction gets [[0]] for every attempt.  `validate_submission` checks a file.
  * `details.json`: per task and test input, the correct answer's rank (null if absent), the number of distinct
    candidates, rows and votes of the top candidates.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist

from dataset.common import PuzzleDatasetMetadata
from dataset.puzzle_dataset import DatasetFormatError, DatasetNotFoundError
from evaluators import Evaluator
from evaluators.voting import confidence_units, rank_candidates
from tasks.arc.codec import (ARC_COLOUR_OFFSET as COLOUR_OFFSET, ARC_MAX_GRID as MAX_GRID, ARC_SEQ_LEN, crop_canvas,
                             crop_predictions, invert_augmentation, parse_augmentation_name)
from utils.errors import ConfigError

PREFIX = "ARC/"
DEFAULT_PASS_KS = (1, 2, 5, 10, 100, 1000)
DETAIL_TOP = 10                       # candidates listed per test input in details.json

GridKey = Tuple[int, int, bytes]      # (height, width, cells as uint8 bytes): a hashable, orderable grid


def grid_key(grid: np.ndarray) -> GridKey:
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    return int(grid.shape[0]), int(grid.shape[1]), grid.tobytes()


def key_to_grid(key: GridKey) -> List[List[int]]:
    h, w, cells = key
    return np.frombuffer(cells, dtype=np.uint8).reshape(h, w).tolist()


def _check_grid(grid, where: str) -> Optional[str]:
    """Why `grid` is not a Kaggle grid (non-empty rectangular list of lists of ints 0-9, at most 30x30)."""
    if not isinstance(grid, list) or not grid or not all(isinstance(row, list) for row in grid):
        return f"{where}: not a non-empty list of rows"
    width = len(grid[0])
    if width == 0 or any(len(row) != width for row in grid):
        return f"{where}: rows are empty or of different lengths"
    if len(grid) > MAX_GRID or width > MAX_GRID:
        return f"{where}: {len(grid)}x{width} is larger than {MAX_GRID}x{MAX_GRID}"
    if not all(type(x) is int and 0 <= x <= 9 for row in grid for x in row):
        return f"{where}: cells must be integers 0-9"
    return None


def validate_submission(obj, test_puzzles: Dict[str, dict], attempts: int = 2) -> None:
    """Raise ValueError unless `obj` is a Kaggle ARC Prize submission for `test_puzzles` ({task: {"train": ...,
    "test": [...]}}): every task, one entry per test input, each with exactly `attempt_1`..`attempt_<attempts>`
    holding a grid."""
    if not isinstance(obj, dict):
        raise ValueError("submission must be an object keyed by task id")
    missing = sorted(set(test_puzzles) - set(obj))
    extra = sorted(set(obj) - set(test_puzzles))
    if missing or extra:
        raise ValueError(f"task ids differ from the test set: missing {missing[:5]}, unknown {extra[:5]}")
    names = [f"attempt_{j}" for j in range(1, attempts + 1)]
    for task, entries in obj.items():
        expected = len(test_puzzles[task]["test"])
        if not isinstance(entries, list) or len(entries) != expected:
            raise ValueError(f"{task}: expected a list of {expected} entries (one per test input)")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or sorted(entry) != sorted(names):
                raise ValueError(f"{task}[{i}]: expected exactly the keys {names}")
            for name in names:
                problem = _check_grid(entry[name], f"{task}[{i}].{name}")
                if problem:
                    raise ValueError(problem)


class ARC(Evaluator):
    """pass@K of voted, de-augmented predictions on the ARC test inputs; see the module docstring."""

    required_outputs = {"preds", "q_halt_logits"}

    def __init__(self, data_path: str, eval_metadata: PuzzleDatasetMetadata,
                 pass_ks: Sequence[int] = DEFAULT_PASS_KS, submission_k: int = 2):
        super().__init__(data_path, eval_metadata)
        if isinstance(pass_ks, int):
            pass_ks = [pass_ks]
        if not pass_ks or any(type(k) is not int or k < 1 for k in pass_ks):
            raise ConfigError(f"evaluators (arc@ARC): pass_ks must be a list of positive integers, got {pass_ks!r}")
        if type(submission_k) is not int or submission_k < 1:
            raise ConfigError(f"evaluators (arc@ARC): submission_k must be a positive integer, got {submission_k!r}")
        if eval_metadata is not None and eval_metadata.seq_len != ARC_SEQ_LEN:
            raise DatasetFormatError(f"{data_path}: the ARC evaluator needs 30x30 canvases (seq_len 900), "
                                     f"the dataset has seq_len {eval_metadata.seq_len}")
        self.pass_ks = sorted(set(pass_ks))
        self.submission_k = submission_k
        self.identifiers: List[str] = self._load_json("identifiers.json", list)
        self.test_puzzles: Dict[str, dict] = self._load_json("test_puzzles.json", dict)
        # task -> original test input (as a grid key) -> test indices having that input; and correct answers.
        self._inputs: Dict[str, Dict[GridKey, List[int]]] = {}
        self._answers: Dict[str, List[GridKey]] = {}
        for task, puzzle in self.test_puzzles.items():
            try:
                pairs = [(np.array(p["input"], dtype=np.uint8), np.array(p["output"], dtype=np.uint8))
                         for p in puzzle["test"]]
            except (KeyError, TypeError, ValueError) as err:
                raise DatasetFormatError(f"{data_path}/test_puzzles.json: task {task}: test pairs need 'input' "
                                         f"and 'output' grids ({err})") from None
            by_input: Dict[GridKey, List[int]] = {}
            for i, (inp, _) in enumerate(pairs):
                by_input.setdefault(grid_key(inp), []).append(i)
            self._inputs[task] = by_input
            self._answers[task] = [grid_key(out) for _, out in pairs]
        self._augmentations: Dict[int, Tuple[str, int, np.ndarray]] = {}
        self.begin_eval()

    def _load_json(self, name: str, kind: type):
        path = os.path.join(self.data_path, name)
        if not os.path.isfile(path):
            raise DatasetNotFoundError(f"{path} not found: the ARC evaluator needs a dataset built by "
                                       f"dataset/build_arc_dataset.py")
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        if not isinstance(obj, kind):
            raise DatasetFormatError(f"{path}: expected a JSON {'list' if kind is list else 'object'}")
        return obj

    def _augmentation(self, identifier: int) -> Optional[Tuple[str, int, np.ndarray]]:
        aug = self._augmentations.get(identifier)
        if aug is None:
            if not 0 < identifier < len(self.identifiers):
                return None
            aug = self._augmentations[identifier] = parse_augmentation_name(self.identifiers[identifier])
        return aug

    # -- the Evaluator interface -----------------------------------------------------------------------------

    def begin_eval(self) -> None:
        # (task, test index) -> answer -> [votes, confidence sum in evaluators/voting.py's units]
        self._votes: Dict[Tuple[str, int], Dict[GridKey, List[int]]] = {}
        self._rows: Dict[Tuple[str, int], int] = {}
        self._counts = {"rows": 0, "matched": 0, "valid": 0, "unmatched": 0}

    def update_batch(self, batch: Dict[str, torch.Tensor], outputs: Dict[str, torch.Tensor]) -> None:
        # Token ids are < vocab_size (12): uint8 on the device, then one small copy to the CPU.
        preds = outputs["preds"].detach().to(torch.uint8).cpu().numpy().reshape(-1, MAX_GRID, MAX_GRID)
        inputs = batch["inputs"].detach().to(torch.uint8).cpu().numpy().reshape(-1, MAX_GRID, MAX_GRID)
        heights, widths = (a.tolist() for a in crop_predictions(preds))
        input_heights, input_widths = (a.tolist() for a in crop_predictions(inputs))
        confidence = torch.sigmoid(outputs["q_halt_logits"].detach().to("cpu", torch.float64).reshape(-1))
        confidence = torch.nan_to_num(confidence, nan=0.0).tolist()
        identifiers = batch["puzzle_identifiers"].detach().cpu().tolist()

        for row, identifier in enumerate(identifiers):
            self._counts["rows"] += 1
            aug = self._augmentation(int(identifier))
            if aug is None or aug[0] not in self._inputs:
                self._counts["unmatched"] += 1
                continue
            task, tid, colours = aug
            known = self._inputs[task]
            # Test inputs are drawn at the top-left corner, so the prediction crop finds them; the builder's
            # bounding-box crop (slower) also finds a translated one.
            h, w = input_heights[row], input_widths[row]
            test_indices = known.get(grid_key(invert_augmentation(inputs[row, :h, :w] - COLOUR_OFFSET, tid, colours)))
            if test_indices is None:
                test_indices = known.get(grid_key(invert_augmentation(crop_canvas(inputs[row]), tid, colours)))
            if test_indices is None:
                self._counts["unmatched"] += 1
                continue
            self._counts["matched"] += 1
            for i in test_indices:
                self._rows[(task, i)] = self._rows.get((task, i), 0) + 1
            h, w = heights[row], widths[row]
            if h == 0:
                continue
            self._counts["valid"] += 1
            answer = grid_key(invert_augmentation(preds[row, :h, :w] - COLOUR_OFFSET, tid, colours))
            scaled = confidence_units(confidence[row])
            for i in test_indices:
                entry = self._votes.setdefault((task, i), {}).setdefault(answer, [0, 0])
                entry[0] += 1
                entry[1] += scaled

    def result(self, save_path: Optional[str]) -> Optional[Dict[str, float]]:
        state = {"votes": self._votes, "rows": self._rows, "counts": self._counts}
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
            dist.gather_object(state, gathered, dst=0)
            if dist.get_rank() != 0:
                return None
            states = gathered
        else:
            states = [state]
        return self.score(merge_states(states), save_path)

    # -- scoring (rank 0) ------------------------------------------------------------------------------------

    def score(self, state: dict, save_path: Optional[str] = None) -> Dict[str, float]:
        """Metrics from merged votes; writes submission.json and details.json into save_path if given."""
        votes, rows, counts = state["votes"], state["rows"], state["counts"]
        solved = {k: 0 for k in self.pass_ks}
        task_solved = {k: 0 for k in self.pass_ks}
        task_fraction = {k: 0.0 for k in self.pass_ks}
        covered = 0
        submission: Dict[str, list] = {}
        details: Dict[str, list] = {}
        for task, answers in self._answers.items():
            submission[task], details[task] = [], []
            if not answers:  # no test input: nothing to score (and an empty entry in the submission)
                continue
            task_ranks = []
            for i, answer in enumerate(answers):
                ranked = rank_candidates(votes.get((task, i), {}))
                rank = next((r for r, (key, _, _) in enumerate(ranked, 1) if key == answer), None)
                task_ranks.append(rank)
                covered += rows.get((task, i), 0) > 0
                for k in self.pass_ks:
                    solved[k] += rank is not None and rank <= k
                attempts = [key_to_grid(key) for key, _, _ in ranked[:self.submission_k]] or [[[0]]]
                attempts += [attempts[0]] * (self.submission_k - len(attempts))
                submission[task].append({f"attempt_{j}": g for j, g in enumerate(attempts, 1)})
                details[task].append({
                    "correct_rank": rank, "rows": rows.get((task, i), 0), "candidates": len(ranked),
                    "top": [{"votes": v, "confidence": c, "correct": key == answer}
                            for key, v, c in ranked[:DETAIL_TOP]]})
            for k in self.pass_ks:
                hits = [r is not None and r <= k for r in task_ranks]
                task_solved[k] += all(hits)
                task_fraction[k] += sum(hits) / len(hits)

        n_tasks = sum(1 for a in self._answers.values() if a)
        n_inputs = sum(len(a) for a in self._answers.values())
        metrics: Dict[str, float] = {}
        for k in self.pass_ks:
            metrics[f"{PREFIX}pass@{k}"] = solved[k] / max(n_inputs, 1)
        for k in self.pass_ks:
            metrics[f"{PREFIX}task_pass@{k}"] = task_solved[k] / max(n_tasks, 1)
        for k in self.pass_ks:
            metrics[f"{PREFIX}task_mean_pass@{k}"] = task_fraction[k] / max(n_tasks, 1)
        metrics.update({
            f"{PREFIX}num_tasks": float(n_tasks),
            f"{PREFIX}num_test_inputs": float(n_inputs),
            f"{PREFIX}coverage": covered / max(n_inputs, 1),
            f"{PREFIX}valid_fraction": counts["valid"] / max(counts["matched"], 1),
            f"{PREFIX}unmatched_rows": float(counts["unmatched"]),
        })

        if save_path is not None:
            validate_submission(submission, self.test_puzzles, self.submission_k)
            os.makedirs(save_path, exist_ok=True)
            _write_json(os.path.join(save_path, "submission.json"), submission)
            _write_json(os.path.join(save_path, "details.json"), {"metrics": metrics, "tasks": details})
        return metrics


def merge_states(states: Sequence[dict]) -> dict:
    """Sum the per-rank votes, confidence sums, row counts and counters (exact integers: order-independent)."""
    votes: Dict[Tuple[str, int], Dict[GridKey, List[int]]] = {}
    rows: Dict[Tuple[str, int], int] = {}
    counts: Dict[str, int] = {}
    for state in states:
        for where, candidates in state["votes"].items():
            merged = votes.setdefault(where, {})
            for key, (n, conf) in candidates.items():
                entry = merged.setdefault(key, [0, 0])
                entry[0] += n
                entry[1] += conf
        for where, n in state["rows"].items():
            rows[where] = rows.get(where, 0) + n
        for name, n in state["counts"].items():
            counts[name] = counts.get(name, 0) + n
    return {"votes": votes, "rows": rows, "counts": counts}


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)
