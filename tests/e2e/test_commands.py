"""Every command the README shows prints its help, and runs once for real on a tiny run: build a dataset, train,
redraw the curves, evaluate, solve, export, serve to the visualizer, adapt to new puzzles."""
import json
import os
import runpy
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import REPO, run_in_repo

PY = sys.executable
# (how the README runs it: a file or a module, its help arguments, a word the help must show)
HELP = [
    ("pretrain.py", "--help", "global_batch_size"),
    ("evaluate.py", "--help", "save_outputs"),
    ("tools.solve", "--help", "test_time.augmentations"),
    ("tools.adapt", "--help", "num_aug"),
    ("tools.export_predictions", "--help", "global_batch_size"),
    ("tools.serve_visualizer", "--help", "port"),
    ("utils.plots", "--help", "curves.png"),
    ("dataset/build_sudoku_dataset.py", "--help", "--subsample-size"),
    ("dataset/build_maze_dataset.py", "--help", "--aug"),
    ("dataset/build_arc_dataset.py", "--help", "--num-aug"),
    ("dataset/build_mini_sudoku_dataset.py", "--help", "--box-rows"),
    ("dataset/build_rule_tasks_dataset.py", "--help", "--held-out"),
    ("tasks.sudoku.build", "--help", "--subsample-size"),  # the builders where they live, under their new names
    ("tasks.sudoku.build_mini", "--help", "--box-rows"),
    ("tasks.maze.build", "--help", "--aug"),
    ("tasks.arc.build", "--help", "--num-aug"),
    ("tasks.rules.build", "--help", "--held-out"),
    ("scripts/demo.py", "--help", "--seed"),
    ("scripts/compare_models.py", "--help", "--tasks"),
    ("scripts/test_time_experiment.py", "--help", "--settings"),
    ("scripts/adapt_experiment.py", "--help", "--seeds"),
    ("benchmarks/train_throughput.py", "--help", "--preset"),
    ("benchmarks/loader_throughput.py", "--help", "--batches"),
    ("benchmarks/checkpoint_cost.py", "--help", "--preset"),
]


@pytest.mark.parametrize("entry, flag, mentions", HELP, ids=[entry for entry, _, _ in HELP])
def test_help(entry, flag, mentions, monkeypatch, capsys):
    """In this process (a fresh one per command would cost a torch import each): the entry point as __main__."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", [entry, flag])
    with pytest.raises(SystemExit) as stop:
        if entry.endswith(".py"):
            runpy.run_path(entry, run_name="__main__")
        else:
            runpy.run_module(entry, run_name="__main__", alter_sys=True)
    assert stop.value.code in (0, None)
    assert mentions in capsys.readouterr().out


@pytest.mark.slow
def test_one_tiny_run_through_every_command(tmp_path):
    def run(*args, ok=True):
        result = run_in_repo([PY, *map(str, args)], timeout=300)
        assert (result.returncode == 0) == ok, result.stdout[-2000:] + result.stderr[-3000:]
        return result

    data, run_dir = tmp_path / "sudoku4", tmp_path / "run"
    run("dataset/build_mini_sudoku_dataset.py", "--output-dir", data, "--box-rows", 2, "--box-cols", 2,
        "--generate", 64, "--test-size", 8)
    run("pretrain.py", "--config-name", "demo", f"data_path={data}", f"checkpoint_path={run_dir}", "epochs=1",
        "eval_interval=1", "arch.hidden_size=16", "arch.num_heads=2", "arch.mlp_t=false", "arch.pos_encodings=rope",
        "arch.puzzle_emb_ndim=16", "arch.puzzle_emb_len=1", "logger=none", "global_batch_size=16")
    checkpoint = run_dir / "step_4"
    assert checkpoint.is_file()
    os.remove(run_dir / "curves.png")
    run("-m", "utils.plots", run_dir)
    assert (run_dir / "curves.png").is_file()

    metrics = json.loads(run("evaluate.py", f"checkpoint={checkpoint}", "save_outputs=[inputs,labels,preds]",
                             "device=cpu").stdout.split("outputs saved")[0])
    assert 0.0 <= metrics["eval/all/accuracy"] <= 1.0

    solved = run("-m", "tools.solve", f"checkpoint={checkpoint}", "puzzle=1...2...3...4...", "device=cpu",
                 "test_time.augmentations=2").stdout
    assert "answer string:" in solved and "test-time compute: 2 variants" in solved
    assert "answer string:" in run("-m", "tools.solve", f"checkpoint={checkpoint}", "puzzle=1...2...3...4...",
                                   "device=cpu").stdout

    preds = tmp_path / "preds.npz"
    run("-m", "tools.export_predictions", f"{checkpoint}_all_preds.0", f"output={preds}")
    assert preds.is_file()
    old_style = tmp_path / "old.npz"
    run("-m", "tools.export_predictions", f"{checkpoint}_all_preds.0", "--output", old_style)
    assert old_style.read_bytes() == preds.read_bytes()

    server = subprocess.Popen([PY, "-m", "tools.serve_visualizer", str(data), f"preds={preds}", "port=0"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        address = line.split()[1]
        with urllib.request.urlopen(address, timeout=30) as page:
            assert b"<html" in page.read().lower()
    finally:
        server.terminate()
        server.wait(timeout=30)

    adapted = tmp_path / "adapted"
    run("-m", "tools.adapt", f"checkpoint={checkpoint}", f"dataset={data}", "steps=2", f"output={adapted}",
        "device=cpu", "global_batch_size=16")
    assert (adapted / "step_2").is_file() and (adapted / "metrics.json").is_file()
    refused = run("-m", "tools.adapt", f"checkpoint={checkpoint}", f"dataset={data}", "steps=2", f"output={adapted}",
                  ok=False)
    assert refused.returncode == 2 and "already holds an adapted model" in refused.stderr
