"""utils/solve.py: one puzzle through a trained checkpoint (round trip against evaluate's saved predictions),
the answer checkers (Sudoku rules, maze paths), the ARC canvas encoding, and one-line errors."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from tasks.maze.codec import MAZE_CHARSET
from tasks.sudoku.build_mini import build as build_mini_sudoku
from tasks.sudoku.codec import parse_sudoku, sudoku_to_string
from tests.helpers import REPO, saved_output_files
from tools import solve

# A tiny HRM (hidden 32, one layer per level, puzzle embedding on) trained for 40 CPU steps on 4x4 Sudoku, saving
# its test-split predictions: the reference the CLI must reproduce puzzle by puzzle.
TRAIN = ["epochs=4", "eval_interval=4", "global_batch_size=32", "lr=3e-3", "lr_warmup_steps=5", "lr_min_ratio=0.1",
         "arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.puzzle_emb_ndim=32",
         "arch.pos_encodings=learned", "arch.halt_max_steps=2", "device=cpu", "logger=none",
         "eval_save_outputs=[inputs,labels,preds]"]
FINAL_STEP = 40  # 320 puzzles / 32 per batch x 4 epochs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("solve")
    data = root / "sudoku4"
    build_mini_sudoku(str(data), box_rows=2, box_cols=2, train_size=320, test_size=8, seed=0)
    run_dir = root / "run"
    result = subprocess.run([sys.executable, "pretrain.py", f"data_path={data}", f"checkpoint_path={run_dir}", *TRAIN],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = torch.load(run_dir / f"step_{FINAL_STEP}_all_preds.0", weights_only=True)
    return {"data": data, "checkpoint": run_dir / f"step_{FINAL_STEP}", "saved": saved}


def digits_of(tokens) -> str:
    return sudoku_to_string(np.where(np.asarray(tokens) >= 2, np.asarray(tokens) - 1, 0))


def answer_of(stdout: str) -> str:
    match = re.search(r"^answer string: (\S+)$", stdout, re.M)
    assert match, stdout
    return match.group(1)


def clue_keeping_example(saved) -> int:
    inputs, preds = saved["inputs"].numpy(), saved["preds"].numpy()
    keeps = [k for k in range(len(inputs)) if np.all((inputs[k] < 2) | (preds[k] == inputs[k]))]
    assert keeps, "the tiny model kept the clues of no test puzzle"
    return keeps[0]


@pytest.mark.slow
def test_cli_round_trips_a_test_puzzle(trained):
    saved = trained["saved"]
    k = clue_keeping_example(saved)
    puzzle = digits_of(saved["inputs"][k])
    result = subprocess.run([sys.executable, "-m", "tools.solve", f"checkpoint={trained['checkpoint']}",
                             f"puzzle={puzzle}", "device=cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout

    # Exactly the answer evaluate.py saved for this puzzle (same weights, same ACT loop, eval mode).
    expected = digits_of(saved["preds"][k])
    assert answer_of(out) == expected
    # The pretty answer grid: 4 rows of 4 cells that keep the clues.
    block = out.split("answer:\n", 1)[1].split("answer string:", 1)[0]
    rows = [re.sub(r"[^0-9.?]", "", line) for line in block.splitlines() if re.search(r"[0-9.?]", line)]
    assert rows == [expected[i:i + 4] for i in range(0, 16, 4)]
    assert all(c == "." or c == a for c, a in zip(puzzle, expected))
    assert "clues kept: yes" in out
    # The verdict: 4x4 puzzles of the builder have one solution, so valid <=> equal to the label.
    correct = expected == digits_of(saved["labels"][k])
    assert re.search(r"^valid solution: (yes|no)$", out, re.M).group(1) == ("yes" if correct else "no")
    assert "task: sudoku" in out


@pytest.mark.slow
def test_puzzle_file_and_missing_dataset(trained, tmp_path, capsys):
    saved = trained["saved"]
    k = len(saved["inputs"]) - 1
    grid = parse_sudoku(digits_of(saved["inputs"][k]))
    pretty = "\n".join(" ".join(str(v) if v else "." for v in row) for row in grid)
    path = tmp_path / "puzzle.txt"
    path.write_text(pretty + "\n")
    assert solve.main([f"checkpoint={trained['checkpoint']}", f"puzzle_file={path}", "device=cpu"]) == 0
    assert answer_of(capsys.readouterr().out) == digits_of(saved["preds"][k])

    # Without the run's dataset, the sizes come from the checkpoint's weights: same answer.
    assert solve.main([f"checkpoint={trained['checkpoint']}", f"puzzle_file={path}", "device=cpu",
                       f"data_path={tmp_path / 'gone'}"]) == 0
    out = capsys.readouterr().out
    assert "sizes taken from the checkpoint" in out
    assert answer_of(out) == digits_of(saved["preds"][k])


@pytest.mark.slow
def test_test_time_compute_matches_evaluate(trained, tmp_path, capsys):
    """The CLI's answer with augmentations and noisy trajectories is what evaluate.py selects for that puzzle."""
    saved = trained["saved"]
    k = clue_keeping_example(saved)
    settings = ["augmentations=4", "trajectories=2", "noise_std=0.5", "filter_invalid=true"]
    assert solve.main([f"checkpoint={trained['checkpoint']}", f"puzzle={digits_of(saved['inputs'][k])}",
                       "device=cpu", *settings]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^test-time compute: 8 variants gave \d+ distinct answer\(s\)", out, re.M)
    result = subprocess.run([sys.executable, "evaluate.py", f"checkpoint={trained['checkpoint']}", "device=cpu",
                             "save_outputs=[preds]", "global_batch_size=8",
                             *[f"test_time.{s}" for s in settings]], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # The training saved its own outputs beside the checkpoint; the evaluation writes new ones, never over them.
    (written,) = saved_output_files(result.stdout)
    assert written == str(trained["checkpoint"]) + "_eval1_all_preds.0"
    evaluated = torch.load(written, weights_only=True)["preds"]
    assert answer_of(out) == digits_of(evaluated[k])


@pytest.mark.slow
@pytest.mark.parametrize("args, fragment", [
    (["puzzle=1234"], "the Sudoku has 4 cells, the model expects 16"),
    (["puzzle=12x4............"], "cell 3 holds 'x'"),
    (["puzzle=5..............."], "cell 1 holds '5'"),
    (["puzzle_file=/nonexistent/sudoku.txt"], "puzzle file /nonexistent/sudoku.txt does not exist"),
    # task= may not contradict the task the run's dataset names
    (["puzzle=################", "task=maze"], "is a sudoku dataset (its dataset.json says so)"),
    (["puzzle=................", "task=arc"], "task=arc, but"),
    (["puzzle=................", "colour=red"], "unknown config key 'colour'"),
])
def test_bad_input_is_one_line_error(trained, capsys, args, fragment):
    assert solve.main([f"checkpoint={trained['checkpoint']}", "device=cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


def test_missing_checkpoint_and_no_puzzle(tmp_path, capsys):
    assert solve.main([f"checkpoint={tmp_path / 'step_1'}", "puzzle=1..."]) == 2
    assert f"checkpoint file {tmp_path / 'step_1'} does not exist" in capsys.readouterr().err
    (tmp_path / "step_1").write_bytes(b"")
    assert solve.main([f"checkpoint={tmp_path / 'step_1'}", "puzzle=1..."]) == 2
    assert "all_config.yaml" in capsys.readouterr().err
    assert solve.main([f"checkpoint={tmp_path / 'step_1'}"]) == 2
    assert "exactly one of puzzle=... or puzzle_file=..." in capsys.readouterr().err
    assert solve.main(["checkpoint"]) == 2
    assert "expected key=value" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Maze and ARC through the CLI, with an untrained model (fast): parsing, identifiers, printing and verdicts.


def untrained_checkpoint(run_dir, data_path, **arch):
    """A step_1 model file of a freshly initialised tiny HRM with its all_config.yaml, as pretrain.py writes them."""
    import yaml

    from dataset.puzzle_dataset import load_metadata
    from training.build import create_model
    from training.config import validate_config
    from training.distributed import init_distributed

    raw = {"arch": {"name": "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
                    "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
                    "halt_exploration_prob": 0.1, "halt_max_steps": 2, "H_cycles": 1, "L_cycles": 1, "H_layers": 1,
                    "L_layers": 1, "hidden_size": 32, "num_heads": 2, "expansion": 2, "puzzle_emb_ndim": 32,
                    "pos_encodings": "rope", **arch},
           "data_path": str(data_path), "global_batch_size": 8, "epochs": 1, "lr": 1e-4, "lr_min_ratio": 1.0,
           "lr_warmup_steps": 0, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.95, "puzzle_emb_lr": 1e-2,
           "puzzle_emb_weight_decay": 0.1, "device": "cpu", "logger": "none"}
    config = validate_config(raw)
    model = create_model(config, load_metadata(str(data_path), "train"), init_distributed("cpu"))
    os.makedirs(run_dir, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(run_dir, "step_1"))
    with open(os.path.join(run_dir, "all_config.yaml"), "w") as f:
        yaml.safe_dump(raw, f)
    return os.path.join(run_dir, "step_1")


def maze_text(side=30):
    rows = [["#"] * side for _ in range(side)]
    for c in range(1, side - 1):
        rows[1][c] = " "
    rows[1][1], rows[1][side - 2] = "S", "G"
    return "\n".join("".join(row) for row in rows) + "\n"


def test_maze_through_the_cli(tmp_path, capsys):
    from tests.helpers import write_tiny_dataset

    write_tiny_dataset(str(tmp_path / "maze"), vocab_size=6, seq_len=900, groups=1, puzzles_per_group=1,
                       examples_per_puzzle=1, task="maze")
    checkpoint = untrained_checkpoint(tmp_path / "run", tmp_path / "maze")
    path = tmp_path / "maze.txt"
    path.write_text(maze_text())
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle_file={path}"]) == 0
    out = capsys.readouterr().out
    assert "task: maze" in out
    answer = out.split("answer:\n", 1)[1].splitlines()[:30]
    assert all(len(line) == 30 and set(line) <= set(MAZE_CHARSET + "?") for line in answer)
    assert re.search(r"^valid path: (yes|no)$", out, re.M)
    assert re.search(r"^shortest path: (yes|no) \(a shortest path has 26 cells", out, re.M)
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle={maze_text().replace('G', ' ')}"]) == 2
    assert "exactly one goal 'G'" in capsys.readouterr().err


def test_arc_through_the_cli(tmp_path, capsys):
    from tests.helpers import write_tiny_dataset

    write_tiny_dataset(str(tmp_path / "arc"), vocab_size=12, seq_len=900, groups=2, puzzles_per_group=2,
                       examples_per_puzzle=2)  # identifiers <blank>, puzzle_1 .. puzzle_4
    checkpoint = untrained_checkpoint(tmp_path / "run", tmp_path / "arc")
    task = {"train": [{"input": [[1]], "output": [[2]]}],
            "test": [{"input": [[1, 2, 3], [4, 5, 6]], "output": [[0, 0], [0, 0]]}, {"input": [[7]]}]}
    path = tmp_path / "puzzle_3.json"
    path.write_text(json.dumps(task))
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle_file={path}"]) == 0
    out = capsys.readouterr().out
    assert "task: arc" in out and "ARC task puzzle_3: puzzle identifier 3" in out
    assert "test input 0 (2x3):" in out and "test input 1 (1x1):" in out
    assert "[[1, 2, 3],\n [4, 5, 6]]" in out
    assert re.search(r"^answer 1 \(\d+x\d+\):$", out, re.M)
    assert re.search(r"^matches the expected output: no", out, re.M)  # an untrained model
    assert re.search(r"^valid answer: no$", out, re.M)

    other = tmp_path / "unknown_task.json"
    other.write_text(json.dumps(task))
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle_file={other}"]) == 0
    assert "warning: task 'unknown_task' is not in the run's identifiers.json; using the blank puzzle identifier 0" \
        in capsys.readouterr().out
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle_file={other}", "name=puzzle_4"]) == 0
    assert "puzzle identifier 4" in capsys.readouterr().out
    # Votes over the task's augmented puzzles (each with its own identifier) when the dataset has them.
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle_file={path}", "augmentations=3"]) == 0
    assert "voting over" not in capsys.readouterr().out  # this dataset's names are plain: no augmented puzzles
    names = ["<blank>", "puzzle_3", "puzzle_3_t1_0123456789", "puzzle_3_t4_0312456789", "other"]
    (tmp_path / "arc" / "identifiers.json").write_text(json.dumps(names))
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle_file={path}", "augmentations=3"]) == 0
    out = capsys.readouterr().out
    assert "voting over the task and 2 of its augmented puzzles" in out
    assert re.search(r"^test-time compute: 3 variants gave [123] distinct answer\(s\)", out, re.M)
    assert solve.main([f"checkpoint={checkpoint}", f"puzzle_file={path}", "augmentations=2", "name=nothing"]) == 2
    assert "votes over the task's augmented puzzles" in capsys.readouterr().err
